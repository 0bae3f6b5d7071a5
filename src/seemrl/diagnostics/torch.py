"""SEEM for PyTorch critics through `torch.func` (torch is imported lazily).

For users of PyTorch codebases (e.g. the authors' TD3+BC): call `seem_torch` in your own loop
with a critic `module(obs, act) -> (N,)` or (N, 1). Per-sample gradients come from
vmap(grad(functional_call)), never a Python loop over samples; A = B Φ(X)ᵀ with rows
b_i = ∇θ[γ c_i Q(x*_i) − Q(x_i)] (as in seem.py), then the same float64 host eigensolver.
Memory: Φ(X) is materialised (N·P floats) plus `chunk_size` rows of B.
"""

from __future__ import annotations

import numpy as np

from seemrl.diagnostics.seem import SeemResult, seem_from_matrix


def _as_tensor(x, like):
    import torch

    # A copy: JAX arrays expose read-only buffers, which torch warns about.
    return torch.as_tensor(np.array(x), dtype=like.dtype, device=like.device)


def per_sample_grads_torch(module, obs, act, *, scale: bool = False,
                           chunk_size: int | None = None):
    """Φ(X) of a torch critic: (N, P) tensor, columns in `named_parameters()` order.

    Args:
      module: torch.nn.Module with forward(obs (N, obs_dim), act (N, act_dim)) -> (N,) or (N, 1).
      obs, act: arrays or tensors. scale: divide rows by √P. chunk_size: rows per vmap call.
    """
    import torch
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in module.named_parameters()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    like = next(iter(params.values()))
    obs, act = _as_tensor(obs, like), _as_tensor(act, like)

    def q_one(p, o, a):
        return functional_call(module, (p, buffers), (o[None], a[None])).reshape(-1)[0]

    g = vmap(grad(q_one), in_dims=(None, 0, 0))
    step = chunk_size or len(obs)
    rows = []
    for i in range(0, len(obs), step):     # loop over chunks, not samples
        d = g(params, obs[i:i + step], act[i:i + step])
        rows.append(torch.cat([d[k].reshape(d[k].shape[0], -1) for k in params], dim=1))
    phi = torch.cat(rows)
    n_params = sum(v.numel() for v in params.values())
    return phi / n_params**0.5 if scale else phi


def seem_torch(module, obs, act, next_obs, next_act, gamma: float = 0.99, done=None, *,
               scale: bool = False, chunk_size: int = 256) -> SeemResult:
    """SEEM of a torch critic on a probe batch; same conventions as `seemrl.diagnostics.seem`.

    Args:
      module: torch critic, module(obs, act) -> (N,) or (N, 1).
      obs, act: (N, ·) probe (s, a). next_obs, next_act: (N, ·) (s', π(s')).
      gamma: discount. done: (N,) terminal flags (masks the γ term) or None (authors' A).
      scale: divide per-sample gradients by √P. chunk_size: rows processed at once.

    Returns:
      SeemResult (dense, float64 host eigensolver).
    """
    import torch

    with torch.no_grad():
        phi_x = per_sample_grads_torch(module, obs, act, scale=scale, chunk_size=chunk_size)
    n = phi_x.shape[0]
    c = np.full(n, gamma) if done is None else gamma * (1.0 - np.asarray(done, np.float64))
    c = _as_tensor(c, phi_x)[:, None]
    blocks = []
    for i in range(0, n, chunk_size):
        phi_s = per_sample_grads_torch(module, next_obs[i:i + chunk_size],
                                       next_act[i:i + chunk_size], scale=scale)
        b = c[i:i + chunk_size] * phi_s - phi_x[i:i + chunk_size]
        blocks.append(b @ phi_x.T)
    return seem_from_matrix(torch.cat(blocks).cpu().numpy())


# ------------------------------------------------------- structured Gram (what SeemMonitor uses)


class _Capture:
    """Forward hooks on every nn.Linear and nn.LayerNorm of a module that record what their
    per-sample gradients factor into: a Linear y = x Wᵀ + b on (N, in) inputs has
    ∂Q_i/∂W = δ_i x_iᵀ and ∂Q_i/∂b = δ_i (δ = ∂Q/∂y, one backward pass gives all N rows, as
    samples do not interact); a LayerNorm y = x̂·w + b has ∂Q_i/∂w = x̂_i ⊙ g_i, ∂Q_i/∂b = g_i.
    The hook adds a zero tensor to each output so δ is its gradient (no `.grad` is touched).
    A layer called more than once per forward, or on inputs that are not (N, features), is
    not factored: its parameters go to the torch.func fallback."""

    def __init__(self, module):
        import torch

        self.layers = [m for m in module.modules()
                       if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)
                       and any(p is not None for p in (m.weight, m.bias))]
        self.inputs: dict = {}
        self.perts: dict = {}
        self.calls: dict = {}
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]

    def _hook(self, layer, args, out):
        import torch

        self.calls[layer] = self.calls.get(layer, 0) + 1
        self.inputs[layer] = args[0].detach()
        pert = torch.zeros_like(out, requires_grad=True)
        self.perts[layer] = pert
        return out + pert

    def factored(self, layer, n: int) -> bool:
        x = self.inputs.get(layer)
        ok = self.calls.get(layer) == 1 and x is not None and x.dim() == 2 and x.shape[0] == n
        if ok and not isinstance(layer, _linear_type()):
            ok = len(layer.normalized_shape) == 1
        return ok

    def remove(self):
        for h in self._handles:
            h.remove()


