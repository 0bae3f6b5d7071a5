"""The paper's experiments as commands: `seemrl repro NAME --scale smoke|cpu|paper`.

Each experiment is one module here with the same small interface:

* `TITLE`: one line, what the experiment shows.
* `SCALES`: {"smoke": {...}, "cpu": {...}, "paper": {...}}, the parameters of each scale
  (JSON-able; written into results.json so a reader knows exactly what ran).
* `run(ctx: Context) -> Outcome`: runs the experiment at `ctx.params`, draws its figures with
  `ctx.save_figure`, and returns the numbers and a Markdown body that says, from those
  numbers, what matched the paper and what did not (built with `_report.Report`, so every
  section reads the same).

`smoke` runs in seconds (the tests run it), `cpu` is what a 2-core machine runs in an hour or
so (docs/RESULTS.md is made from it), `paper` is the paper's full scale.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from seemrl.config import ConfigError

EXPERIMENTS = ("surge", "discount", "sgd", "adam", "toy-maze", "ntk-map", "fraction",
               "regularizers", "predict", "antmaze")
SCALES = ("smoke", "cpu", "paper")


def get(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}' (choose from {', '.join(EXPERIMENTS)}, "
                          "or all)")
    return importlib.import_module(f"seemrl.repro.{name.replace('-', '_')}")
