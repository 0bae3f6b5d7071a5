"""Sweeps: a grid of training runs, each in its own run folder, resumable as a whole.

A grid (`seemrl.grid`) is datasets × algorithms × option values. Every grid point is one
run that trains all the sweep's seeds side by side (the efficient way on a CPU) into
`out/<name>`, where the name reads the point, e.g.
`hopper-medium_td3bc_fraction-0.1_layer_norm-true`::

    seemrl sweep --dataset hopper-medium walker2d-medium --algo td3bc iql \\
        --set layer_norm=true,false --set fraction=1,0.1 --seeds 0 1 2 --steps 10000 \\
        --out runs/sweep1

or from a grid file (`seemrl sweep --grid grid.yaml`; flags override it)::

    datasets: [hopper-medium, walker2d-medium]
    algos: [td3bc, iql]
    seeds: [0, 1, 2]
    grid: {layer_norm: [true, false], fraction: [1.0, 0.1]}  # every combination; in names
    fixed: {steps: 10000, eval_episodes: 5}                 # every run; not in names

Options are `seemrl train`'s (TrainConfig, or the algorithm's Config). One that only some of
the algorithms have applies to their runs and is left out of the others' runs and names; one
that none has is an error. Every run's options are validated before anything trains.

Re-launching the same sweep: a finished run (status.json at its last step, or every seed
diverged) is skipped; a started one resumes from its checkpoint (a larger `steps` extends
finished runs); one that stopped before its first checkpoint starts again in a clean folder.
A folder holding a run with other options is reported failed, never overwritten. A failing
run is retried `retries` times, then reported with its one-line error (error.txt keeps the
traceback) while the others go on. `out/sweep.json` records the specs and every run's
outcome, rewritten atomically as runs finish.

Engines (`seemrl.engines`): `local` trains one run at a time in this process (`workers=1`)
or `workers` runs at once in spawned processes (JAX is not fork-safe); `ray` sends each run
to Ray as a task, on the cluster at `address` or on a local instance (`pip install
seemrl[ray]`). This module keeps the bookkeeping; docs/SWEEPS.md has the details.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import json
import pathlib
import time
import traceback
from collections.abc import Sequence
from typing import Any

from seemrl import checkpoint, engines, process, runconfig, runfolder, tables
from seemrl.config import ConfigError
from seemrl.types import Terminated


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


# -- one run ----------------------------------------------------------------------------------
def read_status(run_dir: str | pathlib.Path) -> dict[str, Any] | None:
    """RUN's status.json in today's layout (`runfolder.RunStatus.to_dict`), or None."""
    status = runfolder.read_status(run_dir)
    return None if status is None else status.to_dict()


def validate(specs: Sequence[RunSpec]) -> None:
    """Every spec's options build; names distinct. ConfigError naming the run otherwise."""
    check_distinct(specs)
    for spec in specs:
        try:
            runconfig.build(spec.train, spec.algo)
        except ConfigError as e:
            raise ConfigError(f"run {spec.name}: {e}") from None


class ForeignRunError(ConfigError):
    """The run folder holds another run (or no run at all): it is left as it is."""


