"""Behaviour data: the policies that act in the simulator and the datasets made from them.

seemrl cannot download D4RL or Minari here, so it makes its own offline datasets by rolling
out behaviour policies it trained itself. This package holds all of that, above the data
layer (which only loads and transforms files):

  sac.py         online SAC (jitted), which trained every behaviour policy
  policies/      the shipped locomotion policies (`policies.json` records how each was made)
  locomotion.py  hopper / walker2d / halfcheetah datasets at D4RL's levels
  files.py       the one naming, checksum and writing rule of every made dataset
  (this module)  the catalogue: every name seemrl can make, one `make_dataset`,
                 `resolve_builtin` (made on first use) and `list_datasets`

AntMaze's family lives in `seemrl.antmaze.data` beside its maze and controller; the catalogue
treats both families alike. A family module has `dataset_names`, `parse_name`,
`make_dataset`, `DEFAULT_SIZE` and `MAKE_OPTIONS`, and answers the catalogue's questions
`can_make(name)`, `policy_score(name)`, `data_score(summary)` and `stale(summary)`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from seemrl.behaviour import files
from seemrl.config import ConfigError
from seemrl.types import DataError

FAMILIES = ("seemrl.behaviour.locomotion", "seemrl.antmaze.data")
"""Modules of the dataset families, in the order `seemrl data list` shows them."""


def _families() -> list[ModuleType]:
    return [importlib.import_module(m) for m in FAMILIES]


def family(name: str) -> ModuleType | None:
    """The family module that knows dataset `name`, or None."""
    return next((f for f in _families() if f.parse_name(name) is not None), None)


def dataset_names() -> list[str]:
    """Every name seemrl can make, e.g. 'hopper-medium', 'antmaze-umaze'."""
    return [n for f in _families() for n in f.dataset_names()]


def dataset_path(name: str, data_dir: str | Path | None = None, size: int | None = None,
                 seed: int = 0) -> Path:
    """Where `make_dataset(name, size=size, seed=seed)` writes its HDF5 file."""
    fam = family(name)
    if fam is None:
        raise files.unknown(name, "dataset", dataset_names())
    return files.file_path(files.base_name(name), files.data_dir_or_default(data_dir),
                           fam.DEFAULT_SIZE if size is None else size, seed, fam.DEFAULT_SIZE)


def make_dataset(name: str, *, size: int | None = None, seed: int = 0,
                 data_dir: str | Path | None = None, fmt: str = "hdf5", progress: bool = True,
                 **options: Any) -> Path:
    """Makes dataset `name` under `data_dir` (default `files.default_data_dir()`); returns
    the HDF5 file or the Minari dataset's data directory. Same seed, same bytes.

    `options` belong to one family each (its `MAKE_OPTIONS`): `retrain=True` (locomotion:
    train the behaviour policies again first, hours), `controller=PATH` (AntMaze: another
    controller .npz than the shipped one). An option left at None or False is not given.

    Raises:
      DataError: an unknown name or format, an unwritable folder, no shipped policy.
      ConfigError: a size ≤ 0, or an option the name's family does not take.
    """
    fam = family(name)
    if fam is None:
        raise files.unknown(name, "dataset", dataset_names())
    if size is not None and size <= 0:
        raise ConfigError(f"--size must be positive, got {size}")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    for option in given:
        if option not in fam.MAKE_OPTIONS:
            takes = [f.dataset_names()[0] for f in _families() if option in f.MAKE_OPTIONS]
            where = f" (it is for datasets like {takes[0]})" if takes else ""
            raise ConfigError(f"--{option.replace('_', '-')} does not apply to {name}{where}")
    return fam.make_dataset(name, size=fam.DEFAULT_SIZE if size is None else size, seed=seed,
                            data_dir=data_dir, fmt=fmt, progress=progress, **given)


def resolve_builtin(name: str, data_dir: str | Path | None = None, *, size: int | None = None,
                    progress: bool = True, log: Callable[[str], None] | None = None
                    ) -> Path | None:
    """The HDF5 file of made dataset `name` (`size` transitions, default the family's), made
    on first use; `log` hears about it before the making starts.

    Returns None when `name` is not one of seemrl's datasets (the caller tries other sources).
    A file already on disk is reused after its checksum is verified; a warning says when it
    was made with behaviour policies that have changed since (the file is kept: runs already
    made on it stay comparable; `seemrl data make NAME` replaces it).
    """
    fam = family(name)
    if fam is None:
        return None
    data_dir = files.data_dir_or_default(data_dir)
    size = fam.DEFAULT_SIZE if size is None else size
    path = dataset_path(name, data_dir, size)
    if not path.exists():
        if log is not None:
            log(f"making dataset {name} ({size} transitions) in {data_dir}")
        return make_dataset(name, size=size, data_dir=data_dir, progress=progress)
    files.verify_checksum(path)
    changed = fam.stale(files.summary(path))
    if changed:
        print(f"warning: {path} was made with behaviour policies that have changed since "
              f"({', '.join(changed)}); using it as it is (`seemrl data make {name}` "
              "remakes it)", file=sys.stderr)
    return path


def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per known dataset (default size and seed) plus every other made variant.

    Row keys: name, can_make (its behaviour policy is shipped), policy_score (that policy's
    normalised score; AntMaze: the controller's success rate × 100 in that maze), on_disk, path,
    size_bytes, transitions, avg_return (of the data's complete episodes; AntMaze: its
    success rate × 100), stale (made with a behaviour policy that has changed since); the
    last four None when not on disk.
    """
    data_dir = files.data_dir_or_default(data_dir)
    rows = []
    for fam in _families():
        for name in fam.dataset_names():
            found = files.made_files(name, data_dir) or [dataset_path(name, data_dir)]
            for path in found:
                row = {"name": name, "can_make": fam.can_make(name),
                       "policy_score": fam.policy_score(name), "on_disk": path.exists(),
                       "path": str(path), "size_bytes": None, "transitions": None,
                       "avg_return": None, "stale": None}
                if path.exists():
                    info = files.summary(path)
                    row.update(size_bytes=path.stat().st_size,
                               transitions=info.get("transitions"),
                               avg_return=fam.data_score(info),
                               stale=bool(fam.stale(info)) if info else None)
                rows.append(row)
    return rows


__all__ = ["DataError", "dataset_names", "dataset_path", "family", "files", "list_datasets",
           "make_dataset", "resolve_builtin"]
