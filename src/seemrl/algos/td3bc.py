"""TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline RL"), and plain TD3.

Reads top to bottom: config, state, init, update, act. With `bc_coef = 0` it is TD3 with
the TD3+BC actor-loss scaling, the paper's (Yue et al., 2023) divergence setting (SPEC §5.1).

Faithful to the authors' code (SPEC §6): twin critics 256-256 ReLU, actor max_a·tanh, Adam 3e-4,
γ 0.99, τ 0.005, batch 256, target policy noise 0.2 clipped at 0.5 (× max action), actor and
target updates every 2 critic steps, actor loss −λ·mean Q1(s, π(s)) + bc_coef·MSE(π(s), a)
with λ = α / mean|Q1(s, π(s))| (no gradient through λ).

Deviations: LayerNorm switches and SGD are options (the SEEM paper's); parameter init matches
PyTorch's default; the critic loss sums the two heads' MSEs as the original does.

Critic regularisers a user might try instead of LayerNorm (SPEC §5.8), all off by default:
weight decay (AdamW with adam), dropout, BatchNorm and spectral norm. Dropout and BatchNorm's
batch statistics act only in the critic's TD-regression pass; the TD target, the actor's loss,
evaluation and SEEM use the deterministic critic (BatchNorm on its running averages).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from seemrl.algos import common
from seemrl.algos.common import (
    AgentState,
    NetworkOptions,
    critic_regression_step,
    delayed_actor_step,
    make_optimizer,
)
from seemrl.networks import Actor, Critic
from seemrl.types import Batch, EnvSpec

NAME = "td3bc"


@dataclasses.dataclass(frozen=True)
class Config(NetworkOptions):
    """TD3+BC hyper-parameters (defaults: the original paper's, for D4RL locomotion)."""

    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Target-network update rate (1.0 = hard copy at every actor step)."""
    alpha: float = 2.5
    """α in λ = α / mean|Q|, the weight of the Q term in the actor loss."""
    bc_coef: float = 1.0
    """Weight of the behaviour-cloning MSE in the actor loss (0 = plain TD3, which diverges)."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (× max action)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise (× max action)."""
    policy_freq: int = 2
    """Actor and target networks are updated every this many critic steps."""
    optimizer: str = "adam"
    """adam | sgd (plain, no momentum; the growth theory's finite-time blow-up setting)."""
    lr_actor: float = 3e-4
    """Actor learning rate."""
    lr_critic: float = 3e-4
    """Critic learning rate."""
    num_critics: int = 2
    """Number of critic heads (the target takes their minimum)."""

    CRITIC_TRAINING = ("weight_decay", "critic_dropout", "batch_norm")

    def __post_init__(self):
        super().__post_init__()
        make_optimizer(self.optimizer, self.lr_critic)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.policy_freq < 1 or self.num_critics < 1:
            raise ValueError("policy_freq and num_critics must be >= 1")


@flax.struct.dataclass
class State(AgentState):
    actor_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key, so checkpoints are plain arrays


@functools.cache
def networks(cfg: Config, act_dim: int, max_action: float):
    """(actor, critic, actor optimizer, critic optimizer) of a TD3-style agent (also ReBRAC's)."""
    actor = Actor(cfg.actor_mlp(), act_dim, max_action)
    critic = Critic(cfg.critic_mlp(), cfg.num_critics)
    return actor, critic, make_optimizer(cfg.optimizer, cfg.lr_actor), \
        make_optimizer(cfg.optimizer, cfg.lr_critic, cfg.weight_decay)


def init(key: jax.Array, spec: EnvSpec, cfg: Config) -> State:
    obs_dim, act_dim, max_action = spec.obs_dim, spec.act_dim, spec.max_action
    actor, critic, actor_opt, critic_opt = networks(cfg, act_dim, max_action)
    k_actor, k_critic, k_state = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, act)
    return State(actor_params=actor_params, critic_params=critic_params,
                 target_actor_params=actor_params, target_critic_params=critic_params,
                 actor_opt_state=actor_opt.init(actor_params),
                 critic_opt_state=critic_opt.init(critic_params), key=k_state)


def update(state: State, batch: Batch, step: jax.Array, cfg: Config,
           spec: EnvSpec) -> tuple[State, dict[str, jax.Array]]:
    """One critic step, plus an actor and target step when `step % policy_freq == 0`.

    Args:
      state: one seed's state (no leading seed axis; the driver vmaps this).
      batch: Batch of B transitions with normalised observations.
      step: global step counter, shared across seeds (kept unbatched so the delayed actor
        update is a real `lax.cond`, not a select that computes both branches).
    Returns:
      (new state, scalar metrics; actor metrics are NaN on critic-only steps).
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    actor, critic, actor_opt, critic_opt = networks(cfg, act_dim, max_action)
    key, noise_key = jax.random.split(state.key)
    # Split only with dropout, so runs without it draw exactly the keys they always did.
    key, dropout_key = jax.random.split(key) if cfg.critic_dropout > 0 else (key, None)

    # Critic: y = r + γ(1 − d) min_j Q'_j(s', clip(π'(s') + clip(ε))).
    noise = jnp.clip(jax.random.normal(noise_key, batch.a_tm1.shape) * cfg.policy_noise,
                     -cfg.noise_clip, cfg.noise_clip) * max_action
    a_t = jnp.clip(actor.apply(state.target_actor_params, batch.obs_t) + noise,
                   -max_action, max_action)
    q_t = critic.apply(state.target_critic_params, batch.obs_t, a_t)  # (heads, B)
    target = batch.r_t + cfg.gamma * batch.discount_t * jnp.min(q_t, axis=0)

    critic_params, critic_opt_state, critic_loss, q_tm1, grads = critic_regression_step(
        critic, critic_opt, state.critic_params, state.critic_opt_state, batch.obs_tm1,
        batch.a_tm1, target, dropout_key)
    state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state, key=key)

    def actor_loss_fn(params, state: State):
        pi = actor.apply(params, batch.obs_tm1)
        # Q1 alone, deterministic: applying the whole ensemble and taking [0] also ran Q2
        # forward and backward (~8 % of an update's FLOPs, ~10 % of its time on CPU).
        q_pi = critic_q(cfg)(state.critic_params, batch.obs_tm1, pi)
        lmbda = jax.lax.stop_gradient(cfg.alpha / jnp.mean(jnp.abs(q_pi)))
        bc_loss = jnp.mean(jnp.square(pi - batch.a_tm1))
        return -lmbda * jnp.mean(q_pi) + cfg.bc_coef * bc_loss, (bc_loss, jnp.mean(q_pi))

    state, (actor_loss, bc_loss, q_pi) = delayed_actor_step(state, step, cfg, actor_opt,
                                                            actor_loss_fn)
    metrics = {
        "critic_loss": critic_loss,
        "q_mean": jnp.mean(q_tm1),
        "target_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(grads),
        "actor_loss": actor_loss,
        "bc_loss": bc_loss,
        "q_pi": q_pi,
    }
    return state, metrics


def act(state: State, obs: jax.Array, cfg: Config, spec: EnvSpec) -> jax.Array:
    """Deterministic action for normalised observations obs (..., obs_dim)."""
    act_dim, max_action = spec.act_dim, spec.max_action
    actor = networks(cfg, act_dim, max_action)[0]
    return actor.apply(state.actor_params, obs)


# The contract's defaults: norms of the critic heads and the actor; Q head `head` for SEEM.
param_metrics = common.param_metrics
critic_q = common.critic_q
