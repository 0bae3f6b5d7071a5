"""seemrl's own D4RL-style locomotion datasets, rolled out locally from shipped SAC policies.

Names are `<env>-<level>` (e.g. `hopper-medium`); on disk and in metadata they are
`seemrl/<env>-<level>-v0`, so nobody mistakes them for D4RL's files. Levels follow D4RL:

  random, medium, expert  one policy (see `seemrl.policies`) rolled out for `size` steps;
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

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seemrl.data._common import atomic_path
from seemrl.evaluation import ENV_IDS, lockstep, make_env
from seemrl.types import DataError, Dataset, WriteError

ENVS = {env: ENV_IDS[env] for env in ("hopper", "walker2d", "halfcheetah")}
"""Envs with shipped behaviour policies (Ant has none yet)."""
LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert")
DEFAULT_SIZE = 1_000_000
GENERATOR_VERSION = 1
DATASET_VERSION = "v0"
N_ENVS = 64


def dataset_names() -> list[str]:
    """Every name `make_dataset` knows, e.g. 'hopper-medium'."""
    return [f"{env}-{level}" for env in ENVS for level in LEVELS]


def default_data_dir() -> Path:
    """$SEEMRL_DATA_DIR, else ~/.seemrl/datasets (the one place the variable is read)."""
    return Path(os.environ.get("SEEMRL_DATA_DIR") or "~/.seemrl/datasets").expanduser()


def parse_name(name: str) -> tuple[str, str] | None:
    """'hopper-medium', 'hopper-medium-v0' or 'seemrl/hopper-medium-v0' -> ('hopper', 'medium').

    None when the name is not one of seemrl's datasets.
    """
    base = name.removeprefix("seemrl/").removesuffix(f"-{DATASET_VERSION}")
    if base not in dataset_names():
        return None
    env, level = base.split("-", 1)
    return env, level


def _check_name(name: str) -> tuple[str, str]:
    parsed = parse_name(name)
    if parsed is None:
        raise DataError(f"unknown dataset '{name}'; seemrl can make: "
                        f"{', '.join(dataset_names())}")
    return parsed


def dataset_path(name: str, data_dir: str | Path, size: int = DEFAULT_SIZE, seed: int = 0
                 ) -> Path:
    """Where `make_dataset(name, size, seed)` writes its HDF5 file."""
    env, level = _check_name(name)
    return file_path(f"{env}-{level}-{DATASET_VERSION}", data_dir, size, seed)


def file_path(stem: str, data_dir: str | Path, size: int, seed: int,
              default_size: int = DEFAULT_SIZE) -> Path:
    """The one naming rule of seemrl's made datasets: `<stem>[-n<size>][-s<seed>].hdf5`, the
    suffixes only where size and seed differ from the defaults."""
    return Path(data_dir).expanduser() / f"{stem}{suffix(size, seed, default_size)}.hdf5"


def suffix(size: int, seed: int, default_size: int = DEFAULT_SIZE) -> str:
    """`-n<size>` and `-s<seed>` where they differ from the defaults (file names, Minari ids)."""
    return ("" if size == default_size else f"-n{size}") + ("" if seed == 0 else f"-s{seed}")


def _policy_levels(level: str) -> list[str]:
    """The recorded policy levels a dataset level rolls out: medium-expert is medium's and
    expert's rollouts, half each; every other level its own policy (or snapshots)."""
    return ["medium", "expert"] if level == "medium-expert" else [level]


def _policies_needed(env: str, level: str) -> list[str]:
    """The recorded policies a level's rollouts use."""
    return [f"{env}-{lvl}" for lvl in _policy_levels(level)]


