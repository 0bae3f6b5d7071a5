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
