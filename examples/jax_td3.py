"""SeemMonitor in a plain JAX + optax TD3 loop (seemrl's flax networks, your own update).

Same setting as examples/torch_td3.py (it diverges without LayerNorm): TD3 with no BC term,
a hard target copy (τ = 1) at every actor step, γ 0.99, Adam 3e-4, 1 % of hopper-medium.

    python examples/jax_td3.py                  # predicted, then Q passes the ceiling
    python examples/jax_td3.py --layer-norm     # no prediction, no divergence
    python examples/jax_td3.py --generic        # measure through the any-critic path

The monitor is given the critic's `MLPConfig`, so it uses the exact fast NTK path the training
driver uses; `--generic` gives it `q_head_fn(config, 0)`, a plain q(params, obs, act), as any
other JAX critic would be measured (its Dense kernels found in q's jaxpr: as fast, to float
precision the same numbers).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seemrl.data import load_dataset
from seemrl.data.subset import subset
from seemrl.diagnostics import SeemMonitor
from seemrl.networks import Actor, Critic, MLPConfig, q_head_fn

LOCAL_COPY = "~/.seemrl/datasets/hopper-medium-v0.hdf5"
GAMMA, POLICY_NOISE, NOISE_CLIP, ALPHA, LR, BATCH = 0.99, 0.2, 0.5, 2.5, 3e-4, 256


def load(path: str, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """1 % of hopper-medium, states z-normalised (std + 1e-3, as TD3+BC)."""
    local = os.path.expanduser(path)
    data = subset(load_dataset(local if os.path.exists(local) else "hopper-medium"),
                  fraction, seed)
    mean, std = data.observations.mean(0), data.observations.std(0) + 1e-3
    return {"obs": (data.observations - mean) / std, "act": data.actions,
            "rewards": data.rewards, "next_obs": (data.next_observations - mean) / std,
            "done": data.terminals}


def make_update(actor, critic, opt):
    @jax.jit
    def critic_step(s, batch, key):
        obs, act, rew, next_obs, done = batch
        noise = jnp.clip(POLICY_NOISE * jax.random.normal(key, act.shape), -NOISE_CLIP,
                         NOISE_CLIP)
        next_act = jnp.clip(actor.apply(s["actor_t"], next_obs) + noise, -1.0, 1.0)
        target = rew + GAMMA * (1.0 - done) * critic.apply(s["critic_t"], next_obs,
                                                           next_act).min(0)

        def loss(cp):
            q = critic.apply(cp, obs, act)                          # (2, B)
            return jnp.mean(jnp.sum(jnp.square(q - target), 0)), q[0].mean()

        (_, q_mean), g = jax.value_and_grad(loss, has_aux=True)(s["critic"])
        upd, c_opt = opt.update(g, s["critic_opt"], s["critic"])
        return {**s, "critic": optax.apply_updates(s["critic"], upd), "critic_opt": c_opt}, q_mean

    @jax.jit
    def actor_step(s, obs):
        def loss(ap):  # no BC term: the setting that diverges
            q = critic.apply(s["critic"], obs, actor.apply(ap, obs))[0]
            return -(ALPHA / jax.lax.stop_gradient(jnp.abs(q).mean())) * q.mean()

        g = jax.grad(loss)(s["actor"])
        upd, a_opt = opt.update(g, s["actor_opt"], s["actor"])
        actor_p = optax.apply_updates(s["actor"], upd)
        # τ = 1: the targets are hard copies at every actor step.
        return {**s, "actor": actor_p, "actor_opt": a_opt, "actor_t": actor_p,
                "critic_t": s["critic"]}

    return critic_step, actor_step


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer-norm", action="store_true", help="LayerNorm in the critics")
    p.add_argument("--generic", action="store_true", help="measure via a plain q function")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--dataset", default=LOCAL_COPY)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-monitor", action="store_true", help="train only (to time the loop)")
    args = p.parse_args(argv)
    data = {k: np.asarray(v, np.float32)
            for k, v in load(args.dataset, args.fraction, args.seed).items()}
    n, obs_dim, act_dim = len(data["obs"]), data["obs"].shape[1], data["act"].shape[1]
    critic_cfg = MLPConfig(hidden=(256, 256), norm="layernorm" if args.layer_norm else "none")
    actor, critic = Actor(MLPConfig(hidden=(256, 256)), act_dim), Critic(critic_cfg)
    k_actor, k_critic, key = jax.random.split(jax.random.key(args.seed), 3)
    ap = actor.init(k_actor, jnp.zeros((1, obs_dim)))
    cp = critic.init(k_critic, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
    opt = optax.adam(LR)
    state = {"actor": ap, "critic": cp, "actor_t": ap, "critic_t": cp,
             "actor_opt": opt.init(ap), "critic_opt": opt.init(cp)}
    critic_step, actor_step = make_update(actor, critic, opt)

    # The monitor: head 0 of the critic, the deterministic actor π(s) = actor.apply(params, s).
    monitor = SeemMonitor(q_head_fn(critic_cfg, 0) if args.generic else critic_cfg, data, GAMMA,
                          policy=actor.apply, seed=args.seed)
    print(f"{n:,} transitions, Q ceiling max|r|/(1-γ) = {monitor.ceiling:.1f}")
    rng = np.random.default_rng(args.seed)
    cols = [jnp.asarray(data[k]) for k in ("obs", "act", "rewards", "next_obs", "done")]
    predicted_at = diverged_at = None
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = jnp.asarray(rng.integers(0, n, BATCH))
        batch = [c[idx] for c in cols]
        key, k = jax.random.split(key)
        state, q_mean = critic_step(state, batch, k)
        if step % 2 == 0:
            state = actor_step(state, batch[0])
        if args.no_monitor:
            continue
        out = monitor.step(step, state["critic"], state["actor"], q_mean=float(q_mean))
        if out.predicted and predicted_at is None:
            predicted_at = out.predicted_at
            print(f"step {step}: {out.verdict.describe()}  (mean Q on the probe "
                  f"{out.metrics['seem/q_data']:.1f})")
        if out.diverged_at is not None:
            diverged_at = out.diverged_at
            print(f"step {step}: Q passed the ceiling {monitor.ceiling:.1f} "
                  f"(batch mean Q {float(q_mean):.3g})")
            break
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    print(f"predicted_at={predicted_at} diverged_at={diverged_at} after {step} steps; "
          f"{seconds:.1f} s, of which the monitor {monitor.seconds:.1f} s "
          f"({monitor.measurements} measurements)")
    return {"predicted_at": predicted_at, "diverged_at": diverged_at, "steps": step,
            "seconds": seconds, "monitor_seconds": monitor.seconds,
            "measurements": monitor.measurements, "latest": dict(monitor.metrics)}


if __name__ == "__main__":
    main()
