"""Regulariser comparison and LayerNorm ablation (SPEC §5.8): what stops Q-value divergence?

The paper's diverging setting (TD3 without BC, τ = 1, SPEC §5.1) on a small fraction of a
dataset, once per critic variant: no regulariser; LayerNorm (Linear → LN → act on every hidden
layer, the authors' critic); LN after the activation (ReBRAC's placement); LN on subsets of the
hidden layers (the authors ablate {0}, {0,1}, {0,1,2}, {2}, {1,2} of a 3-layer critic); and
what a user would try instead: weight decay (AdamW), dropout, BatchNorm, spectral norm.
Judged per variant by the share of seeds whose Q diverged (|mean Q| passed max|r|/(1 − γ) or
turned non-finite), SEEM (final and largest), the largest |Q| and the final normalised score.

Why only LN should help (SPEC §4): LN makes each normed layer's output invariant to the scale
of its input, so the NTK k(x, x0) stays bounded as x moves away from the data; weight decay,
dropout, spectral norm and BatchNorm's eval form (an affine map per unit) all leave a ReLU
critic's kernel growing linearly in ‖x‖, so γ·G(X*, X) can still outgrow G(X, X).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.diagnostics.verdict import VerdictConfig
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "Which critic regulariser stops Q-value divergence: LayerNorm vs the usual suspects"

_MAIN = ["none", "layernorm", "weight-decay", "dropout", "batchnorm", "spectral-norm"]

SCALES: dict[str, dict[str, Any]] = {
    # Seconds: a tiny dataset, the main variants only, one short seed each.
    "smoke": {"datasets": ["hopper-medium"], "size": 2_000, "fraction": 0.1, "seeds": [0],
              "steps": 100, "log_every": 50, "seem_every": 50, "seem_probe": 32,
              "q_bound": 1e8, "eval_episodes": 1, "critic_hidden": [32, 32],
              "weight_decay": 1.0, "dropout": 0.1, "ln_sets": [], "variants": _MAIN},
    # 1 % of hopper-medium, 3 seeds, 2 500 steps: with τ = 1 an unregularised critic passes
    # the Q ceiling within ~500 steps here, so this is long enough to tell the variants apart;
    # 9 runs, each compiling its own networks: 502 CPU-seconds in all (measured), i.e. about
    # 4-8 minutes alone on 2 cores (27 minutes on the shared development machine at load 10).
    "cpu": {"datasets": ["hopper-medium"], "size": 100_000, "fraction": 0.01,
            "seeds": [0, 1, 2], "steps": 2_500, "log_every": 250, "seem_every": 250,
            "seem_probe": 128,
            "q_bound": 1e8, "eval_episodes": 3, "critic_hidden": [256, 256],
            "weight_decay": 1.0, "dropout": 0.1, "ln_sets": [[0], [1]],
            "variants": _MAIN + ["layernorm-after", "layernorm-sets"]},
    # The paper's scale: 1M steps, the authors' 3-hidden-layer LN ablation sets, 5 seeds,
    # 1 % of two datasets of 1M transitions, SEEM every 10k steps on their 2 560 probe.
    "paper": {"datasets": ["hopper-medium", "walker2d-medium"], "size": 1_000_000,
              "fraction": 0.01, "seeds": [0, 1, 2, 3, 4], "steps": 1_000_000,
              "log_every": 1000, "seem_every": 10_000, "seem_probe": 2560, "q_bound": 1e12,
              "eval_episodes": 10, "critic_hidden": [256, 256, 256], "weight_decay": 1.0,
              "dropout": 0.1, "ln_sets": [[0], [0, 1], [2], [1, 2]],
              "variants": _MAIN + ["layernorm-after", "layernorm-sets"]},
}

EXPLODE_FACTOR = 10.0
"""|Q| above this many ceilings counts as a runaway (an order of magnitude past any return),
as opposed to an overshoot of the ceiling that levels off."""

SUSTAINED = VerdictConfig().consecutive
"""SEEM above the threshold for this many measurements in a row is the library's verdict
(docs/VERDICT.md); a single measurement above it is only a spike."""

FAMILIES = {"regularisers": ["none", "layernorm", "weight-decay", "dropout", "batchnorm",
                             "spectral-norm"],
            "layernorm": ["none", "layernorm", "layernorm-after", "layernorm-sets"]}
"""Variant groups drawn as one curves figure each ("layernorm-sets" expands to its sets)."""


def variants(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> {"label", "group", "options" (td3bc options on top of the diverging TD3)}."""
    n = len(p["critic_hidden"])
    all_layers = "{" + ",".join(map(str, range(n))) + "}"
    table = {
        "none": ("no regulariser", {}),
        "layernorm": (f"LayerNorm, Linear→LN→ReLU on layers {all_layers}", {"layer_norm": True}),
        "layernorm-after": (f"LayerNorm after ReLU on layers {all_layers}",
                            {"layer_norm": True, "ln_placement": "after"}),
        "weight-decay": (f"weight decay {p['weight_decay']:g} (AdamW)",
                         {"weight_decay": p["weight_decay"]}),
        "dropout": (f"dropout {p['dropout']:g}", {"critic_dropout": p["dropout"]}),
        "batchnorm": ("BatchNorm, Linear→BN→ReLU, all layers", {"batch_norm": True}),
        "spectral-norm": ("spectral norm, hidden layers", {"spectral_norm": True}),
    }
    out: dict[str, dict[str, Any]] = {}
    for name in p["variants"]:
        if name == "layernorm-sets":
            for layers in p["ln_sets"]:
                key = "layernorm-" + "".join(map(str, layers))
                label = "LayerNorm only on layers {" + ",".join(map(str, layers)) + "}"
                out[key] = {"label": label, "group": "layernorm-sets",
                            "options": {"layer_norm": True, "ln_layers": list(layers)}}
            continue
        label, options = table[name]
        out[name] = {"label": label, "group": name, "options": options}
    return out


