"""seemrl's own AntMaze: maze layouts, planner, observation layout, derived terminals, data."""

import json
from pathlib import Path

import numpy as np
import pytest

from seemrl.antmaze import maze as mz


def test_layouts_match_d4rl_frame():
    umaze = mz.make_maze("umaze")
    assert umaze.walls.shape == (5, 5)
    assert mz.make_maze("medium").walls.shape == (8, 8)
    assert mz.make_maze("large").walls.shape == (9, 12)
    # D4RL's goals: umaze (0, 8), medium (20, 20), large (36, 24); start at the origin.
    for name, xy in (("umaze", (0, 8)), ("medium", (20, 20)), ("large", (36, 24))):
        m = mz.make_maze(name)
        assert tuple(m.cell_xy(mz.EVAL_GOAL[name])) == xy
        assert tuple(m.cell_xy(mz.START)) == (0, 0)
        assert m.xy_cell(np.array(xy) + 1.9) == mz.EVAL_GOAL[name]
        assert not m.walls[mz.EVAL_GOAL[name]] and not m.walls[mz.START]


def test_planner_paths_are_shortest_and_open():
    large = mz.make_maze("large")
    path = large.path((1, 1), (7, 10))
    assert path[0] == (1, 1) and path[-1] == (7, 10)
    assert len(path) - 1 == large.distances((7, 10))[1, 1]
    for a, b in zip(path[:-1], path[1:], strict=True):
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 and not large.walls[b]
    umaze = mz.make_maze("umaze")
    assert umaze.path((1, 1), (3, 1)) == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]


def test_tasks_label_goal_sets():
    t = mz.tasks()
    assert set(t) == {"umaze", "umaze-diverse", "medium-play", "medium-diverse",
                      "large-play", "large-diverse"}
    assert t["umaze"].goals == ((3, 1),) and t["umaze"].starts == ((1, 1),)
    assert "hand-picked" in t["medium-play"].goal_set
    assert len(t["medium-diverse"].goals) == len(mz.make_maze("medium").open_cells)
    for task in t.values():
        m = mz.make_maze(task.maze)
        assert all(not m.walls[c] for c in task.starts + task.goals)


def test_waypoints_walk_a_point_to_the_goal():
    """A point that moves 0.3 m per step toward the waypoint reaches the goal through the
    maze's open cells without crossing a wall."""
    for name in ("umaze", "medium", "large"):
        m = mz.make_maze(name)
        goal = m.cell_xy(mz.EVAL_GOAL[name]) + 0.3
        way = mz.Waypoints(m, goal, np.random.default_rng(0))
        xy = np.zeros(2)
        for _ in range(2000):
            target = way(xy)
            step = target - xy
            xy = xy + step * min(1.0, 0.3 / max(np.linalg.norm(step), 1e-9))
            assert not m.walls[m.xy_cell(xy)]
            if np.linalg.norm(xy - goal) <= mz.SUCCESS_DISTANCE:
                break
        assert np.linalg.norm(xy - goal) <= mz.SUCCESS_DISTANCE, name


def test_waypoint_jitter_and_switch():
    m = mz.make_maze("umaze")
    way = mz.Waypoints(m, m.cell_xy((3, 1)), np.random.default_rng(1))
    first = way(np.zeros(2)).copy()
    assert np.all(np.abs(first - m.cell_xy((1, 2))) <= mz.WAYPOINT_JITTER)
    assert np.array_equal(way(np.array([1.0, 0.0])), first)      # not close enough yet
    nxt = way(first + 0.4 / np.sqrt(2))                           # within 0.45: next cell
    assert np.all(np.abs(nxt - m.cell_xy((1, 3))) <= mz.WAYPOINT_JITTER)


