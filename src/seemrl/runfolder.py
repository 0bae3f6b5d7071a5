"""The run folder, owned in one place: its files, their layouts, and what they mean.

A run folder (`seemrl train --out DIR`, one run of a sweep) holds:

  config.json        the resolved config (`train` and `algo` sections) and facts about the
                     data (`seemrl.runconfig.RUN_INFO_KEYS`); reusable with --config
  normalizer.json    the state normalisation used in training and evaluation
  metrics.jsonl      one object per seed per log point
  status.json        per seed: prediction, divergence, stop, scores; the last step (`RunStatus`)
  checkpoint.msgpack all seeds' state at the last checkpoint (`seemrl.checkpoint`)
  error.txt          a sweep's traceback of the run's last failed attempt
  tensorboard/       with --tensorboard

The driver writes through `write_config`, `write_normalizer`, `write_status` and the metrics
path; every reader goes through `read_config`, `read_status`, `read_metrics`, `read_results`.
Folders from before today's layouts are migrated as they are read (`read_status` reads the
per seed `verdict_step` layout; `migrate_algo_section` fills options newer than the run).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any

from seemrl import checkpoint

CONFIG, NORMALIZER, METRICS, STATUS = ("config.json", "normalizer.json", "metrics.jsonl",
                                       "status.json")
ERROR, TENSORBOARD = "error.txt", "tensorboard"
PARTIAL_FILES = (CONFIG, NORMALIZER, METRICS, STATUS, TENSORBOARD, ERROR,
                 *(f"{name}.tmp" for name in (CONFIG, NORMALIZER, METRICS, STATUS,
                                              checkpoint.CHECKPOINT)))
"""What a run leaves before its first checkpoint (.tmp: killed mid-write): a folder holding
only these holds nothing that could be resumed, and a fresh start may clear it."""

SAVED_BEFORE_OPTION = {"init_scheme": "torch", "actor_log_std": "squash"}
"""Algorithm options newer than some saved run configs, with the value those runs were made
with."""


def path(run_dir: str | pathlib.Path, name: str) -> pathlib.Path:
    """RUN/<name>, for one of this module's file names."""
    return pathlib.Path(run_dir) / name


# -- config.json, normalizer.json -------------------------------------------------------------
def write_config(run_dir: str | pathlib.Path, config: dict[str, Any]) -> None:
    checkpoint.atomic_write_json(path(run_dir, CONFIG), config)


def read_config(run_dir: str | pathlib.Path) -> dict[str, Any] | None:
    """RUN/config.json as saved (no migration); None when there is none or it is unreadable."""
    try:
        raw = json.loads(path(run_dir, CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def migrate_algo_section(algo_section: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """A saved config's algo section with every option of `config_cls` it predates filled in
    with the value the run was made with (`SAVED_BEFORE_OPTION`)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {**{k: v for k, v in SAVED_BEFORE_OPTION.items() if k in names}, **algo_section}


def write_normalizer(run_dir: str | pathlib.Path, normalizer: dict[str, Any]) -> None:
    checkpoint.atomic_write_json(path(run_dir, NORMALIZER), normalizer)


def read_normalizer(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """RUN/normalizer.json; OSError or ValueError when it is missing or unreadable."""
    return json.loads(path(run_dir, NORMALIZER).read_text())


# -- metrics.jsonl ----------------------------------------------------------------------------
def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Every record of RUN/metrics.jsonl ([] when there is none yet)."""
    from seemrl.logging import read_jsonl

    metrics = path(run_dir, METRICS)
    return read_jsonl(metrics) if metrics.is_file() else []


# -- a fresh start ----------------------------------------------------------------------------
def holds_only_partial(run_dir: str | pathlib.Path) -> bool:
    """RUN is missing, empty or holds only what a run stopped before its first checkpoint left
    (`PARTIAL_FILES`): nothing in it could be resumed."""
    run_dir = pathlib.Path(run_dir)
    return not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} <= set(PARTIAL_FILES)


def clear_partial(run_dir: str | pathlib.Path) -> None:
    """Remove what a run stopped before its first checkpoint left (`PARTIAL_FILES`); the
    metrics log is appended to, so a fresh start needs them gone."""
    if not pathlib.Path(run_dir).is_dir():
        return
    for name in PARTIAL_FILES:
        shutil.rmtree(path(run_dir, name), ignore_errors=True)
        path(run_dir, name).unlink(missing_ok=True)


# -- status.json ------------------------------------------------------------------------------
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

    def to_dict(self) -> dict[str, Any]:
        """status.json's layout (seeds keyed by their number as a string)."""
        return {"step": self.step, "steps": self.steps,
                "seeds": {str(k): dataclasses.asdict(v) for k, v in self.seeds.items()}}


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


def write_status(run_dir: str | pathlib.Path, status: RunStatus) -> None:
    """RUN/status.json, atomically (the driver's, at every log point)."""
    checkpoint.atomic_write_json(path(run_dir, STATUS), status.to_dict())


def read_status(run_dir: str | pathlib.Path) -> RunStatus | None:
    """RUN/status.json as a RunStatus; None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(path(run_dir, STATUS).read_text())
        return RunStatus(int(raw["step"]), int(raw["steps"]),
                         {int(k): seed_status(v) for k, v in raw["seeds"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_finished(run_dir: str | pathlib.Path, steps: int | None = None) -> bool:
    """RUN reached its last step (or `steps`, when given: a larger value makes a finished run
    resumable), or every seed stopped."""
    status = read_status(run_dir)
    return status is not None and status.finished_for(status.steps if steps is None else steps)


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder's config.json, status.json and metrics.jsonl, read together."""

    path: pathlib.Path
    config: dict[str, Any]
    status: RunStatus
    metrics: list[dict[str, Any]]


def read_run(run_dir: str | pathlib.Path) -> Run:
    """RUN's config, status and metrics; FileNotFoundError naming the file when config.json or
    status.json is missing or unreadable (a run that never started)."""
    run_dir = pathlib.Path(run_dir)
    config, status = read_config(run_dir), read_status(run_dir)
    for name, value in ((CONFIG, config), (STATUS, status)):
        if value is None:
            raise FileNotFoundError(f"{run_dir / name} is missing or unreadable")
    assert config is not None and status is not None
    return Run(run_dir, config, status, read_metrics(run_dir))


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
    status = read_status(run_dir)
    if status is None:
        return {}
    evals: dict[int, dict[int, float]] = {s: {} for s in status.seeds}
    seem: dict[int, dict[int, float]] = {s: {} for s in status.seeds}
    stopped_rows: set[int] = set()
    for rec in read_metrics(run_dir):
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
    rows: dict[int, float] = {}
    first_seed = None
    for rec in read_metrics(run_dir):
        if first_seed is None and "seed" in rec:
            first_seed = rec["seed"]
        if rec.get("seed") == first_seed and rec.get("time/steps_per_sec"):
            rows[int(rec["step"])] = float(rec["time/steps_per_sec"])
    seconds, prev = 0.0, 0
    for step in sorted(rows):
        seconds += (step - prev) / rows[step]
        prev = step
    return seconds
