"""Empirical neural tangent kernel (NTK) of a critic: per-sample gradients and Gram blocks.

Notation (SPEC §2): φ(x) = ∇_θ Q_θ(x) ∈ R^P, Φ(X) ∈ R^{N×P}, G(U, V) = Φ(U) Φ(V)ᵀ.

Two paths:

* Generic, for any pure `q(params, obs, act) -> (N,)`: `per_sample_grads` (vmap of grad,
  no Python loop over samples) and `gram`, which never holds more than `chunk_size` rows of
  Φ: it linearises q once on V and pushes each chunk of U's gradients through that JVP, so
  G(U, V)[i, :] = J_V φ(u_i). Memory O(chunk_size·P + N·activations), flops ≈ N_U·N_V·P.
* Fast exact path for seemrl MLP critics (`QNetwork(config)` parameters): a Dense layer with
  input h and backprop signal δ = ∂Q/∂z has ∂Q/∂W = h δᵀ and ∂Q/∂b = δ, so its Gram
  contribution is (H_U H_Vᵀ + 1) ⊙ (Δ_U Δ_Vᵀ); a LayerNorm n = x̂·s + β with g = ∂Q/∂n adds
  (X̂_U⊙G_U)(X̂_V⊙G_V)ᵀ + G_U G_Vᵀ. Only activations of width ~256 are kept, never Φ, so it
  costs ≈ N_U·N_V·Σwidths flops instead of N_U·N_V·P (tens of times less for 256-256).

`scale=True` divides every per-sample gradient by √P (the authors' convention), i.e. G by P.
SEEM normalised by ‖A‖_F is invariant to it; the raw eigenvalue is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seemrl.networks import ACTIVATIONS, MLPConfig

QFn = Callable[[Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def num_params(params) -> int:
    """P, the number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def _single_grad(q: QFn) -> Callable:
    """φ(x) for one sample: grad of q on a batch of one (q only has to accept batches)."""

    def q_one(params, o, a):
        return q(params, o[None], a[None])[0]

    return jax.grad(q_one)


def _flatten_rows(tree) -> jnp.ndarray:
    """A pytree whose leaves have a leading N axis -> (N, P), leaves in tree order."""
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)


def map_rows(f: Callable, xs, chunk_size: int):
    """vmap f over rows of the arrays in `xs`, `chunk_size` rows at a time (a lax.map over
    chunks); f may return a pytree. Rows are zero-padded to a whole number of chunks, so a
    single body is compiled (lax.map's own batch_size compiles a second one for the
    remainder), then cut back to N."""
    n = jax.tree.leaves(xs)[0].shape[0]
    chunk = max(1, min(chunk_size, n))
    pad = -n % chunk

    def split(x):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((-1, chunk) + x.shape[1:])

    out = jax.lax.map(jax.vmap(f), jax.tree.map(split, xs))
    return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)


def per_sample_grads(q: QFn, params, obs: jnp.ndarray, act: jnp.ndarray, *,
                     scale: bool = False, chunk_size: int | None = None) -> jnp.ndarray:
    """Φ(X): per-sample gradients of Q, vectorised with vmap(grad).

    Args:
      q: pure q(params, obs (N, obs_dim), act (N, act_dim)) -> (N,).
      params: parameter pytree of q.
      obs: (N, obs_dim). act: (N, act_dim).
      scale: divide each row by √P.
      chunk_size: compute rows in vmapped chunks of this size (bounds intermediate memory);
        None = all at once.

    Returns:
      (N, P) float array, columns in `jax.tree.leaves(params)` order.
    """
    g = _single_grad(q)

    def row(oa):
        return jnp.concatenate([x.ravel() for x in jax.tree.leaves(g(params, oa[0], oa[1]))])

    if chunk_size is None:
        phi = _flatten_rows(jax.vmap(g, in_axes=(None, 0, 0))(params, obs, act))
    else:
        phi = map_rows(row, (obs, act), chunk_size)
    return phi / jnp.sqrt(num_params(params)) if scale else phi


