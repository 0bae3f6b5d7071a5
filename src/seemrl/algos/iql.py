"""IQL (Kostrikov, Nair & Levine, 2021, "Offline RL with Implicit Q-Learning").

Reads top to bottom: config, networks, losses, state, init, update, act. One update does what
the authors' JAX code does, in its order: (1) V(s) regresses onto min_j Q'_j(s, a) with the
expectile loss L_τ(u) = |τ − 1(u < 0)|·u² (u = Q − V, τ = 0.7 locomotion / 0.9 AntMaze);
(2) the actor maximises Σ exp(β·(Q'(s, a) − V(s)))·log π(a|s), the weight clipped at 100
(β = 3 locomotion / 10 AntMaze); (3) the twin critics regress onto r + γ(1 − d)·V(s');
(4) the target critics move by Polyak τ 0.005. Adam 3e-4 everywhere, 256-256 ReLU networks,
the actor's learning rate follows a cosine decay over the run (1M steps in the paper).

Policy: as in the authors' code (`NormalTanhPolicy`, `tanh_squash_distribution=False`), a
Gaussian whose mean is tanh(MLP(s)) and whose log-std is a state-independent parameter
(clipped to [−5, 2]); `act` returns the mean. A Gaussian log-likelihood keeps the AWR weights
meaningful (an MSE actor would weight only a distance), and the mean is deterministic.

Init is the authors' (`init_scheme: orthogonal`: every layer orthogonal with gain √2, zero
biases; runs saved before the option resume with PyTorch's, `init_scheme: torch`).

Deviations: LayerNorm switches for critic, value net and actor (the SEEM paper's); no
dropout (the paper uses none on D4RL locomotion / AntMaze); the reward rescaling the paper
applies (locomotion: ×1000 / return range of the dataset; AntMaze: r − 1) is a dataset
transform (`reward_normalization: returns` and `reward_bias` in the presets), not part of
the update.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from seemrl.algos import common
from seemrl.algos.common import (
    AgentState,
    NetworkOptions,
    critic_regression_step,
    make_optimizer,
    polyak,
)
from seemrl.networks import MLP, Critic, MLPConfig
from seemrl.types import Batch, EnvSpec

NAME = "iql"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass(frozen=True)
class Config(NetworkOptions):
    """IQL hyper-parameters (defaults: the paper's, for D4RL locomotion)."""

    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Target-critic Polyak rate."""
    expectile: float = 0.7
    """Expectile τ of the value loss (0.7 locomotion, 0.9 AntMaze; 0.5 = mean regression)."""
    beta: float = 3.0
    """Inverse temperature β of the advantage weights exp(β·A) (3 locomotion, 10 AntMaze)."""
    max_weight: float = 100.0
    """Clip of the advantage weight exp(β·A)."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the value network V(s)."""
    value_layer_norm: bool = False
    """LayerNorm in the value network (placement and layers as for the critic)."""
    optimizer: str = "adam"
    """Optimizer of the critic and the value net: adam | sgd (the actor always uses Adam)."""
    lr_actor: float = 3e-4
    """Actor learning rate (start of the cosine schedule)."""
    lr_critic: float = 3e-4
    """Critic learning rate."""
    lr_value: float = 3e-4
    """Value-network learning rate."""
    actor_decay_steps: int = 1_000_000
    """Cosine decay length of the actor learning rate (set it to the run's steps; 0: none)."""
    num_critics: int = 2
    """Number of critic heads (the value target takes their minimum)."""
    init_scheme: str = "orthogonal"
    """Initialisation (the authors'; see NetworkOptions)."""

    def __post_init__(self):
        super().__post_init__()
        self.value_mlp()
        make_optimizer(self.optimizer, self.lr_critic)
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("gamma must be in [0, 1] and tau in (0, 1]")
        if self.beta < 0 or self.max_weight <= 0 or self.actor_decay_steps < 0:
            raise ValueError("beta and actor_decay_steps must be >= 0, max_weight > 0")
        if self.num_critics < 1:
            raise ValueError("num_critics must be >= 1")

    def value_mlp(self) -> MLPConfig:
        layers = self.ln_layers
        if layers is not None:  # the shared layer set, restricted to the value net's depth
            layers = tuple(i for i in layers if i < len(self.value_hidden))
        return MLPConfig(hidden=tuple(self.value_hidden), activation=self.activation,
                         norm="layernorm" if self.value_layer_norm else "none",
                         placement=self.ln_placement, norm_layers=layers,
                         **self.init_kwargs("critic"))


class ValueNetwork(nn.Module):
    """V: obs (..., obs_dim) -> (...,)."""

    config: MLPConfig

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return MLP(self.config, 1, name="mlp")(obs)[..., 0]


class GaussianPolicy(nn.Module):
    """obs (..., obs_dim) -> (mean (..., act_dim) in [-1, 1], log_std (act_dim,))."""

    config: MLPConfig
    act_dim: int

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean = jnp.tanh(MLP(self.config, self.act_dim, name="mlp")(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
    """Asymmetric squared loss |τ − 1(u < 0)|·u², elementwise (u = Q − V, any shape)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * jnp.square(diff)


def gaussian_log_prob(mean: jnp.ndarray, log_std: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """log N(a; mean, diag(exp(log_std))²) summed over the last axis: (B, A) -> (B,)."""
    z = (a - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


@flax.struct.dataclass
class State(AgentState):
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    value_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    value_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key, so checkpoints are plain arrays


@functools.cache
def _nets(cfg: Config, act_dim: int):
    actor = GaussianPolicy(cfg.actor_mlp(), act_dim)
    critic = Critic(cfg.critic_mlp(), cfg.num_critics)
    value = ValueNetwork(cfg.value_mlp())
    lr = (optax.cosine_decay_schedule(cfg.lr_actor, cfg.actor_decay_steps)
          if cfg.actor_decay_steps else cfg.lr_actor)
    actor_opt = optax.adam(lr, eps=1e-8)
    return (actor, critic, value, actor_opt, make_optimizer(cfg.optimizer, cfg.lr_critic),
            make_optimizer(cfg.optimizer, cfg.lr_value))


def init(key: jax.Array, spec: EnvSpec, cfg: Config) -> State:
    obs_dim, act_dim = spec.obs_dim, spec.act_dim
    actor, critic, value, actor_opt, critic_opt, value_opt = _nets(cfg, act_dim)
    k_actor, k_critic, k_value, k_state = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, act)
    value_params = value.init(k_value, obs)
    return State(actor_params=actor_params, critic_params=critic_params,
                 target_critic_params=critic_params, value_params=value_params,
                 actor_opt_state=actor_opt.init(actor_params),
                 critic_opt_state=critic_opt.init(critic_params),
                 value_opt_state=value_opt.init(value_params), key=k_state)


def update(state: State, batch: Batch, step: jax.Array, cfg: Config,
           spec: EnvSpec) -> tuple[State, dict[str, jax.Array]]:
    """One value, actor, critic and target step (the authors' order).

    Args:
      state: one seed's state (no leading seed axis).
      batch: Batch of B transitions with normalised observations.
      step: global step (unused: every network updates every step; the actor's cosine
        schedule counts its own steps in the optimizer state).
    Returns:
      (new state, scalar metrics).
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    del step
    actor, critic, value, actor_opt, critic_opt, value_opt = _nets(cfg, act_dim)
    q_target = jnp.min(critic.apply(state.target_critic_params, batch.obs_tm1, batch.a_tm1),
                       axis=0)  # (B,)
    q_target = jax.lax.stop_gradient(q_target)

    # (1) Value: expectile regression of V(s) onto the target critics' min Q(s, a).
    def value_loss_fn(params):
        v = value.apply(params, batch.obs_tm1)
        return jnp.mean(expectile_loss(q_target - v, cfg.expectile)), v

    (value_loss, v_tm1), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(
        state.value_params)
    updates, value_opt_state = value_opt.update(grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, updates)

    # (2) Actor: advantage-weighted regression with the updated V (as the authors' code).
    adv = q_target - value.apply(value_params, batch.obs_tm1)
    weight = jax.lax.stop_gradient(jnp.minimum(jnp.exp(cfg.beta * adv), cfg.max_weight))

    def actor_loss_fn(params):
        mean, log_std = actor.apply(params, batch.obs_tm1)
        logp = gaussian_log_prob(mean, log_std, batch.a_tm1 / max_action)
        return -jnp.mean(weight * logp)

    actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state.actor_params)
    updates, actor_opt_state = actor_opt.update(grads, state.actor_opt_state,
                                                state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # (3) Critic: y = r + γ(1 − d)·V(s'), with no max over actions anywhere.
    target = batch.r_t + cfg.gamma * batch.discount_t * value.apply(value_params, batch.obs_t)

    critic_params, critic_opt_state, critic_loss, q_tm1, grads = critic_regression_step(
        critic, critic_opt, state.critic_params, state.critic_opt_state, batch.obs_tm1,
        batch.a_tm1, target)

    state = state.replace(
        actor_params=actor_params, critic_params=critic_params, value_params=value_params,
        target_critic_params=polyak(state.target_critic_params, critic_params, cfg.tau),
        actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
        value_opt_state=value_opt_state)
    metrics = {
        "critic_loss": critic_loss,
        "q_mean": jnp.mean(q_tm1),
        "target_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(grads),
        "value_loss": value_loss,
        "v_mean": jnp.mean(v_tm1),
        "adv_mean": jnp.mean(adv),
        "weight_mean": jnp.mean(weight),
        "actor_loss": actor_loss,
    }
    return state, metrics


def act(state: State, obs: jax.Array, cfg: Config, spec: EnvSpec) -> jax.Array:
    """Deterministic action (the Gaussian's mean) for normalised observations (..., obs_dim)."""
    act_dim, max_action = spec.act_dim, spec.max_action
    actor = _nets(cfg, act_dim)[0]
    return max_action * actor.apply(state.actor_params, obs)[0]


def param_metrics(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Parameter norms of each critic head, the value net and the actor."""
    return common.param_metrics(state, cfg, value=state.value_params)


critic_q = common.critic_q
