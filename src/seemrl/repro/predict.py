"""Divergence prediction as a measured claim (issue 6, item 3).

The library's divergence verdict (`diagnostics.verdict`, rule parameters = the
`VerdictConfig` defaults, calibrated earlier by experiments/verdict_calibration.py on TD3
without BC on 1 % of hopper-medium) is run, unchanged, on a held-out family of
configurations it never saw: other datasets, fractions, discounts, optimizers (Adam, SGD),
target-update rates, LayerNorm on and off. Per seed:

* **truth**: the seed diverged when its mean Q passed max|r|/(1 − γ) (the largest
  discounted return any policy could collect on the data, so no correct critic passes it) or
  turned non-finite within the run; the explosion step is the first log point where it did.
  The definition is the calibration's (`load_seeds`, shared with it).
* **verdict**: the rule replayed on the logged series, with the run's own ceiling as its Q
  thresholds (as the training driver runs it online): SEEM > threshold for `consecutive`
  measurements in a row, or super-linear Q growth above the ceiling, or Q past the ceiling.

Because the rule's last clause is the truth criterion itself, every explosion is flagged at
the latest when it happens; what the rule *predicts* is what it flags strictly before the
explosion step, so both are reported: the warning (fired at all) and the prediction (fired
ahead). A seed that never passed the ceiling but whose |Q| at the end is at least twice its
value halfway through is reported as "Q still growing" (a secondary label for reading false
alarms, not a change of the truth).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from seemrl import plotting
from seemrl.diagnostics.verdict import VerdictConfig, verdict
from seemrl.logging import read_jsonl
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "Divergence prediction: the fixed verdict rule on held-out runs"


def config(dataset: str, fraction: float, gamma: float, layer_norm: bool,
           optimizer: str = "adam", tau: float = 0.005, lr: float = 3e-4) -> dict[str, Any]:
    """One configuration of TD3 with no BC term (bc_coef 0, α 2.5, batch 256); `lr` is the
    critic's learning rate (the actor's stays 3e-4)."""
    return {"dataset": dataset, "fraction": fraction, "gamma": gamma, "optimizer": optimizer,
            "lr": lr, "tau": tau, "layer_norm": layer_norm}


CALIBRATION = [config("hopper-medium", 0.01, g, ln) for g in (0.9, 0.99) for ln in (False, True)]
"""The runs the rule was calibrated on (experiments/verdict_calibration.py); a held-out
family must not contain any of them."""

GROWTH_FACTOR = 2.0
"""'Q still growing': |Q| at the end ≥ this × |Q| halfway through the run."""

# The held-out family, fixed before any of its runs (a 6 000-step pilot on hopper-medium, not
# part of it, showed that Adam with τ = 1 explodes within ~1 000 steps, SGD with τ = 1 turns
# non-finite after 4–6k, and SGD at lr 3e-3 with τ = 0.005 starts self-exciting at ~5k).
# Four plain-critic settings are paired with the same setting with a LayerNorm critic.
FAMILY = [
    config("walker2d-medium", 0.01, 0.99, False),
    config("walker2d-medium", 0.01, 0.99, True),
    config("halfcheetah-medium", 0.1, 0.99, False),
    config("halfcheetah-medium", 0.1, 0.99, True),
    config("hopper-medium-replay", 0.1, 0.95, False, tau=1.0),
    config("hopper-medium-replay", 0.1, 0.95, True, tau=1.0),
    config("hopper-medium-expert", 0.01, 0.99, False, optimizer="sgd", lr=3e-3),
    config("hopper-medium-expert", 0.01, 0.99, True, optimizer="sgd", lr=3e-3),
    config("walker2d-medium-replay", 1.0, 0.9, False, optimizer="sgd", tau=1.0),
    config("halfcheetah-medium-replay", 0.01, 0.9, False),
]

SCALES: dict[str, dict[str, Any]] = {
    # Seconds: one tiny dataset, two configurations, a few hundred steps.
    "smoke": {"family": [config("hopper-medium", 0.5, 0.99, False, tau=1.0),
                         config("hopper-medium", 0.5, 0.99, True, optimizer="sgd")],
              "size": 2_000, "seeds": [0, 1], "steps": 200, "log_every": 20,
              "seem_every": 20, "seem_probe": 16, "q_bound_factor": 10.0},
    # SEEM every 1 000 steps on a 128-transition probe, as in the calibration: `consecutive`
    # counts measurements, so the period is part of the rule. ≤ 12 minutes on 2 cores.
    "cpu": {"family": FAMILY, "size": 100_000, "seeds": [0, 1, 2, 3], "steps": 10_000,
            "log_every": 250, "seem_every": 1_000, "seem_probe": 128, "q_bound_factor": 10.0},
    # The paper's run length and SEEM period (every 10k steps on the authors' 2 560-transition
    # probe): the SEEM clause then needs 5 × 10k steps of persistent self-excitation.
    "paper": {"family": FAMILY, "size": 1_000_000, "seeds": [0, 1, 2, 3], "steps": 1_000_000,
              "log_every": 1000, "seem_every": 10_000, "seem_probe": 2560,
              "q_bound_factor": 10.0},
}


def run_name(c: dict[str, Any]) -> str:
    opt = "" if c["optimizer"] == "adam" else f"-{c['optimizer']}"
    opt += "" if c["lr"] == 3e-4 else f"-lr{c['lr']:g}"
    tau = "" if c["tau"] == 0.005 else f"-tau{c['tau']:g}"
    return (f"{c['dataset']}-f{c['fraction']:g}-g{c['gamma']:g}{opt}{tau}"
            f"{'-ln' if c['layer_norm'] else ''}")


def in_calibration(c: dict[str, Any]) -> bool:
    return any(all(c[k] == cal[k] for k in cal) for cal in CALIBRATION)


# -- truth and verdict, per seed (shared with experiments/verdict_calibration.py) -------------
@dataclasses.dataclass
class SeedRun:
    """One seed of a run, read back: its SEEM and Q series (cut where the driver stopped it)
    and the truth."""

    run: str
    seed: int
    steps: int
    """The run's length in gradient steps."""
    seem_steps: np.ndarray
    seem: np.ndarray
    q_steps: np.ndarray
    q: np.ndarray
    ceiling: float
    """max|r|/(1 − γ) on the training data."""
    exploded_at: float | None
    """First log point with |Q| > ceiling or non-finite (None: never within the run)."""

    def still_growing(self, factor: float = GROWTH_FACTOR) -> bool:
        """|Q| at the end ≥ factor × |Q| halfway through the run (only for finite series)."""
        if self.exploded_at is not None or len(self.q) < 2:
            return False
        half = np.abs(np.interp(self.steps / 2, self.q_steps, self.q))
        return bool(abs(self.q[-1]) >= factor * half)


