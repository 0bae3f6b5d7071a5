"""D4RL-format HDF5 reading/writing, `load_dataset` dispatch and `describe`/`print_info`.

Every file is written here with the quirks of real D4RL files; expectations come from the
episodes the test constructs, or from a plain-loop re-statement of the "q-learning" view.
"""

from __future__ import annotations

import io
import math

import h5py
import numpy as np
import pytest

from seemrl.data import describe, load_dataset, print_info
from seemrl.data.d4rl import load_d4rl, save_d4rl
from seemrl.types import DataError

OBS_DIM, ACT_DIM = 3, 2


def make_episodes(rng, kinds, lengths):
    """Flat D4RL rows for episodes ending 'terminal', 'timeout' or 'none' (a bare data break).

    Returns raw arrays with true next_observations and the expected episode_ends."""
    cols = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                            "terminals", "timeouts", "ends")}
    for kind, t in zip(kinds, lengths, strict=True):
        states = rng.normal(size=(t + 1, OBS_DIM)).astype(np.float32)
        cols["observations"].append(states[:-1])
        cols["next_observations"].append(states[1:])
        cols["actions"].append(rng.uniform(-1, 1, (t, ACT_DIM)).astype(np.float32))
        cols["rewards"].append(rng.normal(size=t).astype(np.float32))
        last = np.arange(t) == t - 1
        cols["terminals"].append(last & (kind == "terminal"))
        cols["timeouts"].append(last & (kind == "timeout"))
        cols["ends"].append(last)
    return {k: np.concatenate(v) for k, v in cols.items()}


def write_h5(path, raw, keys=None, column_2d=False, extras=None):
    """Writes `raw[keys]`; rewards/terminals/timeouts as (N, 1) when column_2d."""
    keys = keys or ("observations", "next_observations", "actions", "rewards", "terminals",
                    "timeouts")
    with h5py.File(path, "w") as f:
        for key in keys:
            value = raw[key]
            if column_2d and value.ndim == 1:
                value = value[:, None]
            f.create_dataset(key, data=value)
        if extras:
            extras(f)
    return path


def qlearning_reference(raw):
    """The derived view re-stated as a loop (D4RL's qlearning_dataset, except that a row that
    is terminal is kept even at the end of the file: its next observation is never used)."""
    obs, n = raw["observations"], len(raw["observations"])
    rows = [i for i in range(n)
            if raw["terminals"][i] or (not raw["timeouts"][i] and i < n - 1)]
    next_obs = np.stack([obs[i + 1] if i + 1 < n else obs[i] for i in rows])
    ends = [bool(raw["terminals"][i]) or k == len(rows) - 1 or rows[k + 1] != i + 1
            for k, i in enumerate(rows)]
    return np.array(rows), next_obs, np.array(ends)


@pytest.fixture
def raw():
    return make_episodes(np.random.default_rng(0), ["terminal", "timeout", "terminal",
                                                    "timeout"], [7, 9, 5, 6])


@pytest.mark.parametrize("column_2d", [False, True])
def test_stored_next_observations_keep_every_row(tmp_path, raw, column_2d):
    path = write_h5(tmp_path / "hopper-test.hdf5", raw, column_2d=column_2d)
    ds = load_d4rl(path)
    assert len(ds) == len(raw["observations"])
    for key in ("observations", "next_observations", "actions", "rewards", "timeouts"):
        np.testing.assert_array_equal(getattr(ds, key), raw[key])
    assert ds.rewards.shape == ds.terminals.shape == (len(ds),)
    assert ds.terminals.dtype == np.float32
    np.testing.assert_array_equal(ds.terminals, raw["terminals"].astype(np.float32))
    np.testing.assert_array_equal(ds.episode_ends, raw["ends"])
    assert ds.metadata["next_observations"] == "stored"
    assert ds.metadata["name"] == "hopper-test"
    assert ds.metadata["source"] == str(path.resolve())


