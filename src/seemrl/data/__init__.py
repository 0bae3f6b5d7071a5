"""The data layer: one `Dataset` type read from D4RL HDF5, Minari, or npz; subsets; normalisation.

`load_dataset(spec)` is the entry point the CLI uses for `--dataset FILE_OR_NAME`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from seemrl.data._common import check_finite
from seemrl.data.d4rl import load_d4rl, save_d4rl
from seemrl.data.minari import find_minari_data_dir, load_minari, minari_root, save_minari
from seemrl.data.normalize import Normalizer, normalize_dataset, scale_rewards
from seemrl.data.npz import load_npz, save_npz
from seemrl.data.subset import subset
from seemrl.types import DataError, Dataset

__all__ = [
    "DataError", "Dataset", "Normalizer", "check_dataset", "describe", "load_d4rl",
    "load_dataset", "load_minari", "load_npz", "normalize_dataset", "print_info", "save_d4rl",
    "save_minari", "save_npz", "scale_rewards", "subset",
]

HDF5_SUFFIXES = (".hdf5", ".h5")


def load_dataset(spec: str | os.PathLike[str]) -> Dataset:
    """Loads a dataset named by a path or a name.

    Resolution, first match wins:
      1. an existing file: `.hdf5`/`.h5` → D4RL format, `.npz` → npz;
      2. an existing Minari dataset directory (`data/metadata.json` inside, or the `data`
         directory itself);
      3. a name without a path separator → a dataset seemrl makes itself
         (`seemrl.behaviour`'s catalogue, made locally on first use);
      4. a local Minari dataset id under `$MINARI_DATASETS_PATH` (never downloaded).

    Every loader checks keys, lengths and NaN/Inf.

    Raises:
      DataError: a one-line message naming the spec and what was tried, or the file, key or
        field at fault.
    """
    text = os.fspath(spec)
    path = pathlib.Path(text).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in HDF5_SUFFIXES:
            return load_d4rl(path)
        if suffix == ".npz":
            return load_npz(path)
        raise DataError(f"{text}: unsupported file type '{suffix}' (expected .hdf5, .h5 or .npz)")
    if path.is_dir():
        if any((path / name).is_file() for name in (
                "data/metadata.json", "data/main_data.hdf5", "metadata.json")):
            return load_minari(path)
        raise DataError(f"{text}: directory is not a Minari dataset (no data/metadata.json)")
    if suffix in HDF5_SUFFIXES + (".npz",):
        raise DataError(f"{text}: no such file")

    tried = ["a file or directory"]
    if "/" not in text and os.sep not in text:
        # The data layer's one call upward, made only for a bare name: the catalogue of
        # datasets seemrl rolls out itself lives above it, with the policies and simulator.
        from seemrl.behaviour import resolve_builtin

        tried.append("a built-in dataset name")
        made = resolve_builtin(text)
        if made is not None:
            return load_dataset(made)
    tried.append(f"a local Minari id under {minari_root()}")
    if find_minari_data_dir(minari_root() / text) is not None:
        return load_minari(text)
    raise DataError(f"dataset '{text}' not found; tried it as {', '.join(tried)}")


def check_dataset(dataset: Dataset, source: str = "dataset") -> None:
    """Raises DataError if any field of an in-memory `Dataset` holds NaN/Inf (loaders already
    check; this is for datasets built in code)."""
    check_finite({f: getattr(dataset, f) for f in (
        "observations", "actions", "rewards", "next_observations", "terminals")}, source)


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
            "max": float(x.max())}


def describe(dataset: Dataset) -> dict[str, Any]:
    """Summary facts about `dataset` as a JSON-friendly dict.

    Keys: name, source, transitions, episodes, obs_shape/obs_dtype, act_shape/act_dtype,
    episode_return and episode_length ({mean, std, min, max}, over episodes as delimited by
    `episode_ends`, partial ones included), reward ({mean, std, min, max}), action_min,
    action_max, terminals, timeouts (counts), metadata.
    """
    returns = dataset.episode_returns()
    ends = np.flatnonzero(dataset.episode_ends)
    if len(ends) == 0 or ends[-1] != len(dataset) - 1:
        ends = np.append(ends, len(dataset) - 1)
    lengths = np.diff(np.concatenate([[-1], ends]))
    return {
        "name": dataset.metadata.get("name"),
        "source": dataset.metadata.get("source"),
        "transitions": len(dataset),
        "episodes": len(returns),
        "obs_shape": list(dataset.observations.shape[1:]),
        "obs_dtype": str(dataset.observations.dtype),
        "act_shape": list(dataset.actions.shape[1:]),
        "act_dtype": str(dataset.actions.dtype),
        "episode_return": _stats(returns),
        "episode_length": _stats(lengths),
        "reward": _stats(dataset.rewards),
        "action_min": float(dataset.actions.min()),
        "action_max": float(dataset.actions.max()),
        "terminals": int(np.sum(dataset.terminals > 0.5)),
        "timeouts": int(np.sum(dataset.timeouts)),
        "metadata": dict(dataset.metadata),
    }


def print_info(dataset: Dataset, console: Any = None,
               action_space: str | None = None) -> dict[str, Any]:
    """Prints `describe(dataset)` as a rich table (what `seemrl data info FILE` shows).

    Args:
      dataset: the dataset.
      console: a `rich.console.Console`; default a new one on stdout.
      action_space: a line on the actions against the env's action space, shown when given.

    Returns:
      The `describe` dict that was printed.
    """
    from rich.console import Console
    from rich.table import Table

    info = describe(dataset)
    console = console or Console()

    def fmt(stats: dict[str, float]) -> str:
        return (f"{stats['mean']:.4g} ± {stats['std']:.4g} "
                f"[{stats['min']:.4g}, {stats['max']:.4g}]")

    table = Table(title=f"dataset {info['name'] or ''}".strip(), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("source", str(info["source"])),
        ("transitions", f"{info['transitions']:,}"),
        ("episodes", f"{info['episodes']:,}"),
        ("observations", f"{tuple(info['obs_shape'])} {info['obs_dtype']}"),
        ("actions", f"{tuple(info['act_shape'])} {info['act_dtype']} "
                    f"range [{info['action_min']:.4g}, {info['action_max']:.4g}]"),
        *([("action space", action_space)] if action_space else []),
        ("episode return", fmt(info["episode_return"])),
        ("episode length", fmt(info["episode_length"])),
        ("reward", fmt(info["reward"])),
        ("terminals / timeouts", f"{info['terminals']:,} / {info['timeouts']:,}"),
    ]
    rows += [(f"metadata.{k}", str(v)) for k, v in info["metadata"].items()
             if k not in ("name", "source")]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    return info
