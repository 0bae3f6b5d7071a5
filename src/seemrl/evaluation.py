"""Policy evaluation in Gymnasium MuJoCo environments, and D4RL-normalised scores.

All seeds × episodes run in lockstep: one batched policy call per environment step, so
evaluating 5 seeds × 10 episodes costs about as many policy calls as one episode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from seemrl.types import DataError

# D4RL reference returns (random, expert) per environment family (SPEC §6).
REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
}
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
           "ant": "Ant-v5"}


def env_family(env_id: str) -> str | None:
    """'Hopper-v5' -> 'hopper'; None when the env is not a known locomotion task."""
    name = env_id.split("/")[-1].split("-")[0].lower()
    name = {"walker": "walker2d", "cheetah": "halfcheetah"}.get(name, name)
    return name if name in REF_SCORES else None


def infer_env_id(metadata: dict[str, Any]) -> str | None:
    """The evaluation env named by a dataset: its `env_id`, else a family in its name."""
    if metadata.get("env_id"):
        return str(metadata["env_id"])
    text = " ".join(str(metadata.get(k, "")) for k in ("name", "source")).lower()
    for family in sorted(ENV_IDS, key=len, reverse=True):  # 'halfcheetah' before 'ant'
        if re.search(family, text) and not (family == "ant" and "antmaze" in text):
            return ENV_IDS[family]
    return None


def reference_scores(env_id: str, metadata: dict[str, Any] | None = None) -> tuple[float, float]:
    """(min, max) returns for normalisation: the dataset's own if it carries them, else D4RL's."""
    metadata = metadata or {}
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        return float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
    family = env_family(env_id)
    if family is None:
        raise DataError(f"no reference scores for env '{env_id}': the dataset must carry "
                        "ref_min_score / ref_max_score metadata")
    return REF_SCORES[family]


def normalized_score(returns, ref: tuple[float, float]):
    """100 · (return − min) / (max − min)."""
    lo, hi = ref
    return 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)


def _route_mujoco_warnings() -> None:
    """MuJoCo's default warning handler appends to MUJOCO_LOG.TXT in the current folder (e.g.
    HalfCheetah-v5's XML uses a deprecated attribute); send them to Python's warnings instead."""
    import warnings

    import mujoco

    mujoco.set_mju_user_warning(lambda msg: warnings.warn(f"MuJoCo: {msg}", stacklevel=2))


def make_env(env_id: str, **kwargs):
    """`gymnasium.make`, with MuJoCo warnings routed to Python and a bad id as a DataError."""
    import gymnasium as gym

    _route_mujoco_warnings()
    if env_id.startswith("seemrl/AntMaze-"):  # seemrl's own maze envs register on first use
        from seemrl.antmaze.env import register

        register()
    try:
        return gym.make(env_id, **kwargs)
    except Exception as e:  # noqa: BLE001 - gymnasium raises many types for a bad id
        raise DataError(f"cannot make evaluation env '{env_id}': {str(e).splitlines()[0]}") \
            from None


def env_dims(env_id: str) -> tuple[int, int, float]:
    """(obs_dim, act_dim, max_action) of a Box-space env."""
    env = make_env(env_id)
    try:
        obs_shape, act_space = env.observation_space.shape, env.action_space
        if obs_shape is None or len(obs_shape) != 1 or act_space.shape is None:
            raise DataError(f"env '{env_id}' needs flat Box observation and action spaces")
        return obs_shape[0], act_space.shape[0], float(np.max(act_space.high))
    finally:
        env.close()


class Episodes(NamedTuple):
    """What evaluation measured, each (num_policies, episodes)."""

    returns: np.ndarray
    """Undiscounted return (float64)."""
    lengths: np.ndarray
    """Steps taken (int)."""
    terminated: np.ndarray
    """True where the env ended the episode (a fall in the locomotion tasks), False where it
    was cut by the time limit: a low return with no fall is a slow policy, not a falling one."""


def lockstep(envs: Sequence[Any], obs: np.ndarray, act: Callable[[np.ndarray, int], Any],
             step: Callable[[int, tuple], bool], alive: np.ndarray,
             after_round: Callable[[int], None] | None = None) -> None:
    """Step `envs` side by side, the one rollout loop of evaluation, SAC and data generation.

    While any env is alive: one batched policy call `act(obs, t)` on every row of `obs`
    (n_envs, obs_dim) (the rows of ended envs included, so its shape never changes; t counts
    the calls from 0), then each alive env in index order steps with its action and
    `step(i, (next_obs, reward, terminated, truncated, info))` updates `obs[i]` and the
    caller's records and says whether env i goes on; `after_round(n)` hears how many envs
    stepped. `alive` (n_envs,) bool is updated in place.
    """
    t = 0
    while alive.any():
        actions = np.asarray(act(obs, t))
        t += 1
        live = [int(i) for i in np.flatnonzero(alive)]
        for i in live:
            alive[i] = step(i, envs[i].step(actions[i]))
        if after_round is not None:
            after_round(len(live))


def evaluate(policy: Callable[[np.ndarray], np.ndarray], env_id: str, seeds: Sequence[int],
             episodes: int) -> Episodes:
    """Roll out one policy per seed, `episodes` episodes each.

    Args:
      policy: raw observations (num_policies, episodes, obs_dim) -> actions
        (num_policies, episodes, act_dim). It must apply the training normalisation itself.
      seeds: the training seed of each policy; episode e of seed s resets its env with
        1000·s + e, so a seed's evaluation does not depend on which other seeds run beside it.
    Returns:
      Episodes of shape (num_policies, episodes).
    """
    num_policies = len(seeds)
    envs = [[make_env(env_id) for _ in range(episodes)] for _ in range(num_policies)]
    obs_dim = envs[0][0].observation_space.shape[0]
    obs = np.zeros((num_policies, episodes, obs_dim), np.float32)
    for p in range(num_policies):
        for e in range(episodes):
            obs[p, e] = envs[p][e].reset(seed=1000 * int(seeds[p]) + e)[0]
    returns = np.zeros((num_policies, episodes))
    lengths = np.zeros((num_policies, episodes), np.int64)
    ended = np.zeros((num_policies, episodes), bool)
    # The (policy, episode) grid as one row per env: views, in the grid's row-major order.
    flat_obs, flat_returns = obs.reshape(-1, obs_dim), returns.reshape(-1)
    flat_lengths, flat_ended = lengths.reshape(-1), ended.reshape(-1)

    def step(i: int, result: tuple) -> bool:
        o, r, terminated, truncated, _ = result
        flat_obs[i] = o
        flat_returns[i] += r
        flat_lengths[i] += 1
        flat_ended[i] = terminated
        return not (terminated or truncated)

    try:
        lockstep([env for row in envs for env in row], flat_obs,
                 lambda _, t: np.asarray(policy(obs)).reshape(len(flat_obs), -1), step,
                 np.ones(num_policies * episodes, bool))
    finally:
        for row in envs:
            for env in row:
                env.close()
    return Episodes(returns, lengths, ended)
