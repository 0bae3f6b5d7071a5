"""Sweep grids: datasets × algorithms × option values → `RunSpec`s with readable names.

A grid comes from a YAML/JSON file (`datasets`, `algos`, `seeds`, `grid`: option → values,
`fixed`: option → value) and/or flags (`--dataset`, `--algo`, `--set KEY=V1,V2`,
`--fix KEY=V`), flags overriding the file. Each option goes to `TrainConfig` or to the
algorithm's `Config` by name; an option only some algorithms have applies to their runs only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import pathlib
import re
from collections.abc import Sequence
from typing import Any

from seemrl import config as config_lib
from seemrl.config import ConfigError
from seemrl.sweep import RunSpec, check_distinct

GRID_KEYS = ("datasets", "algos", "seeds", "grid", "fixed")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Datasets × algorithms × option values: one run per combination, all seeds in each."""

    datasets: tuple[str, ...]
    algos: tuple[str, ...] = ("td3bc",)
    axes: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    """Option -> the values it takes; every combination is a run, named by its values."""
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Option -> its value in every run (seeds, steps, ...); not part of the run names."""

    def specs(self) -> list[RunSpec]:
        """One spec per grid point (datasets, then algorithms, then the axes in name order)."""
        from seemrl import algos as algos_lib
        from seemrl.runconfig import TrainConfig, field_names, owner

        if not self.datasets:
            raise ConfigError("no dataset given (--dataset NAME_OR_FILE ..., or `datasets:` "
                              "in the grid file)")
        if not self.algos:
            raise ConfigError("no algorithm given (--algo NAME ...)")
        classes = {a: algos_lib.get(a).Config for a in dict.fromkeys(self.algos)}
        for key in (*self.axes, *self.fixed):
            if key in ("dataset", "algo"):
                raise ConfigError(f"'{key}' is an axis of its own: give it with --{key} (or "
                                  f"`{key}s:` in the grid file)")
            if not any(owner(key, c) for c in classes.values()):
                raise ConfigError(f"unknown option '{key}' (neither a TrainConfig option nor "
                                  f"one of {', '.join(classes)}'s; see seemrl train --help)")
        if "seeds" in self.axes:
            raise ConfigError("seeds train side by side in every run: give them with --seeds "
                              "(or `seeds:`), not as an axis")
        both = sorted(set(self.axes) & set(self.fixed))
        if both:
            raise ConfigError(f"option(s) {', '.join(both)} given both as an axis and fixed")
        specs = []
        is_train = lambda k: k in field_names(TrainConfig)
        for dataset, algo in itertools.product(dict.fromkeys(self.datasets), classes):
            cls = classes[algo]
            # An option only some algorithms have applies to their runs alone.
            fixed = {k: _coerce(c, k, v) for k, v in self.fixed.items()
                     if (c := owner(k, cls))}
            axes = {k: _axis_values(c, k, self.axes[k]) for k in sorted(self.axes)
                    if (c := owner(k, cls))}
            for values in itertools.product(*axes.values()):
                point = dict(zip(axes, values, strict=True))
                options = {**fixed, **point}
                train = {"dataset": dataset, "algo": algo,
                         **{k: v for k, v in options.items() if is_train(k)}}
                specs.append(RunSpec(run_name(dataset, algo, point), train,
                                     {k: v for k, v in options.items() if not is_train(k)}))
        check_distinct(specs)
        return specs


def read_grid(path: str | pathlib.Path) -> Grid:
    """A grid file (YAML or JSON): datasets, algos, seeds, grid (axes) and fixed options."""
    data = config_lib.read_file(path)
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {', '.join(unknown)} (expected "
                          f"{', '.join(GRID_KEYS)})")
    axes, fixed = data.get("grid") or {}, data.get("fixed") or {}
    if not isinstance(axes, dict) or not isinstance(fixed, dict):
        raise ConfigError(f"grid file {path}: `grid` and `fixed` must map option: value(s)")
    if "seeds" in data:
        fixed = {"seeds": data["seeds"], **fixed}
    return Grid(datasets=_listed(data.get("datasets")), algos=_listed(data.get("algos")),
                axes={str(k): _listed(v) for k, v in axes.items()},
                fixed={str(k): v for k, v in fixed.items()})


def combine(grid: Grid | None = None, *, datasets: Sequence[str] = (), algos: Sequence[str] = (),
            axes: dict[str, tuple[Any, ...]] | None = None,
            fixed: dict[str, Any] | None = None) -> Grid:
    """`grid` (from a file, or none) overridden by flags: datasets/algos replace its own, an
    axis or fixed option replaces the file's option of that name, whichever kind it was."""
    axes, fixed = dict(axes or {}), dict(fixed or {})
    both = sorted(set(axes) & set(fixed))
    if both:
        raise ConfigError(f"option(s) {', '.join(both)} given both as an axis (--set) and "
                          "fixed")
    base = grid or Grid(datasets=())
    merged_axes = {k: v for k, v in base.axes.items() if k not in fixed}
    merged_fixed = {k: v for k, v in base.fixed.items() if k not in axes}
    return Grid(datasets=tuple(datasets) or base.datasets,
                algos=tuple(algos) or base.algos or ("td3bc",),
                axes={**merged_axes, **axes}, fixed={**merged_fixed, **fixed})


