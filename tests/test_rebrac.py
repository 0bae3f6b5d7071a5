"""ReBRAC: the critic's BC penalty on next actions, defaults, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.algos import rebrac
from seemrl.types import EnvSpec

from .bandit import SMALL, assert_learned, bandit_data, train_bandit

SPEC = EnvSpec(obs_dim=2, act_dim=1)


def test_defaults_are_the_papers():
    cfg = rebrac.Config()
    assert cfg.critic_hidden == (256, 256, 256) and cfg.actor_hidden == (256, 256, 256)
    assert cfg.layer_norm and not cfg.actor_layer_norm and cfg.ln_placement == "after"
    assert cfg.lr_actor == cfg.lr_critic == 1e-3


def test_critic_penalty_lowers_the_target_by_beta_times_distance():
    cfg = rebrac.Config(**SMALL, policy_noise=0.0)
    data = bandit_data(16)
    state = rebrac.init(jax.random.PRNGKey(0), SPEC, cfg)
    nonterminal = data._replace(discount_t=jnp.ones(16))
    a_next = jnp.full((16, 1), -1.0)
    update = jax.jit(rebrac.update, static_argnums=(3, 4))
    _, plain = update(state, nonterminal, jnp.int32(1), cfg, SPEC)
    _, with_next = update(state, nonterminal._replace(a_t=a_next), jnp.int32(1), cfg, SPEC)
    assert np.isnan(float(plain["critic_bc_penalty"]))
    pi_next = rebrac.act(state, data.obs_t, cfg, SPEC)
    dist = jnp.mean(jnp.sum((pi_next - a_next) ** 2, -1))
    np.testing.assert_allclose(with_next["critic_bc_penalty"], dist, rtol=1e-5)
    np.testing.assert_allclose(plain["target_mean"] - with_next["target_mean"],
                               cfg.gamma * cfg.beta_critic * dist, rtol=1e-4)


@pytest.mark.slow
def test_rebrac_learns_a_bandit():
    cfg = rebrac.Config(**SMALL)
    state, data = train_bandit(rebrac, cfg, steps=1500)
    assert_learned(rebrac, state, cfg, data)
