"""Critical discount (SPEC §5.2, the paper's Fig. 4): SEEM and divergence against γ.

TD3 without BC in the diverging setting (bc_coef 0, α 2.5, Adam 3e-4, τ = 1, batch 256) on
walker2d-medium-expert, one run per γ of a grid. Per γ and seed: the final and largest SEEM,
the largest |Q| against that γ's ceiling max|r|/(1 − γ), and whether the seed diverged
(SEEM above the verdict threshold and |Q| past the ceiling). The critical γ is bracketed by
the largest γ at which no seed diverged (with every smaller γ alike) and the smallest γ at
which one did; the paper found SEEM = 0 and bounded Q for γ ≤ 0.927 and divergence from 0.928.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "Critical discount: SEEM and divergence against γ (walker2d-medium-expert)"

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"dataset": "walker2d-medium-expert", "size": 2_000, "fraction": 1.0,
              "gammas": [0.8, 0.99], "seeds": [0], "steps": 300, "log_every": 50,
              "seem_every": 100, "seem_probe": 64},
    "cpu": {"dataset": "walker2d-medium-expert", "size": 100_000, "fraction": 1.0,
            "gammas": [0.8, 0.85, 0.88, 0.9, 0.92, 0.93, 0.95, 0.99], "seeds": [0, 1, 2],
            "steps": 6_000, "log_every": 250, "seem_every": 500, "seem_probe": 128},
    "paper": {"dataset": "walker2d-medium-expert", "size": 1_000_000, "fraction": 1.0,
              "gammas": [0.9, 0.92, 0.925, 0.926, 0.927, 0.928, 0.929, 0.93, 0.95, 0.99],
              "seeds": [0, 1, 2], "steps": 1_000_000, "log_every": 1000, "seem_every": 10_000,
              "seem_probe": 2560},
}

PAPER_SEEM = {0.99: 0.365, 0.95: 0.36, 0.93: 0.25, 0.929: 0.20, 0.928: 0.10}
"""SEEM of the paper's diverging runs by γ (SPEC §5.2, read off its figure)."""
PAPER_CONVERGES_UP_TO = 0.927
"""Largest γ with SEEM = 0 and converging Q in the paper."""
PAPER_DIVERGES_FROM = 0.928
"""Smallest γ that diverged in the paper."""

FINAL_MEASUREMENTS = 3
"""'Final SEEM' is the mean of this many last measurements (one is noisy)."""
Q_BOUND = 1e8
"""Seeds are stopped once |Q| passes this (far beyond every γ's ceiling)."""


def run_name(gamma: float) -> str:
    return f"gamma{gamma:g}"


def run(ctx: Context) -> Outcome:
    p = ctx.params
    path = ctx.dataset(p["dataset"], p["size"])
    gammas = sorted(p["gammas"])
    specs = [RunSpec(run_name(g), dv.train_options(path, p, q_bound=Q_BOUND),
                     {**dv.DIVERGING_TD3, "gamma": g}) for g in gammas]
    trained = ctx.train(specs)
    dv.check_finished(trained, [s.name for s in specs])
    runs = {g: dv.load_run(trained[run_name(g)].run_dir) for g in gammas}

    per_gamma = {g: gamma_result(runs[g]) for g in gammas}
    critical = critical_gamma(per_gamma)
    ctx.save_figure(plot(runs, per_gamma, critical, p), "discount.png")
    results = {"seem_threshold": dv.SEEM_THRESHOLD, "final_measurements": FINAL_MEASUREMENTS,
               "per_gamma": {f"{g:g}": r for g, r in per_gamma.items()},
               "critical": critical,
               "paper": {"converges_up_to": PAPER_CONVERGES_UP_TO,
                         "diverges_from": PAPER_DIVERGES_FROM,
                         "seem": {f"{g:g}": v for g, v in PAPER_SEEM.items()}}}
    return Outcome(results, markdown(per_gamma, critical, runs, p))