def load_seeds(run_dir: str | pathlib.Path) -> list[SeedRun]:
    """Every seed of a run folder. A seed the driver stopped (its Q passed `q_bound` or turned
    non-finite) is cut at that chunk, whose Q is marked non-finite: later records describe its
    frozen last state, not training."""
    run_dir = pathlib.Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    status = json.loads((run_dir / "status.json").read_text())
    ceiling = cfg.get("q_ceiling")
    if ceiling is None:  # a run folder from before config.json recorded it
        from seemrl.data import load_dataset
        from seemrl.data.subset import subset
        from seemrl.train import q_ceiling

        t = cfg["train"]
        data = load_dataset(t["dataset"])
        if t["fraction"] < 1:
            data = subset(data, t["fraction"], t["data_seed"])
        ceiling = q_ceiling(data.rewards, cfg["algo"]["gamma"])
    records = read_jsonl(run_dir / "metrics.jsonl")
    log_every, out = cfg["train"]["log_every"], []
    for seed in cfg["train"]["seeds"]:
        stopped = status["seeds"][str(seed)]["diverged_at"]
        rows = [r for r in records if r.get("seed") == seed
                and (stopped is None or r["step"] - log_every < stopped)]
        q_rows = [r for r in rows if r.get("train/q_mean") is not None]
        q_steps = np.array([r["step"] for r in q_rows], float)
        q = np.array([r["train/q_mean"] for r in q_rows], float)
        if stopped is not None and len(q) and q_steps[-1] >= stopped:
            q[-1] = math.nan  # the chunk it blew up in logs the mean of its finite part
        s_rows = [r for r in rows if r.get("seem/normalized") is not None]
        seem_steps = np.array([r["step"] for r in s_rows], float)
        seem = np.array([r["seem/normalized"] for r in s_rows], float)
        bad = ~np.isfinite(q) | (np.abs(q) > ceiling)
        out.append(SeedRun(run_dir.name, int(seed), int(cfg["train"]["steps"]), seem_steps,
                           seem, q_steps, q, float(ceiling),
                           float(q_steps[bad.argmax()]) if bad.any() else None))
    return out


