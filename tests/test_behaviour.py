"""seemrl.behaviour: the catalogue, the locomotion datasets and the shipped policies; tiny
datasets."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from seemrl import behaviour
from seemrl.behaviour import files
from seemrl.behaviour import locomotion as gen
from seemrl.behaviour.policies import POLICY_DIR, load_policy, registry
from seemrl.config import ConfigError
from seemrl.data.d4rl import load_d4rl
from seemrl.types import DataError

SIZE = 2_000
ENV = "hopper"
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def _avg_complete_return(data):
    """Mean return of episodes ended by a terminal or the 1000-step limit (all if none)."""
    starts = np.concatenate([[0], np.flatnonzero(data.episode_ends)[:-1] + 1])
    ends = np.flatnonzero(data.episode_ends)
    rets = np.array([data.rewards[a:b + 1].sum(dtype=np.float64)
                     for a, b in zip(starts, ends, strict=True)])
    complete = np.array([data.terminals[b] > 0 or b - a + 1 == 1000
                         for a, b in zip(starts, ends, strict=True)])
    return rets[complete].mean() if complete.any() else rets.mean()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One tiny dataset of every level of ENV, made once: {level: path}."""
    root = tmp_path_factory.mktemp("datasets")
    return root, {level: gen.make_dataset(f"{ENV}-{level}", size=SIZE, seed=0, data_dir=root,
                                          progress=False)
                  for level in gen.LEVELS}


@pytest.mark.parametrize("level", gen.LEVELS)
def test_each_level_round_trips_through_the_loader(made, level):
    _, paths = made
    path = paths[level]
    data = load_d4rl(path)
    assert len(data) == SIZE
    assert data.metadata["name"] == f"seemrl/{ENV}-{level}-v0"
    assert data.metadata["env_id"] == gen.ENVS[ENV]
    assert data.metadata["seed"] == 0
    assert data.metadata["ref_max_score"] > data.metadata["ref_min_score"]
    assert np.all(np.abs(data.actions) <= 1.0)
    # Within an episode, each next observation is the following row's observation.
    inside = ~data.episode_ends[:-1]
    np.testing.assert_array_equal(data.next_observations[:-1][inside],
                                  data.observations[1:][inside])
    # The summary beside the file agrees with the file itself.
    summary = json.loads(path.with_name(path.name + ".json").read_text())
    assert summary["transitions"] == len(data)
    np.testing.assert_allclose(summary["avg_return"], _avg_complete_return(data), rtol=1e-6)
    files.verify_checksum(path)


def test_medium_expert_is_medium_then_expert(made):
    _, paths = made
    both = load_d4rl(paths["medium-expert"])
    policies = json.loads(both.metadata["policies"])
    assert [p["policy"] for p in policies] == [f"{ENV}-medium", f"{ENV}-expert"]
    assert sum(p["transitions"] for p in policies) == SIZE


def test_medium_replay_uses_the_recorded_snapshot_shares(made):
    _, paths = made
    used = json.loads(load_d4rl(paths["medium-replay"]).metadata["policies"])
    snaps = registry()[f"{ENV}-medium-replay"]["snapshots"]
    assert [u["file"] for u in used] == [s["file"] for s in snaps if int(SIZE * s["share"])]
    assert sum(u["transitions"] for u in used) == SIZE


def test_same_seed_same_bytes_other_seed_differs(made, tmp_path):
    _, paths = made
    again = gen.make_dataset(f"{ENV}-medium", size=SIZE, seed=0, data_dir=tmp_path,
                             progress=False)
    assert files.sha256(again) == files.sha256(paths["medium"])
    other = load_d4rl(gen.make_dataset(f"{ENV}-medium", size=SIZE, seed=1, data_dir=tmp_path,
                                       progress=False))
    first = load_d4rl(paths["medium"])
    assert not np.array_equal(first.observations, other.observations)
    assert not np.array_equal(first.actions, other.actions)


def test_shipped_policies_load_and_act():
    import gymnasium as gym
    import jax

    reg = registry()
    assert {f"{env}-{lvl}" for env in ("hopper",) for lvl in ("random", "medium", "expert")} \
        <= set(reg)
    for name, record in reg.items():
        files = [s["file"] for s in record.get("snapshots", [])] or [record["file"]]
        env = gym.make(record["env_id"])
        obs = np.stack([env.reset(seed=i)[0] for i in range(5)]).astype(np.float32)
        for file in files:
            pol = load_policy(name, file=file)
            act = np.asarray(pol.act(pol.params, obs, jax.random.PRNGKey(0)))
            assert act.shape == (5,) + env.action_space.shape, name
            assert np.all(act >= env.action_space.low) and np.all(act <= env.action_space.high)
        env.close()


def test_expert_beats_random_on_a_short_rollout():
    rewards = {}
    for level in ("random", "expert"):
        pol = load_policy(f"{ENV}-{level}")
        data = gen.rollout(pol.act, pol.params, gen.ENVS[ENV], 1_000, seed=3, n_envs=4)
        rewards[level] = data.rewards.mean()
    assert rewards["expert"] > rewards["random"]


