"""seemrl's own D4RL-style locomotion datasets, rolled out locally from shipped SAC policies.

Names are `<env>-<level>` (e.g. `hopper-medium`); on disk and in metadata they are
`seemrl/<env>-<level>-v0`, so nobody mistakes them for D4RL's files. Levels follow D4RL:

  random, medium, expert  one policy (see `seemrl.behaviour.policies`) rolled out for `size` steps;
  medium-replay           the medium run's snapshots, each for its share of `size` steps;
  medium-expert           medium for size//2 steps, then expert for the rest.

Noise convention (every level, every time): actions are sampled from the policy's own
tanh-Gaussian, a = tanh(μ(s) + σ(s)·ε), ε ~ N(0, I) — D4RL likewise rolled out its SAC
policies stochastically. Rollouts are deterministic for a seed: `n_envs` environments run in
lockstep with one batched jitted policy call per step; environment i of segment k is reset
from SeedSequence([seed, k, i]) and the noise keys fold in the same numbers. Each
environment contributes a fixed quota of transitions and its last, cut episode is marked as a
timeout (its next observation is real), as D4RL cut its last episode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seemrl.behaviour import files
from seemrl.behaviour.files import DATASET_VERSION, sha256
from seemrl.evaluation import ENV_IDS, lockstep, make_env
from seemrl.types import DataError, Dataset

ENVS = {env: ENV_IDS[env] for env in ("hopper", "walker2d", "halfcheetah")}
"""Envs with shipped behaviour policies (Ant has none yet)."""
LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert")
DEFAULT_SIZE = 1_000_000
GENERATOR_VERSION = 1
MAKE_OPTIONS = ("retrain",)
"""`make_dataset`'s options of this family alone (the catalogue refuses them elsewhere)."""
N_ENVS = 64


def dataset_names() -> list[str]:
    """Every name `make_dataset` knows, e.g. 'hopper-medium'."""
    return [f"{env}-{level}" for env in ENVS for level in LEVELS]


def parse_name(name: str) -> tuple[str, str] | None:
    """'hopper-medium', 'hopper-medium-v0' or 'seemrl/hopper-medium-v0' -> ('hopper', 'medium').

    None when the name is not one of seemrl's datasets.
    """
    base = files.base_name(name)
    if base not in dataset_names():
        return None
    env, level = base.split("-", 1)
    return env, level


def _check_name(name: str) -> tuple[str, str]:
    parsed = parse_name(name)
    if parsed is None:
        raise files.unknown(name, "dataset", dataset_names())
    return parsed


def _policy_levels(level: str) -> list[str]:
    """The recorded policy levels a dataset level rolls out: medium-expert is medium's and
    expert's rollouts, half each; every other level its own policy (or snapshots)."""
    return ["medium", "expert"] if level == "medium-expert" else [level]


def _policies_needed(env: str, level: str) -> list[str]:
    """The recorded policies a level's rollouts use."""
    return [f"{env}-{lvl}" for lvl in _policy_levels(level)]


