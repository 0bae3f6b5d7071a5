"""Confidence intervals over seeds: one seeded percentile bootstrap, used by every report.

A cell of an experiment has a handful of seeds (5 here, 10 in the paper); a reader wants its
mean and how far that mean could move with other seeds. The percentile bootstrap resamples
the seeds with replacement; with groups (datasets, each with its own seeds) it resamples
within each group and averages the group means, so every dataset keeps its weight.

Fewer than 2 values in a group give no interval (lo = hi = None): a single seed says nothing
about the spread, and a zero-width interval would claim it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


def resampled_means(groups: Sequence[Sequence[float]], rng: np.random.Generator,
                    n: int = RESAMPLES) -> np.ndarray | None:
    """Bootstrap draws of the mean over groups of each group's mean.

    Args:
      groups: G groups of values (e.g. per-seed scores, one group per dataset).
      rng: the generator (the caller seeds it, so a report is reproducible).
      n: number of resamples.

    Returns:
      (n,) draws, or None when some group has fewer than 2 values (or there is none).
    """
    arrays = [np.asarray(g, float) for g in groups]
    if not arrays or any(a.size < 2 for a in arrays):
        return None
    draws = np.zeros(n)
    for a in arrays:  # within each group: n resamples of its size, with replacement
        draws += a[rng.integers(0, a.size, size=(n, a.size))].mean(axis=1)
    return draws / len(arrays)


def interval(estimate: float | None, draws: np.ndarray | None,
             level: float = LEVEL) -> dict[str, Any]:
    """{"mean", "lo", "hi"}: the estimate and the percentile interval of its draws."""
    if draws is None:
        return {"mean": estimate, "lo": None, "hi": None}
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return {"mean": estimate, "lo": float(lo), "hi": float(hi)}


def mean_ci(values: Sequence[float | None], *, seed: int = 0, n: int = RESAMPLES,
            level: float = LEVEL) -> dict[str, Any]:
    """Mean of `values` (None left out) with its 95 % bootstrap interval; also `n`, the
    number of values it rests on."""
    vals = [float(v) for v in values if v is not None]
    est = float(np.mean(vals)) if vals else None
    draws = resampled_means([vals], np.random.default_rng(seed), n)
    return {**interval(est, draws, level), "n": len(vals)}


def grouped_mean_ci(groups: Sequence[Sequence[float]], *, seed: int = 0,
                    n: int = RESAMPLES, level: float = LEVEL) -> dict[str, Any]:
    """Mean over groups of each group's mean, with its bootstrap interval (resampling within
    each group); `n`: values per group."""
    groups = [[float(v) for v in g if v is not None] for g in groups]
    groups = [g for g in groups if g]
    est = float(np.mean([np.mean(g) for g in groups])) if groups else None
    draws = resampled_means(groups, np.random.default_rng(seed), n)
    return {**interval(est, draws, level), "n": [len(g) for g in groups]}


def excludes_zero(ci: dict[str, Any]) -> int:
    """+1 when the interval lies above zero, -1 below, 0 when it holds zero or is missing."""
    if ci.get("lo") is None or ci.get("hi") is None:
        return 0
    return 1 if ci["lo"] > 0 else -1 if ci["hi"] < 0 else 0