def run(ctx: Context) -> Outcome:
    p = ctx.params
    table = variants(p)
    specs, names = [], {}
    for dataset in p["datasets"]:
        path = ctx.dataset(dataset, p["size"])
        for v, spec in table.items():
            name = f"{dataset}-{v}"
            names[(dataset, v)] = name
            train = dv.train_options(path, p, q_bound=p["q_bound"],
                                     eval_episodes=p["eval_episodes"], eval_every=0)
            algo = {**dv.DIVERGING_TD3, "critic_hidden": list(p["critic_hidden"]),
                    **spec["options"]}
            specs.append(RunSpec(name, train, algo))
    trained = ctx.train(specs)
    dv.check_finished(trained, [s.name for s in specs])

    runs = {key: dv.load_run(trained[name].run_dir) for key, name in names.items()}
    per_run = {}
    for (dataset, v), data in runs.items():
        status = trained[names[(dataset, v)]].status or {}
        seeds = [seed_result(s, data.ceiling, status) for s in data.seeds]
        per_run[(dataset, v)] = {"dataset": dataset, "variant": v, "label": table[v]["label"],
                                 "options": table[v]["options"], "q_ceiling": data.ceiling,
                                 "seeds": seeds, **aggregate(seeds)}
    for dataset in p["datasets"]:
        for family, members in FAMILIES.items():
            keys = [v for v in table if table[v]["group"] in members]
            # The LN figure only when there are LN variants beyond the regularisers figure's.
            if any(table[v]["group"] not in FAMILIES["regularisers"] for v in keys) or (
                    family == "regularisers" and len(keys) > 1):
                ctx.save_figure(plot_curves({v: runs[(dataset, v)] for v in keys}, table,
                                            dataset, family, p),
                                f"curves_{family}_{dataset}.png")
        ctx.save_figure(plot_summary({v: per_run[(dataset, v)] for v in table}, dataset, p),
                        f"summary_{dataset}.png")
    results = {"seem_threshold": dv.SEEM_THRESHOLD,
               "variants": {v: {"label": s["label"], "options": s["options"]}
                            for v, s in table.items()},
               "runs": [per_run[k] for k in names]}
    return Outcome(results, markdown(per_run, table, p))