@pytest.mark.parametrize("column_2d", [False, True])
def test_antmaze_like_file_derives_next_obs_and_drops_timeouts(tmp_path, raw, column_2d):
    keys = ("observations", "actions", "rewards", "terminals", "timeouts")
    ds = load_d4rl(write_h5(tmp_path / "antmaze.hdf5", raw, keys=keys, column_2d=column_2d))
    rows, next_obs, ends = qlearning_reference(raw)
    assert len(ds) == len(rows) < len(raw["observations"])
    np.testing.assert_array_equal(ds.observations, raw["observations"][rows])
    np.testing.assert_array_equal(ds.actions, raw["actions"][rows])
    np.testing.assert_array_equal(ds.rewards, raw["rewards"][rows])
    np.testing.assert_array_equal(ds.next_observations, next_obs)
    np.testing.assert_array_equal(ds.episode_ends, ends)
    assert not ds.timeouts.any()
    assert ds.metadata["next_observations"] == "derived"
    assert ds.metadata["dropped_rows"] == len(raw["observations"]) - len(rows)
    # Within an episode, the derived successor is the true one.
    within = ~raw["ends"][rows]
    np.testing.assert_array_equal(ds.next_observations[within],
                                  raw["next_observations"][rows][within])


def test_missing_timeouts_means_none(tmp_path, raw):
    keys = ("observations", "next_observations", "actions", "rewards", "terminals")
    ds = load_d4rl(write_h5(tmp_path / "d.hdf5", raw, keys=keys))
    assert len(ds) == len(raw["observations"]) and not ds.timeouts.any()
    # Episode boundaries are still found: at terminals and where the data breaks.
    np.testing.assert_array_equal(ds.episode_ends, raw["ends"])

    derived = load_d4rl(write_h5(tmp_path / "e.hdf5", raw, keys=keys[:1] + keys[2:]))
    # Without timeouts only the file's last row (not terminal here) has no successor.
    last_terminal = bool(raw["terminals"][-1])
    assert len(derived) == len(raw["observations"]) - (0 if last_terminal else 1)


def test_data_break_without_flags_ends_an_episode(tmp_path):
    raw = make_episodes(np.random.default_rng(1), ["none", "none", "terminal"], [4, 6, 3])
    ds = load_d4rl(write_h5(tmp_path / "d.hdf5", raw))
    assert not ds.terminals[raw["ends"] & ~raw["terminals"]].any()
    np.testing.assert_array_equal(ds.episode_ends, raw["ends"])
    assert len(ds.episode_returns()) == 3


def test_infos_ignored_metadata_kept(tmp_path, raw):
    def extras(f):
        f.create_dataset("infos/qpos", data=np.zeros((len(raw["observations"]), 5)))
        f.create_dataset("metadata/ref_min_score", data=np.float64(-20.5))
        f.create_dataset("metadata/ref_max_score", data=np.float32(3234.25))
        f.create_dataset("metadata/env_id", data=b"Hopper-v5")
        f.create_dataset("metadata/iteration", data=np.int64(7))
        f.create_dataset("metadata/policy/fc0/weight", data=np.ones((4, 4)))
        f.create_dataset("metadata/policy/nonlinearity", data=b"relu")
        f["metadata"].attrs["algorithm"] = "SAC"
        f.attrs["collector"] = np.bytes_(b"scripted")

    ds = load_d4rl(write_h5(tmp_path / "d.hdf5", raw, extras=extras))
    meta = ds.metadata
    assert meta["env_id"] == "Hopper-v5" and isinstance(meta["env_id"], str)
    assert meta["ref_min_score"] == -20.5 and type(meta["ref_min_score"]) is float
    assert meta["ref_max_score"] == float(np.float32(3234.25))
    assert meta["iteration"] == 7 and type(meta["iteration"]) is int
    assert meta["policy/nonlinearity"] == "relu"
    assert meta["algorithm"] == "SAC" and meta["collector"] == "scripted"
    assert not any(k.startswith("policy/fc0") or k.startswith("qpos") for k in meta)


def test_save_load_round_trip(tmp_path, raw):
    keys = ("observations", "actions", "rewards", "terminals", "timeouts")
    ds = load_d4rl(write_h5(tmp_path / "antmaze.hdf5", raw, keys=keys))
    out = save_d4rl(tmp_path / "out" / "copy.hdf5", ds,
                    extra_metadata={"env_id": "AntMaze-v5", "ref_max_score": 1.0})
    back = load_d4rl(out)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals",
                "timeouts", "episode_ends"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    assert back.metadata["env_id"] == "AntMaze-v5" and back.metadata["ref_max_score"] == 1.0
    assert back.metadata["name"] == "antmaze"  # the name travels with the data
    with h5py.File(out) as f:
        assert f["rewards"].shape == (len(ds),) and f["rewards"].dtype == np.float32
        assert f["terminals"].dtype == bool and f["timeouts"].dtype == bool
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.hdf5"]  # no tmp left


