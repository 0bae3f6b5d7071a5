"""Named hyper-parameter sets as data: `presets/<name>.yaml`, flat keys of TrainConfig and the
algorithm's Config (the format `seemrl train --config` reads), each naming its `algo`.

Flags given with a preset override it; the preset overrides the defaults
(`seemrl.runconfig.resolve`; `runconfig.split` tells its keys apart).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from seemrl.config import ConfigError


def list_presets() -> list[str]:
    """Sorted names of the shipped presets."""
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir()
                  if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The flat mapping of preset `name`; ConfigError naming the valid ones if unknown."""
    names = list_presets()
    if name not in names:
        raise ConfigError(f"unknown preset '{name}' (choose from {', '.join(names)})")
    import yaml

    data = yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text())
    if not isinstance(data, dict) or "algo" not in data:
        raise ConfigError(f"preset '{name}' is not a mapping with an 'algo' key")
    return data

