import os
import signal

import numpy as np
import pytest

from seemrl.data.npz import save_npz
from seemrl.types import Dataset


def make_dataset(n: int = 600, obs_dim: int = 11, act_dim: int = 3, episode_len: int = 50,
                 seed: int = 0, **metadata) -> Dataset:
    """A small synthetic dataset with Hopper's shapes: smooth random-walk states."""
    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(0, 0.1, (n + 1, obs_dim)), axis=0).astype(np.float32)
    next_obs = obs[1:].copy()
    obs = obs[:-1]
    ends = np.zeros(n, bool)
    ends[episode_len - 1::episode_len] = True
    ends[-1] = True
    terminals = np.zeros(n, np.float32)
    terminals[episode_len - 1::2 * episode_len] = 1.0
    return Dataset(observations=obs, actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
                   rewards=rng.normal(1.0, 0.5, n).astype(np.float32),
                   next_observations=next_obs, terminals=terminals,
                   timeouts=ends & (terminals == 0), episode_ends=ends, metadata=dict(metadata))


@pytest.fixture
def hopper_npz(tmp_path):
    """A tiny Hopper-shaped .npz dataset on disk; its name and metadata name no env."""
    path = tmp_path / "tiny_data.npz"
    save_npz(path, make_dataset())
    return path


def stop_before_chunk(monkeypatch, n: int, how: str = "sigterm"):
    """Patches `Trainer.run_chunk` so that its n-th call is preceded by Ctrl-C ('ctrl-c': a
    KeyboardInterrupt) or a real SIGTERM to this process ('sigterm', as `kill` or a scheduler
    sends it); returns the original, for the test to put back before it resumes."""
    from seemrl.train import Trainer

    original, calls = Trainer.run_chunk, {"n": 0}

    def stopped(self, logger):
        calls["n"] += 1
        if calls["n"] == n:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, logger)

    monkeypatch.setattr(Trainer, "run_chunk", stopped)
    return original