def judge(r: SeedRun, cfg: VerdictConfig | None = None) -> dict[str, Any]:
    """One seed's record: truth, and the verdict (`cfg`, default `VerdictConfig()`) replayed
    on its series with the run's ceiling as the Q thresholds."""
    cfg = VerdictConfig() if cfg is None else cfg
    v = verdict(r.seem_steps, r.seem, r.q, dataclasses.replace(
        cfg, q_floor=r.ceiling, q_explode=r.ceiling), q_steps=r.q_steps)
    finite = np.abs(r.q[np.isfinite(r.q)])
    seem = r.seem[np.isfinite(r.seem)]
    # An exploded seed's Q went past the ceiling (its logged series is cut there).
    return {"run": r.run, "seed": r.seed, "steps": r.steps, "ceiling": r.ceiling,
            "exploded_at": r.exploded_at, "verdict_step": v.step, "reason": v.reason or None,
            "still_growing": r.still_growing(),
            "max_abs_q": float(finite.max()) if finite.size else None,
            "max_abs_q_over_ceiling": (None if r.exploded_at is not None or not finite.size
                                       else float(finite.max() / r.ceiling)),
            "final_seem": float(seem[-1]) if seem.size else None,
            "max_seem": float(seem.max()) if seem.size else None}


def score(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Confusion counts and lead times of per-seed records (`exploded_at`, `verdict_step`:
    None when it did not happen).

    Two readings: **warning** (the verdict fired at any step: fired + exploded is a hit,
    fired + not exploded a false alarm, not fired + exploded a miss), and **prediction** (a
    hit only when the verdict fired strictly before the explosion step; an exploded seed
    flagged at or after it counts as missed). Lead = explosion step − verdict step.
    """
    n = len(records)
    exploded = [r for r in records if r["exploded_at"] is not None]
    calm = [r for r in records if r["exploded_at"] is None]
    fired = lambda r: r["verdict_step"] is not None
    hit = [r for r in exploded if fired(r)]
    ahead = [r for r in hit if r["verdict_step"] < r["exploded_at"]]
    false_alarm = [r for r in calm if fired(r)]
    lead = [r["exploded_at"] - r["verdict_step"] for r in hit]
    lead_ahead = [x for x in lead if x > 0]

    def counts(tp: int) -> dict[str, Any]:
        fn, fp, tn = len(exploded) - tp, len(false_alarm), len(calm) - len(false_alarm)
        return {"true_positive": tp, "false_alarm": fp, "missed": fn, "true_negative": tn,
                "accuracy": (tp + tn) / n if n else None,
                "false_alarm_rate": fp / len(calm) if calm else None,
                "miss_rate": fn / len(exploded) if exploded else None}

    stats = lambda xs: ({"median": float(np.median(xs)), "min": float(np.min(xs)),
                         "max": float(np.max(xs))} if xs else
                        {"median": None, "min": None, "max": None})
    reasons = {}
    for r in records:
        if fired(r):
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {"seed_runs": n, "exploded": len(exploded), "not_exploded": len(calm),
            "warning": counts(len(hit)), "prediction": counts(len(ahead)),
            "steps_ahead": stats(lead), "steps_ahead_when_ahead": stats(lead_ahead),
            "fired_by": reasons,
            "false_alarms_q_still_growing": sum(r["still_growing"] for r in false_alarm),
            "not_exploded_q_still_growing": sum(r["still_growing"] for r in calm)}


# -- the experiment --------------------------------------------------------------------------
def run(ctx: Context) -> Outcome:
    p = ctx.params
    bad = [run_name(c) for c in p["family"] if in_calibration(c)]
    if bad:
        raise ValueError(f"held-out family contains calibration configurations: {bad}")
    specs = []
    for c in p["family"]:
        path = ctx.dataset(c["dataset"], p["size"])
        train = {"dataset": str(path), "seeds": list(p["seeds"]), "steps": p["steps"],
                 "fraction": c["fraction"], "log_every": p["log_every"], "eval_every": 0,
                 "eval_episodes": 0, "checkpoint_every": 0, "seem_every": p["seem_every"],
                 "seem_probe": p["seem_probe"],
                 # A seed is stopped once far past the ceiling (it has long since exploded).
                 "q_bound": p["q_bound_factor"] * _ceiling(path, c)}
        algo = {"bc_coef": 0.0, "gamma": c["gamma"], "optimizer": c["optimizer"],
                "lr_critic": c["lr"], "tau": c["tau"], "layer_norm": c["layer_norm"]}
        specs.append(RunSpec(run_name(c), train, algo))
    trained = ctx.train(specs)
    failed = [s.name for s in specs if trained[s.name].outcome == "failed"]
    if failed:
        raise RuntimeError(f"training failed for {', '.join(failed)}: "
                           f"{trained[failed[0]].error}")
    rule = VerdictConfig()
    seeds = {s.name: load_seeds(trained[s.name].run_dir) for s in specs}
    records = [judge(r, rule) for rs in seeds.values() for r in rs]
    per_config = []
    for c, s in zip(p["family"], specs, strict=True):
        mine = [r for r in records if r["run"] == s.name]
        per_config.append({"name": s.name, "config": c, **score(mine)})
    overall = score(records)
    ctx.save_figure(plot_scatter(records, p), "predict_scatter.png")
    ctx.save_figure(plot_timeline(records, p), "predict_timeline.png")
    ctx.save_figure(plot_curves(seeds, records, p), "predict_curves.png")
    results = {"rule": dataclasses.asdict(rule), "calibration_configs": CALIBRATION,
               "overall": overall, "per_config": per_config, "seeds": records}
    return Outcome(results, markdown(overall, per_config, records, rule, p))


def _ceiling(path: pathlib.Path, c: dict[str, Any]) -> float:
    from seemrl.data import load_dataset
    from seemrl.data.subset import subset
    from seemrl.train import q_ceiling

    data = load_dataset(str(path))
    if c["fraction"] < 1:
        data = subset(data, c["fraction"], 0)
    return q_ceiling(data.rewards, c["gamma"])


# -- figures ---------------------------------------------------------------------------------
REASON_STYLE = {"seem": ("tab:blue", "o", "SEEM clause"),
                "q_growth": ("tab:orange", "s", "Q super-linear growth clause"),
                "q_explode": ("tab:red", "X", "Q past the ceiling (no lead)")}


def plot_scatter(records, p):
    """Verdict step against explosion step per seed; seeds without one of them on a band."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    steps = p["steps"]
    never = steps * 1.12
    for reason, (color, marker, label) in REASON_STYLE.items():
        xs = [r["exploded_at"] if r["exploded_at"] is not None else never
              for r in records if r["reason"] == reason]
        ys = [r["verdict_step"] for r in records if r["reason"] == reason]
        if xs:
            jit = np.random.default_rng(0).uniform(-0.01, 0.01, len(xs)) * steps
            ax.scatter(np.asarray(xs) + jit, ys, color=color, marker=marker, s=40,
                       alpha=0.8, label=f"{label} ({len(xs)})", edgecolor="k", lw=0.4)
    silent = [r for r in records if r["verdict_step"] is None]
    if silent:
        xs = [r["exploded_at"] if r["exploded_at"] is not None else never for r in silent]
        jit = np.random.default_rng(1).uniform(-0.02, 0.02, len(xs)) * steps
        ax.scatter(np.asarray(xs) + jit, [never] * len(xs), color="tab:gray", marker="o",
                   s=40, alpha=0.6, label=f"verdict never fired ({len(xs)})",
                   edgecolor="k", lw=0.4)
    ax.plot([0, steps], [0, steps], "k--", lw=1, label="y = x (fired at the explosion)")
    ax.axvline(steps * 1.06, color="k", lw=0.6)
    ax.axhline(steps * 1.06, color="k", lw=0.6)
    ax.set_xlim(0, steps * 1.18)
    ax.set_ylim(0, steps * 1.18)
    ticks = np.linspace(0, steps, 6)
    ax.set_xticks(list(ticks) + [never], [f"{t:,.0f}" for t in ticks] + ["never"])
    ax.set_yticks(list(ticks) + [never], [f"{t:,.0f}" for t in ticks] + ["never"])
    ax.set_xlabel("step Q passed max|r|/(1 − γ) or turned non-finite (gradient steps)")
    ax.set_ylabel("step the verdict fired (gradient steps)")
    ax.set_title(f"Verdict vs explosion, {len(records)} held-out seed-runs\n"
                 "below the diagonal: warned ahead; right column: Q never exploded "
                 "(a dot there is a false alarm)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def plot_timeline(records, p):
    """One line per seed-run over its length: verdict (triangle) and explosion (cross)."""
    plt = plotting.pyplot()
    runs = list(dict.fromkeys(r["run"] for r in records))
    fig, ax = plt.subplots(figsize=(9.5, 0.22 * len(records) + 1.6))
    y, yticks, labels = 0, [], []
    for k, run in enumerate(runs):
        mine = [r for r in records if r["run"] == run]
        for r in mine:
            ax.plot([0, r["steps"]], [y, y], color="0.8" if k % 2 else "0.6", lw=1)
            if r["exploded_at"] is not None:
                ax.plot(r["exploded_at"], y, "x", color="tab:red", ms=7, mew=2)
            elif r["still_growing"]:
                ax.plot(r["steps"], y, ">", color="tab:purple", ms=6)
            if r["verdict_step"] is not None:
                color, _, _ = REASON_STYLE[r["reason"]]
                ax.plot(r["verdict_step"], y, "v", color=color, ms=7)
            y += 1
        yticks.append(y - (len(mine) + 1) / 2)
        labels.append(run)
        y += 0.8
    ax.set_yticks(yticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("gradient step")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="x", color="tab:red", ls="", mew=2,
                      label="Q passed the ceiling / non-finite")]
    handles += [Line2D([], [], marker="v", color=c, ls="", label=f"verdict: {lab}")
                for c, _, lab in REASON_STYLE.values()]
    handles.append(Line2D([], [], marker=">", color="tab:purple", ls="",
                          label=f"Q still growing at the end (≥ {GROWTH_FACTOR:g}× its "
                                "mid-run value)"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", ncol=2,
              bbox_to_anchor=(0.5, -0.6 / (0.22 * len(records) + 1.6)))
    ax.set_title("Each held-out seed-run (one line per seed, grouped by configuration)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_curves(seeds: dict[str, list[SeedRun]], records, p):
    """Per configuration: |mean Q| / ceiling (log) and SEEM against steps, seeds thin."""
    plt = plotting.pyplot()
    names = list(seeds)
    cols = min(5, len(names))
    blocks = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.4 * cols, 5.2 * blocks),
                             squeeze=False, sharex=True)
    thr = VerdictConfig().seem_threshold
    for i, name in enumerate(names):
        qa, sa = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        for r in seeds[name]:
            color = "tab:red" if r.exploded_at is not None else "tab:blue"
            with np.errstate(all="ignore"):
                qa.plot(r.q_steps, np.abs(r.q) / r.ceiling, color=color, lw=0.9, alpha=0.7)
            sa.plot(r.seem_steps, r.seem, color=color, lw=0.9, alpha=0.7, marker="o", ms=2)
            rec = next(x for x in records if x["run"] == name and x["seed"] == r.seed)
            if rec["verdict_step"] is not None:
                qa.axvline(rec["verdict_step"], color=REASON_STYLE[rec["reason"]][0], lw=0.8,
                           ls=":")
        for r in seeds[name]:
            if r.exploded_at is not None:  # where it passed the ceiling (its Q is cut there)
                qa.plot(r.exploded_at, 1.0, "x", color="tab:red", ms=7, mew=2)
        if not any(len(r.seem) for r in seeds[name]):
            sa.text(0.5, 0.5, "no SEEM measurement:\nevery seed stopped before the first",
                    ha="center", va="center", fontsize=8, transform=sa.transAxes)
        qa.axhline(1.0, color="k", ls="--", lw=0.8)
        qa.set_yscale("log")
        lo, hi = qa.get_ylim()
        qa.set_ylim(min(lo, 0.05), max(hi, 3.0))  # at least two decades: readable ticks
        qa.set_title(name, fontsize=8)
        sa.axhline(thr, color="k", ls="--", lw=0.8)
        sa.set_xlabel("gradient step", fontsize=8)
        if i % cols == 0:
            qa.set_ylabel("|mean Q| / (max|r|/(1−γ))", fontsize=8)
            sa.set_ylabel("SEEM (normalised)", fontsize=8)
        for ax in (qa, sa):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for j in range(len(names), blocks * cols):
        axes[2 * (j // cols), j % cols].axis("off")
        axes[2 * (j // cols) + 1, j % cols].axis("off")
    fig.suptitle("Held-out runs, one line per seed (red: Q passed the ceiling, marked ×, "
                 "blue: never); dashed: ceiling (Q) and SEEM threshold "
                 f"{thr:g}; dotted: step the verdict fired",
                 fontsize=10)
    fig.tight_layout()
    return fig


# -- the section -----------------------------------------------------------------------------
def _n(x) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _ratio(x) -> str:
    if x is None:
        return "—"
    return "> 1 (exploded)" if math.isinf(x) else f"{x:.3g}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def markdown(overall, per_config, records, rule: VerdictConfig, p) -> str:
    w, pr = overall["warning"], overall["prediction"]
    ah, aa = overall["steps_ahead"], overall["steps_ahead_when_ahead"]
    lines = [
        f"TD3 with no BC term (bc_coef 0, α 2.5, actor lr 3e-4, batch 256), {p['steps']:,} "
        "steps, "
        f"seeds {list(p['seeds'])}, SEEM every {p['seem_every']:,} steps on a "
        f"{p['seem_probe']}-transition probe; {len(per_config)} configurations × "
        f"{len(p['seeds'])} seeds = {overall['seed_runs']} seed-runs. None of them is one of "
        "the calibration configurations (hopper-medium, 1 %, γ 0.9 / 0.99, Adam, τ 0.005, "
        "LN off / on).",
        "",
        f"Rule (fixed before these runs, `VerdictConfig()`): SEEM > {rule.seem_threshold:g} for "
        f"{rule.consecutive} measurements in a row, or |Q| growing faster than "
        f"t^{rule.q_growth_exponent:g} over {rule.q_window} log points while above the ceiling, "
        "or |Q| past the ceiling max|r|/(1 − γ) / non-finite. Truth: |Q| passed the ceiling or "
        "turned non-finite within the run.",
        "",
        "| | diverged, flagged | false alarm | missed | calm, not flagged | accuracy |"
        " false-alarm rate |",
        "|---|---|---|---|---|---|---|",
        f"| warning (fired at any step) | {w['true_positive']} | {w['false_alarm']} | "
        f"{w['missed']} | {w['true_negative']} | {_pct(w['accuracy'])} | "
        f"{_pct(w['false_alarm_rate'])} |",
        f"| prediction (fired before the explosion) | {pr['true_positive']} | "
        f"{pr['false_alarm']} | {pr['missed']} | {pr['true_negative']} | "
        f"{_pct(pr['accuracy'])} | {_pct(pr['false_alarm_rate'])} |",
        "",
        f"{overall['exploded']} of {overall['seed_runs']} seed-runs diverged. Steps between "
        f"the verdict and the explosion, over the {w['true_positive']} flagged divergences: "
        f"median {_n(ah['median'])}, min {_n(ah['min'])}, max {_n(ah['max'])}; over the "
        f"{pr['true_positive']} flagged strictly ahead: median {_n(aa['median'])}, "
        f"min {_n(aa['min'])}, max {_n(aa['max'])}. Clauses that fired: "
        + (", ".join(f"{k} {v}" for k, v in sorted(overall["fired_by"].items())) or "none")
        + ".",
        "",
        f"Q still growing (≥ {GROWTH_FACTOR:g}× its mid-run |Q| at the end, never past the "
        f"ceiling): {overall['not_exploded_q_still_growing']} of "
        f"{overall['not_exploded']} calm seed-runs, of which "
        f"{overall['false_alarms_q_still_growing']} among the {w['false_alarm']} false alarms "
        "(possible late divergences a longer run would settle; counted as false alarms "
        "above).",
        "", "### Per configuration", "",
        "| configuration | diverged | flagged | flagged ahead | false alarms | missed "
        "(warning) | median steps ahead | max \\|Q\\| / ceiling (median) | final SEEM (median) |",
        "|---|---|---|---|---|---|---|---|---|"]
    for c in per_config:
        mine = [r for r in records if r["run"] == c["name"]]
        ratio = [math.inf if r["exploded_at"] is not None else r["max_abs_q_over_ceiling"]
                 for r in mine]
        ratio = [x for x in ratio if x is not None]
        fs = [r["final_seem"] for r in mine if r["final_seem"] is not None]
        flagged = sum(r["verdict_step"] is not None for r in mine)
        lines.append(
            f"| {c['name']} | {c['exploded']} / {c['seed_runs']} | {flagged} | "
            f"{c['prediction']['true_positive']} | {c['warning']['false_alarm']} | "
            f"{c['warning']['missed']} | {_n(c['steps_ahead']['median'])} | "
            f"{_ratio(np.median(ratio) if ratio else None)} | "
            f"{f'{np.median(fs):+.3f}' if fs else '—'} |")
    lines += ["", "### Every seed-run", "",
              "| run / seed | ceiling | exploded at | verdict at | clause | lead | Q still "
              "growing | max SEEM |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lead = (r["exploded_at"] - r["verdict_step"]
                if r["exploded_at"] is not None and r["verdict_step"] is not None else None)
        ms = "—" if r["max_seem"] is None else f"{r['max_seem']:+.3f}"
        lines.append(f"| {r['run']}/{r['seed']} | {r['ceiling']:.3g} | {_n(r['exploded_at'])} "
                     f"| {_n(r['verdict_step'])} | {r['reason'] or '—'} | {_n(lead)} | "
                     f"{'yes' if r['still_growing'] else ''} | {ms} |")
    lines += ["", "### Reading it", ""] + reading(overall, records, rule, p)
    return "\n".join(lines)


def reading(overall, records, rule: VerdictConfig, p) -> list[str]:
    """Plain statements computed from the numbers."""
    w, pr = overall["warning"], overall["prediction"]
    out = []
    if overall["exploded"]:
        out.append(f"- Of {overall['exploded']} divergences the rule flagged "
                   f"{w['true_positive']}, {pr['true_positive']} of them strictly before Q "
                   "passed the ceiling; the others were flagged only when it did (the "
                   "Q-past-ceiling clause is the truth itself, so it cannot miss but does "
                   "not predict).")
    else:
        out.append("- No seed diverged, so only false alarms can be measured.")
    seem_fp = sum(1 for r in records if r["exploded_at"] is None and r["reason"] == "seem")
    falling = sum(1 for r in records if r["exploded_at"] is None and r["reason"] == "seem"
                  and r["final_seem"] is not None and r["final_seem"] < r["max_seem"] / 2)
    out.append(f"- False alarms: {w['false_alarm']} of {overall['not_exploded']} calm "
               f"seed-runs ({seem_fp} by the SEEM clause); "
               f"{overall['false_alarms_q_still_growing']} of them had Q still growing at the "
               f"end, and in {falling} of the SEEM ones SEEM had fallen below half its peak by "
               "the end. Whether they are late divergences or true false alarms takes longer "
               "runs to tell; they are counted as false alarms.")
    fast = sum(1 for r in records if r["exploded_at"] is not None
               and r["exploded_at"] < rule.consecutive * p["seem_every"])
    out.append(f"- The SEEM clause needs {rule.consecutive} measurements "
               f"({rule.consecutive * p['seem_every']:,} steps at this period) before it can "
               f"fire; {fast} divergence(s) happened earlier than that, so only the Q clauses "
               "could flag them.")
    return out
