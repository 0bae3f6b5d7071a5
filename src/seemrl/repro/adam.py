"""Adam growth orders (SPEC §3, §5.3): a diverging critic trained with Adam grows
polynomially, its parameter norm linearly in t and |Q| ∝ t^L for L linear layers.

Why [derived]: Adam moves each coordinate by ≈ lr per step whatever the gradient's size, so
once the direction is stable ρ = ‖θ‖ ≈ ρ_0 + v·t; an L-homogeneous critic (bias-free ReLU MLP)
has Q_{cθ} = c^L Q_θ, hence |Q| ∝ ρ^L ∝ (t − t_0)^L with t_0 = −ρ_0/v (no finite crash,
unlike SGD). Here: TD3 without BC in the diverging setting (Adam 3e-4, τ = 1, γ 0.99) with
critics of 1, 2 and 3 hidden layers (L = 2, 3, 4), and `fit_adam_growth` over the late part
of each seed's run (the asymptotic regime): the norm line and the exponent k of
log|Q| against log(t − t_0), compared with the predicted k = L.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seemrl import evaluation, plotting
from seemrl.diagnostics import growth
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "Adam: polynomial growth, |Q| ∝ t^L and a linear parameter norm"

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"dataset": "hopper-medium", "size": 2_000, "seeds": [0], "steps": 400,
              "critic_hidden": [[64], [64, 64]], "critic_bias": True,
              "log_every": 50, "seem_every": 200, "seem_probe": 64, "fit_from": 0.25},
    "cpu": {"dataset": "hopper-medium", "size": 100_000, "seeds": [0, 1], "steps": 20_000,
            "critic_hidden": [[256], [256, 256], [256, 256, 256]], "critic_bias": True,
            "log_every": 250, "seem_every": 2_500, "seem_probe": 128, "fit_from": 0.25},
    "paper": {"dataset": "hopper-medium", "size": 1_000_000, "seeds": [0, 1, 2],
              "steps": 1_000_000, "critic_hidden": [[256], [256, 256], [256, 256, 256]],
              "critic_bias": True, "log_every": 1000, "seem_every": 10_000,
              "seem_probe": 2560, "fit_from": 0.25},
}

Q_BOUND = 1e30
"""Seeds stop only when |Q| passes this (float32 overflows at 3.4e38): Adam has no crash."""

# The authors' run (SPEC §3, [code]): critic weight norm by step, L = 3, Q reached ≈ 1e11.
PAPER_NORMS = {10_000: 1_116, 20_000: 1_964, 30_000: 2_754, 510_000: 35_817, 1_000_000: 71_383}
PAPER_NORM_SLOPE = 726 / 10_000
"""≈ +726 per 10k steps: the authors' norm growth per step."""
PAPER_Q_FINAL = 1e11


def run_name(hidden) -> str:
    return f"L{len(hidden) + 1}-" + "x".join(map(str, hidden))


def run(ctx: Context) -> Outcome:
    p = ctx.params
    path = ctx.dataset(p["dataset"], p["size"])
    specs = [RunSpec(run_name(h), dv.train_options(path, p, q_bound=Q_BOUND),
                     {**dv.DIVERGING_TD3, "critic_hidden": list(h),
                      "critic_bias": p["critic_bias"]})
             for h in p["critic_hidden"]]
    trained = ctx.train(specs)
    dv.check_finished(trained, [s.name for s in specs])
    critics = []
    for h, spec in zip(p["critic_hidden"], specs, strict=True):
        data = dv.load_run(trained[spec.name].run_dir)
        L = len(h) + 1
        fits = {s.seed: fit_seed(s, data.ceiling, L, p) for s in data.seeds}
        critics.append((L, h, data, fits))
    results = {"fit_from": p["fit_from"], "q_bound": Q_BOUND,
               "critics": [critic_result(L, h, data, fits) for L, h, data, fits in critics],
               "paper": {"norms": PAPER_NORMS, "norm_slope": PAPER_NORM_SLOPE,
                         "q_final": PAPER_Q_FINAL}}
    ctx.save_figure(plot(critics, p), "adam.png")
    return Outcome(results, markdown(results, p))


def fit_window(s: dv.SeedSeries, ceiling: float, p: dict[str, Any]) -> tuple[float, float]:
    """(first, last) step of the fit: the last (1 − fit_from) of the run, after |Q| first
    passed the ceiling (divergence under way), up to the seed's last finite log point."""
    onset = s.q_past(ceiling)
    start = max(p["fit_from"] * p["steps"], onset if onset is not None else 0.0)
    finite = s.steps[np.isfinite(s.q) & np.isfinite(s.norm)]
    return start, float(finite.max()) if finite.size else start


