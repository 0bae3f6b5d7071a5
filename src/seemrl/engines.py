"""Where a sweep's runs train: one after another in this process, in spawned worker
processes, or as Ray tasks. The bookkeeping (skip, resume, retry, sweep.json) is
`seemrl.sweep`'s: every engine calls its `task` (`sweep.run_with_retries`) per run and
reports each result to the sweep's `record`.
"""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import Callable, Sequence
from typing import Any

from seemrl import tables
from seemrl.config import ConfigError
from seemrl.types import Terminated

ENGINES = ("local", "ray")
CANCEL_WAIT_S = 300.0
"""How long an interrupted sweep waits for its cancelled Ray tasks to save their runs."""

Task = Callable[..., Any]
"""`sweep.run_with_retries(spec, out, retries, progress, console, seed_groups)`."""
Failed = Callable[[Any, str], Any]
"""The failed result of a run whose worker died, with this error."""


def run_here(task: Task, specs, out, record, retries, progress, console):
    """One run after another, in this process (with its progress bar)."""
    results = []
    for i, spec in enumerate(specs):
        if progress:
            tables.say(console, f"[bold][{i + 1}/{len(specs)}] {spec.name}[/bold]")
        record.update(i, outcome="running")
        try:
            result = task(spec, out, retries, progress=progress, console=console)
        except KeyboardInterrupt:
            record.update(i, outcome="interrupted")
            raise
        record.add(i, result)
        results.append(result)
    return results


def run_processes(task: Task, failed: Failed, specs, out, record, workers, retries, progress,
                  console):
    """`workers` runs at once, each in a spawned process (JAX is not fork-safe) with its
    share of the cores as seed groups."""
    import concurrent.futures as cf
    import multiprocessing

    _make_builtin_datasets(specs, console)  # once, here, not raced by the workers
    groups = max(1, (os.cpu_count() or 1) // workers)  # seed groups per run: cores shared
    results: list[Any | None] = [None] * len(specs)
    pool = cf.ProcessPoolExecutor(min(workers, len(specs)),
                                  mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(task, spec, str(out), retries, False, None, groups): i
                   for i, spec in enumerate(specs)}
        for done, fut in enumerate(cf.as_completed(futures), 1):
            i = futures[fut]
            results[i] = _gathered(fut.result, failed, specs[i])
            record.add(i, results[i])
            if progress:
                tables.say(console, tables.done_line(done, len(specs), results[i]))
    except KeyboardInterrupt as e:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        if isinstance(e, Terminated):  # Ctrl-C reaches the workers itself, SIGTERM may not
            for process in processes:
                process.terminate()  # SIGTERM: each worker saves its run and stops
        for fut in futures:
            fut.cancel()  # the runs not started
        cf.wait(futures)  # a started run's future ends once its worker has saved
        for process in processes:
            # Nothing is left to write, and a worker's own exit would wait for the chunk it
            # was computing when the signal came (a whole log chunk: minutes on a CPU).
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        for i, r in enumerate(results):
            if r is None:
                record.update(i, outcome="interrupted")
        raise
    pool.shutdown()
    return results


def run_ray(task: Task, failed: Failed, ray, specs, out, record, address, retries,
            cpus_per_run, progress, console):
    """Each run a Ray task, on the cluster at `address` or a local instance."""
    started = not ray.is_initialized()
    if not address:
        _make_builtin_datasets(specs, console)  # a local instance shares this disk
    if started:
        ray.init(**({"address": address} if address else {"include_dashboard": False}))
    remote = ray.remote(num_cpus=cpus_per_run, max_retries=retries)(_ray_task)
    cwd, out_abs = os.getcwd(), str(out.resolve())
    refs = {remote.remote(task, spec, out_abs, retries, cpus_per_run, cwd): i
            for i, spec in enumerate(specs)}
    results: list[Any | None] = [None] * len(specs)
    pending = list(refs)
    try:
        while pending:
            (ref,), pending = ray.wait(pending, num_returns=1)
            i = refs[ref]
            results[i] = _gathered(lambda ref=ref: ray.get(ref), failed, specs[i])
            record.add(i, results[i])
            if progress:
                tables.say(console, tables.done_line(len(specs) - len(pending), len(specs),
                                                     results[i]))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: its run saves itself
            record.update(refs[ref], outcome="interrupted")
        if pending:  # until they have saved
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
        raise
    finally:
        if started:
            ray.shutdown()
    return results


def _ray_task(task: Task, spec: Any, out: str, retries: int, seed_groups: int,
              cwd: str) -> Any:
    """A run as a Ray task: relative dataset paths mean what they meant to the driver.

    `ray.cancel` stops a running task by raising KeyboardInterrupt in it through Python's
    SIGINT handler, and does nothing where SIGINT is ignored. Ray's workers inherit that from
    the driver: a sweep started in the background by a shell script (`seemrl sweep ... &`)
    ignores SIGINT, so its cancelled tasks went on training until Ray was shut down, unsaved.
    The task puts Python's handler back first."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return task(spec, out, retries, seed_groups=seed_groups)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray engine needs Ray: pip install seemrl[ray]") from None
    return ray


def _gathered(get, failed: Failed, spec: Any) -> Any:
    """A worker's result, or a failed one when the worker itself died."""
    try:
        return get()
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a crashed worker is one failed run
        return failed(spec, f"worker died: {tables.one_line(e)}")


def _make_builtin_datasets(specs: Sequence[Any], console) -> None:
    """Make missing built-in datasets (e.g. 'hopper-medium') before runs use them at once."""
    names = {s.train["dataset"] for s in specs if isinstance(s.train.get("dataset"), str)}
    names = {n for n in names if "/" not in n and not pathlib.Path(n).exists()}
    if not names:
        return
    from seemrl import behaviour

    for name in sorted(names):
        if behaviour.family(name) is None:
            continue
        try:
            behaviour.resolve_builtin(name)
        except Exception as e:  # noqa: BLE001 - the runs that need it report it
            tables.say(console, f"[red]dataset {name}: {tables.one_line(e)}[/red]")
