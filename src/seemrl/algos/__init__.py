"""Offline-RL algorithms, one flat module each, every one an `Algorithm`.

`Algorithm` is the contract the training driver, the diagnostics and the shared conformance
test rely on; each module in `ALGORITHMS` satisfies it (a type checker verifies this below),
and `seemrl.algos.common` holds its shared defaults (`param_metrics`, `critic_q`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import jax

from seemrl.config import ConfigError
from seemrl.networks import MLPConfig
from seemrl.types import Batch, EnvSpec

ALGORITHMS = ("td3bc", "iql", "cql", "rebrac", "diffql")


class AlgoConfig(Protocol):
    """What the driver and the diagnostics read of every algorithm's `Config` (a frozen
    dataclass of `common.NetworkOptions` whose field docstrings are the CLI help)."""

    gamma: float
    """Discount factor: the run's Q ceiling max|r| / (1 − γ) comes from it."""
    num_critics: int

    def critic_mlp(self) -> MLPConfig: ...


class AlgoState(Protocol):
    """What the driver and the diagnostics read of every algorithm's `State` (a
    `flax.struct.dataclass` of arrays, one seed's)."""

    key: jax.Array
    """The seed's raw PRNG key: the driver splits it to sample each minibatch."""
    critic_params: Any
    """The vmapped critic ensemble's variables: SEEM measures its heads."""

    def replace(self, **changes: Any) -> Any: ...


class Algorithm(Protocol):
    """One offline-RL algorithm: a module with these names.

    `update` is pure and jittable and works on one seed (the driver vmaps it over the seeds);
    `step` is the global gradient step, unbatched across seeds, so that delayed updates are a
    real `lax.cond`. Observations are normalised by the driver.
    """

    @property
    def NAME(self) -> str: ...  # noqa: N802 - the module's constant

    @property
    def Config(self) -> type: ...  # noqa: N802 - the module's class (an `AlgoConfig`)

    @property
    def State(self) -> type: ...  # noqa: N802 - the module's class (an `AlgoState`)

    def init(self, key: jax.Array, spec: EnvSpec, cfg: Any) -> Any:
        """One seed's state, drawn from `key`."""
        ...

    def update(self, state: Any, batch: Batch, step: jax.Array, cfg: Any,
               spec: EnvSpec) -> tuple[Any, dict[str, jax.Array]]:
        """One gradient step: (new state, scalar metrics, including `q_mean` and
        `critic_loss`, which the driver watches for divergence)."""
        ...

    def act(self, state: Any, obs: jax.Array, cfg: Any, spec: EnvSpec) -> jax.Array:
        """The deterministic policy: obs (..., obs_dim) -> actions (..., act_dim)."""
        ...

    def param_metrics(self, state: Any, cfg: Any) -> dict[str, jax.Array]:
        """Parameter norms logged at every log point (`common.param_metrics`)."""
        ...

    def critic_q(self, cfg: Any, head: int = 0) -> Callable[..., jax.Array]:
        """Head `head` of the critic as a pure q(critic_params, obs, act) -> (N,), for SEEM
        (`common.critic_q`)."""
        ...


def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}' (choose from {', '.join(ALGORITHMS)})")
    return cast(Algorithm, importlib.import_module(f"seemrl.algos.{name}"))


if TYPE_CHECKING:  # the type checker holds every algorithm module to the contract
    from seemrl.algos import cql, diffql, iql, rebrac, td3bc

    _CHECKED: tuple[Algorithm, ...] = (td3bc, iql, cql, rebrac, diffql)
