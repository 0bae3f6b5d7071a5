"""X % datasets (SPEC §5.6, the paper's Fig. 9): a LayerNorm critic helps more as data shrinks.

Each algorithm of the scale is trained with and without LayerNorm in the critic on fractions
of a dataset's transitions (a random subset, the same for every seed and both critics; the
cpu scale: TD3+BC and IQL on hopper/walker2d/halfcheetah-medium at 1 / 10 / 100 %, 5 seeds,
100k steps; CQL and Diffusion-QL are experiments/fraction_gpu.py's). Score of a seed: the
mean of its last `score_last` D4RL-normalised evaluations (Gymnasium MuJoCo v5). Per cell:
the mean over seeds with a 95 % bootstrap interval (`seemrl.stats`), LN − no-LN over seed
pairs (same seed, same subset) with its interval, the seeds whose Q passed the ceiling
max|r|/(1 − γ) (`diverged_at`) and the final SEEM. The paper plots LN − no-LN summed over 9
datasets against the fraction; here it is averaged over the datasets run, so its sign and
trend compare, not its size.

Every other option is the algorithm's default (its `Config`), except the LN switch, set
explicitly both ways (Diffusion-QL's default critic has LN), IQL's actor learning-rate decay,
set to the run's length as the IQL paper does, and (cpu scale) IQL's locomotion reward
rescaling and raw states. A seed stopped at its Q bound keeps its last finite state, whose
evaluations count (marked `stopped` in metrics.jsonl). The sweep is long and resumable: the
report (`--collect`) reads whatever runs have finished and lists the others as pending.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from seemrl import runfolder, stats
from seemrl.repro import _report as rp
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


GPU_RESULTS = "gpu/results.json"
"""Where `experiments/fraction_gpu.py` leaves its results, inside the experiment folder: the
report reads its cells when the file is there (CQL and Diffusion-QL at paper length)."""


def run(ctx: Context) -> Outcome:
    trained = ctx.train(specs(ctx))
    failed = [n for n, r in trained.items() if r.outcome == "failed"]
    if failed:
        raise RuntimeError(f"training failed for {', '.join(failed)}: "
                           f"{trained[failed[0]].error}")
    return report(ctx)


def report(ctx: Context) -> Outcome:
    """The report from whatever runs of this scale have finished in out/runs (trains nothing:
    `seemrl repro fraction --collect`), plus the GPU script's cells when present. Runs that
    have not finished (or not started) are listed as pending, never dropped."""
    p = ctx.params
    cells = collect(p, ctx.out / "runs")
    gpu_path = ctx.out / GPU_RESULTS
    gpu = None
    if gpu_path.is_file():
        gpu = json.loads(gpu_path.read_text())
        cells += [{**c, "source": "gpu"} for c in collect(gpu["params"], gpu_path.parent / "runs")]
    summary = summarize(cells, p)
    cpu_hours = sum(_run_hours(c) for c in cells if c.get("source") != "gpu")
    from seemrl.repro import _fraction_figures as figures

    ctx.save_figure(figures.difference(cells, summary), "fraction.png")
    ctx.save_figure(figures.scores(cells), "fraction_scores.png")
    results = {"cells": cells, "summary": summary,
               "runs_finished": sum(c[k]["finished"] for c in cells for k in CRITICS),
               "runs": 2 * len(cells),
               "training_cpu_hours": cpu_hours,
               "training_cpu_hours_means": "Σ over run folders of the steps of each logged "
               "training chunk / its time/steps_per_sec (one core per run): evaluation "
               "rollouts and SEEM measurements are not in it, so the wall time was longer",
               "gpu": None if gpu is None else {k: v for k, v in gpu.items() if k != "params"},
               "paper_difference_sum_9_datasets": {
                   a: {f"{f:g}": v for f, v in d.items()} for a, d in PAPER_DIFF.items()}}
    return Outcome(results, markdown(cells, summary, p, results))


# -- reading the runs ------------------------------------------------------------------------
CRITICS = ("no_ln", "ln")


def collect(p: dict[str, Any], runs_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """One cell per algorithm × dataset × fraction, each critic's run read from
    runs_dir/<run name>: per seed the score (mean of its last `score_last` evaluations), stop,
    divergence and last SEEM; the mean with its bootstrap CI; and, when both critics' runs
    have finished, the LN − no-LN difference per seed pair (seed s with LN minus seed s
    without: the same seed, the same data subset) with its CI."""
    runs_dir = pathlib.Path(runs_dir)
    last = p.get("score_last", 1)
    cells = []
    for algo, a in p["algos"].items():
        for fraction in a["fractions"]:
            for dataset in p["datasets"]:
                cell: dict[str, Any] = {"algo": algo, "dataset": dataset, "fraction": fraction,
                                        "steps": a["steps"], "seeds": list(a["seeds"])}
                for ln in (False, True):
                    name = run_name(algo, dataset, fraction, ln)
                    cell["ln" if ln else "no_ln"] = _critic(runs_dir / name, a["seeds"], last)
                no, yes = cell["no_ln"], cell["ln"]
                diff = ([_sub(y, x) for x, y in zip(no["score"], yes["score"], strict=True)]
                        if no["finished"] and yes["finished"] else [])
                cell["diff"] = diff
                cell["diff_ci"] = stats.mean_ci(diff)
                cells.append(cell)
    return cells


def _critic(run_dir: pathlib.Path, seeds: list[int], last: int) -> dict[str, Any]:
    status = runfolder.read_status(run_dir)
    res = runfolder.read_results(run_dir, last) if status is not None else {}
    got = [res.get(s) for s in seeds]
    seem = [r.seem_final for r in got if r is not None and r.seem_final is not None]
    return {"run_dir": str(run_dir), "finished": bool(status and status.finished),
            "step": status.step if status else 0,
            "score": [r.score if r else None for r in got],
            "evaluations": [r.evaluations if r else 0 for r in got],
            "stopped": [bool(r and r.stopped) for r in got],
            "diverged_at": [r.diverged_at if r else None for r in got],
            "diverged": sum(r is not None and r.diverged_at is not None for r in got),
            "seem_final": [r.seem_final if r else None for r in got],
            "seem_final_median": float(np.median(seem)) if seem else None,
            "ci": stats.mean_ci([r.score if r else None for r in got]),
            "training_hours": runfolder.training_seconds(run_dir) / 3600}


def _run_hours(cell: dict[str, Any]) -> float:
    return sum(cell[k]["training_hours"] for k in CRITICS)


def summarize(cells: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    """Per algorithm: LN's gain per fraction (the mean over datasets of each dataset's mean
    LN − no-LN over seed pairs, with a bootstrap CI that resamples seed pairs within each
    dataset; only datasets whose both runs finished), the change of that gain from the largest
    to the smallest fraction (CI from independent resamples of the two), and the verdict on
    the paper's claim (LN helps more as data shrinks; its gain at the smallest fraction is
    positive with a CI that excludes 0)."""
    out = {}
    rng = np.random.default_rng(0)
    for algo in dict.fromkeys(c["algo"] for c in cells):
        mine = [c for c in cells if c["algo"] == algo]
        fractions = sorted({c["fraction"] for c in mine})
        rows: dict[str, dict[str, Any]] = {}
        draws: dict[float, Any] = {}
        for f in reversed(fractions):  # as the figure reads: 100 % first
            here = [c for c in mine if c["fraction"] == f]
            done = [[d for d in c["diff"] if d is not None] for c in here if c["diff"]]
            done = [d for d in done if d]
            ci = stats.grouped_mean_ci(done)
            draws[f] = stats.resampled_means(done, rng)
            rows[f"{f:g}"] = {"gain": ci, "datasets_finished": len(done),
                              "datasets": len(here), "paper_sum_9": PAPER_DIFF[algo].get(f)}
        small, large = fractions[0], fractions[-1]
        g_small, g_large = rows[f"{small:g}"]["gain"], rows[f"{large:g}"]["gain"]
        shrink = stats.interval(
            None if g_small["mean"] is None or g_large["mean"] is None
            else g_small["mean"] - g_large["mean"],
            None if draws[small] is None or draws[large] is None or small == large
            else draws[small] - draws[large])
        ends = [c for c in mine if c["fraction"] in (small, large)]
        finished = sum(c[k]["finished"] for c in mine for k in CRITICS)
        scores = [v for c in mine for k in CRITICS for v in c[k]["score"] if v is not None]
        if any(not c[k]["finished"] for c in ends for k in CRITICS):
            verdict = "not yet"
        elif small == large:
            verdict = "one fraction"
        elif not scores or max(scores) < UNTRAINED_SCORE:
            verdict = "untrained"
        else:
            sign_small, sign_shrink = stats.excludes_zero(g_small), stats.excludes_zero(shrink)
            verdict = ("holds" if sign_small > 0 and sign_shrink > 0
                       else "contradicted" if sign_small < 0 or sign_shrink < 0
                       else "not shown")
        out[algo] = {"by_fraction": rows, "gain_change_small_minus_large": shrink,
                     "smallest": small, "largest": large, "verdict": verdict,
                     "runs_finished": finished, "runs": 2 * len(mine)}
    return out


# -- the section -----------------------------------------------------------------------------
VERDICTS = {"holds": rp.HOLDS, "contradicted": rp.DIFFERS, "not shown": rp.NOT_SETTLED,
            "not yet": rp.NOT_SETTLED, "one fraction": rp.NOT_AT_THIS_SCALE,
            "untrained": rp.NOT_AT_THIS_SCALE}
"""How each of `summarize`'s verdicts leads its finding."""


