"""An online divergence verdict from the SEEM series and the Q trend.

The rule fires at the first measurement where any of these holds, using only the past:

1. **SEEM**: normalised SEEM > `seem_threshold` for `consecutive` measurements in a row
   (self-excitation persists; the authors' diverging runs sit at 0.2–0.8, converging ones ≈ 0).
2. **Q growth**: over the last `q_window` measurements log|Q| grows faster than
   `q_growth_exponent` · log t (super-linear), |Q| grew by ≥ `q_min_growth`×, and |Q| is above
   `q_floor`. The floor stops the normal warm-up (Q rising from ≈ 0 to its return scale, also
   steep in log-log) from firing it; set it to r_max/(1 − γ) when the reward scale is known.
3. **Q explosion**: |Q| > `q_explode` or not finite (already diverged; a late verdict).

The SEEM threshold and persistence are calibrated on real runs by
experiments/verdict_calibration.py (TD3 with bc_coef 0 on 1 % of hopper-medium, γ 0.9 and
0.99, LayerNorm off and on, 3 seeds, SEEM every 1 000 steps): see docs/VERDICT.md for its
accuracy on held-out runs. `consecutive` counts measurements, so at a sparser SEEM period the
rule needs proportionally more steps before it fires.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class VerdictConfig:
    """Parameters of the divergence rule (see module doc)."""

    seem_threshold: float = 0.1
    """Normalised SEEM above this counts as self-exciting."""
    consecutive: int = 5
    """Measurements in a row above the threshold before the SEEM rule fires."""
    q_window: int = 5
    """Measurements in the Q-growth fit."""
    q_growth_exponent: float = 1.5
    """log-log slope of |Q| against step above which growth is super-linear."""
    q_min_growth: float = 10.0
    """|Q| must also have grown by this factor over the window."""
    q_floor: float = 1e3
    """…and be above this (≈ the largest plausible |Q|, r_max/(1 − γ))."""
    q_explode: float = 1e4
    """|Q| above this (or non-finite) means Q has exploded."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """fired: the run is flagged as diverging. step: the step it fired (None if not).
    reason: "seem" | "q_growth" | "q_explode" | ""."""

    fired: bool
    step: float | None
    reason: str


def _q_growth(steps: np.ndarray, q: np.ndarray, cfg: VerdictConfig) -> bool:
    s, a = steps[-cfg.q_window:], np.abs(q[-cfg.q_window:])
    if len(s) < cfg.q_window or np.any(s <= 0) or np.any(a <= 0) or not np.all(np.isfinite(a)):
        return False
    if a[-1] < cfg.q_floor or a[-1] < cfg.q_min_growth * a[0]:
        return False
    slope = np.polyfit(np.log(s), np.log(a), 1)[0]
    return bool(slope > cfg.q_growth_exponent)


def verdict(steps, seem=None, q=None, config: VerdictConfig = VerdictConfig(), *,
            q_steps=None) -> Verdict:
    """The first step at which the rule fires, scanning the series in time order.

    Args:
      steps: (n,) steps of the SEEM measurements (and of Q unless `q_steps` is given).
      seem: (n,) normalised SEEM (NaN = not measured) or None.
      q: (m,) mean Q or None; NaN/inf count as exploded (a diverged run logs them).
      config: rule parameters.
      q_steps: (m,) steps of `q` when they differ from `steps` (Q is usually logged more often).

    Returns:
      Verdict; the decision at a step uses only entries up to it, so it is what an online
      monitor would have said then.
    """
    steps = np.asarray(steps, np.float64)
    events = []
    if seem is not None:
        events += [(t, 0, v) for t, v in zip(steps, np.asarray(seem, np.float64), strict=True)]
    if q is not None:
        qs = steps if q_steps is None else np.asarray(q_steps, np.float64)
        events += [(t, 1, v) for t, v in zip(qs, np.asarray(q, np.float64), strict=True)]
    events.sort(key=lambda e: (e[0], e[1]))
    run = 0
    q_t: list[float] = []
    q_v: list[float] = []
    for t, kind, v in events:
        if kind == 0 and not np.isnan(v):
            run = run + 1 if v > config.seem_threshold else 0
            if run >= config.consecutive:
                return Verdict(True, float(t), "seem")
        elif kind == 1:
            if not np.isfinite(v) or abs(v) > config.q_explode:
                return Verdict(True, float(t), "q_explode")
            q_t.append(t)
            q_v.append(v)
            if _q_growth(np.array(q_t), np.array(q_v), config):
                return Verdict(True, float(t), "q_growth")
    return Verdict(False, None, "")


class OnlineVerdict:
    """A thin stateful shell for a training loop: feed measurements, read the verdict.

    >>> monitor = OnlineVerdict()
    >>> v = monitor.update(step, seem=metrics["seem/normalized"], q=metrics["seem/q_data"])
    """

    def __init__(self, config: VerdictConfig = VerdictConfig()):
        self.config = config
        self.seem_steps: list[float] = []
        self.seem: list[float] = []
        self.q_steps: list[float] = []
        self.q: list[float] = []
        self.result = Verdict(False, None, "")

    def update(self, step: float, seem: float | None = None, q: float | None = None) -> Verdict:
        """Record one measurement (either value may be None); once fired, the verdict stays."""
        if seem is not None:
            self.seem_steps.append(float(step))
            self.seem.append(float(seem))
        if q is not None:
            self.q_steps.append(float(step))
            self.q.append(float(q))
        if not self.result.fired:
            self.result = verdict(self.seem_steps, self.seem, self.q, self.config,
                                  q_steps=self.q_steps)
        return self.result
