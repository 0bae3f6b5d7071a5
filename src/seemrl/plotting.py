"""Figure helpers shared by the demo, reports and experiments (matplotlib imported lazily).

Convention: each seed is a thin translucent line, the mean over seeds a bold line of the same
colour; quantities that explode go on log axes.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series(records: Sequence[dict], key: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` for one seed from metrics records (missing/None skipped)."""
    rows = [(r["step"], r[key]) for r in records
            if r.get("seed") == seed and r.get(key) is not None]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows, strict=True)
    return np.asarray(steps, float), np.asarray(values, float)


def seeds_and_mean(ax, curves: Sequence[tuple[np.ndarray, np.ndarray]], color, label: str,
                   transform=lambda v: v) -> None:
    """Thin line per seed, bold mean over the seeds at the steps they all share."""
    curves = [(s, transform(v)) for s, v in curves if len(s)]
    if not curves:
        return
    marker = "o" if max(len(s) for s, _ in curves) <= 12 else None  # sparse: show the points
    for s, v in curves:
        ax.plot(s, v, color=color, lw=0.8, alpha=0.35, marker=marker, ms=2.5)
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    if common:
        stacked = np.stack([np.interp(common, s, v) for s, v in curves])
        with np.errstate(all="ignore"):
            ax.plot(common, np.nanmean(stacked, axis=0), color=color, lw=2.2, label=label,
                    marker=marker, ms=4)


def save(fig, path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    pyplot().close(fig)
    return path
