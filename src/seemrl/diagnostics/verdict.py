"""The online divergence verdict: a prediction, made before Q passes its ceiling.

Two events are kept apart everywhere (status.json, metrics.jsonl, the progress bar,
`seemrl diagnose`, `SeemMonitor`):

* **predicted_at**: the step this rule fired, using only measurements up to it;
* **diverged_at**: the fact: the first step whose |mean Q| passed the ceiling
  max|r|/(1 − γ) of the training data (after the reward transform) or went non-finite.

A verdict that comes at or after the fact is no prediction: once Q has passed the ceiling
the rule stops looking, so a divergence it did not see coming stays "not predicted".

What the theory gives (SPEC §2–3). To first order the TD residual evolves as
e' = (I + (η/N)·A) e; when A has an eigenvalue with positive real part (SEEM > 0) *and* the
NTK direction is stable, the residual excites itself: |Q| grows geometrically (SGD) or
polynomially (Adam), and the parameter norm with it. A positive SEEM alone is not enough:
early in training the kernel still turns (ntk_cos < 1) and Q is still rising to its return
scale, and a critic can sit at a small positive SEEM while its Q stays put. So the rule asks
for the signature of self-excitation, not one number, at each SEEM measurement t (the
measurements come from `SeemSchedule`, so they do not depend on the logging period):

1. **seem**: normalised SEEM > `seem_threshold` at `consecutive` measurements in a row, the
   NTK direction stable over them (cosine to the previous measurement ≥ `ntk_cos_min`; the
   first measurement has nothing to compare with, so it never counts), and |Q on the probe|
   grown over the streak (its value at the streak's last measurement ≥ `q_rise` × its value
   at the measurement just before the streak).
2. **q_trend**: |Q| already above `q_trend_frac` × ceiling and accelerating: over the last
   `q_trend_window` measurements log|Q| grows faster than `q_trend_exponent` · log t. The
   normal warm-up levels off below the ceiling, so only a run heading through it fires this.

Every threshold is relative (SEEM is scale-free, Q is read against the run's own ceiling),
so the rule means the same for antmaze's 0/1 rewards as for reward-normalised IQL. The
defaults were chosen on the calibration family of experiments/verdict_calibration.py
(fixed in `seemrl.repro.predict` before its runs) and are judged on the held-out family by
`seemrl repro predict`: docs/VERDICT.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class VerdictConfig:
    """Parameters of the divergence rule (see module doc)."""

    seem_threshold: float = 0.3
    """Normalised SEEM above this counts as self-exciting (calibrated: TD3+BC's transient
    early bumps reach 0.27 and fade; the calibration family's diverging critics sit at
    0.5-0.9)."""
    consecutive: int = 1
    """SEEM measurements in a row above the threshold (calibrated: the fastest divergences
    pass the ceiling 60 steps after the first measurement above it, so waiting for a second
    one 50 steps later costs them their warning)."""
    ntk_cos_min: float = 0.9
    """…with the NTK direction stable: cosine to the previous measurement at least this."""
    q_rise: float = 1.0
    """…and |Q on the probe| at the streak's end at least this × its value just before it."""
    q_trend_frac: float = 0.5
    """Q-trend clause: |Q| above this fraction of the ceiling…"""
    q_trend_window: int = 4
    """…and over this many measurements…"""
    q_trend_exponent: float = 1.5
    """…log|Q| grows faster than this × log(step) (accelerating)."""

    def __post_init__(self):
        if self.consecutive < 1 or self.q_trend_window < 2:
            raise ValueError("VerdictConfig needs consecutive >= 1 and q_trend_window >= 2")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the rule says so far.

    fired: predicted to diverge. step: the measurement step it fired at (None if not).
    reason: 'seem' | 'q_trend' | ''. seem: normalised SEEM at that step. since: first step
    of the SEEM streak that fired it (the step of the Q-trend window's start for q_trend).
    """

    fired: bool = False
    step: int | None = None
    reason: str = ""
    seem: float | None = None
    since: int | None = None

    def describe(self) -> str:
        """One line for a progress bar or a table: "SEEM +0.62 since step 200: predicted to
        diverge"."""
        if not self.fired:
            return ""
        if self.reason == "seem":
            return (f"SEEM {self.seem:+.2f} since step {self.since:,}: predicted to diverge "
                    f"(at step {self.step:,})")
        return f"Q accelerating toward the ceiling since step {self.since:,}: predicted to " \
               f"diverge (at step {self.step:,})"


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class OnlineVerdict:
    """The rule, fed one SEEM measurement at a time (the driver's and SeemMonitor's).

    >>> v = OnlineVerdict(VerdictConfig(), ceiling=454.6)
    >>> v.update(step, {"seem/normalized": 0.3, "seem/q_data": 40.0, "seem/ntk_cos": 0.99})

    `ceiling` is max|r|/(1 − γ) of the training data; without one (γ = 1) only the SEEM
    clause can fire, and nothing counts as "too late". Once |Q| passes the ceiling (or goes
    non-finite) the verdict is frozen: it fired before the fact, or it missed.
    """

    def __init__(self, config: VerdictConfig = VerdictConfig(), ceiling: float | None = None):
        self.config, self.ceiling = config, ceiling
        self.result = Verdict()
        self.too_late = False
        self._streak: list[tuple[int, float, float | None]] = []  # (step, seem, |q|)
        self._base: float | None = None  # |q| at the measurement before the streak
        self._last_q: float | None = None  # |q| at the previous measurement
        self._q: list[tuple[int, float]] = []  # (step, |q|) of recent measurements

    def diverged(self) -> None:
        """Q has passed the ceiling (seen by the caller between measurements): freeze."""
        self.too_late = True

    def update(self, step: int, metrics: Mapping[str, Any]) -> Verdict:
        """One measurement: `seem/normalized`, `seem/q_data` (mean Q on the probe's data
        actions) and `seem/ntk_cos` (NaN at the first measurement); missing keys are allowed.
        Returns the verdict so far (once fired, it stays)."""
        if self.result.fired or self.too_late:
            return self.result
        c = self.config
        seem = _finite(metrics.get("seem/normalized"))
        q_raw = metrics.get("seem/q_data")
        q = _finite(q_raw)
        if q_raw is not None and q is None:  # Q already non-finite: the fact, not a forecast
            self.too_late = True
            return self.result
        aq = None if q is None else abs(q)
        if aq is not None and self.ceiling is not None and aq >= self.ceiling:
            self.too_late = True
            return self.result
        step = int(step)
        if "seem/ntk_cos" in metrics:  # NaN at a first measurement: no direction seen yet
            cos = _finite(metrics["seem/ntk_cos"])
            stable = cos is not None and cos >= c.ntk_cos_min
        else:  # a caller that does not measure the direction
            stable = True

        # Clause 1: a persistent, stable-direction, Q-raising self-excitation.
        if seem is not None and seem > c.seem_threshold and stable:
            if not self._streak:
                self._base = self._last_q if self._last_q is not None else aq
            self._streak.append((step, seem, aq))
        elif seem is not None:
            self._streak = []
        self._last_q = aq if aq is not None else self._last_q
        if len(self._streak) >= c.consecutive:
            window = self._streak[-c.consecutive:]
            before = len(self._streak) - c.consecutive - 1  # the window's predecessor
            q0 = self._base if before < 0 else self._streak[before][2]
            q1 = window[-1][2]
            rising = q0 is None or q1 is None or q1 >= c.q_rise * q0
            if rising:
                self.result = Verdict(True, step, "seem", seem, window[0][0])
                return self.result

        # Clause 2: Q accelerating through the upper part of its possible range.
        if aq is not None and self.ceiling is not None and step > 0:
            self._q.append((step, aq))
            self._q = self._q[-c.q_trend_window:]
            if (len(self._q) == c.q_trend_window and aq >= c.q_trend_frac * self.ceiling
                    and _loglog_slope(self._q) > c.q_trend_exponent):
                self.result = Verdict(True, step, "q_trend", seem, self._q[0][0])
        return self.result


def _loglog_slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of log|Q| against log(step)."""
    xs = [math.log(t) for t, _ in points]
    ys = [math.log(max(q, 1e-12)) for _, q in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def replay(records: Sequence[Mapping[str, Any]], config: VerdictConfig = VerdictConfig(),
           ceiling: float | None = None) -> Verdict:
    """The verdict an online monitor would have given on a logged series: `records` are one
    seed's metrics.jsonl rows in step order; only those with `seem/normalized` are
    measurements."""
    v = OnlineVerdict(config, ceiling)
    for rec in records:
        if "seem/normalized" in rec:
            v.update(rec["step"], rec)
    return v.result
