"""Krylov–Schur rightmost eigenpair against LAPACK's full eig, host and device paths."""

import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.diagnostics.krylov import rightmost_eig_krylov


def _ntk_like(n, p, seed, rot, shift):
    """A = γΦ*Φᵀ − ΦΦᵀ with Φ of decaying column scales (NTK-like: big negative bulk, a cluster
    near 0) and Φ* = Φ(shift·I + K − Kᵀ) + noise; the skew part `rot` makes A non-normal with
    complex eigenvalues, shift > 1/γ makes a large positive outlier (a diverging critic)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.arange(1, p + 1)
    phi = rng.standard_normal((n, p)) * scale
    k = rng.standard_normal((p, p)) * rot / np.sqrt(p)
    phi_star = phi @ (shift * np.eye(p) + k - k.T) + 0.1 * rng.standard_normal((n, p)) * scale
    return 0.99 * phi_star @ phi.T - phi @ phi.T


def _rightmost(a):
    w, v = np.linalg.eig(a)
    i = int(np.argmax(w.real))
    lam, vec = w[i], v[:, i]
    return (np.conj(lam), np.conj(vec)) if lam.imag < 0 else (lam, vec)


CASES = [(seed, rot, shift) for seed in (0, 1, 3) for rot, shift in ((0.3, 1.0), (1.0, 1.0))]
CASES += [(2, 0.3, 1.0), (0, 0.3, 1.3)]


@pytest.mark.parametrize("where", ["host64", "host32", "device32"])
def test_equals_full_eig_on_ntk_like_spectra(where):
    complex_seen = real_seen = False
    for seed, rot, shift in CASES:
        a = _ntk_like(400, 300, seed, rot, shift)
        lam, vec = _rightmost(a)
        complex_seen |= abs(lam.imag) > 1e-3 * abs(lam)
        real_seen |= lam.imag == 0
        x = {"host64": a, "host32": a.astype(np.float32),
             "device32": jnp.asarray(a, jnp.float32)}[where]
        out = rightmost_eig_krylov(x)
        assert out is not None, (seed, rot, shift)
        got, got_vec = out
        # float32 products: the eigenvalue of a float32-rounded A, to float32 precision.
        rel = 1e-9 if where == "host64" else 1e-4
        assert got == pytest.approx(lam, rel=rel, abs=rel * np.abs(a).max()), (seed, rot, shift)
        assert abs(np.vdot(got_vec, vec / np.linalg.norm(vec))) == pytest.approx(
            1.0, abs=1e-6 if where == "host64" else 1e-3)
        assert np.iscomplexobj(got_vec) == (got.imag != 0)
    assert complex_seen and real_seen          # both kinds of rightmost eigenvalue are covered


def test_thick_restarts():
    # A basis of 40 cannot resolve the rightmost eigenvalue in one cycle: the Schur restarts
    # have to carry it.
    a = _ntk_like(400, 300, 0, 0.3, 0.9)
    lam, _ = _rightmost(a)
    assert rightmost_eig_krylov(a, basis=40, max_restarts=0) is None
    got, _ = rightmost_eig_krylov(a, basis=40, max_restarts=40)
    assert got == pytest.approx(lam, rel=1e-6)
    # float32 basis and products: here λ ≈ 2.5e-4·‖A‖₂, so float32 rounding of the products
    # (~√N·eps·‖A‖) is ~1e-4 of λ; rounding A itself to float32 moves λ by 5e-6.
    got, _ = rightmost_eig_krylov(jnp.asarray(a, jnp.float32), basis=40, max_restarts=40)
    assert got == pytest.approx(lam, rel=1e-3)


def test_strongly_non_normal():
    # Strong skew part: the Ritz values wander, and for seed 4 a well separated complex pair
    # converges long before the true (real) rightmost eigenvalue has formed; the "settled" rule
    # must not accept it.
    for seed in (2, 4, 5):
        a = _ntk_like(500, 300, seed, 3.0, 0.9)
        lam, _ = _rightmost(a)
        out = rightmost_eig_krylov(a, max_restarts=2)
        assert out is not None and out[0] == pytest.approx(lam, rel=1e-6), seed


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_low_rank_invariant_subspace(sign):
    # A = BΦᵀ of rank 12 ≪ N: the Krylov space becomes invariant after 12 steps. With every
    # nonzero eigenvalue negative (sign −1) the rightmost eigenvalue is the 0 of the null space.
    rng = np.random.default_rng(3)
    phi = rng.standard_normal((400, 12))
    b = sign * phi @ np.diag(np.linspace(0.5, 2.0, 12)) + 0.05 * rng.standard_normal((400, 12))
    a = b @ phi.T
    lam, _ = _rightmost(a)
    for x in (a, jnp.asarray(a, jnp.float32)):
        got, vec = rightmost_eig_krylov(x)
        scale = np.abs(np.linalg.eigvals(a)).max()
        tol = 1e-9 if isinstance(x, np.ndarray) else 1e-5
        assert abs(got - lam) <= tol * scale
        assert np.linalg.norm(a @ vec - got * vec) <= 10 * tol * scale


def test_deterministic():
    a = _ntk_like(400, 300, 0, 1.0, 1.0)
    assert rightmost_eig_krylov(a)[0] == rightmost_eig_krylov(a)[0]