def test_observation_layout_and_success_terminal():
    from seemrl.antmaze.env import AntMazeEnv

    env = AntMazeEnv("umaze")
    obs, info = env.reset(seed=3)
    assert obs.shape == (29,)
    np.testing.assert_array_equal(obs[:15], env.sim.data.qpos)
    np.testing.assert_array_equal(obs[15:], env.sim.data.qvel)
    assert abs(obs[0]) < 0.2 and abs(obs[1]) < 0.2 and 0.6 < obs[2] < 0.9
    obs, r, term, trunc, info = env.step(np.zeros(8))
    assert (r, term) == (0.0, False)
    # Put the torso on the goal: the step is a success, reward 1 and terminal.
    env.sim.data.qpos[:2] = env.goal + 0.1
    obs, r, term, trunc, info = env.step(np.zeros(8))
    assert (r, term, info["success"]) == (1.0, True, True)


def test_eval_env_registered_with_success_score():
    from seemrl import evaluation

    env = evaluation.make_env("seemrl/AntMaze-umaze-v0")
    assert env.spec.max_episode_steps == 700
    assert evaluation.env_family("seemrl/AntMaze-umaze-v0") == "antmaze"
    assert evaluation.normalized_score(1.0, evaluation.REF_SCORES["antmaze"]) == 100.0


@pytest.fixture(scope="module")
def tiny_controller(tmp_path_factory) -> Path:
    """An untrained 32×32 controller (weights from SAC's initialisation)."""
    import jax

    from seemrl.antmaze.controller import INPUT_DIM
    from seemrl.behaviour.sac import GaussianActor, save_actor
    from seemrl.networks import MLPConfig

    params = GaussianActor(MLPConfig(hidden=(32, 32)), 8).init(
        jax.random.PRNGKey(0), np.zeros((1, INPUT_DIM), np.float32))
    path = tmp_path_factory.mktemp("ctrl") / "controller.npz"
    save_actor(path, params)
    path.with_suffix(".json").write_text(json.dumps({"hidden": [32, 32], "recipe": "test"}))
    return path


def test_tiny_dataset_made_loads_and_is_deterministic(tmp_path, tiny_controller):
    import h5py

    from seemrl.antmaze.data import make_dataset
    from seemrl.data import load_dataset

    kw = {"size": 900, "seed": 5, "n_envs": 3, "controller": tiny_controller}
    a = make_dataset("antmaze-umaze-diverse", data_dir=tmp_path / "a", **kw)
    b = make_dataset("antmaze-umaze-diverse", data_dir=tmp_path / "b", **kw)
    assert a.name == "antmaze-umaze-diverse-v0-n900-s5.hdf5"
    assert a.with_name(a.name + ".sha256").read_text().split()[0] == \
        b.with_name(b.name + ".sha256").read_text().split()[0]
    data = load_dataset(str(a))
    assert len(data) == 900 and data.obs_dim == 29 and data.act_dim == 8
    assert data.metadata["env_id"] == "seemrl/AntMaze-umaze-v0"
    assert "diverse" in data.metadata["goal_set"]
    with h5py.File(a) as f:
        goal, qpos = f["infos/goal"][()], f["infos/qpos"][()]
        obs, rew, term = f["observations"][()], f["rewards"][()], f["terminals"][()]
        timeouts = f["timeouts"][()]
    np.testing.assert_array_equal(qpos, obs[:, :15])
    # Terminals are derived from the goal distance of the next state, and equal the reward.
    nxt = data.next_observations
    close = np.linalg.norm(nxt[:, :2] - goal, axis=1) <= 0.5
    np.testing.assert_array_equal(term, close)
    np.testing.assert_array_equal(rew, close.astype(np.float32))
    assert timeouts.sum() == 3  # 300 rows per env < 700 steps: one cut episode each
    assert np.all(np.abs(data.actions) <= 1.0)


def test_minari_format_loads_with_its_env(tmp_path, tiny_controller):
    from seemrl.antmaze.data import make_dataset
    from seemrl.data import load_dataset

    path = make_dataset("antmaze-medium-play", size=80, n_envs=2, data_dir=tmp_path,
                        fmt="minari", controller=tiny_controller)
    assert path.parts[-3:] == ("seemrl", "antmaze-medium-play-n80-v0", "data")
    data = load_dataset(str(path))
    assert len(data) == 80 and data.obs_dim == 29
    assert data.metadata["env_id"] == "seemrl/AntMaze-medium-v0"


