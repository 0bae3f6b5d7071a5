"""AntMaze layouts, tasks (start and goal sets), a planner over maze cells and the waypoints
the goal-reaching controller steers by.

Frame (D4RL's, not gymnasium-robotics'): a cell is 4 × 4 m (D4RL's maze_size_scaling 4), the
start cell (1, 1) is at the origin and cell (row, col) is centred at x = 4·(col − 1),
y = 4·(row − 1) — no y flip, no centring. So antmaze-umaze's goal cell (3, 1) is at (0, 8),
medium's (6, 6) at (20, 20) and large's (7, 10) at (36, 24), as in D4RL's files.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

CELL = 4.0
"""Cell size in metres (D4RL's maze_size_scaling)."""
START = (1, 1)
"""The start cell of every maze: the origin of the frame."""
WAYPOINT_SWITCH = 0.45
"""The controller moves on to the next waypoint within this distance (Minari's script)."""
WAYPOINT_JITTER = 0.2
"""Each intermediate waypoint is its cell centre + U(−0.2, 0.2) per axis (Minari's script
draws centre − U(0, 0.2), one-sided; the issue's convention, symmetric, is used here)."""
SUCCESS_DISTANCE = 0.5
"""Goal reached within this distance of the torso's x, y (D4RL; gymnasium-robotics: 0.45)."""
POSITION_NOISE = 0.25
"""Start and goal positions are their cell centre + U(−0.25, 0.25)·CELL per axis
(gymnasium-robotics' position_noise_range)."""

# 1 = wall, 0 = open; D4RL's U_MAZE, BIG_MAZE and HARDEST_MAZE (= gymnasium-robotics'
# U_MAZE, MEDIUM_MAZE, LARGE_MAZE), rows top to bottom as written in both.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "umaze": ("#####",
              "#...#",
              "###.#",
              "#...#",
              "#####"),
    "medium": ("########",
               "#..##..#",
               "#..#...#",
               "##...###",
               "#..#...#",
               "#.#..#.#",
               "#...#..#",
               "########"),
    "large": ("############",
              "#....#.....#",
              "#.##.#.#.#.#",
              "#......#...#",
              "#.####.###.#",
              "#..#.#.....#",
              "##.#.#.#.###",
              "#..#...#...#",
              "############"),
}
EVAL_GOAL = {"umaze": (3, 1), "medium": (6, 6), "large": (7, 10)}
"""The evaluation goal cell of each maze (D4RL's *_TEST maps: start (1, 1), goal here)."""
EPISODE_STEPS = {"umaze": 700, "medium": 1000, "large": 1000}
"""Steps per episode, in the data and at evaluation (D4RL's max_episode_steps)."""
# The hand-picked cells of gymnasium-robotics' *_DIVERSE_GR maps ('C' cells), used as
# start and goal cells of the "play" tasks.
PICKED = {"medium": ((1, 1), (2, 6), (5, 1), (6, 5)),
          "large": ((1, 1), (1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9))}


