"""SEEM during training: a fixed probe batch per seed, measured every `seem_every` steps.

The training driver owns one `SeemTracker`. Each seed's probe is drawn once, before
training, from the training subset with `numpy.random.default_rng(seed)` (the authors drew one
fixed probe of 2 560 transitions). X* uses the algorithm's current deterministic policy, as the
authors did. The memory needed for the direction cosines (previous NTK, parameters and probe
gradient) is part of the checkpoint, so a resumed run logs the same cosines.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import probe as probe_lib
from seemrl.types import Batch


def draw_probe(data: Batch, size: int, seed: int) -> Batch:
    """`size` distinct transitions (all of them when the data is smaller), fixed by `seed`."""
    n = int(data.r_t.shape[0])
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return jax.tree.map(lambda x: x[idx], data)


def critic_spec(algo, algo_cfg):
    """What probe_metrics measures: the MLPConfig of a seemrl `Critic` (exact fast NTK path)
    when that path covers it, else head 0 of the algorithm's critic as a pure function (generic
    path; e.g. BatchNorm or spectral norm, measured on the deterministic network)."""
    if algo_cfg.critic_mlp().fast_ntk:
        return algo_cfg.critic_mlp()
    return algo.critic_q(algo_cfg, 0)


class SeemTracker:
    def __init__(self, algo, algo_cfg, prepared, cfg, seeds: list[int], states):
        self.seeds = seeds
        spec = prepared.spec
        policy_fn = lambda state, obs: algo.act(state, obs, algo_cfg, spec)
        critic = critic_spec(algo, algo_cfg)
        self._measure = probe_lib.make_probe_fn(critic, policy_fn, algo_cfg.gamma,
                                                num_seeds=len(seeds))
        probes = [draw_probe(prepared.data, cfg.seem_probe, s) for s in seeds]
        self.probes = jax.tree.map(lambda *x: jnp.stack(x), *probes)
        # An empty memory (valid=False) of the right shapes: checkpoints always hold the same
        # structure, and the first measurement logs NaN cosines.
        init = lambda params, probe: probe_lib.init_memory(critic, params, probe)
        self.memory = jax.vmap(init)(states.critic_params, self.probes)

    def measure(self, states) -> list[dict[str, Any]]:
        """One record of `seem/...` floats per seed."""
        metrics, self.memory = self._measure(states.critic_params, states, self.probes,
                                             self.memory)
        metrics = jax.device_get(metrics)
        return [{k: float(v[j]) for k, v in metrics.items()} for j in range(len(self.seeds))]
