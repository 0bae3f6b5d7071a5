"""A small conditional diffusion model over actions, for Diffusion-QL (`diffql.py`).

Noise schedule (Diffusion-QL's "vp" schedule, T steps): β_i = 1 − exp(−b_min/T −
½(b_max − b_min)(2i − 1)/T²), i = 1..T, b_min 0.1, b_max 10; ᾱ_i = Π_{j≤i}(1 − β_j).
Continuous time t ∈ [0, T] for DPM-Solver: log α_t (α_t = √ᾱ_t) is interpolated linearly
between the integers, with α_0 = 1 — DPM-Solver's own wrapper of a discrete schedule.
σ_t = √(1 − α_t²), λ_t = log(α_t / σ_t) is decreasing in t, inverted in closed form for
log α and by interpolation for t.

Samplers, all on actions scaled to [-1, 1], starting from x_T ~ N(0, I):
* `ddpm_sample`: the T-step ancestral chain with the clipped x̂_0 (Diffusion-QL's).
* `dpm_solver_sample`: DPM-Solver (Lu et al., 2022) order 1 (= DDIM) or 2 (single-step,
  midpoint in λ) on a time-uniform grid; the last step, to t = 0 where λ = ∞, is first
  order. Step from t to s: x_s = (α_s/α_t)·x_t − (α_s σ_t/α_t − σ_s)·ε, which is
  σ_s(e^h − 1) with h = λ_s − λ_t written so that it stays finite at σ_s = 0. Each ε is
  corrected so that the implied x̂_0 lies in [-1, 1] (the DDPM chain's clipping).

The ε-network is trained on continuous t ~ U(0, T] (see diffql.py), so it is defined where
DPM-Solver evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from seemrl.networks import MLP, MLPConfig

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]  # (x (..., A), t (...,)) -> ε


class Schedule(NamedTuple):
    betas: jnp.ndarray  # (T,) β_1..β_T
    alphas_cumprod: jnp.ndarray  # (T,) ᾱ_1..ᾱ_T
    t_grid: jnp.ndarray  # (T + 1,) 0..T
    log_alpha_grid: jnp.ndarray  # (T + 1,) log α at 0..T (0 at t = 0)


def vp_schedule(num_steps: int, b_min: float = 0.1, b_max: float = 10.0) -> Schedule:
    """Diffusion-QL's variance-preserving β schedule for T = num_steps."""
    i = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
    t = float(num_steps)
    betas = 1.0 - jnp.exp(-b_min / t - 0.5 * (b_max - b_min) * (2 * i - 1) / t**2)
    alphas_cumprod = jnp.cumprod(1.0 - betas)
    log_alpha = jnp.concatenate([jnp.zeros(1), 0.5 * jnp.log(alphas_cumprod)])
    return Schedule(betas, alphas_cumprod, jnp.arange(num_steps + 1, dtype=jnp.float32),
                    log_alpha)


def log_alpha(s: Schedule, t: jnp.ndarray) -> jnp.ndarray:
    return jnp.interp(t, s.t_grid, s.log_alpha_grid)


