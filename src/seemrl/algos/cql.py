"""CQL (Kumar, Zhou, Tucker & Levine, 2020, "Conservative Q-Learning for Offline RL") on SAC.

Reads top to bottom: config, the conservative penalty, state, init, update, act. CQL(H) as
in the authors' code and CORL: twin critics trained on the SAC TD loss plus, per head,

    α_cql · mean_i [ logsumexp_k (Q(s_i, a_k) − log μ(a_k)) − Q(s_i, a_i) ]

where the a_k are N uniform actions (density (2·max_a)^−d), N policy actions at s and N policy
actions at s' (each minus its detached log-probability: the importance-weighted estimate of
log ∫ exp Q). α_cql is fixed (`cql_alpha`), or with `lagrange` scaled by a learned α' ≥ 0 that
holds the gap (penalty before α) at `target_gap`. The actor is a tanh-Gaussian trained on
α·log π − min_j Q_j (SAC), with the temperature α tuned to entropy −act_dim. All three parts
update from the same pre-step parameters, as in CORL; targets move by Polyak τ every step.

Defaults (CORL's locomotion settings for the paper's recipe): 256×3 networks, critic lr 3e-4,
actor lr 3e-5 (the paper's Appendix F), N = 10, α_cql = 10, no entropy term in the backup.

CORL's networks by default: orthogonal critics and a small actor output layer
(`init_scheme: corl`), and the actor's log-std = m·raw + o with learned scalars starting at
m = 1, o = −1, clipped to [−20, 2] (`actor_log_std: affine`); `init_scheme: torch` and
`actor_log_std: squash` (smoothly into [−5, 2], as seemrl's SAC) give the networks of runs made
before seemrl had these options. Deviation: LayerNorm switches for critic and actor (the SEEM
paper's).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from seemrl.algos import common
from seemrl.algos.common import AgentState, NetworkOptions, make_optimizer, polyak
from seemrl.config import ConfigError
from seemrl.networks import LOG_STD_MODES, Critic, GaussianActor, sample_action
from seemrl.types import Batch, EnvSpec

NAME = "cql"


@dataclasses.dataclass(frozen=True)
class Config(NetworkOptions):
    """CQL hyper-parameters (defaults: CORL's D4RL locomotion settings)."""

    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of each critic head."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the actor."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Target-critic Polyak rate (every step)."""
    cql_alpha: float = 10.0
    """Weight α_cql of the conservative penalty (5 in the paper's Gym runs, 10 in CORL's)."""
    cql_n_actions: int = 10
    """N: sampled actions per source (uniform, π(s), π(s')) in the logsumexp."""
    cql_temp: float = 1.0
    """Temperature of the logsumexp."""
    lagrange: bool = False
    """Tune a multiplier α' on the penalty so that its gap stays at target_gap (AntMaze)."""
    target_gap: float = 0.8
    """Target of the penalty gap when lagrange is on."""
    cql_clip_diff_min: float | None = None
    """Lower clip of the per-sample gap (CORL uses -200 on AntMaze; none: no clip)."""
    max_target_backup: bool = False
    """Back up the max over N policy actions at s' instead of one sample (AntMaze)."""
    backup_entropy: bool = False
    """Subtract α·log π(a'|s') in the TD target (off in the authors' and CORL's runs)."""
    bc_steps: int = 0
    """Steps of behaviour cloning (log-likelihood of the data) before the SAC actor loss."""
    target_entropy: float | None = None
    """SAC entropy target (default −act_dim)."""
    optimizer: str = "adam"
    """Optimizer of the critic: adam | sgd (actor and temperatures always use Adam)."""
    lr_actor: float = 3e-5
    """Actor (and SAC temperature) learning rate."""
    lr_critic: float = 3e-4
    """Critic (and α') learning rate."""
    num_critics: int = 2
    """Number of critic heads (targets and actor take their minimum)."""
    init_scheme: str = "corl"
    """Initialisation (CORL's; see NetworkOptions)."""
    actor_log_std: str = "affine"
    """The actor's log-std: affine (CORL's learned m·raw + o, clipped to [−20, 2]) | squash
    (smoothly into [−5, 2], as seemrl's SAC)."""

    def __post_init__(self):
        super().__post_init__()
        if self.actor_log_std not in LOG_STD_MODES:
            raise ConfigError(f"unknown actor_log_std '{self.actor_log_std}' (choose from "
                              f"{', '.join(LOG_STD_MODES)})")
        make_optimizer(self.optimizer, self.lr_critic)
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("gamma must be in [0, 1] and tau in (0, 1]")
        if self.cql_n_actions < 1 or self.num_critics < 1 or self.bc_steps < 0:
            raise ValueError("cql_n_actions and num_critics must be >= 1, bc_steps >= 0")
        if self.cql_alpha < 0 or self.cql_temp <= 0:
            raise ValueError("cql_alpha must be >= 0 and cql_temp > 0")


def cql_penalty(q_rand, q_pi_s, logp_s, q_pi_next, logp_next, q_data, log_uniform: float,
                temp: float = 1.0, clip_min: float | None = None) -> jnp.ndarray:
    """Importance-sampled CQL(H) gap, one number per head.

    Args:
      q_rand: (H, B, N) Q(s, a) at uniform actions, whose log-density is log_uniform.
      q_pi_s, q_pi_next: (H, B, N) Q(s, a) at actions drawn from π(·|s) and π(·|s').
      logp_s, logp_next: (B, N) log-densities of those actions (treated as constants).
      q_data: (H, B) Q(s, a) at the dataset actions.
    Returns:
      (H,) mean_i [temp · logsumexp_k((Q_k − log μ_k) / temp) − Q(s_i, a_i)].
    """
    logp_s, logp_next = jax.lax.stop_gradient(logp_s), jax.lax.stop_gradient(logp_next)
    cat = jnp.concatenate([q_rand - log_uniform, q_pi_next - logp_next, q_pi_s - logp_s],
                          axis=-1)  # (H, B, 3N)
    ood = temp * jax.nn.logsumexp(cat / temp, axis=-1)  # (H, B)
    diff = ood - q_data
    if clip_min is not None:
        diff = jnp.maximum(diff, clip_min)
    return jnp.mean(diff, axis=-1)


def tanh_gaussian_log_prob(mean, log_std, a) -> jnp.ndarray:
    """log π(a|s) of a tanh-Gaussian at a given action a in (-1, 1): (B, A) -> (B,)."""
    a = jnp.clip(a, -1.0 + 1e-6, 1.0 - 1e-6)
    u = jnp.arctanh(a)
    z = (u - mean) * jnp.exp(-log_std)
    logp = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)
    return logp - jnp.sum(jnp.log(1 - a**2 + 1e-6), -1)  # the same 1e-6 as sample_action


@flax.struct.dataclass
class State(AgentState):
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array  # SAC temperature, log
    log_alpha_prime: jax.Array  # CQL Lagrange multiplier, log (unused unless lagrange)
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    alpha_prime_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key, so checkpoints are plain arrays


@functools.cache
def _nets(cfg: Config, act_dim: int):
    actor = GaussianActor(cfg.actor_mlp(), act_dim, cfg.actor_log_std)
    critic = Critic(cfg.critic_mlp(), cfg.num_critics)
    return (actor, critic, optax.adam(cfg.lr_actor), make_optimizer(cfg.optimizer, cfg.lr_critic),
            optax.adam(cfg.lr_actor), optax.adam(cfg.lr_critic))


def init(key: jax.Array, spec: EnvSpec, cfg: Config) -> State:
    obs_dim, act_dim = spec.obs_dim, spec.act_dim
    actor, critic, actor_opt, critic_opt, alpha_opt, prime_opt = _nets(cfg, act_dim)
    k_actor, k_critic, k_state = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, act)
    zero = jnp.zeros(())
    return State(actor_params=actor_params, critic_params=critic_params,
                 target_critic_params=critic_params, log_alpha=zero, log_alpha_prime=zero,
                 actor_opt_state=actor_opt.init(actor_params),
                 critic_opt_state=critic_opt.init(critic_params),
                 alpha_opt_state=alpha_opt.init(zero), alpha_prime_opt_state=prime_opt.init(zero),
                 key=k_state)


def _sample(actor, params, obs, key, max_action: float, n: int | None = None):
    """Tanh-Gaussian actions in env units and their log-density there.

    obs (B, D) -> (a (B, A), logp (B,)), or with n: (a (B, n, A), logp (B, n)).
    """
    mean, log_std = actor.apply(params, obs)
    if n is not None:
        mean, log_std = (jnp.repeat(x[:, None], n, axis=1) for x in (mean, log_std))
    a, logp = sample_action(mean, log_std, key)
    return max_action * a, logp - mean.shape[-1] * jnp.log(max_action)


def update(state: State, batch: Batch, step: jax.Array, cfg: Config,
           spec: EnvSpec) -> tuple[State, dict[str, jax.Array]]:
    """One SAC temperature, actor, critic (+ α') and target step, all from the same params.

    The critic sees actions in env units, [-max_action, max_action], as SEEM probes it.

    Args:
      state: one seed's state (no leading seed axis).
      batch: Batch of B transitions with normalised observations.
      step: global step; the actor clones the data while step < bc_steps.
    Returns:
      (new state, scalar metrics).
    """
    act_dim, max_action = spec.act_dim, spec.max_action
    actor, critic, actor_opt, critic_opt, alpha_opt, prime_opt = _nets(cfg, act_dim)
    key, k_pi, k_next, k_rand, k_cur, k_cnext = jax.random.split(state.key, 6)
    obs, obs_t = batch.obs_tm1, batch.obs_t
    n, bsz = cfg.cql_n_actions, obs.shape[0]
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha)

    # SAC temperature and actor (BC on the data's log-likelihood for the first bc_steps).
    def actor_loss_fn(params):
        mean, log_std = actor.apply(params, obs)
        a_pi, logp = sample_action(mean, log_std, k_pi)
        q_pi = jnp.min(critic.apply(state.critic_params, obs, max_action * a_pi), axis=0)
        bc_logp = tanh_gaussian_log_prob(mean, log_std, batch.a_tm1 / max_action)
        gain = jnp.where(step < cfg.bc_steps, bc_logp, q_pi)
        return jnp.mean(alpha * logp - gain), logp

    (actor_loss, logp), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
        state.actor_params)
    updates, actor_opt_state = actor_opt.update(grads, state.actor_opt_state)
    actor_params = optax.apply_updates(state.actor_params, updates)
    entropy_gap = jax.lax.stop_gradient(logp + target_entropy)
    alpha_grad = jax.grad(lambda la: -jnp.mean(la * entropy_gap))(state.log_alpha)
    updates, alpha_opt_state = alpha_opt.update(alpha_grad, state.alpha_opt_state)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    # TD target from the target critics at a' ~ π(s') (optionally the max over N samples).
    if cfg.max_target_backup:
        a_t, logp_t = _sample(actor, state.actor_params, obs_t, k_next, max_action, n)
        obs_rep = jnp.broadcast_to(obs_t[:, None], a_t.shape[:2] + obs_t.shape[-1:])
        q_t = jnp.min(critic.apply(state.target_critic_params, obs_rep, a_t), axis=0)
        best = jnp.argmax(q_t, axis=1)
        q_t = jnp.take_along_axis(q_t, best[:, None], 1)[:, 0]
        logp_t = jnp.take_along_axis(logp_t, best[:, None], 1)[:, 0]
    else:
        a_t, logp_t = _sample(actor, state.actor_params, obs_t, k_next, max_action)
        q_t = jnp.min(critic.apply(state.target_critic_params, obs_t, a_t), axis=0)
    if cfg.backup_entropy:
        q_t = q_t - alpha * logp_t
    target = jax.lax.stop_gradient(batch.r_t + cfg.gamma * batch.discount_t * q_t)

    # Actions for the penalty: uniform, π(·|s) and π(·|s'), all evaluated at s.
    a_rand = jax.random.uniform(k_rand, (bsz, n, act_dim), minval=-max_action,
                                maxval=max_action)
    log_uniform = -act_dim * jnp.log(2.0 * max_action)
    a_cur, logp_cur = _sample(actor, state.actor_params, obs, k_cur, max_action, n)
    a_cnext, logp_cnext = _sample(actor, state.actor_params, obs_t, k_cnext, max_action, n)
    alpha_prime = jnp.clip(jnp.exp(state.log_alpha_prime), 0.0, 1e6)

    def critic_loss_fn(params):
        q_tm1 = critic.apply(params, obs, batch.a_tm1)  # (H, B)
        a_ood = jnp.concatenate([a_rand, a_cur, a_cnext], 1)  # (B, 3N, A)
        obs_ood = jnp.broadcast_to(obs[:, None], a_ood.shape[:2] + obs.shape[-1:])
        q_ood = critic.apply(params, obs_ood, a_ood)
        q_rand, q_cur, q_cnext = jnp.split(q_ood, 3, axis=-1)  # each (H, B, N)
        gap = cql_penalty(q_rand, q_cur, logp_cur, q_cnext, logp_cnext, q_tm1, log_uniform,
                          cfg.cql_temp, cfg.cql_clip_diff_min)  # (H,)
        if cfg.lagrange:
            penalty = jax.lax.stop_gradient(alpha_prime) * cfg.cql_alpha * (gap - cfg.target_gap)
        else:
            penalty = cfg.cql_alpha * gap
        td = jnp.mean(jnp.square(q_tm1 - target[None]), axis=1)  # (H,)
        return jnp.sum(td + penalty), (q_tm1, jnp.sum(td), gap)

    (critic_loss, (q_tm1, td_loss, gap)), grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True)(state.critic_params)
    updates, critic_opt_state = critic_opt.update(grads, state.critic_opt_state,
                                                  state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    # α' ascends the penalty: it grows while the gap is above target_gap (CORL's sign).
    gap_c = jax.lax.stop_gradient(gap)
    prime_grad = jax.grad(lambda lp: -0.5 * jnp.sum(
        jnp.clip(jnp.exp(lp), 0.0, 1e6) * cfg.cql_alpha * (gap_c - cfg.target_gap)))(
        state.log_alpha_prime)
    updates, prime_opt_state = prime_opt.update(prime_grad, state.alpha_prime_opt_state)
    log_alpha_prime = jnp.where(cfg.lagrange, optax.apply_updates(state.log_alpha_prime,
                                                                  updates), state.log_alpha_prime)

    state = state.replace(
        actor_params=actor_params, critic_params=critic_params,
        target_critic_params=polyak(state.target_critic_params, critic_params, cfg.tau),
        log_alpha=log_alpha, log_alpha_prime=log_alpha_prime, actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state, alpha_opt_state=alpha_opt_state,
        alpha_prime_opt_state=prime_opt_state, key=key)
    metrics = {
        "critic_loss": critic_loss,
        "td_loss": td_loss,
        "q_mean": jnp.mean(q_tm1),
        "target_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(grads),
        "cql_gap": jnp.mean(gap),
        "alpha_prime": alpha_prime if cfg.lagrange else jnp.full((), jnp.nan),
        "actor_loss": actor_loss,
        "alpha": alpha,
        "entropy": -jnp.mean(logp),
    }
    return state, metrics


def act(state: State, obs: jax.Array, cfg: Config, spec: EnvSpec) -> jax.Array:
    """Deterministic action max_action·tanh(mean) for normalised observations (..., obs_dim)."""
    act_dim, max_action = spec.act_dim, spec.max_action
    actor = _nets(cfg, act_dim)[0]
    return max_action * jnp.tanh(actor.apply(state.actor_params, obs)[0])


# The contract's defaults: norms of the critic heads and the actor; Q head `head` for SEEM.
param_metrics = common.param_metrics
critic_q = common.critic_q