def seed_result(s: dv.SeedSeries, ceiling: float) -> dict[str, Any]:
    seem_step, q_step = s.seem_above(), s.q_past(ceiling)
    final_seem = s.final_seem(FINAL_MEASUREMENTS)
    return {"seed": s.seed, "final_seem": rp.json_num(final_seem),
            "max_seem": rp.json_num(s.max_seem()), "max_abs_q": rp.json_num(s.max_abs_q()),
            "seem_above_step": seem_step, "q_past_ceiling_step": q_step,
            "diverged_at": s.stopped_at,
            "self_exciting": bool(final_seem > dv.SEEM_THRESHOLD),
            "q_bounded": q_step is None,
            "diverged": bool(final_seem > dv.SEEM_THRESHOLD and q_step is not None)}


def gamma_result(data: dv.RunData) -> dict[str, Any]:
    seeds = [seed_result(s, data.ceiling) for s in data.seeds]
    return {"q_ceiling": data.ceiling, "seeds": seeds,
            "mean_final_seem": rp.json_num(np.nanmean([_nan(r["final_seem"]) for r in seeds])),
            "diverged_seeds": sum(r["diverged"] for r in seeds),
            "self_exciting_seeds": sum(r["self_exciting"] for r in seeds),
            "q_past_ceiling_seeds": sum(not r["q_bounded"] for r in seeds),
            "num_seeds": len(seeds)}


def _ratio(gamma_result: dict, seed: int) -> float:
    """max |Q| of a seed over its γ's ceiling."""
    q = next(s["max_abs_q"] for s in gamma_result["seeds"] if s["seed"] == seed)
    return _nan(q) / gamma_result["q_ceiling"]


def _seed_bracket(seed: str, b: dict, top: float) -> str:
    if b["diverges_from"] is None:
        return f"seed {seed} never diverged (up to γ = {top:g})"
    if b["converges_up_to"] is None:
        return f"seed {seed} diverged at every γ (from {b['diverges_from']:g})"
    return f"seed {seed} in ({b['converges_up_to']:g}, {b['diverges_from']:g}]"


def _nan(x):
    return np.nan if x is None else x


def critical_gamma(per_gamma: dict[float, dict]) -> dict[str, Any]:
    """Bracket of the critical γ, over all seeds and per seed.

    `converges_up_to`: the largest γ such that no seed diverged at it or any smaller γ;
    `diverges_from`: the smallest γ at which some seed diverged. Also, by SEEM alone and by
    Q alone, and each seed's own bracket. None where the grid has no such point.
    """
    gammas = sorted(per_gamma)

    def bracket(flag) -> dict[str, float | None]:
        first = next((g for g in gammas if flag(g)), None)
        below = [g for g in gammas if first is None or g < first]
        return {"converges_up_to": below[-1] if below else None, "diverges_from": first}

    seeds = [r["seed"] for r in per_gamma[gammas[0]]["seeds"]]

    def seed_flag(seed, key):
        return lambda g: next(r[key] for r in per_gamma[g]["seeds"] if r["seed"] == seed)

    out: dict[str, Any] = {**bracket(lambda g: per_gamma[g]["diverged_seeds"] > 0),
           "by_seem": bracket(lambda g: per_gamma[g]["self_exciting_seeds"] > 0),
           "by_q": bracket(lambda g: per_gamma[g]["q_past_ceiling_seeds"] > 0),
           "per_seed": {str(s): bracket(seed_flag(s, "diverged")) for s in seeds}}
    # Divergence above the critical point need not be monotone in γ at a finite budget.
    first = out["diverges_from"]
    out["non_monotone"] = [g for g in gammas if first is not None and g > first
                           and per_gamma[g]["diverged_seeds"] == 0]
    return out


