"""Offline-RL algorithms, one flat module each.

Every algorithm module provides the same small interface, which the training driver and the
shared conformance test rely on:

* `NAME`, `Config` (a frozen dataclass whose field docstrings are the CLI help), `State`.
* `init(key, obs_dim, act_dim, max_action, cfg) -> State` for one seed.
* `update(state, batch, step, cfg, act_dim, max_action) -> (State, metrics)`: pure, jittable,
  one gradient step; `step` is the global step, unbatched across seeds.
* `act(state, obs, cfg, act_dim, max_action) -> actions`: the deterministic policy.
* `param_metrics(state, cfg) -> dict`: parameter norms logged at every log point.
* `critic_q(cfg, head) -> q(critic_params, obs, act)`: one Q head as a pure function (SEEM).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from seemrl.config import ConfigError

ALGORITHMS = ("td3bc", "iql", "cql", "rebrac", "diffql")


def get(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}' (choose from {', '.join(ALGORITHMS)})")
    return importlib.import_module(f"seemrl.algos.{name}")
