"""Networks: a configurable MLP, a vmapped critic ensemble, a deterministic and a tanh-Gaussian
actor.

Every normalisation choice the paper ablates is an option of `MLP`:

* `norm`: "none", "layernorm" or "batchnorm".
* `placement`: "before" the activation (Linear → LN → act, the SEEM authors' critic) or
  "after" it (Linear → act → LN, as in ReBRAC, CORL and d3rlpy).
* `norm_layers`: which hidden layers (0-based) get the norm; `None` means all of them
  (the authors ablate {0}, {0,1}, {0,1,2}, {2}, {1,2}).

and so are the regularisers a user would try instead (SPEC §5.8):

* `dropout`: rate of a Dropout after each hidden layer (after its activation and any norm
  placed after it). Active only in training forward passes (`train=True`, with a "dropout"
  rng); every other pass (targets, the actor's loss, evaluation, SEEM) is deterministic.
* `norm="batchnorm"`: BatchNorm in the norm's place, PyTorch's defaults (momentum 0.1, i.e.
  flax momentum 0.9, eps 1e-5). A training pass (`train=True`, `mutable=["batch_stats"]`)
  normalises with the batch's statistics and updates running averages kept in the
  "batch_stats" collection beside "params"; every other pass uses the running averages
  (the network's eval form: a per-sample function, so its NTK is defined).
* `spectral_norm`: every hidden Dense kernel W is used as W / σ(W), σ the largest singular
  value, estimated afresh in each forward pass by `SPECTRAL_ITERS` power iterations from a
  fixed start (stateless; gradients flow through uᵀWv with u, v held fixed, as in Miyato
  et al. 2018). The output layer stays free so Q can reach its scale (as Bjorck et al. 2021
  and Gogianu et al. 2021 do for critics).

Parameters are named `dense_{i}`, `norm_{i}` and `out` whatever the options (a spectrally
normalised layer stores its raw kernel), so the NTK fast path (diagnostics/ntk.py) can walk
them layer by layer; `MLPConfig.fast_ntk` says which configs it covers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
               "tanh": jnp.tanh, "gelu": nn.gelu}
NORMS = ("none", "layernorm", "batchnorm")
PLACEMENTS = ("before", "after")
HIDDEN_INITS = ("torch", "orthogonal")
OUT_INITS = ("torch", "uniform", "orthogonal", "xavier")


def torch_weight_init():
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The authors' TD3+BC (and its divergence behaviour) uses PyTorch defaults, so we match them.
    """
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """PyTorch's nn.Linear default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform_init(1.0 / max(fan_in, 1) ** 0.5)


def uniform_init(bound: float):
    """U(-bound, bound), for kernels or biases."""

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
    """none | layernorm | batchnorm."""
    placement: str = "before"
    """The norm before the activation (Linear→LN→act, the paper's) or after it (ReBRAC's)."""
    norm_layers: tuple[int, ...] | None = None
    """0-based hidden layers that get the norm; None = all."""
    use_bias: bool = True
    """Biases in every Dense layer (False gives the homogeneous nets of the growth theory)."""
    dropout: float = 0.0
    """Dropout rate after each hidden layer, in training forward passes only (0: none)."""
    spectral_norm: bool = False
    """Divide every hidden Dense kernel by its largest singular value."""
    hidden_init: str = "torch"
    """Hidden kernels and biases: torch (U(±1/√fan_in) both, PyTorch's nn.Linear) |
    orthogonal (orthogonal kernels of gain √2, zero biases)."""
    hidden_bias: float | None = None
    """Initial value of every hidden bias (None: what hidden_init gives)."""
    out_init: str = "torch"
    """The output layer: torch (PyTorch's default) | uniform (kernel and bias U(±out_scale)) |
    orthogonal or xavier (an orthogonal or Glorot-uniform kernel of gain out_scale, zero
    bias)."""
    out_scale: float = 1.0
    """Bound (uniform) or gain (orthogonal, xavier) of the output layer's init."""

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
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.hidden_init not in HIDDEN_INITS:
            raise ValueError(f"unknown hidden_init '{self.hidden_init}' (choose from "
                             f"{', '.join(HIDDEN_INITS)})")
        if self.out_init not in OUT_INITS:
            raise ValueError(f"unknown out_init '{self.out_init}' (choose from "
                             f"{', '.join(OUT_INITS)})")
        if not self.out_scale > 0.0:
            raise ValueError(f"out_scale must be > 0, got {self.out_scale}")

    def normed(self, i: int) -> bool:
        return self.norm != "none" and (self.norm_layers is None or i in self.norm_layers)

    @property
    def has_train_mode(self) -> bool:
        """Whether a training forward pass differs from the deterministic one."""
        return self.dropout > 0.0 or self.norm == "batchnorm"

    @property
    def fast_ntk(self) -> bool:
        """Whether diagnostics/ntk.py's exact MLP path covers this config's deterministic
        network (it knows Dense and LayerNorm; dropout is off there anyway)."""
        return self.norm in ("none", "layernorm") and not self.spectral_norm


class MLP(nn.Module):
    """x (..., in) -> (..., out_dim). `train=True`: dropout on, BatchNorm on batch statistics."""

    config: MLPConfig
    out_dim: int

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        cfg = self.config
        act = ACTIVATIONS[cfg.activation]
        for i, width in enumerate(cfg.hidden):
            x = _dense(width, x.shape[-1], cfg.use_bias, f"dense_{i}", cfg.spectral_norm,
                       cfg.hidden_bias, cfg.hidden_init)(x)
            batch_normed = cfg.normed(i) and cfg.norm == "batchnorm"
            if batch_normed and cfg.placement == "before":
                x = _batch_norm(f"norm_{i}", train)(x)
            normed = cfg.normed(i) and cfg.norm == "layernorm"
            if normed and cfg.placement == "before":
                x = nn.LayerNorm(name=f"norm_{i}")(x)
            x = act(x)
            if normed and cfg.placement == "after":
                x = nn.LayerNorm(name=f"norm_{i}")(x)
            if batch_normed and cfg.placement == "after":
                x = _batch_norm(f"norm_{i}", train)(x)
            if cfg.dropout > 0.0:
                x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
        if cfg.out_init == "torch":
            return _dense(self.out_dim, x.shape[-1], cfg.use_bias, "out")(x)
        kernel_init, bias_init = {
            "uniform": (uniform_init(cfg.out_scale), uniform_init(cfg.out_scale)),
            "orthogonal": (nn.initializers.orthogonal(cfg.out_scale), nn.initializers.zeros),
            # Glorot-uniform of gain g: U(±g·√(6 / (fan_in + fan_out))).
            "xavier": (nn.initializers.variance_scaling(cfg.out_scale**2, "fan_avg", "uniform"),
                       nn.initializers.zeros),
        }[cfg.out_init]
        return nn.Dense(self.out_dim, use_bias=cfg.use_bias, kernel_init=kernel_init,
                        bias_init=bias_init, name="out")(x)


def _dense(width: int, fan_in: int, use_bias: bool, name: str, spectral_norm: bool = False,
           bias: float | None = None, init: str = "torch") -> nn.Module:
    if init == "orthogonal":
        kernel_init, bias_init = nn.initializers.orthogonal(2.0**0.5), nn.initializers.zeros
    else:
        kernel_init, bias_init = torch_weight_init(), torch_bias_init(fan_in)
    if bias is not None:
        bias_init = nn.initializers.constant(bias)
    if spectral_norm:
        return SpectralDense(width, use_bias=use_bias, kernel_init=kernel_init,
                             bias_init=bias_init, name=name)
    return nn.Dense(width, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                    name=name)


def _batch_norm(name: str, train: bool) -> nn.BatchNorm:
    # PyTorch's BatchNorm1d defaults: running ← 0.9·running + 0.1·batch, eps 1e-5.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


SPECTRAL_ITERS = 20
"""Power iterations per forward pass of a `SpectralDense` layer. From a fixed start, 20 give
σ(W) within ~1 % on a freshly initialised 256×256 layer (the worst case: its top singular
values are close together) and closer once training separates them; the estimate is never
above σ, so the normalised layer's norm is ≥ 1 by at most that error."""


def spectral_norm_estimate(w: jnp.ndarray, iters: int = SPECTRAL_ITERS) -> jnp.ndarray:
    """σ(W), the largest singular value of w (in, out), by power iteration: a scalar.

    The singular vectors u, v are found without gradient and σ = uᵀWv is returned, so
    ∂σ/∂W = u vᵀ (exact at convergence), as in Miyato et al. (2018).
    """
    w_sg = jax.lax.stop_gradient(w)
    unit = lambda x: x / (jnp.linalg.norm(x) + 1e-12)
    # A fixed pseudo-random start (all-ones could be orthogonal to the top vector).
    v0 = unit(jax.random.normal(jax.random.PRNGKey(0), (w.shape[1],), w.dtype))
    v = jax.lax.fori_loop(0, iters, lambda _, v: unit(w_sg.T @ unit(w_sg @ v)), v0)
    u = jax.lax.stop_gradient(unit(w_sg @ v))
    return u @ w @ jax.lax.stop_gradient(v)


class SpectralDense(nn.Module):
    """A Dense layer whose kernel is used as W / σ(W). Stores the raw kernel and bias under
    the names and initialisers of `nn.Dense` (same initial values as the plain layer)."""

    features: int
    use_bias: bool = True
    kernel_init: Callable | None = None
    bias_init: Callable | None = None
    """None: PyTorch's defaults, as `nn.Dense` gets from `_dense`."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init or torch_weight_init(),
                            (fan_in, self.features))
        y = x @ (kernel / spectral_norm_estimate(kernel))
        if self.use_bias:
            bias_init = self.bias_init or torch_bias_init(fan_in)
            y = y + self.param("bias", bias_init, (self.features,))
        return y


class QNetwork(nn.Module):
    """One Q head: (obs (..., obs_dim), act (..., act_dim)) -> (...,)."""

    config: MLPConfig

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = jnp.concatenate([obs, act], axis=-1)
        return MLP(self.config, 1, name="mlp")(x, train)[..., 0]


class Critic(nn.Module):
    """`num_heads` independent Q heads as one vmapped ensemble: -> (num_heads, ...).

    Params carry a leading head axis: params["heads"]["mlp"]["dense_0"]["kernel"] is
    (num_heads, in, out). `head_params(params, h)` slices one head for QNetwork.apply.
    With BatchNorm the variables also hold "batch_stats" (running averages, same layout).
    A training pass, `apply(v, obs, act, train=True, rngs={"dropout": key},
    mutable=["batch_stats"])`, gives each head its own dropout masks and batch statistics.
    """

    config: MLPConfig
    num_heads: int = 2

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        heads = nn.vmap(QNetwork, variable_axes={"params": 0, "batch_stats": 0},
                        split_rngs={"params": True, "dropout": True},
                        in_axes=None, out_axes=0, axis_size=self.num_heads)
        return heads(self.config, name="heads")(obs, act, train)


def head_params(critic_params, h: int):
    """The parameters of head `h` of a `Critic`, usable with `QNetwork(config).apply`."""
    return jax.tree.map(lambda p: p[h], critic_params["params"]["heads"])


def trainable(variables):
    """The "params" collection of a flax variables dict (what optimizers and norms see)."""
    return variables["params"] if "params" in variables else variables


def q_head_fn(config: MLPConfig, h: int = 0):
    """A pure `q(critic_params, obs, act) -> (N,)` for head `h` (what SEEM consumes).

    The deterministic network: dropout off, BatchNorm on its running averages, which are
    held fixed (no gradient), so ∇ of q is the gradient with respect to the parameters only.
    """
    net = QNetwork(config)

    def q(critic_params, obs, act):
        variables = {"params": head_params(critic_params, h)}
        if "batch_stats" in critic_params:
            stats = jax.tree.map(lambda x: x[h], critic_params["batch_stats"]["heads"])
            variables["batch_stats"] = jax.lax.stop_gradient(stats)
        return net.apply(variables, obs, act)

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


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LOG_STD_MODES = ("squash", "affine")


class GaussianActor(nn.Module):
    """obs (..., obs_dim) -> (mean (..., act_dim), log_std (..., act_dim)), pre-tanh.

    log_std_mode squash: the network's log-std output squashed smoothly into [−5, 2]
    (CleanRL's; no zero gradients at a clip). affine: m·raw + o with learned scalars m, o
    starting at 1 and −1, clipped to [−20, 2] (CORL's CQL policy).
    """

    config: MLPConfig
    act_dim: int
    log_std_mode: str = "squash"

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        out = MLP(self.config, 2 * self.act_dim, name="mlp")(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        if self.log_std_mode == "affine":
            scale = self.param("log_std_multiplier", nn.initializers.constant(1.0), ())
            offset = self.param("log_std_offset", nn.initializers.constant(-1.0), ())
            return mean, jnp.clip(scale * log_std + offset, -20.0, 2.0)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(log_std) + 1)
        return mean, log_std


def sample_action(mean: jnp.ndarray, log_std: jnp.ndarray, key: jax.Array):
    """Reparameterised tanh-Gaussian sample. Returns (action in [-1, 1], log-prob (...,))."""
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(key, mean.shape)
    a = jnp.tanh(u)
    logp = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)
    # Change of variables through tanh; the 1e-6 keeps the log finite at |a| = 1.
    logp -= jnp.sum(jnp.log(1 - a**2 + 1e-6), -1)
    return a, logp
