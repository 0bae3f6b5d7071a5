"""In-training SEEM measurement on a fixed probe batch (what the driver logs under `seem/`).

Call pattern (one seed; vmap over a leading seed axis for several, see `make_probe_fn`):

    measure = make_probe_fn(critic_cfg, policy_fn, gamma)           # jitted once
    memory = init_memory(critic_cfg, critic_params, probe)           # first call: NaN cosines
    metrics, memory = measure(critic_params, actor_params, probe, memory)

Cost (fast MLP path, 256-256 critic): two feature passes over N probe transitions, two N×N
Grams (≈ 4·N²·Σwidths flops), one host float64 eigvals of an N×N matrix (≈ 10·N³ flops, the
dominant term for N ≳ 1000) and one probe-loss gradient. See benchmarks/seem_cost.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seemrl.diagnostics import ntk
from seemrl.diagnostics.seem import max_real_eig
from seemrl.networks import MLPConfig, QNetwork, head_params
from seemrl.types import Batch

METRIC_KEYS = ("seem/normalized", "seem/raw", "seem/q_data", "seem/q_policy",
               "seem/param_norm", "seem/ntk_cos", "seem/param_cos", "seem/grad_cos")


class ProbeMemory(NamedTuple):
    """What the next measurement compares against (cosines to the previous measurement).

    ntk: (N, N) G(X, X). params: (P,) flat parameters. grad: (P,) flat probe TD gradient.
    valid: () bool, False before the first measurement (cosines are then NaN).
    """

    ntk: jnp.ndarray
    params: jnp.ndarray
    grad: jnp.ndarray
    valid: jnp.ndarray


def _flat(tree) -> jnp.ndarray:
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def _cos(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    a, b = a.ravel(), b.ravel()
    # Clipped: float32 rounding can put a cosine of identical vectors at 1 + 1e-7.
    return jnp.clip(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)), -1.0, 1.0)


def _head(critic, critic_params, head: int):
    """(q(params, obs, act), the measured params, fast-path config or None)."""
    if isinstance(critic, MLPConfig):
        net = QNetwork(critic)
        params = head_params(critic_params, head)
        return (lambda p, o, a: net.apply({"params": p}, o, a)), params, critic
    return critic, critic_params, None


def init_memory(critic: MLPConfig | ntk.QFn, critic_params, probe: Batch,
                head: int = 0) -> ProbeMemory:
    """An empty memory (valid=False) of the right shapes, so the first call traces the same."""
    _, params, _ = _head(critic, critic_params, head)
    n, p = probe.obs_tm1.shape[0], ntk.num_params(params)
    return ProbeMemory(jnp.zeros((n, n)), jnp.zeros((p,)), jnp.zeros((p,)),
                       jnp.zeros((), bool))


def probe_metrics(critic: MLPConfig | ntk.QFn, critic_params, policy_fn: Callable,
                  actor_params, probe: Batch, gamma: float,
                  previous: ProbeMemory | None = None, *, head: int = 0,
                  mask_terminal: bool = True, host_eig: bool = False):
    """SEEM and the stable-direction evidence on a fixed probe batch (jittable).

    Args:
      critic: an MLPConfig (critic_params is a `networks.Critic` ensemble; head `head` is
        measured with the fast exact NTK path) or any pure q(critic_params, obs, act) -> (N,)
        (generic path: `ntk.td_grams`, structured for the h @ W kernels it finds in q).
      critic_params: critic parameters.
      policy_fn: pure policy_fn(actor_params, obs (N, obs_dim)) -> (N, act_dim) giving X*:
        the current actor without noise is the authors' choice; a target actor with TD3's
        clipped smoothing noise (drawn from a fixed key inside policy_fn, so the probe stays
        fixed) measures the operator the TD target actually uses.
      actor_params: actor parameters.
      probe: fixed Batch of N transitions (obs_tm1, a_tm1, r_t, obs_t, discount_t).
      gamma: discount.
      previous: memory from the previous call; None (or `init_memory`) on the first.
      head: which ensemble head (MLPConfig only; the authors used head 0).
      mask_terminal: mask the γ term by discount_t = 1 − d (see seem.py for why).
      host_eig: leave max Re λ(A) to the caller (`seem/raw` and `seem/normalized` are NaN
        and A is returned too): SeemMonitor finds it on the host after the jitted call,
        because a host callback inside jit can deadlock when XLA has a single CPU thread
        (a process pinned to one core).

    Returns:
      (metrics, memory): metrics maps each of METRIC_KEYS to a float32 scalar
      (cosines NaN on the first call; `seem/param_norm` is the norm of the measured params:
      the head for an MLPConfig, all of critic_params for a generic q); memory feeds the
      next call. With `host_eig`: (metrics, memory, A).
    """
    q, params, cfg = _head(critic, critic_params, head)
    if previous is None:
        previous = init_memory(critic, critic_params, probe, head)
    obs, act, obs_next = probe.obs_tm1, probe.a_tm1, probe.obs_t
    next_act = policy_fn(actor_params, obs_next)
    c = gamma * (probe.discount_t if mask_terminal else jnp.ones_like(probe.discount_t))

    if cfg is not None:
        fx = ntk.mlp_features(cfg, params, obs, act)
        fs = ntk.mlp_features(cfg, params, obs_next, next_act)
        A, g_xx = ntk.mlp_td_gram_from_features(cfg, fs, fx, c, with_gxx=True)
    else:
        A, g_xx = ntk.td_grams(q, params, obs, act, obs_next, next_act, c)
    raw = jnp.float32(jnp.nan) if host_eig else max_real_eig(A)
    fro = jnp.linalg.norm(A)

    def td_loss(p):
        # Target held fixed (stop_gradient), as in the SEEM derivation (target = online net).
        y = probe.r_t + c * jax.lax.stop_gradient(q(p, obs_next, next_act))
        return 0.5 * jnp.mean(jnp.square(q(p, obs, act) - y))

    flat_params = _flat(params)
    flat_grad = _flat(jax.grad(td_loss)(params))
    nan = jnp.float32(jnp.nan)
    metrics = {
        "seem/normalized": raw / fro,
        "seem/raw": raw,
        "seem/q_data": jnp.mean(q(params, obs, act)),
        "seem/q_policy": jnp.mean(q(params, obs, policy_fn(actor_params, obs))),
        "seem/param_norm": jnp.linalg.norm(flat_params),
        "seem/ntk_cos": jnp.where(previous.valid, _cos(g_xx, previous.ntk), nan),
        "seem/param_cos": jnp.where(previous.valid, _cos(flat_params, previous.params), nan),
        "seem/grad_cos": jnp.where(previous.valid, _cos(flat_grad, previous.grad), nan),
    }
    metrics = {k: v.astype(jnp.float32) for k, v in metrics.items()}
    memory = ProbeMemory(g_xx, flat_params, flat_grad, jnp.ones((), bool))
    return (metrics, memory, A) if host_eig else (metrics, memory)


def make_probe_fn(critic: MLPConfig | ntk.QFn, policy_fn: Callable, gamma: float, *,
                  head: int = 0, mask_terminal: bool = True, num_seeds: int | None = None):
    """A jitted measure(critic_params, actor_params, probe, memory) -> (metrics, memory).

    With `num_seeds`, every argument carries a leading seed axis and the function is
    vmapped over it (the host eigensolver then receives all seeds' A at once).
    """
    fn = functools.partial(probe_metrics, critic, policy_fn=policy_fn, gamma=gamma,
                           head=head, mask_terminal=mask_terminal)

    def measure(critic_params, actor_params, probe, memory):
        return fn(critic_params, actor_params=actor_params, probe=probe, previous=memory)

    return jax.jit(jax.vmap(measure) if num_seeds is not None else measure)