def alpha_sigma(s: Schedule, t: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(α_t, σ_t) at continuous times t (any shape)."""
    la = log_alpha(s, t)
    return jnp.exp(la), jnp.sqrt(jnp.maximum(-jnp.expm1(2.0 * la), 0.0))


def lambda_t(s: Schedule, t: jnp.ndarray) -> jnp.ndarray:
    """Half log-SNR λ_t = log α_t − log σ_t (+∞ at t = 0)."""
    la = log_alpha(s, t)
    return la - 0.5 * jnp.log(-jnp.expm1(2.0 * la))


def inverse_lambda(s: Schedule, lam: jnp.ndarray) -> jnp.ndarray:
    """t with λ_t = lam: log α = −½·log(1 + e^{−2λ}), then invert the interpolation."""
    la = -0.5 * jnp.logaddexp(0.0, -2.0 * lam)
    return jnp.interp(la, s.log_alpha_grid[::-1], s.t_grid[::-1])


def q_sample(s: Schedule, x0: jnp.ndarray, t: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
    """x_t = α_t·x_0 + σ_t·ε; x0, noise (B, A), t (B,)."""
    a, sig = alpha_sigma(s, t)
    return a[:, None] * x0 + sig[:, None] * noise


def dpm_step(s: Schedule, x: jnp.ndarray, t, t_next, eps: jnp.ndarray) -> jnp.ndarray:
    """First-order DPM-Solver (DDIM) step from t to t_next < t with ε = eps(x, t)."""
    a_t, sig_t = alpha_sigma(s, t)
    a_s, sig_s = alpha_sigma(s, t_next)
    return (a_s / a_t) * x - (a_s * sig_t / a_t - sig_s) * eps


def dpm_solver_sample(eps_fn: EpsFn, s: Schedule, x_T: jnp.ndarray, steps: int,
                      order: int = 2) -> jnp.ndarray:
    """DPM-Solver from t = T to 0 in `steps` time-uniform steps: x_T (B, A) -> x_0 (B, A)."""
    if order not in (1, 2) or steps < 1:
        raise ValueError(f"DPM-Solver order must be 1 or 2 and steps >= 1, got {order}, {steps}")
    times = jnp.linspace(s.t_grid[-1], 0.0, steps + 1)

    def eps_clipped(x, t):
        # Clip the implied x̂_0 to the action box and re-derive ε, the same clipping as the
        # DDPM chain's; without it the large ratios α_s/α_t of T = 5 overshoot the box.
        eps = eps_fn(x, t)
        a, sig = (v[..., None] for v in alpha_sigma(s, t))
        x0 = jnp.clip((x - sig * eps) / a, -1.0, 1.0)
        return (x - a * x0) / sig

    ones = jnp.ones(x_T.shape[:-1])

    def step(x, ts):
        t, t_next = ts
        eps_t = eps_clipped(x, t * ones)
        if order == 1:
            return dpm_step(s, x, t, t_next, eps_t), None
        return dpm2_step(s, eps_clipped, x, t, t_next, eps_t), None

    # All steps but the last in a scan (one copy of the network per order); the last step,
    # into t = 0 where λ = ∞, is first order.
    x, _ = jax.lax.scan(step, x_T, (times[:-2], times[1:-1]))
    x = dpm_step(s, x, times[-2], times[-1], eps_clipped(x, times[-2] * ones))
    return jnp.clip(x, -1.0, 1.0)


def dpm2_step(s: Schedule, eps_fn: EpsFn, x: jnp.ndarray, t, t_next,
              eps_t: jnp.ndarray) -> jnp.ndarray:
    """Single-step DPM-Solver-2 from t to t_next (0 < t_next < t): a first-order step to the
    λ-midpoint u, then x_s = (α_s/α_t)·x_t − σ_s(e^h − 1)·ε(x_u, u). eps_t = eps_fn(x, t)."""
    u = inverse_lambda(s, 0.5 * (lambda_t(s, t) + lambda_t(s, t_next)))
    x_u = dpm_step(s, x, t, u, eps_t)
    return dpm_step(s, x, t, t_next, eps_fn(x_u, u * jnp.ones(x.shape[:-1])))


def ddpm_sample(eps_fn: EpsFn, s: Schedule, x_T: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Diffusion-QL's ancestral sampler, T network calls: x_T (B, A) -> x_0 (B, A)."""
    num = s.betas.shape[0]
    ac_prev = jnp.concatenate([jnp.ones(1), s.alphas_cumprod[:-1]])

    def step(x, inputs):
        i, k = inputs  # i = T..1 (1-based), as floats for the network
        j = i.astype(jnp.int32) - 1
        beta, ac, acp = s.betas[j], s.alphas_cumprod[j], ac_prev[j]
        eps = eps_fn(x, jnp.full(x.shape[:-1], i))
        x0 = jnp.clip((x - jnp.sqrt(1.0 - ac) * eps) / jnp.sqrt(ac), -1.0, 1.0)
        mean = (beta * jnp.sqrt(acp) / (1 - ac)) * x0 + ((1 - acp) * jnp.sqrt(1 - beta)
                                                          / (1 - ac)) * x
        var = beta * (1 - acp) / (1 - ac)  # 0 at i = 1 (ᾱ_0 = 1): the last step adds no noise
        return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape), None

    # A scan, not an unrolled loop: one copy of the network in the compiled program.
    steps = jnp.arange(num, 0, -1, dtype=jnp.float32)
    x, _ = jax.lax.scan(step, x_T, (steps, jax.random.split(key, num)))
    return jnp.clip(x, -1.0, 1.0)


def sinusoidal_embedding(t: jnp.ndarray, dim: int = 16) -> jnp.ndarray:
    """(...,) -> (..., dim) sin/cos features of a (continuous) diffusion time."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / (half - 1))
    arg = t[..., None] * freqs
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class EpsNetwork(nn.Module):
    """ε_θ(x_t, t, s): x (..., A), t (...,), obs (..., D) -> (..., A) (Diffusion-QL's MLP)."""

    config: MLPConfig
    act_dim: int
    time_dim: int = 16

    @nn.compact
    def __call__(self, x: jnp.ndarray, t: jnp.ndarray, obs: jnp.ndarray) -> jnp.ndarray:
        mish = lambda z: z * jnp.tanh(jax.nn.softplus(z))
        temb = nn.Dense(2 * self.time_dim, name="time_0")(sinusoidal_embedding(t, self.time_dim))
        temb = nn.Dense(self.time_dim, name="time_1")(mish(temb))
        return MLP(self.config, self.act_dim, name="mlp")(jnp.concatenate([x, temb, obs], -1))