def _segments(env: str, level: str, size: int, policy_dir: Path) -> list[tuple[str, str, int]]:
    """[(policy name, file, transitions)] rolled out one after another for a level."""
    from seemrl.policies import registry

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
    quota = np.full(n_envs, size // n_envs) + (np.arange(n_envs) < size % n_envs)
    offset = np.concatenate([[0], np.cumsum(quota)[:-1]])
    envs = [make_env(env_id, disable_env_checker=True) for _ in range(n_envs)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    cols: dict[str, Any] = {"observations": np.zeros((size, obs_dim), np.float32),
            "actions": np.zeros((size, act_dim), np.float32),
            "rewards": np.zeros(size, np.float32),
            "next_observations": np.zeros((size, obs_dim), np.float32),
            "terminals": np.zeros(size, np.float32), "timeouts": np.zeros(size, bool),
            "episode_ends": np.zeros(size, bool)}
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

    from seemrl.evaluation import REF_SCORES
    from seemrl.policies import POLICY_DIR, load_policy, registry

    env, level = _check_name(name)
    if size < 1:
        raise DataError(f"dataset size must be ≥ 1, got {size}")
    policy_dir = Path(policy_dir or POLICY_DIR)
    env_id = ENVS[env]
    segments = _segments(env, level, size, policy_dir)
    parts, used = [], []
    with _progress(progress, f"seemrl/{env}-{level}-{DATASET_VERSION}", size) as advance:
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


class _progress:
    """A rich progress bar (or nothing) yielding an `advance(n)` callback."""

    def __init__(self, show: bool, label: str, total: int):
        self.show, self.label, self.total = show, label, total

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.show:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("making {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeRemainingColumn(), transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.show:
            self.bar.stop()


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".seemrl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DataError(f"cannot write datasets to {directory}: {e.strerror or e}") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: str | Path) -> None:
    """Raises DataError when `path` does not match the `<path>.sha256` written beside it."""
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        raise DataError(f"no checksum file {side} beside {path}; remake the dataset")
    expected = side.read_text().split()[0]
    if sha256(path) != expected:
        raise DataError(f"checksum mismatch for {path} (corrupted or edited); delete it and "
                        "make the dataset again")


def changed_policies(info: dict[str, Any], policy_dir: Path | None = None) -> list[str]:
    """The behaviour-policy files that differ from those a made dataset was rolled out with.

    Empty when `data make` would roll out the same policies today. `info` is the dataset's
    metadata (or its `.json` summary). Files made before policy digests were recorded are
    compared by their policies' measured returns and by the snapshot files used.
    """
    from seemrl.policies import POLICY_DIR, registry

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
    if fmt not in ("hdf5", "minari"):
        raise DataError(f"unknown dataset format '{fmt}' (hdf5 | minari)")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    _check_writable(data_dir)
    policy_dir = None
    if retrain:
        from seemrl.policies import retrain as retrain_policies
        from seemrl.policies import same_run

        policy_dir = data_dir / "policies"
        retrained: list[str] = []
        for needed in _policies_needed(env, level):
            # Levels picked from one SAC run are retrained together, once.
            if not any(same_run(needed, other) for other in retrained):
                retrain_policies(needed, data_dir / "runs" / needed, policy_dir)
                retrained.append(needed)
    t0 = time.time()
    data = build_dataset(name, size, seed, policy_dir, progress, n_envs)
    meta = data.metadata  # no timings in the file: same seed, same bytes
    if fmt == "minari":
        from seemrl.data.minari import save_minari

        tail = suffix(size, seed)
        return save_minari(f"seemrl/{env}-{level}{tail}-{DATASET_VERSION}", data,
                           ENVS[env], data_dir / "minari", algorithm_name="SAC (seemrl)",
                           description=json.dumps(meta), ref_min_score=meta["ref_min_score"],
                           ref_max_score=meta["ref_max_score"], overwrite=True)
    from seemrl.data.d4rl import save_d4rl

    path = dataset_path(name, data_dir, size, seed)
    save_d4rl(path, data, meta)
    digest = sha256(path)
    summary = {**meta, "transitions": len(data), "sha256": digest, "path": str(path),
               "make_seconds": round(time.time() - t0, 1)}
    try:
        for side, text in ((".sha256", f"{digest}  {path.name}\n"),
                           (".json", json.dumps(summary, indent=1) + "\n")):
            with atomic_path(path.with_name(path.name + side)) as tmp:
                tmp.write_text(text)
    except WriteError:
        path.unlink(missing_ok=True)  # a dataset without its checksum is refused on use
        raise
    return path


def list_datasets(data_dir: str | Path) -> list[dict[str, Any]]:
    """One row per known dataset (default size and seed) plus any other made variants.

    Row keys: name, can_make (its behaviour policies are shipped), on_disk, path,
    size_bytes, transitions, avg_return (of complete episodes; None when not on disk), stale
    (made with behaviour policies that have changed since; None when not on disk).
    """
    from seemrl.policies import registry

    data_dir = Path(data_dir).expanduser()
    reg = registry()
    rows = []
    for name in dataset_names():
        env, level = name.split("-", 1)
        can = all(f"{env}-{lvl}" in reg for lvl in _policy_levels(level))
        default = dataset_path(name, data_dir)
        found = sorted(data_dir.glob(f"{env}-{level}-{DATASET_VERSION}*.hdf5"))
        for path in found or [default]:
            row = {"name": name, "can_make": can, "on_disk": path.exists(), "path": str(path),
                   "size_bytes": None, "transitions": None, "avg_return": None, "stale": None}
            if path.exists():
                side = path.with_name(path.name + ".json")
                info = json.loads(side.read_text()) if side.exists() else {}
                row.update(size_bytes=path.stat().st_size, transitions=info.get("transitions"),
                           avg_return=info.get("avg_return"),
                           stale=bool(changed_policies(info)) if info else None)
            rows.append(row)
    return rows


def resolve_builtin(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The HDF5 file of built-in dataset `name`, made on first use (with a progress bar).

    Returns None when `name` is not one of seemrl's datasets (the caller tries other sources).
    A file already on disk is reused after its checksum is verified; a warning says when it
    was made with behaviour policies that have changed since (the file is kept: runs already
    made on it stay comparable; `seemrl data make NAME` replaces it).
    """
    if parse_name(name) is None:
        return None
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path = dataset_path(name, data_dir)
    if path.exists():
        verify_checksum(path)
        side = path.with_name(path.name + ".json")
        changed = changed_policies(json.loads(side.read_text())) if side.exists() else []
        if changed:
            print(f"warning: {path} was made with behaviour policies that have changed since "
                  f"({', '.join(changed)}); using it as it is (`seemrl data make {name}` "
                  "remakes it)", file=sys.stderr)
        return path
    return make_dataset(name, data_dir=data_dir, progress=True)
