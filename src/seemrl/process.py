"""Process plumbing: signals, the progress bar, exit codes and one-line errors.

What makes a long run behave as a job a scheduler can stop and a user can read: SIGTERM
stops it as Ctrl-C does (so it saves first), a save cannot be cut short by a second signal,
expected errors end in one line and exit code 2, a stopped command in 130 or 143.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import types
from collections.abc import Callable

from seemrl.types import SeemrlError, Terminated

USAGE_ERRORS = (SeemrlError, FileNotFoundError, NotADirectoryError, PermissionError,
                IsADirectoryError)
"""Expected failures (what the user gave, the state of their disk): one line and exit code 2.
Anything else keeps its traceback, so that a bug stays visible."""
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
"""OSErrors that come from the machine, never from a bug, wherever they are raised."""


TERMINATED_CODE, INTERRUPTED_CODE = 143, 130  # the shell's codes for SIGTERM and SIGINT


def stopped(e: KeyboardInterrupt) -> tuple[str, int]:
    """How a run was stopped, and the exit code."""
    if isinstance(e, Terminated):
        return "terminated", TERMINATED_CODE
    return "interrupted", INTERRUPTED_CODE


def one_line(e: BaseException) -> str:
    """The error in one line, as the CLI prints it."""
    text = str(e) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename:
        text = f"no such file: {e.filename}"
    elif isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        text = f"{e.filename or 'a file'}: {e.strerror or e}"
    return " ".join(text.split())


RESUME_RUN = "the last checkpoint is kept (continue with --resume RUN_DIR)"
RUN_AGAIN = ("run the same command again to continue (finished runs are skipped, started "
             "ones resume)")


def run_command(name: str, handler: Callable[[list[str]], int], argv: list[str],
                how_to_continue: str = RESUME_RUN) -> int:
    """`handler(argv)`'s exit code; an expected error (`USAGE_ERRORS`, a full or read-only
    disk) as one line `NAME: error: ...` and 2, a stop as a line saying how to go on
    (`how_to_continue`) and 130 or 143. Anything else keeps its traceback, so that a bug stays
    visible."""
    try:
        return handler(argv)
    except USAGE_ERRORS as e:
        print(f"{name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        print(f"{name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how, code = stopped(e)
        print(f"{name}: {how}; {how_to_continue}", file=sys.stderr)
        return code


def exit_with(code: int) -> None:
    """Leave the process with `code`.

    A command stopped by Ctrl-C or SIGTERM returns once it has saved, but the compiled chunk
    that was running when the signal came keeps going in XLA's threads, and the interpreter's
    exit waits for it: a whole log chunk (minutes for CQL or Diffusion-QL on a CPU) after the
    message said the run was saved, long enough for a scheduler to escalate to SIGKILL.
    Everything is written by then (logs closed, checkpoint and status written atomically),
    so a stopped command leaves at once.
    """
    if code in (TERMINATED_CODE, INTERRUPTED_CODE):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM stops training as Ctrl-C does, so the run is saved before the process exits.

    Python's default lets SIGTERM kill the process with the steps since the last checkpoint
    unsaved; a job scheduler preempting a run, or `kill` on a background run (whose SIGINT the
    shell ignores), is the common way such runs stop. Further SIGTERMs are ignored until the
    block ends, so a second one (schedulers signal every process of a job, a sweep forwards
    its own to its workers) cannot cut the save short. Only the main thread may set handlers.
    """
    caught = types.SimpleNamespace(sigterm=False)  # yielded: whether a SIGTERM arrived
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        caught.sigterm = True
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_ignored():
    """SIGINT and SIGTERM are ignored inside the block (main thread only), so a save that an
    interrupt started cannot be cut short by the next one: Ctrl-C pressed twice, a scheduler's
    SIGTERM after the user's Ctrl-C, or a second `ray.cancel` (its `_thread.interrupt_main`
    is a no-op while SIGINT is ignored). `sigterm_interrupts` covers only SIGTERM after
    SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = {s: h for s, h in previous.items() if h is not None}  # None: not set from Python
    for s in previous:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def progress_bar(enabled: bool, console):
    """A rich progress bar (fields `sps` and `info`), or one that shows nothing."""
    if not enabled:
        return _NoBar()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[sps]} steps/s"),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    transient=False)
