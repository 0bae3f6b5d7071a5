"""X % datasets (SPEC §5.6, the paper's Fig. 9): a LayerNorm critic helps more as data shrinks.

TD3+BC, IQL, Diffusion-QL and CQL, each trained with and without LayerNorm in the critic on
100 / 50 / 10 / 1 % of a dataset's transitions (a random subset, the same for every seed and
both critics). Score: D4RL-normalised return of the policy, evaluated inside training in
Gymnasium MuJoCo v5 ("final": the last evaluation; "best": the best one). The paper plots
LN − no-LN score summed over 9 datasets against the fraction; here each algorithm's
difference is shown per seed pair (seed s with LN minus seed s without), with its mean.

Every other option is the algorithm's default (its `Config`), except the LN switch, which is
set explicitly both ways (Diffusion-QL's default critic has LN) and IQL's actor learning-rate
decay, which is set to the run's length as the IQL paper does. Seeds whose Q blew up (|Q|
past the run's q_bound or non-finite) are stopped at their last finite state and keep their
last evaluation; a seed stopped before any evaluation has no score (reported, left out of
the means). A seed "overshoots" when its mean Q passed max|r|/(1 − γ), the largest return
any policy could collect on the data (`demo.summarize`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seemrl import demo, plotting
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "LayerNorm critic against dataset fraction (Fig. 9): TD3+BC, IQL, Diffusion-QL, CQL"

ALGOS = {"td3bc": "TD3+BC", "iql": "IQL", "diffql": "Diffusion-QL", "cql": "CQL"}

PAPER_DIFF = {"td3bc": {1.0: 24, 0.5: 19, 0.1: 138, 0.01: 158},
              "iql": {1.0: -2, 0.5: 5, 0.1: 126, 0.01: 62},
              "diffql": {1.0: -7, 0.5: 2, 0.1: 141, 0.01: 194},
              "cql": {1.0: 13, 0.5: 48, 0.1: 237, 0.01: 247}}
"""The paper's LN − no-LN normalised score, summed over 9 datasets (read off Fig. 9, ≈)."""

PAPER_DATASETS = [f"{env}-{level}" for env in ("hopper", "halfcheetah", "walker2d")
                  for level in ("medium", "medium-replay", "medium-expert")]
"""The paper's 9 datasets (seemrl's own versions of them)."""

def _algos(steps: dict[str, int], fractions: dict[str, list[float]],
           seeds: dict[str, list[int]], options: dict[str, dict] | None = None) -> dict:
    """Per-algorithm scale: steps, fractions, seeds and extra algorithm options."""
    return {a: {"steps": steps[a], "fractions": fractions[a], "seeds": seeds[a],
                "options": (options or {}).get(a, {})} for a in ALGOS}


_ALL = [1.0, 0.5, 0.1, 0.01]