def from_flags(grid_file: str | pathlib.Path | None = None, *, datasets: Sequence[str] = (),
               algos: Sequence[str] = (), set_: Sequence[str] = (), fix: Sequence[str] = (),
               options: dict[str, Any] | None = None) -> Grid:
    """The grid of `seemrl sweep`: a grid file (or none) overridden by flags: `--dataset`,
    `--algo`, `--set KEY=V1,V2` (`set_`), `--fix KEY=VALUE` (`fix`) and the options given with
    their own flags (`options`, fixed in every run)."""
    axes = [parse_axis(t) for t in set_]
    if len({k for k, _ in axes}) < len(axes):
        raise ConfigError("--set names an option twice (give all its values in one --set)")
    fixed = {**dict(parse_fixed(t) for t in fix), **(options or {})}
    grid = read_grid(grid_file) if grid_file else None
    return combine(grid, datasets=datasets, algos=algos, axes=dict(axes), fixed=fixed)


def parse_axis(text: str) -> tuple[str, tuple[Any, ...]]:
    """'KEY=V1,V2,...' -> (key, values), values read as YAML: 'layer_norm=true,false',
    'critic_hidden=[64,64],[256,256]', 'ln_layers=null,[0]'."""
    key, values = _parse_assignment(text, "--set KEY=V1,V2,...", "[{}]")
    return key, tuple(values)


def parse_fixed(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' -> (key, value), the value read as YAML: 'gamma=0.9', 'actor_hidden=[64,64]'."""
    return _parse_assignment(text, "--fix KEY=VALUE", "{}")


def run_name(dataset: str, algo: str, point: dict[str, Any]) -> str:
    """'<dataset>_<algo>_<key>-<value>...' with the keys sorted; safe as a folder name."""
    parts = [dataset_label(dataset), algo,
             *(f"{k}-{_show(v)}" for k, v in sorted(point.items()))]
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts)).lstrip(".") or "run"
    if len(name) > 120:  # folder names are limited to 255 bytes; keep them readable
        name = f"{name[:111]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def dataset_label(dataset: str) -> str:
    """'hopper-medium' as it is; a file's stem ('runs/x/tiny.npz' -> 'tiny'); a Minari
    dataset's id ('seemrl/hopper-medium-v0' or its '.../hopper-medium-v0/data' -> the id)."""
    path = pathlib.PurePath(dataset)
    if path.name == "data" and len(path.parts) > 1:
        path = path.parent
    if path.suffix.lower() in (".hdf5", ".h5", ".npz"):
        return path.stem
    return path.name or dataset


def _listed(value) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _coerce(cls: type, key: str, value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("none", "null"):
        value = None
    return config_lib.coerce(cls, key, value)


def _axis_values(cls: type, key: str, values: Sequence[Any]) -> tuple[Any, ...]:
    if not values:
        raise ConfigError(f"option '{key}' has no values")
    coerced = tuple(_coerce(cls, key, v) for v in values)
    if len({_show(v) for v in coerced}) < len(coerced):
        raise ConfigError(f"option '{key}' lists a value twice: {list(values)}")
    return coerced


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "x".join(map(_show, value)) or "none"
    return "none" if value is None else str(value)


def _parse_assignment(text: str, usage: str, template: str):
    import yaml

    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not value.strip():
        raise ConfigError(f"cannot read {text!r}: expected {usage}")
    try:
        return key, yaml.safe_load(template.format(value))
    except yaml.YAMLError:
        raise ConfigError(f"cannot read the value(s) of {text!r}: expected {usage}") from None
