"""`seemrl repro toy-maze | ntk-map | antmaze`: smoke runs write their files with sensible
content, the pieces they rest on are exact on cases with a known answer, and antmaze says
what it looked for when its data or env is missing."""

from __future__ import annotations

import json
import pathlib

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl import cli
from seemrl.diagnostics import ntk
from seemrl.networks import QNetwork
from seemrl.repro import antmaze, ntk_map, toy_maze

PNG = b"\x89PNG\r\n\x1a\n"


def _repro(name, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["repro", name, "--scale", "smoke", "--out", str(out), "--data-dir",
                   str(tmp_path / "data"), "--no-progress"])
    return rc, out / name


def _check_outputs(folder, figures):
    record = json.loads((folder / "results.json").read_text())   # strict JSON: no NaN
    section = (folder / "section.md").read_text()
    assert record["figures"] == figures
    for fig in figures:
        data = (folder / fig).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, fig
        assert f"]({fig})" in section
    assert "**Against the paper.**" in section
    return record, section


# ------------------------------------------------------------------------------- toy maze


def test_toy_maze_smoke(tmp_path):
    rc, folder = _repro("toy-maze", tmp_path)
    assert rc == 0
    record, section = _check_outputs(folder, ["toy_maze.png", "toy_maze_data.png"])
    res = record["results"]
    plain = res["none"]
    crashed = [r for r in plain["per_seed"] if r["crash"] is not None]
    assert crashed, "the plain toy critic should crash for some seed"
    for r in crashed:
        p = r["predictions"][0]
        assert 0 < p["t_star"] < 2 * record["params"]["iterations"]
        assert p["start"] < p["made_at"] <= r["crash"]
        assert p["error"] == pytest.approx(p["t_star"] - r["crash"])
        # Q after the crash is stored as null, before it as numbers.
        q = plain["q_mean"][r["seed"]]
        assert all(v is not None for v in q[:r["crash"]]) and q[r["crash"]] is None
    assert set(res) >= {"none", "layernorm"}
    assert len(plain["seem"]) == record["params"]["seeds"]
    assert f"{plain['summary']['crashed']} of {plain['summary']['seeds']}" in section


def test_trajectory_is_the_papers_toy_maze():
    obs, act, next_obs = toy_maze.make_trajectory(jax.random.PRNGKey(3), 64)
    assert obs.shape == act.shape == next_obs.shape == (64, 2)
    np.testing.assert_allclose(np.linalg.norm(act, axis=1), 1.0, atol=1e-6)
    noise = np.asarray(next_obs - obs - 0.1 * act)
    assert noise.min() >= 0 and noise.max() <= 0.02
    np.testing.assert_allclose(next_obs[:-1], obs[1:])          # one trajectory
    assert 0 <= obs[0].min() and obs[0].max() <= 1


def test_crash_predicted_exactly_when_one_over_q_is_a_line():
    t_star = 123.4
    t = np.arange(200)
    with np.errstate(divide="ignore"):
        q = np.where(t < t_star, 1.0 / (0.004 * (t_star - t)), np.inf)
    p = toy_maze.predict_from_window(q, (0.3, 0.1))
    assert p["t_star"] == pytest.approx(t_star, rel=1e-9)
    assert q[p["start"]] >= 1 / 0.3 and q[p["made_at"]] >= 1 / 0.1 > q[p["made_at"] - 1]
    assert toy_maze.crash_iteration(q, 1e30) == 124
    # Q that never reaches the window gives no prediction, not a made-up one.
    assert np.isnan(toy_maze.predict_from_window(np.full(50, 0.5), (0.3, 0.1))["t_star"])


# -------------------------------------------------------------------------------- ntk map


def test_ntk_map_smoke(tmp_path):
    rc, folder = _repro("ntk-map", tmp_path)
    assert rc == 0
    record, section = _check_outputs(folder, ["ntk_map.png"])
    res, params = record["results"], record["params"]
    ray = np.asarray(res["ray_distance"])
    x0_dist = np.linalg.norm(params["x0"])
    for norm in ("none", "layernorm"):
        s = res["summary"][norm]
        assert np.isfinite(s["far_ratio_mean"]) and s["far_ratio_mean"] > 0
        assert len(s["far_ratio_per_seed"]) == params["seeds"]
        # k(x0, x0)/k(x0, x0) = 1: the ray passes through x0.
        assert np.interp(x0_dist, ray, res["ray_ratio_mean"][norm]) == pytest.approx(1, abs=0.05)
        assert f"{s['far_ratio_mean']:.2f}" in section


def test_ntk_kernel_matches_generic_ntk():
    """The chunked fast kernel (with padding: 7 points, chunks of 3) equals Φ Φᵀ."""
    pts = jnp.asarray(np.random.default_rng(0).uniform(-5, 5, (7, 2)), jnp.float32)
    anchors = jnp.asarray([[0.5, 0.5], [4.0, 4.0]], jnp.float32)
    empty = lambda x: jnp.zeros((x.shape[0], 0))
    for norm in ("none", "layernorm"):
        config = ntk_map.network(32, norm)
        net = QNetwork(config)
        params = net.init(jax.random.PRNGKey(0), pts[:1], empty(pts[:1]))
        fast = ntk_map._kernel_fn(config, 3)(params, pts, anchors)
        # The generic path cannot map over 0-wide rows: give it a dummy action column.
        q = lambda p, o, a, net=net: net.apply(p, o, a[:, :0])
        dummy = lambda x: jnp.zeros((x.shape[0], 1))
        ref = ntk.gram(q, params, pts, dummy(pts), anchors, dummy(anchors))
        np.testing.assert_allclose(fast, ref, rtol=2e-4, atol=1e-4)


