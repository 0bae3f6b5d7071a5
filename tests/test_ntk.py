"""Empirical NTK: per-sample gradients, chunked Gram, and the fast exact MLP path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.diagnostics import ntk
from seemrl.networks import MLPConfig, QNetwork


def _features(obs, act):
    """A fixed nonlinear feature map Ψ(s, a): (N, 2·obs_dim + act_dim + 1)."""
    return jnp.concatenate([obs, jnp.sin(obs), act, jnp.ones((obs.shape[0], 1))], axis=1)


def _linear_q(w, obs, act):
    return _features(obs, act) @ w


def _data(n, key=0, obs_dim=4, act_dim=2):
    k = jax.random.split(jax.random.key(key), 2)
    return jax.random.normal(k[0], (n, obs_dim)), jax.random.normal(k[1], (n, act_dim))


def test_linear_critic_gram_is_feature_gram():
    obs, act = _data(20)
    obs2, act2 = _data(13, key=1)
    w = jnp.arange(11.0) / 10
    psi, psi2 = _features(obs, act), _features(obs2, act2)
    # ∇_w (Ψ w) = Ψ exactly, so G(U, V) = Ψ_U Ψ_Vᵀ.
    np.testing.assert_allclose(ntk.per_sample_grads(_linear_q, w, obs, act), psi, rtol=1e-6)
    np.testing.assert_allclose(ntk.per_sample_grads(_linear_q, w, obs, act, chunk_size=3),
                               psi, rtol=1e-6)
    for chunk in (1, 4, 256):
        G = ntk.gram(_linear_q, w, obs, act, obs2, act2, chunk_size=chunk)
        np.testing.assert_allclose(G, psi @ psi2.T, rtol=1e-5, atol=1e-5)
    G_scaled = ntk.gram(_linear_q, w, obs, act, scale=True)
    np.testing.assert_allclose(G_scaled, psi @ psi.T / w.size, rtol=1e-5, atol=1e-6)


SLOW = pytest.mark.slow
CONFIGS = [
    MLPConfig(hidden=(24, 16)),
    MLPConfig(hidden=(24, 16), norm="layernorm", placement="before"),
    MLPConfig(hidden=(24, 16, 8), norm="layernorm", placement="after", norm_layers=(1,),
              activation="mish"),
    pytest.param(MLPConfig(hidden=(24, 16), use_bias=False), marks=SLOW),
    pytest.param(MLPConfig(hidden=(24, 16), norm="layernorm", placement="after"), marks=SLOW),
    pytest.param(MLPConfig(hidden=(24, 16, 8), norm="layernorm", placement="before",
                           norm_layers=(0, 2)), marks=SLOW),
]


def _config_id(c):
    return f"{c.norm}-{c.placement}-{c.norm_layers}-{c.activation}-bias{c.use_bias}"


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_fast_path_equals_generic(config):
    obs, act = _data(30)
    obs2, act2 = _data(17, key=2)
    net = QNetwork(config)
    params = jax.jit(net.init)(jax.random.key(5), obs, act)

    def q(p, o, a):
        return net.apply(p, o, a)

    @jax.jit      # one compiled program per config keeps the test fast
    def compute(params):
        phi_u = ntk.per_sample_grads(q, params, obs, act)
        phi_v = ntk.per_sample_grads(q, params, obs2, act2)
        return (phi_u @ phi_v.T, phi_u.shape[1], ntk.mlp_features(config, params, obs, act)["q"],
                q(params, obs, act), ntk.mlp_gram(config, params, obs, act, obs2, act2),
                ntk.gram(q, params, obs, act, obs2, act2, chunk_size=8),
                ntk.mlp_gram(config, params["params"], obs, act, obs2, act2, scale=True))

    ref, P, q_fast, q_ref, fast, chunked, fast_scaled = compute(params)
    np.testing.assert_allclose(q_fast, q_ref, rtol=1e-6, atol=1e-7)
    tol = 2e-6 * float(jnp.abs(ref).max())           # float32 precision, relative to |G|
    np.testing.assert_allclose(fast, ref, atol=tol, rtol=0)
    np.testing.assert_allclose(chunked, ref, atol=tol, rtol=0)
    assert P == ntk.num_params(params)
    np.testing.assert_allclose(fast_scaled, ref / P, atol=tol / P, rtol=0)


def test_jit_equals_no_jit():
    obs, act = _data(12)
    w = jnp.linspace(-1.0, 1.0, 11)
    eager = ntk.gram(_linear_q, w, obs, act, chunk_size=5)
    jitted = jax.jit(lambda w: ntk.gram(_linear_q, w, obs, act, chunk_size=5))(w)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)
    config = CONFIGS[1]
    params = jax.jit(QNetwork(config).init)(jax.random.key(0), obs, act)
    fast = jax.jit(ntk.mlp_gram, static_argnums=0)(config, params, obs, act)
    np.testing.assert_allclose(fast, ntk.mlp_gram(config, params, obs, act), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("config", CONFIGS[:3], ids=_config_id)
def test_td_gram_is_accurate_when_x_star_is_near_x(config):
    # A = diag(c) G(X*, X) − G(X, X) with X* = X + 1e-3 noise, c = γ(1 − d): on the non-terminal
    # rows A ≈ (γ − 1)G, a 1 % difference of two Grams. Reference: float64 products of the
    # float32 per-sample gradients (the authors' recipe).
    obs, act = _data(40)
    k = jax.random.split(jax.random.key(7), 2)
    next_obs = obs + 1e-3 * jax.random.normal(k[0], obs.shape)
    next_act = act + 1e-3 * jax.random.normal(k[1], act.shape)
    c = 0.99 * jnp.ones(40).at[::7].set(0.0)
    net = QNetwork(config)
    params = jax.jit(net.init)(jax.random.key(5), obs, act)

    def q(p, o, a):
        return net.apply(p, o, a)

    @jax.jit
    def compute(params):
        fx = ntk.mlp_features(config, params, obs, act)
        fs = ntk.mlp_features(config, params, next_obs, next_act)
        A, G = ntk.mlp_td_gram_from_features(config, fs, fx, c, with_gxx=True)
        # In row blocks of 16 (40 rows: the last block padded).
        A_blk, G_blk = ntk.mlp_td_gram_from_features(config, fs, fx, c, with_gxx=True,
                                                     chunk_size=16)
        A_sub = c[:, None] * ntk.mlp_gram_from_features(config, fs, fx) - G
        return (A, G, A_sub, A_blk, G_blk, ntk.per_sample_grads(q, params, obs, act),
                ntk.per_sample_grads(q, params, next_obs, next_act))

    A, G, A_sub, A_blk, G_blk, phi, phi_s = (np.asarray(x, np.float64) for x in compute(params))
    np.testing.assert_allclose(A_blk, A, atol=1e-6 * np.abs(A).max(), rtol=0)
    np.testing.assert_allclose(G_blk, G, atol=1e-6 * np.abs(G).max(), rtol=0)
    G_ref = phi @ phi.T
    A_ref = np.asarray(c, np.float64)[:, None] * (phi_s @ phi.T) - G_ref
    np.testing.assert_allclose(G, G_ref, atol=2e-6 * np.abs(G_ref).max(), rtol=0)
    np.testing.assert_allclose(A, A_ref, atol=2e-6 * np.abs(G_ref).max(), rtol=0)
    rows = np.asarray(c) > 0

    def err(x):
        return np.linalg.norm((x - A_ref)[rows]) / np.linalg.norm(A_ref[rows])

    # Subtracting the float32 Grams loses ~1e-7·|G| ≈ 1e-5·|A|; the feature differences don't.
    assert err(A) < 3e-6 and err(A) < err(A_sub) / 3, (err(A), err(A_sub))
