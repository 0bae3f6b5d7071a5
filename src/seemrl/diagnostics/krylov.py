"""The rightmost eigenpair (largest real part) of a formed non-symmetric matrix, by Krylov–Schur.

Why a solver of our own: SEEM's A = γG(X*, X) − G(X, X) has a large negative bulk and, for a
healthy critic, its rightmost eigenvalue inside a dense cluster near 0 (at N = 2560 the gap to
the next eigenvalue is ~1e-5 of the spread). A polynomial Krylov method resolves that with a
basis of ~200 vectors and no restart; LAPACK's full geev costs O(N³) (~10² s at N = 2560 on two
loaded cores), and ARPACK (`eigs(which="LR")`) either restarts erratically with k = 1 (thousands
of products for ncv ≤ 128) or, with ncv = 256, spends ~4× the products' time in its own
bookkeeping. Here:

* one basis of up to `basis` vectors is grown and the rightmost Ritz value is tested at a few
  points chosen by extrapolating its residual's geometric decrease (each test is a dense eig of
  the small projected matrix);
* it is accepted when its residual is below `tol` and no Ritz value was to its right at the
  previous test (on non-normal A the Ritz values wander: a well separated complex pair can
  converge while the true rightmost eigenvalue is still forming);
* otherwise the basis is thick-restarted on the Schur vectors of its rightmost half.

Where A lives decides where the basis lives: a `jax.Array` stays on its device and the basis is
grown there in A's dtype (float32 from the SEEM paths) by one jitted loop per test interval; a
NumPy array or a LinearOperator (the matrix-free SEEM) is worked on the host with a float64
basis. Both give the eigenvalue of the formed
float32 A to a few 1e-6 relative (the products' float32 rounding), below the error of forming
A in float32 at all. No result is certified: like every Krylov method it can miss an
eigenvalue that the starting vector barely touches; `tests/test_krylov.py` checks it against
LAPACK on NTK-like and adversarial non-normal matrices, and `None` (no convergence) lets the
caller fall back to the full eigendecomposition.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np

KRYLOV_BASIS = 256
KRYLOV_TOL = 1e-8
KRYLOV_MAX_RESTARTS = 12
FIRST_TEST = 32            # basis size at the first convergence test
TEST_STEP = (16, 64)       # bounds on the number of new vectors between two tests


_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_blas_thread():
    """OpenBLAS/MKL limited to one thread, if threadpoolctl is installed (else a no-op).

    Everything the host does here is small (k ≤ 256 dense eig / Schur) or memory-bound
    (matrix-vector products): a second BLAS thread gains little on an idle machine, and on an
    oversubscribed one its synchronisation costs 5–20× (a 200×200 eig: 0.04 s on one thread,
    0.14–0.8 s on two at load 9 on 2 cores). The lock keeps the process-wide setting's
    save/restore consistent when several threads measure at once.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with _BLAS_LOCK, threadpool_limits(1, user_api="blas"):
        yield


def canonical(lam: complex, vec: np.ndarray) -> tuple[complex, np.ndarray]:
    """Unit eigenvector, real when λ is; of a complex-conjugate pair the one with Im λ ≥ 0
    (for a real A the conjugate of an eigenpair is one), so every path reports the same."""
    vec = vec / np.linalg.norm(vec)
    if lam.imag < 0:
        lam, vec = np.conj(lam), np.conj(vec)
    if np.all(np.abs(vec.imag) < 1e-12):
        vec = vec.real
    return complex(lam), vec


