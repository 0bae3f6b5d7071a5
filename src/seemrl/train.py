"""The one training driver: every algorithm, every seed, one process.

Data flow: dataset → subset → reward transform → state normalisation → device arrays; then
repeated jitted chunks, each a `lax.scan` over `log_every` updates with the seeds vmapped side
by side, sampling minibatches from the on-device dataset inside the scan. Between chunks
(the edges): divergence marking, logging, evaluation, SEEM, checkpoints.

Run folder layout (`out`):
  config.json        resolved config (train + algo), reusable with --config, and the
                     dataset's fingerprint, which a resume checks
  normalizer.json    the state normalisation used in training and evaluation
  metrics.jsonl      one object per seed per log point
  status.json        per seed: diverged_at, final/best score, last step
  checkpoint.msgpack all seeds' state at the last checkpoint (+ run metadata), atomic
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
import signal
import threading
import time
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seemrl import algos, checkpoint, evaluation
from seemrl import config as config_lib
from seemrl import logging as log_lib
from seemrl.config import ConfigError
from seemrl.diagnostics.schedule import SeemSchedule
from seemrl.diagnostics.verdict import OnlineVerdict, VerdictConfig
from seemrl.types import Batch, DataError, Dataset, RunError, Terminated, WriteError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What to train on and how the run is driven (the algorithm's own options are separate)."""

    dataset: str = ""
    """Dataset: a D4RL-format .hdf5 file, an .npz, a local Minari id or path, or a built-in name."""
    env: str | None = None
    """Gymnasium env for evaluation (default: the one the dataset names)."""
    algo: str = "td3bc"
    """Algorithm."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds, trained side by side in one process."""
    steps: int = 100_000
    """Gradient steps per seed."""
    batch_size: int = 256
    """Minibatch size."""
    fraction: float = 1.0
    """Fraction of the dataset's transitions used, in (0, 1] (e.g. 0.01 for 1 %)."""
    subset_mode: str = "transitions"
    """How the fraction is drawn: random 'transitions' or whole 'trajectories'."""
    data_seed: int = 0
    """Seed of the random subset; shared by all training seeds so they see the same data."""
    normalize_states: bool = True
    """Z-normalise states with the training subset's mean and std (+1e-3), as TD3+BC does."""
    reward_normalization: str = "none"
    """'returns': first multiply rewards by 1000 / (max − min episode return) of the whole
    dataset, IQL's rule for D4RL locomotion (the iql- and cql-locomotion presets); 'none'."""
    reward_scale: float = 1.0
    """Rewards are transformed to r·scale + bias."""
    reward_bias: float = 0.0
    """Rewards are transformed to r·scale + bias."""
    log_every: int = 1000
    """Log metrics every this many steps (also the longest jitted chunk). Records are also
    written at every SEEM measurement, which the SEEM schedule places, not this."""
    eval_every: int = 10_000
    """Evaluate every this many steps (0: only at the end), at the first log point at or
    after each multiple."""
    eval_episodes: int = 10
    """Episodes per evaluation and seed (0 disables evaluation)."""
    checkpoint_every: int = 50_000
    """Checkpoint every this many steps (and always at the end; 0: only at the end)."""
    seem_every: int = 10_000
    """Largest spacing of SEEM measurements (0: SEEM off). The authors measured every 10 000
    steps, which sees only the aftermath of the divergences that begin early."""
    seem_first: int = 50
    """Spacing of SEEM measurements at the start of training: every `seem_first` steps to
    step 40·seem_first, then 20 per doubling of the step up to `seem_every`
    (`diagnostics.schedule`); 0: every `seem_every` steps only. Overhead at the defaults:
    benchmarks/seem_cost.py."""
    seem_probe: int = 256
    """Transitions in the fixed SEEM probe batch, drawn once per seed (all of them when the
    data is smaller). The authors used 2 560: 0.2 s a measurement on a 2-core CPU with the exact
    MLP path (~1.5 % of training time every 10 000 steps), but ~6 s with the generic path that
    BatchNorm and spectral-norm critics need (docs/BENCHMARKS.md), so the default is smaller."""
    q_bound: float = 1e8
    """A seed whose |mean Q| exceeds this (or turns NaN/Inf) is stopped at its last finite
    state (`stopped_at`). It counts as diverged (`diverged_at`) as soon as |mean Q| passes
    the data's ceiling max|r|/(1 − γ), usually long before."""
    clip_actions: bool = False
    """Clip the dataset's actions into the evaluation env's action space; without it a dataset
    with actions outside that space is refused (they would poison TD targets and BC terms)."""
    seed_groups: int = 0
    """Seeds are split into this many groups, each vmapped, run concurrently in threads (0: one
    per CPU core on a CPU, 1 on an accelerator). One XLA CPU computation of this size keeps
    about one core busy, so on 2 cores two groups train ~1.7x more seed-updates/s than one
    (benchmarks/throughput.py). Saved resolved, so a resumed run reproduces exactly."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs seemrl[tensorboard])."""
    wandb_project: str | None = None
    """Also log to this W&B project (needs seemrl[wandb])."""

    def __post_init__(self):
        if not self.dataset:
            raise ConfigError("no dataset given (--dataset FILE_OR_NAME)")
        if not (0.0 < self.fraction <= 1.0) or math.isnan(self.fraction):
            raise ConfigError(f"option 'fraction' must be in (0, 1], got {self.fraction}")
        if self.subset_mode not in ("transitions", "trajectories"):
            raise ConfigError("option 'subset_mode' must be 'transitions' or 'trajectories'")
        if self.reward_normalization not in ("none", "returns"):
            raise ConfigError("option 'reward_normalization' must be 'none' or 'returns', got "
                              f"{self.reward_normalization!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"option 'seeds' needs distinct seeds, got {list(self.seeds)}")
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"option '{name}' must be positive")
        for name in ("eval_every", "checkpoint_every", "seem_every", "seem_first"):
            if getattr(self, name) < 0:
                raise ConfigError(f"option '{name}' must be >= 0 (0 turns it off)")
        if self.eval_episodes < 0 or self.seem_probe < 2:
            raise ConfigError("eval_episodes must be >= 0 and seem_probe >= 2")
        if not self.q_bound > 0:
            raise ConfigError("option 'q_bound' must be positive")
        if self.seed_groups < 0:
            raise ConfigError("option 'seed_groups' must be >= 0 (0: automatic)")


