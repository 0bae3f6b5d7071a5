"""SGD growth orders and crash step (SPEC §3, §5.3): a self-exciting critic trained with plain
SGD blows up in finite time, at a step predictable from the early divergent phase.

Why [derived]: for an L-homogeneous critic (bias-free ReLU MLP, L linear layers) with a stable
NTK direction, dρ/dt ≈ κ·ρ^{2L−1} for ρ = ‖θ‖, so ρ^{−(2L−2)} falls linearly in t and reaches 0
at a finite crash step t*; |Q| ∝ ρ^L, so |Q|^{−(2L−2)/L} falls linearly to the same t*.

Here: TD3 without BC (bc_coef 0, α 2.5), plain SGD (no momentum) for actor and critic, γ 0.99,
τ = 1 and τ = 0.005, critics with and without biases. Per seed: the onset (the first SEEM
measurement above the verdict threshold, or the first log point with |Q| past the ceiling
max|r|/(1 − γ) if that is earlier), the actual crash (Q or the loss non-finite, or |Q|
past `Q_BOUND`), and the crash predicted by `growth.predict_crash_sgd` from the first half of
the divergent phase [onset, crash] (as `seemrl diagnose` does: the window is placed with
hindsight, so this tests the law, and the prediction is made half-way to the crash); then the
growth orders: slopes of log ρ and log|Q| against log(t* − t) with the actual t*, against the
predicted −1/(2L−2) and −L/(2L−2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.diagnostics import growth
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "SGD: finite-time blow-up at a predictable crash step"

_CONFIGS = [{"name": "tau1-nobias", "tau": 1.0, "critic_bias": False},
            {"name": "tau0.005-nobias", "tau": 0.005, "critic_bias": False},
            {"name": "tau1-bias", "tau": 1.0, "critic_bias": True},
            {"name": "tau0.005-bias", "tau": 0.005, "critic_bias": True}]

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"dataset": "hopper-medium", "size": 2_000, "fraction": 1.0, "seeds": [0],
              "steps": 300, "lr": 3e-4, "critic_hidden": [32, 32], "configs": _CONFIGS[:1],
              "log_every": 10, "seem_every": 100, "seem_probe": 64},
    "cpu": {"dataset": "hopper-medium", "size": 100_000, "fraction": 0.01, "seeds": [0, 1],
            "steps": 15_000, "lr": 3e-4, "critic_hidden": [256, 256], "configs": _CONFIGS,
            "log_every": 20, "seem_every": 1_000, "seem_probe": 128},
    "paper": {"dataset": "hopper-medium", "size": 1_000_000, "fraction": 1.0,
              "seeds": [0, 1, 2], "steps": 1_000_000, "lr": 3e-4, "critic_hidden": [256, 256],
              "configs": _CONFIGS, "log_every": 100, "seem_every": 10_000, "seem_probe": 2560},
}

Q_BOUND = 1e30
"""|Q| past this counts as the crash (float32 overflows at 3.4e38 a few steps later)."""
MIN_POINTS = 4
"""Fewest log points a fit needs (fewer: no prediction)."""

# The authors' toy run (SPEC §3 [code]): 1/Q fell linearly from 0.30 at iteration 200 to 0
# at ≈ 303 (L = 2, where |Q|^{−(2L−2)/L} = 1/|Q|).
PAPER_TOY = {"inv_q_at_200": 0.30, "crash": 303}


def run(ctx: Context) -> Outcome:
    p = ctx.params
    path = ctx.dataset(p["dataset"], p["size"])
    specs = [RunSpec(c["name"], dv.train_options(path, p, q_bound=Q_BOUND),
                     {**dv.DIVERGING_TD3, "optimizer": "sgd", "lr_actor": p["lr"],
                      "lr_critic": p["lr"], "tau": c["tau"], "critic_bias": c["critic_bias"],
                      "critic_hidden": list(p["critic_hidden"])})
             for c in p["configs"]]
    trained = ctx.train(specs)
    dv.check_finished(trained, [s.name for s in specs])
    L = len(p["critic_hidden"]) + 1
    configs = {}
    for c in p["configs"]:
        data = dv.load_run(trained[c["name"]].run_dir)
        configs[c["name"]] = (c, data, {s.seed: analyse(s, data.ceiling, L) for s in data.seeds})
    results = {"L": L, "q_bound": Q_BOUND, "paper_toy": PAPER_TOY,
               "configs": {name: config_result(c, data, seeds, L)
                           for name, (c, data, seeds) in configs.items()}}
    ctx.save_figure(plot_crash(configs, L, p), "sgd_crash.png")
    if any(a["orders"] for _, _, seeds in configs.values() for a in seeds.values()):
        ctx.save_figure(plot_orders(configs, L, p), "sgd_orders.png")
    return Outcome(results, markdown(results, p))


def analyse(s: dv.SeedSeries, ceiling: float, L: int) -> dict[str, Any]:
    """Onset, crash, the two crash predictions and the growth orders of one seed."""
    crash = s.stopped_at
    # Divergence under way: SEEM says self-excitation (what an online monitor sees first),
    # or Q already past any possible return, whichever comes first.
    onset = min((t for t in (s.seem_above(), s.q_past(ceiling)) if t is not None),
                default=None)
    out: dict[str, Any] = {"onset": onset, "crash": crash, "predictions": {}, "orders": {}}
    if onset is None or crash is None:
        return out
    end = onset + (crash - onset) / 2
    ok = np.isfinite(s.q) & np.isfinite(s.norm) & (s.steps < crash)
    for quantity, values in (("norm", s.norm), ("q", s.q)):
        keep = ok & (s.steps >= onset) & (s.steps <= end)
        if keep.sum() < MIN_POINTS:
            continue
        out["predictions"][quantity] = growth.predict_crash_sgd(s.steps[keep], values[keep], L,
                                                                quantity)
        # Growth order over the whole divergent phase with the actual crash step.
        phase = ok & (s.steps >= onset)
        if phase.sum() >= MIN_POINTS:
            fit = growth.fit_line(np.log(crash - s.steps[phase]), np.log(np.abs(values[phase])))
            out["orders"][quantity] = fit
    out["window"] = (onset, end)
    return out


def predicted_order(L: int, quantity: str) -> float:
    """Slope of log ρ (or log|Q|) against log(t* − t) under SGD: −1/(2L−2) (or −L/(2L−2))."""
    return (-1.0 if quantity == "norm" else -float(L)) / (2.0 * L - 2.0)


def max_jump(s: dv.SeedSeries, onset: float | None) -> float | None:
    """Largest ρ(t + Δ)/ρ(t) over one log interval Δ from the onset on, leaving out the last
    interval before a crash (None if no such pair). Under the smooth law
    ρ ∝ (t* − t)^{−1/(2L−2)} it is at most 2^{1/(2L−2)} (`smooth_jump_bound`)."""
    if onset is None:
        return None
    norm = s.norm[(s.steps >= onset) & np.isfinite(s.norm)]
    if s.stopped_at is not None:
        norm = norm[:-1]
    return float(np.max(norm[1:] / norm[:-1])) if len(norm) > 1 else None


def smooth_jump_bound(L: int) -> float:
    """The largest one-interval growth of ρ the smooth SGD law allows when the later point is
    at least one interval Δ before the crash: ((t* − t)/(t* − t − Δ))^{1/(2L−2)} with
    t* − t ≥ 2Δ gives 2^{1/(2L−2)} (1.19 for L = 3)."""
    return 2.0 ** (1.0 / (2 * L - 2))


def config_result(c: dict, data: dv.RunData, seeds: dict[int, dict], L: int) -> dict[str, Any]:
    rows = []
    for s in data.seeds:
        a = seeds[s.seed]
        preds = {}
        for quantity, pred in a["predictions"].items():
            lead = a["crash"] - a["window"][1]
            preds[quantity] = {
                "t_star": rp.json_num(pred.t_star), "t_star_std": rp.json_num(pred.t_star_std),
                "exponent": pred.exponent, "r2": rp.json_num(pred.fit.r2),
                "fit_points": int(len(pred.steps)),
                "error_steps": rp.json_num(pred.t_star - a["crash"]),
                "error_of_lead": rp.json_num((pred.t_star - a["crash"]) / lead if lead > 0
                                             else None)}
        orders = {q: {"slope": rp.json_num(f.slope), "predicted": predicted_order(L, q),
                      "r2": rp.json_num(f.r2)} for q, f in a["orders"].items()}
        rows.append({"seed": s.seed, "onset_step": a["onset"], "crash_step": a["crash"],
                     "max_norm_jump": rp.json_num(max_jump(s, a["onset"])),
                     "window": list(a["window"]) if "window" in a else None,
                     "seem_above_step": s.seem_above(), "max_seem": rp.json_num(s.max_seem()),
                     "max_abs_q": rp.json_num(s.max_abs_q()), "predictions": preds,
                     "orders": orders})
    return {"tau": c["tau"], "critic_bias": c["critic_bias"], "L": L,
            "q_ceiling": data.ceiling, "seeds": rows,
            "crashed": sum(r["crash_step"] is not None for r in rows)}


def _label(c: dict) -> str:
    return f"τ = {c['tau']:g}, {'with' if c['critic_bias'] else 'no'} biases"


def plot_crash(configs, L: int, p: dict[str, Any]):
    """Per config (columns): |Q| and ρ against steps over the whole run (onset ▲, crash ×),
    and for crashed seeds ρ^{−(2L−2)} (/ its fitted value at onset) with the line fitted on
    the shaded window extended to its zero: predicted crash dashed, actual crash solid."""
    plt = plotting.pyplot()
    n = len(configs)
    fig, axes = plt.subplots(3, n, figsize=(4.6 * n, 11), squeeze=False)
    cmap = plt.get_cmap("tab10")
    expo = growth.sgd_exponent(L, "norm")
    for k, (c, data, seeds) in enumerate(configs.values()):
        ax_q, ax_n, ax_f = axes[:, k]
        fitted = 0
        for j, s in enumerate(data.seeds):
            colour, a = cmap(j), seeds[s.seed]
            ok = np.isfinite(s.q)
            ax_q.plot(s.steps[ok], np.abs(s.q[ok]), color=colour, lw=0.8, label=f"seed {s.seed}")
            ok = np.isfinite(s.norm)
            ax_n.plot(s.steps[ok], s.norm[ok], color=colour, lw=0.8, label=f"seed {s.seed}")
            for ax, values in ((ax_q, np.abs(s.q)), (ax_n, s.norm)):
                if a["onset"] is not None:
                    ax.plot([a["onset"]], [np.interp(a["onset"], s.steps[ok], values[ok])],
                            "^", color=colour, ms=7)
                if a["crash"] is not None:
                    finite = np.isfinite(values)
                    ax.plot([a["crash"]], [values[finite][-1]], "X", color=colour, ms=9)
            pred = a["predictions"].get("norm")
            if pred is None:
                continue
            fitted += 1
            lo, crash = a["onset"], a["crash"]
            show = ok & (s.steps >= lo - (crash - lo) * 0.5) & (s.steps < crash)
            scale = pred.fit(lo)
            ax_f.plot(s.steps[show], np.abs(s.norm[show]) ** pred.exponent / scale, "o-",
                      color=colour, ms=2.5, lw=0.8, label=f"seed {s.seed} (R² {pred.fit.r2:.2f})")
            end = pred.t_star if np.isfinite(pred.t_star) else s.steps[show].max()
            t = np.linspace(lo, min(max(end, lo), crash + 2 * (crash - lo)), 50)
            ax_f.plot(t, pred.fit(t) / scale, "--", color="k", lw=1)
            ax_f.axvspan(*a["window"], color=colour, alpha=0.1)
            if np.isfinite(pred.t_star):
                ax_f.axvline(pred.t_star, color=colour, ls="--", lw=1.2)
            ax_f.axvline(crash, color=colour, ls="-", lw=1.2)
        ax_q.axhline(data.ceiling, color="k", ls="--", lw=1, label="Q ceiling max|r|/(1−γ)")
        ax_q.set_yscale("log")
        ax_n.set_yscale("log")
        ax_q.set_title(f"{_label(c)}", fontsize=11)
        ax_q.set_ylabel("|mean Q(s, a)| (log scale)")
        ax_n.set_ylabel("critic parameter norm ρ (log scale)")
        ax_f.axhline(0.0, color="k", lw=0.5)
        ax_f.set_ylabel(f"ρ^({expo:g}) / fitted value at onset")
        if fitted:
            ax_f.set_ylim(-0.1, 1.6)
            ax_f.plot([], [], "k--", lw=1, label="line fitted on shaded window")
            ax_f.plot([], [], color="grey", ls="--", label="predicted crash")
            ax_f.plot([], [], color="grey", ls="-", label="actual crash")
            ax_f.legend(fontsize=7, loc="upper right")
        else:
            crashed = sum(a["crash"] is not None for a in seeds.values())
            why = ("no seed crashed" if not crashed else
                   "the crashed seeds' divergent\nphase was too short to fit")
            ax_f.text(0.5, 0.5, f"no crash prediction:\n{why}", ha="center", va="center",
                      transform=ax_f.transAxes, fontsize=10, color="grey")
            ax_f.set_yticks([])
        for ax in (ax_q, ax_n, ax_f):
            ax.set_xlabel("gradient step")
            ax.grid(alpha=0.3)
    # One legend for the top two rows (the same in every column), below the figure.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], marker="^", color="grey", ls=""),
                plt.Line2D([], [], marker="X", color="grey", ls="", ms=8)]
    labels += [f"onset (SEEM > {dv.SEEM_THRESHOLD:g} or Q > ceiling)",
               "crash (Q non-finite)"]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(f"SGD (lr {p['lr']:g}, no momentum), TD3 without BC, γ 0.99, on "
                 f"{p['fraction']:g} of {p['dataset']} ({p['size']:,} transitions), critic L = "
                 f"{L}: |Q|, ρ and the finite-time blow-up law ρ^({expo:g}) → 0 at the crash")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_orders(configs, L: int, p: dict[str, Any]):
    """log ρ and log|Q| against log(t* − t) with the predicted slopes."""
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    cmap = plt.get_cmap("tab10")
    for k, (c, data, seeds) in enumerate(configs.values()):
        for s in data.seeds:
            a = seeds[s.seed]
            if a["crash"] is None or a["onset"] is None:
                continue
            for ax, values in ((axes[0], s.norm), (axes[1], s.q)):
                ok = (np.isfinite(values) & (s.steps >= a["onset"]) & (s.steps < a["crash"]))
                if ok.sum() < 2:
                    continue
                ax.loglog(a["crash"] - s.steps[ok], np.abs(values[ok]), "o-", color=cmap(k),
                          ms=2.5, lw=0.8, alpha=0.7)
        if any(a["crash"] is not None for a in seeds.values()):
            axes[0].plot([], [], color=cmap(k), lw=2, label=_label(c))
            axes[1].plot([], [], color=cmap(k), lw=2, label=_label(c))
    for ax, quantity, name in ((axes[0], "norm", "critic parameter norm ρ"),
                               (axes[1], "q", "|mean Q(s, a)|")):
        slope = predicted_order(L, quantity)
        lines = [line for line in ax.get_lines() if len(line.get_xdata())]
        if lines:
            x = np.concatenate([line.get_xdata() for line in lines])
            y = np.concatenate([line.get_ydata() for line in lines])
            xs = np.geomspace(x.min(), x.max(), 20)
            anchor = np.exp(np.median(np.log(y) - slope * np.log(x)))
            ax.loglog(xs, anchor * xs**slope, "k--", lw=1.4,
                      label=f"predicted slope {slope:.3g}")
        ax.set(xlabel="steps before the actual crash, t* − t (log scale)",
               ylabel=f"{name} (log scale)", title=f"{name} against t* − t")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"SGD growth orders (L = {L}): ρ ∝ (t* − t)^(−1/(2L−2)), "
                 f"|Q| ∝ (t* − t)^(−L/(2L−2)); divergent phase of each crashed seed")
    fig.tight_layout()
    return fig


def _smooth_case(c: dict, s: dict) -> str:
    pred = s["predictions"]["norm"]
    return (f"{_label(c)} seed {s['seed']}: predicted from ρ at step {rp.fmt(pred['t_star'])}, "
            f"crashed at {rp.fmt(s['crash_step'])} ({pred['error_steps']:+,.0f} steps, "
            f"{100 * abs(pred['error_of_lead']):.0f} % of the time left when the fit ended)")


def _prediction(pred: dict | None) -> str:
    if pred is None:
        return "—"
    if pred["t_star"] is None:
        return f"no zero crossing (R² {pred['r2']:.2f})"
    return f"{rp.fmt(pred['t_star'])} ({pred['error_steps']:+,.0f}; R² {pred['r2']:.2f})"


def markdown(results: dict[str, Any], p: dict[str, Any]) -> str:
    fmt = rp.fmt
    L = results["L"]
    rows = []
    for c in results["configs"].values():
        for s in c["seeds"]:
            pn, pq = s["predictions"].get("norm"), s["predictions"].get("q")
            on, oq = s["orders"].get("norm"), s["orders"].get("q")
            rows.append([
                _label(c), s["seed"], fmt(s["seem_above_step"]), fmt(s["onset_step"]),
                fmt(s["crash_step"]),
                _prediction(pn), _prediction(pq), fmt(s["max_norm_jump"]),
                fmt(on["slope"]) if on else "—", fmt(oq["slope"]) if oq else "—"])
    report = rp.Report(
        f"TD3 without BC (bc_coef 0, α 2.5), plain SGD (no momentum) lr {p['lr']:g} for actor "
        f"and critic, γ 0.99, batch 256, on {p['fraction']:g} of {p['dataset']} "
        f"({p['size']:,} transitions), {p['steps']:,} steps, seeds "
        f"{', '.join(map(str, p['seeds']))}; critic {'×'.join(map(str, p['critic_hidden']))} "
        f"ReLU (L = {L}); logged every {p['log_every']} steps, SEEM every "
        f"{p['seem_every']:,}. Onset: the first SEEM measurement above {dv.SEEM_THRESHOLD:g} "
        "(self-excitation), or the first log point with |Q| past the ceiling max|r|/(1 − γ) "
        "if earlier. Crash: the step Q (or the loss) turned "
        f"non-finite or |Q| passed {Q_BOUND:.0e}. Predicted crash: `predict_crash_sgd` on the "
        f"first half of [onset, crash], fitting ρ^({growth.sgd_exponent(L, 'norm'):g}) or "
        f"|Q|^({growth.sgd_exponent(L, 'q'):.3g}) linearly in t. Growth orders: slopes of "
        f"log ρ and log|Q| against log(t* − t) over [onset, crash) (predicted "
        f"{predicted_order(L, 'norm'):.3g} and {predicted_order(L, 'q'):.3g}).",
        against="the theory and the paper")
    report.table(["config", "seed", "SEEM > thr. at", "onset", "actual crash",
                  "predicted from ρ (error; R²)", "predicted from \\|Q\\| (error; R²)",
                  "largest ρ jump (×)", "order of ρ", "order of \\|Q\\|"], rows)
    crashed = [(name, c, s) for name, c in results["configs"].items() for s in c["seeds"]
               if s["crash_step"] is not None]
    total = sum(len(c["seeds"]) for c in results["configs"].values())
    report.finding(f"{len(crashed)} of {total} seed-runs crashed (Q non-finite) within "
                 f"{p['steps']:,} steps: "
                 + ", ".join(f"{_label(c)} {c['crashed']}/{len(c['seeds'])}"
                             for c in results["configs"].values()) + ".")
    for quantity, name in (("norm", "ρ"), ("q", "|Q|")):
        errs = [s["predictions"][quantity]["error_of_lead"] for _, _, s in crashed
                if quantity in s["predictions"]
                and s["predictions"][quantity]["error_of_lead"] is not None]
        r2 = [s["predictions"][quantity]["r2"] for _, _, s in crashed
              if quantity in s["predictions"]]
        if errs:
            good = sum(abs(e) <= 0.5 for e in errs)
            report.finding(
                f"Crash predicted from {name}: in {good} of {len(errs)} seed-runs the "
                "predicted step was within half the remaining time of the actual crash "
                f"(median error {np.median(errs):+.2f} × the time left when the fit ended; "
                f"median R² of the linear fit {np.median(r2):.3f}).")
        orders = [s["orders"][quantity]["slope"] for _, _, s in crashed
                  if quantity in s["orders"]]
        if orders:
            pred = predicted_order(L, quantity)
            report.finding(f"Growth order of {name}: median slope {np.median(orders):.3g} "
                           f"against log(t* − t), predicted {pred:.3g} for L = {L}.")
    jumps = [(c, s) for _, c, s in crashed if s["max_norm_jump"] is not None]
    if jumps:
        bound = smooth_jump_bound(L)
        abrupt = [(c, s) for c, s in jumps if s["max_norm_jump"] > bound]
        report.finding(
            f"How the crashed runs blew up: in {len(abrupt)} of {len(jumps)} ρ jumped by more "
            f"than the smooth law allows ({bound:.2f}× within one {p['log_every']}-step log "
            "interval, except the last before the crash) somewhere after the onset ("
            + ", ".join(f"{_label(c)} seed {s['seed']}: {s['max_norm_jump']:.2f}×"
                        for c, s in jumps)
            + "; the seeds that did not crash: "
            + ", ".join(f"{s['max_norm_jump']:.2f}×" for c in results["configs"].values()
                        for s in c["seeds"] if s["crash_step"] is None
                        and s["max_norm_jump"] is not None)
            + "). The theory's smooth ρ^(−(2L−2)) → 0 describes the gradient-flow limit; a jump "
              "is a discrete SGD step too large for the critic's curvature, which no fit of the "
              "smooth law can time.")
        smooth = [(c, s) for c, s in jumps if s["max_norm_jump"] <= bound
                  and "norm" in s["predictions"]
                  and s["predictions"]["norm"]["t_star"] is not None]
        if smooth:
            report.finding(
                "Where ρ grew smoothly up to the crash: "
                + "; ".join(_smooth_case(c, s) for c, s in smooth) + ".")
    no_fit = [(name, s["seed"]) for name, _, s in crashed if not s["predictions"]]
    if no_fit:
        report.finding(f"{len(no_fit)} crashed seed-runs had fewer than {MIN_POINTS} log "
                       "points in the first half of their divergent phase: the blow-up was "
                       "faster than the logging could resolve, so no prediction was possible.",
                       rp.NOT_AT_THIS_SCALE)
    report.note(f"The paper's toy run (SPEC §3): 1/Q fell linearly from "
                f"{PAPER_TOY['inv_q_at_200']} at iteration 200 to 0 at ≈ {PAPER_TOY['crash']}. "
                "The paper states growth order and crash step are predictable for SGD but "
                "gives no TD3 numbers to compare with.")
    return report.markdown()