def _segments(env: str, level: str, size: int, policy_dir: Path) -> list[tuple[str, str, int]]:
    """[(policy name, file, transitions)] rolled out one after another for a level."""
    from seemrl.behaviour.policies import registry

    reg = registry(policy_dir)

    def rec(lvl: str) -> dict:
        if f"{env}-{lvl}" not in reg:
            raise DataError(f"no behaviour policy '{env}-{lvl}' in {policy_dir}; "
                            "retrain it (make_dataset(..., retrain=True))")
        return reg[f"{env}-{lvl}"]

    if level == "medium-replay":
        snaps = rec("medium-replay")["snapshots"]
        counts = [int(size * s["share"]) for s in snaps]
        counts[-1] += size - sum(counts)  # rounding leftovers go to the last snapshot
        return [(f"{env}-medium-replay", s["file"], n)
                for s, n in zip(snaps, counts, strict=True) if n > 0]
    levels = _policy_levels(level)
    counts = [size // len(levels)] * len(levels)
    counts[-1] += size - sum(counts)
    return [(f"{env}-{lvl}", rec(lvl)["file"], n) for lvl, n in zip(levels, counts, strict=True)]


def rollout(act: Callable, params, env_id: str, size: int, seed: int, segment: int = 0,
            n_envs: int = N_ENVS, advance: Callable[[int], None] | None = None) -> Dataset:
    """`size` transitions of a stochastic policy, `n_envs` environments in lockstep.

    Args:
      act: jitted (params, obs (n_envs, obs_dim), key) -> actions (n_envs, act_dim).
      size: transitions in total; environment i contributes size // n_envs (+1 for the first
        size % n_envs), stored one environment after another.
      seed, segment: make resets and noise reproducible (see the module docstring).
      advance: called with the number of new transitions (for a progress bar).

    Returns:
      A Dataset (terminals from `terminated`; timeouts from the time limit or the quota cut).
    """
    import jax

    n_envs = max(1, min(n_envs, size))
    quota, offset = files.quotas(size, n_envs)
    envs = [make_env(env_id, disable_env_checker=True) for _ in range(n_envs)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    cols: dict[str, Any] = files.empty_columns(size, obs_dim, act_dim)
    obs = np.stack([e.reset(seed=int(np.random.SeedSequence([seed, segment, i])
                                     .generate_state(1)[0]))[0]
                    for i, e in enumerate(envs)]).astype(np.float32)
    count = np.zeros(n_envs, int)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), segment)
    last: list[np.ndarray] = []  # the actions of the current policy call

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        last[:] = [np.asarray(act(params, obs, jax.random.fold_in(key, t)))]
        return last[0]

    def step(i: int, result: tuple) -> bool:
        next_obs, r, term, trunc, _ = result
        row = offset[i] + count[i]
        count[i] += 1
        cut = count[i] == quota[i]
        cols["observations"][row] = obs[i]
        cols["actions"][row] = last[0][i]
        cols["rewards"][row] = r
        cols["next_observations"][row] = next_obs
        cols["terminals"][row] = float(term)
        cols["timeouts"][row] = (trunc or cut) and not term
        cols["episode_ends"][row] = term or trunc or cut
        obs[i] = envs[i].reset()[0] if (term or trunc) and not cut else next_obs
        return bool(count[i] < quota[i])

    lockstep(envs, obs, policy, step, count < quota, advance)
    for e in envs:
        e.close()
    return Dataset(**cols)


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])  # type: ignore[arg-type]
                      for f in Dataset.__dataclass_fields__.values()
                      if f.name != "metadata" and getattr(parts[0], f.name) is not None})


def build_dataset(name: str, size: int = DEFAULT_SIZE, seed: int = 0,
                  policy_dir: Path | None = None, progress: bool = False,
                  n_envs: int = N_ENVS) -> Dataset:
    """Rolls out dataset `name` in memory (no files). Metadata as written by make_dataset."""
    import gymnasium
    import mujoco

    from seemrl.behaviour.policies import POLICY_DIR, load_policy, registry
    from seemrl.evaluation import REF_SCORES

    env, level = _check_name(name)
    if size < 1:
        raise DataError(f"dataset size must be ≥ 1, got {size}")
    policy_dir = Path(policy_dir or POLICY_DIR)
    env_id = ENVS[env]
    segments = _segments(env, level, size, policy_dir)
    parts, used = [], []
    with files.progress_bar(progress, f"seemrl/{env}-{level}-{DATASET_VERSION}", size) as advance:
        for k, (pname, file, n) in enumerate(segments):
            pol = load_policy(pname, policy_dir, file)
            parts.append(rollout(pol.act, pol.params, env_id, n, seed, k, n_envs, advance))
            used.append({"policy": pname, "file": file, "transitions": n,
                         "return_mean": pol.info.get("return_mean"),
                         "normalized": pol.info.get("normalized"),
                         "sha256": sha256(policy_dir / file)})
    data = _concat(parts)
    rets, complete = complete_episode_returns(data, _max_steps(env_id))
    lo, hi = REF_SCORES[env]
    first = registry(policy_dir)[segments[0][0]]
    meta = {"name": f"seemrl/{env}-{level}-{DATASET_VERSION}", "env_id": env_id,
            "env_version": env_id.rsplit("-", 1)[1], "level": level,
            "source_kind": "seemrl-generated (not D4RL)",
            "mujoco_version": mujoco.__version__, "gymnasium_version": gymnasium.__version__,
            "generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
            "n_envs": n_envs, "noise": "policy's own tanh-Gaussian (stochastic SAC actions)",
            "policy": "+".join(dict.fromkeys(s[0] for s in segments)),
            "policy_return": first.get("return_mean") if level != "medium-expert" else None,
            "policy_normalized": first.get("normalized") if level != "medium-expert" else None,
            "policies": json.dumps(used), "ref_min_score": lo, "ref_max_score": hi,
            "episodes": int(len(rets)), "episodes_complete": int(complete.sum()),
            "avg_return": float(rets[complete].mean() if complete.any() else rets.mean())}
    return Dataset(**{**{f: getattr(data, f) for f in Dataset.__dataclass_fields__
                         if f != "metadata"}, "metadata": meta})


