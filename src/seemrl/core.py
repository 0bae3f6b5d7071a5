"""The pure training core: jitted, side-effect free functions of states and data.

`make_chunk` is the whole training step of the driver: a `lax.scan` over up to `log_every`
updates with the seeds vmapped side by side, sampling minibatches from the on-device dataset
inside the scan; the carry is passed explicitly. The rest turns a chunk's per step metrics
into what the driver decides on (divergence, stops) and logs. No files, no clocks, no
signals here: the `train.Trainer` shell does those.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.algos import Algorithm
from seemrl.types import Batch, EnvSpec


def init_states(algo: Algorithm, algo_cfg, seeds, spec: EnvSpec):
    """Stacked states, one per seed along axis 0; seed s always starts from PRNGKey(s)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.vmap(lambda k: algo.init(k, spec, algo_cfg))(keys)


def q_ceiling(rewards: np.ndarray, gamma: float) -> float:
    """max|r| / (1 − γ): the largest |discounted return| possible with these rewards, so a
    bound no correct critic's |Q| can pass."""
    return float(np.max(np.abs(rewards)) / (1.0 - gamma))


def _over_seeds(fn):
    """`jax.vmap(fn)` over the leading seed axis of the first argument (the others shared).

    A lone seed runs unbatched and gets its axis back after: on XLA CPU a size-1 axis sends
    every fused multiply-reduce to a slow YNNPACK path (~25x slower than the same reduction
    without it), which made LayerNorm critics 2.3x slower than plain ones at one seed, while
    with the axis gone they are ~1.25x slower (benchmarks/throughput.py).
    """

    def mapped(states, *shared):
        if jax.tree.leaves(states)[0].shape[0] == 1:
            out = fn(jax.tree.map(lambda x: x[0], states), *shared)
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(states, *shared)

    return mapped


def make_chunk(algo: Algorithm, algo_cfg, spec: EnvSpec, batch_size: int):
    """A jitted `chunk(states, data, step0, active, num_steps, run_steps=None)
    -> (states, metrics, params)`.

    With `run_steps` (a traced int ≤ num_steps) only the first `run_steps` updates happen and
    the other iterations pass the state through (their metrics are NaN): one compiled chunk
    serves every segment length, so SEEM measurements can cut a log chunk anywhere without a
    compilation per length.

    Seeds whose `active` flag is False keep their state unchanged (a diverged seed stays at
    its last finite state): they are updated with the others and their chunk is discarded at
    its end, so their metrics describe updates that were thrown away. Metrics come back per
    step and seed: (num_steps, num_seeds).
    """

    def seed_step(state, data: Batch, step):
        key, sample_key = jax.random.split(state.key)
        idx = jax.random.randint(sample_key, (batch_size,), 0, data.r_t.shape[0])
        batch = jax.tree.map(lambda x: x[idx], data)
        return algo.update(state.replace(key=key), batch, step, algo_cfg, spec)

    @functools.partial(jax.jit, static_argnames="num_steps")
    def chunk(states, data, step0, active, num_steps: int, run_steps=None):
        update = lambda s, t: _over_seeds(seed_step)(s, data, t)
        if run_steps is None:
            body = lambda s, i: update(s, step0 + i)
        else:
            shapes = jax.eval_shape(update, states, step0)[1]
            skip = lambda s, t: (s, jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype),
                                                 shapes))
            body = lambda s, i: jax.lax.cond(i < run_steps, update, skip, s, step0 + i)
        new, metrics = jax.lax.scan(body, states, jnp.arange(num_steps))
        # Once per chunk, not per step: selecting every state array at every step cost ~10 %
        # of the updates' time at 5 seeds.
        keep = lambda n, o: jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
        states = jax.tree.map(keep, new, states)
        return states, metrics, jax.vmap(lambda s: algo.param_metrics(s, algo_cfg))(states)

    return chunk


def make_policy(algo: Algorithm, algo_cfg, normalizer, spec: EnvSpec):
    """Raw observations (S, E, obs_dim) + stacked states -> actions (S, E, act_dim)."""
    mean, std = jnp.asarray(normalizer.mean), jnp.asarray(normalizer.std)

    @jax.jit
    def policy(states, obs):
        obs = (obs - mean) / std  # the same normalisation as training
        return jax.vmap(lambda s, o: algo.act(s, o, algo_cfg, spec))(states, obs)

    return policy


def crossed(step: int, num_steps: int, every: int) -> bool:
    """True at the first log point at or after each multiple of `every` (0: never)."""
    return every > 0 and step // every > (step - num_steps) // every


def first_bad_step(metrics: dict[str, np.ndarray], bound: float) -> np.ndarray:
    """(S,) index of the first step whose Q is non-finite or beyond the bound; -1 if none."""
    q = metrics["q_mean"]
    bad = ~np.isfinite(q) | (np.abs(q) > bound) | ~np.isfinite(metrics["critic_loss"])
    return np.where(bad.any(axis=0), bad.argmax(axis=0), -1)


def chunk_records(step, seeds, metrics, params, first_bad, steps_per_sec) -> list[dict]:
    records = []
    for j, seed in enumerate(seeds):
        stop = first_bad[j] if first_bad[j] >= 0 else None
        rec: dict[str, Any] = {"step": step, "seed": int(seed)}
        with np.errstate(all="ignore"):
            for k, v in metrics.items():
                col = v[:stop, j]
                col = col[np.isfinite(col)]
                rec[f"train/{k}"] = float(col.mean()) if col.size else float("nan")
        for k, v in params.items():
            rec[f"train/{k}"] = float(v[j])
        rec["time/steps_per_sec"] = steps_per_sec
        records.append(rec)
    return records


def live_records(records: list[dict[str, Any]], active: np.ndarray) -> list[dict[str, Any]]:
    """The records worth logging: a seed stopped before this chunk has no training (its
    updates are thrown away) and no SEEM; only its evaluation at its last finite state, if
    there was one, marked `stopped: true`."""
    out = []
    for rec, live in zip(records, active, strict=True):
        if live:
            out.append(rec)
            continue
        kept = {k: v for k, v in rec.items() if k.startswith("eval/")}
        if kept:
            out.append({"step": rec["step"], "seed": rec["seed"], "stopped": True, **kept})
    return out
