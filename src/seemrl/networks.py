"""Networks: a configurable MLP, a vmapped critic ensemble, a deterministic actor.

Every normalisation choice the paper ablates is an option of `MLP`:

* `norm`: "none" or "layernorm".
* `placement`: "before" the activation (Linear → LN → act, the SEEM authors' critic) or
  "after" it (Linear → act → LN, as in ReBRAC, CORL and d3rlpy).
* `norm_layers`: which hidden layers (0-based) get the norm; `None` means all of them
  (the authors ablate {0}, {0,1}, {0,1,2}, {2}, {1,2}).

Parameters are named `dense_{i}`, `norm_{i}` and `out` so the NTK fast path
(diagnostics/ntk.py) can walk them layer by layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
               "tanh": jnp.tanh, "gelu": nn.gelu}
NORMS = ("none", "layernorm")
PLACEMENTS = ("before", "after")


def torch_weight_init():
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The authors' TD3+BC (and its divergence behaviour) uses PyTorch defaults, so we match them.
    """
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Architecture of one MLP (serialisable; used by every algorithm's config)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths."""
    activation: str = "relu"
    """relu | mish | tanh | gelu."""
    norm: str = "none"
    """none | layernorm."""
    placement: str = "before"
    """LayerNorm before the activation (Linear→LN→act, the paper's) or after it (ReBRAC's)."""
    norm_layers: tuple[int, ...] | None = None
    """0-based hidden layers that get the norm; None = all."""
    use_bias: bool = True
    """Biases in every Dense layer (False gives the homogeneous nets of the growth theory)."""

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{self.activation}' (choose from "
                             f"{', '.join(ACTIVATIONS)})")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm '{self.norm}' (choose from {', '.join(NORMS)})")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement '{self.placement}' (before | after)")
        if self.norm_layers is not None:
            bad = [i for i in self.norm_layers if not 0 <= i < len(self.hidden)]
            if bad:
                raise ValueError(f"norm_layers {bad} out of range for {len(self.hidden)} "
                                 "hidden layers")

    def normed(self, i: int) -> bool:
        return self.norm != "none" and (self.norm_layers is None or i in self.norm_layers)


class MLP(nn.Module):
    """x (..., in) -> (..., out_dim)."""

    config: MLPConfig
    out_dim: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        cfg = self.config
        act = ACTIVATIONS[cfg.activation]
        for i, width in enumerate(cfg.hidden):
            x = _dense(width, x.shape[-1], cfg.use_bias, f"dense_{i}")(x)
            normed = cfg.normed(i)
            if normed and cfg.placement == "before":
                x = nn.LayerNorm(name=f"norm_{i}")(x)
            x = act(x)
            if normed and cfg.placement == "after":
                x = nn.LayerNorm(name=f"norm_{i}")(x)
        return _dense(self.out_dim, x.shape[-1], cfg.use_bias, "out")(x)


def _dense(width: int, fan_in: int, use_bias: bool, name: str) -> nn.Dense:
    return nn.Dense(width, use_bias=use_bias, kernel_init=torch_weight_init(),
                    bias_init=torch_bias_init(fan_in), name=name)


class QNetwork(nn.Module):
    """One Q head: (obs (..., obs_dim), act (..., act_dim)) -> (...,)."""

    config: MLPConfig

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        x = jnp.concatenate([obs, act], axis=-1)
        return MLP(self.config, 1, name="mlp")(x)[..., 0]


class Critic(nn.Module):
    """`num_heads` independent Q heads as one vmapped ensemble: -> (num_heads, ...).

    Params carry a leading head axis: params["heads"]["mlp"]["dense_0"]["kernel"] is
    (num_heads, in, out). `head_params(params, h)` slices one head for QNetwork.apply.
    """

    config: MLPConfig
    num_heads: int = 2

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        heads = nn.vmap(QNetwork, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=None, out_axes=0, axis_size=self.num_heads)
        return heads(self.config, name="heads")(obs, act)


def head_params(critic_params, h: int):
    """The parameters of head `h` of a `Critic`, usable with `QNetwork(config).apply`."""
    return jax.tree.map(lambda p: p[h], critic_params["params"]["heads"])


def q_head_fn(config: MLPConfig, h: int = 0):
    """A pure `q(critic_params, obs, act) -> (N,)` for head `h` (what SEEM consumes)."""
    net = QNetwork(config)

    def q(critic_params, obs, act):
        return net.apply({"params": head_params(critic_params, h)}, obs, act)

    return q


class Actor(nn.Module):
    """Deterministic policy: obs (..., obs_dim) -> max_action · tanh(MLP(obs))."""

    config: MLPConfig
    act_dim: int
    max_action: float = 1.0

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return self.max_action * jnp.tanh(MLP(self.config, self.act_dim, name="mlp")(obs))


def num_linear_layers(config: MLPConfig) -> int:
    """L in the growth theory: hidden layers + output layer."""
    return len(config.hidden) + 1


def mlp_config_from(hidden: Sequence[int] = (256, 256), **kwargs) -> MLPConfig:
    return MLPConfig(hidden=tuple(hidden), **kwargs)