@dataclasses.dataclass(frozen=True)
class Maze:
    """A layout: `walls` (rows, cols) bool, True where a wall block stands."""

    name: str
    walls: np.ndarray

    @property
    def open_cells(self) -> list[tuple[int, int]]:
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(~self.walls), strict=True)]

    def cell_xy(self, cell: tuple[int, int]) -> np.ndarray:
        """Centre (x, y) of cell (row, col)."""
        return np.array([CELL * (cell[1] - START[1]), CELL * (cell[0] - START[0])])

    def xy_cell(self, xy) -> tuple[int, int]:
        """The cell (row, col) holding point (x, y), clamped to the layout."""
        col = int(np.floor(xy[0] / CELL + 0.5)) + START[1]
        row = int(np.floor(xy[1] / CELL + 0.5)) + START[0]
        rows, cols = self.walls.shape
        return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)

    def distances(self, goal: tuple[int, int]) -> np.ndarray:
        """Steps (4-connected moves through open cells) from every cell to `goal`
        (BFS; inf for walls and unreachable cells) — Q-iteration's answer for unit costs."""
        rows, cols = self.walls.shape
        dist = np.full((rows, cols), np.inf)
        dist[goal] = 0
        queue = deque([goal])
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if (0 <= nr < rows and 0 <= nc < cols
                        and not self.walls[nr, nc] and dist[nr, nc] == np.inf):
                    dist[nr, nc] = dist[r, c] + 1
                    queue.append((nr, nc))
        return dist

    def path(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells from `start` to `goal` inclusive along a shortest path ([] if unreachable)."""
        dist = self.distances(goal)
        if dist[start] == np.inf:
            return []
        cells = [start]
        while cells[-1] != goal:
            cells.append(next_cell(dist, cells[-1]))
        return cells


def next_cell(dist: np.ndarray, cell: tuple[int, int]) -> tuple[int, int]:
    """The neighbour of `cell` one step closer to the goal of `dist` (the cell itself at the
    goal). Ties go to the first of down, up, right, left, so plans are deterministic."""
    r, c = cell
    best = cell
    for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
        if 0 <= nb[0] < dist.shape[0] and 0 <= nb[1] < dist.shape[1] \
                and dist[nb] < dist[best]:
            best = nb
    return best


def make_maze(name: str) -> Maze:
    if name not in LAYOUTS:
        raise ValueError(f"unknown maze '{name}' ({', '.join(LAYOUTS)})")
    return Maze(name, np.array([[ch == "#" for ch in row] for row in LAYOUTS[name]]))


@dataclasses.dataclass(frozen=True)
class Task:
    """Where a dataset's episodes start and which goals they are sent to.

    goal_set says it in words, because D4RL's names mislead: D4RL's "play" commands the ant
    to hand-picked cells and "diverse" to any cell, while Minari's D4RL/antmaze-*-v1 remakes
    use the maps the other way round (play: any cell; diverse: the hand-picked ones).
    seemrl follows D4RL's paper and writes the cells into the metadata.
    """

    name: str
    maze: str
    starts: tuple[tuple[int, int], ...]
    goals: tuple[tuple[int, int], ...]
    goal_set: str


def tasks() -> dict[str, Task]:
    """The six D4RL AntMaze tasks by D4RL name ('umaze', 'medium-play', ...)."""
    out = {"umaze": Task("umaze", "umaze", (START,), (EVAL_GOAL["umaze"],),
                         "fixed: start cell (1, 1), goal cell (3, 1) (D4RL's antmaze-umaze)")}
    for maze in LAYOUTS:
        cells = tuple(make_maze(maze).open_cells)
        out[f"{maze}-diverse"] = Task(
            f"{maze}-diverse", maze, cells, cells,
            "diverse: start and goal drawn from every open cell (D4RL's 'diverse')")
        if maze in PICKED:
            out[f"{maze}-play"] = Task(
                f"{maze}-play", maze, PICKED[maze], PICKED[maze],
                "play: start and goal drawn from hand-picked cells (D4RL's 'play'; the 'C' "
                "cells of gymnasium-robotics' *_DIVERSE_GR maps)")
    return out


class Waypoints:
    """Steers toward a goal through the maze, one jittered cell centre at a time.

    The next waypoint is the next cell on a shortest path, at its centre + jitter; the
    controller moves on when within WAYPOINT_SWITCH of it (Minari's convention). When the
    ant is pushed off the plan (its cell is neither the waypoint's nor the one before it),
    the plan restarts from the ant's cell. In the goal's cell the waypoint is the goal.
    """

    def __init__(self, maze: Maze, goal_xy, rng: np.random.Generator,
                 switch: float = WAYPOINT_SWITCH, jitter: float = WAYPOINT_JITTER):
        self.maze, self.rng, self.switch, self.jitter = maze, rng, switch, jitter
        self.goal_xy = np.asarray(goal_xy, np.float64)
        self.goal_cell = maze.xy_cell(self.goal_xy)
        self.dist = maze.distances(self.goal_cell)
        self.cell: tuple[int, int] | None = None
        self.xy = self.goal_xy

    def _aim(self, cell: tuple[int, int]) -> None:
        self.cell = cell
        self.xy = self.goal_xy if cell == self.goal_cell else \
            self.maze.cell_xy(cell) + self.rng.uniform(-self.jitter, self.jitter, 2)

    def __call__(self, xy) -> np.ndarray:
        """The waypoint (x, y) to steer to from torso position `xy`."""
        here = self.maze.xy_cell(xy)
        on_plan = self.cell is not None and (
            here == self.cell or (abs(here[0] - self.cell[0]) + abs(here[1] - self.cell[1]) == 1
                                  and self.dist[here] == self.dist[self.cell] + 1))
        if not on_plan:
            self._aim(next_cell(self.dist, here) if here != self.goal_cell else here)
        elif (self.cell is not None and self.cell != self.goal_cell
              and np.linalg.norm(self.xy - xy) <= self.switch):
            self._aim(next_cell(self.dist, self.cell))
        return self.xy