def gram(q: QFn, params, obs_u: jnp.ndarray, act_u: jnp.ndarray,
         obs_v: jnp.ndarray | None = None, act_v: jnp.ndarray | None = None, *,
         scale: bool = False, chunk_size: int = 256) -> jnp.ndarray:
    """G(U, V) = Φ(U) Φ(V)ᵀ without materialising Φ.

    Each chunk of `chunk_size` rows of Φ(U) is pushed through the JVP of q linearised on V,
    so peak memory is O(chunk_size·P) plus V's activations.

    Args:
      q: pure q(params, obs, act) -> (N,).
      obs_u: (N_U, obs_dim). act_u: (N_U, act_dim).
      obs_v, act_v: (N_V, ·); default U.
      scale: divide per-sample gradients by √P (G by P).
      chunk_size: rows of Φ(U) held at once.

    Returns:
      (N_U, N_V).
    """
    if obs_v is None or act_v is None:
        obs_v, act_v = obs_u, act_u
    _, jvp_v = jax.linearize(lambda p: q(p, obs_v, act_v), params)
    g = _single_grad(q)

    def row(oa):
        return jvp_v(g(params, oa[0], oa[1]))

    G = map_rows(row, (obs_u, act_u), chunk_size)
    return G / num_params(params) if scale else G


# Largest N·P for which `td_grams` materialises Φ(X) and Φ(X*) (float32: 2 × 512 MiB); above
# it the two Gram blocks are formed chunk by chunk through JVPs (`gram`), never holding Φ.
TD_GRAMS_MAX_NP = 2**27


# Ops that only pick or rearrange a leaf's entries (each entry used at most once), so a
# kernel reached through them (e.g. one head's slice of an ensemble) keeps the Gram term
# (h_i·h_j)(δ_i·δ_j): for such a map L, L Lᵀ = I.
_SELECTIONS = frozenset({"slice", "squeeze", "reshape", "transpose", "convert_element_type",
                         "dynamic_slice", "copy", "copy_p"})


def _dense_kernels(jaxpr, n_leaves: int, n: int) -> dict[int, int]:
    """{equation index: leaf index} for every parameter leaf whose one and only use in q is
    as the right operand of a plain matmul h @ W, with h of shape (n, fan_in), reached
    directly or through selections (`_SELECTIONS`, each intermediate used once).

    Its per-sample gradient is then h_i δ_iᵀ, δ = ∂Q/∂(h @ W). Anything else (a bias, a
    LayerNorm scale, a weight used twice or inside a nested call, a batched or transposed
    contraction) is left to the exact per-sample gradients.
    """
    from jax.extend.core import Var

    uses: dict = {}
    for k, eqn in enumerate(jaxpr.eqns):
        for pos, v in enumerate(eqn.invars):
            if isinstance(v, Var):
                uses.setdefault(v, []).append((k, pos))
    for v in jaxpr.outvars:
        if isinstance(v, Var):
            uses.setdefault(v, []).append((-1, -1))
    found = {}
    for leaf, var in enumerate(jaxpr.invars[:n_leaves]):
        where = uses.get(var, [])
        while (len(where) == 1 and where[0][1] == 0
               and jaxpr.eqns[where[0][0]].primitive.name in _SELECTIONS):
            where = uses.get(jaxpr.eqns[where[0][0]].outvars[0], [])
        if len(where) != 1 or where[0][1] != 1:
            continue
        eqn = jaxpr.eqns[where[0][0]]
        if eqn.primitive.name != "dot_general":
            continue
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
        if (not lb and not rb and tuple(lc) == (1,) and tuple(rc) == (0,) and lhs.ndim == 2
                and rhs.ndim == 2 and lhs.shape[0] == n):
            found[where[0][0]] = leaf
    return found