SCALES: dict[str, dict[str, Any]] = {
    # Seconds: tiny data and nets, a few updates, one 1-episode evaluation.
    "smoke": {"datasets": ["hopper-medium"], "size": 2_000, "eval_episodes": 1, "evals": 1,
              "log_every": 10,
              "algos": _algos({"td3bc": 20, "iql": 20, "cql": 10, "diffql": 10},
                              {"td3bc": [1.0, 0.1], "iql": [1.0], "cql": [1.0],
                               "diffql": [1.0]},
                              {a: [0] for a in ALGOS},
                              {"cql": {"critic_hidden": [32, 32], "actor_hidden": [32, 32],
                                       "cql_n_actions": 2},
                               "diffql": {"critic_hidden": [32, 32], "actor_hidden": [32, 32],
                                          "diffusion_steps": 2, "solver_steps": 1,
                                          "backup_samples": 2, "eval_samples": 2}})},
    # The paper's question at a size that settles it, in pieces on one core of a 2-core CPU:
    # TD3+BC and IQL, each with and without the LN critic, on the three -medium datasets at
    # 1 / 10 / 100 %, 5 seeds side by side per run, 100k steps (earlier 3k-step runs left
    # every policy at 1-25, where nothing separates; at 100k-150k TD3+BC reaches its paper
    # level on 100 % here and the plain critic's failures on small data have had time to
    # show: docs/ALGORITHMS.md), 10 episodes every 10k steps, score = mean of the last 3.
    # IQL with its paper's locomotion settings (reward rescaling, raw states). A checkpoint
    # every 10k steps, so ending every process loses at most that. 36 runs; the 1 % runs
    # first. CQL, Diffusion-QL and ReBRAC (batch 1024) are 10-50x slower per step here: they
    # are the GPU script's (experiments/fraction_gpu.py).
    "cpu": {"datasets": ["hopper-medium", "walker2d-medium", "halfcheetah-medium"],
            "size": 1_000_000, "eval_episodes": 10, "evals": 10, "log_every": 1000,
            "checkpoint_every": 10_000, "seem_every": 10_000, "seed_groups": 1,
            "score_last": 3,
            "algos": {"td3bc": {"steps": 100_000, "fractions": [0.01, 0.1, 1.0],
                                "seeds": [0, 1, 2, 3, 4], "options": {}},
                      "iql": {"steps": 100_000, "fractions": [0.01, 0.1, 1.0],
                              "seeds": [0, 1, 2, 3, 4], "options": {},
                              "train": {"reward_normalization": "returns",
                                        "normalize_states": False}}}},
    # The paper: 1M steps, 10 seeds, the 9 datasets, evaluations every 10k steps (so "best"
    # is over 100 evaluations), 10 episodes each.
    "paper": {"datasets": PAPER_DATASETS,
              "size": 1_000_000, "eval_episodes": 10, "evals": 100, "log_every": 1000,
              "algos": _algos({a: 1_000_000 for a in ALGOS}, {a: _ALL for a in ALGOS},
                              {a: list(range(10)) for a in ALGOS})},
}


UNTRAINED_SCORE = 5.0
"""Normalised score below which a policy has learned nothing to compare (a random hopper
scores ≈ 1; standing still and falling score ≈ 2–4)."""


def run_name(algo: str, dataset: str, fraction: float, layer_norm: bool) -> str:
    return f"{algo}-{dataset}-f{fraction:g}-{'ln' if layer_norm else 'noln'}"


def specs(ctx: Context) -> list[RunSpec]:
    """One run per algorithm × dataset × fraction × critic (seeds side by side in a run).

    Ordered so that a sweep stopped part-way (a long CPU sweep runs over several sessions)
    already has the cells the claim is about: the smallest and the largest fraction first,
    then the others; within a fraction, one algorithm's datasets after the other's."""
    p, out = ctx.params, []
    paths = {d: ctx.dataset(d, p["size"]) for d in p["datasets"]}
    for fraction in priority(sorted({f for a in p["algos"].values() for f in a["fractions"]})):
        for algo, a in p["algos"].items():
            if fraction not in a["fractions"]:
                continue
            log_every, eval_every = _periods(a, p)
            for dataset in p["datasets"]:
                for ln in (False, True):
                    train = {"dataset": str(paths[dataset]), "algo": algo,
                             "seeds": list(a["seeds"]), "steps": a["steps"],
                             "fraction": fraction, "log_every": log_every,
                             "eval_every": eval_every, "eval_episodes": p["eval_episodes"],
                             "checkpoint_every": p.get("checkpoint_every", 0),
                             "seem_every": p.get("seem_every", 0), **a.get("train", {})}
                    if "seed_groups" in p:  # one vmapped group: the sweep gets one core
                        train["seed_groups"] = p["seed_groups"]
                    opts = {**a["options"], "layer_norm": ln}
                    if algo == "iql":
                        opts["actor_decay_steps"] = a["steps"]
                    out.append(RunSpec(run_name(algo, dataset, fraction, ln), train, opts))
    return out


def priority(fractions: list[float]) -> list[float]:
    """Sorted fractions reordered smallest, largest, then the rest in order."""
    if len(fractions) <= 2:
        return fractions
    return [fractions[0], fractions[-1], *fractions[1:-1]]


