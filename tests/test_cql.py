"""CQL: the conservative penalty against a direct NumPy computation, log-densities, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.algos import cql
from seemrl.config import ConfigError
from seemrl.networks import GaussianActor, head_params, sample_action
from seemrl.types import EnvSpec

from .bandit import SMALL, assert_learned, train_bandit


def _numpy_penalty(q_rand, q_s, lp_s, q_n, lp_n, q_data, log_uniform, temp, clip_min=None):
    h, b, n = q_rand.shape
    out = np.zeros(h)
    for j in range(h):
        total = 0.0
        for i in range(b):
            terms = ([q_rand[j, i, k] - log_uniform for k in range(n)]
                     + [q_n[j, i, k] - lp_n[i, k] for k in range(n)]
                     + [q_s[j, i, k] - lp_s[i, k] for k in range(n)])
            lse = temp * np.log(np.sum(np.exp(np.array(terms) / temp)))
            gap = lse - q_data[j, i]
            total += gap if clip_min is None else max(gap, clip_min)
        out[j] = total / b
    return out


@pytest.mark.parametrize("temp,clip_min", [(1.0, None), (0.5, None), (1.0, 1.5)])
def test_penalty_matches_numpy(temp, clip_min):
    rng = np.random.default_rng(0)
    h, b, n, act_dim = 2, 3, 4, 2
    q_rand, q_s, q_n = (rng.normal(size=(h, b, n)) for _ in range(3))
    lp_s, lp_n = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    q_data = rng.normal(size=(h, b))
    log_uniform = -act_dim * np.log(2.0)  # uniform on [-1, 1]^2
    got = cql.cql_penalty(*(jnp.asarray(x, jnp.float32) for x in
                            (q_rand, q_s, lp_s, q_n, lp_n, q_data)), log_uniform, temp, clip_min)
    want = _numpy_penalty(q_rand, q_s, lp_s, q_n, lp_n, q_data, log_uniform, temp, clip_min)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_penalty_is_zero_gradient_in_the_log_densities():
    # The importance weights are constants: no gradient flows into the policy through them.
    q = jnp.zeros((1, 1, 2))
    grad = jax.grad(lambda lp: jnp.sum(cql.cql_penalty(q, q, lp, q, lp, jnp.zeros((1, 1)),
                                                       0.0)))(jnp.ones((1, 2)))
    np.testing.assert_array_equal(grad, 0.0)


def test_tanh_gaussian_log_prob_matches_the_sampler():
    key = jax.random.PRNGKey(0)
    mean, log_std = jnp.array([[0.3, -0.2]] * 5), jnp.array([[-0.5, 0.1]] * 5)
    a, logp = sample_action(mean, log_std, key)
    np.testing.assert_allclose(cql.tanh_gaussian_log_prob(mean, log_std, a), logp, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.slow
def test_cql_learns_a_bandit():
    cfg = cql.Config(**SMALL, cql_alpha=1.0, lr_actor=1e-3, lr_critic=1e-3)
    state, data = train_bandit(cql, cfg, steps=2000)
    assert_learned(cql, state, cfg, data)


@pytest.mark.slow
def test_lagrange_multiplier_follows_the_gap():
    # A gap far above target_gap makes α' grow; far below, shrink.
    for gap, sign in [(-100.0, 1), (100.0, -1)]:
        cfg = cql.Config(**SMALL, lagrange=True, target_gap=gap)
        state, _ = train_bandit(cql, cfg, steps=20)
        assert np.sign(float(state.log_alpha_prime)) == sign


def test_corl_networks_by_default():
    """CQL starts from CORL's networks: orthogonal critic layers of gain √2 with zero biases, a
    critic output of gain 1e-2 and zero bias, an actor output layer of Glorot gain 1e-2, and
    the actor's log-std m·raw + o starting at m = 1, o = −1 (so near −1 everywhere)."""
    cfg = cql.Config(critic_hidden=(32, 64), actor_hidden=(32, 32))
    assert (cfg.init_scheme, cfg.actor_log_std) == ("corl", "affine")
    obs_dim, act_dim = 5, 2
    state = cql.init(jax.random.PRNGKey(0), EnvSpec(obs_dim, act_dim), cfg)
    for h in range(cfg.num_critics):
        head = head_params(state.critic_params, h)["mlp"]
        for i in range(len(cfg.critic_hidden)):
            k = np.asarray(head[f"dense_{i}"]["kernel"])  # (in, out): in <= out here
            np.testing.assert_allclose(k @ k.T, 2.0 * np.eye(k.shape[0]), atol=1e-5)
            assert not np.any(np.asarray(head[f"dense_{i}"]["bias"]))
        out = np.asarray(head["out"]["kernel"])
        np.testing.assert_allclose(np.linalg.norm(out), 1e-2, rtol=1e-5)
        assert not np.any(np.asarray(head["out"]["bias"]))
    mlp = state.actor_params["params"]["mlp"]
    k = np.asarray(mlp["out"]["kernel"])  # (32, 2·act_dim)
    bound = 1e-2 * np.sqrt(6.0 / sum(k.shape))
    assert np.abs(k).max() <= bound and np.abs(k).max() > bound / 2
    assert not np.any(np.asarray(mlp["out"]["bias"]))
    actor = GaussianActor(cfg.actor_mlp(), act_dim, "affine")
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, obs_dim))
    _, log_std = actor.apply(state.actor_params, obs)
    np.testing.assert_allclose(np.asarray(log_std), -1.0, atol=0.05)


def test_affine_log_std_scalars_are_learned():
    """m and o are parameters of the actor: one update moves them."""
    cfg = cql.Config(**SMALL)
    state, _ = train_bandit(cql, cfg, steps=5)
    params = state.actor_params["params"]
    assert float(params["log_std_multiplier"]) != 1.0
    assert float(params["log_std_offset"]) != -1.0
    squash = cql.Config(**SMALL, actor_log_std="squash", init_scheme="torch")
    state, _ = train_bandit(cql, squash, steps=5)
    assert "log_std_offset" not in state.actor_params["params"]
    with pytest.raises(ConfigError, match="actor_log_std"):
        cql.Config(actor_log_std="learned")