def _structured_features(q: QFn, params, obs: jnp.ndarray, act: jnp.ndarray):
    """Per-sample NTK features of any pure q, without forming its per-sample gradients.

    q is traced once to a jaxpr; each parameter used once as the W of h @ W (the Dense
    kernels of an MLP, however it is written) is found there, and q is re-run with a zero
    perturbation added to that product: one backward pass of ΣQ gives every sample's δ (rows
    do not interact), and the forward pass its h. The remaining leaves (biases, norms,
    shared weights) get exact per-sample gradients by vmap(grad), which costs little once
    the kernels are out of it.

    Returns:
      (pairs [(H (N, fan_in), Δ (N, fan_out))], Φ_rest (N, P_rest)), or None when q has
      no such kernel or its jaxpr cannot be read.
    """
    from jax.extend.core import Literal

    leaves, treedef = jax.tree.flatten(params)
    n = obs.shape[0]

    def flat_q(ls, o, a):
        return q(jax.tree.unflatten(treedef, ls), o, a)

    try:
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                              (leaves, obs, act))
        closed = jax.make_jaxpr(flat_q)(*shapes)
    except Exception:  # a q this reader cannot trace on its own: use the exact path
        return None
    jaxpr = closed.jaxpr
    kernels = _dense_kernels(jaxpr, len(leaves), n)
    if not kernels or len(jaxpr.outvars) != 1:
        return None

    def run(perts):
        env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
        env.update(zip(jaxpr.invars, [*leaves, obs, act], strict=True))

        def read(v):
            return v.val if isinstance(v, Literal) else env[v]

        inputs = {}
        for k, eqn in enumerate(jaxpr.eqns):
            invals = [read(v) for v in eqn.invars]
            bind = eqn.primitive.get_bind_params(eqn.params)   # (subfuns, params) before 0.7
            subfuns, bind = bind if isinstance(bind, tuple) else ((), bind)
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*subfuns, *invals, **bind)
            if k in kernels:
                inputs[k] = invals[0]
                out = out + perts[k]
            if eqn.primitive.multiple_results:
                env.update(zip(eqn.outvars, out, strict=True))
            else:
                env[eqn.outvars[0]] = out
        return jnp.sum(read(jaxpr.outvars[0])), inputs

    zeros = {k: jnp.zeros(jaxpr.eqns[k].outvars[0].aval.shape, obs.dtype) for k in kernels}
    deltas, inputs = jax.grad(run, has_aux=True)(zeros)
    pairs = [(inputs[k], deltas[k]) for k in sorted(kernels)]

    rest = [i for i in range(len(leaves)) if i not in kernels.values()]
    if not rest:
        return pairs, jnp.zeros((n, 0), obs.dtype)

    def q_rest(rest_leaves, o, a):
        ls = list(leaves)
        for i, x in zip(rest, rest_leaves, strict=True):
            ls[i] = x
        return flat_q(ls, o[None], a[None])[0]

    g = jax.vmap(jax.grad(q_rest), in_axes=(None, 0, 0))([leaves[i] for i in rest], obs, act)
    return pairs, _flatten_rows(g)


def structured_td_grams(q: QFn, params, obs: jnp.ndarray, act: jnp.ndarray,
                        next_obs: jnp.ndarray, next_act: jnp.ndarray, c: jnp.ndarray):
    """(A, G(X, X)) as `td_grams` from `_structured_features`, or None when q has no h @ W
    kernel this path can find.

    Each kernel contributes (H Hᵀ) ⊙ (Δ Δᵀ) to G(X, X): ≈ N²·(fan_in + fan_out) flops
    instead of N²·fan_in·fan_out. Its A-term a'b' − ab (a = H Hᵀ, b = Δ Δᵀ, primes the X*
    rows, c folded into b') is formed as a'(b' − b) + (a' − a)b from feature differences, so
    X* near X loses no precision to cancellation. The other leaves: [diag(c) Φ(X*) − Φ(X)]
    Φ(X)ᵀ from their per-sample gradients.
    """
    fx = _structured_features(q, params, obs, act)
    fs = None if fx is None else _structured_features(q, params, next_obs, next_act)
    if fs is None:
        return None
    (pairs_x, rest_x), (pairs_s, rest_s) = fx, fs
    cc = c[:, None]
    A = (cc * rest_s - rest_x) @ rest_x.T
    g_xx = rest_x @ rest_x.T
    for (h, d), (h_s, d_s) in zip(pairs_x, pairs_s, strict=True):
        a, b = h @ h.T, d @ d.T
        A = A + (h_s @ h.T) * ((cc * d_s - d) @ d.T) + ((h_s - h) @ h.T) * b
        g_xx = g_xx + a * b
    return A, g_xx


