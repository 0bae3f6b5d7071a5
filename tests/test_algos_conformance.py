"""The contract every algorithm in seemrl.algos.ALGORITHMS passes (see seemrl/algos/__init__.py).

init and update under jit and not, finite metrics, determinism for a key, checkpoint
round-trip, and several seeds in one process giving the numbers of separate runs.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl import algos, checkpoint
from seemrl.core import init_states, make_chunk
from seemrl.types import Batch, EnvSpec

from .conftest import make_dataset

OBS, ACT, MAX_A = 11, 3, 1.0
SPEC = EnvSpec(OBS, ACT, MAX_A)
SMALL = dict(critic_hidden=(32, 32), actor_hidden=(32, 32))


def small_config(algo, **overrides):
    names = {f.name for f in dataclasses.fields(algo.Config)}
    return algo.Config(**{k: v for k, v in {**SMALL, **overrides}.items() if k in names})


def device_data() -> Batch:
    d = make_dataset(200)
    return Batch(jnp.asarray(d.observations), jnp.asarray(d.actions), jnp.asarray(d.rewards),
                 jnp.asarray(d.next_observations), jnp.asarray(1.0 - d.terminals))


def batch_of(data: Batch, n: int = 16) -> Batch:
    return jax.tree.map(lambda x: x[:n], data)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(params=algos.ALGORITHMS)
def algo(request):
    return algos.get(request.param)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_update_jit_equals_eager_and_is_finite(algo, layer_norm):
    cfg = small_config(algo, layer_norm=layer_norm)
    state = algo.init(jax.random.PRNGKey(0), SPEC, cfg)
    batch = batch_of(device_data())
    for step in (0, 1):  # both branches of delayed updates, where an algorithm has them
        eager, m_eager = algo.update(state, batch, jnp.int32(step), cfg, SPEC)
        jitted, m_jit = jax.jit(algo.update, static_argnums=(3, 4))(
            state, batch, jnp.int32(step), cfg, SPEC)
        assert_trees_close(eager, jitted, rtol=1e-4, atol=1e-5)
        assert m_eager.keys() == m_jit.keys()
        for k in ("critic_loss", "q_mean"):
            assert np.isfinite(float(m_jit[k])), k
        state = jitted
    # The update changed the critic.
    fresh = algo.init(jax.random.PRNGKey(0), SPEC, cfg)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.critic_params,
                         fresh.critic_params)
    assert max(jax.tree.leaves(diffs)) > 0


def test_deterministic_for_a_key(algo):
    cfg = small_config(algo)
    data = device_data()
    chunk = make_chunk(algo, cfg, SPEC, batch_size=16)
    runs = []
    for _ in range(2):
        states = init_states(algo, cfg, [3], SPEC)
        states, metrics, _ = chunk(states, data, jnp.int32(0), jnp.ones(1, bool), num_steps=5)
        runs.append((states, metrics))
    assert_trees_close(runs[0], runs[1], rtol=0, atol=0)
    other = init_states(algo, cfg, [4], SPEC)
    assert not np.allclose(jax.tree.leaves(other.critic_params)[0],
                           jax.tree.leaves(runs[0][0].critic_params)[0])


def test_checkpoint_round_trip(algo, tmp_path):
    cfg = small_config(algo)
    states = init_states(algo, cfg, [0, 1], SPEC)
    chunk = make_chunk(algo, cfg, SPEC, batch_size=16)
    states, _, _ = chunk(states, device_data(), jnp.int32(0), jnp.ones(2, bool), num_steps=3)
    checkpoint.save(tmp_path, states, {"step": 3})
    target = init_states(algo, cfg, [7, 8], SPEC)
    restored, meta = checkpoint.load(tmp_path, target)
    assert meta == {"step": 3}
    assert jax.tree.structure(restored) == jax.tree.structure(states)
    assert_trees_close(restored, states, rtol=0, atol=0)


def test_seeds_side_by_side_equal_separate_runs(algo):
    cfg = small_config(algo)
    data = device_data()
    chunk = make_chunk(algo, cfg, SPEC, batch_size=16)
    together = init_states(algo, cfg, [0, 1, 2], SPEC)
    together, m_together, _ = chunk(together, data, jnp.int32(0), jnp.ones(3, bool),
                                    num_steps=20)
    for j, seed in enumerate([0, 1, 2]):
        alone = init_states(algo, cfg, [seed], SPEC)
        alone, m_alone, _ = chunk(alone, data, jnp.int32(0), jnp.ones(1, bool), num_steps=20)
        # Batched and unbatched matmuls may round differently in the last bits.
        assert_trees_close(jax.tree.map(lambda x, j=j: x[j], together),
                           jax.tree.map(lambda x: x[0], alone), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m_together["critic_loss"][:, j],
                                   m_alone["critic_loss"][:, 0], rtol=1e-4)


def test_inactive_seed_is_frozen(algo):
    cfg = small_config(algo)
    states = init_states(algo, cfg, [0, 1], SPEC)
    chunk = make_chunk(algo, cfg, SPEC, batch_size=16)
    active = jnp.asarray([True, False])
    new, _, _ = chunk(states, device_data(), jnp.int32(0), active, num_steps=4)
    assert_trees_close(jax.tree.map(lambda x: x[1], new), jax.tree.map(lambda x: x[1], states),
                       rtol=0, atol=0)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a[0] - b[0]).max()), new.critic_params,
                         states.critic_params)
    assert max(jax.tree.leaves(moved)) > 0


def test_act_shapes_and_bounds(algo):
    cfg = small_config(algo)
    state = algo.init(jax.random.PRNGKey(0), EnvSpec(OBS, ACT, 2.0), cfg)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 7, OBS)) * 10
    a = algo.act(state, obs, cfg, EnvSpec(OBS, ACT, 2.0))
    assert a.shape == (5, 7, ACT)
    assert float(jnp.abs(a).max()) <= 2.0 + 1e-6


def test_critic_q_matches_ensemble_head(algo):
    cfg = small_config(algo)
    state = algo.init(jax.random.PRNGKey(0), SPEC, cfg)
    data = batch_of(device_data(), 8)
    q0 = algo.critic_q(cfg, 0)(state.critic_params, data.obs_tm1, data.a_tm1)
    assert q0.shape == (8,)
    assert np.all(np.isfinite(q0))
