"""ReBRAC (Tarasov, Kurenkov, Nikulin & Kolesnikov, 2023, "Revisiting the Minimalist Approach
to Offline RL").

Reads top to bottom: config, state, init, update, act. TD3+BC with the paper's design
choices: deeper networks (3×256 actor and critics), LayerNorm in the critic (after the
activation, as in the authors' code), batch 1024 (`batch_size` in the presets), Adam 1e-3 for
both networks, a BC penalty in the actor AND in the critic target:

    actor:  mean( β_actor · ‖π(s) − a‖² − λ · min_j Q_j(s, π(s)) ),  λ = 1 / mean|Q| (detached)
    critic: y = r + γ(1 − d) · ( min_j Q'_j(s', a') − β_critic · ‖a' − a_{s'}‖² ),

a' = π'(s') + clipped noise, a_{s'} the dataset's action at s'. Target policy noise 0.2 clip
0.5, actor and targets every 2 critic steps, τ 0.005. β's are per dataset (presets).

The critic penalty needs the dataset's next action, `batch.a_t` (the driver fills it from
`Dataset.with_next_actions`). A Batch with `a_t=None` trains with the critic penalty off and
logs `critic_bc_penalty` as NaN, so the gap is visible.

Initialisation is the authors' (`init_scheme: edac`, from EDAC): PyTorch's default kernels,
hidden biases 0.1, output layers U(±1e-3) in the actor and U(±3e-3) in the critic. As in the
authors' code, the squared BC distances are summed over action dimensions.

Deviations: none in the update; LayerNorm placement and layers are options (default `after`,
all layers, as the authors').
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from seemrl.algos.common import (
    NetworkOptions,
    critic_regression_step,
    delayed_actor_step,
    make_optimizer,
)
from seemrl.algos.td3bc import State, act, critic_q, init, networks, param_metrics
from seemrl.types import Batch, EnvSpec

NAME = "rebrac"
# ReBRAC is TD3+BC's agent with two BC penalties: the state, networks, init, policy, norms and
# SEEM head are TD3+BC's; only the config and the update differ.
__all__ = ["NAME", "Config", "State", "act", "critic_q", "init", "param_metrics", "update"]


@dataclasses.dataclass(frozen=True)
class Config(NetworkOptions):
    """ReBRAC hyper-parameters (defaults: the paper's hopper-medium settings)."""

    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each critic head."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the actor."""
    layer_norm: bool = True
    """LayerNorm in the critic (ReBRAC's default)."""
    ln_placement: str = "after"
    """Where LayerNorm goes: after the activation (ReBRAC's) or before it (the SEEM paper's)."""
    gamma: float = 0.99
    """Discount factor γ (0.999 on AntMaze)."""
    tau: float = 0.005
    """Target-network Polyak rate."""
    beta_actor: float = 0.01
    """Weight of the actor's BC penalty ‖π(s) − a‖²."""
    beta_critic: float = 0.01
    """Weight of the critic target's BC penalty ‖a' − a_{s'}‖² (needs next actions)."""
    normalize_q: bool = True
    """Divide the actor's Q term by mean|Q| (λ = 1 / mean|Q|; off: λ = 1)."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (× max action)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise (× max action)."""
    policy_freq: int = 2
    """Actor and target networks are updated every this many critic steps."""
    optimizer: str = "adam"
    """adam | sgd (plain, no momentum)."""
    lr_actor: float = 1e-3
    """Actor learning rate."""
    lr_critic: float = 1e-3
    """Critic learning rate."""
    num_critics: int = 2
    """Number of critic heads (target and actor take their minimum)."""
    init_scheme: str = "edac"
    """The authors' initialisation (hidden biases 0.1, small output layers); torch: PyTorch's
    defaults everywhere."""

    def __post_init__(self):
        super().__post_init__()
        make_optimizer(self.optimizer, self.lr_critic)
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("gamma must be in [0, 1] and tau in (0, 1]")
        if self.policy_freq < 1 or self.num_critics < 1:
            raise ValueError("policy_freq and num_critics must be >= 1")
        if self.beta_actor < 0 or self.beta_critic < 0:
            raise ValueError("beta_actor and beta_critic must be >= 0")


def update(state: State, batch: Batch, step: jax.Array, cfg: Config,
           spec: EnvSpec) -> tuple[State, dict[str, jax.Array]]:
    """One critic step, plus an actor and target step when `step % policy_freq == 0`.

    Args:
      state: one seed's state (no leading seed axis).
      batch: Batch of B transitions with normalised observations; `a_t` (B, act_dim), the
        dataset's next actions, or None (critic penalty off).
      step: global step counter, shared across seeds (a real `lax.cond` for the actor).
    Returns:
      (new state, scalar metrics; actor metrics are NaN on critic-only steps).
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    actor, critic, actor_opt, critic_opt = networks(cfg, act_dim, max_action)
    key, noise_key = jax.random.split(state.key)
    a_next_data = batch.a_t

    noise = jnp.clip(jax.random.normal(noise_key, batch.a_tm1.shape) * cfg.policy_noise,
                     -cfg.noise_clip, cfg.noise_clip) * max_action
    a_t = jnp.clip(actor.apply(state.target_actor_params, batch.obs_t) + noise,
                   -max_action, max_action)
    q_t = jnp.min(critic.apply(state.target_critic_params, batch.obs_t, a_t), axis=0)
    if a_next_data is not None:
        critic_bc = jnp.sum(jnp.square(a_t - a_next_data), axis=-1)  # (B,)
        q_t = q_t - cfg.beta_critic * critic_bc
        critic_bc_mean = jnp.mean(critic_bc)
    else:
        critic_bc_mean = jnp.full((), jnp.nan)
    target = jax.lax.stop_gradient(batch.r_t + cfg.gamma * batch.discount_t * q_t)

    critic_params, critic_opt_state, critic_loss, q_tm1, grads = critic_regression_step(
        critic, critic_opt, state.critic_params, state.critic_opt_state, batch.obs_tm1,
        batch.a_tm1, target)
    state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state, key=key)

    def actor_loss_fn(params, state: State):
        pi = actor.apply(params, batch.obs_tm1)
        q_pi = jnp.min(critic.apply(state.critic_params, batch.obs_tm1, pi), axis=0)
        lmbda = 1.0 / jnp.mean(jnp.abs(q_pi)) if cfg.normalize_q else 1.0
        lmbda = jax.lax.stop_gradient(lmbda)
        bc = jnp.sum(jnp.square(pi - batch.a_tm1), axis=-1)
        loss = jnp.mean(cfg.beta_actor * bc - lmbda * q_pi)
        return loss, (jnp.mean(bc), jnp.mean(q_pi))

    state, (actor_loss, bc_loss, q_pi) = delayed_actor_step(state, step, cfg, actor_opt,
                                                            actor_loss_fn)
    metrics = {
        "critic_loss": critic_loss,
        "q_mean": jnp.mean(q_tm1),
        "target_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(grads),
        "critic_bc_penalty": critic_bc_mean,
        "actor_loss": actor_loss,
        "bc_loss": bc_loss,
        "q_pi": q_pi,
    }
    return state, metrics
