"""Sweeps: many training runs, each in its own run folder, resumable as a whole.

A sweep is a list of `RunSpec`s (a name, the `TrainConfig` options and the algorithm's
options). `run_sweep` trains each one into `out/<name>`:

* a run whose `status.json` says it reached its last step is skipped (re-launching a sweep
  only trains what is missing);
* a run that stopped part-way (interrupted, or a checkpoint left behind) is resumed;
* a run that raises is retried `retries` times, then reported as failed with its one-line
  error; the other runs go on.

Engines: `local` (the default) runs the runs one after another in this process, each training
its seeds side by side, or across `workers` processes; `ray` sends each run to a Ray cluster.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import traceback
from collections.abc import Sequence
from typing import Any

from seemrl.config import ConfigError


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: trained into `<sweep out>/<name>`."""

    name: str
    train: dict[str, Any]
    """`TrainConfig` options (dataset, algo, seeds, steps, ...)."""
    algo: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The algorithm's own options (its `Config` fields)."""

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"sweep run name {self.name!r} is not a folder name")


@dataclasses.dataclass
class RunResult:
    """What became of one run of a sweep."""

    name: str
    run_dir: str
    outcome: str
    """'finished' (trained now), 'skipped' (finished before) or 'failed'."""
    status: dict[str, Any] | None = None
    """The run's status.json (None when it failed before writing one)."""
    error: str | None = None
    attempts: int = 0
    seconds: float = 0.0


def read_status(run_dir: str | pathlib.Path) -> dict[str, Any] | None:
    path = pathlib.Path(run_dir) / "status.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_finished(run_dir: str | pathlib.Path) -> bool:
    """A run is finished when it reached its last step or every seed stopped (diverged)."""
    status = read_status(run_dir)
    if status is None:
        return False
    if status["step"] >= status["steps"]:
        return True
    return bool(status["seeds"]) and not any(s["active"] for s in status["seeds"].values())


def build_configs(spec: RunSpec):
    """(TrainConfig, algorithm Config) of a spec; ConfigError on unknown options."""
    from seemrl import algos
    from seemrl import config as config_lib
    from seemrl.train import TrainConfig

    train_cfg = config_lib.build(TrainConfig, spec.train)
    algo_cfg = config_lib.build(algos.get(train_cfg.algo).Config, spec.algo)
    return train_cfg, algo_cfg


def run_one(spec: RunSpec, out: str | pathlib.Path, progress: bool = False,
            console=None) -> RunResult:
    """Train one spec into out/<name> (skip if finished, resume if started); never raises
    for a failing run (the error is in the result), but Ctrl-C propagates."""
    from seemrl.train import Trainer

    run_dir = pathlib.Path(out) / spec.name
    t0 = time.perf_counter()
    if is_finished(run_dir):
        return RunResult(spec.name, str(run_dir), "skipped", read_status(run_dir))
    try:
        train_cfg, algo_cfg = build_configs(spec)
        resume = (run_dir / "checkpoint.msgpack").is_file()
        trainer = Trainer(train_cfg, algo_cfg, run_dir)
        status = trainer.run(resume=resume, progress=progress, console=console)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - reported per run, the sweep goes on
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        (pathlib.Path(out) / spec.name).mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        return RunResult(spec.name, str(run_dir), "failed", read_status(run_dir), error,
                         seconds=time.perf_counter() - t0)
    return RunResult(spec.name, str(run_dir), "finished", status,
                     seconds=time.perf_counter() - t0)


def run_sweep(specs: Sequence[RunSpec], out: str | pathlib.Path, *, engine: str = "local",
              workers: int = 1, address: str | None = None, retries: int = 1,
              progress: bool = True, console=None) -> list[RunResult]:
    """Train every spec into out/<spec.name>; returns one result per spec, in order."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("sweep run names must be distinct")
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown sweep engine '{engine}' (choose local or ray)")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in specs:
        result = None
        for attempt in range(1 + retries):
            result = run_one(spec, out, progress=progress, console=console)
            result.attempts = attempt + 1
            if result.outcome != "failed":
                break
        results.append(result)
    return results