class _HostBasis:
    """Arnoldi basis V (m+1, n) float64 and projection H (m+1, m) for a host A."""

    def __init__(self, A: np.ndarray, m: int, seed: int):
        n = A.shape[0]
        self.A, self.rng = A, np.random.default_rng(seed)
        self.V, self.H = np.zeros((m + 1, n)), np.zeros((m + 1, m))
        v = self.rng.standard_normal(n)
        self.V[0] = v / np.linalg.norm(v)

    def expand(self, j0: int, j1: int) -> np.ndarray:
        """Grow the basis from j0 to j1 vectors (classical Gram–Schmidt, reorthogonalised);
        returns H."""
        V, H = self.V, self.H
        for j in range(j0, j1):
            w = np.asarray(self.A @ V[j].astype(self.A.dtype, copy=False), np.float64)
            h = V[: j + 1] @ w
            w -= h @ V[: j + 1]
            h2 = V[: j + 1] @ w
            w -= h2 @ V[: j + 1]
            H[: j + 1, j] = h + h2
            beta = np.linalg.norm(w)
            if beta <= 1e-12 * np.linalg.norm(H[: j + 1, j]):
                # Invariant subspace (A of low rank): its Ritz values are exact; go on in a
                # fresh direction, with H[j+1, j] = 0 keeping the Krylov relation exact.
                w = np.asarray(self.rng.standard_normal(w.shape[0]), np.float64)
                w -= (V[: j + 1] @ w) @ V[: j + 1]
                w -= (V[: j + 1] @ w) @ V[: j + 1]
                beta = np.float64(0.0)
                V[j + 1] = w / np.linalg.norm(w)
            else:
                V[j + 1] = w / beta
            H[j + 1, j] = beta
        return H

    def combine(self, y: np.ndarray, k: int) -> np.ndarray:
        """V_kᵀ y: the Ritz vector of the projected eigenvector y (k,)."""
        return y @ self.V[:k]

    def restart(self, Z: np.ndarray, H: np.ndarray) -> None:
        """V_p ← V_m Z (p = Z.shape[1] columns), v_{p+1} ← v_{m+1}, H ← the given (m+1, m)."""
        m, p = Z.shape
        self.V[:p] = Z.T @ self.V[:m]
        self.V[p] = self.V[m]
        self.H[:] = H


@functools.partial(jax.jit, static_argnames="tiny")
def _device_expand(A, V, H, j0, j1, key, tiny: float):
    """`_HostBasis.expand` as one XLA loop; rows above j are masked out of the projections."""
    rows = jnp.arange(V.shape[0])

    def body(j, carry):
        V, H = carry
        mask = rows <= j
        w = A @ V[j]
        h = (V @ w) * mask
        w = w - h @ V
        h2 = (V @ w) * mask
        w = w - h2 @ V
        h = h + h2
        beta = jnp.linalg.norm(w)

        def fresh(_):
            r = jax.random.normal(jax.random.fold_in(key, j), w.shape, w.dtype)
            r = r - ((V @ r) * mask) @ V
            r = r - ((V @ r) * mask) @ V
            return r / jnp.linalg.norm(r), jnp.zeros_like(beta)

        broke = beta <= tiny * jnp.linalg.norm(h)
        v_next, beta = jax.lax.cond(broke, fresh, lambda _: (w / beta, beta), None)
        H = H.at[:, j].set(h.at[j + 1].set(beta))
        return V.at[j + 1].set(v_next), H

    return jax.lax.fori_loop(j0, j1, body, (V, H))


class _DeviceBasis:
    """Arnoldi basis on A's device, in A's dtype, for a `jax.Array` A."""

    def __init__(self, A: jax.Array, m: int, seed: int):
        n = A.shape[0]
        self.A, self.key = A, jax.random.key(seed)
        v = np.random.default_rng(seed).standard_normal(n)
        self.V = jnp.zeros((m + 1, n), A.dtype).at[0].set(v / np.linalg.norm(v))
        self.H = jnp.zeros((m + 1, m), A.dtype)
        # Breakdown threshold: ~10 ulp of the projections in A's precision.
        self.tiny = float(10 * jnp.finfo(A.dtype).eps)

    def expand(self, j0: int, j1: int) -> np.ndarray:
        self.V, self.H = _device_expand(self.A, self.V, self.H, j0, j1, self.key, self.tiny)
        return np.asarray(self.H, np.float64)

    def combine(self, y: np.ndarray, k: int) -> np.ndarray:
        V = np.asarray(self.V[:k], np.float64)
        return y @ V

    def restart(self, Z: np.ndarray, H: np.ndarray) -> None:
        m, p = Z.shape
        kept = jnp.asarray(Z.T, self.V.dtype) @ self.V[:m]
        self.V = self.V.at[:p].set(kept).at[p].set(self.V[m])
        self.H = jnp.asarray(H, self.H.dtype)