def test_list_datasets_reports_what_is_on_disk(made, tmp_path):
    root, paths = made
    rows = behaviour.list_datasets(root)
    on_disk = {r["path"]: r for r in rows if r["on_disk"]}
    assert set(on_disk) == {str(p) for p in paths.values()}
    for path in paths.values():
        row = on_disk[str(path)]
        assert row["transitions"] == SIZE
        assert row["size_bytes"] == path.stat().st_size
        np.testing.assert_allclose(row["avg_return"], _avg_complete_return(load_d4rl(path)),
                                   rtol=1e-6)
    assert {r["name"] for r in rows} == set(behaviour.dataset_names())
    assert set(gen.dataset_names()) < set(behaviour.dataset_names())  # AntMaze's too
    assert all(r["can_make"] for r in rows if r["name"].startswith(f"{ENV}-"))
    empty = behaviour.list_datasets(tmp_path)
    assert len(empty) == len(behaviour.dataset_names())
    assert not any(r["on_disk"] for r in empty)


def test_resolve_builtin_reuses_a_verified_file_and_rejects_a_tampered_one(made, tmp_path):
    _, paths = made
    default = behaviour.dataset_path(f"{ENV}-expert", tmp_path)
    for suffix in ("", ".sha256", ".json"):
        shutil.copy(str(paths["expert"]) + suffix, str(default) + suffix)
    assert behaviour.resolve_builtin(f"{ENV}-expert", tmp_path) == default  # no 1M-step remake
    assert behaviour.resolve_builtin("hopper-medium-v2", tmp_path) is None  # D4RL's, not ours
    with open(default, "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataError, match="checksum"):
        behaviour.resolve_builtin(f"{ENV}-expert", tmp_path)


def _summary(path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_datasets_made_with_since_replaced_policies_are_flagged(made, tmp_path, capsys):
    root, paths = made
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    info = {level: _summary(path) for level, path in paths.items()}
    assert all(gen.changed_policies(i, policies) == [] for i in info.values())

    shutil.copy(policies / f"{ENV}_medium.npz", policies / f"{ENV}_expert.npz")  # retrained
    assert gen.changed_policies(info["expert"], policies) == [f"{ENV}_expert.npz"]
    assert gen.changed_policies(info["medium-expert"], policies) == [f"{ENV}_expert.npz"]
    assert gen.changed_policies(info["medium"], policies) == []

    # Made before policy digests were recorded: the policy's measured return tells.
    undigested = [{k: v for k, v in u.items() if k != "sha256"}
                  for u in json.loads(info["medium"]["policies"])]
    old = {**info["medium"], "policies": json.dumps(undigested)}
    assert gen.changed_policies(old, policies) == []
    reg = json.loads((policies / "policies.json").read_text())
    reg[f"{ENV}-medium"]["return_mean"] += 1.0
    # Replay snapshots picked again from another run: the set of files differs.
    snaps = reg[f"{ENV}-medium-replay"]["snapshots"]
    dropped = snaps.pop()
    snaps[-1]["share"] += dropped["share"]
    (policies / "policies.json").write_text(json.dumps(reg))
    assert gen.changed_policies(old, policies) == [f"{ENV}_medium.npz"]
    assert gen.changed_policies(info["medium-replay"], policies) == [dropped["file"]]

    # With the shipped policies: a summary recording another digest is stale, and reusing
    # the file warns but keeps it.
    default = behaviour.dataset_path(f"{ENV}-medium", tmp_path)
    for suffix in ("", ".sha256"):
        shutil.copy(str(paths["medium"]) + suffix, str(default) + suffix)
    edited = [{**u, "sha256": "0" * 64} for u in json.loads(info["medium"]["policies"])]
    default.with_name(default.name + ".json").write_text(
        json.dumps({**info["medium"], "policies": json.dumps(edited)}))
    capsys.readouterr()
    assert behaviour.resolve_builtin(f"{ENV}-medium", tmp_path) == default
    err = capsys.readouterr().err
    assert "changed" in err and f"{ENV}_medium.npz" in err and len(err.splitlines()) == 1
    rows = {r["path"]: r for r in behaviour.list_datasets(tmp_path) if r["on_disk"]}
    assert rows[str(default)]["stale"] is True
    assert all(r["stale"] is False for r in behaviour.list_datasets(root) if r["on_disk"])


def test_bad_names_and_unwritable_directories_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="hopper-medium-replay") as err:
        gen.make_dataset("hopper-mediocre", size=SIZE, data_dir=tmp_path, progress=False)
    assert all(name in str(err.value) for name in gen.dataset_names())
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match=re.escape(str(blocker))):
        gen.make_dataset(f"{ENV}-random", size=SIZE, data_dir=blocker / "sub", progress=False)
    with pytest.raises(DataError, match="format"):
        gen.make_dataset(f"{ENV}-random", size=SIZE, data_dir=tmp_path, fmt="csv",
                         progress=False)


