"""A one-step bandit for learning tests: r = −4(a − 0.5)², every transition terminal.

Dataset actions are uniform in [-1, 1], so the best action a* = 0.5 is inside the data and
every algorithm (constrained to the data or not) should move its policy toward it and rank
Q(s, a*) above Q(s, a) for a far from it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.core import init_states, make_chunk
from seemrl.types import Batch, EnvSpec

A_STAR, OBS, ACT = 0.5, 2, 1
SPEC = EnvSpec(OBS, ACT)
SMALL = dict(critic_hidden=(32, 32), actor_hidden=(32, 32))


def bandit_data(n: int = 512, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    r = (-4.0 * (a[:, 0] - A_STAR) ** 2).astype(np.float32)
    return Batch(jnp.asarray(obs), jnp.asarray(a), jnp.asarray(r), jnp.asarray(obs),
                 jnp.zeros(n, jnp.float32))


def train_bandit(algo, cfg, steps: int, batch_size: int = 64, seed: int = 0):
    """`steps` updates in one jitted chunk; returns (state of one seed, data)."""
    data = bandit_data()
    states = init_states(algo, cfg, [seed], SPEC)
    chunk = make_chunk(algo, cfg, SPEC, batch_size)
    states, metrics, _ = chunk(states, data, jnp.int32(0), jnp.ones(1, bool), num_steps=steps)
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    return jax.tree.map(lambda x: x[0], states), data


def assert_learned(algo, state, cfg, data: Batch, tol: float = 0.25):
    """The policy's action is near a*, and Q(s, a*) > Q(s, -0.8) on average."""
    obs = data.obs_tm1[:64]
    a = np.asarray(algo.act(state, obs, cfg, SPEC))
    assert abs(float(np.mean(a)) - A_STAR) < tol, float(np.mean(a))
    q = algo.critic_q(cfg, 0)
    q_best = q(state.critic_params, obs, jnp.full((64, ACT), A_STAR))
    q_far = q(state.critic_params, obs, jnp.full((64, ACT), -0.8))
    assert float(jnp.mean(q_best)) > float(jnp.mean(q_far))