def run_one(spec: RunSpec, out: str | pathlib.Path, progress: bool = False,
            console=None, *, seed_groups: int = 0) -> RunResult:
    """Train one spec into out/<name> (skip if finished, resume if started); never raises
    for a failing run (the error is in the result), but Ctrl-C propagates.

    `seed_groups` is the run's seed groups when its spec does not set them (0: automatic);
    a resumed run keeps the ones it started with, so it continues exactly.
    """
    from seemrl.train import Trainer

    run_dir = pathlib.Path(out) / spec.name
    t0 = time.perf_counter()
    try:
        cfg = runconfig.build(spec.train, spec.algo)
        saved = runconfig.saved(run_dir)
        if saved is not None:
            _check_same_run(run_dir, saved, spec)
        if runfolder.is_finished(run_dir, cfg.train.steps):
            return RunResult(spec.name, str(run_dir), "skipped", read_status(run_dir))
        resume = checkpoint.exists(run_dir)
        if resume and saved is not None:
            cfg = runconfig.resumed(saved, *cfg.to_dict().values())
        elif not resume:
            _clear_partial(run_dir)  # JsonlLogger appends: a fresh start needs a clean folder
            if "seed_groups" not in spec.train:  # the engine's share of the cores
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(
                    cfg.train, seed_groups=seed_groups))
        status = Trainer(cfg.train, cfg.algo, run_dir).run(resume=resume, progress=progress,
                                                           console=console)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - reported per run, the sweep goes on
        if not isinstance(e, ForeignRunError):  # never write into another run's folder
            with contextlib.suppress(OSError):  # a full disk: the error is in the result
                run_dir.mkdir(parents=True, exist_ok=True)
                runfolder.path(run_dir, runfolder.ERROR).write_text(traceback.format_exc())
        known = None if isinstance(e, ForeignRunError) else read_status(run_dir)
        return RunResult(spec.name, str(run_dir), "failed", known, tables.one_line(e),
                         seconds=time.perf_counter() - t0)
    runfolder.path(run_dir, runfolder.ERROR).unlink(missing_ok=True)  # an earlier attempt's
    return RunResult(spec.name, str(run_dir), "finished", status,
                     seconds=time.perf_counter() - t0)


def run_with_retries(spec: RunSpec, out: str | pathlib.Path, retries: int = 1,
                     progress: bool = False, console=None, seed_groups: int = 0) -> RunResult:
    """`run_one`, tried again up to `retries` times while it fails."""
    t0 = time.perf_counter()
    for attempt in range(1 + retries):
        result = run_one(spec, out, progress=progress, console=console, seed_groups=seed_groups)
        result.attempts = attempt + 1
        if result.outcome != "failed":
            break
    result.seconds = time.perf_counter() - t0
    return result


# -- the sweep --------------------------------------------------------------------------------
def run_sweep(specs: Sequence[RunSpec], out: str | pathlib.Path, *, engine: str = "local",
              workers: int = 1, address: str | None = None, retries: int = 1,
              progress: bool = True, console=None, cpus_per_run: int = 1) -> list[RunResult]:
    """Train every spec into out/<spec.name>; returns one result per spec, in order.

    Args:
      engine: 'local' (this process, or `workers` spawned processes) or 'ray'.
      workers: local engine: runs trained at once, each in its own process.
      address: ray engine: the cluster to join (default: start a local instance).
      retries: a failing run is tried again this many times, then reported as failed.
      progress: a progress bar per run (workers=1) or a line per finished run.
      cpus_per_run: ray engine: CPUs each run's task reserves (also its seed groups).

    Raises:
      ConfigError: a bad option in any spec, duplicate names or a bad engine setting, before
        anything trains.
    """
    specs = list(specs)
    if engine not in engines.ENGINES:
        raise ConfigError(f"unknown sweep engine '{engine}' (choose local or ray)")
    if workers < 1 or retries < 0 or cpus_per_run < 1:
        raise ConfigError("workers and cpus_per_run must be >= 1, retries >= 0")
    validate(specs)
    ray = engines.import_ray() if engine == "ray" else None
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = SweepRecord(out, specs, engine=engine, workers=workers, address=address,
                         retries=retries)
    with process.sigterm_interrupts() as caught:  # SIGTERM stops the sweep as Ctrl-C does
        try:
            if ray is not None:
                return engines.run_ray(run_with_retries, _worker_died(out), ray, specs, out,
                                       record, address, retries, cpus_per_run, progress,
                                       console)
            if workers > 1 and len(specs) > 1:
                return engines.run_processes(run_with_retries, _worker_died(out), specs, out,
                                             record, workers, retries, progress, console)
            return engines.run_here(run_with_retries, specs, out, record, retries, progress,
                                    console)
        except KeyboardInterrupt as e:
            if caught.sigterm and not isinstance(e, Terminated):
                raise Terminated from e  # Ray's waits turn the handler's Terminated into this
            raise


