"""D4RL-format HDF5 files: read into a `Dataset`, write one back.

Layout (D4RL, SPEC §6): top-level datasets `observations` (N, obs_dim), `actions`
(N, act_dim), `rewards`, `terminals`, `timeouts` ((N,) or (N, 1)), optional
`next_observations` (absent in AntMaze files), and groups `infos/*` (ignored) and
`metadata/*` (scalars and strings kept as `Dataset.metadata`; D4RL stores e.g.
`metadata/algorithm` and the behaviour policy's weights there, which are skipped).
D4RL itself keeps reference scores in Python tables, not in the files; files that carry
`metadata/ref_min_score`, `metadata/ref_max_score` or `metadata/env_id` have them read.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from seemrl.data._common import (
    ARRAY_KEYS,
    atomic_path,
    from_arrays,
    metadata_items,
    normalise_metadata,
    to_python,
)
from seemrl.types import DataError, Dataset


def _read_metadata(f: h5py.File) -> dict[str, Any]:
    """Scalars and strings from root attributes and the `metadata` group (attributes and
    datasets, nested names joined with '/'). Arrays are skipped: D4RL puts policy weights
    there, which are neither small nor facts about the data."""
    meta: dict[str, Any] = {}

    def keep(name: str, value: Any) -> None:
        value = to_python(value)
        if isinstance(value, (bool, int, float, str)):
            meta[name] = value

    for name, value in f.attrs.items():
        keep(name, value)
    group = f.get("metadata")
    if isinstance(group, h5py.Group):
        for name, value in group.attrs.items():
            keep(name, value)

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.shape == ():
                keep(name, obj[()])

        group.visititems(visit)
    return meta


def load_d4rl(path: str | os.PathLike[str]) -> Dataset:
    """Reads a D4RL-format HDF5 file in the "q-learning" view.

    With `next_observations` stored, every row is kept (timeouts are valid, non-terminal
    transitions). Without it (AntMaze), next obs = observations[i + 1] and timeout rows and the
    file's last row (unless terminal) are dropped, as D4RL's `qlearning_dataset` does.
    See `seemrl.data._common.from_arrays` for `episode_ends`.

    Args:
      path: the .hdf5/.h5 file.

    Returns:
      The dataset; `metadata` holds the file's scalar metadata plus `source` (absolute path),
      `name` (file stem unless the file names itself) and, when present, `env_id`,
      `ref_min_score`, `ref_max_score`.

    Raises:
      DataError: missing/unreadable file, missing key, length mismatch, NaN/Inf.
    """
    path = pathlib.Path(path).expanduser()
    source = str(path)
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        with h5py.File(path, "r") as f:
            arrays = {}
            for key in ARRAY_KEYS:
                if key in f:
                    if not isinstance(f[key], h5py.Dataset):
                        raise DataError(f"{source}: key '{key}' is a group, expected an array")
                    arrays[key] = f[key][()]
            meta = _read_metadata(f)
    except OSError as e:
        raise DataError(f"{source}: not a readable HDF5 file ({e})") from None
    meta = normalise_metadata(meta, source)
    meta.setdefault("name", path.stem)
    meta["source"] = str(path.resolve())
    meta["format"] = "d4rl"
    return from_arrays(arrays, source, meta)


def save_d4rl(
    path: str | os.PathLike[str],
    dataset: Dataset,
    extra_metadata: Mapping[str, Any] | None = None,
    infos: Mapping[str, np.ndarray] | None = None,
) -> pathlib.Path:
    """Writes `dataset` as a D4RL-format HDF5 file, atomically (tmp file + rename).

    Keys: observations, actions, next_observations (N, dim) float32; rewards (N,) float32;
    terminals, timeouts (N,) bool; a `metadata` group of scalar/string datasets (other
    JSON-able values as JSON strings). Because next_observations is written, `load_d4rl`
    keeps every row and recovers the episode boundaries from terminals, timeouts and breaks.

    Args:
      path: destination file (parents are created).
      dataset: what to write.
      extra_metadata: merged over `dataset.metadata` (e.g. `env_id`, `ref_min_score`).
      infos: per-row arrays written as `infos/<key>` (e.g. AntMaze's goal, qpos, qvel).

    Returns:
      The path written.
    """
    path = pathlib.Path(path).expanduser()
    meta = {**dataset.metadata, **(extra_metadata or {})}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observations", data=dataset.observations.astype(np.float32))
            f.create_dataset("actions", data=dataset.actions.astype(np.float32))
            f.create_dataset("rewards", data=dataset.rewards.astype(np.float32))
            f.create_dataset("next_observations",
                             data=dataset.next_observations.astype(np.float32))
            f.create_dataset("terminals", data=dataset.terminals.astype(bool))
            f.create_dataset("timeouts", data=dataset.timeouts.astype(bool))
            for key, value in (infos or {}).items():
                f.create_dataset(f"infos/{key}", data=value)
            group = f.create_group("metadata")
            for key, value in metadata_items(meta):
                group.create_dataset(key, data=value)
    return path
