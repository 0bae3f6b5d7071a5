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
        return self.step >= self.steps or (bool(self.seeds) and not any(
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
