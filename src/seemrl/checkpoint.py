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
    state = flax.serialization.from_state_dict(target, payload["state"])
    state = jax.tree.map(lambda t, x: np.asarray(x, dtype=np.asarray(t).dtype), target, state)
    return state, json.loads(payload["meta"])


def exists(run_dir: str | os.PathLike) -> bool:
    return (pathlib.Path(run_dir) / CHECKPOINT).is_file()