def _ci(ci: dict[str, Any], signed: bool = False) -> str:
    if ci.get("mean") is None:
        return "—"
    m = f"{ci['mean']:+.1f}" if signed else f"{ci['mean']:.1f}"
    if ci.get("lo") is None:
        return f"{m} (1 seed)" if ci.get("n") == 1 else m
    return f"{m} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]" if signed else (
        f"{m} [{ci['lo']:.1f}, {ci['hi']:.1f}]")


def statement(algo: str, s: dict[str, Any]) -> str:
    """The plain sentence on the paper's claim for one algorithm, with its numbers."""
    small, large = s["smallest"], s["largest"]
    g_small = s["by_fraction"][f"{small:g}"]["gain"]
    g_large = s["by_fraction"][f"{large:g}"]["gain"]
    nums = (f"LN − no-LN at {100 * small:g} %: {_ci(g_small, True)}, at {100 * large:g} %: "
            f"{_ci(g_large, True)}, change {_ci(s['gain_change_small_minus_large'], True)}")
    head = f"{ALGOS[algo]}: "
    v = s["verdict"]
    if v == "not yet":
        return (f"{head}not yet: {s['runs_finished']} of {s['runs']} runs finished (so far: "
                f"{nums}).")
    if v == "one fraction":
        return f"{head}one fraction only, no trend to read (LN − no-LN {_ci(g_small, True)})."
    if v == "untrained":
        return (f"{head}not read: no seed of either critic scored {UNTRAINED_SCORE:g} (the "
                f"policies fall at once; {nums}).")
    what = {"holds": "the paper's claim holds here: LN's gain is positive at the smallest "
                     "fraction and larger there than on all the data, both CIs excluding 0",
            "contradicted": "the paper's claim is contradicted here: a CI excludes 0 on the "
                            "wrong side",
            "not shown": "the paper's claim is not shown here: a CI holds 0"}[v]
    return f"{head}{what} ({nums})."


