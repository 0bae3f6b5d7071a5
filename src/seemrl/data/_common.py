"""Shared pieces of the dataset readers: checks, the D4RL "q-learning" view, atomic writes.

Every reader (D4RL HDF5, npz, Minari) turns its file into a dict of raw arrays and hands it
to `from_arrays`, so the checks and the transition semantics live in one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from seemrl.types import DataError, Dataset, WriteError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
# Stored under these names; everything else in a file is ignored or goes into metadata.
ARRAY_KEYS = REQUIRED_KEYS + ("next_observations", "timeouts")
# Metadata that describes how a file was read, not the data; recomputed on every load.
READ_FACTS = ("source", "format", "next_observations", "dropped_rows")


def first_bad_row(array: np.ndarray) -> int | None:
    """Index of the first row holding a NaN or Inf, or None if all entries are finite."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    finite = np.isfinite(array)
    if finite.all():
        return None
    rows = finite.reshape(len(array), -1).all(axis=1)
    return int(np.argmin(rows))


def check_finite(arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Raises DataError naming the field and first bad row if any array holds NaN/Inf."""
    for name, array in arrays.items():
        row = first_bad_row(np.asarray(array))
        if row is not None:
            raise DataError(f"{source}: field '{name}' has NaN/Inf at row {row} (first bad row)")


def _column(array: np.ndarray, name: str, source: str) -> np.ndarray:
    """(N,) or (N, 1) -> (N,); D4RL files use both layouts for rewards/terminals/timeouts."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"{source}: key '{name}' must have shape (N,) or (N, 1), got {array.shape}")
    return array


def _matrix(array: np.ndarray, name: str, source: str) -> np.ndarray:
    """(N,) -> (N, 1) for 1-D actions/observations; anything above 2-D is unsupported."""
    array = np.asarray(array)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(
            f"{source}: key '{name}' must have shape (N, dim), got {array.shape} "
            "(image or nested observations are not supported)")
    return array.astype(np.float32, copy=False)


def from_arrays(
    arrays: Mapping[str, np.ndarray],
    source: str,
    metadata: Mapping[str, Any] | None = None,
    episode_ends: np.ndarray | None = None,
) -> Dataset:
    """Builds a `Dataset` from D4RL-named raw arrays, with D4RL's "q-learning" semantics.

    With `next_observations` present every row is a valid transition and is kept, timeouts
    included (truncation is not termination, so their bootstrap stays). Without it the next
    observation is `observations[i + 1]`; rows flagged `timeouts` are then dropped (their
    successor is the first state of the next episode), and so is the file's last row unless it
    is terminal (a terminal's bootstrap is cut, so its next observation is never used).

    `episode_ends` = terminal | timeout | a break in the data (the next kept row does not start
    where this one ended) | the last row; `episode_ends` passed in (known episode boundaries,
    e.g. Minari's) are OR-ed in.

    Args:
      arrays: observations (N, obs_dim), actions (N, act_dim), rewards (N,) or (N, 1),
        terminals (N,) or (N, 1); optional next_observations (N, obs_dim), timeouts (N,).
      source: file name used in error messages.
      metadata: stored as `Dataset.metadata` (plus `next_observations`: "stored"/"derived").
      episode_ends: optional (N,) bool of known episode ends.

    Raises:
      DataError: a missing key, a length or shape mismatch, or NaN/Inf, naming `source`.
    """
    for key in REQUIRED_KEYS:
        if key not in arrays:
            raise DataError(f"{source}: missing key '{key}'")
    n = len(arrays["observations"])
    for key in ARRAY_KEYS:
        if key in arrays and len(arrays[key]) != n:
            raise DataError(
                f"{source}: key '{key}' has {len(arrays[key])} rows, 'observations' has {n}")
    if n == 0:
        raise DataError(f"{source}: dataset has no transitions")
    for key in ARRAY_KEYS:  # strings would fail (or worse, parse) in the casts below
        if key in arrays and np.asarray(arrays[key]).dtype.kind not in "biuf":
            raise DataError(f"{source}: key '{key}' holds {np.asarray(arrays[key]).dtype} "
                            "values, not numbers")
    # Row numbers in error messages refer to the file, so check before dropping rows.
    check_finite({k: np.asarray(arrays[k]) for k in ARRAY_KEYS if k in arrays}, source)

    obs = _matrix(arrays["observations"], "observations", source)
    act = _matrix(arrays["actions"], "actions", source)
    rew = _column(arrays["rewards"], "rewards", source).astype(np.float32)
    term = _column(arrays["terminals"], "terminals", source).astype(bool)
    if "timeouts" in arrays:
        timeout = _column(arrays["timeouts"], "timeouts", source).astype(bool)
    else:
        timeout = np.zeros(n, bool)
    given_ends = (np.zeros(n, bool) if episode_ends is None
                  else np.asarray(episode_ends, bool).reshape(n))

    if "next_observations" in arrays:
        next_obs = _matrix(arrays["next_observations"], "next_observations", source)
        if next_obs.shape != obs.shape:
            raise DataError(f"{source}: key 'next_observations' has shape {next_obs.shape}, "
                            f"'observations' has {obs.shape}")
        keep = np.arange(n)
        derived = False
    else:
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        # A terminal row keeps even when flagged timeout: its next observation is never used.
        valid = ~timeout | term
        valid[-1] = term[-1]
        keep = np.flatnonzero(valid)
        if len(keep) == 0:
            raise DataError(f"{source}: no valid transitions (every row is a timeout "
                            "or the file has one row)")
        timeout = np.zeros(n, bool)  # the kept rows are never truncations
        derived = True

    obs, act, rew, next_obs = obs[keep], act[keep], rew[keep], next_obs[keep]
    term, timeout, given_ends = term[keep], timeout[keep], given_ends[keep]
    ends = term | timeout | given_ends
    # A break: the next kept row is not this row's successor, or starts elsewhere.
    ends[:-1] |= np.diff(keep) != 1
    ends[:-1] |= np.any(obs[1:] != next_obs[:-1], axis=1)
    ends[-1] = True

    meta = dict(metadata or {})
    meta["next_observations"] = "derived" if derived else "stored"
    if derived:
        meta["dropped_rows"] = int(n - len(keep))
    try:
        return Dataset(
            observations=obs, actions=act, rewards=rew, next_observations=next_obs,
            terminals=term.astype(np.float32), timeouts=timeout, episode_ends=ends,
            metadata=meta)
    except DataError as e:
        raise DataError(f"{source}: {e}") from None


def to_python(value: Any) -> Any:
    """HDF5/NumPy metadata value -> JSON-friendly Python (bytes -> str, numpy scalar -> item)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return to_python(value[()])
        return [to_python(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return to_python(value.item())
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    return value


def normalise_metadata(meta: dict[str, Any], source: str) -> dict[str, Any]:
    """Types the well-known keys: reference scores as float, env id as str."""
    for alias in ("env_name", "env"):
        if "env_id" not in meta and isinstance(meta.get(alias), str):
            meta["env_id"] = meta[alias]
    for key in ("ref_min_score", "ref_max_score"):
        if key in meta:
            try:
                meta[key] = float(meta[key])
            except (TypeError, ValueError):
                raise DataError(
                    f"{source}: metadata '{key}' must be a number, got {meta[key]!r}") from None
    return meta


def metadata_items(metadata: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs worth storing in a file: scalars and strings as they are, other
    JSON-able values as JSON strings. `READ_FACTS` are dropped."""
    for key, value in metadata.items():
        if key in READ_FACTS or value is None:
            continue
        value = to_python(value)
        if isinstance(value, (bool, int, float, str)):
            yield key, value
        else:
            try:
                yield key, json.dumps(value)
            except TypeError:
                continue


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[pathlib.Path]:
    """Yields a temporary path next to `path`; on success it replaces `path` atomically, so a
    crash mid-write never leaves a truncated file under the real name."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # disk full, read-only: one line naming the file (h5py's too)
        raise WriteError.of(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
