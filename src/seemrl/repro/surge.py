"""SEEM surge (SPEC §5.1, the paper's Fig. 3/10): SEEM jumps before Q explodes.

TD3 with no BC term (bc_coef 0, α 2.5), Adam 3e-4, τ = 1 (hard target copy at every actor
step), γ 0.99, batch 256, on several datasets and seeds, SEEM measured often. Per seed:
the step SEEM first exceeded the verdict threshold, the step |Q| first passed the ceiling
max|r|/(1 − γ) (and 10× it), the step it turned non-finite or passed the run's Q bound, and
the lead time of SEEM over Q. Claims checked: SEEM surges before Q explodes; seeds whose SEEM
stays ≈ 0 keep Q bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, ExperimentUnavailable, Outcome
from seemrl.sweep import RunSpec

TITLE = "SEEM surges before Q explodes (TD3 without BC, τ = 1)"

PAPER_DATASETS = [f"{env}-{level}" for env in ("hopper", "halfcheetah", "walker2d")
                  for level in ("medium", "medium-replay", "medium-expert")] + [
    f"antmaze-{task}" for task in ("umaze", "umaze-diverse", "medium-play", "medium-diverse",
                                   "large-play", "large-diverse")]
"""SPEC §5.1: the 9 MuJoCo datasets and the 6 AntMaze ones (seemrl's own AntMaze data: a
dataset whose behaviour policy is not shipped here is listed as not run)."""

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"datasets": ["hopper-medium"], "size": 2_000, "seeds": [0], "steps": 300,
              "log_every": 50, "seem_every": 50, "seem_probe": 64, "q_bound": 1e8},
    "cpu": {"datasets": ["hopper-medium", "walker2d-medium-expert", "halfcheetah-medium",
                         "halfcheetah-medium-replay", "antmaze-medium-play"],
            "size": 100_000, "seeds": [0, 1], "steps": 15_000, "log_every": 250,
            "seem_every": 250, "seem_probe": 128, "q_bound": 1e8},
    # The paper: 1M steps, 3 seeds, the 9 MuJoCo and 6 AntMaze datasets, SEEM every 10k
    # steps on the authors' 2 560-transition probe.
    "paper": {"datasets": PAPER_DATASETS, "size": 1_000_000, "seeds": [0, 1, 2],
              "steps": 1_000_000, "log_every": 1000, "seem_every": 10_000, "seem_probe": 2560,
              "q_bound": 1e12},
}

# The paper's reference values (SPEC §5.1, read off its figure for antmaze-medium-play).
PAPER_SEEM_DIVERGING = (0.2, 0.8)
"""Range of normalised SEEM in the authors' diverging runs (SPEC §2)."""
PAPER_SEED1 = {"seem_jump_step": 260_000, "seem_after": 0.79, "q_explodes_from": 220_000,
               "q_final": 1e11}
PAPER_SEED2 = {"seem_within": 20_000, "seem_after": 0.7}

EXPLODE_FACTOR = 10.0
"""|Q| above this many ceilings counts as exploded (an order of magnitude past any return)."""


def run(ctx: Context) -> Outcome:
    p = ctx.params
    skipped = {n: why for n in p["datasets"] if (why := ctx.unavailable(n, p["size"]))}
    if len(skipped) == len(p["datasets"]):
        raise ExperimentUnavailable("; ".join(skipped.values()))
    specs = []
    for name in p["datasets"]:
        if name in skipped:
            continue
        path = ctx.dataset(name, p["size"])
        specs.append(RunSpec(name, dv.train_options(path, p, q_bound=p["q_bound"]),
                             dict(dv.DIVERGING_TD3)))
    trained = ctx.train(specs)
    dv.check_finished(trained, [s.name for s in specs])
    runs = {s.name: dv.load_run(trained[s.name].run_dir) for s in specs}

    per_dataset = {name: [seed_result(s, data.ceiling) for s in data.seeds]
                   for name, data in runs.items()}
    summary = summarize(per_dataset)
    ctx.save_figure(plot(runs, p), "surge.png")
    results = {"seem_threshold": dv.SEEM_THRESHOLD, "explode_factor": EXPLODE_FACTOR,
               "q_ceiling": {n: d.ceiling for n, d in runs.items()},
               "seeds": per_dataset, "summary": summary, "not_run": skipped}
    return Outcome(results, markdown(per_dataset, summary, runs, p, skipped))