RUN_INFO_KEYS = ("env_id", "dataset_size", "q_ceiling", "dataset_metadata", "dataset_fingerprint")
"""Facts a saved config.json records beside its `train` and `algo` sections (not options)."""

RESUME_OVERRIDABLE = ("steps", "eval_every", "eval_episodes", "checkpoint_every", "tensorboard",
                      "wandb_project")
"""Options a stopped run may be resumed with another value of (extending it, logging more or
less); any other change would make the resumed run a different run."""


@dataclasses.dataclass
class Prepared:
    """A dataset made ready for training: device arrays and everything evaluation needs."""

    dataset: Dataset
    data: Batch  # device arrays, normalised observations
    normalizer: Any
    env_id: str | None
    obs_dim: int
    act_dim: int
    max_action: float
    ref_scores: tuple[float, float] | None
    fingerprint: dict[str, Any] | None = None  # of the dataset as loaded (Dataset.fingerprint)


def prepare(cfg: TrainConfig, normalizer=None) -> Prepared:
    """Load, subset, transform and check the data against the evaluation env.

    `normalizer`: use this state normaliser instead of fitting one (a resumed run's own).
    """
    from seemrl.data import load_dataset
    from seemrl.data.normalize import Normalizer, return_range_scale, scale_rewards
    from seemrl.data.subset import subset

    dataset = load_dataset(cfg.dataset)
    fingerprint = dataset.fingerprint()
    env_id = cfg.env or evaluation.infer_env_id(dataset.metadata)
    dims = None if env_id is None else evaluation.env_dims(env_id)
    if dims is not None and dims[1] == dataset.act_dim:  # before any transform: file rows
        dataset = _check_actions(dataset, cfg, env_id, dims[2])
    dataset = dataset.with_next_actions()
    if cfg.reward_normalization == "returns":
        # Measured on the whole dataset, before any subset cuts its episodes apart.
        dataset = scale_rewards(dataset, return_range_scale(dataset))
    if cfg.fraction < 1.0:
        dataset = subset(dataset, cfg.fraction, cfg.data_seed, mode=cfg.subset_mode)
    if cfg.reward_scale != 1.0 or cfg.reward_bias != 0.0:
        dataset = scale_rewards(dataset, cfg.reward_scale, cfg.reward_bias)
    if normalizer is None and cfg.normalize_states:
        normalizer = Normalizer.fit(dataset.observations)
    elif normalizer is None:
        normalizer = Normalizer.identity(dataset.obs_dim)

    max_action, ref = float(np.max(np.abs(dataset.actions))), None
    if env_id is None and cfg.eval_episodes > 0:
        raise ConfigError(f"dataset '{cfg.dataset}' names no environment: pass --env ENV_ID "
                          "(or --eval-episodes 0 to train without evaluation)")
    if dims is not None:
        obs_dim, act_dim, max_action = dims
        if (obs_dim, act_dim) != (dataset.obs_dim, dataset.act_dim):
            raise DataError(f"dataset '{cfg.dataset}' has observation/action sizes "
                            f"{dataset.obs_dim}/{dataset.act_dim} but env '{env_id}' has "
                            f"{obs_dim}/{act_dim}")
        if cfg.eval_episodes > 0:
            ref = evaluation.reference_scores(env_id, dataset.metadata)

    data = Batch(obs_tm1=jnp.asarray(normalizer.normalize(dataset.observations), jnp.float32),
                 a_tm1=jnp.asarray(dataset.actions, jnp.float32),
                 r_t=jnp.asarray(dataset.rewards, jnp.float32),
                 obs_t=jnp.asarray(normalizer.normalize(dataset.next_observations), jnp.float32),
                 discount_t=jnp.asarray(1.0 - dataset.terminals, jnp.float32),
                 a_t=jnp.asarray(dataset.next_actions, jnp.float32))
    return Prepared(dataset, data, normalizer, env_id, dataset.obs_dim, dataset.act_dim,
                    max_action, ref, fingerprint)


