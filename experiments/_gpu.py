"""What the GPU scripts share: train a repro experiment's runs within a time budget, then
write OUT/results.json saying what ran, on what, and which runs finished.

A GPU machine is lent for minutes at a time, so a script trains until `budget_s`, then sends
itself SIGINT: the trainer saves a checkpoint, the sweep stops, and the next call (the same
command) skips the finished runs and resumes the others.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from seemrl import runfolder
from seemrl.repro._common import Context
from seemrl.sweep import RunSpec


def add_arguments(p, out: str, out_help: str) -> None:
    """The flags every GPU script takes: --out, --data-dir, --smoke, --seeds, --budget-s."""
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(out), help=out_help)
    p.add_argument("--data-dir", type=pathlib.Path, help="dataset folder (default seemrl's)")
    p.add_argument("--smoke", action="store_true", help="tiny runs on the CPU (a check)")
    p.add_argument("--seeds", type=int, help="seeds per run (default 10; fewer if they do "
                   "not fit the GPU's memory)")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="interrupt training after this many seconds (default 540)")


def train_within(ctx: Context, specs: Sequence[RunSpec], budget_s: float) -> bool:
    """Trains `specs` into ctx.out/runs until done or `budget_s` seconds; True if cut short."""
    timer = threading.Timer(budget_s, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        ctx.train(specs)
    except KeyboardInterrupt:
        return True
    finally:
        timer.cancel()
    return False


def write_record(out: pathlib.Path, command: str, specs: Sequence[RunSpec],
                 params: dict[str, Any], started: float, interrupted: bool,
                 **extra: Any) -> dict[str, Any]:
    """OUT/results.json (written atomically): the command, the device, this call's seconds,
    the finished and pending runs, the parameters and `extra`; returned as well."""
    import jax

    runs = {s.name: runfolder.read_status(out / "runs" / s.name) for s in specs}
    record = {"command": command, "device": jax.devices()[0].device_kind,
              "backend": jax.default_backend(),
              "seconds_this_call": time.perf_counter() - started, "interrupted": interrupted,
              "finished": sorted(n for n, s in runs.items() if s and s.finished),
              "pending": sorted(n for n, s in runs.items() if not (s and s.finished)),
              "params": params, **extra}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / "results.json")
    print(f"{len(record['finished'])} of {len(runs)} runs finished; {out / 'results.json'}")
    return record