def plot(runs: dict[float, dv.RunData], per_gamma: dict[float, dict], critical: dict,
         p: dict[str, Any]):
    plt = plotting.pyplot()
    gammas = sorted(runs)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (ax_sg, ax_qg), (ax_st, ax_qt) = axes
    # γ on a log(1 − γ) axis would hide the paper's 0.927/0.928 pair; a linear axis is fine.
    for g in gammas:
        for r in per_gamma[g]["seeds"]:
            colour = "tab:red" if r["diverged"] else "tab:blue"
            ax_sg.plot(g, _nan(r["final_seem"]), "o", color=colour, ms=5, alpha=0.6)
            ax_sg.plot(g, _nan(r["max_seem"]), "^", mfc="none", color=colour, ms=6, alpha=0.6)
            ax_qg.plot(g, _nan(r["max_abs_q"]), "o", color=colour, ms=5, alpha=0.6)
    # Outcomes are bimodal (a seed self-excites or stays at 0), so a mean over seeds would
    # describe no run: the fraction of seeds that diverged is drawn instead.
    ax_frac = ax_sg.twinx()
    ax_frac.step(gammas, [per_gamma[g]["diverged_seeds"] / per_gamma[g]["num_seeds"]
                          for g in gammas], where="mid", color="k", lw=1.6, alpha=0.7)
    ax_frac.set_ylim(-0.05, 1.3)
    ax_frac.set_yticks([0, 0.5, 1])
    ax_frac.set_ylabel("fraction of seeds diverged (black step line)")
    ax_sg.plot([], [], "k-", lw=1.6, alpha=0.7, label="fraction of seeds diverged (right axis)")
    ax_sg.plot([], [], "o", color="tab:red", label=f"final SEEM (last {FINAL_MEASUREMENTS} "
                                                   "measurements), seed diverged")
    ax_sg.plot([], [], "o", color="tab:blue", label="final SEEM, seed did not diverge")
    ax_sg.plot([], [], "^", mfc="none", color="grey", label="largest SEEM of a seed")
    ax_sg.plot(list(PAPER_SEEM), list(PAPER_SEEM.values()), "x", color="tab:green", ms=8,
               mew=2, label="paper (1M steps, D4RL data)")
    ax_sg.axhline(dv.SEEM_THRESHOLD, color="grey", ls=":", lw=1,
                  label=f"verdict threshold {dv.SEEM_THRESHOLD:g}")
    ax_qg.plot(gammas, [runs[g].ceiling for g in gammas], "k--", lw=1,
               label="Q ceiling max|r|/(1−γ)")
    for ax in (ax_sg, ax_qg):
        ax.axvspan(PAPER_CONVERGES_UP_TO, PAPER_DIVERGES_FROM, color="tab:green", alpha=0.25,
                   lw=2, label="paper's critical γ (0.927–0.928)")
        lo, hi = critical["converges_up_to"], critical["diverges_from"]
        if lo is not None and hi is not None:
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.15, label=f"critical γ here "
                                                                      f"({lo:g}–{hi:g})")
        ax.set_xlabel("discount factor γ")
        ax.grid(alpha=0.3)
    ax_sg.set_ylabel("normalised SEEM (dimensionless)")
    ax_sg.set_title("SEEM against γ (each point a seed)")
    ax_qg.set_yscale("log")
    ax_qg.set_ylabel("largest |mean Q| in the run  (log scale)")
    ax_qg.set_title("largest |Q| against γ (red: diverged seeds)")
    ax_sg.set_ylim(-0.05, 1.3)
    ax_sg.legend(fontsize=7, loc="upper left", ncol=2)
    ax_qg.legend(fontsize=7, loc="upper left")
    cmap = plt.get_cmap("viridis")
    for k, g in enumerate(gammas):
        colour = cmap(k / max(1, len(gammas) - 1))
        data = runs[g]
        # One line per seed, no mean (see above: a mean of a diverged and a converged seed
        # is neither).
        for j, s in enumerate(data.seeds):
            label = f"γ = {g:g}" if j == 0 else None
            ax_st.plot(s.seem_steps, s.seem, color=colour, lw=1.1, label=label)
            ax_qt.plot(s.steps, np.abs(s.q), color=colour, lw=1.1, label=label)
    ax_st.axhline(dv.SEEM_THRESHOLD, color="grey", ls=":", lw=1)
    ax_st.set(xlabel="gradient step", ylabel="normalised SEEM (dimensionless)",
              title="SEEM during training (one line per seed)")
    ax_qt.set_yscale("log")
    ax_qt.set(xlabel="gradient step", ylabel="|mean Q(s, a)| on batches  (log scale)",
              title="|Q| during training (one line per seed)")
    for ax in (ax_st, ax_qt):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Critical discount on {p['dataset']} ({runs[gammas[0]].config['dataset_size']:,}"
                 f" transitions): TD3 without BC, Adam 3e-4, τ = 1, {p['steps']:,} steps, "
                 f"{len(p['seeds'])} seed{'s' if len(p['seeds']) > 1 else ''} per γ")
    fig.tight_layout()
    return fig