def seed_result(s: dv.SeedSeries, ceiling: float) -> dict[str, Any]:
    seem_step = s.seem_above()
    q_step = s.q_past(ceiling)
    return {"seed": s.seed, "seem_above_step": seem_step, "q_past_ceiling_step": q_step,
            "q_exploded_step": s.q_past(EXPLODE_FACTOR * ceiling),
            "diverged_at": s.stopped_at,
            "lead_steps": (q_step - seem_step if q_step is not None and seem_step is not None
                           else None),
            "max_seem": rp.json_num(s.max_seem()), "final_seem": rp.json_num(s.final_seem()),
            "max_abs_q": rp.json_num(s.max_abs_q()),
            "q_bounded": q_step is None}


def summarize(per_dataset: dict[str, list[dict]]) -> dict[str, Any]:
    rows = [r for rs in per_dataset.values() for r in rs]
    passed = [r for r in rows if not r["q_bounded"]]
    seem_first = [r for r in passed
                  if r["seem_above_step"] is not None and r["lead_steps"] >= 0]
    quiet = [r for r in rows if r["seem_above_step"] is None]
    return {"seed_runs": len(rows), "q_passed_ceiling": len(passed),
            "seem_at_or_before_q": len(seem_first),
            "seem_after_q": sum(1 for r in passed if r["seem_above_step"] is not None
                                and r["lead_steps"] < 0),
            "q_passed_without_seem": sum(1 for r in passed if r["seem_above_step"] is None),
            "median_lead_steps": rp.median_or_none(r["lead_steps"] for r in passed),
            "seem_quiet": len(quiet),
            "seem_quiet_q_bounded": sum(1 for r in quiet if r["q_bounded"]),
            "max_seem_of_diverged": rp.json_num(
                np.median([r["max_seem"] for r in passed]) if passed else None)}


def plot(runs: dict[str, dv.RunData], p: dict[str, Any]):
    plt = plotting.pyplot()
    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n + 0.6, 7.2), squeeze=False,
                             sharex="col")
    for k, (name, data) in enumerate(runs.items()):
        ax_s, ax_q = axes[0, k], axes[1, k]
        colour = plt.get_cmap("tab10")(k % 10)
        plotting.seeds_and_mean(ax_s, [(s.seem_steps, s.seem) for s in data.seeds], colour,
                                "mean over seeds")
        plotting.seeds_and_mean(ax_q, [(s.steps, s.q) for s in data.seeds], colour,
                                "mean over seeds", transform=np.abs)
        for s in data.seeds:
            seem_step, q_step = s.seem_above(), s.q_past(data.ceiling)
            if seem_step is not None:
                ax_s.plot([seem_step], [np.interp(seem_step, s.seem_steps, s.seem)], "v",
                          color="k", ms=6)
            if q_step is not None:
                ax_q.axvline(q_step, color=colour, ls=":", lw=0.9)
        ax_s.axhline(dv.SEEM_THRESHOLD, color="grey", ls=":", lw=1,
                     label=f"verdict threshold {dv.SEEM_THRESHOLD:g} (▼ first crossing)")
        ax_s.axhline(0.0, color="k", lw=0.5)
        ax_q.axhline(data.ceiling, color="k", ls="--", lw=1,
                     label=f"Q ceiling max|r|/(1−γ) = {data.ceiling:.3g}")
        ax_q.plot([], [], color=colour, ls=":", lw=0.9, label="a seed passes the ceiling")
        ax_q.set_yscale("log")
        ax_s.set_title(f"{name} ({len(data.seeds)} seed{'s' if len(data.seeds) > 1 else ''}, "
                       f"{data.config['dataset_size']:,} transitions)", fontsize=10)
        ax_q.set_xlabel("gradient step")
        ax_s.set_ylim(-0.1, 1.0)
        for ax in (ax_s, ax_q):
            ax.grid(alpha=0.3)
        ax_s.legend(fontsize=7, loc="center right")
        ax_q.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_ylabel("SEEM = max Re λ(A) / ‖A‖_F")
    axes[1, 0].set_ylabel("|mean Q(s, a)| on batches (log scale)")
    fig.suptitle(f"SEEM surge: TD3 without BC (bc_coef 0), Adam 3e-4, τ = 1, γ = 0.99; "
                 f"SEEM every {p['seem_every']:,} steps (thin: seeds, bold: mean)")
    fig.tight_layout()
    return fig