def complete_episode_returns(data: Dataset, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(returns (E,), complete (E,) bool) per episode; complete = ended by a terminal or by
    the env's time limit, not by a quota cut (cut episodes would bias the average down)."""
    rets = data.episode_returns()
    ends = np.flatnonzero(data.episode_ends)
    if len(ends) == 0 or ends[-1] != len(data) - 1:
        ends = np.append(ends, len(data) - 1)
    lengths = np.diff(np.concatenate([[-1], ends]))
    return rets, (data.terminals[ends] > 0) | (lengths == max_steps)


def _max_steps(env_id: str) -> int:
    import gymnasium as gym

    return int(gym.spec(env_id).max_episode_steps or 0)


def changed_policies(info: dict[str, Any], policy_dir: Path | None = None) -> list[str]:
    """The behaviour-policy files that differ from those a made dataset was rolled out with.

    Empty when `data make` would roll out the same policies today. `info` is the dataset's
    metadata (or its `.json` summary). Files made before policy digests were recorded are
    compared by their policies' measured returns and by the snapshot files used.
    """
    from seemrl.behaviour.policies import POLICY_DIR, registry

    policy_dir = Path(policy_dir or POLICY_DIR)
    used = json.loads(info.get("policies") or "[]")
    try:
        env, level = _check_name(str(info.get("name", "")))
        now = [file for _, file, _ in _segments(env, level, int(info["size"]), policy_dir)]
    except (DataError, KeyError):
        return sorted({u["file"] for u in used})  # no longer shipped at all
    changed = {u["file"] for u in used} ^ set(now)
    reg = registry(policy_dir)
    for u in used:
        path = policy_dir / u["file"]
        if not path.exists():
            same = False
        elif "sha256" in u:
            same = u["sha256"] == sha256(path)
        else:  # made before digests were recorded: the policy's measured return tells
            same = (u.get("return_mean") is None
                    or u["return_mean"] == reg.get(u["policy"], {}).get("return_mean"))
        if not same:
            changed.add(u["file"])
    return sorted(changed)


def make_dataset(name: str, size: int = DEFAULT_SIZE, seed: int = 0,
                 data_dir: str | Path | None = None, fmt: str = "hdf5", progress: bool = True,
                 retrain: bool = False, n_envs: int = N_ENVS) -> Path:
    """Makes dataset `name` (e.g. 'hopper-medium') and writes it under `data_dir`.

    Args:
      size: transitions; seed: rollout seed (same seed, same bytes).
      data_dir: output directory (default `default_data_dir()`).
      fmt: "hdf5" (D4RL format, with `<file>.sha256` and `<file>.json` summary beside it) or
        "minari" (a local Minari dataset `seemrl/<env>-<level>-v0` under data_dir/minari).
      retrain: train the behaviour policies again with their recorded SAC configs (hours)
        into data_dir/policies and roll those out instead of the shipped ones.

    Returns:
      The HDF5 file, or the Minari dataset's data directory.

    Raises:
      DataError: unknown name or format, or an unwritable data_dir.
    """
    env, level = _check_name(name)
    files.check_format(fmt)
    data_dir = files.data_dir_or_default(data_dir)
    files.check_writable(data_dir)
    policy_dir = None
    if retrain:
        from seemrl.behaviour.policies import retrain as retrain_policies
        from seemrl.behaviour.policies import same_run

        policy_dir = data_dir / "policies"
        retrained: list[str] = []
        for needed in _policies_needed(env, level):
            # Levels picked from one SAC run are retrained together, once.
            if not any(same_run(needed, other) for other in retrained):
                retrain_policies(needed, data_dir / "runs" / needed, policy_dir)
                retrained.append(needed)
    started = time.time()
    data = build_dataset(name, size, seed, policy_dir, progress, n_envs)
    return files.save_made(data, f"{env}-{level}", data_dir, size=size, seed=seed,
                           default_size=DEFAULT_SIZE, fmt=fmt, env_id=ENVS[env],
                           algorithm_name="SAC (seemrl)", started=started)


# -- the catalogue's questions (seemrl.behaviour.list_datasets) --------------------------------
def can_make(name: str) -> bool:
    """Whether the behaviour policies `name` rolls out are shipped."""
    from seemrl.behaviour.policies import registry

    env, level = _check_name(name)
    reg = registry()
    return all(f"{env}-{lvl}" in reg for lvl in _policy_levels(level))


def policy_score(name: str) -> float | None:
    """The normalised score of the one policy `name` rolls out (None for mixtures)."""
    from seemrl.behaviour.policies import registry

    return registry().get(name, {}).get("normalized")


def data_score(info: dict[str, Any]) -> float | None:
    """A made file's average return of complete episodes (from its summary)."""
    return info.get("avg_return")


stale = changed_policies
