"""Divergence prediction as a measured claim: does the verdict fire *before* Q blows up?

Two families of TD3(+BC) runs, both fixed here before any of their runs:

* **calibration** (`CALIBRATION`, hopper- and walker2d-medium): the verdict's parameters are
  chosen on these runs alone (`calibrate`: a small grid, best recall minus false alarms,
  ties to the longer lead) and become the library's `VerdictConfig()` defaults;
* **held out** (`HELD_OUT`, ≥ 60 seed-runs on five other datasets, medium-replay and
  medium-expert among them): fractions 1–100 %, γ 0.9–0.995, τ 0.005–1, Adam and SGD,
  LayerNorm on and off, no BC term and TD3+BC with its BC term (α 2.5) and a weak one
  (bc_coef 0.1). The rule is replayed on them, unchanged.

Per seed, both events come from the run itself (status.json, written by the driver):

* **diverged_at** (the truth): the first step whose mean Q passed max|r|/(1 − γ) of the
  training data, or went non-finite. No correct critic passes that ceiling.
* **predicted_at**: the step the online verdict fired (`diagnostics.verdict.replay` on the
  logged SEEM measurements, the same rule the driver ran live), counted only when strictly
  before diverged_at: crossing the ceiling is not a prediction.

Scores: **recall** = diverged seeds predicted ahead / diverged seeds; **false alarm** = a
calm seed (never diverged) predicted at a step p with the run at least 10·p long, so "calm"
is believable; a calm seed predicted later than a tenth of its run is **unsettled** (the run
was too short to call it false) and reported apart, with the false-alarm rate counting them
too. **Lead** = diverged_at − predicted_at, also as a fraction of diverged_at (the time the
user had left). Alternative rules (SEEM alone, Q trend alone, ...) are scored on the same
held-out runs to show which signal carries the prediction.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from seemrl import plotting, runfolder
from seemrl.diagnostics.verdict import VerdictConfig, replay
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome
from seemrl.sweep import RunSpec

TITLE = "Divergence prediction: the verdict against the ceiling on held-out runs"


def config(dataset: str, fraction: float, gamma: float, layer_norm: bool,
           optimizer: str = "adam", tau: float = 0.005, lr: float = 3e-4,
           bc_coef: float = 0.0) -> dict[str, Any]:
    """One configuration of TD3 (bc_coef 0: no BC term; 1: TD3+BC with α 2.5; batch 256);
    `lr` is the critic's learning rate (the actor's stays 3e-4)."""
    return {"dataset": dataset, "fraction": fraction, "gamma": gamma, "optimizer": optimizer,
            "lr": lr, "tau": tau, "layer_norm": layer_norm, "bc_coef": bc_coef}


CALIBRATION = [
    config("hopper-medium", 0.01, 0.99, False),
    config("hopper-medium", 0.01, 0.99, True),
    config("hopper-medium", 0.1, 0.95, False, tau=1.0),
    config("hopper-medium", 0.1, 0.95, True, tau=1.0),
    config("hopper-medium", 1.0, 0.99, False, bc_coef=1.0),
    config("walker2d-medium", 0.01, 0.99, False, tau=1.0),
    config("walker2d-medium", 0.1, 0.9, False, optimizer="sgd", lr=3e-3, tau=1.0),
    config("walker2d-medium", 0.01, 0.99, False, bc_coef=0.1),
]
"""The runs the rule is calibrated on; the held-out family shares none of their datasets."""

HELD_OUT = [
    config("hopper-medium-replay", 0.01, 0.99, False),
    config("hopper-medium-replay", 0.01, 0.99, True),
    config("hopper-medium-replay", 0.1, 0.95, False, tau=1.0),
    config("hopper-medium-replay", 0.1, 0.95, True, tau=1.0),
    config("hopper-medium-replay", 1.0, 0.995, False, bc_coef=1.0),
    config("hopper-medium-replay", 0.01, 0.99, False, tau=1.0, bc_coef=0.1),
    config("walker2d-medium-expert", 0.01, 0.99, False, tau=1.0),
    config("walker2d-medium-expert", 0.01, 0.99, True, tau=1.0),
    config("walker2d-medium-expert", 0.1, 0.9, False),
    config("walker2d-medium-expert", 0.01, 0.99, False, bc_coef=0.1),
    config("walker2d-medium-expert", 0.01, 0.99, False, bc_coef=1.0),
    config("halfcheetah-medium", 0.01, 0.99, False),
    config("halfcheetah-medium", 0.01, 0.99, True),
    config("halfcheetah-medium", 1.0, 0.99, False, tau=1.0),
    config("halfcheetah-medium", 0.1, 0.99, False, optimizer="sgd", lr=3e-3, tau=1.0),
    config("halfcheetah-medium", 0.1, 0.99, True, optimizer="sgd", lr=3e-3, tau=1.0),
    config("halfcheetah-medium-replay", 0.01, 0.995, False, tau=1.0),
    config("halfcheetah-medium-replay", 0.1, 0.9, False, bc_coef=0.1),
    config("hopper-expert", 0.01, 0.99, False, tau=1.0),
    config("hopper-expert", 0.01, 0.99, True, tau=1.0),
    config("hopper-expert", 0.1, 0.9, False, optimizer="sgd", lr=3e-3),
]
"""The held-out family (21 configurations × 3 seeds = 63 seed-runs), fixed before its runs."""

SIZES = {"hopper-medium": 1_000_000, "walker2d-medium": 1_000_000,
         "halfcheetah-medium": 1_000_000}
"""Transitions of each dataset (others: the scale's `size`); a fraction is of these."""

GRID = {"seem_threshold": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, math.inf),
        "consecutive": (1, 2, 3, 5, 8), "ntk_cos_min": (0.0, 0.9), "q_rise": (0.0, 1.0)}