def markdown(cells, summary, p, results) -> str:
    last = p.get("score_last", 1)
    report = rp.Report(
        "What ran (per algorithm, each fraction with both critics; all seeds of a fraction "
        "train on the same random subset; "
        f"{p['eval_episodes']} evaluation episode(s) per seed and evaluation):",
        claim="The claim (Fig. 9): a LayerNorm critic helps more as data shrinks, and at the "
              "smallest fraction its gain is positive with a 95 % CI that excludes 0.")
    rows = []
    for algo, a in p["algos"].items():
        at = eval_steps(a, p)
        at_text = ", ".join(f"{s:,}" for s in at) if len(at) <= 4 else (
            f"every {at[0]:,} ({len(at)} evaluations)")
        rows.append([ALGOS[algo], ", ".join(f"{100 * f:g} %" for f in a["fractions"]),
                     f"{a['steps']:,}", len(a["seeds"]), at_text])
    report.table(["algorithm", "fractions", "gradient steps", "seeds", "evaluated at steps"],
                 rows)
    gpu = results.get("gpu")
    if gpu:
        report.text(f"Also read: the GPU script's cells ({gpu.get('command', '?')}, "
                    f"{gpu.get('device', '?')}), marked GPU below.")
    pending = [f"{run_name(c['algo'], c['dataset'], c['fraction'], k == 'ln')} (step "
               f"{c[k]['step']:,} of {c['steps']:,})" for c in cells for k in CRITICS
               if not c[k]["finished"]]
    report.text(f"Runs finished: {results['runs_finished']} of {results['runs']}; training "
                f"time so far {results['training_cpu_hours']:.3g} CPU hours ("
                f"{results['training_cpu_hours_means']}).")
    if pending:
        report.text("Pending (not finished, not in the statistics): " + ", ".join(pending)
                    + ".")

    def state(r):
        return _ci(r["ci"]) if r["finished"] else f"pending ({r['step']:,})"

    report.table(
        ["algorithm", "dataset", "fraction", "plain critic", "LN critic", "LN − no-LN",
         "Q past ceiling", "final SEEM"],
        [[ALGOS[c["algo"]] + (" (GPU)" if c.get("source") == "gpu" else ""), c["dataset"],
          f"{100 * c['fraction']:g} %", state(c["no_ln"]), state(c["ln"]),
          _ci(c["diff_ci"], True),
          " / ".join(str(r["diverged"]) if r["finished"] else "—"
                     for r in (c["no_ln"], c["ln"])) + f" of {len(c['seeds'])}",
          " / ".join(rp.fmt_as(r["seem_final_median"] if r["finished"] else None, ".3g")
                     for r in (c["no_ln"], c["ln"]))]
         for c in cells],
        caption=f"Score: a seed's D4RL-normalised return averaged over its last {last} "
                "evaluation(s); a seed stopped at its Q bound keeps being evaluated at its last "
                "finite state and those evaluations count. Per cell: mean over seeds "
                "[95 % percentile bootstrap CI, 10,000 resamples of the seeds]; LN − no-LN per "
                "seed pair (same seed, same data subset) with its CI; seeds whose |mean Q| "
                "passed max|r|/(1 − γ) (plain / LN); the median over seeds of the last "
                "normalised SEEM (plain / LN); — for a run not finished.")
    report.table(
        ["algorithm", "fraction", "LN − no-LN [95 % CI]", "datasets finished", "paper (Σ 9)"],
        [[ALGOS[algo], f"{100 * float(f):g} %", _ci(r["gain"], True),
          f"{r['datasets_finished']} of {r['datasets']}",
          "—" if r["paper_sum_9"] is None else f"{r['paper_sum_9']:+d}"]
         for algo, s in summary.items() for f, r in s["by_fraction"].items()],
        caption="LN's gain per fraction: the mean over datasets of LN − no-LN (each dataset's "
                "mean over seed pairs), CI resampling seed pairs within each dataset; the "
                "paper's LN − no-LN is summed over its 9 datasets (read off Fig. 9), so only "
                "its sign and trend compare:")
    for algo, s in summary.items():
        report.finding(statement(algo, s), VERDICTS[s["verdict"]])
    return report.markdown()


def _sub(x, y):
    return None if x is None or y is None else x - y
