"""A dataset made ready for training: loaded, checked against the evaluation env, subset,
rewards transformed, states normalised, and put on the device as one `Batch`.

Data flow: dataset → action check → reward normalisation (whole dataset) → subset → reward
scale/bias → state normalisation → device arrays. Training and evaluation use the same
normaliser (`Prepared.normalizer`, saved in the run folder).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from seemrl import evaluation
from seemrl.config import ConfigError
from seemrl.runconfig import TrainConfig
from seemrl.types import Batch, DataError, Dataset, EnvSpec


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

    @property
    def spec(self) -> EnvSpec:
        """What the agent is built for."""
        return EnvSpec(self.obs_dim, self.act_dim, self.max_action)


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
    if env_id is not None and dims is not None and dims[1] == dataset.act_dim:  # file rows
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
    if env_id is not None and dims is not None:
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