"""The calibration grid, every combination (a threshold of inf: the Q-trend clause alone).
The Q-trend clause keeps `VerdictConfig()`'s values: on the calibration family its fraction
of the ceiling (0.1, 0.25, 0.5 tried) and window (3, 4) changed no rule's score."""

SCALES: dict[str, dict[str, Any]] = {
    # Seconds: one tiny dataset, two configurations per family, a few hundred steps.
    "smoke": {"calibration": [config("hopper-medium", 0.5, 0.99, False, tau=1.0),
                              config("hopper-medium", 0.5, 0.99, True)],
              "held_out": [config("hopper-medium", 0.5, 0.95, False, tau=1.0),
                           config("hopper-medium", 0.5, 0.99, True, optimizer="sgd")],
              "size": 2_000, "sizes": {}, "seeds": [0, 1], "steps": 200, "log_every": 100,
              "seem_first": 20, "seem_every": 100, "seem_probe": 16, "q_bound_factor": 10.0},
    # The default SEEM schedule and probe (what a user runs), 20 000 steps per run: a calm
    # seed's verdict can then be called false up to step 2 000, where the dense schedule
    # has taken 40 measurements (a 10 000-step pilot left seeds with SEEM ≈ 0.9 from step
    # 150 and Q still climbing at the end: the old calibration saw those pass the ceiling
    # at 9 500-10 000). A seed is stopped at 10× its ceiling (long past the fact); the seeds
    # of a run share one vmapped group, one run per process and core.
    "cpu": {"calibration": CALIBRATION, "held_out": HELD_OUT, "size": 200_000,
            "sizes": SIZES, "seeds": [0, 1, 2], "steps": 20_000, "log_every": 500,
            "seem_first": 50, "seem_every": 10_000, "seem_probe": 256,
            "q_bound_factor": 10.0, "seed_groups": 1},
    # The paper's length (1M steps): late divergences (its antmaze seed at 260k) count.
    "paper": {"calibration": CALIBRATION, "held_out": HELD_OUT, "size": 1_000_000,
              "sizes": {}, "seeds": [0, 1, 2, 3, 4], "steps": 1_000_000, "log_every": 1000,
              "seem_first": 50, "seem_every": 10_000, "seem_probe": 256,
              "q_bound_factor": 10.0},
}


def run_name(c: dict[str, Any]) -> str:
    opt = "" if c["optimizer"] == "adam" else f"-{c['optimizer']}"
    opt += "" if c["lr"] == 3e-4 else f"-lr{c['lr']:g}"
    tau = "" if c["tau"] == 0.005 else f"-tau{c['tau']:g}"
    bc = "" if not c.get("bc_coef") else f"-bc{c['bc_coef']:g}"
    return (f"{c['dataset']}-f{c['fraction']:g}-g{c['gamma']:g}{opt}{tau}{bc}"
            f"{'-ln' if c['layer_norm'] else ''}")


