"""IQL: the expectile loss and policy log-likelihood by hand, network options, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.algos import iql
from seemrl.types import EnvSpec

from .bandit import SMALL, assert_learned, train_bandit


def test_expectile_loss_is_asymmetric():
    u = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(iql.expectile_loss(u, 0.7), [1.2, 0.3, 0.0, 0.7, 2.8], rtol=1e-6)
    np.testing.assert_allclose(iql.expectile_loss(u, 0.5), 0.5 * u**2, rtol=1e-6)


def test_expectile_loss_minimiser_is_the_expectile():
    # The minimiser e of mean L_τ(x − e) solves τ·Σ(x − e)⁺ = (1 − τ)·Σ(e − x)⁺; τ > 0.5
    # puts it above the mean, towards the max (IQL's implicit max over in-data actions).
    x = jnp.array([0.0, 1.0, 2.0, 10.0])
    grid = jnp.linspace(0.0, 10.0, 100001)
    losses = jax.vmap(lambda e: jnp.mean(iql.expectile_loss(x - e, 0.9)))(grid)
    e = float(grid[jnp.argmin(losses)])
    np.testing.assert_allclose(0.9 * np.sum(np.maximum(x - e, 0)),
                               0.1 * np.sum(np.maximum(e - x, 0)), atol=5e-3)
    assert float(x.mean()) < e < float(x.max())


def test_gaussian_log_prob_by_hand():
    mean, log_std, a = jnp.array([[0.0, 1.0]]), jnp.log(jnp.array([1.0, 2.0])), \
        jnp.array([[1.0, 0.0]])
    want = (-0.5 - 0.5 * np.log(2 * np.pi)) + (-0.5 * 0.25 - np.log(2.0) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(iql.gaussian_log_prob(mean, log_std, a), [want], rtol=1e-6)


@pytest.mark.parametrize("value_ln", [False, True])
def test_value_layer_norm_is_a_separate_switch(value_ln):
    cfg = iql.Config(**SMALL, value_hidden=(32, 32), value_layer_norm=value_ln)
    # Shapes only (no compile): the parameter tree shows which layers have a norm.
    state = jax.eval_shape(lambda: iql.init(jax.random.PRNGKey(0), EnvSpec(3, 1), cfg))
    assert ("norm_0" in state.value_params["params"]["mlp"]) == value_ln
    assert "norm_0" not in state.critic_params["params"]["heads"]["mlp"]
    assert "norm_0" not in state.actor_params["params"]["mlp"]


@pytest.mark.slow
def test_iql_learns_a_bandit():
    cfg = iql.Config(**SMALL, value_hidden=(32, 32), lr_actor=1e-3, lr_critic=1e-3,
                     lr_value=1e-3, actor_decay_steps=0)
    state, data = train_bandit(iql, cfg, steps=2000)
    assert_learned(iql, state, cfg, data)