def test_the_catalogue_refuses_another_familys_option(tmp_path):
    with pytest.raises(ConfigError, match="--controller does not apply to hopper-medium"):
        behaviour.make_dataset("hopper-medium", size=SIZE, data_dir=tmp_path,
                               controller=tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="--retrain does not apply to antmaze-umaze"):
        behaviour.make_dataset("antmaze-umaze", size=SIZE, data_dir=tmp_path, retrain=True)
    with pytest.raises(ConfigError, match="--size"):
        behaviour.make_dataset("hopper-medium", size=0, data_dir=tmp_path)
    with pytest.raises(DataError, match="antmaze-umaze"):  # every family's names listed
        behaviour.make_dataset("hopper-mediocre", data_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written on a refusal


def test_minari_format_writes_a_loadable_dataset(tmp_path):
    pytest.importorskip("minari")
    from seemrl.data.minari import load_minari

    path = gen.make_dataset(f"{ENV}-medium", size=SIZE, data_dir=tmp_path, fmt="minari",
                            progress=False)
    data = load_minari(str(path))
    assert len(data) == SIZE
    assert data.metadata.get("env_id") == gen.ENVS[ENV]


@pytest.fixture(scope="module")
def tiny_sac_run(tmp_path_factory):
    """A few thousand steps of online SAC on Hopper, snapshots every 1 000 steps."""
    from seemrl.behaviour.sac import SACConfig, train

    run = tmp_path_factory.mktemp("sac")
    cfg = SACConfig(env="Hopper-v5", steps=3_000, start_steps=1_000, chunk=500,
                    eval_every=1_000, eval_episodes=1, hidden=(32, 32), batch_size=64)
    result = train(cfg, run, log=lambda s: None)
    return run, result


def test_sac_run_writes_its_curve_and_snapshots(tiny_sac_run):
    run, result = tiny_sac_run
    curves = json.loads((run / "curves.json").read_text())
    assert [c["step"] for c in curves] == [1_000, 2_000, 3_000]
    assert all(np.isfinite(c["return_mean"]) for c in curves)
    assert result["best"] in curves
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        f"actor_{s:07d}.npz" for s in (1_000, 2_000, 3_000)]


def test_select_from_run_picks_only_the_levels_asked_for(tiny_sac_run, tmp_path):
    from seemrl.behaviour import policies

    run, _ = tiny_sac_run
    # A band below any return makes every snapshot an "expert" and none a medium.
    records = policies.select_from_run(run, tmp_path, log=lambda s: None, top_k=2,
                                       band=(-1e6, -1e6 + 1), levels=("expert",))
    assert set(records) == {"hopper-expert"}
    assert set(registry(tmp_path)) == {"hopper-expert"}
    assert {p.name for p in tmp_path.glob("*.npz")} == {"hopper_expert.npz"}
    record = records["hopper-expert"]
    assert record["train_step"] in (1_000, 2_000, 3_000)
    assert record["config"]["steps"] == 3_000
    # A later selection of other levels merges into the same registry.
    policies.select_from_run(run, tmp_path, log=lambda s: None, levels=("random",))
    assert set(registry(tmp_path)) == {"hopper-expert", "hopper-random"}
    loaded = load_policy("hopper-expert", tmp_path)
    assert loaded.env_id == "Hopper-v5"


def test_retrain_repeats_the_recorded_run_and_picks_its_levels_again(tiny_sac_run, tmp_path):
    from seemrl.behaviour import policies

    run, _ = tiny_sac_run
    shipped = tmp_path / "shipped"
    policies.select_from_run(run, shipped, log=lambda s: None, levels=("random",))
    policies.select_from_run(run, shipped, log=lambda s: None, top_k=1,
                             band=(-1e6, -1e6 + 1), levels=("expert",))
    assert policies.same_run("hopper-random", "hopper-expert", shipped)
    out = tmp_path / "retrained"
    records = policies.retrain("hopper-random", tmp_path / "work", out, log=lambda s: None,
                               policy_dir=shipped)
    # Same recorded config and seed: the same run, step for step.
    def curve(path):
        return [{k: v for k, v in c.items() if k != "wall_s"}
                for c in json.loads((path / "curves.json").read_text())]

    assert curve(tmp_path / "work") == curve(run)
    assert "hopper-random" in records
    again = np.load(out / "hopper_random.npz")
    first = np.load(shipped / "hopper_random.npz")
    assert sorted(again.files) == sorted(first.files)
    for key in first.files:
        np.testing.assert_array_equal(again[key], first[key])


def test_shipped_levels_know_which_run_they_came_from():
    from seemrl.behaviour.policies import same_run

    for env in ("hopper", "walker2d", "halfcheetah"):
        # random and medium-replay are the start and history of the medium policy's run.
        assert same_run(f"{env}-medium", f"{env}-medium-replay")
        assert same_run(f"{env}-random", f"{env}-medium")
    assert same_run("walker2d-medium", "walker2d-expert")
    # Hopper's and HalfCheetah's experts come from second, longer runs (docs/DATASETS.md).
    assert not same_run("hopper-medium", "hopper-expert")
    assert not same_run("halfcheetah-medium", "halfcheetah-expert")
    assert not same_run("hopper-medium", "walker2d-medium")
    assert not same_run("hopper-medium", "no-such-policy")