def check_families(calibration: Sequence[dict], held_out: Sequence[dict]) -> None:
    """The held-out family repeats no calibration configuration (at the cpu and paper
    scales it shares no dataset with it either: tests/test_repro_fraction_predict.py)."""
    shared = [run_name(c) for c in held_out if c in calibration]
    if shared:
        raise ValueError(f"held-out family repeats calibration configurations: {shared}")


# -- truth and verdict, per seed (shared with experiments/verdict_calibration.py) -------------
@dataclasses.dataclass
class SeedRun:
    """One seed of a run, read back: its logged records and its two events."""

    run: str
    seed: int
    steps: int
    """The run's length in gradient steps."""
    ceiling: float
    """max|r|/(1 − γ) on the training data."""
    diverged_at: int | None
    """|mean Q| passed the ceiling or went non-finite (None: never within the run)."""
    records: list[dict[str, Any]]

    def seem(self) -> np.ndarray:
        return np.array([r["seem/normalized"] for r in self.records
                         if r.get("seem/normalized") is not None], float)


def load_seeds(run_dir: str | pathlib.Path) -> list[SeedRun]:
    """Every seed of a run folder (the driver's status.json has its diverged_at)."""
    run = runfolder.read_run(run_dir)
    run_dir, cfg, status, records = run.path, run.config, run.status, run.metrics
    out = []
    for seed in cfg["train"]["seeds"]:
        mine = sorted((r for r in records if r.get("seed") == seed and not r.get("stopped")),
                      key=lambda r: r["step"])
        out.append(SeedRun(run_dir.name, int(seed), int(cfg["train"]["steps"]),
                           float(cfg["q_ceiling"]), status.seeds[int(seed)].diverged_at, mine))
    return out


def judge(r: SeedRun, rule: VerdictConfig | None = None) -> dict[str, Any]:
    """One seed's record: the truth and the rule's prediction (replayed on its records; a
    verdict at or after diverged_at is no prediction)."""
    v = replay(r.records, VerdictConfig() if rule is None else rule, r.ceiling)
    predicted = v.step if v.fired else None
    if predicted is not None and r.diverged_at is not None and predicted >= r.diverged_at:
        predicted = None
    seem = r.seem()
    q = [(rec["step"], abs(rec["train/q_mean"])) for rec in r.records
         if rec.get("train/q_mean") is not None]
    end = q[-1][1] / r.ceiling if q else None
    half = [a for s, a in q if s <= r.steps / 2]
    return {"run": r.run, "seed": r.seed, "steps": r.steps, "ceiling": r.ceiling,
            "diverged_at": r.diverged_at, "predicted_at": predicted,
            "reason": v.reason if predicted is not None else None,
            "final_q_over_ceiling": end,
            # |Q| at the end ≥ 2× its value halfway: a calm seed that may yet diverge
            "q_still_rising": bool(q and half and q[-1][1] >= 2 * half[-1]),
            "final_seem": float(seem[-1]) if seem.size else None,
            "max_seem": float(seem.max()) if seem.size else None,
            "measurements": int(seem.size)}


