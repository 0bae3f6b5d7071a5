"""Local Minari datasets, written here with Minari's own writer in a temporary root."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

minari = pytest.importorskip("minari")
gym = pytest.importorskip("gymnasium")

from minari.data_collector.episode_buffer import EpisodeBuffer  # noqa: E402

from seemrl.data import load_dataset  # noqa: E402
from seemrl.data.minari import load_minari, save_minari  # noqa: E402
from seemrl.data.subset import subset  # noqa: E402
from seemrl.types import DataError, Dataset  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Minari's metadata nags

ENV_ID = "Pendulum-v1"  # a registered env needing no simulator: obs (3,), action (1,)
LENGTHS = [5, 8, 3]
KINDS = ["terminated", "truncated", "terminated"]


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "minari-root"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def episodes(seed=0, obs_dim=3):
    """Episode buffers plus the flat transitions they should read back as."""
    rng = np.random.default_rng(seed)
    buffers, flat = [], {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "ends")}
    for t, kind in zip(LENGTHS, KINDS, strict=True):
        states = rng.normal(size=(t + 1, obs_dim)).astype(np.float32)
        actions = rng.uniform(-2, 2, (t, 1)).astype(np.float32)
        rewards = rng.normal(size=t)
        last = np.arange(t) == t - 1
        term, trunc = last & (kind == "terminated"), last & (kind == "truncated")
        buffers.append(EpisodeBuffer(observations=states, actions=actions, rewards=rewards,
                                     terminations=term, truncations=trunc))
        for key, value in (("obs", states[:-1]), ("next", states[1:]), ("act", actions),
                           ("rew", rewards), ("term", term), ("trunc", trunc), ("ends", last)):
            flat[key].append(value)
    return buffers, {k: np.concatenate(v) for k, v in flat.items()}


def create(dataset_id, buffers, **kwargs):
    kwargs.setdefault("env", ENV_ID)
    return minari.create_dataset_from_buffers(dataset_id, buffers, **kwargs)


def assert_matches(ds, flat):
    np.testing.assert_array_equal(ds.observations, flat["obs"])
    np.testing.assert_array_equal(ds.next_observations, flat["next"])
    np.testing.assert_array_equal(ds.actions, flat["act"])
    np.testing.assert_array_equal(ds.rewards, flat["rew"].astype(np.float32))
    np.testing.assert_array_equal(ds.terminals, flat["term"].astype(np.float32))
    np.testing.assert_array_equal(ds.timeouts, flat["trunc"])
    np.testing.assert_array_equal(ds.episode_ends, flat["ends"])


def test_load_by_id(root):
    buffers, flat = episodes()
    create("test/pendulum/noisy-v0", buffers, ref_min_score=-1500.0, ref_max_score=-150.0)
    ds = load_minari("test/pendulum/noisy-v0")
    assert_matches(ds, flat)
    assert len(ds.episode_returns()) == len(LENGTHS)
    meta = ds.metadata
    assert meta["env_id"] == ENV_ID and meta["eval_env_id"] == ENV_ID
    assert meta["ref_min_score"] == -1500.0 and meta["ref_max_score"] == -150.0
    assert meta["name"] == "test/pendulum/noisy-v0" and meta["format"] == "minari"
    assert meta["source"] == str(root / "test/pendulum/noisy-v0" / "data")


def test_load_by_path_and_through_load_dataset(root):
    buffers, flat = episodes(seed=1)
    create("noisy-v1", buffers)
    for spec in (root / "noisy-v1", root / "noisy-v1" / "data"):
        assert_matches(load_minari(spec), flat)
        assert_matches(load_dataset(str(spec)), flat)
    assert_matches(load_dataset("noisy-v1"), flat)  # a local id
    assert_matches(load_minari("noisy-v1", root=root), flat)


def test_never_downloads(root, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(minari, "download_dataset", no_network)
    monkeypatch.setattr(minari.storage.hosting, "download_dataset", no_network)
    monkeypatch.setattr(minari, "load_dataset", no_network)
    with pytest.raises(DataError, match=r"'mujoco/hopper/medium-v0' not found locally.*never"):
        load_minari("mujoco/hopper/medium-v0")
    with pytest.raises(DataError, match="mujoco/hopper/medium-v0"):
        load_dataset("mujoco/hopper/medium-v0")
    buffers, flat = episodes()
    create("here-v0", buffers)
    assert_matches(load_minari("here-v0"), flat)


def dict_buffers(keys_dims):
    rng = np.random.default_rng(2)
    buffers = []
    for t in LENGTHS:
        obs = {k: rng.normal(size=(t + 1, d)).astype(np.float32) for k, d in keys_dims.items()}
        buffers.append(EpisodeBuffer(
            observations=obs, actions=rng.uniform(-1, 1, (t, 1)).astype(np.float32),
            rewards=rng.normal(size=t), terminations=np.arange(t) == t - 1,
            truncations=np.zeros(t, bool)))
    space = gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)
                             for k, d in keys_dims.items()})
    act = gym.spaces.Box(-1, 1, (1,), np.float32)
    return buffers, dict(env=None, observation_space=space, action_space=act)


def test_dict_observations(root):
    buffers, spaces = dict_buffers({"observation": 3, "goal": 2})
    create("maze-v0", buffers, **spaces)
    with pytest.raises(DataError, match=r"Dict/Tuple space with keys .*goal.*observation|"
                                        r"Dict/Tuple space with keys .*observation.*goal"):
        load_minari("maze-v0")
    ds = load_minari("maze-v0", obs_keys=["observation", "goal"])
    expected = np.concatenate([np.concatenate([b.observations["observation"][:-1],
                                               b.observations["goal"][:-1]], axis=1)
                               for b in buffers])
    np.testing.assert_array_equal(ds.observations, expected)
    assert ds.metadata["obs_keys"] == ["observation", "goal"]
    with pytest.raises(DataError, match="no array key"):
        load_minari("maze-v0", obs_keys=["observation", "velocity"])

    single, spaces = dict_buffers({"observation": 4})
    create("single-v0", single, **spaces)
    ds = load_minari("single-v0")  # one key: trivially flattenable
    np.testing.assert_array_equal(
        ds.observations, np.concatenate([b.observations["observation"][:-1] for b in single]))


def make_dataset(flat, **metadata):
    return Dataset(observations=flat["obs"], actions=flat["act"],
                   rewards=flat["rew"].astype(np.float32), next_observations=flat["next"],
                   terminals=flat["term"].astype(np.float32), timeouts=flat["trunc"],
                   episode_ends=flat["ends"], metadata=metadata)


def test_save_minari_is_readable_by_minari_and_round_trips(root):
    _, flat = episodes(seed=4)
    ds = make_dataset(flat)
    data_dir = save_minari("seemrl/pendulum-v0", ds, ENV_ID, ref_min_score=-1.0,
                           ref_max_score=2.0, description="test")
    assert data_dir == root / "seemrl/pendulum-v0" / "data"
    official = minari.load_dataset("seemrl/pendulum-v0")
    assert official.total_episodes == len(LENGTHS) and official.total_steps == sum(LENGTHS)
    assert official.env_spec.id == ENV_ID
    first = next(official.iterate_episodes())
    np.testing.assert_array_equal(first.observations,
                                  np.concatenate([flat["obs"][:5], flat["next"][4:5]]))
    back = load_minari("seemrl/pendulum-v0")
    for key in ("observations", "actions", "rewards", "next_observations", "terminals",
                "timeouts", "episode_ends"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    assert back.metadata["ref_min_score"] == -1.0 and back.metadata["ref_max_score"] == 2.0
    assert back.metadata["env_id"] == ENV_ID

    with pytest.raises(DataError, match="already exists"):
        save_minari("seemrl/pendulum-v0", ds, ENV_ID)
    # Fragments of a transition subset become their own episodes and come back as such.
    part = subset(ds, 0.5, seed=0)
    save_minari("seemrl/pendulum-v0", part, ENV_ID, overwrite=True)
    back = load_minari("seemrl/pendulum-v0")
    np.testing.assert_array_equal(back.observations, part.observations)
    np.testing.assert_array_equal(back.episode_ends, part.episode_ends)
    assert not any(p.name.startswith(".") for p in (root / "seemrl").iterdir())  # no tmp


def test_save_minari_with_unregistered_env_keeps_env_id(root):
    _, flat = episodes()
    save_minari("custom-v0", make_dataset(flat), "MyRobot-v3", root=root)
    assert load_minari("custom-v0").metadata["env_id"] == "MyRobot-v3"
    with pytest.raises(DataError, match="Malformed dataset ID"):
        save_minari("bad id!", make_dataset(flat), None)


def test_bad_episodes_name_the_key(root):
    buffers, _ = episodes()
    create("broken-v0", buffers)
    main = root / "broken-v0" / "data" / "main_data.hdf5"
    with h5py.File(main, "a") as f:
        obs = f["episode_1/observations"][()]
        del f["episode_1/observations"]
        f["episode_1/observations"] = obs[:-2]
    with pytest.raises(DataError, match=r"episode_1/observations' has \d+ rows, expected"):
        load_minari("broken-v0")

    create("nan-v0", buffers)
    with h5py.File(root / "nan-v0" / "data" / "main_data.hdf5", "a") as f:
        f["episode_2/rewards"][1] = np.nan
    row = sum(LENGTHS[:2]) + 1  # step 1 of episode 2 in the flat transitions
    with pytest.raises(DataError, match=rf"field 'rewards' has NaN/Inf at row {row}\b"):
        load_minari("nan-v0")

    create("nokey-v0", buffers)
    with h5py.File(root / "nokey-v0" / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/truncations"]
    with pytest.raises(DataError, match="missing key 'episode_0/truncations'"):
        load_minari("nokey-v0")
