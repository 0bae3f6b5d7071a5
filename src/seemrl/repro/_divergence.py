"""What the divergence experiments (surge, discount, sgd, adam) share: the paper's diverging
TD3 setting, the run options they train with, and reading a run back per seed (their
sections are built with `repro._report.Report`).

The diverging setting (SPEC §5.1): TD3 with no BC term (bc_coef 0, α 2.5), Adam 3e-4 for actor
and critic, τ = 1.0, γ 0.99, batch 256. In `algos/td3bc.py` the targets are updated inside
the delayed actor step (every `policy_freq` = 2 critic steps) with Polyak rate τ, so τ = 1 is
a hard copy of the online networks at every actor step, as the authors ran it.

"Q passed the ceiling" means |mean Q| > max|r|/(1 − γ), the largest discounted return any
policy could collect on the data (`train.q_ceiling`, recorded in each run's config.json); a
correct critic never passes it, and the library's verdict uses it as its explosion threshold.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from seemrl import runfolder
from seemrl.diagnostics.verdict import VerdictConfig

DIVERGING_TD3 = {"bc_coef": 0.0, "alpha": 2.5, "tau": 1.0, "gamma": 0.99, "optimizer": "adam",
                 "lr_actor": 3e-4, "lr_critic": 3e-4}
"""TD3 options of the paper's divergence setting (SPEC §5.1); batch 256 is TrainConfig's."""

SEEM_THRESHOLD = VerdictConfig().seem_threshold
"""Normalised SEEM above this counts as self-exciting: the library's calibrated verdict
threshold (docs/VERDICT.md), fixed before these experiments."""


def train_options(dataset: pathlib.Path | str, p: dict[str, Any], *, q_bound: float | None = None,
                  **overrides) -> dict[str, Any]:
    """TrainConfig options of one run from an experiment's scale parameters `p`.

    No evaluation rollouts (these experiments are about the critic), one checkpoint at the
    end, SEEM every `p["seem_every"]` steps on a probe of `p["seem_probe"]` transitions.
    """
    opts = {"dataset": str(dataset), "seeds": list(p["seeds"]), "steps": p["steps"],
            "fraction": p.get("fraction", 1.0), "log_every": p["log_every"],
            "seem_every": p["seem_every"], "seem_probe": p["seem_probe"], "eval_every": 0,
            "eval_episodes": 0, "checkpoint_every": 0}
    if q_bound is not None:
        opts["q_bound"] = q_bound
    opts.update(overrides)
    return opts


@dataclasses.dataclass
class SeedSeries:
    """One seed's logged series, cut at its recorded divergence (a stopped seed's later
    records describe its frozen last finite state, not training).

    steps/q/norm: every log point (mean Q over the chunk's batches, critic head-0 parameter
    norm at the chunk's end). seem_steps/seem: the SEEM measurements. stopped_at: the step Q
    (or the loss) turned non-finite or passed the run's q_bound (None if it never did).
    """

    seed: int
    steps: np.ndarray
    q: np.ndarray
    norm: np.ndarray
    seem_steps: np.ndarray
    seem: np.ndarray
    stopped_at: int | None

    def seem_above(self, threshold: float = SEEM_THRESHOLD) -> float | None:
        """First SEEM measurement above `threshold` (None if never)."""
        return first_step(self.seem_steps, self.seem > threshold)

    def q_past(self, limit: float) -> float | None:
        """First log point with |Q| > limit or non-finite, or the recorded divergence."""
        step = first_step(self.steps, ~np.isfinite(self.q) | (np.abs(self.q) > limit))
        if self.stopped_at is not None:
            step = self.stopped_at if step is None else min(step, self.stopped_at)
        return step

    def max_abs_q(self) -> float:
        """Largest finite |Q| logged (NaN if none)."""
        finite = np.abs(self.q[np.isfinite(self.q)])
        return float(finite.max()) if finite.size else math.nan

    def final_seem(self, last: int = 1) -> float:
        """Mean of the last `last` SEEM measurements (NaN if none)."""
        ok = self.seem[np.isfinite(self.seem)]
        return float(ok[-last:].mean()) if ok.size else math.nan

    def max_seem(self) -> float:
        ok = self.seem[np.isfinite(self.seem)]
        return float(ok.max()) if ok.size else math.nan


@dataclasses.dataclass
class RunData:
    """A run folder read back: its config facts and one SeedSeries per seed."""

    name: str
    run_dir: pathlib.Path
    config: dict[str, Any]
    ceiling: float
    seeds: list[SeedSeries]

    @property
    def gamma(self) -> float:
        return float(self.config["algo"]["gamma"])


def load_run(run_dir: str | pathlib.Path) -> RunData:
    """Read a finished run folder (config.json, status.json, metrics.jsonl)."""
    run = runfolder.read_run(run_dir)
    run_dir, config, status, records = run.path, run.config, run.status, run.metrics
    seeds = []
    for seed in config["train"]["seeds"]:
        stopped_at = status.seeds[int(seed)].stopped_at
        # A stopped seed logs no training after its stop (folders from before: its frozen
        # state's rows, cut here).
        rows = [r for r in records if r.get("seed") == seed and not r.get("stopped")
                and (stopped_at is None or r["step"] - config["train"]["log_every"]
                     < stopped_at)]
        steps, q, norm = (np.array([_num(r.get(k)) for r in rows], np.float64)
                          for k in ("step", "train/q_mean", "train/critic_param_norm_0"))
        seem_rows = [r for r in rows if r.get("seem/normalized") is not None]
        seem_steps = np.array([r["step"] for r in seem_rows], np.float64)
        seem = np.array([_num(r["seem/normalized"]) for r in seem_rows], np.float64)
        if stopped_at is not None and len(q) and rows[-1]["step"] >= stopped_at:
            # The chunk it blew up in logs the mean of its finite part; mark the blow-up.
            q[-1] = math.nan
        seeds.append(SeedSeries(int(seed), steps, q, norm, seem_steps, seem, stopped_at))
    return RunData(run_dir.name, run_dir, config, float(config["q_ceiling"]), seeds)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def first_step(steps: np.ndarray, mask: np.ndarray) -> float | None:
    """The first step where `mask` holds (None if never)."""
    mask = np.asarray(mask, bool)
    return float(steps[np.argmax(mask)]) if mask.any() else None


def check_finished(results: dict[str, Any], names: Iterable[str]) -> None:
    """Raise if a run of the sweep failed (its error is in its run folder's error.txt)."""
    failed = [n for n in names if results[n].outcome == "failed"]
    if failed:
        raise RuntimeError(f"training failed for {', '.join(failed)}: "
                           f"{results[failed[0]].error}")
