"""`.npz` datasets with D4RL's field names.

Arrays: observations (N, obs_dim), actions (N, act_dim), rewards (N,) or (N, 1),
terminals (N,) or (N, 1), optional timeouts, optional next_observations (derived from
observations[i + 1] as in D4RL when absent). Metadata, if any, is a JSON object stored as
the 0-d string array `metadata`. Files are read with `allow_pickle=False`: an npz from an
untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np

from seemrl.data._common import (
    ARRAY_KEYS,
    READ_FACTS,
    atomic_path,
    from_arrays,
    normalise_metadata,
    to_python,
)
from seemrl.types import DataError, Dataset


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Reads an .npz dataset (same semantics as `load_d4rl`).

    Args:
      path: the .npz file.

    Returns:
      The dataset, with `source` (absolute path), `name` (file stem unless stored) and any
      stored metadata in `metadata`.

    Raises:
      DataError: missing/unreadable file, missing key, length mismatch, NaN/Inf.
    """
    path = pathlib.Path(path).expanduser()
    source = str(path)
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in ARRAY_KEYS if key in f.files}
            raw_meta = str(f["metadata"][()]) if "metadata" in f.files else "{}"
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{source}: not a readable .npz file ({e})") from None
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError:
        raise DataError(f"{source}: key 'metadata' is not a JSON object") from None
    if not isinstance(meta, dict):
        raise DataError(f"{source}: key 'metadata' is not a JSON object")
    meta = normalise_metadata(meta, source)
    meta.setdefault("name", path.stem)
    meta["source"] = str(path.resolve())
    meta["format"] = "npz"
    return from_arrays(arrays, source, meta)


def save_npz(path: str | os.PathLike[str], dataset: Dataset) -> pathlib.Path:
    """Writes `dataset` as an uncompressed .npz, atomically (tmp file + rename).

    Writes observations, actions, next_observations (float32), rewards (float32), terminals,
    timeouts (bool) and the metadata as a JSON string, so `load_npz` gives the same arrays.

    Args:
      path: destination; ".npz" is not appended, the name is used as given.
      dataset: what to write.

    Returns:
      The path written.
    """
    path = pathlib.Path(path).expanduser()
    meta = {k: to_python(v) for k, v in dataset.metadata.items() if k not in READ_FACTS}
    # np.savez appends ".npz" to names without it; the suffix keeps the tmp name exact.
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            observations=dataset.observations.astype(np.float32),
            actions=dataset.actions.astype(np.float32),
            rewards=dataset.rewards.astype(np.float32),
            next_observations=dataset.next_observations.astype(np.float32),
            terminals=dataset.terminals.astype(bool),
            timeouts=dataset.timeouts.astype(bool),
            metadata=np.array(json.dumps(meta, default=str)),
        )
    return path
