"""`seemrl` that SIGKILLs itself at one chosen point of a training run (for test_faults.py).

    python tests/kill_at.py SITE VARIANT STEP -- seemrl-arguments...

The process kills itself at the first SITE event at or after training step STEP:
  log        VARIANT before: before metrics.jsonl is written; torn: after half of the
             chunk's lines (the last one cut in the middle) reached the file.
  status     VARIANT tmp: status.json.tmp half-written; renamed: status.json.tmp whole,
             before its rename; after: after the rename.
  checkpoint the same variants for checkpoint.msgpack.
  eval       VARIANT before / after: before or after the rollouts of an evaluation.
  none       never (the uninterrupted run).
SIGKILL leaves no chance to clean up: what is on disk is what a power cut would leave.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(site: str, variant: str, at_step: int) -> None:
    from seemrl import checkpoint, evaluation
    from seemrl import logging as log_lib
    from seemrl.train import Trainer

    now = {"step": 0}  # the step of the write or evaluation under way

    if site == "log":
        original_log = log_lib.JsonlLogger.log

        def log(self, records):
            records = list(records)
            if isinstance(self, log_lib.JsonlLogger) and records[0]["step"] >= at_step:
                if variant == "torn":
                    self._file = _Torn(self._file)
                else:
                    _die()
            return original_log(self, records)

        log_lib.JsonlLogger.log = log

    if site in ("status", "checkpoint"):
        original_save, original_write = checkpoint.save, checkpoint.atomic_write_bytes

        def save(run_dir, state, meta):
            now["step"] = meta["step"]
            return original_save(run_dir, state, meta)

        def atomic_write_bytes(path, data):
            path = pathlib.Path(path)
            name = "checkpoint.msgpack" if site == "checkpoint" else "status.json"
            if site == "status" and path.name == name:
                import json

                now["step"] = json.loads(data)["step"]
            if path.name != name or now["step"] < at_step:
                return original_write(path, data)
            tmp = path.with_name(path.name + ".tmp")
            if variant == "tmp":
                tmp.write_bytes(data[: len(data) // 2])
                _die()
            if variant == "renamed":
                tmp.write_bytes(data)
                _die()
            original_write(path, data)
            _die()

        checkpoint.save, checkpoint.atomic_write_bytes = save, atomic_write_bytes

    if site == "eval":
        original_evaluate = evaluation.evaluate

        def evaluate(*args, **kwargs):
            if now["step"] >= at_step and variant == "before":
                _die()
            result = original_evaluate(*args, **kwargs)
            if now["step"] >= at_step:
                _die()
            return result

        original_run_evaluate = Trainer.evaluate

        def trainer_evaluate(self):
            now["step"] = self.step
            return original_run_evaluate(self)

        evaluation.evaluate, Trainer.evaluate = evaluate, trainer_evaluate


class _Torn:
    """A file whose next write lands half (its last line cut), then the process dies."""

    def __init__(self, file):
        self._file = file

    def write(self, data: bytes) -> None:
        self._file.write(data[: len(data) // 2 + 1])
        self._file.flush()
        _die()

    def __getattr__(self, name):
        return getattr(self._file, name)


if __name__ == "__main__":
    site, variant, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    assert sys.argv[4] == "--"
    install(site, variant, step)
    sys.argv = ["seemrl", *sys.argv[5:]]
    from seemrl.cli import run

    run()
