import os
import signal

# Tests compile many small programs and run each a few times: XLA's cheaper CPU code
# generation compiles them about a third faster (set before JAX starts; a user's own
# XLA_FLAGS come after and win).
os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                           "--xla_llvm_disable_expensive_passes=true "
                           + os.environ.get("XLA_FLAGS", ""))

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


# Modules whose module-scoped fixtures are costly (each repro experiment at smoke scale, a
# dataset per level): one xdist worker runs each of them whole, so that fixture runs once.
# (xdist's own `--dist loadgroup` does not group under pytest 9.2: it renames node ids.)
WHOLE_MODULES = ("test_repro_divergence.py", "test_repro_fraction_predict.py",
                 "test_behaviour.py")


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.rsplit("/", 1)[-1] in WHOLE_MODULES else nodeid

    return Scheduling(config, log)


def pytest_collection_modifyitems(items):
    # Those modules first, so that the other worker has the rest to run meanwhile.
    items.sort(key=lambda item: item.path.name not in WHOLE_MODULES)


@pytest.fixture(scope="session", autouse=True)
def xla_cache(tmp_path_factory):
    """One persistent XLA cache for the test session, shared by the xdist workers and by the
    processes the tests start (their environment names it): many tests train the same tiny
    networks, and on a 2-core machine compiling is most of a short run's time, so a program
    compiled once is loaded, not compiled again. New for every session: nothing from an
    earlier run (or another version of the code) is reused."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above this worker's own
    path = base / "xla_cache"
    path.mkdir(exist_ok=True)
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JAX_COMPILATION_CACHE_DIR", str(path))
        env.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        yield path
        for name, value in saved.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


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
