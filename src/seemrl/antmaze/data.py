"""seemrl's own AntMaze datasets: the shipped controller steered through the maze by waypoints.

Names follow D4RL (`antmaze-umaze`, `antmaze-umaze-diverse`, `antmaze-medium-play`, ...); on
disk and in metadata they are `seemrl/antmaze-<task>-v0`. How the data is made (every choice
is also written into the file's metadata):

* Episodes (Minari's collection, `continuing_task=True, reset_target=False`): each starts
  with the ant at a start cell of the task and a goal cell ≠ the start cell, both positions
  jittered by ±0.25 cell; the goal stays put for the whole episode (the ant keeps moving
  about it after arriving); EPISODE_STEPS steps (700 umaze, 1000 medium / large) end it as
  a timeout.
* Actions: the controller's mean action toward the current waypoint + N(0, 0.2²) noise,
  clipped to [−1, 1]; waypoints from a BFS plan over the cells, switched at 0.45 m, jittered
  ±0.2 m (`seemrl.antmaze.maze.Waypoints`).
* Reward (D4RL's sparse): 1 where the torso ends the step within 0.5 m of the goal, else 0.
  Terminals are derived: terminals = reward (the IQL / CORL reading of AntMaze, where the
  bootstrap stops at the goal); the data itself continues past them, so `next_observations`
  is always the real next state.
* Keys: observations (29 = qpos 15 + qvel 14), actions (8), rewards, terminals, timeouts,
  next_observations (D4RL's AntMaze files have none), infos/goal, infos/qpos, infos/qvel,
  metadata/*.

Deterministic for a seed: `n_envs` environments step in lockstep with one batched jitted
controller call per step; environment i draws from SeedSequence([seed, i]) and the action
noise keys fold in (seed, step).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seemrl.antmaze.env import ACT_DIM, ENV_IDS, OBS_DIM, AntSim, noisy, reached
from seemrl.antmaze.maze import (
    CELL,
    EPISODE_STEPS,
    EVAL_GOAL,
    POSITION_NOISE,
    SUCCESS_DISTANCE,
    WAYPOINT_JITTER,
    WAYPOINT_SWITCH,
    Task,
    Waypoints,
    make_maze,
    tasks,
)
from seemrl.behaviour import files
from seemrl.behaviour.files import DATASET_VERSION, sha256
from seemrl.evaluation import lockstep
from seemrl.types import DataError, Dataset

GENERATOR_VERSION = 1
MAKE_OPTIONS = ("controller",)
"""`make_dataset`'s options of this family alone (the catalogue refuses them elsewhere)."""
DEFAULT_SIZE = 1_000_000
N_ENVS = 32


def dataset_names() -> list[str]:
    return [f"antmaze-{t}" for t in tasks()]


def parse_name(name: str) -> Task | None:
    """'antmaze-umaze', 'antmaze-umaze-v0' or 'seemrl/antmaze-umaze-v0' -> its Task."""
    base = files.base_name(name)
    return tasks().get(base.removeprefix("antmaze-")) if base.startswith("antmaze-") else None


def _check_name(name: str) -> Task:
    task = parse_name(name)
    if task is None:
        raise files.unknown(name, "AntMaze dataset", dataset_names())
    return task