def score(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Recall, false alarms (calm seeds predicted at p with the run ≥ 10·p long), unsettled
    alarms (calm, predicted later), lead in steps and as a fraction of diverged_at."""
    diverged = [r for r in records if r["diverged_at"] is not None]
    calm = [r for r in records if r["diverged_at"] is None]
    hit = [r for r in diverged if r["predicted_at"] is not None]
    alarms = [r for r in calm if r["predicted_at"] is not None]
    false = [r for r in alarms if 10 * r["predicted_at"] <= r["steps"]]
    lead = [r["diverged_at"] - r["predicted_at"] for r in hit]
    frac = [(r["diverged_at"] - r["predicted_at"]) / r["diverged_at"] for r in hit]
    med = lambda xs: float(np.median(xs)) if xs else None
    return {"seed_runs": len(records), "diverged": len(diverged), "calm": len(calm),
            "predicted_ahead": len(hit),
            "recall": len(hit) / len(diverged) if diverged else None,
            "false_alarms": len(false), "unsettled_alarms": len(alarms) - len(false),
            "false_alarm_rate": len(false) / len(calm) if calm else None,
            "false_alarm_rate_with_unsettled": len(alarms) / len(calm) if calm else None,
            "false_alarms_q_still_rising": sum(bool(r.get("q_still_rising")) for r in false),
            "lead_steps_median": med(lead), "lead_fraction_median": med(frac),
            "lead_fraction_min": float(np.min(frac)) if frac else None,
            "fired_by": {k: sum(r["reason"] == k for r in hit + alarms)
                         for k in ("seem", "q_trend")}}


def objective(s: dict[str, Any]) -> tuple:
    """How calibration ranks rules: recall minus the false-alarm rate counting the unsettled
    alarms too (else a rule whose alarms come late, where no run is long enough to call them
    false, would look clean), then the median lead as a fraction of the time to the ceiling;
    at equal scores the rule that asks more of the theory's signature (stable NTK direction,
    rising Q), then the lower SEEM threshold (the earlier warning)."""
    rule = s.get("rule", {})
    return ((s["recall"] or 0.0) - (s["false_alarm_rate_with_unsettled"] or 0.0),
            s["lead_fraction_median"] or 0.0,
            rule.get("ntk_cos_min", 0.0) + rule.get("q_rise", 0.0),
            -rule.get("seem_threshold", 0.0))


def calibrate(seeds: Sequence[SeedRun], grid: Mapping[str, Sequence] = GRID
              ) -> tuple[VerdictConfig, list[dict[str, Any]]]:
    """The grid's best rule on the calibration seeds, and every rule's score."""
    import itertools

    rows = []
    for values in itertools.product(*grid.values()):
        rule = VerdictConfig(**dict(zip(grid, values, strict=True)))
        s = score([judge(r, rule) for r in seeds])
        rows.append({"rule": dataclasses.asdict(rule), **s})
    best = max(rows, key=objective)
    return VerdictConfig(**best["rule"]), rows


ALTERNATIVES = {
    "library rule (VerdictConfig())": VerdictConfig(),
    "SEEM > 0.1 once, nothing else": VerdictConfig(seem_threshold=0.1, consecutive=1,
                                                   ntk_cos_min=-1.0, q_rise=0.0,
                                                   q_trend_frac=math.inf),
    "SEEM > 0.1 ×5 (the old rule's SEEM clause)": VerdictConfig(
        seem_threshold=0.1, consecutive=5, ntk_cos_min=-1.0, q_rise=0.0,
        q_trend_frac=math.inf),
    "SEEM clause only": dataclasses.replace(VerdictConfig(), q_trend_frac=math.inf),
    "Q trend only": dataclasses.replace(VerdictConfig(), seem_threshold=math.inf),
}
"""Rules scored side by side on the held-out runs: which signal carries the prediction."""


# -- the experiment --------------------------------------------------------------------------
def _specs(ctx: Context, family: Sequence[dict[str, Any]]) -> list[RunSpec]:
    p = ctx.params
    specs = []
    for c in family:
        path = ctx.dataset(c["dataset"], p["sizes"].get(c["dataset"], p["size"]))
        train = {"dataset": str(path), "seeds": list(p["seeds"]), "steps": p["steps"],
                 "fraction": c["fraction"], "log_every": p["log_every"], "eval_every": 0,
                 "eval_episodes": 0, "checkpoint_every": 0, "seem_every": p["seem_every"],
                 "seem_first": p["seem_first"], "seem_probe": p["seem_probe"],
                 # A seed is stopped once far past the ceiling (it has long since diverged).
                 "q_bound": p["q_bound_factor"] * _ceiling(path, c)}
        if "seed_groups" in p:
            train["seed_groups"] = p["seed_groups"]
        algo = {"bc_coef": c.get("bc_coef", 0.0), "gamma": c["gamma"],
                "optimizer": c["optimizer"], "lr_critic": c["lr"], "tau": c["tau"],
                "layer_norm": c["layer_norm"]}
        specs.append(RunSpec(run_name(c), train, algo))
    return specs


def _train(ctx: Context, specs: list[RunSpec]) -> dict[str, list[SeedRun]]:
    trained = ctx.train(specs)
    failed = [s.name for s in specs if trained[s.name].outcome == "failed"]
    if failed:
        raise RuntimeError(f"training failed for {', '.join(failed)}: "
                           f"{trained[failed[0]].error}")
    return {s.name: load_seeds(trained[s.name].run_dir) for s in specs}


def run(ctx: Context) -> Outcome:
    """Train both families (calibration first; finished runs are reused), then report."""
    p = ctx.params
    check_families(p["calibration"], p["held_out"])
    t0 = time.process_time()
    _train(ctx, _specs(ctx, p["calibration"]))
    _train(ctx, _specs(ctx, p["held_out"]))
    return report(ctx, cpu_seconds=time.process_time() - t0)


def _finished(ctx: Context, family: Sequence[dict[str, Any]]
              ) -> tuple[dict[str, list[SeedRun]], list[str]]:
    """The family's finished runs, read back, and the names of the others (trains nothing)."""
    done, pending = {}, []
    for c in family:
        name = run_name(c)
        status = runfolder.read_status(ctx.out / "runs" / name)
        if status is not None and status.finished:
            done[name] = load_seeds(ctx.out / "runs" / name)
        else:
            pending.append(name if status is None else f"{name} (step {status.step:,} of "
                                                       f"{status.steps:,})")
    return done, pending