def markdown(per_gamma: dict[float, dict], critical: dict, runs: dict[float, dv.RunData],
             p: dict[str, Any]) -> str:
    fmt = rp.fmt
    size = runs[min(runs)].config["dataset_size"]
    rows = []
    for g, r in per_gamma.items():
        rows.append([f"{g:g}", fmt(r["q_ceiling"]),
                     " ".join(rp.fmt_signed(s["final_seem"], 2) for s in r["seeds"]),
                     " ".join(fmt(s["max_abs_q"]) for s in r["seeds"]),
                     f"{r['self_exciting_seeds']} / {r['num_seeds']}",
                     f"{r['q_past_ceiling_seeds']} / {r['num_seeds']}",
                     f"{r['diverged_seeds']} / {r['num_seeds']}",
                     rp.fmt_signed(PAPER_SEEM[g], 3) if g in PAPER_SEEM else "—"])
    lo, hi = critical["converges_up_to"], critical["diverges_from"]
    report = rp.Report(
        f"TD3 without BC (bc_coef 0, α 2.5), Adam 3e-4, τ = 1, batch 256 on {p['dataset']} "
        f"({size:,} transitions; the paper used D4RL's ~2M) for {p['steps']:,} steps (the "
        f"paper: 1M), seeds {', '.join(map(str, p['seeds']))} per γ, SEEM every "
        f"{p['seem_every']:,} steps on a {p['seem_probe']}-transition probe. 'Final SEEM' is "
        f"the mean of the last {FINAL_MEASUREMENTS} measurements; a seed is self-exciting when "
        f"it is above {dv.SEEM_THRESHOLD:g}, passed the ceiling when |mean Q| > max|r|/(1 − γ) "
        "at some log point, and diverged when both hold. Per-seed values are in seed order.")
    report.table(["γ", "Q ceiling", "final SEEM per seed", "max \\|Q\\| per seed",
                  "self-exciting", "Q > ceiling", "diverged", "paper's SEEM"], rows)
    report.text(
        "**Critical γ.** "
        + (f"No seed diverged up to γ = {lo:g}; from γ = {hi:g} at least one did, so the "
           f"critical γ here lies in ({lo:g}, {hi:g}]." if lo is not None and hi is not None
           else f"Every γ of the grid had a diverging seed (from {hi:g})." if hi is not None
           else "No γ of the grid diverged within the run length.")
        + f" The paper: converges up to {PAPER_CONVERGES_UP_TO}, diverges from "
          f"{PAPER_DIVERGES_FROM}.")
    report.text("Per seed: " + "; ".join(_seed_bracket(s, b, max(per_gamma))
                                         for s, b in critical["per_seed"].items()) + ".")
    if lo is not None and hi is not None:
        if lo < PAPER_DIVERGES_FROM <= hi or lo <= PAPER_CONVERGES_UP_TO < hi:
            report.finding(f"The bracket ({lo:g}, {hi:g}] contains the paper's critical point "
                           f"{PAPER_CONVERGES_UP_TO}–{PAPER_DIVERGES_FROM}.", rp.HOLDS)
        else:
            side = "below" if hi <= PAPER_CONVERGES_UP_TO else "above"
            report.finding(f"The critical γ found here, ({lo:g}, {hi:g}], is {side} the "
                           f"paper's {PAPER_CONVERGES_UP_TO}–{PAPER_DIVERGES_FROM}. It is not "
                           "expected to match: the critical point depends on the data (here "
                           f"{size:,} transitions generated by seemrl's own policies, not "
                           f"D4RL's), on the run length ({p['steps']:,} steps, not 1M: a seed "
                           "that would diverge later counts as converged here) and on the seed.",
                           rp.DIFFERS)
    inside = [sd for sd, b in critical["per_seed"].items()
              if b["converges_up_to"] is not None and b["diverges_from"] is not None
              and b["converges_up_to"] <= PAPER_CONVERGES_UP_TO
              and b["diverges_from"] >= PAPER_DIVERGES_FROM]
    if inside:
        report.finding("; ".join(
            f"Seed {sd}'s own bracket ({critical['per_seed'][sd]['converges_up_to']:g}, "
            f"{critical['per_seed'][sd]['diverges_from']:g}]" for sd in inside)
            + " contains the paper's critical point.", rp.HOLDS)
    seem_b, q_b = critical["by_seem"], critical["by_q"]
    report.finding(
        f"SEEM alone brackets the critical γ in ({fmt(seem_b['converges_up_to'])}, "
        f"{fmt(seem_b['diverges_from'])}], Q past the ceiling alone in "
        f"({fmt(q_b['converges_up_to'])}, {fmt(q_b['diverges_from'])}]"
        + (" (the same)." if seem_b == q_b else " (they differ)."))
    seed_runs = [(g, s) for g, r in per_gamma.items() for s in r["seeds"]]
    q_only = [(g, s["seed"]) for g, s in seed_runs if not s["q_bounded"] and not
              s["self_exciting"]]
    seem_only = [(g, s["seed"]) for g, s in seed_runs if s["q_bounded"] and s["self_exciting"]]
    both = sum(s["diverged"] for _, s in seed_runs)
    min_div_ratio = min((_ratio(per_gamma[g], s["seed"]) for g, s in seed_runs
                         if s["diverged"]), default=math.nan)
    report.finding(
        f"Per seed-run, SEEM and Q agreed in {len(seed_runs) - len(q_only) - len(seem_only)} "
        f"of {len(seed_runs)} ({both} diverged by both)."
        + (" Q passed the ceiling without self-excitation in "
           + ", ".join(f"γ {g:g} seed {sd} (max |Q| {_ratio(per_gamma[g], sd):.1f}× the "
                       "ceiling)" for g, sd in q_only)
           + f"; the self-exciting seeds reached ≥ {fmt(min_div_ratio)}× it." if q_only else "")
        + (" SEEM was positive with Q still bounded in "
           + ", ".join(f"γ {g:g} seed {sd}" for g, sd in seem_only) + "." if seem_only else ""))
    per_seed = {s: b["diverges_from"] for s, b in critical["per_seed"].items()}
    if len(set(per_seed.values())) > 1:
        report.finding("The transition is not one sharp γ across seeds: each seed has its own "
                       "critical γ (above), so at this scale the fraction of diverging seeds "
                       "rises with γ rather than jumping from none to all.", rp.DIFFERS)
    else:
        report.finding("Every seed switched at the same grid point: a sharp transition, as in "
                       "the paper.", rp.HOLDS)
    if critical["non_monotone"]:
        report.finding("Not monotone: no seed diverged at γ = "
                       + ", ".join(f"{g:g}" for g in critical["non_monotone"])
                       + f" although one did at {hi:g}; within {p['steps']:,} steps divergence "
                         "depends on the seed's early trajectory, not on γ alone.")
    div_seem = [s["final_seem"] for r in per_gamma.values() for s in r["seeds"] if s["diverged"]]
    if div_seem:
        rising = []
        for seed in critical["per_seed"]:
            vals = [next(s["final_seem"] for s in r["seeds"] if str(s["seed"]) == seed)
                    for r in per_gamma.values()
                    if any(str(s["seed"]) == seed and s["diverged"] for s in r["seeds"])]
            if len(vals) >= 2:
                rising.append((seed, vals[0], vals[-1], all(np.diff(vals) > 0)))
        report.finding(
            f"Diverged seeds settle at final SEEM {min(div_seem):.2f}–{max(div_seem):.2f}, "
            f"above the paper's 0.10–0.365 (its 2 560-transition probe and 1M-step runs "
            "differ from this run's; the normalised value is not calibrated across setups). "
            "The paper's SEEM grows with γ above the critical point"
            + ("; so does each seed's here: " + "; ".join(
                f"seed {sd} from {a:.2f} to {b:.2f}" + ("" if mono else " (not monotone)")
                for sd, a, b, mono in rising) + " from its critical γ to the largest."
               if rising else "."))
    return report.markdown()
