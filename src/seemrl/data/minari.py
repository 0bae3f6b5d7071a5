"""Local Minari datasets: read into a `Dataset` (never downloading), write with Minari's writer.

Minari layout (SPEC §6): `<root>/<dataset id>/data/` holding `metadata.json` and, for the
default "hdf5" format, `main_data.hdf5` with one `episode_<i>` group per episode:
observations (T + 1, obs_dim), actions (T, act_dim), rewards, terminations, truncations (T,).
`<root>` is `$MINARI_DATASETS_PATH`, else `~/.minari/datasets` (Minari's own convention).

The hdf5 format is read with h5py directly: no `minari` import, no environment built, and no
code path that could download. Other formats (Minari's "arrow") go through
`minari.MinariDataset(<local data dir>)`, which only reads the given directory.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import warnings
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from seemrl.data._common import from_arrays, normalise_metadata, to_python
from seemrl.types import DataError, Dataset, WriteError


def minari_root(root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The local Minari datasets directory: `root` if given, else `$MINARI_DATASETS_PATH`,
    else `~/.minari/datasets`. Read at call time (not import time) so tests can redirect it."""
    if root is None:
        root = os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
    return pathlib.Path(root).expanduser()


def find_minari_data_dir(id_or_path: str | os.PathLike[str],
                         root: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
    """The `data` directory of a local Minari dataset named by path or id, or None."""
    for candidate in (pathlib.Path(id_or_path).expanduser(),
                      minari_root(root) / str(id_or_path)):
        for data_dir in (candidate / "data", candidate):
            if (data_dir / "metadata.json").is_file():
                return data_dir
    return None


def _env_id(spec_json: Any) -> str | None:
    """The `id` of a serialised gymnasium EnvSpec (Minari stores it as a JSON string)."""
    if not isinstance(spec_json, str):
        return None
    try:
        return json.loads(spec_json).get("id")
    except (json.JSONDecodeError, AttributeError):
        return None


def _leaf(obj: Any, what: str, episode: str, source: str,
          obs_keys: Sequence[str] | None) -> np.ndarray:
    """An (T, dim) array from an episode's observations/actions, flattening Dict spaces only
    when unambiguous: a single key, or the keys the caller named."""
    if isinstance(obj, h5py.Dataset):
        array = obj[()]
    else:
        keys = list(obj.keys())
        if obs_keys is None and len(keys) == 1:
            obs_keys = keys
        if what != "observations" or obs_keys is None:
            raise DataError(
                f"{source}: {episode}/{what} is a Dict/Tuple space with keys {keys}; only Box "
                "spaces are supported (for observations, pass obs_keys to concatenate keys)")
        missing = [k for k in obs_keys if k not in obj or not isinstance(obj[k], h5py.Dataset)]
        if missing:
            raise DataError(f"{source}: {episode}/{what} has no array key(s) {missing}")
        array = np.concatenate(
            [obj[k][()].reshape(len(obj[k]), -1).astype(np.float32) for k in obs_keys], axis=1)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{source}: {episode}/{what} has shape {array.shape}; "
                        "only flat (vector) spaces are supported")
    return array


def _read_hdf5_episodes(file: pathlib.Path, obs_keys: Sequence[str] | None) -> list[dict]:
    source = str(file)
    if not file.is_file():
        raise DataError(f"{source}: no such file")
    episodes = []
    try:
        with h5py.File(file, "r") as f:
            names = sorted((k for k in f.keys() if re.fullmatch(r"episode_\d+", k)),
                           key=lambda k: int(k.split("_")[1]))
            for name in names:
                group = f[name]
                for key in ("observations", "actions", "rewards", "terminations",
                            "truncations"):
                    if key not in group:
                        raise DataError(f"{source}: missing key '{name}/{key}'")
                episodes.append({
                    "observations": _leaf(group["observations"], "observations", name, source,
                                          obs_keys),
                    "actions": _leaf(group["actions"], "actions", name, source, None),
                    "rewards": group["rewards"][()],
                    "terminations": group["terminations"][()],
                    "truncations": group["truncations"][()],
                    "name": name,
                })
    except OSError as e:
        raise DataError(f"{source}: not a readable HDF5 file ({e})") from None
    return episodes