def td_grams(q: QFn, params, obs: jnp.ndarray, act: jnp.ndarray, next_obs: jnp.ndarray,
             next_act: jnp.ndarray, c: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """A = diag(c) G(X*, X) − G(X, X) and G(X, X) for any pure q, unscaled.

    `structured_td_grams` when q's jaxpr has h @ W kernels (any JAX MLP, however it is
    written: the MLP fast path's speed). Otherwise per-sample gradients of everything and
    one matmul, [diag(c) Φ(X*) − Φ(X); Φ(X)] Φ(X)ᵀ (≈ 2·N²·P flops), or above
    N·P > TD_GRAMS_MAX_NP the chunked JVPs of `gram`, never holding Φ.

    Args:
      q: pure q(params, obs, act) -> (N,), rows independent.
      obs, act: X, (N, ·). next_obs, next_act: X*, (N, ·). c: (N,) row weights γ·(1 − d).

    Returns:
      (A (N, N), G(X, X) (N, N)).
    """
    out = structured_td_grams(q, params, obs, act, next_obs, next_act, c)
    if out is not None:
        return out
    n = obs.shape[0]
    cc = c[:, None]
    if n * num_params(params) > TD_GRAMS_MAX_NP:
        g_xx = gram(q, params, obs, act)
        return cc * gram(q, params, next_obs, next_act, obs, act) - g_xx, g_xx
    phi_x = per_sample_grads(q, params, obs, act)
    phi_s = per_sample_grads(q, params, next_obs, next_act)
    both = jnp.concatenate([cc * phi_s - phi_x, phi_x]) @ phi_x.T
    return both[:n], both[n:]


# ---------------------------------------------------------------- fast path for MLP critics


def _mlp_tree(params) -> dict:
    """Accept {"params": {"mlp": ...}}, {"mlp": ...} (QNetwork) or the MLP dict itself."""
    if "params" in params:
        params = params["params"]
    return params["mlp"] if "mlp" in params else params


def _standardize(x: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
    """x̂ exactly as flax.linen.LayerNorm computes it (fast variance, clamped at 0)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def mlp_features(config: MLPConfig, params, obs: jnp.ndarray, act: jnp.ndarray) -> dict:
    """Activations and backprop signals of a `QNetwork(config)`, all the fast Gram needs.

    Re-runs the network's forward pass with zero perturbations added after every Dense and
    LayerNorm; the gradient of ΣQ with respect to them is each sample's δ (samples do not
    interact, so one backward pass gives all N signals).

    Args:
      config: the critic's MLPConfig.
      params: parameters of one QNetwork head (see `_mlp_tree` for accepted nesting).
      obs: (N, obs_dim). act: (N, act_dim).

    Returns:
      dict with "q" (N,), "inputs" [(N, fan_in_i)] for every Dense incl. "out",
      "deltas" [(N, width_i)] for hidden Dense layers, and for each normed layer i
      "xhat"[i], "g"[i]: (N, width_i).
    """
    p = _mlp_tree(params)
    act_fn = ACTIVATIONS[config.activation]
    x = jnp.concatenate([obs, act], axis=-1)
    n = x.shape[0]
    normed = [i for i in range(len(config.hidden)) if config.normed(i)]
    zeros = {"dense": [jnp.zeros((n, w), x.dtype) for w in config.hidden],
             "norm": {i: jnp.zeros((n, config.hidden[i]), x.dtype) for i in normed}}

    def forward(perts):
        inputs, xhats, h = [], {}, x
        for i, _ in enumerate(config.hidden):
            inputs.append(h)
            dense = p[f"dense_{i}"]
            z = h @ dense["kernel"] + (dense["bias"] if config.use_bias else 0.0)
            z = z + perts["dense"][i]
            if i in perts["norm"]:
                pre = z if config.placement == "before" else act_fn(z)
                xhat = _standardize(pre)
                ln = p[f"norm_{i}"]
                out = xhat * ln["scale"] + ln["bias"] + perts["norm"][i]
                xhats[i] = xhat
                h = act_fn(out) if config.placement == "before" else out
            else:
                h = act_fn(z)
        inputs.append(h)
        q = (h @ p["out"]["kernel"])[:, 0] + (p["out"]["bias"][0] if config.use_bias else 0.0)
        return q.sum(), (q, inputs, xhats)

    signals, (q, inputs, xhats) = jax.grad(forward, has_aux=True)(zeros)
    return {"q": q, "inputs": inputs, "deltas": signals["dense"], "xhat": xhats,
            "g": signals["norm"]}


def mlp_gram_from_features(config: MLPConfig, fu: dict, fv: dict) -> jnp.ndarray:
    """G(U, V) from two `mlp_features` results (unscaled): (N_U, N_V)."""
    b = 1.0 if config.use_bias else 0.0
    # Output layer: its backprop signal is 1 for every sample.
    G = fu["inputs"][-1] @ fv["inputs"][-1].T + b
    for i in range(len(config.hidden)):
        G = G + (fu["inputs"][i] @ fv["inputs"][i].T + b) * (fu["deltas"][i] @ fv["deltas"][i].T)
    for i in fu["g"]:
        sg_u, sg_v = fu["xhat"][i] * fu["g"][i], fv["xhat"][i] * fv["g"][i]
        G = G + sg_u @ sg_v.T + fu["g"][i] @ fv["g"][i].T
    return G


def _td_block(config: MLPConfig, fs: dict, fx: dict, c: jnp.ndarray, cols: dict,
              with_gxx: bool):
    """Rows of A (and of G(X, X)) for the row features fs, fx (R rows) against all of X (cols)."""
    b = 1.0 if config.use_bias else 0.0
    cc = c[:, None]
    hs, hx, hc = fs["inputs"], fx["inputs"], cols["inputs"]
    # Output layer: backprop signal 1, so its term is linear in the features.
    A = (cc * hs[-1] - hx[-1]) @ hc[-1].T + b * (cc - 1.0)
    G = hx[-1] @ hc[-1].T + b if with_gxx else None
    for i in range(len(config.hidden)):
        ds, dx, dc = fs["deltas"][i], fx["deltas"][i], cols["deltas"][i]
        b_x = dx @ dc.T                                            # b
        A = A + (hs[i] @ hc[i].T + b) * ((cc * ds - dx) @ dc.T) + ((hs[i] - hx[i]) @ hc[i].T) * b_x
        if with_gxx:
            G = G + (hx[i] @ hc[i].T + b) * b_x
    for i in cols["g"]:
        sg_s, sg_x = fs["xhat"][i] * fs["g"][i], fx["xhat"][i] * fx["g"][i]
        sg_c = cols["xhat"][i] * cols["g"][i]
        gs, gx, gc = fs["g"][i], fx["g"][i], cols["g"][i]
        A = A + (cc * sg_s - sg_x) @ sg_c.T + (cc * gs - gx) @ gc.T
        if with_gxx:
            G = G + sg_x @ sg_c.T + gx @ gc.T
    return A, G


def mlp_td_gram_from_features(config: MLPConfig, fs: dict, fx: dict, c: jnp.ndarray, *,
                              with_gxx: bool = False, chunk_size: int | None = 256):
    """A = diag(c) G(X*, X) − G(X, X) from `mlp_features` of X* (fs) and X (fx), unscaled.

    Each layer's term is a'b' − ab with a = H Hᵀ + 1, b = Δ Δᵀ (and a', b' the X*-rows, c folded
    into b'); it is formed as a'(b' − b) + (a' − a)b with b' − b = (c Δ* − Δ)Δᵀ and
    a' − a = (H* − H)Hᵀ, the differences taken on the features before the matmuls. For X* near
    X (the usual TD probe) A is a small difference of two large Grams, and subtracting the
    float32 Grams loses ~1e-6 of ‖A‖ (5e-5 of max Re λ at N = 2560); this does not, and it
    takes fewer matmuls than the two blocks (4 per hidden layer, 1 for the output layer).
    Rows are formed `chunk_size` at a time so each block's products are combined while they
    are in cache (~1.2× faster than whole N×N products at N = 2560; still 256×256 by
    256×N matmuls).

    Args:
      config: the critic's MLPConfig.
      fs, fx: `mlp_features` on X* and X (the same N rows, row i of X* paired with row i of X).
      c: (N,) row weights γ·(1 − d) (or γ).
      with_gxx: also return G(X, X) (one more matmul per hidden layer).
      chunk_size: rows per block; None = all at once.

    Returns:
      A (N, N), or (A, G(X, X)) with `with_gxx`.
    """
    n = c.shape[0]
    if chunk_size is None or n <= chunk_size:
        A, G = _td_block(config, fs, fx, c, fx, with_gxx)
    else:
        def row(r):
            one = jax.tree.map(lambda x: x[None], r)
            return jax.tree.map(lambda x: x[0], _td_block(config, *one, fx, with_gxx))

        A, G = map_rows(row, (fs, fx, c), chunk_size)
    return (A, G) if with_gxx else A


def mlp_gram(config: MLPConfig, params, obs_u: jnp.ndarray, act_u: jnp.ndarray,
             obs_v: jnp.ndarray | None = None, act_v: jnp.ndarray | None = None, *,
             scale: bool = False) -> jnp.ndarray:
    """Fast exact G(U, V) for one `QNetwork(config)` head: (N_U, N_V).

    Equals `gram(q, params, ...)` for q = QNetwork(config).apply to float32 precision.
    """
    fu = mlp_features(config, params, obs_u, act_u)
    fv = fu if obs_v is None or act_v is None else mlp_features(config, params, obs_v, act_v)
    G = mlp_gram_from_features(config, fu, fv)
    return G / num_params(_mlp_tree(params)) if scale else G
