import numpy as np
import pytest

from seemrl import evaluation
from seemrl.types import DataError


def constant_policy(action):
    """Every policy and episode takes the same action: (S, E, obs_dim) -> (S, E, act_dim)."""
    return lambda obs: np.broadcast_to(np.asarray(action, np.float32), obs.shape[:2] + (3,))


def rollout(env_id, seed, action):
    """One episode by hand with plain Gymnasium: (return, length, terminated)."""
    env = evaluation.make_env(env_id)
    env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        _, r, terminated, truncated, _ = env.step(np.asarray(action, np.float32))
        total, steps = total + r, steps + 1
        if terminated or truncated:
            env.close()
            return total, steps, terminated


def test_episodes_match_a_rollout_by_hand():
    # Full throttle on every joint makes Hopper fall within a few dozen steps.
    action = [1.0, 1.0, 1.0]
    ep = evaluation.evaluate(constant_policy(action), "Hopper-v5", seeds=[0, 3], episodes=2)
    assert ep.returns.shape == ep.lengths.shape == ep.terminated.shape == (2, 2)
    for p, seed in enumerate([0, 3]):
        for e in range(2):
            ret, length, terminated = rollout("Hopper-v5", 1000 * seed + e, action)
            assert ep.returns[p, e] == pytest.approx(ret, rel=1e-12)
            assert ep.lengths[p, e] == length
            assert ep.terminated[p, e] == terminated
    assert ep.terminated.all() and (ep.lengths < 1000).all()


def test_time_limit_is_not_a_fall():
    # Hopper-v5 ends at 1000 steps; capped at 5 by the env's own time limit here, so every
    # episode is cut, not terminated.
    import gymnasium as gym

    gym.register("TinyHopper-v0", entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv",
                 max_episode_steps=5)
    try:
        ep = evaluation.evaluate(constant_policy([0.0, 0.0, 0.0]), "TinyHopper-v0", seeds=[0],
                                 episodes=3)
    finally:
        del gym.registry["TinyHopper-v0"]
    assert (ep.lengths == 5).all() and not ep.terminated.any()
    assert np.isfinite(ep.returns).all()


def test_reference_scores_and_normalisation():
    assert evaluation.reference_scores("Walker2d-v5") == evaluation.REF_SCORES["walker2d"]
    assert evaluation.reference_scores(
        "Foo-v0", {"ref_min_score": 1.0, "ref_max_score": 3.0}) == (1.0, 3.0)
    lo, hi = evaluation.REF_SCORES["hopper"]
    np.testing.assert_allclose(evaluation.normalized_score([lo, hi, (lo + hi) / 2],
                                                           (lo, hi)), [0.0, 100.0, 50.0])
    with pytest.raises(DataError, match="Foo-v0"):
        evaluation.reference_scores("Foo-v0")
