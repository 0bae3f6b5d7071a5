"""Pieces every algorithm shares: network options, optimizers, target updates, norms."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from seemrl.networks import MLPConfig


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

    def critic_mlp(self) -> MLPConfig:
        return MLPConfig(hidden=tuple(self.critic_hidden), activation=self.activation,
                         norm="layernorm" if self.layer_norm else "none",
                         placement=self.ln_placement, norm_layers=self.ln_layers,
                         use_bias=self.critic_bias)

    def actor_mlp(self) -> MLPConfig:
        return MLPConfig(hidden=tuple(self.actor_hidden), activation=self.activation,
                         norm="layernorm" if self.actor_layer_norm else "none",
                         placement=self.ln_placement, norm_layers=self.ln_layers)

    def __post_init__(self):
        # Validate eagerly so a bad option fails before any data is loaded.
        self.critic_mlp()
        self.actor_mlp()


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """Adam (PyTorch defaults) or plain SGD without momentum (the paper's SGD setting)."""
    if name == "adam":
        return optax.adam(lr, eps=1e-8)
    if name == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"unknown optimizer '{name}' (choose from {', '.join(OPTIMIZERS)})")


def polyak(target, online, tau: float):
    """target ← τ·online + (1 − τ)·target; τ = 1 is a hard copy."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def global_norm(tree) -> jnp.ndarray:
    return optax.tree.norm(tree)


def head_norms(critic_params, num_heads: int) -> jnp.ndarray:
    """(num_heads,) parameter norm of each head of a vmapped `Critic`."""
    leaves = jax.tree.leaves(critic_params)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x).reshape(num_heads, -1), axis=1) for x in leaves))


def critic_regression_step(critic, opt: optax.GradientTransformation, params, opt_state,
                           obs: jnp.ndarray, act: jnp.ndarray, target: jnp.ndarray):
    """One optimizer step of every critic head towards a fixed TD target.

    loss = Σ_heads mean_B (Q_h(s, a) − y)², as the PyTorch originals sum their heads' MSEs.

    Args:
      critic: a `networks.Critic`; obs (B, obs_dim), act (B, act_dim); target (B,) y (held
        fixed: no gradient flows into it).
    Returns:
      (params, opt_state, loss, q_tm1 (heads, B), grads).
    """
    target = jax.lax.stop_gradient(target)

    def loss_fn(p):
        q_tm1 = critic.apply(p, obs, act)
        return jnp.sum(jnp.mean(jnp.square(q_tm1 - target[None]), axis=1)), q_tm1

    (loss, q_tm1), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, q_tm1, grads
