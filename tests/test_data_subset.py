"""Seeded X % subsets: determinism, sizes, whole-trajectory mode, fragment boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seemrl.data.subset import subset
from seemrl.types import DataError, Dataset


def make_dataset(lengths, seed=0):
    """Episodes of the given lengths; observations[:, 0] is the row index, so every kept row
    can be traced back to the original."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    ends = np.zeros(n, bool)
    ends[np.cumsum(lengths) - 1] = True
    return Dataset(
        observations=obs, actions=rng.normal(size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, 3)).astype(np.float32),
        terminals=(ends & (rng.random(n) < 0.5)).astype(np.float32),
        timeouts=np.zeros(n, bool), episode_ends=ends, metadata={"name": "toy"})


def rows_of(ds):
    return ds.observations[:, 0].astype(int)


@pytest.fixture
def data():
    return make_dataset([10, 25, 7, 30, 12, 16])  # N = 100


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.1, 0.07, 0.01, 0.333])
def test_transition_subset_size_and_rows(data, fraction):
    sub = subset(data, fraction, seed=0)
    assert len(sub) == max(1, math.ceil(round(fraction * len(data), 9)))
    idx = rows_of(sub)
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    # Each kept row is the original row, with its own successor, reward and terminal.
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(data, name)[idx])
    assert sub.metadata["subset"] == {"fraction": fraction, "seed": 0,
                                      "mode": "transitions", "n_original": len(data)}
    assert sub.metadata["name"] == "toy"


def test_same_seed_same_rows_different_seed_different(data):
    a, b, c = (subset(data, 0.3, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(rows_of(a), rows_of(b))
    assert not np.array_equal(rows_of(a), rows_of(c))
    t1, t2 = (subset(data, 0.3, seed=5, mode="trajectories") for _ in range(2))
    np.testing.assert_array_equal(rows_of(t1), rows_of(t2))
    # Only 6 episodes, so two seeds may pick the same ones; some seed must not.
    assert any(rows_of(subset(data, 0.3, seed=s, mode="trajectories")).tolist()
               != rows_of(t1).tolist() for s in range(6, 16))


def test_full_fraction_is_the_whole_dataset(data):
    sub = subset(data, 1.0, seed=3)
    np.testing.assert_array_equal(rows_of(sub), np.arange(len(data)))
    np.testing.assert_array_equal(sub.episode_ends, data.episode_ends)


def test_fragment_ends_where_a_successor_was_dropped(data):
    sub = subset(data, 0.4, seed=1)
    idx = rows_of(sub)
    expected = [bool(data.episode_ends[i]) or k == len(idx) - 1 or idx[k + 1] != i + 1
                for k, i in enumerate(idx)]
    np.testing.assert_array_equal(sub.episode_ends, expected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.8])
def test_trajectory_mode_takes_whole_episodes(data, seed, fraction):
    sub = subset(data, fraction, seed=seed, mode="trajectories")
    idx = rows_of(sub)
    starts = np.concatenate([[0], np.flatnonzero(data.episode_ends)[:-1] + 1])
    ends = np.flatnonzero(data.episode_ends)
    episodes = [set(range(s, e + 1)) for s, e in zip(starts, ends, strict=True)]
    kept = set(idx.tolist())
    for ep in episodes:
        assert ep <= kept or not (ep & kept)  # each episode entirely in or entirely out
    target = math.ceil(fraction * len(data))
    longest = max(len(ep) for ep in episodes)
    assert target <= len(sub) < target + longest
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(sub.episode_ends, data.episode_ends[idx])
    assert sub.metadata["subset"]["mode"] == "trajectories"


@pytest.mark.parametrize("fraction", [0, 0.0, -1, 1.5, float("nan"), float("inf"), "0.5", None,
                                      True])
def test_bad_fraction_is_a_data_error(data, fraction):
    with pytest.raises(DataError, match="fraction"):
        subset(data, fraction, seed=0)


def test_bad_mode_and_seed(data):
    with pytest.raises(DataError, match="mode"):
        subset(data, 0.5, seed=0, mode="episodes")
    with pytest.raises(DataError, match="seed"):
        subset(data, 0.5, seed=None)


def test_percentages_of_100_rows_are_exact(data):
    assert len(data) == 100
    # 0.07 * 100 is 7.000000000000001 in floating point; the subset must still have 7 rows.
    for percent in (1, 7, 10, 29, 50, 100):
        assert len(subset(data, percent / 100, seed=0)) == percent


def test_next_actions_follow_episodes_and_survive_subsets():
    from tests.conftest import make_dataset

    data = make_dataset(200, episode_len=50).with_next_actions()
    a, nxt, ends = data.actions, data.next_actions, data.episode_ends
    for i in range(len(data)):
        expected = a[i] if ends[i] else a[i + 1]
        np.testing.assert_array_equal(nxt[i], expected)
    part = subset(data, 0.3, seed=1)
    rows = part.metadata.get("subset", {})
    assert part.next_actions is not None and len(part.next_actions) == len(part)
    # Every kept row keeps its true successor action, even when that row was dropped.
    full = {tuple(o): n for o, n in zip(data.observations, nxt, strict=True)}
    for o, n in zip(part.observations, part.next_actions, strict=True):
        np.testing.assert_array_equal(full[tuple(o)], n)
    assert rows["fraction"] == 0.3
