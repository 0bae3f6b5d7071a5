"""SEEM, the Self-Excite Eigenvalue Measure (SPEC §2).

    A = γ · diag(c) · G(X*, X) − G(X, X),   SEEM_raw = max Re λ(A),   SEEM = SEEM_raw / ‖A‖_F

with X = [(s_i, a_i)], X* = [(s'_i, π(s'_i))] and c = 1 − d (terminal mask) or c = 1.

Terminal mask default: masked **iff `done` is given**. Why: the linearised TD dynamics that
SEEM is derived from, e' = (I + η/N · A_d) e, have the target r + γ(1−d)Q(X*), so A_d (masked)
is the operator that actually multiplies the residual. The authors did not mask; pass
`done=None` to reproduce their numbers (on locomotion data < 1 % of transitions are terminal,
so the two rarely differ).

Computation: when q's jaxpr has h @ W kernels (any JAX MLP), A is formed from each kernel's
layer inputs and backprop signals (`ntk.structured_td_grams`, O(N²·Σwidths)); otherwise
A = B Φ(X)ᵀ with rows b_i = ∇_θ[γ c_i Q(x*_i) − Q(x_i)] — one per-sample gradient per row and
one JVP of Q linearised on X, i.e. half the work of forming both Gram blocks (O(N²P)).

* method="dense": A formed (chunked, never Φ), then its rightmost eigenpair: LAPACK geev
  (float64, host) for N ≤ 128, above that Krylov–Schur on the formed matrix (`krylov.py`:
  ~150–250 products of O(N²) instead of O(N³); full geev if it does not converge).
* method="matrix_free": A·v = γ c ⊙ Φ*(Φᵀv) − Φ(Φᵀv) by one VJP and two JVPs; the rightmost
  eigenvalue by the same Krylov–Schur solver on that operator (`krylov.py`); ‖A‖_F² =
  tr(AᵀA) by a Hutch++-style randomised estimator (exact on a sketched top subspace plus
  Hutchinson on the rest), which is near exact because NTK Grams have fast-decaying spectra.
  O(N·P) memory; use it when N² floats or N³ flops are too much.
* method="auto": dense for N ≤ 4096, else matrix-free.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import krylov, ntk
from seemrl.networks import MLPConfig, head_params

AUTO_DENSE_MAX_N = 4096
# Above this N the Krylov solver beats LAPACK's full geev even with a basis of ~N vectors
# (N = 256: 0.02–0.06 s vs 0.05–0.3 s here, the higher numbers under BLAS thread contention).
FULL_EIG_MAX_N = 128


@dataclasses.dataclass(frozen=True)
class SeemResult:
    """One SEEM measurement.

    Attributes:
      normalized: max Re λ(A) / ‖A‖_F (the authors' plotted SEEM; scale-invariant).
      raw: max Re λ(A).
      frobenius: ‖A‖_F (estimated for method="matrix_free").
      eigenvalue: the eigenvalue with the largest real part (complex).
      eigenvector: (N,) unit eigenvector of that eigenvalue (complex if λ is not real).
      method: "dense" or "matrix_free".
    """

    normalized: float
    raw: float
    frobenius: float
    eigenvalue: complex
    eigenvector: np.ndarray
    method: str


def _mask(gamma: float, done, n: int) -> jnp.ndarray:
    """(N,) γ·(1 − d), or γ everywhere when done is None (the authors' unmasked A)."""
    if done is None:
        return jnp.full((n,), gamma, jnp.float32)
    return gamma * (1.0 - jnp.asarray(done, jnp.float32))


def seem_matrix(q: ntk.QFn, params, obs, act, next_obs, next_act, gamma: float = 0.99,
                done=None, *, scale: bool = False, chunk_size: int = 256) -> jnp.ndarray:
    """A = γ diag(1−d) G(X*, X) − G(X, X) for any pure q: (N, N).

    By `ntk.structured_td_grams` when q's jaxpr has h @ W kernels (exact; the MLP fast path's
    cost), else B Φᵀ chunk by chunk (below).

    Args:
      q: pure q(params, obs (N, ·), act (N, ·)) -> (N,).
      obs, act: X, (N, obs_dim), (N, act_dim). next_obs, next_act: X*, same shapes.
      gamma: discount. done: (N,) terminal flags or None (no mask).
      scale: divide per-sample gradients by √P. chunk_size: rows of B held at once.
    """
    c = _mask(gamma, done, obs.shape[0])
    structured = ntk.structured_td_grams(q, params, obs, act, next_obs, next_act, c)
    if structured is not None:
        return structured[0] / ntk.num_params(params) if scale else structured[0]
    _, jvp_x = jax.linearize(lambda p: q(p, obs, act), params)

    def td_q(p, o, a, os, as_, ci):
        return ci * q(p, os[None], as_[None])[0] - q(p, o[None], a[None])[0]

    grad_b = jax.grad(td_q)

    def row(xs):
        return jvp_x(grad_b(params, *xs))

    A = ntk.map_rows(row, (obs, act, next_obs, next_act, c), chunk_size)
    return A / ntk.num_params(params) if scale else A


def _as_array(A):
    """A as given when it is a jax.Array (the Krylov solver then works on its device) or a
    float32/float64 NumPy array, else as a float64 NumPy array."""
    if isinstance(A, jax.Array):
        return A
    A = np.asarray(A)
    return A if A.dtype in (np.float32, np.float64) else A.astype(np.float64)


def top_eig(A, eig: str = "auto") -> tuple[complex, np.ndarray]:
    """The eigenpair of A with the largest real part.

    Args:
      A: (N, N) real matrix, a NumPy or jax array (see `krylov.rightmost_eig_krylov` for where
        the work happens; float32 stays float32 for the products).
      eig: "full" (LAPACK geev in float64 on the host, O(N³)), "krylov"
        (`krylov.rightmost_eig_krylov`, O(N²) per product, ~150–250 products for NTK
        matrices at N = 2560), or "auto": full for N ≤ FULL_EIG_MAX_N, else Krylov, falling
        back to full (with a warning) if it does not converge.

    Returns:
      (λ, unit eigenvector as a NumPy array), canonicalised as in `krylov.canonical`.
    """
    if eig == "arnoldi":                 # its name while the solver was ARPACK's
        eig = "krylov"
    if eig not in ("auto", "full", "krylov"):
        raise ValueError(f"unknown eig '{eig}' (auto | full | krylov)")
    A = _as_array(A)
    n = A.shape[0]
    if eig == "krylov" or (eig == "auto" and n > FULL_EIG_MAX_N):
        out = krylov.rightmost_eig_krylov(A)
        if out is not None:
            return out
        if eig == "krylov":
            raise RuntimeError("Krylov–Schur did not converge to the rightmost eigenvalue")
        warnings.warn(f"rightmost_eig_krylov did not converge (N = {n}); using full eig",
                      RuntimeWarning, stacklevel=2)
    w, v = np.linalg.eig(np.asarray(A, np.float64))
    k = int(np.argmax(w.real))
    return krylov.canonical(w[k], v[:, k])


def _frobenius(A) -> float:
    """‖A‖_F accumulated in float64 (on the host; free for CPU arrays)."""
    flat = np.asarray(A).reshape(-1)
    return float(np.sqrt(np.einsum("i,i->", flat, flat, dtype=np.float64)))


# Compiled once per (q, shapes): q is static (hashed by identity), so keep passing the same
# function object to reuse the compiled program across measurements.
_seem_matrix_jit = jax.jit(seem_matrix, static_argnums=0, static_argnames=("scale", "chunk_size"))


def seem_from_matrix(A, eig: str = "auto") -> SeemResult:
    """Dense SEEM of a formed A (N, N), NumPy or jax (`eig`: see `top_eig`); ‖A‖_F is
    accumulated in float64."""
    A = _as_array(A)
    lam, vec = top_eig(A, eig)
    fro = _frobenius(A)
    return SeemResult(normalized=lam.real / fro if fro > 0 else 0.0, raw=lam.real,
                      frobenius=fro, eigenvalue=lam, eigenvector=vec, method="dense")


def _host_max_real_eig(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A)
    flat = A.reshape((-1,) + A.shape[-2:])
    out = np.array([top_eig(a)[0].real for a in flat], np.float32)
    return out.reshape(A.shape[:-2])


def max_real_eig(A: jnp.ndarray) -> jnp.ndarray:
    """max Re λ(A) inside jit / vmap: (..., N, N) -> (...).

    A host callback (`top_eig` on NumPy arrays), so it works on every backend; under vmap the
    host receives the whole stack at once.
    """
    out = jax.ShapeDtypeStruct(A.shape[:-2], jnp.float32)
    return jax.pure_callback(_host_max_real_eig, out, A, vmap_method="broadcast_all")


# ----------------------------------------------------------------------------- matrix-free


def _linear_ops(q, scale):
    """matvec (params, data, v) -> A v and rmatvec (params, data, u) -> Aᵀ u through JVP/VJP,
    never forming Φ or A; data = (obs, act, next_obs, next_act, c)."""

    def parts(params, data):
        obs, act, next_obs, next_act, c = data
        s = 1.0 / ntk.num_params(params) if scale else 1.0
        return (lambda p: q(p, obs, act)), (lambda p: q(p, next_obs, next_act)), c, s

    def matvec(params, data, v):
        phi_x, phi_s, c, s = parts(params, data)
        w = jax.vjp(phi_x, params)[1](v)[0]                     # Φᵀ v
        return s * (c * jax.jvp(phi_s, (params,), (w,))[1] - jax.jvp(phi_x, (params,), (w,))[1])

    def rmatvec(params, data, u):
        # Aᵀ u = Φ (Φ*ᵀ (c u) − Φᵀ u)
        phi_x, phi_s, c, s = parts(params, data)
        w_s = jax.vjp(phi_s, params)[1](c * u)[0]
        w_x = jax.vjp(phi_x, params)[1](u)[0]
        w = jax.tree.map(jnp.subtract, w_s, w_x)
        return s * jax.jvp(phi_x, (params,), (w,))[1]

    return matvec, rmatvec


@functools.lru_cache(maxsize=32)
def _jitted_ops(q, scale: bool):
    """Jitted (matvec, matmat, rmatmat), cached per q so repeated measurements reuse them."""
    matvec, rmatvec = _linear_ops(q, scale)
    batched = (None, None, 1)
    return (jax.jit(matvec), jax.jit(jax.vmap(matvec, in_axes=batched, out_axes=1)),
            jax.jit(jax.vmap(rmatvec, in_axes=batched, out_axes=1)))


def frobenius_estimate(matmat: Callable, rmatmat: Callable, n: int, *, rank: int = 64,
                       probes: int = 32, seed: int = 0) -> float:
    """‖A‖_F from products only (Hutch++-style estimator of tr(AᵀA)).

    With Q an orthonormal basis of AᵀA Ω (Ω: n×rank Rademacher), tr(AᵀA) = ‖AQ‖_F² +
    ‖A(I − QQᵀ)‖_F²; the first term is exact, the second is Hutchinson's E‖A(I−QQᵀ)z‖².
    Exact when rank ≥ n.

    Args:
      matmat: (n, k) -> A @ X. rmatmat: (n, k) -> Aᵀ @ X. n: size of A.
      rank: sketch size. probes: Hutchinson vectors for the residual. seed: RNG seed.
    """
    rng = np.random.default_rng(seed)
    if rank >= n:
        return float(np.linalg.norm(matmat(np.eye(n))))
    omega = rng.choice([-1.0, 1.0], size=(n, rank))
    basis, _ = np.linalg.qr(rmatmat(matmat(omega)))
    exact = np.sum(matmat(basis) ** 2)
    z = rng.choice([-1.0, 1.0], size=(n, probes))
    z = z - basis @ (basis.T @ z)
    resid = np.sum(matmat(z) ** 2) / probes
    return float(np.sqrt(exact + resid))


def seem_matrix_free(q: ntk.QFn, params, obs, act, next_obs, next_act, gamma: float = 0.99,
                     done=None, *, scale: bool = False, tol: float = 1e-6,
                     ncv: int = krylov.KRYLOV_BASIS, rank: int = 64, probes: int = 32,
                     seed: int = 0) -> SeemResult:
    """SEEM without forming A: Krylov–Schur for the rightmost eigenvalue, sketched ‖A‖_F.

    The eigensolver is `krylov.rightmost_eig_krylov` on the JVP/VJP operator (at N = 2560:
    ~200 products, where ARPACK's `eigs(which="LR", ncv=40)` took ~3 000); ARPACK is the
    fallback if it does not converge.

    Args: as `seem`, plus `tol` (residual tolerance relative to max(|λ|, 1e-3·ρ)), `ncv`
    (Krylov basis size), `rank`/`probes` (Frobenius estimator, see `frobenius_estimate`),
    `seed`.
    """
    from scipy.sparse.linalg import LinearOperator, eigs

    n = obs.shape[0]
    data = (obs, act, next_obs, next_act, _mask(gamma, done, n))
    mv, mm, rmm = _jitted_ops(q, scale)

    def host(f):
        return lambda x: np.asarray(f(params, data, jnp.asarray(x, jnp.float32)), np.float64)

    op = LinearOperator((n, n), matvec=host(mv), dtype=np.float64)
    out = krylov.rightmost_eig_krylov(op, basis=ncv, tol=tol, seed=seed)
    if out is None:
        warnings.warn("rightmost_eig_krylov did not converge; using ARPACK", RuntimeWarning,
                      stacklevel=2)
        v0 = np.random.default_rng(seed).standard_normal(n)
        w, v = eigs(op, k=1, which="LR", tol=tol, ncv=min(ncv, n), v0=v0, maxiter=50 * n)
        out = krylov.canonical(w[0], v[:, 0])
    lam, vec = out
    fro = frobenius_estimate(host(mm), host(rmm), n, rank=rank, probes=probes, seed=seed)
    return SeemResult(normalized=lam.real / fro if fro > 0 else 0.0, raw=lam.real,
                      frobenius=fro, eigenvalue=lam, eigenvector=vec, method="matrix_free")


# ------------------------------------------------------------------------------ public API


def seem(q: ntk.QFn, params, obs, act, next_obs, next_act, gamma: float = 0.99, done=None,
         method: str = "auto", *, scale: bool = False, chunk_size: int = 256,
         tol: float = 1e-6, ncv: int = krylov.KRYLOV_BASIS, rank: int = 64,
         probes: int = 32, seed: int = 0) -> SeemResult:
    """SEEM of any pure JAX critic on a probe batch.

    Args:
      q: pure q(params, obs (N, obs_dim), act (N, act_dim)) -> (N,).
      params: q's parameters.
      obs, act: the probe's (s_i, a_i). next_obs, next_act: (s'_i, π(s'_i)).
      gamma: discount γ.
      done: (N,) terminal flags: when given, the γ term is masked by (1 − d) (see module doc);
        None reproduces the authors' unmasked A.
      method: "dense" | "matrix_free" | "auto" (dense for N ≤ 4096).
      scale: divide per-sample gradients by √P (authors' convention; changes only `raw`).
      chunk_size: rows processed at once by the dense path (bounds memory at ~chunk·P).
      tol, ncv, rank, probes, seed: matrix-free options (see `seem_matrix_free`).

    Returns:
      SeemResult with .normalized, .raw, .frobenius, .eigenvalue, .eigenvector.
    """
    if method == "auto":
        method = "dense" if obs.shape[0] <= AUTO_DENSE_MAX_N else "matrix_free"
    if method == "dense":
        A = _seem_matrix_jit(q, params, obs, act, next_obs, next_act, gamma, done, scale=scale,
                             chunk_size=chunk_size)
        return seem_from_matrix(A)
    if method == "matrix_free":
        return seem_matrix_free(q, params, obs, act, next_obs, next_act, gamma, done,
                                scale=scale, tol=tol, ncv=ncv, rank=rank, probes=probes,
                                seed=seed)
    raise ValueError(f"unknown method '{method}' (dense | matrix_free | auto)")


def mlp_seem_matrix(config: MLPConfig, params, obs, act, next_obs, next_act,
                    gamma: float = 0.99, done=None, *, scale: bool = False) -> jnp.ndarray:
    """A for one `QNetwork(config)` head by the fast exact NTK path (jittable): (N, N).

    Formed without subtracting the two Gram blocks (`ntk.mlp_td_gram_from_features`)."""
    fx = ntk.mlp_features(config, params, obs, act)
    fs = ntk.mlp_features(config, params, next_obs, next_act)
    A = ntk.mlp_td_gram_from_features(config, fs, fx, _mask(gamma, done, obs.shape[0]))
    return A / ntk.num_params(ntk._mlp_tree(params)) if scale else A


_mlp_seem_matrix_jit = jax.jit(mlp_seem_matrix, static_argnums=0, static_argnames="scale")


def seem_mlp(config: MLPConfig, params, obs, act, next_obs, next_act, gamma: float = 0.99,
             done=None, *, scale: bool = False) -> SeemResult:
    """Dense SEEM of one seemrl MLP critic head via the fast NTK path.

    Args:
      config: the critic's MLPConfig.
      params: one head's parameters (`networks.head_params(critic_params, h)` or
        `QNetwork(config).init(...)`).
      Others: as `seem`.
    """
    A = _mlp_seem_matrix_jit(config, params, obs, act, next_obs, next_act, gamma, done,
                             scale=scale)
    return seem_from_matrix(A)


def seem_heads(config: MLPConfig, critic_params, obs, act, next_obs, next_act,
               gamma: float = 0.99, done=None, *, heads: Sequence[int] | None = None,
               scale: bool = False) -> list[SeemResult]:
    """SEEM of each selected head of a `Critic` ensemble (heads=None: all of them).

    The authors measured head 0 only; TD3's target is min over heads, so look at all.
    """
    if heads is None:
        heads = range(jax.tree.leaves(critic_params)[0].shape[0])
    return [seem_mlp(config, head_params(critic_params, h), obs, act, next_obs, next_act,
                     gamma, done, scale=scale) for h in heads]
