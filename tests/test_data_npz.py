"""`.npz` datasets: same field names and semantics as D4RL files."""

from __future__ import annotations

import numpy as np
import pytest

from seemrl.data import load_dataset
from seemrl.data.npz import load_npz, save_npz
from seemrl.types import DataError, Dataset

OBS_DIM, ACT_DIM = 4, 2


def episodes(rng, kinds, lengths):
    """Flat rows of episodes ending 'terminal' or 'timeout', with true next observations."""
    cols = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                            "terminals", "timeouts")}
    for kind, t in zip(kinds, lengths, strict=True):
        states = rng.normal(size=(t + 1, OBS_DIM)).astype(np.float32)
        last = np.arange(t) == t - 1
        cols["observations"].append(states[:-1])
        cols["next_observations"].append(states[1:])
        cols["actions"].append(rng.uniform(-1, 1, (t, ACT_DIM)).astype(np.float32))
        cols["rewards"].append(rng.normal(size=t).astype(np.float32))
        cols["terminals"].append(last & (kind == "terminal"))
        cols["timeouts"].append(last & (kind == "timeout"))
    return {k: np.concatenate(v) for k, v in cols.items()}


@pytest.fixture
def raw():
    return episodes(np.random.default_rng(3), ["timeout", "terminal", "timeout"], [6, 4, 8])


def test_plain_npz_reads_all_fields(tmp_path, raw):
    np.savez(tmp_path / "d.npz", **raw)
    ds = load_npz(tmp_path / "d.npz")
    for key in ("observations", "next_observations", "actions", "rewards", "timeouts"):
        np.testing.assert_array_equal(getattr(ds, key), raw[key])
    np.testing.assert_array_equal(ds.terminals, raw["terminals"].astype(np.float32))
    np.testing.assert_array_equal(ds.episode_ends, raw["terminals"] | raw["timeouts"])
    assert ds.metadata["name"] == "d" and ds.metadata["format"] == "npz"


def test_column_rewards_and_derived_next_obs(tmp_path, raw):
    arrays = {k: raw[k] for k in ("observations", "actions", "terminals", "timeouts")}
    arrays["rewards"] = raw["rewards"][:, None]
    np.savez(tmp_path / "d.npz", **arrays)
    ds = load_npz(tmp_path / "d.npz")
    n = len(raw["observations"])
    # Timeout rows have no successor in the file; nor has the last row (a timeout here).
    kept = np.flatnonzero(~raw["timeouts"] | raw["terminals"])
    kept = kept[kept < n - 1]
    np.testing.assert_array_equal(ds.observations, raw["observations"][kept])
    np.testing.assert_array_equal(ds.next_observations, raw["observations"][kept + 1])
    np.testing.assert_array_equal(ds.rewards, raw["rewards"][kept])
    assert ds.rewards.shape == (len(kept),)


def test_round_trip_keeps_arrays_and_metadata(tmp_path, raw):
    ds = Dataset(
        observations=raw["observations"], actions=raw["actions"], rewards=raw["rewards"],
        next_observations=raw["next_observations"],
        terminals=raw["terminals"].astype(np.float32), timeouts=raw["timeouts"],
        episode_ends=raw["terminals"] | raw["timeouts"],
        metadata={"env_id": "Hopper-v5", "ref_min_score": -20.272305, "name": "mine",
                  "subset": {"fraction": 0.5, "seed": 1}, "seed_count": np.int64(3)})
    path = save_npz(tmp_path / "out.npz", ds)
    back = load_npz(path)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals",
                "timeouts", "episode_ends"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    for key in ("env_id", "ref_min_score", "name", "subset"):
        assert back.metadata[key] == ds.metadata[key]
    assert back.metadata["seed_count"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no tmp file left


def test_load_dataset_dispatches_npz(tmp_path, raw):
    np.savez(tmp_path / "d.npz", **raw)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "d.npz")).actions,
                                  raw["actions"])


def test_bad_inputs(tmp_path, raw):
    with pytest.raises(DataError, match="nothing.npz: no such file"):
        load_npz(tmp_path / "nothing.npz")

    (tmp_path / "junk.npz").write_bytes(b"PK not really a zip")
    with pytest.raises(DataError, match="junk.npz: not a readable .npz"):
        load_npz(tmp_path / "junk.npz")

    np.savez(tmp_path / "noterm.npz", **{k: v for k, v in raw.items() if k != "terminals"})
    with pytest.raises(DataError, match=r"noterm\.npz: missing key 'terminals'"):
        load_npz(tmp_path / "noterm.npz")

    np.savez(tmp_path / "len.npz", **dict(raw, actions=raw["actions"][:3]))
    with pytest.raises(DataError, match=r"len\.npz: key 'actions' has 3 rows"):
        load_npz(tmp_path / "len.npz")

    bad = dict(raw, rewards=raw["rewards"].copy())
    bad["rewards"][9] = np.nan
    np.savez(tmp_path / "nan.npz", **bad)
    with pytest.raises(DataError, match=r"nan\.npz: field 'rewards' has NaN/Inf at row 9"):
        load_npz(tmp_path / "nan.npz")

    # Object arrays need pickle, which an untrusted file must not get to run.
    np.savez(tmp_path / "pickled.npz", **dict(raw, observations=np.array(
        [object()] * len(raw["observations"]), dtype=object)))
    with pytest.raises(DataError, match="pickled.npz"):
        load_npz(tmp_path / "pickled.npz")