def _next_test(k: int, tests: list[tuple[int, float]]) -> int:
    """Basis size of the next convergence test. `tests`: (basis size, residual / bound) of the
    tests so far in this cycle. The ratio falls ~geometrically in k once the rightmost Ritz
    value starts converging: extrapolate the last two to where it reaches 1 (10 % margin),
    within TEST_STEP new vectors."""
    lo, hi = TEST_STEP
    if not tests:
        return max(FIRST_TEST, k + lo)
    if tests[-1][1] <= 1:                 # converged, waiting to be settled
        return k + lo
    if len(tests) < 2 or not tests[-2][1] > tests[-1][1] > 0:
        return k + (lo + hi) // 2
    (k0, r0), (k1, r1) = tests[-2:]
    rate = math.log(r0 / r1) / (k1 - k0)
    steps = math.ceil(1.1 * max(math.log(r1), 0.0) / rate) + 2
    return k + min(hi, max(lo, steps))


def rightmost_eig_krylov(A, *, basis: int = KRYLOV_BASIS, tol: float = KRYLOV_TOL,
                         max_restarts: int = KRYLOV_MAX_RESTARTS,
                         seed: int = 0) -> tuple[complex, np.ndarray] | None:
    """Rightmost eigenpair of a formed (N, N) real A by thick-restart Arnoldi (Krylov–Schur).

    Args:
      A: (N, N) real matrix: a `jax.Array` (worked on its device in its dtype), or on the host
        anything with `.shape`, `.dtype` and `A @ v` (a NumPy array, a scipy LinearOperator:
        float64 basis, products in A's dtype).
      basis: Krylov basis size m (capped at N − 1).
      tol: converged when the Ritz residual ‖Ax − θx‖ ≤ tol·max(|θ|, 1e-3·ρ), ρ the largest
        Ritz value modulus (a spectral-radius estimate; the floor keeps θ ≈ 0 finite).
      max_restarts: thick restarts before giving up.
      seed: start vector seed (the result is deterministic for a given A).

    Returns:
      (λ, unit eigenvector as a NumPy array), canonicalised as in `canonical`, or None if it
      did not converge.
    """
    with _one_blas_thread():
        return _krylov_schur(A, basis, tol, max_restarts, seed)


def _krylov_schur(A, basis, tol, max_restarts, seed):
    import scipy.linalg

    n = A.shape[0]
    m = min(basis, n - 1)
    keep = max(1, m // 2)
    V = _DeviceBasis(A, m, seed) if isinstance(A, jax.Array) else _HostBasis(A, m, seed)
    p, prev = 0, None                # prev: (θ, residual) of the previous test
    for _ in range(max_restarts + 1):
        k, tests = p, []
        while k < m:
            k_next = min(m, _next_test(k, tests))
            H = V.expand(k, k_next)
            k = k_next
            theta, Y = np.linalg.eig(H[:k, :k])
            i = int(np.argmax(theta.real))
            bound = tol * max(abs(theta[i]), 1e-3 * np.abs(theta).max())
            resid = abs(H[k, :k] @ Y[:, i])                 # ‖A V y − θ V y‖, y unit
            # Settled: the previous test's rightmost Ritz value was not to the right of this
            # one, or was this eigenvalue (within its own residual) approaching it.
            settled = prev is not None and (
                prev[0].real <= theta[i].real + bound
                or min(abs(prev[0] - theta[i]), abs(prev[0] - np.conj(theta[i]))) <= prev[1])
            if settled and resid <= bound:
                return canonical(theta[i], V.combine(Y[:, i], k))
            prev = (theta[i], resid)
            tests.append((k, resid / bound))
        # Thick restart: keep the Schur vectors of the `keep` rightmost Ritz values (whole
        # complex pairs), so A V_p = V_p T + v_{m+1} bᵀ and the basis grows on from p.
        re = np.sort(theta.real)[::-1]
        split = np.nonzero(re[keep:] < re[keep - 1] - 1e-10 * np.abs(theta).max())[0]
        if split.size == 0:
            return None
        cut = 0.5 * (re[keep - 1] + re[keep + split[0]])
        try:
            T, Z, p = scipy.linalg.schur(H[:m, :m], output="real",
                                         sort=lambda re, im, cut=cut: re > cut)
        except (np.linalg.LinAlgError, ValueError):
            return None
        if not 0 < p < m:
            return None
        H_new = np.zeros_like(H)
        H_new[:p, :p] = T[:p, :p]
        H_new[p, :p] = H[m, :m] @ Z[:, :p]
        V.restart(Z[:, :p], H_new)
    return None
