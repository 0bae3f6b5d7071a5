import json

import jax.numpy as jnp
import numpy as np
import pytest

from seemrl import checkpoint
from seemrl.config import ConfigError


def test_round_trip_keeps_dtypes_and_meta(tmp_path):
    state = {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
             "key": jnp.asarray([1, 2], jnp.uint32), "step": jnp.int32(7)}
    checkpoint.save(tmp_path, state, {"step": 7, "note": "x"})
    target = {"w": jnp.zeros((2, 3)), "key": jnp.zeros(2, jnp.uint32), "step": jnp.int32(0)}
    restored, meta = checkpoint.load(tmp_path, target)
    assert meta == {"step": 7, "note": "x"}
    for k in state:
        np.testing.assert_array_equal(restored[k], state[k])
        assert restored[k].dtype == np.asarray(state[k]).dtype


def test_overwrite_is_atomic_and_leaves_no_temp_file(tmp_path):
    checkpoint.save(tmp_path, {"w": jnp.ones(3)}, {"step": 1})
    checkpoint.save(tmp_path, {"w": jnp.full(3, 2.0)}, {"step": 2})
    restored, meta = checkpoint.load(tmp_path, {"w": jnp.zeros(3)})
    assert meta["step"] == 2 and float(restored["w"][0]) == 2.0
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT]


def test_missing_checkpoint(tmp_path):
    assert not checkpoint.exists(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path, {})


def test_a_checkpoint_of_other_networks_is_refused_by_name(tmp_path):
    """Other parameter names or other shapes (a config that no longer matches the run's
    networks) give a ConfigError naming the mismatch, not a bare flax error or a bad state."""
    checkpoint.save(tmp_path, {"actor": {"w": jnp.ones((2, 3))}}, {"step": 1})
    with pytest.raises(ConfigError, match=r"does not fit.*'w'.*\(2, 3\) there, \(3, 3\) here"):
        checkpoint.load(tmp_path, {"actor": {"w": jnp.zeros((3, 3))}})
    with pytest.raises(ConfigError, match="does not fit.*only here: actor/scale"):
        checkpoint.load(tmp_path, {"actor": {"w": jnp.zeros((2, 3)), "scale": jnp.ones(())}})
    checkpoint.save(tmp_path, {"actor": {"w": jnp.ones((2, 3)), "scale": jnp.ones(())}}, {})
    # flax would drop the saved "scale" silently (an actor that lost a learned parameter)
    with pytest.raises(ConfigError, match="does not fit.*only there: actor/scale"):
        checkpoint.load(tmp_path, {"actor": {"w": jnp.zeros((2, 3))}})


def test_atomic_write_json(tmp_path):
    checkpoint.atomic_write_json(tmp_path / "s.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": [1, 2], "b": 1}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    """Disk full mid-write (here at fsync, as NFS and full disks report it): WriteError naming
    the file, the last good checkpoint untouched, no checkpoint.msgpack.tmp left behind."""
    import errno
    import os

    from seemrl.types import WriteError

    checkpoint.save(tmp_path, {"w": jnp.ones(3)}, {"step": 1})
    before = (tmp_path / checkpoint.CHECKPOINT).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"checkpoint\.msgpack: No space left on device"):
        checkpoint.save(tmp_path, {"w": jnp.full(3, 2.0)}, {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT]
    assert (tmp_path / checkpoint.CHECKPOINT).read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other msgpack"])
def test_an_unreadable_checkpoint_is_one_error_that_says_what_to_do(tmp_path, damage):
    from seemrl.types import RunError

    checkpoint.save(tmp_path, {"w": jnp.ones((64, 64))}, {"step": 1})
    path = tmp_path / checkpoint.CHECKPOINT
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x93not a checkpoint",
                      "empty": b"", "other msgpack": b"\x92\x01\x02"}[damage])
    with pytest.raises(RunError, match=r"checkpoint .*checkpoint\.msgpack is unreadable .*"
                                       r"start the run again with `seemrl train --config"):
        checkpoint.load(tmp_path, {"w": jnp.zeros((64, 64))})