def fit_seed(s: dv.SeedSeries, ceiling: float, L: int, p: dict[str, Any]):
    """The Adam growth fit of one seed, or None when too few diverging points."""
    onset = s.q_past(ceiling)
    if onset is None:
        return None
    lo, hi = fit_window(s, ceiling, p)
    keep = (s.steps >= lo) & (s.steps <= hi) & np.isfinite(s.q) & np.isfinite(s.norm)
    if keep.sum() < 4:
        return None
    return growth.fit_adam_growth(s.steps[keep], s.norm[keep], s.q[keep], L)


def head_params(hidden, in_dim: int, bias: bool) -> int:
    """Parameters P of one critic head: Linear layers in_dim → hidden… → 1."""
    sizes = [in_dim, *hidden, 1]
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def critic_result(L: int, hidden, data: dv.RunData, fits: dict) -> dict[str, Any]:
    seeds = []
    for s in data.seeds:
        g = fits[s.seed]
        seeds.append({
            "seed": s.seed, "q_past_ceiling_step": s.q_past(data.ceiling),
            "max_abs_q": rp.json_num(s.max_abs_q()),
            "final_norm": rp.json_num(s.norm[np.isfinite(s.norm)][-1]
                                      if np.isfinite(s.norm).any() else None),
            "k": rp.json_num(g.k) if g else None, "k_std": rp.json_num(g.k_std) if g else None,
            "k_vs_log_t": rp.json_num(g.k_raw) if g else None,
            "t0": rp.json_num(g.t0) if g else None,
            "norm_slope": rp.json_num(g.norm_fit.slope) if g else None,
            "norm_r2": rp.json_num(g.norm_fit.r2) if g else None,
            "fit_points": len(g.steps) if g else 0})
    ks = [r["k"] for r in seeds if r["k"] is not None]
    obs_dim, act_dim, _ = evaluation.env_dims(data.config["env_id"])
    params = head_params(hidden, obs_dim + act_dim, data.config["algo"]["critic_bias"])
    lr = data.config["algo"]["lr_critic"]
    return {"L": L, "hidden": list(hidden), "q_ceiling": data.ceiling, "predicted_k": L,
            "params_per_head": params, "lr_sqrt_p": lr * float(np.sqrt(params)),
            "seeds": seeds, "k_mean": float(np.mean(ks)) if ks else None,
            "k_spread": float(np.ptp(ks)) if ks else None,
            "norm_r2_min": min((r["norm_r2"] for r in seeds if r["norm_r2"] is not None),
                               default=None)}


def plot(critics, p: dict[str, Any]):
    plt = plotting.pyplot()
    fig, (ax_q, ax_n, ax_k) = plt.subplots(1, 3, figsize=(17, 5))
    cmap = plt.get_cmap("tab10")
    for k, (L, _, data, fits) in enumerate(critics):
        colour = cmap(k)
        for s in data.seeds:
            ok = np.isfinite(s.q) & (s.steps > 0)
            ax_q.loglog(s.steps[ok], np.abs(s.q[ok]), color=colour, lw=0.9, alpha=0.6)
            ax_n.plot(s.steps, s.norm, color=colour, lw=0.9, alpha=0.6)
            g = fits[s.seed]
            if g is None:
                continue
            t = g.steps
            ax_q.loglog(t, np.exp(g.k_intercept) * (t - g.t0) ** g.k, "--", color="k", lw=1.1)
            ax_n.plot(t, g.norm_fit(t), "--", color="k", lw=1.1)
        ks = [f.k for f in fits.values() if f is not None]
        label = f"L = {L}" + (f": fitted k = {np.mean(ks):.2f}" if ks else ": no fit")
        ax_q.plot([], [], color=colour, lw=2, label=label)
        ax_n.plot([], [], color=colour, lw=2, label=f"L = {L}")
        for f in fits.values():
            if f is not None:
                ax_k.errorbar([L], [f.k], yerr=[f.k_std], fmt="o", color=colour, ms=6,
                              capsize=3)
                ax_k.plot([L], [f.k_raw], "x", color=colour, ms=7)
    ceilings = {data.ceiling for _, _, data, _ in critics}
    for c in ceilings:
        ax_q.axhline(c, color="grey", ls=":", lw=1)
    ax_q.plot([], [], "k--", lw=1.1, label="fit |Q| = a·(t − t0)^k")
    ax_q.plot([], [], color="grey", ls=":", label="Q ceiling max|r|/(1−γ)")
    ax_q.set(xlabel="gradient step t (log scale)", ylabel="|mean Q(s, a)| on batches (log scale)",
             title="|Q| against t (thin: seeds)")
    ax_n.plot([], [], "k--", lw=1.1, label="linear fit ρ = ρ0 + v·t")
    ax_n.set(xlabel="gradient step t", ylabel="critic parameter norm ρ (head 0)",
             title="parameter norm against t: linear under Adam")
    Ls = [L for L, *_ in critics]
    ax_k.plot(Ls, Ls, "k-", lw=1.2, label="predicted k = L")
    ax_k.plot([], [], "o", color="grey", label="fitted k vs log(t − t0) (± 1σ), per seed")
    ax_k.plot([], [], "x", color="grey", label="slope vs log t (no shift)")
    ax_k.set(xlabel="L (linear layers of the critic)", ylabel="growth exponent k of |Q|",
             title="exponent against L", xticks=Ls)
    for ax in (ax_q, ax_n, ax_k):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Adam growth orders: TD3 without BC, Adam 3e-4, τ = 1, γ 0.99 on "
                 f"{p['dataset']}, {'bias-free' if not p['critic_bias'] else 'biased'} ReLU "
                 f"critics; fits over steps ≥ {p['fit_from']:g} × {p['steps']:,}")
    fig.tight_layout()
    return fig


