"""Growth-order theory of diverging critics (SPEC §3), as fits to logged series.

An L-homogeneous critic (bias-free ReLU MLP with L linear layers) has Q_{cθ} = c^L Q_θ,
∇Q_{cθ} = c^{L−1} ∇Q_θ and G_{cθ} = c^{2L−2} G_θ. With a stable direction θ ≈ ρ θ̂:

* SGD: dρ/dt ≈ κ ρ^{2L−1}, so ρ^{−(2L−2)} = ρ_0^{−(2L−2)} − (2L−2)κ t falls *linearly* and hits
  0 at a finite crash step t*; Q ∝ ρ^L gives |Q|^{−(2L−2)/L} ∝ (t* − t), linear too.
* Adam: each coordinate moves ≈ lr per step, so ρ ≈ ρ_0 + v t (linear) and Q ∝ ρ^L ∝ (t − t_0)^L
  with t_0 = −ρ_0/v; we fit log|Q| against log(t − t_0) (and, as logged, against log t).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import ntk
from seemrl.networks import MLPConfig, num_linear_layers


def num_layers(config: MLPConfig) -> int:
    """L, the number of linear layers (hidden + output) of an MLP critic."""
    return num_linear_layers(config)


@dataclasses.dataclass(frozen=True)
class LineFit:
    """y ≈ intercept + slope·x by least squares; cov is the 2×2 covariance of (slope,
    intercept) scaled by the residual variance (NaN with fewer than 4 points)."""

    slope: float
    intercept: float
    cov: np.ndarray
    r2: float

    def __call__(self, x):
        return self.intercept + self.slope * np.asarray(x, np.float64)


def fit_line(x, y) -> LineFit:
    """Least-squares line through (x, y), both (n,) with n ≥ 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        raise ValueError(f"need at least 2 points to fit a line, got {len(x)}")
    if len(x) > 3:
        (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    else:
        slope, intercept = np.polyfit(x, y, 1)
        cov = np.full((2, 2), np.nan)
    resid = y - (intercept + slope * x)
    ss_tot = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / ss_tot if ss_tot > 0 else 1.0
    return LineFit(float(slope), float(intercept), cov, float(r2))


def _window(steps, values, window):
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    keep = np.isfinite(values) & np.isfinite(steps)
    if window is not None:
        keep &= (steps >= window[0]) & (steps <= window[1])
    return steps[keep], values[keep]


@dataclasses.dataclass(frozen=True)
class CrashPrediction:
    """SGD finite-time blow-up predicted from a linear fit of a transformed series.

    t_star: predicted crash step (where the fitted line reaches 0; inf if it does not fall).
    t_star_std: 1-σ uncertainty by the delta method on the fit's covariance.
    quantity: "norm" (fit ρ^{−(2L−2)}) or "q" (fit |Q|^{−(2L−2)/L}).
    exponent: the power applied to the series. L: linear layers. fit: the line.
    steps, transformed: the data the line was fitted to (for plots).
    """

    t_star: float
    t_star_std: float
    quantity: str
    exponent: float
    L: int
    fit: LineFit
    steps: np.ndarray
    transformed: np.ndarray


def sgd_exponent(L: int, quantity: str = "norm") -> float:
    """The power p that makes series**p linear in t under SGD: −(2L−2) or −(2L−2)/L."""
    if L < 2:
        raise ValueError("the growth theory needs L ≥ 2 linear layers")
    if quantity == "norm":
        return -(2.0 * L - 2.0)
    if quantity == "q":
        return -(2.0 * L - 2.0) / L
    raise ValueError(f"quantity must be 'norm' or 'q', got '{quantity}'")


def predict_crash_sgd(steps, values, L: int, quantity: str = "norm",
                      window: tuple[float, float] | None = None) -> CrashPrediction:
    """Extrapolate the SGD crash step t* from an early window of ρ (or Q) against step.

    Args:
      steps: (n,) training steps. values: (n,) parameter norm ρ or mean Q (sign ignored).
      L: number of linear layers. quantity: "norm" | "q".
      window: (first, last) step to fit over; None = all finite points.

    Returns:
      CrashPrediction; t* = −intercept/slope of the line fitted to |values|**exponent.
    """
    p = sgd_exponent(L, quantity)
    s, v = _window(steps, values, window)
    y = np.abs(v) ** p
    fit = fit_line(s, y)
    if fit.slope >= 0:
        return CrashPrediction(np.inf, np.inf, quantity, p, L, fit, s, y)
    t_star = -fit.intercept / fit.slope
    # Delta method: ∂t*/∂slope = intercept/slope², ∂t*/∂intercept = −1/slope.
    jac = np.array([fit.intercept / fit.slope**2, -1.0 / fit.slope])
    var = float(jac @ fit.cov @ jac)
    return CrashPrediction(float(t_star), float(np.sqrt(var)) if var >= 0 else np.nan,
                           quantity, p, L, fit, s, y)


@dataclasses.dataclass(frozen=True)
class AdamGrowth:
    """Adam polynomial growth: ρ ≈ ρ_0 + v t and |Q| ∝ (t − t_0)^k with k ≈ L predicted.

    norm_fit: line ρ against t. t0: −ρ_0/v, the step where the norm line is 0.
    k, k_std, k_intercept: slope (its 1-σ) and intercept of log|Q| against log(t − t0).
    k_raw: slope against log t.
    predicted_k: L. steps, norms, q: the fitted data.
    """

    norm_fit: LineFit
    t0: float
    k: float
    k_std: float
    k_intercept: float
    k_raw: float
    predicted_k: int
    steps: np.ndarray
    norms: np.ndarray
    q: np.ndarray


def fit_adam_growth(steps, norms, q, L: int,
                    window: tuple[float, float] | None = None) -> AdamGrowth:
    """Fit Adam's growth laws over a window of a diverging run.

    Args:
      steps: (n,) steps (> 0). norms: (n,) parameter norm. q: (n,) mean Q (sign ignored).
      L: linear layers (the predicted exponent). window: (first, last) step or None.
    """
    steps, norms, q = (np.asarray(a, np.float64) for a in (steps, norms, q))
    keep = np.isfinite(norms) & np.isfinite(q) & (np.abs(q) > 0) & (steps > 0)
    if window is not None:
        keep &= (steps >= window[0]) & (steps <= window[1])
    s, n, qq = steps[keep], norms[keep], np.abs(q[keep])
    norm_fit = fit_line(s, n)
    t0 = -norm_fit.intercept / norm_fit.slope if norm_fit.slope > 0 else 0.0
    shifted = s - t0
    ok = shifted > 0
    kfit = fit_line(np.log(shifted[ok]), np.log(qq[ok]))
    raw = fit_line(np.log(s), np.log(qq))
    return AdamGrowth(norm_fit, float(t0), kfit.slope, float(np.sqrt(kfit.cov[0, 0])),
                      kfit.intercept, raw.slope, L, s, n, qq)


@dataclasses.dataclass(frozen=True)
class HomogeneityResult:
    """Measured scaling exponents after θ -> cθ (predicted: L, L−1, 2L−2, cosine 1)."""

    c: float
    q_exponent: float
    grad_exponent: float
    ntk_exponent: float
    ntk_cosine: float


def homogeneity_check(q: ntk.QFn, params, obs, act, c: float = 10.0) -> HomogeneityResult:
    """Scale every parameter by c and measure how Q, ∇Q and the NTK scale.

    Args:
      q: pure q(params, obs, act) -> (N,), e.g. a bias-free ReLU `QNetwork`.
      params: its parameters. obs: (N, obs_dim). act: (N, act_dim). c: scale factor (> 0).

    Returns:
      exponents log(‖·_{cθ}‖/‖·_θ‖)/log c for Q (N,), Φ (N, P) and G(X, X) (N, N),
      and the cosine between the two NTKs (1 = direction unchanged).
    """
    scaled = jax.tree.map(lambda x: c * x, params)

    @jax.jit      # one program instead of op-by-op dispatch of the vmapped gradients
    def parts(p):
        phi = ntk.per_sample_grads(q, p, obs, act)
        return q(p, obs, act), phi, phi @ phi.T

    (q0, g0, k0), (q1, g1, k1) = parts(params), parts(scaled)

    def expo(a, b):
        return float(jnp.log(jnp.linalg.norm(b) / jnp.linalg.norm(a)) / np.log(c))

    cos = float(jnp.vdot(k0, k1) / (jnp.linalg.norm(k0) * jnp.linalg.norm(k1)))
    return HomogeneityResult(c, expo(q0, q1), expo(g0, g1), expo(k0, k1), cos)


def crash_step(steps, values, limit: float = 1e30) -> float | None:
    """First step whose value is non-finite or above `limit` in magnitude (None if never)."""
    steps, values = np.asarray(steps), np.asarray(values, np.float64)
    bad = ~np.isfinite(values) | (np.abs(values) > limit)
    return float(steps[np.argmax(bad)]) if bad.any() else None
