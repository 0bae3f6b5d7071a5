import json

import jax.numpy as jnp
import numpy as np
import pytest

from seemrl import checkpoint


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


def test_atomic_write_json(tmp_path):
    checkpoint.atomic_write_json(tmp_path / "s.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": [1, 2], "b": 1}
