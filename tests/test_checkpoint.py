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