def _periods(a: dict[str, Any], p: dict[str, Any]) -> tuple[int, int]:
    """(log_every, eval_every) of an algorithm's runs: `evals` evaluations per run."""
    log_every = min(p["log_every"], a["steps"])
    return log_every, max(a["steps"] // p["evals"] // log_every * log_every, log_every)


def eval_steps(a: dict[str, Any], p: dict[str, Any]) -> list[int]:
    """The steps at which an algorithm's runs evaluate (each multiple of eval_every, and the
    last step)."""
    _, every = _periods(a, p)
    return sorted(set(range(every, a["steps"] + 1, every)) | {a["steps"]})


def run(ctx: Context) -> Outcome:
    p = ctx.params
    trained = ctx.train(specs(ctx))
    failed = [n for n, r in trained.items() if r.outcome == "failed"]
    if failed:
        raise RuntimeError(f"training failed for {', '.join(failed)}: "
                           f"{trained[failed[0]].error}")
    cells = collect(p, {n: r.run_dir for n, r in trained.items()})
    summary = summarize(cells, p)
    ctx.save_figure(plot_difference(cells, summary, p), "fraction.png")
    ctx.save_figure(plot_runs(cells, p), "fraction_runs.png")
    return Outcome({"cells": cells, "summary": summary,
                    "paper_difference_sum_9_datasets": {
                        a: {f"{f:g}": v for f, v in d.items()} for a, d in PAPER_DIFF.items()}},
                   markdown(cells, summary, p))


# -- reading the runs ------------------------------------------------------------------------
def collect(p: dict[str, Any], run_dirs: dict[str, str]) -> list[dict[str, Any]]:
    """One cell per algorithm × dataset × fraction: both critics' per-seed numbers and the
    per-seed-pair LN − no-LN differences."""
    import json
    import pathlib

    cells = []
    for dataset in p["datasets"]:
        for algo, a in p["algos"].items():
            for fraction in a["fractions"]:
                cell: dict[str, Any] = {"algo": algo, "dataset": dataset, "fraction": fraction,
                                        "steps": a["steps"], "seeds": list(a["seeds"])}
                for ln in (False, True):
                    run_dir = pathlib.Path(run_dirs[run_name(algo, dataset, fraction, ln)])
                    status = json.loads((run_dir / "status.json").read_text())
                    ceiling = json.loads((run_dir / "config.json").read_text())["q_ceiling"]
                    s = demo.summarize(run_dir, status, ceiling)
                    cell["ln" if ln else "no_ln"] = {
                        "run_dir": str(run_dir),
                        "final_score": [_num(status["seeds"][str(x)]["final_score"])
                                        for x in a["seeds"]],
                        "best_score": [_num(status["seeds"][str(x)]["best_score"])
                                       for x in a["seeds"]],
                        "diverged_at": [status["seeds"][str(x)]["diverged_at"]
                                        for x in a["seeds"]],
                        "max_abs_q": [_num(q) for q in s["max_abs_q"]],
                        "q_ceiling": ceiling,
                        "overshooting_seeds": s["overshooting_seeds"]}
                for key in ("final_score", "best_score"):
                    diff = [_sub(x, y) for x, y in zip(cell["ln"][key], cell["no_ln"][key],
                                                       strict=True)]
                    cell[f"diff_{key}"] = diff
                    cell[f"diff_{key}_mean"] = _mean(diff)
                cells.append(cell)
    return cells


def summarize(cells: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    """Per algorithm: mean LN − no-LN difference per fraction (summed over datasets, as the
    paper sums), the paper's value, whether the signs agree, and the trend as data shrinks:
    "grows" / "shrinks" when the difference at the smallest fraction is above / below the one at
    the largest by more than twice their combined standard error over seed pairs, else
    "unclear" (also with one seed pair: no error to read); "untrained" when no evaluation of
    either critic reached UNTRAINED_SCORE (policies that fall at once have nothing to compare);
    None with one fraction."""
    out = {}
    for algo, a in p["algos"].items():
        rows = {}
        for fraction in a["fractions"]:
            mine = [c for c in cells if c["algo"] == algo and c["fraction"] == fraction]
            final = [c["diff_final_score_mean"] for c in mine]
            best = [c["diff_best_score_mean"] for c in mine]
            paper = PAPER_DIFF[algo].get(fraction)
            total = _sum(final)
            rows[f"{fraction:g}"] = {
                "diff_final_sum": total, "diff_final_se": _sum_se(mine),
                "diff_best_sum": _sum(best), "paper_sum_9": paper,
                "same_sign_as_paper": (None if total is None or paper is None
                                       else bool(np.sign(total) == np.sign(paper)))}
        fr = sorted(a["fractions"])
        small, large = rows[f"{fr[0]:g}"], rows[f"{fr[-1]:g}"]
        lo, hi = small["diff_final_sum"], large["diff_final_sum"]
        trend = None
        scores = [v for c in cells if c["algo"] == algo for k in ("ln", "no_ln")
                  for v in c.get(k, {}).get("best_score", []) if v is not None]
        if lo is not None and hi is not None and len(fr) >= 2:
            se_lo, se_hi = small["diff_final_se"], large["diff_final_se"]
            margin = math.inf if se_lo is None or se_hi is None else 2 * math.hypot(se_lo, se_hi)
            trend = ("grows" if lo - hi > margin else "shrinks" if hi - lo > margin
                     else "unclear")
            if scores and max(scores) < UNTRAINED_SCORE:
                trend = "untrained"
        signs = [r["same_sign_as_paper"] for r in rows.values()
                 if r["same_sign_as_paper"] is not None]
        out[algo] = {"by_fraction": rows, "trend_as_data_shrinks": trend,
                     "same_sign": sum(signs), "compared": len(signs)}
    return out


def _sum_se(cells: list[dict[str, Any]]) -> float | None:
    """Standard error of a sum over cells of mean per-seed-pair differences (None when some
    cell has fewer than two pairs)."""
    var = 0.0
    for c in cells:
        d = [x for x in c.get("diff_final_score", []) if x is not None]
        if len(d) < 2:
            return None
        var += float(np.var(d, ddof=1)) / len(d)
    return math.sqrt(var)


# -- figures ---------------------------------------------------------------------------------
def _xpos(fractions: list[float]) -> dict[float, int]:
    return {f: i for i, f in enumerate(sorted(fractions, reverse=True))}


def plot_difference(cells, summary, p):
    """Per algorithm: LN − no-LN final score per seed pair (dots) and its mean (bar) against
    the fraction; the paper's summed difference on a right axis (diamonds)."""
    plt = plotting.pyplot()
    algos = list(p["algos"])
    fig, axes = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 4.2), squeeze=False)
    all_fracs = sorted({f for a in p["algos"].values() for f in a["fractions"]}
                       | set(PAPER_DIFF["td3bc"]), reverse=True)
    pos = _xpos(all_fracs)
    handles: list = []
    for ax, algo in zip(axes[0], algos, strict=True):
        a = p["algos"][algo]
        for f in a["fractions"]:
            mine = [c for c in cells if c["algo"] == algo and c["fraction"] == f]
            diffs = [d for c in mine for d in c["diff_final_score"] if d is not None]
            mean = summary[algo]["by_fraction"][f"{f:g}"]["diff_final_sum"]
            x = pos[f]
            if mean is not None:
                ax.bar(x, mean, width=0.55, color="tab:blue" if mean >= 0 else "tab:red",
                       alpha=0.45)
            jitter = np.linspace(-0.12, 0.12, len(diffs)) if len(diffs) > 1 else [0.0]
            ax.scatter(x + np.asarray(jitter), diffs, s=16, color="k", zorder=3,
                       label="one seed pair" if f == a["fractions"][0] else None)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(all_fracs)), [f"{100 * f:g} %" for f in all_fracs])
        ax.set_xlim(-0.6, len(all_fracs) - 0.4)
        ax.set_xlabel("fraction of the dataset's transitions")
        ax.set_ylabel("LN − no-LN normalised score (this run)")
        ax.set_title(f"{ALGOS[algo]}: {a['steps']:,} steps, {len(a['seeds'])} seed(s)")
        ax.grid(alpha=0.3, axis="y")
        twin = ax.twinx()
        xs = [pos[f] for f in sorted(PAPER_DIFF[algo], reverse=True)]
        ys = [PAPER_DIFF[algo][f] for f in sorted(PAPER_DIFF[algo], reverse=True)]
        twin.plot(xs, ys, "D--", color="tab:gray", ms=5, lw=1,
                  label="paper, summed over 9 datasets (right axis)")
        _align_zero(ax, twin)
        twin.set_ylabel("paper: LN − no-LN, sum of 9 datasets", color="tab:gray")
        twin.tick_params(axis="y", colors="tab:gray")
        if not handles:
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:blue", alpha=0.45, label="LN better (mean over seed pairs)"),
               Patch(color="tab:red", alpha=0.45, label="LN worse (mean over seed pairs)"),
               *handles]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    datasets = ", ".join(p["datasets"])
    fig.suptitle(f"LayerNorm critic minus plain critic: D4RL-normalised score (final "
                 f"evaluation) on {datasets}, left axes; the paper's Fig. 9, right axes")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
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


