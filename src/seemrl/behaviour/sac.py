"""Online SAC for training behaviour policies (the way D4RL made its locomotion datasets).

Haarnoja et al. 2018 ("Soft Actor-Critic Algorithms and Applications"): twin Q critics with
Polyak targets, a tanh-squashed Gaussian actor, and a learned temperature aiming at entropy
−act_dim. D4RL trained its behaviour policies with SAC (rlkit) and rolled out the policy's own
stochastic actions; `seemrl.behaviour.locomotion` does the same with the policies trained here.

Deviations from the paper, each for CPU speed:

* Collection and learning alternate in chunks: `chunk` env steps are collected with one jitted
  policy call per step, then chunk · utd gradient steps run in one jitted `lax.scan` over the
  replay buffer held on device. The acting policy lags by at most one chunk.
* `utd` (gradient steps per env step) may be set below the paper's 1: on a shared CPU an env
  step costs ~30x less than an update, so a CPU-bound run buys more data per second that way.
* The replay buffer holds every transition of the run (no eviction; runs are ≤ a few M steps).

Usage: `python -m seemrl.behaviour.sac --env Hopper-v5 --steps 1000000 --seed 0 --out DIR`, or
`train(SACConfig(...), out_dir)`. DIR receives `config.json`, `curves.json` (return and
D4RL-normalised score vs env steps) and `snapshots/actor_<step>.npz` (actor params, no pickle).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from seemrl import evaluation
from seemrl.evaluation import REF_SCORES, env_family, make_env
from seemrl.networks import Critic, GaussianActor, MLPConfig, sample_action


def env_short(env_id: str) -> str:
    """'Hopper-v5' -> 'hopper' (the key of REF_SCORES and of dataset names)."""
    family = env_family(env_id)
    if family is None:
        raise ValueError(f"no D4RL reference scores for env '{env_id}'")
    return family


def normalized_score(env_id: str, ret: float | np.ndarray) -> float | np.ndarray:
    """D4RL-normalised score (SPEC §6) of undiscounted return(s) in `env_id`."""
    return evaluation.normalized_score(ret, REF_SCORES[env_short(env_id)])


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """One SAC run (serialised to config.json so `--retrain` can reproduce it)."""

    env: str = "Hopper-v5"
    """Gymnasium env id."""
    steps: int = 1_000_000
    """Env steps (= gradient steps after `start_steps`)."""
    seed: int = 0
    """Seeds the networks, the env resets and the sampling."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of actor and critics."""
    activation: str = "relu"
    """Activation of actor and critics."""
    lr: float = 3e-4
    """Adam learning rate for actor, critics and temperature."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    """Transitions per gradient step."""
    start_steps: int = 5_000
    """Uniform random actions before learning starts (fills the buffer)."""
    chunk: int = 1_000
    """Env steps collected between two jitted blocks of gradient steps."""
    utd: float = 1.0
    """Gradient steps per env step (the paper's 1; lower trades cheap env steps for costly
    updates when CPU time, not samples, is the limit)."""
    eval_every: int = 10_000
    """Env steps between evaluations and actor snapshots."""
    eval_episodes: int = 10
    """Episodes per evaluation (stochastic policy, as datasets are rolled out)."""

    @property
    def mlp(self) -> MLPConfig:
        return MLPConfig(hidden=tuple(self.hidden), activation=self.activation)


def make_policy(config: MLPConfig, act_dim: int, max_action: float = 1.0):
    """A jitted `policy(params, obs (B, obs_dim), key, stochastic) -> actions (B, act_dim)`.

    stochastic=True samples the tanh-Gaussian (the noise convention of all rollouts);
    False returns max_action · tanh(mean).
    """
    actor = GaussianActor(config, act_dim)

    @jax.jit
    def policy(params, obs, key, stochastic: bool = True):
        mean, log_std = actor.apply(params, obs)  # type: ignore[misc]  # flax: Any
        sampled, _ = sample_action(mean, log_std, key)  # type: ignore[arg-type]
        return max_action * jnp.where(stochastic, sampled, jnp.tanh(mean))

    return policy


class SACState(NamedTuple):
    actor: Any
    critic: Any
    target: Any
    log_alpha: jnp.ndarray
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any


def init_state(config: SACConfig, obs_dim: int, act_dim: int, key: jax.Array) -> SACState:
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor = GaussianActor(config.mlp, act_dim).init(k_actor, obs)
    critic = Critic(config.mlp, 2).init(k_critic, obs, act)
    log_alpha = jnp.zeros(())
    opt = optax.adam(config.lr)
    return SACState(actor, critic, critic, log_alpha, opt.init(actor), opt.init(critic),
                    opt.init(log_alpha))


def run_keys(seed: int) -> jax.Array:
    """(init, act, update) keys of a run; `seemrl.behaviour.policies` rebuilds the untrained
    actor from them."""
    return jax.random.split(jax.random.PRNGKey(seed), 3)


def make_update(config: SACConfig, act_dim: int):
    """Returns jitted `update_chunk(state, buffer, size, key) -> (state, metrics)`.

    buffer: dict of (capacity, ·) arrays obs/act/rew/next_obs/discount; rows [0, size) valid.
    Runs chunk · utd gradient steps in one `lax.scan`, each on a fresh uniform batch.
    """
    actor_net, critic_net = GaussianActor(config.mlp, act_dim), Critic(config.mlp, 2)
    opt = optax.adam(config.lr)
    target_entropy = -float(act_dim)
    num_updates = max(1, round(config.chunk * config.utd))

    def step(state: SACState, key, buf: dict, size):
        k_idx, k_next, k_pi = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (config.batch_size,), 0, size)
        obs_tm1, a_tm1 = buf["obs"][idx], buf["act"][idx]
        r_t, obs_t, discount_t = buf["rew"][idx], buf["next_obs"][idx], buf["discount"][idx]
        alpha = jnp.exp(state.log_alpha)

        # Soft TD target: min of twin targets minus the entropy term, cut at true terminals.
        mean_t, log_std_t = actor_net.apply(state.actor, obs_t)  # type: ignore[misc]
        a_t, logp_t = sample_action(mean_t, log_std_t, k_next)  # type: ignore[arg-type]
        q_t = jnp.min(critic_net.apply(state.target, obs_t, a_t), axis=0)  # type: ignore[arg-type]
        target = r_t + config.gamma * discount_t * (q_t - alpha * logp_t)
        target = jax.lax.stop_gradient(target)

        def critic_loss(params):
            q_tm1 = critic_net.apply(params, obs_tm1, a_tm1)  # (2, B)
            return jnp.mean(jnp.sum((q_tm1 - target) ** 2, axis=0)), jnp.mean(q_tm1)

        (c_loss, q_mean), grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic)
        updates, critic_opt = opt.update(grads, state.critic_opt)
        critic = optax.apply_updates(state.critic, updates)

        def actor_loss(params):
            a, logp = sample_action(*actor_net.apply(params, obs_tm1), k_pi)
            q = jnp.min(critic_net.apply(critic, obs_tm1, a), axis=0)
            return jnp.mean(alpha * logp - q), logp

        (a_loss, logp), grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor)
        updates, actor_opt = opt.update(grads, state.actor_opt)
        actor = optax.apply_updates(state.actor, updates)

        def alpha_loss(log_alpha):
            return -jnp.mean(log_alpha * jax.lax.stop_gradient(logp + target_entropy))

        grads = jax.grad(alpha_loss)(state.log_alpha)
        updates, alpha_opt = opt.update(grads, state.alpha_opt)
        log_alpha = optax.apply_updates(state.log_alpha, updates)

        target_params = optax.incremental_update(critic, state.target, config.tau)
        new = SACState(actor, critic, target_params, log_alpha, actor_opt, critic_opt, alpha_opt)
        return new, jnp.stack([c_loss, a_loss, q_mean, alpha])

    @jax.jit
    def update_chunk(state, buffer, size, key):
        state, metrics = jax.lax.scan(lambda s, k: step(s, k, buffer, size), state,
                                      jax.random.split(key, num_updates))
        return state, dict(zip(("critic_loss", "actor_loss", "q", "alpha"),
                               jnp.mean(metrics, axis=0), strict=True))

    return update_chunk


@partial(jax.jit, donate_argnums=0)
def _buffer_put(buffer: dict, chunk: dict, start) -> dict:
    """Writes `chunk` rows at `start` in place (the buffer is donated, not copied)."""
    return {k: jax.lax.dynamic_update_slice_in_dim(buffer[k], chunk[k], start, 0)
            for k in buffer}


def evaluate(policy: Callable, params, env_id: str, episodes: int, seed: int,
             stochastic: bool = True) -> np.ndarray:
    """Undiscounted returns (episodes,) of `episodes` envs stepped in lockstep.

    One batched policy call per step over all still-running envs; env i is reset with seed
    `seed + i`, so an evaluation is deterministic for a seed.
    """
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    returns = np.zeros(episodes)
    keys = [jax.random.PRNGKey(seed)]  # split once per policy call

    def act(obs: np.ndarray, t: int):
        keys[0], k = jax.random.split(keys[0])
        return policy(params, obs.astype(np.float32), k, stochastic)

    def step(i: int, result: tuple) -> bool:
        obs[i], r, term, trunc, _ = result
        returns[i] += r
        return not (term or trunc)

    evaluation.lockstep(envs, obs, act, step, np.ones(episodes, bool))
    for e in envs:
        e.close()
    return returns


def save_actor(path: Path, params) -> None:
    """Actor params as float32 npz, keys like 'mlp/dense_0/kernel' (no pickle)."""
    flat = traverse_util.flatten_dict(params["params"], sep="/")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v, np.float32) for k, v in flat.items()})  # type: ignore[arg-type]
    tmp.replace(path)


def load_actor(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        flat = {k: jnp.asarray(f[k]) for k in f.files}
    return {"params": traverse_util.unflatten_dict(flat, sep="/")}


def train(config: SACConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Trains SAC online; writes config.json, curves.json and actor snapshots to `out_dir`.

    Returns:
      {"curves": [{"step", "return_mean", "return_std", "normalized", "wall_s"}, ...],
       "best": the best curve entry}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    env = make_env(config.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    max_action = float(env.action_space.high[0])
    key_init, key_act, key_upd = run_keys(config.seed)
    state = init_state(config, obs_dim, act_dim, key_init)
    update_chunk = make_update(config, act_dim)
    policy = make_policy(config.mlp, act_dim, max_action)
    cap = config.steps
    buffer = {"obs": jnp.zeros((cap, obs_dim)), "act": jnp.zeros((cap, act_dim)),
              "rew": jnp.zeros((cap,)), "next_obs": jnp.zeros((cap, obs_dim)),
              "discount": jnp.zeros((cap,))}
    rng = np.random.default_rng(config.seed)
    obs, _ = env.reset(seed=config.seed)
    episodes, t0, curves, size = 0, time.time(), [], 0
    while size < cap:
        n = min(config.chunk, cap - size)
        chunk = {k: np.zeros((n,) + v.shape[1:], np.float32) for k, v in buffer.items()}
        for i in range(n):
            if size + i < config.start_steps:
                act = rng.uniform(-max_action, max_action, act_dim)
            else:
                key_act, k = jax.random.split(key_act)
                act = np.asarray(policy(state.actor, obs[None].astype(np.float32), k))[0]
            next_obs, r, term, trunc, _ = env.step(act)
            for name, v in (("obs", obs), ("act", act), ("rew", r), ("next_obs", next_obs),
                            ("discount", 1.0 - float(term))):
                chunk[name][i] = v
            obs = next_obs
            if term or trunc:
                episodes += 1
                obs, _ = env.reset(seed=config.seed + 1_000_003 * episodes)
        buffer = _buffer_put(buffer, chunk, size)
        size += n
        if size >= config.start_steps and n == config.chunk:
            key_upd, k = jax.random.split(key_upd)
            state, metrics = update_chunk(state, buffer, size, k)
        if size % config.eval_every == 0 or size == cap:
            rets = evaluate(policy, state.actor, config.env, config.eval_episodes,
                            seed=10_000 + config.seed * 1000)
            entry = {"step": size, "return_mean": float(rets.mean()),
                     "return_std": float(rets.std()),
                     "normalized": float(normalized_score(config.env, rets.mean())),
                     "wall_s": round(time.time() - t0, 1)}
            curves.append(entry)
            save_actor(out / "snapshots" / f"actor_{size:07d}.npz", state.actor)
            (out / "curves.json").write_text(json.dumps(curves, indent=1))
            extra = ({k: round(float(v), 3) for k, v in metrics.items()}
                     if size > config.start_steps else {})
            log(f"{config.env} step {size} return {entry['return_mean']:.1f} "
                f"norm {entry['normalized']:.1f} t {entry['wall_s']}s {extra}")
    env.close()
    best = max(curves, key=lambda c: c["return_mean"])
    return {"curves": curves, "best": best}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train a SAC behaviour policy online.")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--utd", type=float, default=1.0, help="gradient steps per env step")
    args = p.parse_args(argv)
    cfg = SACConfig(env=args.env, steps=args.steps, seed=args.seed, eval_every=args.eval_every,
                    batch_size=args.batch_size, utd=args.utd)
    result = train(cfg, args.out, log=lambda s: print(s, flush=True))
    print(json.dumps(result["best"]))


if __name__ == "__main__":
    main()