# -------------------------------------------------------------------------------- antmaze


@pytest.fixture
def no_minari(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_antmaze_without_data_exits_2_and_says_where_it_looked(tmp_path, no_minari, capsys):
    rc, folder = _repro("antmaze", tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "no AntMaze data" in err and str(tmp_path / "data") in err and str(no_minari) in err
    assert "never downloads" in err
    assert not (folder / "results.json").exists() and not (folder / "section.md").exists()


def _d4rl_antmaze(path, n=50):
    rng = np.random.default_rng(0)
    timeouts = np.zeros(n, bool)
    timeouts[24] = True
    with h5py.File(path, "w") as f:   # AntMaze files have no next_observations
        f.create_dataset("observations", data=rng.normal(size=(n, 29)).astype(np.float32))
        f.create_dataset("actions", data=rng.uniform(-1, 1, (n, 8)).astype(np.float32))
        f.create_dataset("rewards", data=np.zeros(n, np.float32))
        f.create_dataset("terminals", data=np.zeros(n, bool))
        f.create_dataset("timeouts", data=timeouts)


def test_antmaze_finds_d4rl_file_then_the_env_decides(tmp_path, no_minari, capsys,
                                                      monkeypatch):
    (tmp_path / "data").mkdir()
    _d4rl_antmaze(tmp_path / "data" / "antmaze-medium-play-v2.hdf5")
    (tmp_path / "data" / "hopper-medium-v2.hdf5").write_bytes(b"")   # not AntMaze
    found = antmaze.find_data(tmp_path / "data", no_minari)
    assert [(s.task, s.kind, s.location.name) for s in found] == [
        ("medium-play", "d4rl", "antmaze-medium-play-v2.hdf5")]

    monkeypatch.setattr(antmaze, "env_available", lambda: False)
    rc, folder = _repro("antmaze", tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "antmaze-medium-play-v2.hdf5" in err and "gymnasium-robotics" in err
    assert not (folder / "results.json").exists()

    # With the env, D4RL-format files still cannot be scored in its (different) maze frame.
    monkeypatch.setattr(antmaze, "env_available", lambda: True)
    assert _repro("antmaze", tmp_path)[0] == 2
    assert "D4RL/antmaze" in capsys.readouterr().err


def test_antmaze_finds_minari_datasets(tmp_path, no_minari):
    for dataset_id in ("D4RL/antmaze/umaze-diverse-v1", "mujoco/hopper/medium-v0"):
        data = no_minari / dataset_id / "data"
        data.mkdir(parents=True)
        (data / "metadata.json").write_text("{}")
    found = antmaze.find_data(tmp_path / "nothing", no_minari)
    assert [(s.task, s.kind) for s in found] == [("umaze-diverse", "minari")]
    assert found[0].location == no_minari / "D4RL/antmaze/umaze-diverse-v1/data"


def test_antmaze_report_from_scores():
    params = {"agents": ["diffql-ln", "td3bc", "iql"], "steps": 1000, "seeds": [0, 1]}
    score = lambda a, b: {"score": [a, b], "curves": [([0], [a]), ([0], [b])]}
    results = {"umaze": {"diffql-ln": score(90.0, 80.0), "td3bc": score(10.0, 20.0),
                         "iql": score(60.0, None)},
               "large-play": {"diffql-ln": score(50.0, 70.0), "td3bc": score(0.0, 0.0),
                              "iql": score(40.0, 50.0)}}
    params = {**antmaze.SCALES["smoke"], **params}
    source = antmaze.Source("umaze", "seemrl", pathlib.Path("antmaze-umaze.hdf5"))
    md = antmaze.markdown(results, params, [source])
    assert "| umaze | — | 85.0 ± 5.0 | 15.0 ± 5.0 | 60.0 ± 0.0 | 94.3 |" in md
    # Averages over the tasks run, against the paper's average over the same tasks.
    assert "| average (these tasks) |  | 72.5 | 7.5 | 52.5 | 79.8 |" in md
    # Learning: the first evaluation against the run's score, per agent.
    assert "Learning on umaze: diffql-ln 85 at step 0 → 85; td3bc 15 at step 0 → 15" in md
    findings = md.split("**Against the paper.**")[1]
    assert "72.5" in findings and "79.8" in findings
    # Ordering: settled where every task's seeds are apart (td3bc), not where they overlap
    # (iql's 40–50 against Diffusion-QL + LN's 50–70 on large-play).
    assert "- **Holds.** td3bc: 7.5 against Diffusion-QL + LN's 72.5 (below" in findings
    assert "- **Not settled.** iql: 52.5 against" in findings
    # A short run that misses the paper's number by more than 10 points is not a difference.
    low = {t: {**r, "diffql-ln": score(20.0, 30.0)} for t, r in results.items()}
    low_md = antmaze.markdown(low, params, [source]).split("**Against the paper.**")[1]
    assert "- **Not at this scale.** Diffusion-QL + LN averages 25.0" in low_md
    full = antmaze.markdown(low, {**params, "steps": 1_000_000}, [source])
    assert "- **Differs.** Diffusion-QL + LN averages 25.0" in full
    specs = antmaze.run_specs({**antmaze.SCALES["smoke"], "agents": params["agents"]},
                              {"umaze": ("/x/antmaze-umaze.npz", "seemrl/FlatAntMaze-umaze-v0")})
    from seemrl import runconfig

    for spec in specs:        # every spec is a valid config of its algorithm
        train_cfg = runconfig.build(spec.train, spec.algo).train
        assert train_cfg.env == "seemrl/FlatAntMaze-umaze-v0" and train_cfg.steps == 200
    first = runconfig.build(specs[0].train, specs[0].algo).algo
    assert first.layer_norm and first.max_q_backup
