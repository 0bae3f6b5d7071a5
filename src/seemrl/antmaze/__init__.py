"""AntMaze made locally: D4RL's mazes built in MuJoCo around Gymnasium's Ant, a planner over
maze cells, a goal-reaching controller trained with seemrl's SAC, and D4RL-format datasets.

  maze.py        layouts (umaze / medium / large, D4RL's frame), tasks (start and goal cell
                 sets, play / diverse labelled), BFS planner, jittered waypoints;
  env.py         the MuJoCo model (Gymnasium's ant.xml + wall blocks), D4RL's 29-dim
                 observation, the evaluation envs seemrl/AntMaze-<maze>-v0 (score = success
                 rate × 100);
  controller.py  directional-locomotion SAC (resumable), the shipped controller;
  data.py        `seemrl data make antmaze-<task>`.

Every difference from D4RL's AntMaze is listed in docs/DATASETS.md.
"""
