"""Metric loggers: a small protocol with JSONL (always), TensorBoard and W&B adapters.

A record is one flat dict per seed per log point: `step`, `seed`, and namespaced keys such as
`train/q_mean` or `eval/normalized_score`. Non-finite floats are written as null in JSONL
(JSON has no NaN) — a diverged value is recorded by the run's status, not by the number.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
from collections.abc import Iterable
from typing import Any, Protocol

from seemrl.types import WriteError


class Logger(Protocol):
    def log(self, records: Iterable[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlLogger:
    """Appends one JSON object per record to `path`, flushed at every call.

    A call that cannot write (disk full, read-only) raises WriteError and leaves the file as it
    was before the call: whole lines only, none of that call's records.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        try:
            self._file = self.path.open("ab")
        except OSError as e:
            raise WriteError.of(self.path, e) from e

    def log(self, records: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n"
                       for record in records)
        size = os.fstat(self._file.fileno()).st_size
        try:
            self._file.write(text.encode())
            self._file.flush()
        except OSError as e:
            with contextlib.suppress(OSError):
                self._file.close()  # drops what the failed flush left in the buffer
            with contextlib.suppress(OSError):
                os.truncate(self.path, size)  # no torn line: it frees space, never needs it
            raise WriteError.of(self.path, e) from e

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl; a torn last line (a crash mid-write) is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_jsonl(path: str | os.PathLike, after_step: int) -> None:
    """Drop records with step > after_step (used on resume), atomically."""
    path = pathlib.Path(path)
    if not path.exists():
        return
    from seemrl.checkpoint import atomic_write_bytes

    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= after_step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


class TensorBoardLogger:
    """Scalars to TensorBoard event files, one folder per seed (needs seemrl[tensorboard])."""

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise ImportError("TensorBoard logging needs `pip install seemrl[tensorboard]`") \
                from None
        self._event, self._summary, self._writer_cls = Event, Summary, EventFileWriter
        self._dir = pathlib.Path(log_dir)
        self._writers: dict[int, Any] = {}

    def log(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            seed = int(record.get("seed", 0))
            if seed not in self._writers:
                self._writers[seed] = self._writer_cls(str(self._dir / f"seed_{seed}"))
            values = [self._summary.Value(tag=k, simple_value=float(v))
                      for k, v in record.items()
                      if "/" in k and isinstance(v, int | float) and v is not None]
            event = self._event(step=int(record["step"]), summary=self._summary(value=values))
            self._writers[seed].add_event(event)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


class WandbLogger:
    """Weights & Biases, one run per seed, grouped by run folder (needs seemrl[wandb])."""

    def __init__(self, project: str, group: str, config: dict[str, Any], seeds: Iterable[int],
                 mode: str | None = None):
        try:
            import wandb
        except ImportError:
            raise ImportError("W&B logging needs `pip install seemrl[wandb]`") from None
        self._runs = {s: wandb.init(project=project, group=group, name=f"{group}-seed{s}",
                                    config={**config, "seed": s}, mode=mode, reinit="create_new")
                      for s in seeds}

    def log(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            data = {k: v for k, v in r.items() if "/" in k}
            self._runs[int(r["seed"])].log(data, step=int(r["step"]))

    def close(self) -> None:
        for run in self._runs.values():
            run.finish()


class MultiLogger:
    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers

    def log(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        for logger in self.loggers:
            logger.log(records)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
