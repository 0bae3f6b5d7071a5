"""Checkpoints: the training-state pytree plus run metadata, in one atomically written file.

One file (msgpack) holds both so a crash can never leave state and metadata out of step.
Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the old one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from typing import Any

import flax.serialization
import jax
import numpy as np

from seemrl.config import ConfigError
from seemrl.types import RunError, WriteError

CHECKPOINT = "checkpoint.msgpack"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`path` holds `data` or what it held before, never part of it, whatever goes wrong.

    Raises:
      WriteError: the file could not be written (disk full, read-only, no permission); the
        temporary file is gone and `path` is as it was.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError.of(path, e) from e
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save(run_dir: str | os.PathLike, state, meta: dict[str, Any]) -> pathlib.Path:
    """Write `state` (any pytree of arrays) and JSON-able `meta` to run_dir/checkpoint.msgpack."""
    state_dict = flax.serialization.to_state_dict(jax.device_get(state))
    payload = {"state": state_dict, "meta": json.dumps(meta)}
    path = pathlib.Path(run_dir) / CHECKPOINT
    atomic_write_bytes(path, flax.serialization.msgpack_serialize(payload))
    return path


def load(run_dir: str | os.PathLike, target) -> tuple[Any, dict[str, Any]]:
    """Restore into the structure of `target` (a fresh state); returns (state, meta)."""
    path = pathlib.Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path.name})")
    payload, meta = _read(path)
    mismatch = f"the checkpoint in {run_dir} does not fit the networks of this run's config"
    saved = _paths(payload["state"])
    wanted = _paths(flax.serialization.to_state_dict(target))
    if saved != wanted:  # flax would silently drop parameters the target lacks
        extra, missing = sorted(saved - wanted), sorted(wanted - saved)
        raise ConfigError(f"{mismatch}: " + "; ".join(
            f"{what} {', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}"
            for what, paths in (("only there:", extra), ("only here:", missing)) if paths))
    try:
        state = flax.serialization.from_state_dict(target, payload["state"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{mismatch}: {e}") from None
    for (where, t), x in zip(jax.tree_util.tree_flatten_with_path(target)[0],
                             jax.tree.leaves(state), strict=True):
        if np.shape(t) != np.shape(x):
            raise ConfigError(f"{mismatch}: {jax.tree_util.keystr(where)} is "
                              f"{np.shape(x)} there, {np.shape(t)} here")
    state = jax.tree.map(lambda t, x: np.asarray(x, dtype=np.asarray(t).dtype), target, state)
    return state, meta


def _read(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payload and metadata of a checkpoint file; RunError when it is not one (truncated,
    overwritten, empty: a disk or a copy that failed, since seemrl's own writes are atomic)."""
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(payload["meta"])
        if not isinstance(payload.get("state"), dict) or not isinstance(meta, dict):
            raise ValueError("no training state in it")
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for a broken file
        reason = " ".join(str(e).split()) or type(e).__name__
        raise RunError(
            f"checkpoint {path} is unreadable ({reason}); seemrl keeps no earlier one, so the "
            f"run cannot continue: remove it and start the run again with `seemrl train "
            f"--config {path.parent / 'config.json'} --out {path.parent}`") from e
    return payload, meta


def _paths(tree, prefix: str = "") -> set[str]:
    """The "a/b/c" paths of the leaves of a nested state dict."""
    if isinstance(tree, dict) and tree:
        return set().union(*(_paths(v, f"{prefix}{k}/") for k, v in tree.items()))
    return {prefix.rstrip("/")}


def exists(run_dir: str | os.PathLike) -> bool:
    return (pathlib.Path(run_dir) / CHECKPOINT).is_file()
