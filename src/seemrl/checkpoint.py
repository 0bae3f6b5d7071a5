"""Checkpoints: the training-state pytree plus run metadata, in one atomically written file.

One file (msgpack) holds both so a crash can never leave state and metadata out of step.
Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the old one.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import flax.serialization
import jax
import numpy as np

from seemrl.config import ConfigError

CHECKPOINT = "checkpoint.msgpack"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    payload = flax.serialization.msgpack_restore(path.read_bytes())
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
    return state, json.loads(payload["meta"])


def _paths(tree, prefix: str = "") -> set[str]:
    """The "a/b/c" paths of the leaves of a nested state dict."""
    if isinstance(tree, dict) and tree:
        return set().union(*(_paths(v, f"{prefix}{k}/") for k, v in tree.items()))
    return {prefix.rstrip("/")}


def exists(run_dir: str | os.PathLike) -> bool:
    return (pathlib.Path(run_dir) / CHECKPOINT).is_file()