def _check_actions(dataset: Dataset, cfg: TrainConfig, env_id: str,
                   max_action: float) -> Dataset:
    """The dataset, its actions clipped into the env's action space when cfg.clip_actions;
    DataError naming a row and value outside it otherwise."""
    outside = dataset.outside_actions(max_action)
    if outside is None:
        return dataset
    if cfg.clip_actions:
        return dataclasses.replace(dataset, actions=np.clip(dataset.actions, -max_action,
                                                            max_action))
    rows, row, value = outside
    raise DataError(f"dataset '{cfg.dataset}': action {value:g} at row {row} is outside "
                    f"{env_id}'s action space [{-max_action:g}, {max_action:g}] ({rows:,} "
                    f"row{'s' * (rows > 1)} in all): fix the data, or pass --clip-actions to "
                    "clip them into it")


def init_states(algo, algo_cfg, seeds, obs_dim: int, act_dim: int, max_action: float):
    """Stacked states, one per seed along axis 0; seed s always starts from PRNGKey(s)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.vmap(lambda k: algo.init(k, obs_dim, act_dim, max_action, algo_cfg))(keys)


def q_ceiling(rewards: np.ndarray, gamma: float) -> float:
    """max|r| / (1 − γ): the largest |discounted return| possible with these rewards, so a
    bound no correct critic's |Q| can pass."""
    return float(np.max(np.abs(rewards)) / (1.0 - gamma))


def resolve_seed_groups(cfg: TrainConfig) -> int:
    """cfg.seed_groups, or for 0 one group per CPU core (1 on an accelerator), ≤ #seeds."""
    groups = cfg.seed_groups or (os.cpu_count() or 1 if jax.default_backend() == "cpu" else 1)
    return max(1, min(groups, len(cfg.seeds)))


def _over_seeds(fn):
    """`jax.vmap(fn)` over the leading seed axis of the first argument (the others shared).

    A lone seed runs unbatched and gets its axis back after: on XLA CPU a size-1 axis sends
    every fused multiply-reduce to a slow YNNPACK path (~25x slower than the same reduction
    without it), which made LayerNorm critics 2.3x slower than plain ones at one seed, while
    with the axis gone they are ~1.25x slower (benchmarks/throughput.py).
    """

    def mapped(states, *shared):
        if jax.tree.leaves(states)[0].shape[0] == 1:
            out = fn(jax.tree.map(lambda x: x[0], states), *shared)
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(states, *shared)

    return mapped


def make_chunk(algo, algo_cfg, act_dim: int, max_action: float, batch_size: int):
    """A jitted `chunk(states, data, step0, active, num_steps, run_steps=None)
    -> (states, metrics, params)`.

    With `run_steps` (a traced int ≤ num_steps) only the first `run_steps` updates happen and
    the other iterations pass the state through (their metrics are NaN): one compiled chunk
    serves every segment length, so SEEM measurements can cut a log chunk anywhere without a
    compilation per length.

    Seeds whose `active` flag is False keep their state unchanged (a diverged seed stays at
    its last finite state): they are updated with the others and their chunk is discarded at
    its end, so their metrics describe updates that were thrown away. Metrics come back per
    step and seed: (num_steps, num_seeds).
    """

    def seed_step(state, data: Batch, step):
        key, sample_key = jax.random.split(state.key)
        idx = jax.random.randint(sample_key, (batch_size,), 0, data.r_t.shape[0])
        batch = jax.tree.map(lambda x: x[idx], data)
        return algo.update(state.replace(key=key), batch, step, algo_cfg, act_dim, max_action)

    @functools.partial(jax.jit, static_argnames="num_steps")
    def chunk(states, data, step0, active, num_steps: int, run_steps=None):
        update = lambda s, t: _over_seeds(seed_step)(s, data, t)
        if run_steps is None:
            body = lambda s, i: update(s, step0 + i)
        else:
            shapes = jax.eval_shape(update, states, step0)[1]
            skip = lambda s, t: (s, jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype),
                                                 shapes))
            body = lambda s, i: jax.lax.cond(i < run_steps, update, skip, s, step0 + i)
        new, metrics = jax.lax.scan(body, states, jnp.arange(num_steps))
        # Once per chunk, not per step: selecting every state array at every step cost ~10 %
        # of the updates' time at 5 seeds.
        keep = lambda n, o: jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
        states = jax.tree.map(keep, new, states)
        return states, metrics, jax.vmap(lambda s: algo.param_metrics(s, algo_cfg))(states)

    return chunk


