"""The figures of `repro fraction`: Fig. 9's layout (LN − no-LN per fraction per algorithm,
with CIs, the paper's values on a twin axis) and the absolute scores per dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.repro.fraction import ALGOS, CRITICS, PAPER_DIFF

MARKERS = "osD^v<>"


def _pos(fractions) -> dict[float, int]:
    return {f: i for i, f in enumerate(sorted(fractions, reverse=True))}


def _errorbar(ax, x, ci: dict[str, Any], **kw) -> None:
    if ci.get("mean") is None:
        return
    if ci.get("lo") is None:
        ax.plot([x], [ci["mean"]], "_", ms=14, mew=2, **kw)
        return
    ax.errorbar([x], [ci["mean"]], yerr=[[ci["mean"] - ci["lo"]], [ci["hi"] - ci["mean"]]],
                fmt="_", ms=14, mew=2, capsize=4, lw=1.5, **kw)


def difference(cells: list[dict[str, Any]], summary: dict[str, Any]):
    """Per algorithm: LN's gain (mean over datasets of LN − no-LN, bar with its 95 % CI)
    against the fraction, each dataset's mean over seed pairs as markers; the paper's summed
    difference on a right axis (grey diamonds)."""
    from matplotlib.patches import Patch

    plt = plotting.pyplot()
    algos = list(summary)
    fig, axes = plt.subplots(1, len(algos), figsize=(5.4 * len(algos), 4.6), squeeze=False)
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    for ax, algo in zip(axes[0], algos, strict=True):
        s = summary[algo]
        fracs = sorted({float(f) for f in s["by_fraction"]} | set(PAPER_DIFF[algo]),
                       reverse=True)
        pos = _pos(fracs)
        for f_text, row in s["by_fraction"].items():
            x, g = pos[float(f_text)], row["gain"]
            if g["mean"] is None:
                ax.text(x, 0, "pending", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            ax.bar(x, g["mean"], width=0.55, alpha=0.4,
                   color="tab:blue" if g["mean"] >= 0 else "tab:red")
            _errorbar(ax, x, g, color="k")
        for k, d in enumerate(datasets):
            for c in cells:
                if c["algo"] == algo and c["dataset"] == d and c["diff_ci"]["mean"] is not None:
                    ax.plot(pos[c["fraction"]] + 0.18, c["diff_ci"]["mean"],
                            MARKERS[k % len(MARKERS)], color="tab:green", ms=5,
                            mfc="none", label=d)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(fracs)), [f"{100 * f:g} %" for f in fracs])
        ax.set_xlim(-0.6, len(fracs) - 0.4)
        ax.set_xlabel("fraction of the dataset's transitions")
        ax.set_ylabel("LN − no-LN normalised score\n(here, mean over datasets)")
        ax.set_title(f"{ALGOS[algo]}: {s['verdict']} ({s['runs_finished']}/{s['runs']} runs)")
        ax.grid(alpha=0.3, axis="y")
        twin = ax.twinx()
        paper = sorted(PAPER_DIFF[algo], reverse=True)
        twin.plot([pos[f] for f in paper], [PAPER_DIFF[algo][f] for f in paper], "D--",
                  color="tab:gray", ms=5, lw=1)
        _align_zero(ax, twin)
        twin.set_ylabel("paper: LN − no-LN, sum of 9 datasets", color="tab:gray")
        twin.tick_params(axis="y", colors="tab:gray")
    seen = dict(zip(*reversed(axes[0, 0].get_legend_handles_labels()), strict=True))
    handles = [Patch(color="tab:blue", alpha=0.4, label="LN better (bar: mean, 95 % CI)"),
               Patch(color="tab:red", alpha=0.4, label="LN worse"),
               *seen.values(),
               plt.Line2D([], [], marker="D", ls="--", color="tab:gray",
                          label="paper, Σ 9 datasets (right axis)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    fig.suptitle("LayerNorm critic minus plain critic (Fig. 9's layout): score = mean of the "
                 "last evaluations\nleft axes: here; right axes: the paper")
    fig.tight_layout(rect=(0, 0.08, 1, 0.92), w_pad=3.0)
    return fig


def _align_zero(ax, twin) -> None:
    """Both y axes put zero at the same height, so signs read off one horizontal line."""
    extents = []
    for a in (ax, twin):
        lo, hi = a.get_ylim()
        extents.append((max(-lo, 0.0), max(hi, 0.0)))
    below = [n / (n + p) if n + p > 0 else 0.5 for n, p in extents]
    f = float(np.clip(max(below), 0.15, 0.85))  # share of each axis below zero
    for a, (neg, pos) in zip((ax, twin), extents, strict=True):
        neg, pos = max(neg, 1e-9), max(pos, 1e-9)
        if neg / (neg + pos) < f:
            neg = f / (1 - f) * pos
        else:
            pos = (1 - f) / f * neg
        a.set_ylim(-neg * 1.05, pos * 1.05)


def scores(cells: list[dict[str, Any]]):
    """Rows: algorithms; columns: datasets. Each critic's score against the fraction: seeds
    (dots), mean with its 95 % CI (bar); unfinished runs left out (the table lists them)."""
    plt = plotting.pyplot()
    algos = list(dict.fromkeys(c["algo"] for c in cells))
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    fig, axes = plt.subplots(len(algos), len(datasets), squeeze=False,
                             figsize=(4.2 * len(datasets), 3.4 * len(algos)))
    colors = {"no_ln": ("tab:red", "plain critic", -0.12),
              "ln": ("tab:blue", "LayerNorm critic", 0.12)}
    for i, algo in enumerate(algos):
        fracs = sorted({c["fraction"] for c in cells if c["algo"] == algo}, reverse=True)
        pos = _pos(fracs)
        for j, d in enumerate(datasets):
            ax = axes[i, j]
            for c in cells:
                if c["algo"] != algo or c["dataset"] != d:
                    continue
                for k in CRITICS:
                    color, label, dx = colors[k]
                    r = c[k]
                    x = pos[c["fraction"]] + dx
                    if not r["finished"]:
                        ax.text(x, 0.02, "pending", transform=ax.get_xaxis_transform(),
                                ha="center", va="bottom", fontsize=7, rotation=90,
                                color=color, alpha=0.7)
                        continue
                    vals = [v for v in r["score"] if v is not None]
                    ax.scatter([x] * len(vals), vals, s=10, color=color, alpha=0.5)
                    _errorbar(ax, x, r["ci"], color=color, label=label)
            ax.set_xticks(range(len(fracs)), [f"{100 * f:g} %" for f in fracs])
            ax.set_xlim(-0.5, len(fracs) - 0.5)
            ax.grid(alpha=0.3)
            ax.set_title(f"{ALGOS[algo]}, {d}", fontsize=9)
            if j == 0:
                ax.set_ylabel("D4RL-normalised score")
            if i == len(algos) - 1:
                ax.set_xlabel("fraction of the dataset's transitions")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    by = dict(zip(labels, handles, strict=True))
    if by:
        fig.legend(by.values(), by.keys(), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Score per run (dots: seeds; bar: mean with its 95 % bootstrap CI)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return fig