def markdown(per_dataset: dict[str, list[dict]], summary: dict[str, Any],
             runs: dict[str, dv.RunData], p: dict[str, Any],
             skipped: dict[str, str] | None = None) -> str:
    fmt = rp.fmt
    report = rp.Report(
        f"TD3 without BC (bc_coef 0, α 2.5), Adam 3e-4, τ = 1 (hard target copy at every "
        f"actor step), γ 0.99, batch 256; {p['steps']:,} steps on {p['size']:,}-transition "
        f"built-in datasets (the paper: 1M steps on D4RL's ~1M-transition datasets); SEEM every "
        f"{p['seem_every']:,} steps on a {p['seem_probe']}-transition probe (the paper: every "
        "10 000 steps). A seed counts as self-exciting from the first measurement with "
        f"normalised SEEM > {dv.SEEM_THRESHOLD:g} (the library's calibrated verdict threshold); "
        "its Q passed the ceiling at the first log point with |mean Q| > max|r|/(1 − γ), the "
        f"largest possible discounted return; 'exploded' is |Q| > {EXPLODE_FACTOR:g}× the "
        f"ceiling; 'stopped' is the step Q turned non-finite or passed {p['q_bound']:.0e} and "
        "the seed was stopped. Lead = Q-past-ceiling step − SEEM step (positive: SEEM first).")
    report.table(["dataset", "seed", "SEEM > thr. at", "Q > ceiling at", "Q > "
                  f"{EXPLODE_FACTOR:g}× ceiling at", "stopped at", "lead (steps)",
                  "max SEEM", "final SEEM", "max \\|Q\\|"],
                 [[name, r["seed"], fmt(r["seem_above_step"]), fmt(r["q_past_ceiling_step"]),
                   fmt(r["q_exploded_step"]), fmt(r["diverged_at"]), fmt(r["lead_steps"]),
                   rp.fmt_signed(r["max_seem"], 2), rp.fmt_signed(r["final_seem"], 2),
                   fmt(r["max_abs_q"])]
                  for name, rows in per_dataset.items() for r in rows])
    report.text("Q ceilings: " + ", ".join(f"{n} {d.ceiling:.3g}" for n, d in runs.items())
                + ".")
    s = summary
    n_pass = s["q_passed_ceiling"]
    if n_pass:
        all_first = s["seem_at_or_before_q"] == n_pass
        verdict = "matches the paper's claim" if all_first else "partly matches the paper's claim"
        report.finding(
            f"SEEM before Q: of the {n_pass} of {s['seed_runs']} seed-runs whose Q passed the "
            f"ceiling, SEEM had crossed {dv.SEEM_THRESHOLD:g} at or before that log point in "
            f"{s['seem_at_or_before_q']}, after it in {s['seem_after_q']}, and never in "
            f"{s['q_passed_without_seem']} (median lead {fmt(s['median_lead_steps'])} steps); "
            f"this {verdict} that SEEM surges before Q explodes. The median peak SEEM of these "
            f"seeds is {fmt(s['max_seem_of_diverged'], 2)}, against "
            f"{PAPER_SEEM_DIVERGING[0]}–{PAPER_SEEM_DIVERGING[1]} in the paper's diverging runs "
            f"(≈ {PAPER_SEED1['seem_after']} after the jump of antmaze-medium-play seed 1).",
            rp.HOLDS if all_first else rp.DIFFERS)
    else:
        report.finding(f"No seed's Q passed the ceiling in {p['steps']:,} steps, so the order "
                       "of SEEM and Q could not be checked at this scale.", rp.NOT_AT_THIS_SCALE)
    if s["seem_quiet"]:
        bounded = s["seem_quiet_q_bounded"] == s["seem_quiet"]
        report.finding(
            f"SEEM ≈ 0 keeps Q bounded: {s['seem_quiet']} seed-runs never crossed the "
            f"threshold; {s['seem_quiet_q_bounded']} of them kept |Q| below the ceiling"
            + (" (as the paper says)." if bounded
               else f", {s['seem_quiet'] - s['seem_quiet_q_bounded']} did not: Q passed the "
                    "ceiling while SEEM stayed below the threshold, which the paper's claim "
                    "does not predict."), rp.HOLDS if bounded else rp.DIFFERS)
    else:
        report.finding("Every seed-run crossed the SEEM threshold, so the converse claim (SEEM "
                       "≈ 0 keeps Q bounded) is not tested here.", rp.NOT_AT_THIS_SCALE)
    early = [r for rows in per_dataset.values() for r in rows
             if r["seem_above_step"] is not None and r["seem_above_step"] <= 2 * p["seem_every"]]
    report.finding(
        f"Timing: {len(early)} of {s['seed_runs']} seed-runs were self-exciting by the second "
        f"measurement ({fmt(2 * p['seem_every'])} steps), like the paper's antmaze seed 2 (SEEM "
        f"≈ {PAPER_SEED2['seem_after']} within {PAPER_SEED2['seem_within']:,} steps); the "
        f"paper's seed 1 jumped only at ≈ {PAPER_SEED1['seem_jump_step']:,} steps. With "
        f"{p['size']:,} transitions instead of ~1M and {p['steps']:,} steps, the onset times "
        "are not comparable with the paper's, only their order.")
    for why in (skipped or {}).values():
        report.note(f"Not run: {why}.")
    return report.markdown()
