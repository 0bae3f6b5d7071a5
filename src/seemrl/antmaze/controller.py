"""The goal-reaching Ant controller behind seemrl's AntMaze data, trained with seemrl's SAC.

Recipe (OGBench's cheap path, not Minari's 30M-step goal-reaching SAC): SAC
(`seemrl.behaviour.sac`'s jitted update) on directional locomotion in the open — the policy sees
the ant's body state (the 29-dim observation without the torso x, y: 27) and a unit target
direction (2); the direction is redrawn uniformly every `direction_every` steps; reward
the torso's velocity along the direction, v_xy · d (OGBench's GymXYWrapper replaces Ant's
reward by the displacement along d; here per second, so it reads as m/s), plus optional
Ant-v5 terms `healthy_reward` and `ctrl_cost` · ‖a‖², both 0 by default (see their fields:
with Ant-v5's 1 and 0.5 the ant learnt to stand still); the episode ends when the torso
leaves z ∈ [0.2, 1.0] (Ant-v5's healthy range), when it tips past `min_upright` (a flipped
ant lies at z ≈ 0.27, inside that range) or after `episode_steps`. In the maze the
direction is the unit vector to the current waypoint.

The shipped controller grew in three stages on one CPU core (`init_run` carries networks and
replay rows from one stage to the next; controller.json lists them): 0–200k env steps
egocentric v·d with no flip end (`--min-upright -1`), 200k–275k with the flip ending the
episode (the defaults), 275k–500k with `--healthy-reward 0.5` as well. Measured at 500k
(50 episodes, noise 0.2): umaze 0.76, medium 0.38. A single run from scratch with the last
stage's config is untested (with Ant-v5's healthy 1 from scratch the ant stood still).

Training is resumable because this machine's CPU is scarce: every `checkpoint_every` env
steps the run writes `checkpoint.msgpack` (SAC state + counters), `buffer.npz` (the replay
rows so far), an actor snapshot and `curves.json`. The episode running at a checkpoint is
cut there (a time-limit truncation) in every run, so a resumed run is the run that was never
stopped. Usage: `python -m seemrl.antmaze.controller --out DIR [--steps N]` (again to resume);
`--ship STEP` measures a snapshot and copies it into the package as `controller.npz`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seemrl.antmaze.env import ACT_DIM, AntMazeEnv, AntSim
from seemrl.antmaze.maze import EPISODE_STEPS, Waypoints

SHIPPED = Path(__file__).parent / "controller.npz"
SHIPPED_INFO = Path(__file__).parent / "controller.json"
INPUT_DIM = 29
"""27 body features (qpos[2:] 13, qvel 14) + the unit target direction (2)."""
ACTION_NOISE = 0.2
"""Data convention (Minari's script): mean action + N(0, 0.2²) per dimension, clipped."""


LEGACY = {"ctrl_cost": 0.5, "egocentric": False, "healthy_reward": 1.0, "min_upright": -1.0,
          "init_run": ""}
"""The values runs saved before these fields existed were trained with."""


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """One directional-locomotion SAC run (saved to config.json; a resume must match it)."""

    steps: int = 1_000_000
    """Env steps in total."""
    seed: int = 0
    """Seeds networks, resets, directions and sampling."""
    hidden: tuple[int, ...] = (256, 256)
    """Actor and critic widths."""
    utd: float = 1.0
    """Gradient steps per env step (OGBench's and the paper's 1; < 1 buys env steps on a
    scarce CPU, but 0.5 spent 275k steps without learning to walk)."""
    batch_size: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    start_steps: int = 10_000
    """Uniform random actions before learning starts (OGBench's seed_steps)."""
    chunk: int = 1_000
    """Env steps between two jitted blocks of updates."""
    direction_every: int = 100
    """Steps between two target directions (OGBench)."""
    episode_steps: int = 1_000
    checkpoint_every: int = 25_000
    """Env steps between checkpoints, evaluations and actor snapshots (a multiple of chunk)."""
    eval_episodes: int = 10
    """umaze episodes per evaluation (start (1, 1) to goal (3, 1), action noise 0.2)."""
    healthy_reward: float = 0.0
    """Reward per step that does not end the episode (Ant-v5's 1; OGBench's directional
    reward has none). Measured with 1 (and ctrl_cost 0.5, utd 0.5): at 25k steps
    the ant moved at 0.40 m/s in no particular direction (−0.05 m/s along d); by 50k it stood
    (0.07 m/s) and stayed so to 275k — uncorrelated motion earns nothing on average over
    directions, while it costs control and risks the fall that forfeits ~100 of bonus."""
    ctrl_cost: float = 0.0
    """Weight of ‖a‖² in the reward (Ant-v5's 0.5; OGBench's directional reward has none)."""
    egocentric: bool = True
    """Give the target direction in the torso's heading frame (rotated by −yaw) instead of
    the world frame (OGBench's), so the skill does not depend on where the ant faces.
    Measured in the world-frame run (v·d reward, utd 1, steps 75k–100k): the ant spins —
    mean |yaw rate| 1.27 rad/s, median heading change over one 100-step direction 1.49 rad,
    > 90° in 47 % — so one world direction asks for ever other joint patterns; at 100k it
    still made 0.03 m/s along d (0.6 m/s of flailing in any direction)."""
    min_upright: float = 0.0
    """The episode also ends when the z component of the torso's up axis drops below this
    (0: tipped past 90°; −1: never). Ant-v5's z range misses a flipped ant, which lies at
    z ≈ 0.27 and can never right itself: measured in the egocentric run without it, 50–70 %
    of the first 175k steps were spent upside down (v·d 0.01 m/s there, 0.65 m/s upright at
    150k–175k), and 9 of 10 umaze episodes at 175k ended flipped."""
    init_run: str = ""
    """A run folder to start from (its networks, counters and replay rows, the rows'
    terminals and healthy bonus relabelled by this config's rules; same ctrl_cost) instead
    of from scratch; "" for none."""

    def sac(self):
        from seemrl.behaviour.sac import SACConfig

        return SACConfig(env="Ant-v5", steps=self.steps, seed=self.seed,
                         hidden=tuple(self.hidden), lr=self.lr, gamma=self.gamma,
                         tau=self.tau, batch_size=self.batch_size,
                         start_steps=self.start_steps, chunk=self.chunk, utd=self.utd)


def upright(quat: np.ndarray) -> np.ndarray:
    """(..., 4) torso quaternions (w, x, y, z) -> (...,) the z component of its up axis."""
    return 1.0 - 2.0 * (quat[..., 1] ** 2 + quat[..., 2] ** 2)


def ended(inputs: np.ndarray, min_upright: float) -> np.ndarray:
    """(B, 29) controller inputs -> (B,) whether the body state ends an episode: torso z out
    of Ant-v5's healthy range [0.2, 1.0], or tipped below `min_upright`."""
    z = inputs[:, 0]
    return (z < 0.2) | (z > 1.0) | (upright(inputs[:, 1:5]) < min_upright)


def policy_input(obs: np.ndarray, target_xy: np.ndarray, egocentric: bool = False
                 ) -> np.ndarray:
    """(B, 29) D4RL observations and (B, 2) targets -> (B, 29) controller inputs: the body
    state obs[:, 2:] and the unit vector to the target (in the heading frame if egocentric)."""
    delta = target_xy - obs[:, :2]
    unit = delta / np.maximum(np.linalg.norm(delta, axis=1, keepdims=True), 1e-6)
    if egocentric:
        w, x, y, z = obs[:, 3], obs[:, 4], obs[:, 5], obs[:, 6]
        yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        c, s = np.cos(yaw), np.sin(yaw)
        unit = np.stack([c * unit[:, 0] + s * unit[:, 1], -s * unit[:, 0] + c * unit[:, 1]], 1)
    return np.concatenate([obs[:, 2:], unit], axis=1).astype(np.float32)


class DirectionTask:
    """Open-floor directional locomotion; `reset(episode)` is seeded by (seed, episode)."""

    def __init__(self, config: ControllerConfig):
        self.config, self.sim = config, AntSim(None)

    def reset(self, episode: int) -> np.ndarray:
        self.rng = np.random.default_rng([self.config.seed, episode])
        self.sim.reset(self.rng, np.zeros(2))
        self.t, self.velocity = 0, 0.0  # velocity: along the direction at the last step
        return self._input()

    def _input(self) -> np.ndarray:
        if self.t % self.config.direction_every == 0:
            angle = self.rng.uniform(0, 2 * np.pi)
            self.direction = np.array([np.cos(angle), np.sin(angle)])
        obs = self.sim.obs()[None]
        return policy_input(obs, obs[:, :2] + self.direction, self.config.egocentric)[0]

    def step(self, action) -> tuple[np.ndarray, float, bool, bool]:
        before = self.sim.xy
        self.sim.step(action)
        velocity = (self.sim.xy - before) / self.sim.dt
        z = self.sim.data.qpos[2]
        alive = 0.2 <= z <= 1.0 and upright(self.sim.data.qpos[3:7]) >= self.config.min_upright
        self.velocity = velocity @ self.direction
        reward = float(self.velocity + self.config.healthy_reward * alive
                       - self.config.ctrl_cost * np.sum(np.square(action)))
        self.t += 1
        return (self._input(), reward, not alive,
                self.t >= self.config.episode_steps)


def make_act(hidden: tuple[int, ...]) -> Callable:
    """Jitted (params, inputs (B, 29), key, noise) -> actions: tanh(mean) + N(0, noise²),
    clipped to [−1, 1] (noise 0: the mean action)."""
    import jax
    import jax.numpy as jnp

    from seemrl.behaviour.sac import GaussianActor
    from seemrl.networks import MLPConfig

    actor = GaussianActor(MLPConfig(hidden=tuple(hidden)), ACT_DIM)

    @jax.jit
    def act(params, inputs, key, noise):
        mean, _ = actor.apply(params, inputs)
        a = jnp.tanh(mean) + noise * jax.random.normal(key, mean.shape)
        return jnp.clip(a, -1.0, 1.0)

    return act


def maze_success(act: Callable, params, maze: str, episodes: int, seed: int,
                 noise: float = ACTION_NOISE, egocentric: bool = False) -> dict:
    """Success rate (and mean steps) of the controller steered by waypoints in `maze`'s
    evaluation env (start (1, 1), D4RL's goal cell), episodes in lockstep; deterministic
    for a seed."""
    import jax

    from seemrl.evaluation import lockstep

    envs = [AntMazeEnv(maze) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    ways = [Waypoints(e.maze, e.goal, np.random.default_rng([seed, i]))
            for i, e in enumerate(envs)]
    success, steps = np.zeros(episodes, bool), np.zeros(episodes, int)
    key = jax.random.PRNGKey(seed)

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        targets = np.stack([w(o[:2]) for w, o in zip(ways, obs, strict=True)])
        return np.asarray(act(params, policy_input(obs, targets, egocentric),
                              jax.random.fold_in(key, t), noise))

    def step(i: int, result: tuple) -> bool:
        obs[i], _, term, _, _ = result
        steps[i] += 1
        success[i] |= term
        return not term and steps[i] < EPISODE_STEPS[maze]

    lockstep(envs, obs, policy, step, np.ones(episodes, bool))
    return {"success_rate": float(success.mean()), "mean_steps": float(steps.mean()),
            "episodes": episodes, "seed": seed, "maze": maze, "noise": noise}


def train(config: ControllerConfig, out_dir: str | Path,
          log: Callable[[str], None] = print) -> list[dict]:
    """Trains (or resumes) the controller in `out_dir`; returns the evaluation curve."""
    import jax
    import jax.numpy as jnp

    from seemrl import checkpoint
    from seemrl.behaviour.sac import _buffer_put, init_state, make_policy, make_update, save_actor

    if config.checkpoint_every % config.chunk:
        raise ValueError("checkpoint_every must be a multiple of chunk")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved_cfg = out / "config.json"
    cfg_json = json.dumps(dataclasses.asdict(config), indent=1)
    # A run saved before a field existed ran with that field's first value (LEGACY).
    if saved_cfg.exists() and {**json.loads(cfg_json), **LEGACY,
                               **json.loads(saved_cfg.read_text())} != json.loads(cfg_json):
        raise ValueError(f"{out} holds a run with another config; use another --out")
    saved_cfg.write_text(cfg_json)
    sac = config.sac()
    k_init, k_act, k_upd = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    state = init_state(sac, INPUT_DIM, ACT_DIM, k_init)
    update_chunk = make_update(sac, ACT_DIM)
    policy = make_policy(sac.mlp, ACT_DIM)
    act = make_act(config.hidden)
    cap = config.steps
    dims = {"obs": INPUT_DIM, "act": ACT_DIM, "rew": None, "next_obs": INPUT_DIM,
            "discount": None}
    buffer = {k: jnp.zeros((cap,) if d is None else (cap, d)) for k, d in dims.items()}
    size, episode, curves = 0, 0, []
    if checkpoint.exists(out):
        state, meta = checkpoint.load(out, state)
        size, episode, curves = meta["size"], meta["episode"], meta["curves"]
        with np.load(out / "buffer.npz") as f:
            buffer = _buffer_put(buffer, {k: jnp.asarray(f[k][:size]) for k in dims}, 0)
        log(f"resumed at {size:,} steps")
    elif config.init_run:
        state, meta = checkpoint.load(config.init_run, state)
        size, episode, curves = meta["size"], meta["episode"], meta["curves"]
        with np.load(Path(config.init_run) / "buffer.npz") as f:
            rows = {k: f[k][:size] for k in dims}
        source = {**json.loads(cfg_json), **LEGACY,
                  **json.loads((Path(config.init_run) / "config.json").read_text())}
        if source["ctrl_cost"] != config.ctrl_cost:
            raise ValueError("init_run: the source run has another ctrl_cost")
        alive = 1.0 - ended(rows["next_obs"], config.min_upright).astype(np.float32)
        rows["rew"] = (rows["rew"] - source["healthy_reward"] * rows["discount"]
                       + config.healthy_reward * alive)
        rows["discount"] = alive
        buffer = _buffer_put(buffer, {k: jnp.asarray(v) for k, v in rows.items()}, 0)
        log(f"started from {config.init_run} at {size:,} steps")
    task = DirectionTask(config)
    obs = task.reset(episode)
    t0, reward_sum, velocity_sum, reward_steps, falls = time.time(), 0.0, 0.0, 0, 0
    while size < cap:
        n = min(config.chunk, cap - size)
        rows = {k: np.zeros((n,) if d is None else (n, d), np.float32) for k, d in dims.items()}
        rng = np.random.default_rng([config.seed, size, 1])
        for i in range(n):
            if size + i < config.start_steps:
                a = rng.uniform(-1, 1, ACT_DIM)
            else:
                a = np.asarray(policy(state.actor, obs[None],
                                      jax.random.fold_in(k_act, size + i)))[0]
            nxt, r, term, trunc = task.step(a)
            reward_sum, reward_steps = reward_sum + r, reward_steps + 1
            velocity_sum, falls = velocity_sum + task.velocity, falls + term
            for k, v in (("obs", obs), ("act", a), ("rew", r), ("next_obs", nxt),
                         ("discount", 1.0 - float(term))):
                rows[k][i] = v
            obs = nxt
            if term or trunc:
                episode += 1
                obs = task.reset(episode)
        buffer = _buffer_put(buffer, rows, size)
        size += n
        if size >= config.start_steps:
            state, metrics = update_chunk(state, buffer, size, jax.random.fold_in(k_upd, size))
        if size % config.checkpoint_every and size != cap:
            continue
        ev = maze_success(act, state.actor, "umaze", config.eval_episodes, seed=10_000,
                          egocentric=config.egocentric)
        entry = {"step": size, "umaze_success": ev["success_rate"],
                 "umaze_steps": ev["mean_steps"], "episodes": episode,
                 # per step since the last entry; v_along_d (m/s) says whether it walks
                 "reward_per_step": round(reward_sum / max(reward_steps, 1), 3),
                 "v_along_d": round(velocity_sum / max(reward_steps, 1), 3),
                 "falls": falls,
                 "wall_s": round(time.time() - t0, 1)}
        if size >= config.start_steps:
            entry.update({k: round(float(v), 4) for k, v in metrics.items()})
        curves.append(entry)
        save_actor(out / "snapshots" / f"actor_{size:07d}.npz", state.actor)
        (out / "curves.json").write_text(json.dumps(curves, indent=1))
        tmp = out / "buffer.tmp.npz"
        arrays: dict[str, Any] = {k: np.asarray(v[:size]) for k, v in buffer.items()}
        np.savez(tmp, **arrays)
        tmp.replace(out / "buffer.npz")
        episode += 1  # the running episode is cut here in every run (see the docstring)
        obs = task.reset(episode)
        checkpoint.save(out, state, {"size": size, "episode": episode, "curves": curves})
        reward_sum, velocity_sum, reward_steps, falls = 0.0, 0.0, 0, 0
        log(json.dumps(entry))
    return curves


def load_controller(path: Path = SHIPPED) -> tuple[Callable, dict, dict]:
    """(act, params, info) of a controller (see `make_act`): the shipped one, another .npz
    with its .json beside it, or a run's snapshot (`<run>/snapshots/actor_<step>.npz`, whose
    architecture comes from `<run>/config.json`)."""
    from seemrl.behaviour.sac import load_actor
    from seemrl.types import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"no AntMaze controller at {path}: train one with "
                        "`python -m seemrl.antmaze.controller --out DIR` and ship it with "
                        "`--ship STEP`")
    side, run_config = path.with_suffix(".json"), path.parent.parent / "config.json"
    if side.exists():
        info = json.loads(side.read_text())
    elif path.parent.name == "snapshots" and run_config.exists():
        config = json.loads(run_config.read_text())
        info = {"recipe": f"directional-locomotion SAC snapshot {path.name} (not shipped)",
                "hidden": config["hidden"], "config": config,
                "egocentric": config.get("egocentric", LEGACY["egocentric"])}
    else:
        raise DataError(f"{path}: no {side.name} beside it and not a run's snapshot")
    return make_act(tuple(info["hidden"])), load_actor(path), info


def ship(run_dir: str | Path, step: int, episodes: int = 50) -> dict:
    """Measures snapshot `step` of a run on fresh episodes of every maze (its evaluation
    goal, the data's action noise) and copies it into the package (controller.npz +
    controller.json)."""
    import shutil

    from seemrl.behaviour.sac import load_actor

    run = Path(run_dir)
    config = json.loads((run / "config.json").read_text())
    snap = run / "snapshots" / f"actor_{step:07d}.npz"
    act = make_act(tuple(config["hidden"]))
    params = load_actor(snap)
    egocentric = config.get("egocentric", LEGACY["egocentric"])
    measured = {m: maze_success(act, params, m, episodes, seed=20_000,
                                egocentric=egocentric)["success_rate"]
                for m in EPISODE_STEPS}
    stages, source = [], config  # the runs it grew through (init_run), oldest last
    while source.get("init_run"):
        stages.append(source["init_run"])
        source = json.loads((Path(source["init_run"]) / "config.json").read_text())
    info = {"recipe": "directional-locomotion SAC (seemrl.antmaze.controller)",
            "hidden": config["hidden"], "train_step": step, "config": config,
            "init_runs": [{"run": r, "config": json.loads((Path(r) / "config.json").read_text())}
                          for r in stages],
            "egocentric": egocentric,
            "success_rate": measured, "eval_episodes": episodes, "eval_seed": 20_000,
            "action_noise": ACTION_NOISE}
    shutil.copyfile(snap, SHIPPED)
    SHIPPED_INFO.write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder (reused to resume)")
    p.add_argument("--steps", type=int, default=ControllerConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--utd", type=float, default=ControllerConfig.utd)
    p.add_argument("--ctrl-cost", type=float, default=ControllerConfig.ctrl_cost)
    p.add_argument("--healthy-reward", type=float, default=ControllerConfig.healthy_reward)
    p.add_argument("--egocentric", action=argparse.BooleanOptionalAction,
                   default=ControllerConfig.egocentric,
                   help="target direction in the heading frame (--no-egocentric: world frame)")
    p.add_argument("--min-upright", type=float, default=ControllerConfig.min_upright)
    p.add_argument("--init-run", default="", help="a run folder to start from")
    p.add_argument("--ship", type=int, help="measure snapshot STEP and ship it")
    args = p.parse_args(argv)
    if args.ship is not None:
        print(json.dumps(ship(args.out, args.ship)))
        return
    train(ControllerConfig(steps=args.steps, seed=args.seed, utd=args.utd,
                           ctrl_cost=args.ctrl_cost, healthy_reward=args.healthy_reward,
                           egocentric=args.egocentric, min_upright=args.min_upright,
                           init_run=args.init_run), args.out,
          log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