class _Episode:
    """One environment's stream of episodes (its own rng, sim, goal and waypoints)."""

    def __init__(self, task: Task, rng: np.random.Generator):
        self.task, self.rng, self.maze = task, rng, make_maze(task.maze)
        self.sim = AntSim(self.maze)
        self.reset()

    def reset(self) -> None:
        start = self.task.starts[self.rng.integers(len(self.task.starts))]
        goals = [g for g in self.task.goals if g != start] or list(self.task.goals)
        self.goal = noisy(self.rng, self.maze, goals[self.rng.integers(len(goals))])
        self.sim.reset(self.rng, noisy(self.rng, self.maze, start))
        self.waypoints = Waypoints(self.maze, self.goal, self.rng)
        self.t = 0

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One control step in the shape `evaluation.lockstep` steps (Gymnasium's): reward 1
        within reach of the goal, never terminated (the data goes on past the goal), truncated
        at the episode's length."""
        self.sim.step(action)
        self.t += 1
        success = reached(self.sim.xy, self.goal)
        return (self.sim.obs(), float(success), False, self.t >= EPISODE_STEPS[self.task.maze],
                {"success": success})


def rollout(task: Task, act, params, size: int, seed: int, n_envs: int = N_ENVS,
            noise: float = 0.2, egocentric: bool = False,
            advance: Callable[[int], None] | None = None
            ) -> tuple[Dataset, dict[str, np.ndarray], dict]:
    """`size` transitions of the controller in `task`'s maze, n_envs in lockstep.

    Environment i contributes size // n_envs rows (+1 for the first size % n_envs), stored
    one environment after another; its last, cut episode ends in a timeout. `advance` is
    called with the number of new transitions (for a progress bar).

    Returns:
      (dataset, infos {goal (N, 2), qpos (N, 15), qvel (N, 14)}, counts {episodes,
      episodes_reaching_goal, episodes_complete, success_rate: the share of complete
      episodes (not cut by the quota) that reached their goal; of all when none is}).
    """
    import jax

    from seemrl.antmaze.controller import policy_input

    n_envs = max(1, min(n_envs, size))
    quota, offset = files.quotas(size, n_envs)
    envs = [_Episode(task, np.random.default_rng(np.random.SeedSequence([seed, i])))
            for i in range(n_envs)]
    cols: dict[str, Any] = files.empty_columns(size, OBS_DIM, ACT_DIM)
    goals = np.zeros((size, 2), np.float32)
    count = np.zeros(n_envs, int)
    tally = {"episodes": 0, "complete": 0, "reaching": 0, "reaching_complete": 0}
    hit = np.zeros(n_envs, bool)
    key = jax.random.PRNGKey(seed)
    obs = np.stack([e.sim.obs() for e in envs])
    last: list[np.ndarray] = []  # the actions of the current policy call

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        alive = count < quota  # an ended env's waypoints are not asked (nor its rng drawn)
        targets = np.stack([envs[i].waypoints(o[:2]) if alive[i] else np.zeros(2)
                            for i, o in enumerate(obs)])
        last[:] = [np.asarray(act(params, policy_input(obs, targets, egocentric),
                                  jax.random.fold_in(key, t), noise))]
        return last[0]

    def step(i: int, result: tuple) -> bool:
        next_obs, reward, _, truncated, info = result
        env, row = envs[i], offset[i] + count[i]
        count[i] += 1
        hit[i] |= info["success"]
        timeout = truncated or count[i] == quota[i]
        cols["observations"][row] = obs[i]
        cols["actions"][row] = last[0][i]
        cols["rewards"][row] = reward
        cols["terminals"][row] = reward  # derived: the goal reached (see the module doc)
        cols["next_observations"][row] = next_obs
        cols["timeouts"][row] = timeout
        cols["episode_ends"][row] = timeout or info["success"]
        goals[row] = env.goal
        obs[i] = next_obs
        if timeout:
            tally["episodes"] += 1
            tally["complete"] += int(truncated)  # not cut short by the quota
            tally["reaching"] += int(hit[i])
            tally["reaching_complete"] += int(hit[i] and truncated)
            hit[i] = False
            if count[i] < quota[i]:
                env.reset()
                obs[i] = env.sim.obs()
        return bool(count[i] < quota[i])

    lockstep(envs, obs, policy, step, count < quota, advance)
    infos = {"goal": goals, "qpos": cols["observations"][:, :15].copy(),
             "qvel": cols["observations"][:, 15:].copy()}
    complete = tally["complete"]
    counts = {"episodes": tally["episodes"], "episodes_reaching_goal": tally["reaching"],
              "episodes_complete": complete,
              "success_rate": (tally["reaching_complete"] / complete if complete
                               else tally["reaching"] / max(tally["episodes"], 1))}
    return Dataset(**cols), infos, counts


def build_dataset(name: str, size: int = DEFAULT_SIZE, seed: int = 0, n_envs: int = N_ENVS,
                  controller: Path | None = None, progress: bool = False
                  ) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Rolls out dataset `name` in memory; metadata names every convention."""
    import gymnasium
    import mujoco

    from seemrl.antmaze.controller import ACTION_NOISE, SHIPPED, load_controller

    task = _check_name(name)
    if size < 1:
        raise DataError(f"dataset size must be ≥ 1, got {size}")
    path = Path(controller or SHIPPED)
    act, params, info = load_controller(path)
    with files.progress_bar(progress, f"seemrl/antmaze-{task.name}-{DATASET_VERSION}",
                            size) as advance:
        data, infos, counts = rollout(task, act, params, size, seed, n_envs, ACTION_NOISE,
                                      bool(info.get("egocentric", False)), advance)
    maze = make_maze(task.maze)
    meta = {
        "name": f"seemrl/antmaze-{task.name}-{DATASET_VERSION}",
        "env_id": ENV_IDS[task.maze], "maze": task.maze, "task": task.name,
        "source_kind": "seemrl-generated (not D4RL, not Minari)",
        "goal_set": task.goal_set,
        "start_cells": json.dumps(task.starts), "goal_cells": json.dumps(task.goals),
        "eval_start_cell": "[1, 1]", "eval_goal_cell": json.dumps(EVAL_GOAL[task.maze]),
        "frame": f"D4RL's: cell (row, col) centred at x = {CELL:g}·(col − 1), "
                 f"y = {CELL:g}·(row − 1); start cell (1, 1) at the origin",
        "maze_layout": json.dumps(["".join("#" if w else "." for w in row)
                                   for row in maze.walls]),
        "observation": "29 = qpos (15: torso x y z, quaternion w x y z, 8 joints) + qvel (14)",
        "reward": f"1 if the torso ends the step within {SUCCESS_DISTANCE} m of infos/goal "
                  "else 0 (D4RL's sparse reward)",
        "terminals": "derived: terminals = rewards (goal reached); the episode continues",
        "timeouts": f"every {EPISODE_STEPS[task.maze]} steps (episode end) and at the cut",
        "episode_protocol": "reset each episode; goal fixed within it (continuing_task=True, "
                            "reset_target=False as Minari collected)",
        "position_noise": f"start and goal: cell centre + U(±{POSITION_NOISE})·{CELL:g} m",
        "waypoints": f"BFS over cells; next cell centre + U(±{WAYPOINT_JITTER}) m; switch "
                     f"within {WAYPOINT_SWITCH} m",
        "action_noise": f"controller mean + N(0, {ACTION_NOISE}²), clipped to [-1, 1]",
        "controller": info.get("recipe", ""), "controller_sha256": sha256(path),
        "controller_success_rate": json.dumps(info.get("success_rate")),
        "mujoco_version": mujoco.__version__, "gymnasium_version": gymnasium.__version__,
        "ant_model": "Gymnasium's ant.xml (Ant-v5), frame skip 5",
        "generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
        "n_envs": n_envs, "ref_min_score": 0.0, "ref_max_score": 1.0,
        **counts,
    }
    data.metadata.update(meta)
    return data, infos


def make_dataset(name: str, size: int = DEFAULT_SIZE, seed: int = 0,
                 data_dir: str | Path | None = None, fmt: str = "hdf5", progress: bool = True,
                 n_envs: int = N_ENVS, controller: Path | None = None) -> Path:
    """Makes AntMaze dataset `name` under `data_dir`: a D4RL-format HDF5 file with
    `<file>.sha256` and a `<file>.json` summary beside it, or (fmt "minari") a local Minari
    dataset `seemrl/antmaze-<task>-v0` under data_dir/minari. Returns the file / data dir.
    `controller`: another controller .npz (with its .json) than the shipped one."""
    from seemrl.antmaze.env import register

    task = _check_name(name)
    files.check_format(fmt)
    data_dir = files.data_dir_or_default(data_dir)
    files.check_writable(data_dir)
    started = time.time()
    data, infos = build_dataset(name, size, seed, n_envs, controller, progress)
    if fmt == "minari":
        register()  # Minari records the environment's spec
    return files.save_made(data, f"antmaze-{task.name}", data_dir, size=size, seed=seed,
                           default_size=DEFAULT_SIZE, fmt=fmt, env_id=data.metadata["env_id"],
                           algorithm_name="waypoints + SAC (seemrl)", started=started,
                           infos=infos)


# -- the catalogue's questions (seemrl.behaviour.list_datasets) --------------------------------
def _shipped_info() -> dict[str, Any]:
    from seemrl.antmaze.controller import SHIPPED_INFO

    return json.loads(SHIPPED_INFO.read_text()) if SHIPPED_INFO.exists() else {}


def can_make(name: str) -> bool:
    """Whether a controller is shipped (every AntMaze dataset rolls out the same one)."""
    from seemrl.antmaze.controller import SHIPPED

    _check_name(name)
    return SHIPPED.exists()


def policy_score(name: str) -> float | None:
    """The shipped controller's success rate × 100 in the evaluation env of `name`'s maze
    (None where it was not measured)."""
    rate = (_shipped_info().get("success_rate") or {}).get(_check_name(name).maze)
    return None if rate is None else 100 * rate


def data_score(info: dict[str, Any]) -> float | None:
    """A made file's success rate × 100 (from its summary)."""
    rate = info.get("success_rate")
    return None if rate is None else 100 * rate


def controller_score(info: dict[str, Any]) -> float | None:
    """The success rate × 100, in the file's own maze, that the controller which made a file
    had when it was shipped (from the file's summary); None where it was not measured."""
    try:
        rates = json.loads(info.get("controller_success_rate") or "null") or {}
        rate = rates.get(info.get("maze"))
    except (ValueError, AttributeError):
        return None
    return None if rate is None else 100 * float(rate)


def stale(info: dict[str, Any]) -> list[str]:
    """['controller.npz'] when the file was made with another controller than the shipped
    one (a file made with `--controller` counts as stale too), else []."""
    from seemrl.antmaze.controller import SHIPPED

    made_with = info.get("controller_sha256")
    if made_with is None or not SHIPPED.exists() or made_with == sha256(SHIPPED):
        return []
    return [SHIPPED.name]
