"""SEEM: hand-computed linear cases, the TD dynamics it predicts, and path agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.diagnostics import ntk, seem, seem_heads, seem_matrix, seem_mlp
from seemrl.diagnostics.seem import mlp_seem_matrix
from seemrl.networks import Critic, MLPConfig, QNetwork, q_head_fn


def _linear_q(w, obs, act):
    """Linear critic whose features are the observation itself: Q = obs @ w, so Φ = obs."""
    return obs @ w


def test_rank_one_by_hand():
    # One feature: A = (γψ* − ψ)ψᵀ = bψᵀ has eigenvalues ψᵀb (eigenvector b) and 0 (N−1 times),
    # and ‖A‖_F = ‖b‖‖ψ‖.
    psi = jnp.array([[1.0], [2.0], [-1.0], [0.5]])
    act = jnp.zeros((4, 1))
    w = jnp.ones(1)
    for psi_star, positive in ((2.0 * psi, True), (0.3 * psi, False)):
        b = np.asarray(0.9 * psi_star - psi)[:, 0]
        p = np.asarray(psi)[:, 0]
        r = seem(_linear_q, w, psi, act, psi_star, act, gamma=0.9, method="dense")
        fro = np.linalg.norm(b) * np.linalg.norm(p)
        assert r.frobenius == pytest.approx(fro, rel=1e-6)
        if positive:
            assert r.raw == pytest.approx(p @ b, rel=1e-6)
            assert r.normalized == pytest.approx(p @ b / fro, rel=1e-6)
            assert abs(np.vdot(r.eigenvector, b / np.linalg.norm(b))) == pytest.approx(1.0)
        else:
            assert p @ b < 0 and abs(r.raw) < 1e-6 * fro      # the zero eigenvalues win


@pytest.mark.parametrize("m", [[[0.5, 2.0], [0.3, 0.1]], [[0.5, -2.0], [1.0, 0.2]]],
                         ids=["real", "complex"])
def test_two_by_two_by_hand(m):
    # Φ(X) = I, Φ(X*) = M: A = γM − I; eigenvalues (tr ± √(tr² − 4 det)) / 2.
    gamma = 0.99
    m = np.array(m, np.float32)
    a = gamma * m - np.eye(2)
    tr, det = a[0, 0] + a[1, 1], a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    disc = tr**2 - 4 * det
    top = (tr + np.sqrt(disc)) / 2 if disc >= 0 else tr / 2
    r = seem(_linear_q, jnp.ones(2), jnp.eye(2), jnp.zeros((2, 1)), jnp.asarray(m),
             jnp.zeros((2, 1)), gamma=gamma)
    assert r.raw == pytest.approx(top, rel=1e-5)
    assert r.normalized == pytest.approx(top / np.sqrt(np.sum(a**2)), rel=1e-5)


@pytest.mark.parametrize("c", [1.6, 0.5])
def test_linear_td_follows_seem_sign(c):
    # Ψ* = cΨ: A = (γc − 1)ΨΨᵀ, and for a linear critic with the target = online network,
    # full-batch TD is exactly e' = (I + η/N · A) e. Run the TD iteration on w itself.
    gamma, n = 0.99, 4
    k = jax.random.split(jax.random.key(0), 3)
    psi = jax.random.normal(k[0], (n, 6))                  # N < P: ΨΨᵀ is full rank
    r = jax.random.normal(k[1], (n,))
    act = jnp.zeros((n, 1))
    res = seem(_linear_q, jnp.zeros(6), psi, act, c * psi, act, gamma=gamma)
    eta = n / res.frobenius                                 # |η λ / N| ≤ 1 for every λ
    w = jax.random.normal(k[2], (6,))

    def residual(w):
        return psi @ w - r - gamma * (c * psi) @ w

    def step(w, _):
        w = w - eta / n * psi.T @ residual(w)
        return w, jnp.linalg.norm(residual(w))

    e0 = float(jnp.linalg.norm(residual(w)))
    norms = np.asarray(jax.lax.scan(step, w, None, length=3000)[1]) / e0
    if gamma * c > 1:
        assert res.normalized > 0 and np.any(~np.isfinite(norms) | (norms > 1e3))
    else:
        assert res.normalized < 0 and norms[-1] < 1e-3


def _bias_free(n=8, hidden=(16, 16)):
    config = MLPConfig(hidden=hidden, use_bias=False)
    k = jax.random.split(jax.random.key(1), 3)
    obs, act = jax.random.uniform(k[0], (n, 3)), jax.random.uniform(k[1], (n, 1))
    net = QNetwork(config)
    return config, net, jax.jit(net.init)(k[2], obs, act)["params"], obs, act


@pytest.mark.parametrize("c", [1.5, 0.5])
def test_mlp_td_follows_seem_sign(c):
    # Bias-free ReLU: Q(cx) = cQ(x) and ∇Q(cx) = c∇Q(x) for c > 0, so A = (γc − 1)G(X, X):
    # SEEM = λ_max(G)/‖G‖_F if γc > 1, −λ_min(G)/‖G‖_F otherwise. Then run TD (SGD, target =
    # online network, r = 0) on the network and watch Q.
    gamma = 0.99
    config, net, params, obs, act = _bias_free()

    def q(p, o, a):
        return net.apply({"params": p}, o, a)

    res = seem_mlp(config, params, obs, act, c * obs, c * act, gamma)
    g = np.asarray(ntk.mlp_gram(config, params, obs, act), np.float64)
    lam = np.linalg.eigvalsh(g)
    expect = lam[-1] if gamma * c > 1 else -lam[0]
    assert res.normalized == pytest.approx(expect / np.linalg.norm(g), rel=1e-3, abs=1e-6)

    @jax.jit
    def run(p):
        def step(p, _):
            def loss(p):
                y = gamma * jax.lax.stop_gradient(q(p, c * obs, c * act))
                return 0.5 * jnp.mean((q(p, obs, act) - y) ** 2)
            p = jax.tree.map(lambda x, d: x - 0.5 * d, p, jax.grad(loss)(p))
            return p, jnp.mean(jnp.abs(q(p, obs, act)))
        return jax.lax.scan(step, p, None, length=400)[1]

    q_abs = np.asarray(run(params))
    q0 = float(jnp.mean(jnp.abs(q(params, obs, act))))
    if gamma * c > 1:
        assert res.normalized > 0 and (not np.isfinite(q_abs[-1]) or q_abs[-1] > 1e3 * q0)
    else:
        # A is negative definite: |Q| never grows and the fast modes die out (the slowest,
        # rate η(1 − γc)λ_min/N per step, barely moves in 400 steps).
        assert res.normalized < 0 and q_abs[-1] < 0.25 * q0 and np.all(q_abs <= 1.01 * q0)


def _problem(config, n=96, key=0):
    k = jax.random.split(jax.random.key(key), 5)
    obs, act = jax.random.normal(k[0], (n, 5)), jax.random.normal(k[1], (n, 2))
    next_obs = 1.5 * obs + 0.1 * jax.random.normal(k[2], (n, 5))   # extrapolating X*
    next_act = jax.random.normal(k[3], (n, 2))
    return obs, act, next_obs, next_act, k[4]


@pytest.mark.parametrize("norm", [pytest.param("none", marks=pytest.mark.slow), "layernorm"])
def test_dense_equals_matrix_free(norm):
    config = MLPConfig(hidden=(32, 32), norm=norm)
    obs, act, next_obs, next_act, key = _problem(config)
    net = QNetwork(config)
    params = jax.jit(net.init)(key, obs, act)

    def q(p, o, a):
        return net.apply(p, o, a)

    dense = seem(q, params, obs, act, next_obs, next_act, 0.99, method="dense")
    # rank < N so the Frobenius estimator really is randomised.
    free = seem(q, params, obs, act, next_obs, next_act, 0.99, method="matrix_free", rank=24,
                probes=24)
    assert dense.raw > 0
    for field in ("raw", "normalized", "frobenius"):
        assert getattr(free, field) == pytest.approx(getattr(dense, field), rel=1e-3)
    # The top eigenvalue may be one of a complex pair; both paths report the Im ≥ 0 member.
    assert free.eigenvalue == pytest.approx(dense.eigenvalue, rel=1e-3)
    assert abs(np.vdot(free.eigenvector, dense.eigenvector)) == pytest.approx(1.0, abs=1e-3)


def test_fast_path_heads_mask_and_scale():
    config = MLPConfig(hidden=(16, 16), norm="layernorm", placement="after")
    obs, act, next_obs, next_act, key = _problem(config, n=24)
    critic = Critic(config, num_heads=2)
    cp = jax.jit(critic.init)(key, obs, act)
    done = jnp.zeros(24).at[::5].set(1.0)
    per_head = seem_heads(config, cp, obs, act, next_obs, next_act, 0.99, done)
    # Head 1 through the generic path (head 0 is checked the same way in test_probe.py).
    ref = seem(q_head_fn(config, 1), cp, obs, act, next_obs, next_act, 0.99, done)
    assert per_head[1].raw == pytest.approx(ref.raw, rel=1e-4)
    assert per_head[1].normalized == pytest.approx(ref.normalized, rel=1e-4)
    assert per_head[0].raw != pytest.approx(per_head[1].raw, rel=1e-3)
    # Terminal mask: done = 0 is the unmasked A; done = 1 leaves A = −G(X, X).
    params = jax.tree.map(lambda x: x[0], cp["params"]["heads"])
    a_fn = jax.jit(mlp_seem_matrix, static_argnums=0)
    a_none = a_fn(config, params, obs, act, next_obs, next_act, 0.99)
    a_zero = a_fn(config, params, obs, act, next_obs, next_act, 0.99, jnp.zeros(24))
    a_one = a_fn(config, params, obs, act, next_obs, next_act, 0.99, jnp.ones(24))
    np.testing.assert_allclose(a_zero, a_none, rtol=1e-6)
    g_xx = jax.jit(ntk.mlp_gram, static_argnums=0)(config, params, obs, act)
    # float32 precision relative to |G| (A is formed from feature differences, not −G itself).
    np.testing.assert_allclose(a_one, -g_xx, rtol=0, atol=2e-6 * float(jnp.abs(g_xx).max()))
    # √P scaling changes raw by 1/P and leaves the normalised value unchanged.
    scaled = seem_mlp(config, params, obs, act, next_obs, next_act, 0.99, done, scale=True)
    P = ntk.num_params(params)
    assert scaled.normalized == pytest.approx(per_head[0].normalized, rel=1e-5)
    assert scaled.raw == pytest.approx(per_head[0].raw / P, rel=1e-5)


def test_jit_equals_no_jit():
    k = jax.random.split(jax.random.key(2), 3)
    obs, nobs = jax.random.normal(k[0], (6, 3)), jax.random.normal(k[1], (6, 3))
    act, w = jnp.zeros((6, 1)), jax.random.normal(k[2], (3,))
    done = jnp.array([0.0, 1, 0, 0, 1, 0])
    eager = seem_matrix(_linear_q, w, obs, act, nobs, act, 0.9, done, chunk_size=4)
    jitted = jax.jit(lambda w: seem_matrix(_linear_q, w, obs, act, nobs, act, 0.9, done,
                                           chunk_size=4))(w)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    expect = 0.9 * (1 - done)[:, None] * (nobs @ obs.T) - obs @ obs.T
    np.testing.assert_allclose(eager, expect, rtol=1e-5, atol=1e-6)


def test_top_eig_krylov_equals_full_eig():
    # An NTK-like A: Gram blocks of random low-rank-dominated features (big negative part and
    # a cluster near 0), large enough that top_eig's "auto" takes the Krylov branch, given as
    # NumPy float64 (host) and as a float32 jax.Array (device). More cases in test_krylov.py.
    from seemrl.diagnostics.seem import FULL_EIG_MAX_N, top_eig

    rng = np.random.default_rng(0)
    n = FULL_EIG_MAX_N + 88
    phi = rng.standard_normal((n, 300)) * (1.0 / np.arange(1, 301))
    phi_star = 1.3 * phi + 0.1 * rng.standard_normal((n, 300)) / np.arange(1, 301)
    a = 0.99 * phi_star @ phi.T - phi @ phi.T
    lam_full, vec_full = top_eig(a, "full")
    assert lam_full.real > 0
    for x, tol in ((a, 1e-6), (jnp.asarray(a, jnp.float32), 1e-4)):
        lam, vec = top_eig(x)
        assert lam == pytest.approx(lam_full, rel=tol)
        assert abs(np.vdot(vec, vec_full)) == pytest.approx(1.0, abs=tol)