def test_repro_antmaze_finds_own_files_without_gymnasium_robotics(tmp_path, tiny_controller,
                                                                  monkeypatch):
    from seemrl.antmaze.data import make_dataset
    from seemrl.repro import antmaze

    path = make_dataset("antmaze-umaze", size=60, n_envs=2, data_dir=tmp_path,
                        controller=tiny_controller)
    monkeypatch.setattr(antmaze, "env_available", lambda: False)
    [source] = antmaze.check(tmp_path, tmp_path / "no-minari")
    assert (source.kind, source.task, source.location) == ("seemrl", "umaze", path)
    assert antmaze.prepare_source(source, tmp_path / "out") == (path, "seemrl/AntMaze-umaze-v0")


@pytest.mark.slow
def test_shipped_controller_reaches_umaze_goal():
    from seemrl.antmaze.controller import SHIPPED, load_controller, maze_success

    if not SHIPPED.exists():
        pytest.skip("no AntMaze controller shipped yet (python -m seemrl.antmaze.controller)")
    act, params, info = load_controller()
    result = maze_success(act, params, "umaze", episodes=10, seed=123,
                          egocentric=info["egocentric"])
    assert result["success_rate"] >= 0.5


def test_listed_with_data_success_rate(tmp_path, tiny_controller):
    from seemrl.antmaze.data import dataset_names, make_dataset
    from seemrl.behaviour import list_datasets

    make_dataset("antmaze-umaze", size=40, n_envs=1, data_dir=tmp_path,
                 controller=tiny_controller, progress=False)
    rows = {(r["name"], r["on_disk"]): r for r in list_datasets(tmp_path)
            if r["name"] in dataset_names()}
    assert len(rows) == 6
    made = rows[("antmaze-umaze", True)]
    assert made["transitions"] == 40 and made["avg_return"] == 0.0
    assert ("antmaze-umaze-diverse", False) in rows


def test_dataset_table_reports_made_antmaze_files(tmp_path, tiny_controller, capsys):
    import importlib.util

    from seemrl.antmaze.data import make_dataset

    made = make_dataset("antmaze-medium-play", size=60, n_envs=2, data_dir=tmp_path,
                        controller=tiny_controller, progress=False)
    summary = json.loads(made.with_name(made.name + ".json").read_text())
    script = Path(__file__).parents[1] / "experiments" / "dataset_table.py"
    spec = importlib.util.spec_from_file_location("dataset_table", script)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    (row,) = table.antmaze_rows([tmp_path])
    assert row["task"] == "medium-play" and row["size"] == 60
    assert (row["episodes"], row["reaching"]) == (summary["episodes"],
                                                  summary["episodes_reaching_goal"])
    assert table.rows([tmp_path]) == []  # not mistaken for a locomotion dataset
    assert table.main([str(tmp_path)]) == 0
    assert "| antmaze-medium-play |" in capsys.readouterr().out


@pytest.mark.slow  # makes a tiny file and trains the four Table 1 agents (~2 min here)
def test_gpu_script_smoke_trains_table_1_and_resumes(tmp_path):
    import importlib.util

    script = Path(__file__).parents[1] / "experiments" / "antmaze_gpu.py"
    spec = importlib.util.spec_from_file_location("antmaze_gpu", script)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    out = tmp_path / "gpu"
    budget = ["--budget-s", "3600"]  # a loaded machine must not cut the first call short
    assert gpu.main(["--smoke", "--out", str(out), *budget]) == 0
    record = json.loads((out / "results.json").read_text())
    agents = {"diffql-ln", "diffql", "td3bc", "iql"}
    assert record["pending"] == [] and set(record["finished"]) == {f"umaze-{a}" for a in agents}
    assert all(len(s["score"]) == 2 for s in record["scores"].values())
    mtimes = {p: p.stat().st_mtime for p in out.glob("runs/*/status.json")}
    assert gpu.main(["--smoke", "--out", str(out), *budget]) == 0  # none is retrained
    assert {p: p.stat().st_mtime for p in out.glob("runs/*/status.json")} == mtimes