def _read_other_format(data_dir: pathlib.Path) -> list[dict]:
    try:
        import minari
    except ImportError:
        raise DataError(f"{data_dir}: this Minari dataset is not in hdf5 format; reading it "
                        "needs the optional extra: pip install 'seemrl[minari]'") from None
    try:
        # Constructed from the local directory: MinariDataset never downloads.
        ds = minari.MinariDataset(str(data_dir))
        episodes = [
            {"observations": np.asarray(ep.observations), "actions": np.asarray(ep.actions),
             "rewards": ep.rewards, "terminations": ep.terminations,
             "truncations": ep.truncations, "name": f"episode_{ep.id}"}
            for ep in ds.iterate_episodes()]
    except Exception as e:  # minari/pyarrow raise many types; report them as bad data
        raise DataError(f"{data_dir}: cannot read Minari dataset ({type(e).__name__}: {e})"
                        ) from None
    for ep in episodes:
        if isinstance(ep["observations"], dict) or ep["observations"].dtype == object:
            raise DataError(f"{data_dir}: Dict/Tuple observations are only supported in the "
                            "hdf5 format")
    return episodes


def load_minari(
    id_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    obs_keys: Sequence[str] | None = None,
) -> Dataset:
    """Reads a local Minari dataset by id or path. Never downloads.

    Each episode of T steps gives T transitions (observations[t], actions[t], rewards[t],
    observations[t + 1]); `terminals` = terminations, `timeouts` = truncations (kept: Minari
    stores the real final observation), `episode_ends` on each episode's last step.

    Args:
      id_or_path: a dataset id such as "mujoco/hopper/medium-v0" (looked up under
        `minari_root(root)`), or a dataset directory (or its `data` subdirectory).
      root: datasets directory; default `$MINARI_DATASETS_PATH` or `~/.minari/datasets`.
      obs_keys: for Dict observation spaces, the keys to concatenate, in order. A Dict with a
        single key is used as is; otherwise Dict observations are rejected.

    Returns:
      The dataset; `metadata` has `name` (dataset id), `source`, `env_id` (from the stored
      env spec), `eval_env_id`, `ref_min_score`, `ref_max_score` when present.

    Raises:
      DataError: not found locally, unreadable, unsupported spaces, bad lengths, NaN/Inf.
    """
    data_dir = find_minari_data_dir(id_or_path, root)
    if data_dir is None:
        raise DataError(
            f"Minari dataset '{id_or_path}' not found locally (looked for a dataset directory "
            f"and under {minari_root(root)}); seemrl never downloads: run "
            f"`minari download {id_or_path}` first")
    source = str(data_dir)
    try:
        raw = json.loads((data_dir / "metadata.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{data_dir / 'metadata.json'}: unreadable ({e})") from None
    if raw.get("data_format", "hdf5") == "hdf5":
        episodes = _read_hdf5_episodes(data_dir / "main_data.hdf5", obs_keys)
    else:
        episodes = _read_other_format(data_dir)
    episodes = [ep for ep in episodes if len(ep["actions"]) > 0]
    if not episodes:
        raise DataError(f"{source}: dataset has no transitions")

    columns: dict[str, list[np.ndarray]] = {k: [] for k in (
        "observations", "next_observations", "actions", "rewards", "terminals", "timeouts")}
    for ep in episodes:
        t = len(ep["actions"])
        for key in ("rewards", "terminations", "truncations"):
            if len(ep[key]) != t:
                raise DataError(f"{source}: key '{ep['name']}/{key}' has {len(ep[key])} "
                                f"rows, '{ep['name']}/actions' has {t}")
        if len(ep["observations"]) != t + 1:
            raise DataError(
                f"{source}: key '{ep['name']}/observations' has {len(ep['observations'])} "
                f"rows, expected {t + 1} (one more than actions)")
        columns["observations"].append(ep["observations"][:-1])
        columns["next_observations"].append(ep["observations"][1:])
        columns["actions"].append(ep["actions"])
        columns["rewards"].append(np.asarray(ep["rewards"]).reshape(t))
        columns["terminals"].append(np.asarray(ep["terminations"]).reshape(t))
        columns["timeouts"].append(np.asarray(ep["truncations"]).reshape(t))
    lengths = [len(ep["actions"]) for ep in episodes]
    ends = np.zeros(sum(lengths), bool)
    ends[np.cumsum(lengths) - 1] = True

    meta: dict[str, Any] = {k: to_python(raw[k]) for k in (
        "ref_min_score", "ref_max_score", "env_id", "description", "algorithm_name",
        "minari_version") if raw.get(k) is not None}
    meta["env_id"] = _env_id(raw.get("env_spec")) or meta.get("env_id")
    meta["eval_env_id"] = _env_id(raw.get("eval_env_spec")) or meta["env_id"]
    meta = {k: v for k, v in normalise_metadata(meta, source).items() if v is not None}
    meta["name"] = raw.get("dataset_id") or str(id_or_path)
    meta["source"] = str(data_dir.resolve())
    meta["format"] = "minari"
    if obs_keys is not None:
        meta["obs_keys"] = list(obs_keys)
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    return from_arrays(arrays, source, meta, episode_ends=ends)


def _box(dim: int, low: float, high: float):
    import gymnasium as gym

    return gym.spaces.Box(low, high, shape=(dim,), dtype=np.float32)


def save_minari(
    dataset_id: str,
    dataset: Dataset,
    env_id: str | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    author: str = "seemrl",
    algorithm_name: str | None = None,
    description: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes `dataset` as a local Minari dataset that `minari.load_dataset(dataset_id)` reads.

    Uses Minari's own storage writer (`MinariStorage.new` + `update_episodes`, what
    `minari.create_dataset_from_buffers` does) but with an explicit directory, into a temporary
    directory renamed into place, so a failed write leaves nothing half-made. Episodes are
    split at `episode_ends`; each stores observations[start:end+1] plus the episode's last
    next observation. Reference scores are written as given: Minari's helper would instead roll
    out a random policy for 100 episodes when only `ref_max_score` is known.

    Args:
      dataset_id: Minari id, `(namespace/)name(-vN)`.
      dataset: what to write.
      env_id: gymnasium id (e.g. "Hopper-v5"); stored as the env spec when registered, else
        as `env_id`. Spaces come from the environment when it can be made, else Box(-inf, inf).
      root: datasets directory; default `minari_root()`.
      author, algorithm_name, description: Minari metadata.
      ref_min_score, ref_max_score: reference returns for normalised scores.
      overwrite: replace an existing dataset with this id.

    Returns:
      The dataset's `data` directory.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
        from minari.dataset.minari_dataset import parse_dataset_id
        from minari.dataset.minari_storage import MinariStorage
    except ImportError:
        raise DataError("writing Minari datasets needs the optional extra: "
                        "pip install 'seemrl[minari]'") from None
    try:
        parse_dataset_id(dataset_id)
    except ValueError as e:
        raise DataError(str(e)) from None
    final = minari_root(root) / dataset_id
    if final.exists() and not overwrite:
        raise DataError(f"Minari dataset '{dataset_id}' already exists at {final}")

    env_spec, obs_space, act_space = None, None, None
    if env_id is not None:
        try:
            env_spec = gym.spec(env_id)
            env = gym.make(env_spec)
            obs_space, act_space = env.observation_space, env.action_space
            env.close()
        except Exception:  # unregistered id or missing simulator: keep the data writable
            pass
    if obs_space is None or getattr(obs_space, "shape", None) != (dataset.obs_dim,):
        obs_space = _box(dataset.obs_dim, -np.inf, np.inf)
    if act_space is None or getattr(act_space, "shape", None) != (dataset.act_dim,):
        act_space = _box(dataset.act_dim, -np.inf, np.inf)

    ends = np.flatnonzero(dataset.episode_ends)
    if len(ends) == 0 or ends[-1] != len(dataset) - 1:
        ends = np.append(ends, len(dataset) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    buffers = [
        EpisodeBuffer(
            observations=np.concatenate([dataset.observations[s:e + 1],
                                         dataset.next_observations[e:e + 1]]),
            actions=dataset.actions[s:e + 1],
            rewards=dataset.rewards[s:e + 1].astype(np.float64),
            terminations=dataset.terminals[s:e + 1] > 0.5,
            truncations=dataset.timeouts[s:e + 1].astype(bool))
        for s, e in zip(starts, ends, strict=True)]

    meta: dict[str, Any] = {"dataset_id": dataset_id, "minari_version": minari.__version__,
                            "author": {author}}
    for key, value in (("algorithm_name", algorithm_name), ("description", description),
                       ("ref_min_score", ref_min_score), ("ref_max_score", ref_max_score)):
        if value is not None:
            meta[key] = value
    if env_spec is None and env_id is not None:
        meta["env_id"] = env_id

    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari warns about optional metadata
            storage = MinariStorage.new(tmp / "data", observation_space=obs_space,
                                        action_space=act_space, env_spec=env_spec)
            storage.update_metadata(meta)
            storage.update_episodes(buffers)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:  # disk full, read-only: one line naming the dataset
        raise WriteError.of(final, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "data"