class SweepRecord:
    """out/sweep.json: the sweep's settings, and each run's spec and outcome so far
    (pending, running, finished, skipped, failed, interrupted); rewritten atomically."""

    def __init__(self, out: pathlib.Path, specs: Sequence[RunSpec], **settings):
        self.path = out / "sweep.json"
        self.data: dict[str, Any] = {
            "settings": settings, "started": _now(), "updated": _now(), "runs": [
            {"name": s.name, "train": s.train, "algo": s.algo, "outcome": "pending"}
            for s in specs]}
        self._write()

    def update(self, i: int, **fields) -> None:
        self.data["runs"][i].update(fields)
        self.data["updated"] = _now()
        self._write()

    def add(self, i: int, result: RunResult) -> None:
        self.update(i, outcome=result.outcome, error=result.error, attempts=result.attempts,
                    seconds=round(result.seconds, 1), run_dir=result.run_dir)

    def _write(self) -> None:
        checkpoint.atomic_write_json(self.path, json.loads(json.dumps(self.data, default=str)))


def print_plan(specs: Sequence[RunSpec], out, console=None) -> None:
    """The runs a sweep would train (and which are finished already), without training."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out}: {len(specs)} runs")
    table.add_column("run", overflow="fold")
    for col in ("dataset", "algo", "seeds", "steps", "folder"):
        table.add_column(col)
    for s in specs:
        cfg = runconfig.build(s.train, s.algo).train
        run_dir = pathlib.Path(out) / s.name
        saved, state = runconfig.saved(run_dir), ""
        if saved is not None:
            try:
                _check_same_run(run_dir, saved, s)
                state = "finished" if runfolder.is_finished(run_dir, cfg.steps) else "started"
            except ForeignRunError:
                state = "[red]another run[/red]"
        table.add_row(s.name, cfg.dataset, cfg.algo, " ".join(map(str, cfg.seeds)),
                      str(cfg.steps), state)
    (console or Console()).print(table)


# -- helpers ----------------------------------------------------------------------------------
def check_distinct(specs: Sequence[RunSpec]) -> None:
    counts = collections.Counter(s.name for s in specs)
    twice = sorted(name for name, n in counts.items() if n > 1)
    if twice:
        raise ConfigError(f"sweep run names must be distinct: {', '.join(twice)} "
                          "(two datasets with the same file name?)")


def _check_same_run(run_dir, saved: tuple[dict, dict], spec: RunSpec) -> None:
    """Raise if run_dir holds another run: the spec's options (defaults included) differ
    beyond what a resume may change (`runconfig.changed_on_resume`)."""
    now = runconfig.build(spec.train, spec.algo).to_dict()
    changed = runconfig.changed_on_resume(saved, now["train"], now["algo"])
    if changed:
        raise ForeignRunError(f"{run_dir} holds a run with other {', '.join(changed)}: remove "
                              "it or choose another --out")


def _clear_partial(run_dir: pathlib.Path) -> None:
    """Remove what a run that stopped before its first checkpoint left behind; a folder that
    holds anything else is not touched."""
    if not runfolder.holds_only_partial(run_dir):
        raise ForeignRunError(f"{run_dir} exists and is not a seemrl run folder: remove it "
                              "or choose another --out")
    runfolder.clear_partial(run_dir)


def _worker_died(out) -> engines.Failed:
    """The failed result of a run whose worker process or task died."""
    def failed(spec: RunSpec, error: str) -> RunResult:
        run_dir = pathlib.Path(out) / spec.name
        return RunResult(spec.name, str(run_dir), "failed", read_status(run_dir), error,
                         attempts=1)

    return failed


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")