def make_policy(algo, algo_cfg, normalizer, act_dim: int, max_action: float):
    """Raw observations (S, E, obs_dim) + stacked states -> actions (S, E, act_dim)."""
    mean, std = jnp.asarray(normalizer.mean), jnp.asarray(normalizer.std)

    @jax.jit
    def policy(states, obs):
        obs = (obs - mean) / std  # the same normalisation as training
        return jax.vmap(lambda s, o: algo.act(s, o, algo_cfg, act_dim, max_action))(states, obs)

    return policy


def _crossed(step: int, num_steps: int, every: int) -> bool:
    """True at the first log point at or after each multiple of `every` (0: never)."""
    return every > 0 and step // every > (step - num_steps) // every


def _first_bad_step(metrics: dict[str, np.ndarray], bound: float) -> np.ndarray:
    """(S,) index of the first step whose Q is non-finite or beyond the bound; -1 if none."""
    q = metrics["q_mean"]
    bad = ~np.isfinite(q) | (np.abs(q) > bound) | ~np.isfinite(metrics["critic_loss"])
    return np.where(bad.any(axis=0), bad.argmax(axis=0), -1)


def _chunk_records(step, seeds, metrics, params, first_bad, steps_per_sec) -> list[dict]:
    records = []
    for j, seed in enumerate(seeds):
        stop = first_bad[j] if first_bad[j] >= 0 else None
        rec: dict[str, Any] = {"step": step, "seed": int(seed)}
        with np.errstate(all="ignore"):
            for k, v in metrics.items():
                col = v[:stop, j]
                col = col[np.isfinite(col)]
                rec[f"train/{k}"] = float(col.mean()) if col.size else float("nan")
        for k, v in params.items():
            rec[f"train/{k}"] = float(v[j])
        rec["time/steps_per_sec"] = steps_per_sec
        records.append(rec)
    return records