def markdown(results: dict[str, Any], p: dict[str, Any]) -> str:
    fmt = rp.fmt
    kind = ("biased (the paper's critics; with biases Q is L-homogeneous only asymptotically, "
            "once the weights dominate)" if p["critic_bias"]
            else "bias-free (L-homogeneous, as the theory assumes)")
    report = rp.Report(
        f"TD3 without BC (bc_coef 0, α 2.5), Adam 3e-4, τ = 1, γ 0.99, batch 256 on "
        f"{p['dataset']} ({p['size']:,} transitions), {p['steps']:,} steps, seeds "
        f"{', '.join(map(str, p['seeds']))}; critics are {kind} ReLU MLPs "
        "with 1–3 hidden layers. Fits (diagnostics/growth.py `fit_adam_growth`) use "
        f"the log points from step {p['fit_from']:g} × {p['steps']:,} on (and after |Q| passed "
        "the ceiling max|r|/(1 − γ)): ρ = ρ0 + v·t by least squares, t0 = −ρ0/v, and k = slope "
        "of log|Q| against log(t − t0); 'k vs log t' is the slope without the shift.",
        against="the theory and the paper")
    report.table(["L", "hidden", "seed", "Q > ceiling at", "max \\|Q\\|", "k (± 1σ)",
                  "k vs log t", "norm slope v (per step)", "norm fit R²", "final ρ"],
                 [[c["L"], "×".join(map(str, c["hidden"])), s["seed"],
                   fmt(s["q_past_ceiling_step"]), fmt(s["max_abs_q"]),
                   f"{s['k']:.2f} ± {s['k_std']:.2f}" if s["k"] is not None else "—",
                   fmt(s["k_vs_log_t"]), fmt(s["norm_slope"]), fmt(s["norm_r2"], 4),
                   fmt(s["final_norm"])]
                  for c in results["critics"] for s in c["seeds"]])
    for c in results["critics"]:
        if c["k_mean"] is None:
            report.finding(f"L = {c['L']}: no seed diverged, nothing to fit.",
                           rp.NOT_AT_THIS_SCALE)
            continue
        rel = (c["k_mean"] - c["L"]) / c["L"]
        report.finding(
            f"L = {c['L']}: mean fitted k = {c['k_mean']:.2f} against the predicted {c['L']} "
            f"({100 * rel:+.0f} %); the norm is linear in t with R² ≥ "
            f"{fmt(c['norm_r2_min'], 4)}.")
    ks = [(c["L"], c["k_mean"]) for c in results["critics"] if c["k_mean"] is not None]
    if len(ks) >= 2:
        increasing = all(b[1] > a[1] for a, b in zip(ks, ks[1:], strict=False))
        slope = np.polyfit([L for L, _ in ks], [k for _, k in ks], 1)[0]
        follows = increasing and 0.5 <= slope <= 1.5
        report.finding(
            f"k {'grows' if increasing else 'does not grow monotonically'} with L: the "
            f"slope of k against L is {slope:.2f} (the theory: 1). "
            + ("Polynomial growth with an exponent that follows L, as predicted."
               if follows else
               "The exponents do not follow k = L closely at this scale."),
            rp.HOLDS if follows else rp.DIFFERS)
    rates = [(c, np.mean([s["norm_slope"] for s in c["seeds"] if s["norm_slope"] is not None]))
             for c in results["critics"] if any(s["norm_slope"] for s in c["seeds"])]
    if rates:
        report.finding(
            "Norm growth rate per 10k steps (mean over seeds) against lr·√P·10⁴, the rate "
            "if every one of the head's P parameters moved by lr per step in a fixed "
            "direction: " + "; ".join(
                f"L = {c['L']}: {v * 1e4:,.0f} vs {c['lr_sqrt_p'] * 1e4:,.0f} (P = "
                f"{c['params_per_head']:,})" for c, v in rates)
            + f". The authors' L = 3 run grew ≈ {PAPER_NORM_SLOPE * 10_000:,.0f} per 10k steps "
              f"(norm {PAPER_NORMS[10_000]:,} at 10k, {PAPER_NORMS[1_000_000]:,} at 1M; Q ≈ "
              f"{PAPER_Q_FINAL:.0e}).")
    report.note(f"At {p['steps']:,} steps (the paper: 1M) the fit window is short; "
                "the exponent is sensitive to where the asymptotic regime starts.")
    return report.markdown()
