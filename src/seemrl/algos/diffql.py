"""Diffusion-QL (Wang, Hunt & Zhou, 2022, "Diffusion Policies as an Expressive Policy Class
for Offline RL"), in the SEEM authors' variant (Yue et al., 2023; SPEC §5.7).

Reads top to bottom: config, state, init, update, act; the diffusion model (schedule, ε-net,
samplers) is in `_diffusion.py`. The policy is a conditional DDPM over actions with T = 5 and
the vp schedule, ε-prediction, trained on ‖ε − ε_θ(α_t a + σ_t ε, t, s)‖² (the BC term) plus
Q-guidance. One update, in Diffusion-QL's order:

1. Critic (twin, Polyak target τ 0.005): y = r + γ(1 − d)·Q'(s', a'), a' from the EMA policy;
   with `max_q_backup`, K = 10 actions per s' and the max over them of each head, then the
   min over heads (Diffusion-QL's max-Q backup, used by the SEEM authors on AntMaze).
2. Actor: L = L_bc − λ·mean Q_1(s, a_π), a_π sampled with gradients through the sampler;
   the SEEM authors' TD3-style guidance λ = α / mean|Q_1(s, a_π)| (detached), α 1 (2 AntMaze).
3. EMA of the policy (decay 0.995, every 5 steps, left at its initial value before step
   1000, as in Diffusion-QL's code).

Critic: 256×3 mish with LayerNorm after each Dense (Linear → LN → mish; the SEEM variant).
Sampling: the actor's Q term backpropagates through the T-step DDPM chain (`train_sampler`,
Diffusion-QL's); the backup and evaluation use DPM-Solver (`sampler`, order 2, 3 steps:
5 network calls instead of T). `act` samples `eval_samples` actions with fixed noise and
returns the one of highest min_j Q'_j — Diffusion-QL samples from softmax(Q) instead.

Deviations: the ε-net is trained on continuous t ~ U(0, T] (log α interpolated between the
integer steps) so that DPM-Solver's intermediate times are in its training range; PyTorch
default init; argmax instead of softmax(Q) selection at evaluation (a deterministic `act`),
over samples of the EMA policy (Diffusion-QL's `sample_action` samples the online actor);
return-prioritised sampling (SEEM on AntMaze medium/large) is not available in the driver.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from seemrl.algos import _diffusion as diff
from seemrl.algos import common
from seemrl.algos.common import (
    AgentState,
    NetworkOptions,
    critic_regression_step,
    polyak,
)
from seemrl.networks import Critic
from seemrl.types import Batch, EnvSpec

NAME = "diffql"
SAMPLERS = ("ddpm", "dpm1", "dpm2")


@dataclasses.dataclass(frozen=True)
class Config(NetworkOptions):
    """Diffusion-QL hyper-parameters (defaults: the SEEM authors' variant, locomotion)."""

    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each critic head."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the ε-network."""
    activation: str = "mish"
    """Hidden activation of all networks."""
    layer_norm: bool = True
    """LayerNorm in the critic (the SEEM variant; Diffusion-QL has none)."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Target-critic Polyak rate."""
    alpha: float = 1.0
    """α in the guidance weight λ = α / mean|Q| (2.0 on AntMaze)."""
    diffusion_steps: int = 5
    """T, the number of diffusion steps."""
    max_q_backup: bool = False
    """Back up the max over backup_samples policy actions at s' (AntMaze)."""
    backup_samples: int = 10
    """K, actions sampled per s' for the max-Q backup."""
    sampler: str = "dpm2"
    """Sampler in the backup and at evaluation: ddpm | dpm1 | dpm2 (DPM-Solver order)."""
    solver_steps: int = 3
    """DPM-Solver steps (ignored by ddpm)."""
    train_sampler: str = "ddpm"
    """Sampler the actor's Q term backpropagates through: ddpm | dpm1 | dpm2."""
    eval_samples: int = 50
    """Actions sampled per state at evaluation; the one of highest Q is taken."""
    ema_decay: float = 0.995
    """Decay of the policy's exponential moving average (used for targets and evaluation)."""
    ema_every: int = 5
    """EMA update period in steps."""
    ema_start: int = 1000
    """The EMA starts moving at this step (before it, it keeps its initial value)."""
    grad_norm: float = 1.0
    """Global gradient-norm clip of actor and critic (0: none)."""
    lr_actor: float = 3e-4
    """Actor learning rate."""
    lr_critic: float = 3e-4
    """Critic learning rate."""
    lr_decay_steps: int = 0
    """Cosine decay length of both learning rates (0: constant; Diffusion-QL uses the run)."""
    num_critics: int = 2
    """Number of critic heads."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("sampler", "train_sampler"):
            if getattr(self, name) not in SAMPLERS:
                raise ValueError(f"unknown {name} '{getattr(self, name)}' (choose from "
                                 f"{', '.join(SAMPLERS)})")
        if min(self.diffusion_steps, self.backup_samples, self.solver_steps, self.eval_samples,
               self.ema_every, self.num_critics) < 1:
            raise ValueError("diffusion_steps, backup_samples, solver_steps, eval_samples, "
                             "ema_every and num_critics must be >= 1")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("gamma must be in [0, 1] and tau in (0, 1]")


@flax.struct.dataclass
class State(AgentState):
    actor_params: dict
    ema_actor_params: dict
    critic_params: dict
    target_critic_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key, so checkpoints are plain arrays


def _optimizer(cfg: Config, lr: float) -> optax.GradientTransformation:
    sched = optax.cosine_decay_schedule(lr, cfg.lr_decay_steps) if cfg.lr_decay_steps else lr
    adam = optax.adam(sched)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_norm), adam) if cfg.grad_norm else adam


@functools.cache
def _nets(cfg: Config, act_dim: int):
    eps_net = diff.EpsNetwork(cfg.actor_mlp(), act_dim)
    critic = Critic(cfg.critic_mlp(), cfg.num_critics)
    sched = diff.vp_schedule(cfg.diffusion_steps)
    return eps_net, critic, sched, _optimizer(cfg, cfg.lr_actor), _optimizer(cfg, cfg.lr_critic)


def sample(cfg: Config, act_dim: int, params, obs: jnp.ndarray, key: jax.Array,
           sampler: str) -> jnp.ndarray:
    """Actions in [-1, 1] from the policy: obs (B, obs_dim) -> (B, act_dim)."""
    eps_net, _, sched, _, _ = _nets(cfg, act_dim)
    k_init, k_chain = jax.random.split(key)
    x_T = jax.random.normal(k_init, obs.shape[:-1] + (act_dim,))
    eps_fn = lambda x, t: eps_net.apply(params, x, t, obs)
    if sampler == "ddpm":
        return diff.ddpm_sample(eps_fn, sched, x_T, k_chain)
    return diff.dpm_solver_sample(eps_fn, sched, x_T, cfg.solver_steps,
                                  order=1 if sampler == "dpm1" else 2)


def init(key: jax.Array, spec: EnvSpec, cfg: Config) -> State:
    obs_dim, act_dim = spec.obs_dim, spec.act_dim
    eps_net, critic, _, actor_opt, critic_opt = _nets(cfg, act_dim)
    k_actor, k_critic, k_state = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor_params = eps_net.init(k_actor, act, jnp.zeros((1,)), obs)
    critic_params = critic.init(k_critic, obs, act)
    return State(actor_params=actor_params, ema_actor_params=actor_params,
                 critic_params=critic_params, target_critic_params=critic_params,
                 actor_opt_state=actor_opt.init(actor_params),
                 critic_opt_state=critic_opt.init(critic_params), key=k_state)


def update(state: State, batch: Batch, step: jax.Array, cfg: Config,
           spec: EnvSpec) -> tuple[State, dict[str, jax.Array]]:
    """One critic, actor, EMA and target step.

    Args:
      state: one seed's state (no leading seed axis).
      batch: Batch of B transitions with normalised observations.
      step: global step (drives the EMA schedule).
    Returns:
      (new state, scalar metrics).
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    eps_net, critic, sched, actor_opt, critic_opt = _nets(cfg, act_dim)
    key, k_next, k_t, k_noise, k_pi = jax.random.split(state.key, 5)
    bsz = batch.r_t.shape[0]

    # 1. Critic. Next actions come from the EMA policy (K per state with max_q_backup).
    k = cfg.backup_samples if cfg.max_q_backup else 1
    obs_rep = jnp.repeat(batch.obs_t, k, axis=0)  # (B·K, D)
    a_next = max_action * sample(cfg, act_dim, state.ema_actor_params, obs_rep, k_next,
                                 cfg.sampler)
    q_next = critic.apply(state.target_critic_params, obs_rep, a_next).reshape(-1, bsz, k)
    q_next = jnp.min(jnp.max(q_next, axis=-1), axis=0)  # max over K per head, then min
    target = jax.lax.stop_gradient(batch.r_t + cfg.gamma * batch.discount_t * q_next)

    critic_params, critic_opt_state, critic_loss, q_tm1, critic_grads = critic_regression_step(
        critic, critic_opt, state.critic_params, state.critic_opt_state, batch.obs_tm1,
        batch.a_tm1, target)

    # 2. Actor: denoising (BC) loss + TD3-style Q guidance through the sampler.
    a0 = batch.a_tm1 / max_action
    t = cfg.diffusion_steps * (1.0 - jax.random.uniform(k_t, (bsz,)))  # U(0, T]
    noise = jax.random.normal(k_noise, a0.shape)
    x_t = diff.q_sample(sched, a0, t, noise)

    def actor_loss_fn(params):
        bc = jnp.mean(jnp.square(eps_net.apply(params, x_t, t, batch.obs_tm1) - noise))
        a_pi = max_action * sample(cfg, act_dim, params, batch.obs_tm1, k_pi, cfg.train_sampler)
        q_pi = critic.apply(critic_params, batch.obs_tm1, a_pi)[0]
        lmbda = jax.lax.stop_gradient(cfg.alpha / jnp.mean(jnp.abs(q_pi)))
        return bc - lmbda * jnp.mean(q_pi), (bc, jnp.mean(q_pi))

    (actor_loss, (bc_loss, q_pi)), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
        state.actor_params)
    updates, actor_opt_state = actor_opt.update(grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    # 3. EMA of the policy, every ema_every steps from ema_start on.
    ema = jnp.where(step < cfg.ema_start, 1.0, cfg.ema_decay)
    ema = jnp.where(step % cfg.ema_every == 0, ema, 1.0)
    ema_params = polyak(state.ema_actor_params, actor_params, 1.0 - ema)

    state = state.replace(
        actor_params=actor_params, ema_actor_params=ema_params, critic_params=critic_params,
        target_critic_params=polyak(state.target_critic_params, critic_params, cfg.tau),
        actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state, key=key)
    metrics = {
        "critic_loss": critic_loss,
        "q_mean": jnp.mean(q_tm1),
        "target_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(critic_grads),
        "actor_loss": actor_loss,
        "bc_loss": bc_loss,
        "q_pi": q_pi,
    }
    return state, metrics


def act(state: State, obs: jax.Array, cfg: Config, spec: EnvSpec) -> jax.Array:
    """Best of `eval_samples` EMA-policy actions by min_j Q'_j, fixed noise: (..., D) -> (..., A).

    The noise is fixed (key 0), so `act` is a deterministic function of state and obs.
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    critic = _nets(cfg, act_dim)[1]
    lead, n = obs.shape[:-1], cfg.eval_samples
    flat = obs.reshape(-1, obs.shape[-1])
    rep = jnp.repeat(flat, n, axis=0)  # (M·n, D)
    a = max_action * sample(cfg, act_dim, state.ema_actor_params, rep, jax.random.PRNGKey(0),
                            cfg.sampler)
    q = jnp.min(critic.apply(state.target_critic_params, rep, a), axis=0).reshape(-1, n)
    best = jnp.argmax(q, axis=1)
    a = a.reshape(-1, n, act_dim)[jnp.arange(flat.shape[0]), best]
    return a.reshape(lead + (act_dim,))


# The contract's defaults: norms of the critic heads and the actor; Q head `head` for SEEM.
param_metrics = common.param_metrics
critic_q = common.critic_q