def report(ctx: Context, cpu_seconds: float | None = None) -> Outcome:
    """Calibration grid and held-out scores from the runs that have finished (trains nothing:
    `seemrl repro predict --scale cpu --collect`); unfinished runs are listed as pending."""
    p = ctx.params
    check_families(p["calibration"], p["held_out"])
    cal, cal_pending = _finished(ctx, p["calibration"])
    held, held_pending = _finished(ctx, p["held_out"])
    best, grid_rows = calibrate([r for rs in cal.values() for r in rs])
    rule = VerdictConfig()
    records = [judge(r, rule) for rs in held.values() for r in rs]
    per_config = []
    for c in p["held_out"]:
        name = run_name(c)
        if name in held:
            per_config.append({"name": name, "config": c,
                               **score([r for r in records if r["run"] == name])})
    overall = score(records)
    cal_records = [judge(r, rule) for rs in cal.values() for r in rs]
    alternatives = {name: score([judge(r, alt) for rs in held.values() for r in rs])
                    for name, alt in ALTERNATIVES.items()}
    ctx.save_figure(plot_scatter(records, p), "predict_scatter.png")
    if held:
        ctx.save_figure(plot_curves(held, records, p), "predict_curves.png")
    results = {"rule": dataclasses.asdict(rule), "calibrated_best": dataclasses.asdict(best),
               "rule_is_calibrated_best": rule == best,
               "calibration": {"configs": p["calibration"], "overall": score(cal_records),
                               "grid": grid_rows, "pending": cal_pending},
               "overall": overall, "per_config": per_config, "alternatives": alternatives,
               "pending": held_pending, "seeds": records,
               "cpu_hours_of_runs": _cpu_hours([*cal, *held], ctx.out / "runs"),
               "cpu_seconds_this_invocation": cpu_seconds}
    return Outcome(results, markdown(results, p))


def _cpu_hours(names: Sequence[str], runs: pathlib.Path) -> float:
    """Training time of the runs, from their own logs (seemrl.runfolder.training_seconds)."""
    return sum(runfolder.training_seconds(runs / n) for n in names) / 3600


def _ceiling(path: pathlib.Path, c: dict[str, Any]) -> float:
    from seemrl.data import load_dataset
    from seemrl.data.subset import subset
    from seemrl.train import q_ceiling

    data = load_dataset(str(path))
    if c["fraction"] < 1:
        data = subset(data, c["fraction"], 0)
    return q_ceiling(data.rewards, c["gamma"])