def seed_result(s: dv.SeedSeries, ceiling: float, status: dict[str, Any]) -> dict[str, Any]:
    q_step = s.q_past(ceiling)
    runaway = s.q_past(EXPLODE_FACTOR * ceiling)
    score = (status.get("seeds", {}).get(str(s.seed), {}) or {}).get("final_score")
    return {"seed": s.seed, "diverged": q_step is not None, "q_past_ceiling_step": q_step,
            "runaway": runaway is not None, "q_past_10x_ceiling_step": runaway,
            "stopped_at": s.stopped_at, "seem_above_step": s.seem_above(),
            "seem_sustained_step": _sustained(s.seem_steps, s.seem),
            "final_seem": rp.json_num(s.final_seem()), "max_seem": rp.json_num(s.max_seem()),
            "max_abs_q": rp.json_num(s.max_abs_q()),
            "final_q": rp.json_num(s.q[-1] if len(s.q) else None),
            "final_score": rp.json_num(score)}


def _sustained(steps: np.ndarray, seem: np.ndarray) -> float | None:
    """The step at which SEEM had been above the threshold `SUSTAINED` times in a row."""
    run = 0
    for step, v in zip(steps, seem, strict=True):
        run = run + 1 if v > dv.SEEM_THRESHOLD else 0
        if run >= SUSTAINED:
            return float(step)
    return None