def _linear_type():
    import torch

    return torch.nn.Linear


def _factors(module, obs, act):
    """Q (N,), per-layer Gram factors and the names of parameters left to the fallback.

    Returns:
      (q, factors, fallback): factors is a list of (kind, tensors) with kind "linear"
      (x, δ, has_bias) or "norm" (x̂ ⊙ g or None, g or None), all float64 (N, ·) tensors;
      fallback lists parameter names whose per-sample gradients must be formed directly.
    """
    import torch

    n = obs.shape[0]
    cap = _Capture(module)
    try:
        with torch.enable_grad():
            q = module(obs, act).reshape(-1)
            layers = [m for m in cap.layers if m in cap.perts]
            deltas = torch.autograd.grad(q.sum(), [cap.perts[m] for m in layers],
                                         allow_unused=True)
    finally:
        cap.remove()
    factors, covered = [], set()
    for layer, d in zip(layers, deltas, strict=True):
        if d is None or not cap.factored(layer, n):
            continue
        x, d = cap.inputs[layer].double(), d.double()
        if isinstance(layer, torch.nn.Linear):
            factors.append(("linear", (x, d, layer.bias is not None)))
        else:
            xhat = torch.nn.functional.layer_norm(x, layer.normalized_shape, eps=layer.eps)
            factors.append(("norm", (xhat * d if layer.weight is not None else None,
                                     d if layer.bias is not None else None)))
        covered.update(id(p) for p in (layer.weight, layer.bias) if p is not None)
    fallback = [k for k, p in module.named_parameters() if id(p) not in covered]
    return q.detach(), factors, fallback


def _gram_from_factors(fu, fv):
    """Σ over layers of the per-sample-gradient Gram between two `_factors` lists."""
    G = 0.0
    for (kind, u), (_, v) in zip(fu, fv, strict=True):
        if kind == "linear":
            a = u[0] @ v[0].T + (1.0 if u[2] else 0.0)
            G = G + a * (u[1] @ v[1].T)
        else:
            for su, sv in zip(u, v, strict=True):
                if su is not None:
                    G = G + su @ sv.T
    return G


def td_grams_torch(module, obs, act, next_obs, next_act, c):
    """A = diag(c) G(X*, X) − G(X, X) and G(X, X) of a torch critic, in float64.

    Linear and LayerNorm layers (the usual critic) are formed from their per-sample gradient
    factors (`_Capture`): ≈ N²·Σ(fan_in + fan_out) flops, never the N×P matrix Φ; any other
    parameter (or a layer used twice) gets its per-sample gradients from torch.func and a
    matmul. Exact either way.

    Args:
      module: critic, module(obs, act) -> (N,) or (N, 1). obs, act, next_obs, next_act:
        (N, ·) tensors on the module's device. c: (N,) tensor, γ·(1 − d).

    Returns:
      (A, G(X, X), Q(X)): (N, N) float64 tensors and (N,) Q on the probe's data actions.
    """
    import torch

    q_x, fx, fb_x = _factors(module, obs, act)
    _, fs, fb_s = _factors(module, next_obs, next_act)
    if [k for k, _ in fx] != [k for k, _ in fs] or fb_x != fb_s:
        raise RuntimeError("the critic took different paths on X and X* (data-dependent "
                           "layers); use seem_torch")
    g_xx = _gram_from_factors(fx, fx)
    A = c.double()[:, None] * _gram_from_factors(fs, fx) - g_xx
    if fb_x:
        with torch.no_grad():
            px = _fallback_grads(module, fb_x, obs, act)
            ps = _fallback_grads(module, fb_x, next_obs, next_act)
        g_fb = px @ px.T
        g_xx = g_xx + g_fb
        A = A + (c.double()[:, None] * ps - px) @ px.T
    return A, g_xx, q_x


def _fallback_grads(module, names, obs, act):
    """Per-sample gradients of Q with respect to the parameters `names` only: (N, P') float64."""
    import torch
    from torch.func import functional_call, grad, vmap

    all_params = {k: v.detach() for k, v in module.named_parameters()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    fixed = {k: v for k, v in all_params.items() if k not in names}
    free = {k: all_params[k] for k in names}

    def q_one(p, o, a):
        return functional_call(module, ({**fixed, **p}, buffers), (o[None], a[None])).reshape(-1)[0]

    d = vmap(grad(q_one), in_dims=(None, 0, 0))(free, obs, act)
    return torch.cat([d[k].reshape(d[k].shape[0], -1) for k in names], dim=1).double()