# -- figures ---------------------------------------------------------------------------------
def plot_scatter(records, p):
    """Left: predicted_at against diverged_at per diverged seed (below the diagonal: ahead).
    Right: the lead as a fraction of the time to the ceiling, and calm seeds' alarms."""
    plt = plotting.pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.2))
    steps = p["steps"]
    div = [r for r in records if r["diverged_at"] is not None]
    hit = [r for r in div if r["predicted_at"] is not None]
    miss = [r for r in div if r["predicted_at"] is None]
    ax.scatter([r["diverged_at"] for r in hit], [r["predicted_at"] for r in hit], s=36,
               color="tab:blue", edgecolor="k", lw=0.4, label=f"predicted ahead ({len(hit)})")
    ax.scatter([r["diverged_at"] for r in miss], [steps * 1.05] * len(miss), s=36, marker="X",
               color="tab:red", label=f"diverged, not predicted ({len(miss)})")
    top = max([steps * 1.1] + [r["diverged_at"] for r in div])
    low = 0.5 * min([r["diverged_at"] for r in div] + [p.get("seem_first", 50) or 50])
    ax.plot([low, top], [low, top], "k--", lw=1, label="y = x (at the fact: no lead)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, top * 1.3)
    ax.set_ylim(low, top * 1.3)
    ax.set_xlabel("diverged_at: step Q passed max|r|/(1 − γ) (log)")
    ax.set_ylabel("predicted_at: step the verdict fired (log; top row: never)")
    ax.set_title(f"{len(div)} diverged held-out seed-runs")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    frac = sorted((r["diverged_at"] - r["predicted_at"]) / r["diverged_at"] for r in hit)
    bx.hist(frac, bins=np.linspace(0, 1, 21), color="tab:blue", alpha=0.7,
            label="lead / diverged_at, predicted seeds")
    bx.axvline(0.3, color="k", ls=":", lw=1, label="target median 0.3")
    if frac:
        bx.axvline(float(np.median(frac)), color="tab:blue", lw=2,
                   label=f"median {np.median(frac):.2f}")
    calm = [r for r in records if r["diverged_at"] is None]
    alarms = [r for r in calm if r["predicted_at"] is not None]
    bx.set_xlabel("lead as a fraction of the time to the ceiling")
    bx.set_ylabel("seed-runs")
    bx.set_title(f"{len(calm)} calm seed-runs: {len(alarms)} alarm(s)")
    bx.legend(fontsize=8)
    fig.suptitle("Held-out runs: the verdict (a prediction) against the fact (Q past the "
                 "ceiling)")
    fig.tight_layout()
    return fig


def plot_curves(seeds: dict[str, list[SeedRun]], records, p):
    """Per configuration: |mean Q| / ceiling (log) and SEEM against steps, seeds thin;
    ▼ predicted_at, × diverged_at."""
    plt = plotting.pyplot()
    names = list(seeds)
    cols = min(6, len(names))
    blocks = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.0 * cols, 4.6 * blocks),
                             squeeze=False)
    thr = VerdictConfig().seem_threshold
    by = {(r["run"], r["seed"]): r for r in records}
    for i, name in enumerate(names):
        qa, sa = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        for k, s in enumerate(seeds[name]):
            c = plotting.pyplot().get_cmap("tab10")(k % 10)
            rows = [r for r in s.records if r.get("train/q_mean") is not None]
            qa.plot([r["step"] for r in rows],
                    [abs(r["train/q_mean"]) / s.ceiling for r in rows], lw=0.9, color=c)
            srows = [r for r in s.records if r.get("seem/normalized") is not None]
            sa.plot([r["step"] for r in srows], [r["seem/normalized"] for r in srows], lw=0.9,
                    color=c)
            rec = by[(name, s.seed)]
            for ax in (qa, sa):
                if rec["predicted_at"] is not None:
                    ax.axvline(rec["predicted_at"], color=c, ls=":", lw=0.9)
                if rec["diverged_at"] is not None:
                    ax.axvline(rec["diverged_at"], color=c, ls="--", lw=0.9)
        qa.axhline(1.0, color="k", lw=0.8)
        qa.set_yscale("log")
        for ax in (qa, sa):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(_steps_formatter())
            ax.xaxis.set_minor_formatter(_steps_formatter(minor=True))
        sa.axhline(thr, color="grey", ls=":", lw=0.8)
        qa.set_title(name, fontsize=7)
        if i % cols == 0:
            qa.set_ylabel("|mean Q| / ceiling")
            sa.set_ylabel("normalised SEEM")
        sa.set_xlabel("step", fontsize=8)
    for j in range(len(names), blocks * cols):
        axes[2 * (j // cols), j % cols].axis("off")
        axes[2 * (j // cols) + 1, j % cols].axis("off")
    fig.suptitle("Held-out runs: Q against its ceiling (top, log) and SEEM (bottom); dotted: "
                 "predicted_at, dashed: diverged_at (one colour per seed)", fontsize=10)
    fig.tight_layout()
    return fig


def _steps_formatter(minor: bool = False):
    """Step ticks as plain numbers (1,000 not 10³); minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    return NullFormatter() if minor else FuncFormatter(lambda v, _: f"{v:,.0f}")


# -- the section -----------------------------------------------------------------------------
def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _f2(x) -> str:
    return rp.fmt_as(x, ".2f")


HEADER = ["runs", "seed-runs", "diverged", "predicted ahead (recall)", "false alarms (rate)",
          "unsettled", "median lead, steps", "median lead / time to ceiling"]


def _row(name: str, s: dict[str, Any]) -> list[str]:
    return [name, s["seed_runs"], s["diverged"], f"{s['predicted_ahead']} ({_pct(s['recall'])})",
            f"{s['false_alarms']} ({_pct(s['false_alarm_rate'])})", s["unsettled_alarms"],
            rp.fmt_as(s["lead_steps_median"], ",.0f"), _f2(s["lead_fraction_median"])]


def markdown(results: dict[str, Any], p: dict[str, Any]) -> str:
    rule, o = results["rule"], results["overall"]
    report = rp.Report(
        f"TD3 (no BC term unless named: bc1 = TD3+BC α 2.5, bc0.1 = a weak BC term), "
        f"{p['steps']:,} steps, seeds {p['seeds']}, the default SEEM schedule (every "
        f"{p['seem_first']} steps at first, growing to every {p['seem_every']:,}) on a "
        f"{p['seem_probe']}-transition probe. diverged_at: the first step |mean Q| passed "
        "max|r|/(1 − γ) of the training data (or went non-finite); predicted_at: the step the "
        "verdict fired, counted only strictly before diverged_at. A calm seed's alarm at step "
        "p is false when the run was ≥ 10·p long, else unsettled.",
        against="the targets",
        claim="Targets on the held-out family: recall ≥ 90 %, false alarms ≤ 10 %, median "
              "lead ≥ 30 % of the time to the ceiling.")
    report.text(
        f"Rule (`VerdictConfig()`): SEEM > {rule['seem_threshold']:g} at "
        f"{rule['consecutive']} measurement(s) in a row with NTK cosine ≥ "
        f"{rule['ntk_cos_min']:g} and |Q| rising ≥ {rule['q_rise']:g}×, or |Q| > "
        f"{rule['q_trend_frac']:g}× ceiling and accelerating (log-log slope > "
        f"{rule['q_trend_exponent']:g} over {rule['q_trend_window']} measurements). "
        + ("It is the calibration grid's best rule." if results["rule_is_calibrated_best"]
           else f"The calibration grid's best rule is {results['calibrated_best']}: the "
                "library default differs from it."))
    report.table(HEADER, [
        _row("calibration (" + ", ".join(sorted({c['dataset'] for c in p['calibration']}))
             + ")", results["calibration"]["overall"]),
        _row("**held out** (" + ", ".join(sorted({c['dataset'] for c in p['held_out']}))
             + ")", o)])
    report.heading("Which signal predicts (held-out runs, each rule replayed on the same logs)")
    report.table(HEADER, [_row(name, s) for name, s in results["alternatives"].items()])
    report.heading("Per held-out configuration")
    report.table(HEADER, [_row(c["name"], c) for c in results["per_config"]])
    pending = results["pending"] + results["calibration"]["pending"]
    if pending:
        report.text(f"**Not finished yet ({len(pending)} runs, not in the numbers above; "
                    "the same `seemrl repro predict` command resumes them):** "
                    + ", ".join(pending) + ".")
    met, line = verdict_line(o)
    report.finding(
        line + (f" Of the {o['false_alarms']} false alarms, {o['false_alarms_q_still_rising']} "
                "had |Q| still rising at the end (≥ 2× its value halfway through the run): "
                "calm within the run, not necessarily for good." if o["false_alarms"] else ""),
        rp.NOT_SETTLED if pending else rp.HOLDS if met else rp.DIFFERS)
    report.note("CPU time of the finished runs' training: "
                f"{results['cpu_hours_of_runs']:.2f} h "
                "(Σ over run folders of each logged chunk's steps / its steps per second, one "
                "core per run; SEEM measurements are not in it).")
    return report.markdown()


def verdict_line(s: dict[str, Any]) -> tuple[bool, str]:
    """Whether the held-out numbers meet the targets, and that said plainly."""
    met = {"recall ≥ 90 %": s["recall"] is not None and s["recall"] >= 0.9,
           "false alarms ≤ 10 %": s["false_alarm_rate"] is not None
           and s["false_alarm_rate"] <= 0.1,
           "median lead ≥ 30 %": s["lead_fraction_median"] is not None
           and s["lead_fraction_median"] >= 0.3}
    ok = [k for k, v in met.items() if v]
    bad = [k for k, v in met.items() if not v]
    if not bad:
        return True, "All three are met here."
    return False, (f"Met: {', '.join(ok) or 'none'}; not met: {', '.join(bad)} (numbers above; "
                   "the rule was not re-tuned on these runs).")
