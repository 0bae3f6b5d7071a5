"""Core data types and shape conventions.

Shapes: N transitions, `obs_dim` observation size, `act_dim` action size.
Host-side datasets are NumPy; device-side batches are JAX pytrees.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np


class SeemrlError(Exception):
    """An expected failure: the user's input or the machine's state, never a bug in seemrl.

    Its message is one line naming the file, key or option at fault and, where there is one,
    what to do next; the CLI prints it and exits with code 2. Anything else keeps its traceback.
    """


class DataError(SeemrlError, ValueError):
    """Bad or unreadable input data. The CLI turns it into a one-line error and exit code 2."""


class WriteError(SeemrlError):
    """A file seemrl writes could not be written: disk full, read-only file system, no
    permission. Nothing half-written is left under the file's name and no temporary file."""

    @classmethod
    def of(cls, path: Any, e: OSError) -> WriteError:
        """The one-line error for `e`, raised while writing `path`."""
        hint = {errno.ENOSPC: " (free some space and run the command again)",
                errno.EDQUOT: " (free some of your quota and run the command again)",
                errno.EROFS: " (the file system is mounted read-only: choose another folder)"}
        return cls(f"cannot write {path}: {e.strerror or e}{hint.get(e.errno or 0, '')}")


class RunError(SeemrlError):
    """A run folder cannot be used as asked: its checkpoint is unreadable, it was trained on
    other data, it has no checkpoint or no log point yet."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's preemption) arrived while training: handled as Ctrl-C,
    but the CLI exits with 143."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An offline dataset of transitions, in D4RL's "q-learning" view.

    Attributes:
      observations: (N, obs_dim) float32.
      actions: (N, act_dim) float32.
      rewards: (N,) float32.
      next_observations: (N, obs_dim) float32.
      terminals: (N,) float32, 1.0 where the episode ended in a true terminal state
        (the bootstrap is cut).
      timeouts: (N,) bool, True where the episode was truncated after this transition
        (the bootstrap is *not* cut; these are kept only when a real next observation exists).
      episode_ends: (N,) bool, True on the last transition of each episode (terminal,
        timeout, or a break in the data). Episode i spans (prev end, this end].
      metadata: free-form facts about the data: `env_id`, `name`, `source`,
        `ref_min_score`, `ref_max_score`, ...
      next_actions: (N, act_dim) float32 or None, the action the data took at the next
        observation (see `with_next_actions`); ReBRAC's critic penalty needs it.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_ends: np.ndarray
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    next_actions: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.observations)
        for name in ("actions", "rewards", "next_observations", "terminals", "timeouts",
                     "episode_ends", "next_actions"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise DataError(
                    f"field '{name}' has {len(getattr(self, name))} rows, observations have {n}")
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise DataError(
                "observations and actions must be 2-D (N, dim), got "
                f"{self.observations.shape} and {self.actions.shape}")
        if self.next_observations.shape != self.observations.shape:
            raise DataError(
                f"next_observations shape {self.next_observations.shape} != observations "
                f"shape {self.observations.shape}")
        if n == 0:
            raise DataError("dataset has no transitions")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def take(self, index: np.ndarray, **metadata: Any) -> Dataset:
        """Rows `index` (sorted indices keep episode order), with extra metadata merged in."""
        return Dataset(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_observations=self.next_observations[index],
            terminals=self.terminals[index],
            timeouts=self.timeouts[index],
            episode_ends=self.episode_ends[index],
            metadata={**self.metadata, **metadata},
            next_actions=None if self.next_actions is None else self.next_actions[index],
        )

    def with_next_actions(self) -> Dataset:
        """The same data with `next_actions`: row i+1's action where row i's episode goes on,
        else row i's own action (after a terminal it is never used; after a timeout or a cut
        the true next action is unknown). Call it before taking a subset, so a kept row's
        successor action is exact even when the successor row itself was dropped."""
        nxt = self.actions.copy()
        goes_on = ~self.episode_ends[:-1]
        nxt[:-1][goes_on] = self.actions[1:][goes_on]
        return dataclasses.replace(self, next_actions=nxt)

    def fingerprint(self) -> dict[str, Any]:
        """{"transitions": N, "sha256": hex digest of every array, its shape and dtype}: the
        identity of the data, recorded in a run's config.json so a resume can tell that its
        dataset was replaced (about 0.3 s a million transitions)."""
        h = hashlib.sha256()
        for name in ("observations", "actions", "rewards", "next_observations", "terminals",
                     "timeouts", "episode_ends"):
            array = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
            h.update(array.data)
        return {"transitions": len(self), "sha256": h.hexdigest()}

    def outside_actions(self, max_action: float) -> tuple[int, int, float] | None:
        """(rows, first row, its value) of actions beyond ±max_action, the range every actor
        here can output, by more than float rounding; None when all are inside."""
        bad = np.abs(self.actions) > max_action * (1 + 1e-4)
        rows = np.flatnonzero(bad.any(axis=1))
        if len(rows) == 0:
            return None
        value = self.actions[rows[0]][bad[rows[0]]][0]
        return len(rows), int(rows[0]), float(value)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each (possibly partial) episode, in order."""
        ends = np.flatnonzero(self.episode_ends)
        if len(ends) == 0 or ends[-1] != len(self) - 1:
            ends = np.append(ends, len(self) - 1)
        csum = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        starts = np.concatenate([[0], ends[:-1] + 1])
        return csum[ends + 1] - csum[starts]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The sizes an agent is built for: observation and action dimensions, and the bound of
    every action coordinate (actions live in [-max_action, max_action]). Hashable, so network
    builders may cache on it."""

    obs_dim: int
    act_dim: int
    max_action: float = 1.0


class Batch(NamedTuple):
    """A device-side batch of transitions (TD naming: t-1 is the current step).

    obs_tm1: (B, obs_dim); a_tm1: (B, act_dim); r_t: (B,); obs_t: (B, obs_dim);
    discount_t: (B,) is 1 - terminal (γ is applied by the algorithm);
    a_t: (B, act_dim) the data's next action, or None when not provided.
    """

    obs_tm1: jnp.ndarray
    a_tm1: jnp.ndarray
    r_t: jnp.ndarray
    obs_t: jnp.ndarray
    discount_t: jnp.ndarray
    a_t: jnp.ndarray | None = None