def aggregate(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-variant numbers: divergence rate and means (medians for |Q|) over seeds."""

    def mean(key):
        vals = [r[key] for r in seeds if r[key] is not None]
        return float(np.mean(vals)) if vals else None

    n_div = sum(r["diverged"] for r in seeds)
    return {"n_seeds": len(seeds), "n_diverged": n_div, "divergence_rate": n_div / len(seeds),
            "n_runaway": sum(r["runaway"] for r in seeds),
            "seem_flagged": sum(r["seem_above_step"] is not None for r in seeds),
            "seem_sustained": sum(r["seem_sustained_step"] is not None for r in seeds),
            "final_seem": mean("final_seem"), "max_seem": mean("max_seem"),
            "max_abs_q": rp.median_or_none(r["max_abs_q"] for r in seeds),
            "final_score": mean("final_score")}


# -- figures ---------------------------------------------------------------------------------
def _colours(keys):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    fixed = {"none": "tab:red", "layernorm": "tab:blue"}
    others = [k for k in keys if k not in fixed]
    spare = [cmap(i) for i in (2, 1, 4, 6, 5, 8, 9, 7)]
    return {k: fixed.get(k) or spare[others.index(k) % len(spare)] for k in keys}


def plot_curves(runs: dict[str, dv.RunData], table, dataset: str, family: str,
                p: dict[str, Any]):
    plt = plotting.pyplot()
    fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = _colours(list(runs))
    ceiling = next(iter(runs.values())).ceiling
    for v, data in runs.items():
        label = table[v]["label"]
        curves_q = [(s.steps, s.q) for s in data.seeds]
        plotting.seeds_and_mean(ax_q, curves_q, colours[v], label, transform=np.abs)
        plotting.seeds_and_mean(ax_s, [(s.seem_steps, s.seem) for s in data.seeds],
                                colours[v], label)
        for s in data.seeds:  # a seed stopped at the Q bound ends with a cross
            if s.stopped_at is not None and len(s.steps):
                ok = np.isfinite(s.q)
                if ok.any():
                    ax_q.plot(s.steps[ok][-1], abs(s.q[ok][-1]), "x", color=colours[v], ms=7)
    ax_q.axhline(ceiling, color="k", ls="--", lw=1,
                 label=f"Q ceiling max|r|/(1−γ) = {ceiling:.3g}")
    ax_q.set_yscale("log")
    ax_q.set_ylabel("|mean Q(s, a)| on training batches (log scale)")
    ax_q.set_title("Q: above the dashed ceiling no policy's return can reach")
    ax_s.axhline(dv.SEEM_THRESHOLD, color="grey", ls=":", lw=1,
                 label=f"verdict threshold {dv.SEEM_THRESHOLD:g}")
    ax_s.axhline(0.0, color="k", lw=0.5)
    ax_s.set_ylabel("normalised SEEM  max Re λ(A) / ‖A‖_F")
    ax_s.set_title(f"SEEM every {p['seem_every']:,} steps ({p['seem_probe']}-transition probe)")
    for ax in (ax_q, ax_s):
        ax.set_xlabel("gradient step")
        ax.grid(alpha=0.3)
    # One legend for both panels, under them, so no curve is hidden behind it.
    handles, labels = ax_q.get_legend_handles_labels()
    extra = ax_s.get_legend_handles_labels()
    fig.legend(handles + extra[0][-1:], labels + extra[1][-1:], loc="lower center",
               ncol=min(4, len(labels) + 1), fontsize=8, frameon=False)
    what = "critic regularisers" if family == "regularisers" else "LayerNorm placement and layers"
    n_seeds = len(next(iter(runs.values())).seeds)
    fig.suptitle(f"{what}: TD3 without BC (τ = 1, γ = 0.99) on {100 * p['fraction']:g} % of "
                 f"{dataset} ({_plural(n_seeds, 'seed')}: thin lines, mean: bold; × = seed "
                 "stopped at the Q bound)", fontsize=11)
    rows = math.ceil((len(labels) + 1) / 4)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.02, 1, 1))
    return fig


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def plot_summary(rows: dict[str, dict[str, Any]], dataset: str, p: dict[str, Any]):
    plt = plotting.pyplot()
    keys = list(rows)
    y = np.arange(len(keys))[::-1]
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.45 * len(keys) + 2.2), sharey=True)
    colours = _colours(keys)
    labels = [rows[k]["label"] for k in keys]
    rng = np.random.default_rng(0)

    def dots(ax, key, transform=lambda v: v):
        for yi, k in zip(y, keys, strict=True):
            vals = [transform(r[key]) for r in rows[k]["seeds"] if r[key] is not None]
            jitter = rng.uniform(-0.15, 0.15, len(vals))
            ax.scatter(vals, yi + jitter, s=18, color=colours[k], alpha=0.6, zorder=3)

    ax = axes[0]
    ax.barh(y, [100 * rows[k]["divergence_rate"] for k in keys], color=[colours[k] for k in keys],
            alpha=0.45)
    ax.barh(y, [100 * rows[k]["n_runaway"] / rows[k]["n_seeds"] for k in keys], height=0.4,
            color=[colours[k] for k in keys])
    ax.barh([np.nan], [np.nan], color="grey", alpha=0.45, label="past the ceiling")
    ax.barh([np.nan], [np.nan], color="grey", height=0.4,
            label=f"past {EXPLODE_FACTOR:g}× the ceiling")
    for yi, k in zip(y, keys, strict=True):
        r = rows[k]
        text = f"{r['n_diverged']}/{r['n_seeds']}"
        if r["n_diverged"]:
            text += f" ({r['n_runaway']} past {EXPLODE_FACTOR:g}×)"
        ax.text(2, yi + 0.3, text, va="center", fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("seeds whose Q diverged (%)")
    ax.set_title("divergence rate: |Q| past max|r|/(1−γ)\nor non-finite (thin bar: runaway)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[1]
    for yi, k in zip(y, keys, strict=True):
        seeds = [r for r in rows[k]["seeds"] if r["max_seem"] is not None]
        jitter = rng.uniform(-0.15, 0.15, len(seeds))
        ax.scatter([r["final_seem"] for r in seeds], yi + jitter, s=18, color=colours[k],
                   alpha=0.7, zorder=3)
        ax.scatter([r["max_seem"] for r in seeds], yi + jitter, s=22, facecolors="none",
                   edgecolors=colours[k], alpha=0.8, zorder=3)
    ax.scatter([np.nan], [np.nan], s=18, color="grey", label="final (seed)")
    ax.scatter([np.nan], [np.nan], s=22, facecolors="none", edgecolors="grey",
               label="largest (seed)")
    ax.axvline(dv.SEEM_THRESHOLD, color="grey", ls=":", lw=1, label="verdict threshold")
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("normalised SEEM  max Re λ(A) / ‖A‖_F")
    ax.set_title("SEEM: at the end (●) and largest during training (○)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[2]
    dots(ax, "max_abs_q")
    ceiling = next(iter(rows.values()))["q_ceiling"]
    ax.axvline(ceiling, color="k", ls="--", lw=1, label=f"ceiling {ceiling:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("largest |mean Q| (log scale)")
    ax.set_title("Q magnitude (dots: seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[3]
    scores = [rows[k]["final_score"] if rows[k]["final_score"] is not None else np.nan
              for k in keys]
    ax.barh(y, scores, color=[colours[k] for k in keys], alpha=0.35)
    dots(ax, "final_score")
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("D4RL-normalised score at the end (bar: mean)")
    ax.set_title(f"policy score ({_plural(p['eval_episodes'], 'episode')} per seed)",
                 fontsize=9)

    axes[0].set_yticks(y, labels, fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"Critic variants, TD3 without BC (τ = 1) on {100 * p['fraction']:g} % of "
                 f"{dataset}, {p['steps']:,} steps, {_plural(len(p['seeds']), 'seed')}",
                 fontsize=11)
    fig.tight_layout()
    return fig


# -- report ----------------------------------------------------------------------------------
def markdown(per_run: dict[tuple[str, str], dict[str, Any]], table, p: dict[str, Any]) -> str:
    fmt, sg = rp.fmt, rp.fmt_signed
    report = rp.Report(
        f"TD3 without BC (bc_coef 0, α 2.5), Adam 3e-4, τ = 1, γ 0.99, batch 256, critic "
        f"{'-'.join(map(str, p['critic_hidden']))} ReLU; {p['steps']:,} steps on "
        f"{100 * p['fraction']:g} % of {p['size']:,}-transition built-in datasets, seeds "
        f"{', '.join(map(str, p['seeds']))}; SEEM every {p['seem_every']:,} steps on a "
        f"{p['seem_probe']}-transition probe; score from "
        f"{_plural(p['eval_episodes'], 'evaluation episode')} per seed at the end (a seed "
        "stopped at the Q bound is evaluated with its last finite parameters). A seed "
        "*diverged* when its |mean Q| passed the ceiling max|r|/(1 − γ), the largest "
        "discounted return any policy could collect here, or turned non-finite. Weight decay "
        f"is decoupled (AdamW, θ ← θ − lr·wd·θ per step; wd = {p['weight_decay']:g} is "
        f"{p['weight_decay'] / 0.01:g}× PyTorch AdamW's default, so that it acts within the "
        f"run: its time constant 1/(lr·wd) is {1 / (3e-4 * p['weight_decay']):,.0f} steps); "
        "dropout acts only in the critic's TD-regression pass; BatchNorm normalises that pass "
        "by the batch's statistics and every other pass (TD targets, actor loss, SEEM) by "
        "running averages; spectral norm divides each hidden kernel by its largest singular "
        "value (power iteration every forward pass).")
    for dataset in p["datasets"]:
        rows = [per_run[(dataset, v)] for v in table]
        report.table(["critic", "seeds diverged", f"of them past {EXPLODE_FACTOR:g}× ceiling",
                      "first past ceiling (median step)", "SEEM > thr. once",
                      f"SEEM > thr. {SUSTAINED}× in a row", "max SEEM", "final SEEM",
                      "max \\|Q\\| (median)", "final score"],
                     [[r["label"], f"{r['n_diverged']}/{r['n_seeds']}", str(r["n_runaway"]),
                       fmt(rp.median_or_none(s["q_past_ceiling_step"] for s in r["seeds"])),
                       f"{r['seem_flagged']}/{r['n_seeds']}",
                       f"{r['seem_sustained']}/{r['n_seeds']}", sg(r["max_seem"], 2),
                       sg(r["final_seem"], 2), fmt(r["max_abs_q"]),
                       fmt(r["final_score"])] for r in rows],
                     caption=f"**{dataset}** (Q ceiling {rows[0]['q_ceiling']:.3g})")
    findings(report, per_run, table, p)
    return report.markdown()


def _pooled(per_run, table, p, variant) -> dict[str, Any]:
    seeds = [s for d in p["datasets"] for s in per_run[(d, variant)]["seeds"]]
    return {**aggregate(seeds), "label": table[variant]["label"], "seeds": seeds}


def findings(report: rp.Report, per_run, table, p) -> None:
    """The findings from the numbers (seeds pooled over datasets)."""
    fmt, sg = rp.fmt, rp.fmt_signed
    pool = {v: _pooled(per_run, table, p, v) for v in table}
    base, ln = pool.get("none"), pool.get("layernorm")

    def rate(r):
        return (f"{r['n_diverged']}/{r['n_seeds']} seeds diverged ({r['n_runaway']} past "
                f"{EXPLODE_FACTOR:g}× the ceiling)")

    def q(r):
        return f"median max |Q| {fmt(r['max_abs_q'])}"

    if base is None:
        report.finding("No unregularised baseline was run, so nothing is compared.")
        return
    if base["n_diverged"] == 0:
        report.finding(f"Without a regulariser no seed diverged in {p['steps']:,} steps, so "
                       "this run cannot show any regulariser removing divergence; run longer "
                       "(the `paper` scale).", rp.NOT_AT_THIS_SCALE)
        return
    report.finding(f"Without a regulariser {rate(base)}, {q(base)}, largest SEEM "
                   f"{sg(base['max_seem'], 2)} on average, above {dv.SEEM_THRESHOLD:g} for "
                   f"{SUSTAINED} measurements in a row in "
                   f"{base['seem_sustained']}/{base['n_seeds']} seeds: the paper's diverging "
                   "setting diverges here too.", rp.HOLDS)
    if ln is not None:
        spikes = ln["seem_flagged"] - ln["seem_sustained"]
        seem_text = (f"its SEEM stayed at or below {dv.SEEM_THRESHOLD:g} throughout in "
                     f"{ln['n_seeds'] - ln['seem_flagged']}/{ln['n_seeds']} seeds")
        if spikes:
            seem_text += (f", and in {spikes} it rose above it only in isolated measurements "
                          f"(largest {sg(max(s['max_seem'] for s in ln['seeds']), 2)}) that "
                          f"never lasted {SUSTAINED} in a row")
        if ln["n_diverged"] == 0:
            report.finding(
                f"LayerNorm (Linear→LN→ReLU on every hidden layer): {rate(ln)}, {q(ln)}, below "
                f"the ceiling; {seem_text}. This matches the paper's claim that LN removes "
                "divergence" + (" and keeps SEEM ≈ 0." if not spikes else
                                "; its 'SEEM ≈ 0 with LN' holds for the sustained signal, not "
                                "for every single measurement."), rp.HOLDS)
        else:
            report.finding(
                f"LayerNorm (Linear→LN→ReLU on every hidden layer): {rate(ln)}, {q(ln)}; "
                f"{seem_text}. This does not match the paper's claim that LN removes "
                "divergence.", rp.DIFFERS)
    others = [v for v in ("weight-decay", "dropout", "batchnorm", "spectral-norm") if v in pool]
    kept = [v for v in others if pool[v]["n_diverged"] > 0]
    fixed = [v for v in others if pool[v]["n_diverged"] == 0]
    if kept:
        parts = [f"{pool[v]['label']}: {rate(pool[v])}, {q(pool[v])}" for v in kept]
        report.finding("Still diverging: " + "; ".join(parts) + f" (plain critic: "
                       f"{q(base)}). As the paper's account predicts (only LN's bounded "
                       "extrapolation, SPEC §4, removes the self-excitation), these do not fix "
                       "it; at most they slow Q's growth.", rp.HOLDS)
    if fixed:
        parts = [f"{pool[v]['label']}: {rate(pool[v])}, {q(pool[v])}, SEEM above "
                 f"{dv.SEEM_THRESHOLD:g} for {SUSTAINED} in a row in "
                 f"{pool[v]['seem_sustained']}/{pool[v]['n_seeds']} seeds" for v in fixed]
        report.finding("Not diverging: " + "; ".join(parts) + ". The paper presents "
                       "LayerNorm as the fix and SPEC records no result for these alternatives, "
                       "so this goes beyond the paper rather than confirming it. It is "
                       "plausible: BatchNorm's training pass normalises each unit over the batch "
                       "(a scale invariance like LN's) and spectral norm caps each hidden "
                       "layer's gain; whether it holds beyond "
                       f"{p['steps']:,} steps is what the `paper` scale tests.")
    ln_family = [v for v in table if table[v]["group"] in ("layernorm-after", "layernorm-sets")]
    if ln_family:
        parts = []
        for v in ln_family:
            r = pool[v]
            text = f"{r['label']}: {rate(r)}, {q(r)}"
            if r["n_diverged"] and not r["n_runaway"] and not r["seem_sustained"]:
                text += (" — Q overshot the ceiling and levelled off with SEEM never "
                         "sustained above the threshold: an overestimate, not a self-excited "
                         "runaway")
            parts.append(text)
        report.finding("LayerNorm placement and layer sets: " + "; ".join(parts) + ". The "
                       "authors put LN before the activation on every hidden layer and ablate the "
                       "sets {0}, {0,1}, {0,1,2}, {2}, {1,2} of a 3-layer critic; SPEC records no "
                       "numbers for those, so these rows have no paper value to compare with.")
    # SEEM as the predictor, per seed over every variant.
    seeds = [s for r in per_run.values() for s in r["seeds"]]
    runaway = [s for s in seeds if s["runaway"]]
    calm = [s for s in seeds if not s["diverged"]]
    text = (f"SEEM as the predictor (all {len(seeds)} seed-runs): sustained SEEM ({SUSTAINED} "
            f"measurements in a row above {dv.SEEM_THRESHOLD:g}) occurred in "
            f"{sum(s['seem_sustained_step'] is not None for s in runaway)} of the "
            f"{len(runaway)} runaway seeds and in "
            f"{sum(s['seem_sustained_step'] is not None for s in calm)} of the {len(calm)} "
            "seeds whose Q stayed below the ceiling")
    early = [s for s in runaway if s["seem_above_step"] is not None
             and s["seem_above_step"] <= s["q_past_ceiling_step"]]
    if runaway:
        text += (f"; the first single crossing came at or before the log point where Q passed "
                 f"the ceiling in {len(early)} of the {len(runaway)} runaway seeds")
    report.finding(text + ".")
    scores = {v: pool[v]["final_score"] for v in pool if pool[v]["final_score"] is not None}
    if scores:
        best = max(scores, key=scores.__getitem__)
        report.finding(f"Score: the best mean final score was {rp.fmt_as(scores[best], '.1f')} "
                       f"({pool[best]['label']}); without a regulariser "
                       f"{rp.fmt_as(scores.get('none'), '.1f')}. With no BC term on "
                       f"{100 * p['fraction']:g} % of the data every variant's policy is poor, "
                       "diverged or not: the paper's score gains are for LN in algorithms with a "
                       "BC or conservative term (`repro fraction`).")