class Trainer:
    """The stateful shell around the pure chunk function: one run folder, all its seeds."""

    def __init__(self, cfg: TrainConfig, algo_cfg, out: str | pathlib.Path,
                 prepared: Prepared | None = None):
        # Saved resolved (config.json), so a resumed run splits its seeds the same way.
        cfg = dataclasses.replace(cfg, seed_groups=resolve_seed_groups(cfg))
        self.cfg, self.algo_cfg, self.out = cfg, algo_cfg, pathlib.Path(out)
        self.algo = algos.get(cfg.algo)
        self.p = prepared or prepare(cfg)
        p = self.p
        self.seeds = list(cfg.seeds)
        self.states = init_states(self.algo, algo_cfg, self.seeds, p.obs_dim, p.act_dim,
                                  p.max_action)
        self.chunk = make_chunk(self.algo, algo_cfg, p.act_dim, p.max_action, cfg.batch_size)
        self.policy = make_policy(self.algo, algo_cfg, p.normalizer, p.act_dim, p.max_action)
        self._compiled: dict[tuple[int, int], Any] = {}
        bounds = np.linspace(0, len(self.seeds), cfg.seed_groups + 1).round()
        self.groups = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self.step = 0
        self.active = np.ones(len(self.seeds), bool)
        self.diverged_at: list[int | None] = [None] * len(self.seeds)  # Q passed the ceiling
        self.stopped_at: list[int | None] = [None] * len(self.seeds)  # Q past q_bound / NaN
        self.scores: dict[str, list] = {"final": [None] * len(self.seeds),
                                        "best": [None] * len(self.seeds)}
        # The online verdict and reports use it as the explosion threshold of this run.
        gamma = getattr(algo_cfg, "gamma", None)
        self.q_ceiling = (q_ceiling(p.dataset.rewards, gamma)
                          if gamma is not None and gamma < 1.0 else None)
        self.verdicts = [OnlineVerdict(VerdictConfig(), self.q_ceiling) for _ in self.seeds]
        self.schedule = SeemSchedule(cfg.seem_first, cfg.seem_every)
        self.seem = None
        if self.schedule.enabled:
            from seemrl.diagnostics.tracking import SeemTracker

            self.seem = SeemTracker(self.algo, algo_cfg, p, cfg, self.seeds, self.states)

    # -- run folder -------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        info = {"env_id": self.p.env_id, "dataset_size": len(self.p.dataset),
                "q_ceiling": self.q_ceiling,
                "dataset_metadata": _jsonable(self.p.dataset.metadata),
                "dataset_fingerprint": self.p.fingerprint}
        assert set(info) == set(RUN_INFO_KEYS)
        return {"train": config_lib.to_dict(self.cfg), "algo": config_lib.to_dict(self.algo_cfg),
                **info}

    def write_run_files(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError.of(self.out, e) from e
        checkpoint.atomic_write_json(self.out / "config.json", self.config_dict())
        checkpoint.atomic_write_json(self.out / "normalizer.json", self.p.normalizer.to_dict())

    def status(self) -> dict[str, Any]:
        return {"step": self.step, "steps": self.cfg.steps, "seeds": {
            str(s): {"predicted_at": self.verdicts[j].result.step,
                     "predicted_reason": self.verdicts[j].result.reason or None,
                     "diverged_at": self.diverged_at[j], "stopped_at": self.stopped_at[j],
                     "final_score": self.scores["final"][j],
                     "best_score": self.scores["best"][j], "active": bool(self.active[j])}
            for j, s in enumerate(self.seeds)}}

    def save(self) -> None:
        meta = {"step": self.step, "active": self.active.tolist(),
                "diverged_at": self.diverged_at, "stopped_at": self.stopped_at,
                "scores": self.scores}
        checkpoint.save(self.out, {"states": self.states,
                                   "seem": self.seem.memory if self.seem else None}, meta)
        checkpoint.atomic_write_json(self.out / "status.json", self.status())

    def restore(self, other_data: bool = False) -> None:
        """Continue from the checkpoint. `other_data`: the dataset may differ from the one the
        run was trained on (else RunError)."""
        if not other_data:
            self._check_same_data()
        target = {"states": self.states, "seem": self.seem.memory if self.seem else None}
        restored, meta = checkpoint.load(self.out, target)
        if int(meta["step"]) > self.cfg.steps:
            raise ConfigError(f"--steps {self.cfg.steps} is fewer than the {meta['step']} "
                              f"steps run {self.out} has done already")
        self.states = jax.tree.map(jnp.asarray, restored["states"])
        self.step, self.active = int(meta["step"]), np.asarray(meta["active"], bool)
        self.diverged_at, self.scores = meta["diverged_at"], meta["scores"]
        # Checkpoints from before `stopped_at` marked only the stop, under diverged_at.
        self.stopped_at = meta.get("stopped_at", [None if a else d for a, d in
                                                  zip(meta["active"], meta["diverged_at"],
                                                      strict=True)])
        if self.seem:
            self.seem.memory = jax.tree.map(jnp.asarray, restored["seem"])
        log_lib.truncate_jsonl(self.out / "metrics.jsonl", self.step)
        # The verdicts are a function of the logged series: replay them.
        by_seed: dict[int, list] = {s: [] for s in self.seeds}
        for rec in log_lib.read_jsonl(self.out / "metrics.jsonl"):
            by_seed.get(rec.get("seed"), []).append(rec)
        for j, (verdict, seed) in enumerate(zip(self.verdicts, self.seeds, strict=True)):
            for rec in by_seed[seed]:
                if self.diverged_at[j] is not None and rec["step"] >= self.diverged_at[j]:
                    verdict.diverged()
                if "seem/normalized" in rec:
                    verdict.update(rec["step"], rec)
            if self.diverged_at[j] is not None:
                verdict.diverged()

    def _check_same_data(self) -> None:
        """RunError when config.json records a dataset other than the one loaded now (run
        folders from before fingerprints were recorded are taken on trust)."""
        try:
            saved = json.loads((self.out / "config.json").read_text()).get("dataset_fingerprint")
        except (OSError, ValueError, AttributeError):
            saved = None
        now = self.p.fingerprint
        if not isinstance(saved, dict) or now is None or saved == now:
            return
        was, now = (f"{f.get('transitions')} transitions, sha256 {str(f.get('sha256'))[:12]}"
                    for f in (saved, now))
        raise RunError(
            f"dataset '{self.cfg.dataset}' is not the one run {self.out} was trained on "
            f"(then {was}; now {now}): resume it with that data, or pass --accept-other-data "
            "to go on with this one (keeping the run's normaliser)")

    # -- the loop ---------------------------------------------------------------------------
    def evaluate(self) -> list[dict[str, Any]]:
        episodes = evaluation.evaluate(lambda obs: self.policy(self.states, obs),
                                       self.p.env_id, self.seeds, self.cfg.eval_episodes)
        returns = episodes.returns
        scores = evaluation.normalized_score(returns, self.p.ref_scores)
        records = []
        for j, seed in enumerate(self.seeds):
            score = float(scores[j].mean())
            self.scores["final"][j] = score
            best = self.scores["best"][j]
            self.scores["best"][j] = score if best is None else max(best, score)
            records.append({"step": self.step, "seed": int(seed),
                            "eval/return_mean": float(returns[j].mean()),
                            "eval/return_std": float(returns[j].std()),
                            "eval/normalized_score": score,
                            "eval/normalized_score_std": float(scores[j].std()),
                            "eval/length_mean": float(episodes.lengths[j].mean()),
                            "eval/terminated_frac": float(episodes.terminated[j].mean())})
        return records

    def _run_groups(self, num_steps: int):
        """The compiled chunk on each seed group, concurrently; results joined along seeds."""
        step, run = jnp.int32(self.step), jnp.int32(num_steps)
        longest = self.cfg.log_every
        calls = []
        for lo, hi in self.groups:
            args = (jax.tree.map(lambda x, lo=lo, hi=hi: x[lo:hi], self.states), self.p.data,
                    step, jnp.asarray(self.active[lo:hi]))
            key = (longest, hi - lo)
            if key not in self._compiled:  # compile outside the timed region
                self._compiled[key] = self.chunk.lower(*args, num_steps=longest,
                                                       run_steps=run).compile()
            calls.append((functools.partial(self._compiled[key], run_steps=run), args))
        t0 = time.perf_counter()
        if len(calls) == 1:
            outs = [jax.device_get(calls[0][0](*calls[0][1]))]
        else:
            with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
                outs = list(pool.map(lambda c: jax.device_get(c[0](*c[1])), calls))
        sps = num_steps / (time.perf_counter() - t0)
        new = jax.tree.map(lambda *x: jnp.concatenate(x), *[o[0] for o in outs])
        metrics = {k: np.concatenate([o[1][k][:num_steps] for o in outs], axis=1)
                   for k in outs[0][1]}
        params = {k: np.concatenate([o[2][k] for o in outs]) for k in outs[0][2]}
        return new, metrics, params, sps

    def next_stop(self) -> int:
        """The step the next segment ends at: the next log point, SEEM measurement or the
        last step, whichever comes first."""
        cfg = self.cfg
        stop = min((self.step // cfg.log_every + 1) * cfg.log_every, cfg.steps)
        seem = self.schedule.next_after(self.step) if self.seem else None
        return stop if seem is None else min(stop, seem)

    def run_chunk(self, logger) -> None:
        """Train to the next stop (`next_stop`), then the edges: divergence marking, SEEM and
        the verdict, evaluation, logging, checkpoint."""
        cfg = self.cfg
        num_steps = self.next_stop() - self.step
        was_active = self.active.copy()
        new, metrics, params, sps = self._run_groups(num_steps)
        first_bad = _first_bad_step(metrics, cfg.q_bound)
        first_bad[~self.active] = -1
        params_ok = np.all([np.isfinite(v) for v in params.values()], axis=0)
        first_bad = np.where((first_bad < 0) & ~params_ok & self.active, num_steps - 1, first_bad)
        stopped = first_bad >= 0
        if stopped.any():
            # Keep the last finite state (the chunk's start) for the seeds that blew up.
            keep = jnp.asarray(~stopped)
            new = jax.tree.map(
                lambda n, o: jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                new, self.states)
        crossed = (_first_bad_step(metrics, self.q_ceiling) if self.q_ceiling is not None
                   else first_bad)
        records = _chunk_records(self.step + num_steps, self.seeds, metrics, params, first_bad,
                                 sps)
        # Together, so that an interrupt never saves the new state under the old step.
        self.states, self.step = new, self.step + num_steps
        step0 = self.step - num_steps
        for j in np.flatnonzero(was_active):
            if self.diverged_at[j] is None and (crossed[j] >= 0 or stopped[j]):
                at = crossed[j] if crossed[j] >= 0 else first_bad[j]
                self.diverged_at[j] = step0 + int(at) + 1
                records[j]["diverged_at"] = self.diverged_at[j]
                self.verdicts[j].diverged()
            if stopped[j]:
                self.active[j] = False
                self.stopped_at[j] = step0 + int(first_bad[j]) + 1
                records[j]["stopped_at"] = self.stopped_at[j]
        if self.seem and self.step == self.schedule.next_after(step0):
            for rec, extra in zip(records, self.seem.measure(self.states), strict=True):
                rec.update(extra)
        self._update_verdicts(records)
        if cfg.eval_episodes and self.p.env_id and (
                self.step == cfg.steps or _crossed(self.step, num_steps, cfg.eval_every)):
            for rec, extra in zip(records, self.evaluate(), strict=True):
                rec.update({k: v for k, v in extra.items() if k not in ("step", "seed")})
        logger.log(_live_records(records, was_active))
        if stopped.any() or self.step == cfg.steps or (
                _crossed(self.step, num_steps, cfg.checkpoint_every)):
            self.save()
        else:
            checkpoint.atomic_write_json(self.out / "status.json", self.status())
        self.last_records = records

    def _update_verdicts(self, records: list[dict[str, Any]]) -> None:
        """Feed the online verdict at each SEEM measurement; log the step it first fires."""
        for verdict, rec in zip(self.verdicts, records, strict=True):
            if "seem/normalized" not in rec:
                continue
            fired_before = verdict.result.fired
            result = verdict.update(rec["step"], rec)
            if result.fired and not fired_before:
                rec["verdict/predicted_at"] = result.step
                rec["verdict/reason"] = result.reason

    def run(self, resume: bool = False, progress: bool = True, console=None,
            other_data: bool = False) -> dict[str, Any]:
        if resume:
            self.restore(other_data)
        # On resume too: config.json records a new --steps (and data accepted with
        # --accept-other-data), and a lost normalizer.json is written again.
        self.write_run_files()
        logger = self._logger()
        with sigterm_interrupts():  # around the save too: a second SIGTERM cannot cut it short
            try:
                with _progress(progress, console) as bar:
                    task = bar.add_task("train", total=self.cfg.steps, completed=self.step,
                                        info="", sps="—")
                    while self.step < self.cfg.steps:
                        if not self.active.any():
                            break
                        self.run_chunk(logger)
                        sps = self.last_records[0]["time/steps_per_sec"]
                        bar.update(task, completed=self.step, sps=f"{sps:.0f}",
                                   info=_summary(self.last_records, self.verdicts,
                                                 self.diverged_at))
            except KeyboardInterrupt:
                with _interrupts_ignored():  # a second Ctrl-C or SIGTERM waits for the save
                    self.save()  # the state of the last completed chunk: --resume continues
                raise
            finally:
                logger.close()
        if not self.active.all() and self.step < self.cfg.steps:
            self.save()
        return self.status()

    def _logger(self):
        loggers: list = [log_lib.JsonlLogger(self.out / "metrics.jsonl")]
        if self.cfg.tensorboard:
            loggers.append(log_lib.TensorBoardLogger(self.out / "tensorboard"))
        if self.cfg.wandb_project:
            loggers.append(log_lib.WandbLogger(self.cfg.wandb_project, self.out.name,
                                               self.config_dict(), self.seeds))
        return log_lib.MultiLogger(loggers)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM stops training as Ctrl-C does, so the run is saved before the process exits.

    Python's default lets SIGTERM kill the process with the steps since the last checkpoint
    unsaved; a job scheduler preempting a run, or `kill` on a background run (whose SIGINT the
    shell ignores), is the common way such runs stop. Further SIGTERMs are ignored until the
    block ends, so a second one (schedulers signal every process of a job, a sweep forwards
    its own to its workers) cannot cut the save short. Only the main thread may set handlers.
    """
    caught = types.SimpleNamespace(sigterm=False)  # yielded: whether a SIGTERM arrived
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        caught.sigterm = True
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT and SIGTERM are ignored inside the block (main thread only), so a save that an
    interrupt started cannot be cut short by the next one: Ctrl-C pressed twice, a scheduler's
    SIGTERM after the user's Ctrl-C, or a second `ray.cancel` (its `_thread.interrupt_main`
    is a no-op while SIGINT is ignored). `sigterm_interrupts` covers only SIGTERM after
    SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = {s: h for s, h in previous.items() if h is not None}  # None: not set from Python
    for s in previous:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _live_records(records: list[dict[str, Any]], active: np.ndarray) -> list[dict[str, Any]]:
    """The records worth logging: a seed stopped before this chunk has no training (its
    updates are thrown away) and no SEEM; only its evaluation at its last finite state, if
    there was one, marked `stopped: true`."""
    out = []
    for rec, live in zip(records, active, strict=True):
        if live:
            out.append(rec)
            continue
        kept = {k: v for k, v in rec.items() if k.startswith("eval/")}
        if kept:
            out.append({"step": rec["step"], "seed": rec["seed"], "stopped": True, **kept})
    return out


def _summary(records: list[dict[str, Any]], verdicts: list[OnlineVerdict],
             diverged_at: list[int | None] | None = None) -> str:
    """The progress bar's line: Q and scores per seed, then the verdict the moment it fires
    ("seed 1: SEEM +0.62 since step 200: predicted to diverge") and the divergences."""
    q = [r.get("train/q_mean") for r in records]
    text = "Q " + " ".join(f"{v:.3g}" if v is not None and np.isfinite(v) else "—" for v in q)
    scores = [r["eval/normalized_score"] for r in records if "eval/normalized_score" in r]
    if scores:
        text += "  score " + " ".join(f"{s:.1f}" for s in scores)
    for r, v in zip(records, verdicts, strict=True):
        if v.result.fired:
            text += f"  [yellow]seed {r['seed']}: {v.result.describe()}[/yellow]"
    gone = [f"{r['seed']} at {d:,}" for r, d in zip(records, diverged_at or [], strict=False)
            if d is not None]
    if gone:
        text += f"  [red]Q past the ceiling: seed {', '.join(gone)}[/red]"
    return text


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(enabled: bool, console):
    if not enabled:
        return _NoBar()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[sps]} steps/s"),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    transient=False)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item")
                                 else str(o)))


RUN_FILES = ("config.json", "normalizer.json", "metrics.jsonl", "status.json", "tensorboard",
             *(f"{name}.tmp" for name in ("config.json", "normalizer.json", "metrics.jsonl",
                                          "status.json", checkpoint.CHECKPOINT)))
"""What a run leaves before its first checkpoint (see the module doc; .tmp: killed mid-write)."""


def train(cfg: TrainConfig, algo_cfg, out: str | pathlib.Path, resume: bool = False,
          progress: bool = True, console=None, other_data: bool = False) -> dict[str, Any]:
    """Train `cfg.seeds` side by side into run folder `out`; returns the final status.

    A fresh start may reuse a folder that holds only what a run stopped before its first
    checkpoint left (nothing in it could be resumed). `other_data`: with `resume`, go on
    although the dataset is not the one the run was trained on, with the run's normaliser.
    """
    out = pathlib.Path(out)
    made = check_run_folder(out, resume)  # before the data loads (tens of seconds)
    try:
        normalizer = _saved_normalizer(out) if resume and other_data else None
        trainer = Trainer(cfg, algo_cfg, out, prepare(cfg, normalizer))
    except BaseException:
        _remove_folders(made)
        raise
    if not resume:
        for name in RUN_FILES:
            shutil.rmtree(out / name, ignore_errors=True)
            (out / name).unlink(missing_ok=True)
    return trainer.run(resume=resume, progress=progress, console=console, other_data=other_data)


def check_run_folder(out: pathlib.Path, resume: bool) -> list[pathlib.Path]:
    """Raises what would stop a run using folder `out`; creates it if missing, and returns the
    folders it created (deepest first), for a run that fails before it starts to remove.

    Raises:
      RunError: resume, and there is no checkpoint to continue from.
      ConfigError: a fresh start, and `out` holds a checkpoint or files of its own.
      WriteError: `out` cannot be written (read-only, no permission).
    """
    if resume and not checkpoint.exists(out):
        raise RunError(f"run {out} has no checkpoint yet (it stopped before its first one): "
                       f"start it again with `seemrl train --config {out / 'config.json'} "
                       f"--out {out}`")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if not resume and out.is_dir() and not {p.name for p in out.iterdir()} <= set(RUN_FILES):
        raise ConfigError(f"run folder {out} is not empty: use --resume {out} to continue it, "
                          "or choose another --out")
    made = [p for p in (out, *out.parents) if not p.exists()]
    probe = out / f".seemrl-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        _remove_folders(made)
        raise WriteError.of(out, e) from e
    return made


def _remove_folders(folders: list[pathlib.Path]) -> None:
    """Remove these folders, deepest first, where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _saved_normalizer(out: pathlib.Path):
    from seemrl.data.normalize import Normalizer

    try:
        return Normalizer.from_dict(json.loads((out / "normalizer.json").read_text()))
    except (OSError, ValueError) as e:
        raise RunError(f"{out / 'normalizer.json'} cannot be read ({e}): without the run's "
                       "own normaliser it cannot go on with other data") from e