def plot_runs(cells, p):
    """Per algorithm: the score of each critic against the fraction (thin: seeds, bold:
    mean), and the largest |mean Q| relative to the Q ceiling max|r|/(1 − γ) (log)."""
    plt = plotting.pyplot()
    algos = list(p["algos"])
    fig, axes = plt.subplots(2, len(algos), figsize=(4.2 * len(algos), 7.5), squeeze=False)
    all_fracs = sorted({f for a in p["algos"].values() for f in a["fractions"]}, reverse=True)
    pos = _xpos(all_fracs)
    colors = {"no_ln": ("tab:red", "plain critic"), "ln": ("tab:blue", "LayerNorm critic")}
    for j, algo in enumerate(algos):
        mine = sorted((c for c in cells if c["algo"] == algo), key=lambda c: -c["fraction"])
        for key, (color, label) in colors.items():
            for row, (metric, tf) in enumerate((("final_score", None), ("max_abs_q", "ratio"))):
                ax = axes[row, j]
                curves = []
                for k in range(len(mine[0]["seeds"]) if mine else 0):
                    xs, ys = [], []
                    for c in mine:
                        v = c[key][metric][k]
                        if v is None:
                            continue
                        xs.append(pos[c["fraction"]])
                        ys.append(v / c[key]["q_ceiling"] if tf else v)
                    curves.append((np.asarray(xs, float), np.asarray(ys, float)))
                plotting.seeds_and_mean(ax, curves, color, label)
        for row in (0, 1):
            ax = axes[row, j]
            ax.set_xticks(range(len(all_fracs)), [f"{100 * f:g} %" for f in all_fracs])
            ax.set_xlim(-0.3, len(all_fracs) - 0.7)
            ax.grid(alpha=0.3)
            ax.set_xlabel("fraction of the dataset's transitions")
        axes[0, j].set_title(f"{ALGOS[algo]}")
        axes[0, j].set_ylabel("D4RL-normalised score (final evaluation)")
        axes[1, j].set_yscale("log")
        axes[1, j].axhline(1.0, color="k", ls="--", lw=1, label="Q ceiling max|r|/(1−γ)")
        axes[1, j].set_ylabel("max |mean Q| / Q ceiling")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(f"Each run on {', '.join(p['datasets'])}: score and largest Q against the "
                 "fraction (thin: seeds, bold: mean over seeds)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


# -- the section -----------------------------------------------------------------------------
def markdown(cells, summary, p) -> str:
    lines = ["What ran (per algorithm, each fraction with both critics; all seeds of a "
             "fraction train on the same random subset; "
             f"{p['eval_episodes']} evaluation episode(s) per seed and evaluation):", "",
             "| algorithm | fractions | gradient steps | seeds | evaluated at steps |",
             "|---|---|---|---|---|"]
    for algo, a in p["algos"].items():
        at = eval_steps(a, p)
        at_text = ", ".join(f"{s:,}" for s in at) if len(at) <= 4 else (
            f"every {at[0]:,} ({len(at)} evaluations)")
        lines.append(f"| {ALGOS[algo]} | {', '.join(f'{100 * f:g} %' for f in a['fractions'])}"
                     f" | {a['steps']:,} | {len(a['seeds'])} | {at_text} |")
    lines += ["", "Normalised score (mean ± sd over seeds, final evaluation; best evaluation "
              "in brackets), LN − no-LN (mean over seed pairs), the paper's LN − no-LN "
              "(summed over 9 datasets, so only its sign and trend compare), and the seeds "
              "whose Q passed max|r|/(1 − γ):", "",
              "| algorithm | dataset | fraction | plain critic | LN critic | LN − no-LN final "
              "(best) | paper | Q past ceiling plain / LN |", "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        n, ln = c["no_ln"], c["ln"]
        paper = PAPER_DIFF[c["algo"]].get(c["fraction"])
        lines.append(
            f"| {ALGOS[c['algo']]} | {c['dataset']} | {100 * c['fraction']:g} % | "
            f"{_ms(n['final_score'])} ({_ms(n['best_score'])}) | "
            f"{_ms(ln['final_score'])} ({_ms(ln['best_score'])}) | "
            f"{_f(c['diff_final_score_mean'], True)} ({_f(c['diff_best_score_mean'], True)}) | "
            f"{'—' if paper is None else f'{paper:+d}'} | "
            f"{n['overshooting_seeds']} / {ln['overshooting_seeds']} of {len(c['seeds'])} |")
    missing = sum(v is None for c in cells for k in ("ln", "no_ln")
                  for v in c[k]["final_score"])
    lines += ["", "### What the numbers show", ""]
    for algo, s in summary.items():
        by = s["by_fraction"]
        trend = {"grows": "grows as data shrinks (as in the paper)",
                 "shrinks": "shrinks as data shrinks (the paper's grows)",
                 "unclear": "shows no trend beyond the seed noise (2 standard errors, "
                            "≥ 2 seeds)",
                 "untrained": f"is not read: no evaluation of either critic reached "
                              f"{UNTRAINED_SCORE:g} (the policies fall at once)",
                 None: "has no trend to read (one fraction)"}[s["trend_as_data_shrinks"]]
        seq = ", ".join(f"{100 * float(f):g} %: {_f(r['diff_final_sum'], True)}"
                        for f, r in by.items())
        lines.append(f"- **{ALGOS[algo]}**: LN − no-LN {seq}; same sign as the paper at "
                     f"{s['same_sign']} of {s['compared']} fractions; the difference {trend}.")
    over_plain = sum(c["no_ln"]["overshooting_seeds"] for c in cells)
    over_ln = sum(c["ln"]["overshooting_seeds"] for c in cells)
    seeds = sum(len(c["seeds"]) for c in cells)
    lines += [f"- Q past the ceiling: {over_plain} of {seeds} plain-critic seeds, {over_ln} of "
              f"{seeds} LN-critic seeds.",
              f"- Seeds with no score (stopped before their first evaluation): {missing}.",
              "", "The paper's runs are 1M steps, 10 seeds and 9 datasets; a run of a few "
              "thousand steps (a few hundred for CQL) on one dataset is far from a trained "
              "policy, so the scores here are small and noisy and only the sign and the trend "
              "of the difference are compared with the paper, not its size."]
    return "\n".join(lines)


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _sub(x, y):
    return None if x is None or y is None else x - y


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _sum(values):
    vals = [v for v in values if v is not None]
    return float(np.sum(vals)) if vals else None


def _f(x, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def _ms(values) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}"