def test_bad_inputs_name_the_file_and_key(tmp_path, raw):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(DataError, match="nope.hdf5: no such file"):
        load_d4rl(missing)

    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="garbage.hdf5: not a readable HDF5"):
        load_d4rl(garbage)

    no_actions = write_h5(tmp_path / "noact.hdf5", raw,
                          keys=("observations", "rewards", "terminals"))
    with pytest.raises(DataError, match=r"noact\.hdf5: missing key 'actions'"):
        load_d4rl(no_actions)

    short = dict(raw, rewards=raw["rewards"][:-2])
    with pytest.raises(DataError, match=r"short\.hdf5: key 'rewards' has \d+ rows"):
        load_d4rl(write_h5(tmp_path / "short.hdf5", short))


@pytest.mark.parametrize("field,row,value", [("observations", 5, np.nan),
                                             ("rewards", 11, np.inf),
                                             ("actions", 0, -np.inf),
                                             ("next_observations", 20, np.nan)])
def test_non_finite_values_name_field_and_row(tmp_path, raw, field, row, value):
    bad = {k: v.copy() for k, v in raw.items()}
    bad[field][row] = value
    with pytest.raises(DataError, match=rf"bad\.hdf5: field '{field}' has NaN/Inf at row {row}"):
        load_d4rl(write_h5(tmp_path / "bad.hdf5", bad))


def test_load_dataset_dispatch(tmp_path, raw):
    path = write_h5(tmp_path / "d.h5", raw)
    np.testing.assert_array_equal(load_dataset(str(path)).rewards, raw["rewards"])
    with pytest.raises(DataError, match="missing.hdf5: no such file"):
        load_dataset(str(tmp_path / "missing.hdf5"))
    text = tmp_path / "data.csv"
    text.write_text("1,2,3")
    with pytest.raises(DataError, match=r"data\.csv: unsupported file type"):
        load_dataset(text)
    with pytest.raises(DataError, match="dataset 'surely-not-a-dataset-name' not found"):
        load_dataset("surely-not-a-dataset-name")


def test_describe_and_print_info(tmp_path, raw):
    from rich.console import Console

    ds = load_d4rl(write_h5(tmp_path / "d.hdf5", raw))
    info = describe(ds)
    lengths = [7, 9, 5, 6]
    bounds = np.cumsum([0] + lengths)
    returns = [raw["rewards"][a:b].sum(dtype=np.float64)
               for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert info["transitions"] == sum(lengths) and info["episodes"] == len(lengths)
    assert info["obs_shape"] == [OBS_DIM] and info["act_shape"] == [ACT_DIM]
    assert math.isclose(info["episode_return"]["mean"], np.mean(returns), rel_tol=1e-9)
    assert math.isclose(info["episode_return"]["min"], min(returns), rel_tol=1e-9)
    assert info["episode_length"]["max"] == max(lengths)
    assert info["terminals"] == 2 and info["timeouts"] == 2

    buf = io.StringIO()
    print_info(ds, console=Console(file=buf, width=150))
    text = buf.getvalue()
    assert f"{sum(lengths)}" in text and "episode return" in text and "(3,)" in text


def test_load_dataset_tries_builtin_names_then_minari_ids(tmp_path, raw, monkeypatch):
    import seemrl.behaviour

    made = write_h5(tmp_path / "made.hdf5", raw)
    calls = []

    def resolve_builtin(name):
        calls.append(name)
        return made if name == "toy-builtin" else None

    monkeypatch.setattr(seemrl.behaviour, "resolve_builtin", resolve_builtin)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    np.testing.assert_array_equal(load_dataset("toy-builtin").rewards, raw["rewards"])
    with pytest.raises(DataError, match=r"'other' not found; tried .*built-in.*Minari id"):
        load_dataset("other")
    # Names with a path separator are never built-in names (Minari ids may have them).
    with pytest.raises(DataError, match="'ns/other-v0' not found"):
        load_dataset("ns/other-v0")
    assert calls == ["toy-builtin", "other"]
