"""The files of seemrl's made datasets, one rule for every family (locomotion, AntMaze).

A made dataset is `<data_dir>/<stem>[-n<size>][-s<seed>].hdf5` in D4RL's format, with
`<file>.sha256` (its digest, checked on every use) and `<file>.json` (its metadata plus
transitions, digest and making time) beside it; or, with `fmt="minari"`, a local Minari
dataset `seemrl/<base>[-n<size>][-s<seed>]-v0` under `<data_dir>/minari`. Names given by users
may carry seemrl's prefix and version (`seemrl/hopper-medium-v0`); `base_name` drops them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seemrl.data._common import atomic_path
from seemrl.types import DataError, Dataset, WriteError

DATASET_VERSION = "v0"
FORMATS = ("hdf5", "minari")


def default_data_dir() -> Path:
    """$SEEMRL_DATA_DIR, else ~/.seemrl/datasets (the one place the variable is read)."""
    return Path(os.environ.get("SEEMRL_DATA_DIR") or "~/.seemrl/datasets").expanduser()


def data_dir_or_default(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def base_name(name: str) -> str:
    """'seemrl/hopper-medium-v0' or 'hopper-medium-v0' -> 'hopper-medium'."""
    return name.removeprefix("seemrl/").removesuffix(f"-{DATASET_VERSION}")


def unknown(name: str, what: str, names: list[str]) -> DataError:
    return DataError(f"unknown {what} '{name}'; seemrl can make: {', '.join(names)}")


def suffix(size: int, seed: int, default_size: int) -> str:
    """`-n<size>` and `-s<seed>` where they differ from the defaults (file names, Minari ids)."""
    return ("" if size == default_size else f"-n{size}") + ("" if seed == 0 else f"-s{seed}")


def file_path(base: str, data_dir: str | Path, size: int, seed: int, default_size: int) -> Path:
    """The one naming rule of seemrl's made datasets: `<base>-v0[-n<size>][-s<seed>].hdf5`,
    the suffixes only where size and seed differ from the defaults."""
    stem = f"{base}-{DATASET_VERSION}{suffix(size, seed, default_size)}"
    return Path(data_dir).expanduser() / f"{stem}.hdf5"


def made_files(base: str, data_dir: str | Path) -> list[Path]:
    """Every made variant (any size or seed) of dataset `base` in `data_dir`."""
    return sorted(Path(data_dir).expanduser().glob(f"{base}-{DATASET_VERSION}*.hdf5"))


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".seemrl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DataError(f"cannot write datasets to {directory}: {e.strerror or e}") from None


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format '{fmt}' ({' | '.join(FORMATS)})")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: str | Path) -> None:
    """Raises DataError when `path` does not match the `<path>.sha256` written beside it."""
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        raise DataError(f"no checksum file {side} beside {path}; remake the dataset")
    expected = side.read_text().split()[0]
    if sha256(path) != expected:
        raise DataError(f"checksum mismatch for {path} (corrupted or edited); delete it and "
                        "make the dataset again")


def summary(path: Path) -> dict[str, Any]:
    """The `<file>.json` written beside a made dataset ({} when there is none)."""
    side = path.with_name(path.name + ".json")
    return json.loads(side.read_text()) if side.exists() else {}


def quotas(size: int, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """(quota, first row) per environment of a made dataset: environment i contributes
    size // n_envs rows (+1 for the first size % n_envs), stored one after another."""
    quota = np.full(n_envs, size // n_envs) + (np.arange(n_envs) < size % n_envs)
    return quota, np.concatenate([[0], np.cumsum(quota)[:-1]])


def empty_columns(size: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """The `Dataset` columns a rollout fills, `size` rows of zeros."""
    return {"observations": np.zeros((size, obs_dim), np.float32),
            "actions": np.zeros((size, act_dim), np.float32),
            "rewards": np.zeros(size, np.float32),
            "next_observations": np.zeros((size, obs_dim), np.float32),
            "terminals": np.zeros(size, np.float32), "timeouts": np.zeros(size, bool),
            "episode_ends": np.zeros(size, bool)}


class progress_bar:
    """A rich progress bar (or nothing) yielding an `advance(n)` callback."""

    def __init__(self, show: bool, label: str, total: int):
        self.show, self.label, self.total = show, label, total

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.show:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("making {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeRemainingColumn(), transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.show:
            self.bar.stop()


def save_made(data: Dataset, base: str, data_dir: Path, *, size: int, seed: int,
              default_size: int, fmt: str, env_id: str, algorithm_name: str, started: float,
              infos: dict[str, Any] | None = None) -> Path:
    """Writes a made dataset (its metadata already in `data.metadata`) the one way every
    family does; returns the HDF5 file, or the Minari dataset's data directory.

    The checksum and summary are written after the file; if they cannot be, the file is
    removed too (a dataset without its checksum would be refused on use anyway).
    """
    meta = data.metadata
    if fmt == "minari":
        from seemrl.data.minari import save_minari

        return save_minari(f"seemrl/{base}{suffix(size, seed, default_size)}-{DATASET_VERSION}",
                           data, env_id, data_dir / "minari", algorithm_name=algorithm_name,
                           description=json.dumps(meta), ref_min_score=meta["ref_min_score"],
                           ref_max_score=meta["ref_max_score"], overwrite=True)
    from seemrl.data.d4rl import save_d4rl

    path = file_path(base, data_dir, size, seed, default_size)
    save_d4rl(path, data, meta, **({"infos": infos} if infos is not None else {}))
    digest = sha256(path)
    info = {**meta, "transitions": len(data), "sha256": digest, "path": str(path),
            "make_seconds": round(time.time() - started, 1)}
    try:
        for side, text in ((".sha256", f"{digest}  {path.name}\n"),
                           (".json", json.dumps(info, indent=1) + "\n")):
            with atomic_path(path.with_name(path.name + side)) as tmp:
                tmp.write_text(text)
    except WriteError:
        path.unlink(missing_ok=True)
        raise
    return path
