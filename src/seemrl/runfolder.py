"""The run folder's status.json, read in one place: a typed `RunStatus`.

Only `train.Trainer` writes status.json; readers go through `read_status`, which also reads
the folders written before the verdict became a prediction (per seed `verdict_step` /
`verdict_reason`, and `diverged_at` meaning the step the seed was stopped at its Q bound).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class SeedStatus:
    """One seed of a run (steps are gradient steps; None: did not happen)."""

    predicted_at: int | None = None
    """The online verdict fired (a prediction, strictly before `diverged_at` if that came)."""
    predicted_reason: str | None = None
    diverged_at: int | None = None
    """|mean Q| passed the ceiling max|r|/(1 − γ) or went non-finite: the fact."""
    stopped_at: int | None = None
    """Training stopped (|Q| past q_bound or non-finite); the seed keeps its last finite
    state."""
    final_score: float | None = None
    best_score: float | None = None
    active: bool = True


@dataclasses.dataclass(frozen=True)
class RunStatus:
    step: int
    steps: int
    seeds: dict[int, SeedStatus]

    @property
    def finished(self) -> bool:
        """At its last step, or every seed stopped."""
        return self.finished_for(self.steps)

    def finished_for(self, steps: int) -> bool:
        """At `steps` (a larger value than the run's makes a finished run resumable), or
        every seed stopped."""
        return self.step >= steps or (bool(self.seeds) and not any(
            s.active for s in self.seeds.values()))


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def seed_status(entry: dict[str, Any]) -> SeedStatus:
    """One seed's entry of status.json, in the current or the pre-prediction layout."""
    active = bool(entry.get("active", True))
    if "predicted_at" in entry or "stopped_at" in entry:
        predicted, reason = entry.get("predicted_at"), entry.get("predicted_reason")
        stopped = entry.get("stopped_at")
    else:  # before: `verdict_step` (its q_explode clause fired after the fact)
        reason = entry.get("verdict_reason")
        predicted = entry.get("verdict_step") if reason != "q_explode" else None
        reason = reason if predicted is not None else None
        stopped = None if active else entry.get("diverged_at")
    return SeedStatus(_int(predicted), reason, _int(entry.get("diverged_at")), _int(stopped),
                      entry.get("final_score"), entry.get("best_score"), active)


def read_status(run_dir: str | pathlib.Path) -> RunStatus | None:
    """RUN/status.json as a RunStatus; None when there is none (or it is unreadable)."""
    path = pathlib.Path(run_dir) / "status.json"
    try:
        raw = json.loads(path.read_text())
        return RunStatus(int(raw["step"]), int(raw["steps"]),
                         {int(k): seed_status(v) for k, v in raw["seeds"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- what a run scored: metrics.jsonl with status.json ----------------------------------------
@dataclasses.dataclass(frozen=True)
class SeedResult:
    """One seed's outcome, for reports."""

    score: float | None
    """Mean normalised score of its last `last` evaluations (None: never evaluated)."""
    evaluations: int
    """How many evaluations that mean is over (fewer than `last` in a short run)."""
    stopped: bool
    """Stopped at its Q bound: its evaluations after that are of its last finite state
    (logged with `"stopped": true`) and are kept."""
    diverged_at: int | None
    """|mean Q| passed the ceiling max|r|/(1 − γ) (or went non-finite) at this step."""
    seem_final: float | None
    """The last normalised SEEM it measured."""


def read_results(run_dir: str | pathlib.Path, last: int) -> dict[int, SeedResult]:
    """Per seed of RUN: the mean of its last `last` evaluations (`eval/normalized_score`
    rows of metrics.jsonl), its stop and divergence, its last SEEM. Empty without status.json.
    A row repeated for a (seed, step) (a resume re-logging a step) counts once, the last."""
    from seemrl.logging import read_jsonl

    run_dir = pathlib.Path(run_dir)
    status = read_status(run_dir)
    if status is None:
        return {}
    evals: dict[int, dict[int, float]] = {s: {} for s in status.seeds}
    seem: dict[int, dict[int, float]] = {s: {} for s in status.seeds}
    stopped_rows: set[int] = set()
    path = run_dir / "metrics.jsonl"
    for rec in read_jsonl(path) if path.is_file() else []:
        seed = rec.get("seed")
        if seed not in evals:
            continue
        if rec.get("eval/normalized_score") is not None:
            evals[seed][rec["step"]] = float(rec["eval/normalized_score"])
        if rec.get("seem/normalized") is not None:
            seem[seed][rec["step"]] = float(rec["seem/normalized"])
        if rec.get("stopped"):
            stopped_rows.add(seed)
    out = {}
    for seed, st in status.seeds.items():
        kept = [evals[seed][k] for k in sorted(evals[seed])][-last:]
        out[seed] = SeedResult(
            score=float(sum(kept) / len(kept)) if kept else None, evaluations=len(kept),
            stopped=st.stopped_at is not None or seed in stopped_rows,
            diverged_at=st.diverged_at,
            seem_final=seem[seed][max(seem[seed])] if seem[seed] else None)
    return out


def training_seconds(run_dir: str | pathlib.Path) -> float:
    """Seconds RUN spent in its training chunks: Σ over its logged chunks of the steps since
    the previous row / `time/steps_per_sec` (one seed's rows: the seeds train side by side).
    Evaluation rollouts, SEEM measurements and start-up are not in it: a lower bound on the
    run's wall time."""
    from seemrl.logging import read_jsonl

    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0.0
    rows: dict[int, float] = {}
    first_seed = None
    for rec in read_jsonl(path):
        if first_seed is None and "seed" in rec:
            first_seed = rec["seed"]
        if rec.get("seed") == first_seed and rec.get("time/steps_per_sec"):
            rows[int(rec["step"])] = float(rec["time/steps_per_sec"])
    seconds, prev = 0.0, 0
    for step in sorted(rows):
        seconds += (step - prev) / rows[step]
        prev = step
    return seconds
