"""Pieces every algorithm shares: network options, optimizers, target updates, norms, and the
defaults of the algorithm contract (`param_metrics`, `critic_q`; see `seemrl.algos.Algorithm`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Self

import jax
import jax.numpy as jnp
import optax

from seemrl.config import ConfigError
from seemrl.networks import MLPConfig, q_head_fn, trainable

INIT_SCHEMES = ("torch", "edac", "corl", "orthogonal")


class AgentState:
    """Base of every algorithm's `State`, a `flax.struct.dataclass` of one seed's arrays with
    at least `key` and `critic_params` (`seemrl.algos.AlgoState`); flax gives it `replace`."""

    if TYPE_CHECKING:
        def replace(self, **changes: Any) -> Self: ...


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    """Network options common to every algorithm (flat, so they map 1:1 onto CLI flags)."""

    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic head."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    activation: str = "relu"
    """Hidden activation of all networks: relu | mish | tanh | gelu."""
    layer_norm: bool = False
    """LayerNorm in the critic (the paper's fix for Q-value divergence)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actor."""
    ln_placement: str = "before"
    """Where LayerNorm goes: before the activation (Linear→LN→act, the paper's) or after."""
    ln_layers: tuple[int, ...] | None = None
    """0-based hidden layers that get LayerNorm (default: all)."""
    critic_bias: bool = True
    """Biases in the critic (off gives the homogeneous critic of the growth theory)."""
    weight_decay: float = 0.0
    """Weight decay of the critic's parameters: decoupled with adam (AdamW: each step also
    θ ← θ − lr·wd·θ), an L2 term wd·θ added to the gradient with sgd (the same for plain SGD)."""
    critic_dropout: float = 0.0
    """Dropout rate after each hidden layer of the critic, in its TD-regression passes only
    (targets, the actor's loss, evaluation and SEEM use the deterministic critic)."""
    batch_norm: bool = False
    """BatchNorm in the critic where LayerNorm would go (ln_placement, ln_layers apply): batch
    statistics in the TD-regression pass, running averages (momentum 0.1) everywhere else."""
    spectral_norm: bool = False
    """Spectral normalisation of the critic's hidden layers: each kernel divided by its largest
    singular value (power iteration in every forward pass)."""

    init_scheme: str = "torch"
    """Initialisation: torch (PyTorch's nn.Linear defaults in every layer) | edac (the EDAC and
    ReBRAC authors': PyTorch kernels, hidden biases 0.1, the output layer's kernel and bias
    U(±3e-3) in critics and value nets, U(±1e-3) in actors) | corl (CORL's CQL: critics and
    value nets orthogonal kernels of gain √2 with zero biases and an output kernel of gain
    1e-2; actors PyTorch's hidden layers and a Glorot-uniform output kernel of gain 1e-2,
    output biases 0) | orthogonal (the IQL authors', jaxrl's default_init: every layer of
    every network an orthogonal kernel of gain √2 and zero biases)."""

    CRITIC_TRAINING: ClassVar[tuple[str, ...]] = ()
    """Which of weight_decay, critic_dropout, batch_norm this algorithm's critic training
    implements (a class attribute, not an option); the others are refused, not ignored."""

    def init_kwargs(self, net: str) -> dict:
        """MLPConfig's init fields for a "critic" (value nets too) or an "actor"."""
        if self.init_scheme == "torch":
            return {}
        if self.init_scheme == "edac":
            return {"hidden_bias": 0.1, "out_init": "uniform",
                    "out_scale": 1e-3 if net == "actor" else 3e-3}
        if self.init_scheme == "orthogonal":
            return {"hidden_init": "orthogonal", "out_init": "orthogonal", "out_scale": 2.0**0.5}
        if net == "actor":
            return {"out_init": "xavier", "out_scale": 1e-2}
        return {"hidden_init": "orthogonal", "out_init": "orthogonal", "out_scale": 1e-2}

    def critic_mlp(self) -> MLPConfig:
        norm = "layernorm" if self.layer_norm else "batchnorm" if self.batch_norm else "none"
        return MLPConfig(hidden=tuple(self.critic_hidden), activation=self.activation,
                         norm=norm, placement=self.ln_placement, norm_layers=self.ln_layers,
                         use_bias=self.critic_bias, dropout=self.critic_dropout,
                         spectral_norm=self.spectral_norm, **self.init_kwargs("critic"))

    def actor_mlp(self) -> MLPConfig:
        return MLPConfig(hidden=tuple(self.actor_hidden), activation=self.activation,
                         norm="layernorm" if self.actor_layer_norm else "none",
                         placement=self.ln_placement, norm_layers=self.ln_layers,
                         **self.init_kwargs("actor"))

    def __post_init__(self):
        # Validate eagerly so a bad option fails before any data is loaded.
        if self.init_scheme not in INIT_SCHEMES:
            raise ConfigError(f"unknown init_scheme '{self.init_scheme}' (choose from "
                              f"{', '.join(INIT_SCHEMES)})")
        if self.layer_norm and self.batch_norm:
            raise ConfigError("layer_norm and batch_norm are alternatives: choose one")
        if self.weight_decay < 0:
            raise ConfigError(f"option 'weight_decay' must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.critic_dropout < 1.0:
            raise ConfigError(f"option 'critic_dropout' must be in [0, 1), got "
                              f"{self.critic_dropout}")
        asked = [name for name in ("weight_decay", "critic_dropout", "batch_norm")
                 if getattr(self, name) and name not in self.CRITIC_TRAINING]
        if asked:
            raise ConfigError(f"option(s) {', '.join(asked)} are not implemented for this "
                              "algorithm's critic (td3bc has them)")
        self.critic_mlp()
        self.actor_mlp()


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, lr: float, weight_decay: float = 0.0
                   ) -> optax.GradientTransformation:
    """Adam (PyTorch defaults) or plain SGD without momentum (the paper's SGD setting).

    `weight_decay` > 0: adam becomes AdamW (decoupled, θ ← θ − lr·(adam step + wd·θ), as
    PyTorch's AdamW); sgd gets the L2 term wd·θ added to its gradient (for plain SGD the two
    coincide). Only the "params" collection of a flax variables dict decays (BatchNorm's
    running averages are statistics, not weights).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}' (choose from {', '.join(OPTIMIZERS)})")
    if weight_decay == 0.0:  # the exact transformations (and checkpoint layout) as before
        return optax.adam(lr, eps=1e-8) if name == "adam" else optax.sgd(lr)
    if name == "adam":
        return optax.adamw(lr, eps=1e-8, weight_decay=weight_decay, mask=_decay_mask)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=_decay_mask),
                       optax.sgd(lr))


def _decay_mask(tree):
    """True on trainable parameters, False on other collections ("batch_stats")."""
    if isinstance(tree, dict) and "params" in tree:
        return {k: jax.tree.map(lambda _, keep=(k == "params"): keep, v)
                for k, v in tree.items()}
    return jax.tree.map(lambda _: True, tree)


def polyak(target, online, tau: float | jax.Array):
    """target ← τ·online + (1 − τ)·target; τ = 1 is a hard copy."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def global_norm(tree) -> jnp.ndarray:
    return optax.tree.norm(tree)


def head_norms(critic_params, num_heads: int) -> jnp.ndarray:
    """(num_heads,) parameter norm of each head of a vmapped `Critic` (its "params" only)."""
    leaves = jax.tree.leaves(trainable(critic_params))
    return jnp.sqrt(sum(jnp.sum(jnp.square(x).reshape(num_heads, -1), axis=1) for x in leaves))


def param_metrics(state, cfg, **others) -> dict[str, jax.Array]:
    """Parameter norms logged at every log point: each critic head's (`critic_param_norm_<h>`),
    then `<name>_param_norm` of each of `others` (further networks' parameters, e.g. IQL's
    value net), then the actor's. The default for every algorithm whose state has
    `critic_params` (a vmapped `Critic` of `cfg.num_critics` heads) and `actor_params`."""
    norms = head_norms(state.critic_params, cfg.num_critics)
    out = {f"critic_param_norm_{h}": norms[h] for h in range(cfg.num_critics)}
    out.update({f"{name}_param_norm": optax.tree.norm(p) for name, p in others.items()})
    out["actor_param_norm"] = optax.tree.norm(state.actor_params)
    return out


def critic_q(cfg, head: int = 0):
    """Pure q(critic_params, obs, act) -> (N,) of one head of the critic `cfg.critic_mlp()`
    describes, for SEEM (the default for every algorithm with a `networks.Critic`)."""
    return q_head_fn(cfg.critic_mlp(), head)


def delayed_actor_step(state, step: jax.Array, cfg, actor_opt: optax.GradientTransformation,
                       loss_fn):
    """TD3's delayed policy update (TD3+BC's and ReBRAC's): every `cfg.policy_freq` critic
    steps one optimizer step of the actor on `loss_fn(actor_params, state) -> (loss, (bc_loss,
    q_pi))` and a Polyak step (`cfg.tau`) of both target networks; on the other steps the
    state passes through and the three metrics are NaN.

    `step` is unbatched across seeds, so this is a real `lax.cond`, not a select that computes
    both branches. Returns (state, (loss, bc_loss, q_pi)).
    """

    def actor_step(state):
        (loss, (bc_loss, q_pi)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.actor_params, state)
        updates, actor_opt_state = actor_opt.update(grads, state.actor_opt_state,
                                                    state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)
        state = state.replace(
            actor_params=actor_params, actor_opt_state=actor_opt_state,
            target_actor_params=polyak(state.target_actor_params, actor_params, cfg.tau),
            target_critic_params=polyak(state.target_critic_params, state.critic_params,
                                        cfg.tau))
        return state, (loss, bc_loss, q_pi)

    def skip(state):
        nan = jnp.full((), jnp.nan)
        return state, (nan, nan, nan)

    return jax.lax.cond(step % cfg.policy_freq == 0, actor_step, skip, state)


def critic_regression_step(critic, opt: optax.GradientTransformation, params, opt_state,
                           obs: jnp.ndarray, act: jnp.ndarray, target: jnp.ndarray,
                           dropout_key: jax.Array | None = None):
    """One optimizer step of every critic head towards a fixed TD target.

    loss = Σ_heads mean_B (Q_h(s, a) − y)², as the PyTorch originals sum their heads' MSEs.
    This is the critic's training pass: with dropout it draws masks from `dropout_key`, with
    BatchNorm it normalises by the batch's statistics and returns the updated running averages
    in params["batch_stats"] (which get a zero gradient). A critic without either runs the
    plain deterministic pass.

    Args:
      critic: a `networks.Critic`; obs (B, obs_dim), act (B, act_dim); target (B,) y (held
        fixed: no gradient flows into it).
      dropout_key: needed when the critic has dropout.
    Returns:
      (params, opt_state, loss, q_tm1 (heads, B), grads).
    """
    target = jax.lax.stop_gradient(target)
    cfg: MLPConfig = critic.config
    if cfg.dropout > 0.0 and dropout_key is None:
        raise ValueError("a critic with dropout needs a dropout_key for its training pass")

    def loss_fn(p):
        if cfg.has_train_mode:
            rngs = {"dropout": dropout_key} if cfg.dropout > 0.0 else {}
            q_tm1, stats = critic.apply(p, obs, act, train=True, rngs=rngs,
                                        mutable=["batch_stats"])
        else:
            q_tm1, stats = critic.apply(p, obs, act), {}
        return jnp.sum(jnp.mean(jnp.square(q_tm1 - target[None]), axis=1)), (q_tm1, stats)

    (loss, (q_tm1, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if stats:
        params = {**params, **stats}
    return params, opt_state, loss, q_tm1, grads
