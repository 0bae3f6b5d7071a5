"""Random X % subsets of a dataset (SPEC §5.6: 100 / 50 / 10 / 1 % of transitions)."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from seemrl.types import DataError, Dataset

MODES = ("transitions", "trajectories")


def subset_size(fraction: float, n: int) -> int:
    """⌈fraction · n⌉, at least 1. Rounded to 9 decimals first so that float noise such as
    0.07 · 100 = 7.000000000000001 gives 7, not 8."""
    return max(1, math.ceil(round(fraction * n, 9)))


def check_fraction(fraction: float) -> float:
    """`fraction` as a float in (0, 1], else DataError naming `fraction`."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise DataError(f"fraction must be a number in (0, 1], got {fraction!r}")
    value = float(fraction)
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise DataError(f"fraction must be in (0, 1], got {fraction!r}")
    return value


def subset(
    dataset: Dataset,
    fraction: float,
    seed: int,
    mode: str = "transitions",
) -> Dataset:
    """A random, reproducible subset of `dataset`.

    Semantics:
      - "transitions": k = ⌈fraction · N⌉ transitions drawn uniformly without replacement by
        `numpy.random.default_rng(seed).choice(N, k, replace=False)`, kept in their original
        order (sorted indices). Same (dataset, fraction, seed) → same rows, on any machine.
      - "trajectories": whole episodes (as delimited by `episode_ends`) in the order of
        `default_rng(seed).permutation(n_episodes)`, taken until at least ⌈fraction · N⌉
        transitions are collected; kept in their original order. May overshoot by less
        than one episode.

    Every kept row keeps its own `next_observations`, reward and terminal from the full data,
    so TD targets stay exact. `episode_ends` is recomputed: a row ends a fragment when it
    ended an episode before or when its successor row was dropped, so per-episode returns
    and trajectory sampling on the subset see the fragments. `fraction=1` in "transitions"
    mode returns every row.

    Args:
      dataset: N transitions.
      fraction: share of transitions to keep, in (0, 1].
      seed: seed of the NumPy generator.
      mode: "transitions" or "trajectories".

    Returns:
      The subset; `metadata["subset"]` records fraction, seed, mode and the original size.

    Raises:
      DataError: fraction outside (0, 1] or NaN, or an unknown mode.
    """
    fraction = check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if mode not in MODES:
        raise DataError(f"mode must be one of {MODES}, got {mode!r}")
    n = len(dataset)
    k = subset_size(fraction, n)
    rng = np.random.default_rng(seed)
    if mode == "transitions":
        index = np.sort(rng.choice(n, size=k, replace=False))
    else:
        ends = np.flatnonzero(dataset.episode_ends)
        if len(ends) == 0 or ends[-1] != n - 1:
            ends = np.append(ends, n - 1)
        starts = np.concatenate([[0], ends[:-1] + 1])
        order = rng.permutation(len(ends))
        # Smallest prefix of the shuffled episodes that holds at least k transitions.
        taken = np.searchsorted(np.cumsum((ends - starts + 1)[order]), k) + 1
        chosen = np.sort(order[:taken])
        index = np.concatenate([np.arange(starts[i], ends[i] + 1) for i in chosen])

    out = dataset.take(index, subset={"fraction": fraction, "seed": int(seed), "mode": mode,
                                      "n_original": n})
    ends = out.episode_ends.copy()
    ends[:-1] |= np.diff(index) != 1
    ends[-1] = True
    return dataclasses.replace(out, episode_ends=ends)
