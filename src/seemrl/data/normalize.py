"""State normalisation and reward scaling.

The normaliser is fitted once, on the training subset, and the same object (saved with the
run via `to_dict`) is applied in training and in evaluation, so both see identical inputs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from seemrl.types import DataError, Dataset

EPS = 1e-3  # TD3+BC adds 1e-3 to the std [code], so constant features do not blow up.


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare fields
class Normalizer:
    """z-normalisation of observations: (obs - mean) / std.

    Attributes:
      mean: (obs_dim,) float32.
      std: (obs_dim,) float32, the data's std plus `EPS` (already added; never 0).
    """

    mean: np.ndarray
    std: np.ndarray
    _inv_std: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise DataError(f"Normalizer mean and std must be (obs_dim,) vectors of one shape, "
                            f"got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise DataError("Normalizer mean must be finite and std finite and positive")
        # Frozen: store the float32 copies without going through __setattr__.
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        # Multiplying by a host-computed reciprocal, not dividing: XLA's float32 division may
        # differ from NumPy's in the last bit, while subtract and multiply are exact IEEE ops
        # in both, so NumPy, JAX and jitted JAX give bit-identical normalised states.
        object.__setattr__(self, "_inv_std", (np.float32(1.0) / std).astype(np.float32))

    @classmethod
    def fit(cls, obs: np.ndarray, eps: float = EPS) -> Normalizer:
        """Mean and std + eps over axis 0 of `obs` (N, obs_dim), computed in float64."""
        obs = np.asarray(obs, np.float64)
        if obs.ndim != 2 or len(obs) == 0:
            raise DataError(f"Normalizer.fit needs (N, obs_dim) observations, got {obs.shape}")
        return cls(mean=obs.mean(0), std=obs.std(0) + eps)

    @classmethod
    def identity(cls, obs_dim: int) -> Normalizer:
        """The no-op normaliser (mean 0, std 1), for runs without state normalisation."""
        return cls(mean=np.zeros(obs_dim, np.float32), std=np.ones(obs_dim, np.float32))

    @property
    def obs_dim(self) -> int:
        return self.mean.shape[0]

    def normalize(self, obs: Any) -> Any:
        """(..., obs_dim) -> (..., obs_dim): (obs - mean) * (1 / std).

        NumPy in, NumPy out; JAX in (also traced under jit), JAX out; bit-identical results
        for float32 input either way."""
        return (obs - self.mean) * self._inv_std

    def denormalize(self, obs: Any) -> Any:
        """Inverse of `normalize` up to float rounding: obs * std + mean (under jit XLA may
        fuse this into one FMA, so it is not bit-identical across backends)."""
        return obs * self.std + self.mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-serialisable form; float32 -> float -> float32 is exact, so the round trip is."""
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        """Inverse of `to_dict`."""
        try:
            return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"],
                                                                             np.float32))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"bad normaliser record ({type(e).__name__}: {e})") from None


def normalize_dataset(dataset: Dataset, normalizer: Normalizer) -> Dataset:
    """`dataset` with observations and next_observations normalised (float32)."""
    if normalizer.obs_dim != dataset.obs_dim:
        raise DataError(f"normaliser is for obs_dim {normalizer.obs_dim}, "
                        f"dataset has {dataset.obs_dim}")
    return dataclasses.replace(
        dataset,
        observations=normalizer.normalize(dataset.observations).astype(np.float32),
        next_observations=normalizer.normalize(dataset.next_observations).astype(np.float32))


def return_range_scale(dataset: Dataset) -> float:
    """1000 / (max − min) of the dataset's episode returns (the last, possibly cut, episode
    included): IQL's reward normalisation on D4RL locomotion (Kostrikov et al. 2021, App. B),
    which CORL applies to CQL as well. Multiply the rewards by it with `scale_rewards`."""
    returns = dataset.episode_returns()
    spread = float(returns.max() - returns.min()) if len(returns) else 0.0
    if not spread > 0.0:
        raise DataError("reward normalisation by the return range needs episodes with "
                        f"different returns; all {len(returns)} episode(s) of this dataset "
                        "have the same return")
    return 1000.0 / spread


def scale_rewards(dataset: Dataset, scale: float = 1.0, bias: float = 0.0) -> Dataset:
    """`dataset` with rewards r * scale + bias (e.g. ×10 for AntMaze in SPEC §5.7).

    Evaluation scores use the environment's own rewards, so they are unaffected; the applied
    values are recorded in `metadata["reward_scale"]` and `metadata["reward_bias"]`
    (composed with any earlier scaling).
    """
    for name, value in (("scale", scale), ("bias", bias)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise DataError(f"reward {name} must be a finite number, got {value!r}")
    old_scale = dataset.metadata.get("reward_scale", 1.0)
    old_bias = dataset.metadata.get("reward_bias", 0.0)
    rewards = (dataset.rewards * np.float32(scale) + np.float32(bias)).astype(np.float32)
    return dataclasses.replace(
        dataset, rewards=rewards,
        metadata={**dataset.metadata, "reward_scale": old_scale * scale,
                  "reward_bias": old_bias * scale + bias})
