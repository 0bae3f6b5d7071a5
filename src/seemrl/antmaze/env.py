"""The Ant in a maze, built by seemrl in MuJoCo from Gymnasium's own ant.xml.

Why not gymnasium-robotics' AntMaze: seemrl needs D4RL's 29-dim observation (qpos 15 +
qvel 14), D4RL's frame and success distance, derived terminals and a goal-free observation;
gymnasium-robotics gives a dict observation (27-dim without the torso x, y), a centred,
y-flipped frame and 0.45. Adding the wall blocks to Gymnasium's ant.xml is what
gymnasium-robotics itself does, so the ant's body and physics are the same as in its
AntMaze and in Minari's remakes — with no extra dependency.

Physics: Gymnasium's ant.xml as Ant-v5 loads it (RK4, timestep 0.01, frame skip 5, so one
step is 0.05 s; gear 150, actions in [−1, 1]); wall blocks CELL wide, 0.5·CELL high (D4RL's
maze_height 0.5). Reset: Ant-v5's initial pose with uniform ±0.1 noise on qpos and N(0, 0.1)
on qvel (its reset_noise_scale), the torso moved to the start position.

Observation (29, D4RL's): qpos (15: torso x, y, z, orientation quaternion w x y z, 8 joint
angles) then qvel (14: torso linear 3, angular 3, 8 joint velocities). No goal in it: D4RL's
AntMaze tasks have a fixed goal per evaluation env.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import gymnasium
import numpy as np

from seemrl.antmaze.maze import (
    CELL,
    EPISODE_STEPS,
    EVAL_GOAL,
    POSITION_NOISE,
    START,
    SUCCESS_DISTANCE,
    Maze,
    make_maze,
)

FRAME_SKIP = 5
RESET_NOISE = 0.1
OBS_DIM = 29
ACT_DIM = 8
WALL_HEIGHT = 0.5
"""Wall height in cells (D4RL's maze_height)."""


def ant_xml_path() -> str:
    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets",
                        "ant.xml")


def maze_xml(maze: Maze | None) -> str:
    """Gymnasium's ant.xml with the maze's wall blocks added (None: the open floor)."""
    tree = ET.parse(ant_xml_path())
    world = tree.find(".//worldbody")
    assert world is not None
    if maze is not None:
        h = WALL_HEIGHT * CELL / 2
        for r, c in zip(*np.nonzero(maze.walls), strict=True):
            x, y = maze.cell_xy((int(r), int(c)))
            ET.SubElement(world, "geom", name=f"block_{r}_{c}", type="box",
                          pos=f"{x} {y} {h}", size=f"{CELL / 2} {CELL / 2} {h}",
                          contype="1", conaffinity="1", rgba="0.7 0.5 0.3 1")
    return ET.tostring(tree.getroot(), encoding="unicode")


class AntSim:
    """The ant's MuJoCo model and data; `step(action)` advances FRAME_SKIP physics steps."""

    def __init__(self, maze: Maze | None = None):
        import mujoco

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(maze_xml(maze))
        self.data = mujoco.MjData(self.model)
        self.init_qpos = self.model.qpos0.copy()  # what Ant-v5 resets around (z 0.75)
        self.dt = self.model.opt.timestep * FRAME_SKIP

    def reset(self, rng: np.random.Generator, xy) -> None:
        nq, nv = self.model.nq, self.model.nv
        qpos = self.init_qpos + rng.uniform(-RESET_NOISE, RESET_NOISE, nq)
        qpos[:2] = xy
        qvel = RESET_NOISE * rng.standard_normal(nv)
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        self._mj.mj_forward(self.model, self.data)

    def step(self, action) -> None:
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        self._mj.mj_step(self.model, self.data, nstep=FRAME_SKIP)

    @property
    def xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def obs(self) -> np.ndarray:
        """D4RL's 29-dim observation: qpos (15) then qvel (14)."""
        return np.concatenate([self.data.qpos, self.data.qvel])


def make_sim(maze: Maze | None = None) -> AntSim:
    return AntSim(maze)


def noisy(rng: np.random.Generator, maze: Maze, cell: tuple[int, int]) -> np.ndarray:
    """Cell centre + U(−POSITION_NOISE, POSITION_NOISE)·CELL per axis."""
    return maze.cell_xy(cell) + rng.uniform(-POSITION_NOISE, POSITION_NOISE, 2) * CELL


def reached(xy, goal) -> bool:
    return bool(np.linalg.norm(np.asarray(xy)[:2] - np.asarray(goal)) <= SUCCESS_DISTANCE)


class AntMazeEnv(gymnasium.Env):
    """D4RL-style AntMaze evaluation env: start cell (1, 1), the maze's goal cell.

    reward 1 when the torso is within SUCCESS_DISTANCE of the goal, else 0, and the episode
    terminates there (D4RL's eval envs end on success), so an episode's return is 1 for a
    success and 0 otherwise: the normalised score (ref 0 / 1) is the success rate × 100.
    info: {"goal": (2,), "success": bool}.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, maze: str = "umaze", goal_cell: tuple[int, int] | None = None):
        self.maze = make_maze(maze)
        self.goal_cell: tuple[int, int] = (
            (int(goal_cell[0]), int(goal_cell[1])) if goal_cell is not None else EVAL_GOAL[maze])
        self.sim = make_sim(self.maze)
        high = np.full(OBS_DIM, np.inf, np.float32)
        self.observation_space = gymnasium.spaces.Box(-high, high, dtype=np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.goal = self.maze.cell_xy(self.goal_cell)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.goal = noisy(self.np_random, self.maze, self.goal_cell)
        self.sim.reset(self.np_random, self.maze.cell_xy(START)
                       + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, 2))
        return self.sim.obs(), {"goal": self.goal.copy(), "success": False}

    def step(self, action):
        self.sim.step(action)
        success = reached(self.sim.xy, self.goal)
        return (self.sim.obs(), float(success), success, False,
                {"goal": self.goal.copy(), "success": success})


ENV_IDS = {maze: f"seemrl/AntMaze-{maze}-v0" for maze in EVAL_GOAL}
"""The evaluation env of each maze, registered with gymnasium by `register()`."""


def register() -> None:
    """Registers seemrl/AntMaze-{umaze,medium,large}-v0 with gymnasium (idempotent)."""
    for maze, env_id in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            # A string entry point keeps the spec serialisable (Minari stores it as JSON).
            gymnasium.register(env_id, entry_point="seemrl.antmaze.env:AntMazeEnv",
                               kwargs={"maze": maze},
                               max_episode_steps=EPISODE_STEPS[maze])
