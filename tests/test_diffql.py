"""Diffusion-QL: noise schedule, DPM-Solver steps against closed forms, samplers, learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.algos import _diffusion as diff
from seemrl.algos import diffql

from .bandit import SMALL, assert_learned, train_bandit


def test_vp_schedule_matches_hand_computation():
    s = diff.vp_schedule(5)
    # β_i = 1 − exp(−0.1/5 − ½·9.9·(2i − 1)/25), Diffusion-QL's vp schedule.
    betas = [1 - math.exp(-0.02 - 0.198 * (2 * i - 1)) for i in range(1, 6)]
    np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
    np.testing.assert_allclose(s.betas[0], 0.195874, atol=1e-6)
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.array(betas)), rtol=1e-6)
    assert float(s.log_alpha_grid[0]) == 0.0  # α_0 = 1: t = 0 is clean data
    a, sig = diff.alpha_sigma(s, jnp.arange(6.0))
    np.testing.assert_allclose(a**2 + sig**2, 1.0, rtol=1e-6)  # variance preserving
    np.testing.assert_allclose(a[1:] ** 2, s.alphas_cumprod, rtol=1e-6)


def test_lambda_is_decreasing_and_inverted():
    s = diff.vp_schedule(5)
    t = jnp.linspace(0.05, 5.0, 40)
    lam = diff.lambda_t(s, t)
    assert np.all(np.diff(np.asarray(lam)) < 0)
    np.testing.assert_allclose(diff.inverse_lambda(s, lam), t, rtol=1e-4, atol=1e-4)


def _exact_linear_eps(s, x, t, t_next, c0, c1):
    """Closed form of the probability-flow ODE for ε(x, t) = c0 + c1·λ_t.

    With y = x/α: dy/dλ = −e^{−λ}·ε, so y_s − y_t = −∫ e^{−λ}(c0 + c1 λ) dλ over [λ_t, λ_s]
    = [c0·e^{−λ} + c1·(λ + 1)e^{−λ}] evaluated from λ_t to λ_s.
    """
    lt, ls = float(diff.lambda_t(s, t)), float(diff.lambda_t(s, t_next))
    a_t, _ = diff.alpha_sigma(s, jnp.float32(t))
    a_s, _ = diff.alpha_sigma(s, jnp.float32(t_next))
    prim = lambda lam: c0 * math.exp(-lam) + c1 * (lam + 1) * math.exp(-lam)
    return float(a_s) * (x / float(a_t) + prim(ls) - prim(lt))


def test_dpm_solver_first_order_step_is_exact_for_constant_eps():
    s = diff.vp_schedule(5)
    x, eps = jnp.array([[0.3, -1.2]]), jnp.array([[0.7, 0.1]])
    for t, t_next in [(5.0, 3.0), (2.5, 1.0), (1.0, 0.2)]:
        got = diff.dpm_step(s, x, t, t_next, eps)
        want = [_exact_linear_eps(s, float(x[0, j]), t, t_next, float(eps[0, j]), 0.0)
                for j in range(2)]
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)
    # Into t = 0 (σ = 0) the step is x̂_0 = (x − σ_t ε) / α_t, finite.
    a, sig = diff.alpha_sigma(s, jnp.float32(2.0))
    np.testing.assert_allclose(diff.dpm_step(s, x, 2.0, 0.0, eps), (x - sig * eps) / a,
                               rtol=1e-5)


def test_dpm_solver_second_order_beats_first_order():
    # ε linear in λ: the first-order step's local error is O(h²), the second-order's O(h³).
    s = diff.vp_schedule(5)
    c0, c1, x = 0.2, 0.5, 0.4
    eps_fn = lambda x_, tt: jnp.full_like(x_, c0) + c1 * diff.lambda_t(s, tt)[..., None]

    def errors(t, t_next):
        x_t = jnp.array([[x]])
        eps_t = eps_fn(x_t, jnp.array([t]))
        exact = _exact_linear_eps(s, x, t, t_next, c0, c1)
        err1 = abs(float(diff.dpm_step(s, x_t, t, t_next, eps_t)[0, 0]) - exact)
        err2 = abs(float(diff.dpm2_step(s, eps_fn, x_t, t, t_next, eps_t)[0, 0]) - exact)
        return err1, err2

    big, small = errors(3.0, 2.0), errors(3.0, 2.5)
    assert small[1] < small[0] / 5 and big[1] < big[0] / 5, (big, small)
    assert big[0] / small[0] < 6 < big[1] / small[1], (big, small)  # ≈ 4 vs ≈ 8 per halving


@pytest.mark.parametrize("sampler", ["ddpm", "dpm1", "dpm2"])
def test_samplers_recover_a_point_mass_with_the_ideal_eps(sampler):
    # For data concentrated at a0 the ideal ε is (x − α_t a0)/σ_t; every sampler returns a0.
    s = diff.vp_schedule(5)
    a0 = jnp.array([0.3, -0.6])

    def eps_fn(x, t):
        a, sig = (v[..., None] for v in diff.alpha_sigma(s, t))
        return (x - a * a0) / sig

    x_T = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    if sampler == "ddpm":
        out = diff.ddpm_sample(eps_fn, s, x_T, jax.random.PRNGKey(1))
    else:
        out = diff.dpm_solver_sample(eps_fn, s, x_T, 3, order=1 if sampler == "dpm1" else 2)
    np.testing.assert_allclose(out, jnp.broadcast_to(a0, (4, 2)), atol=1e-4)


def test_config_rejects_unknown_sampler():
    with pytest.raises(ValueError, match="sampler"):
        diffql.Config(sampler="euler")


@pytest.mark.slow
def test_diffql_learns_a_bandit():
    cfg = diffql.Config(**SMALL, ema_start=0, ema_every=1, ema_decay=0.9, eval_samples=10,
                        lr_actor=1e-3, lr_critic=1e-3)
    state, data = train_bandit(diffql, cfg, steps=1500)
    assert_learned(diffql, state, cfg, data)
