"""The AntMaze controller's training resumes into the run that was never stopped."""

import dataclasses

import numpy as np
import pytest

from seemrl.antmaze.controller import ControllerConfig, DirectionTask, policy_input, train

TINY = ControllerConfig(steps=1500, seed=3, hidden=(16, 16), batch_size=16, utd=0.1,
                        start_steps=500, chunk=500, checkpoint_every=1000,
                        eval_episodes=1, direction_every=50, episode_steps=300)


def test_policy_input_is_body_state_and_unit_direction():
    obs = np.arange(58, dtype=np.float64).reshape(2, 29)
    x = policy_input(obs, obs[:, :2] + np.array([[3.0, 4.0], [0.0, -2.0]]))
    assert x.shape == (2, 29)
    np.testing.assert_array_equal(x[:, :27], obs[:, 2:])
    np.testing.assert_allclose(x[:, 27:], [[0.6, 0.8], [0.0, -1.0]])


def test_direction_task_rewards_velocity_along_direction():
    task = DirectionTask(TINY)
    x = task.reset(0)
    assert x.shape == (29,)
    _, r, term, trunc = task.step(np.zeros(8))
    assert not term and not trunc and abs(r) < 0.5 and r == task.velocity  # barely moving
    ant_v5 = DirectionTask(dataclasses.replace(TINY, healthy_reward=1.0, ctrl_cost=0.5))
    ant_v5.reset(0)
    _, r, _, _ = ant_v5.step(np.full(8, 0.5))
    assert r == pytest.approx(ant_v5.velocity + 1.0 - 0.5 * 8 * 0.25)


class _Stop(Exception):
    pass


def test_resumed_run_equals_uninterrupted(tmp_path):
    from seemrl.behaviour.sac import load_actor

    whole = train(TINY, tmp_path / "whole", log=lambda s: None)

    def stop(_):
        raise _Stop

    with pytest.raises(_Stop):
        train(TINY, tmp_path / "resumed", log=stop)  # stops after the first checkpoint
    resumed = train(TINY, tmp_path / "resumed", log=lambda s: None)
    assert [c["step"] for c in resumed] == [c["step"] for c in whole] == [1000, 1500]
    a = load_actor(tmp_path / "whole/snapshots/actor_0001500.npz")
    b = load_actor(tmp_path / "resumed/snapshots/actor_0001500.npz")
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="another config"):
        train(ControllerConfig(steps=10), tmp_path / "whole")


def _leaves(tree):
    import jax

    return [np.asarray(v) for v in jax.tree.leaves(tree)]


def test_egocentric_input_turns_with_the_heading():
    obs = np.zeros((1, 29))
    yaw = np.pi / 2  # facing +y: a target straight ahead (+y) is "forward" (+x) in the body
    obs[0, 3], obs[0, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
    x = policy_input(obs, np.array([[0.0, 5.0]]), egocentric=True)
    np.testing.assert_allclose(x[0, 27:], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(policy_input(obs, np.array([[0.0, 5.0]]))[0, 27:], [0.0, 1.0])


def test_run_saved_before_a_field_existed_reads_its_legacy_value(tmp_path):
    import json

    old = {k: v for k, v in dataclasses.asdict(TINY).items()
           if k not in ("ctrl_cost", "egocentric", "healthy_reward")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="another config"):  # it ran with Ant-v5's terms
        train(TINY, tmp_path)
    legacy = dataclasses.replace(TINY, steps=0, healthy_reward=1.0, ctrl_cost=0.5,
                                 egocentric=False)
    (tmp_path / "config.json").write_text(json.dumps({**old, "steps": 0}))
    assert train(legacy, tmp_path) == []


def test_a_flipped_ant_ends_the_episode():
    task = DirectionTask(TINY)
    task.reset(0)
    task.sim.data.qpos[2:7] = [0.3, 0.0, 1.0, 0.0, 0.0]  # upside down, z in the healthy range
    _, _, term, _ = task.step(np.zeros(8))
    assert term
    task = DirectionTask(dataclasses.replace(TINY, min_upright=-1.0))
    task.reset(0)
    task.sim.data.qpos[2:7] = [0.3, 0.0, 1.0, 0.0, 0.0]
    assert not task.step(np.zeros(8))[2]


def test_init_run_starts_from_another_run_with_relabelled_terminals(tmp_path):
    src = dataclasses.replace(TINY, steps=1000, min_upright=-1.0)
    train(src, tmp_path / "src", log=lambda s: None)
    cfg = dataclasses.replace(TINY, init_run=str(tmp_path / "src"), healthy_reward=0.5)
    logs = []
    curves = train(cfg, tmp_path / "dst", log=logs.append)
    assert logs[0].startswith("started from") and [c["step"] for c in curves] == [1000, 1500]
    with np.load(tmp_path / "dst/buffer.npz") as f:
        z, qx, qy = f["next_obs"][:, 0], f["next_obs"][:, 2], f["next_obs"][:, 3]
        ends = (z < 0.2) | (z > 1.0) | (1 - 2 * (qx**2 + qy**2) < 0)
        np.testing.assert_array_equal(f["discount"] == 0, ends)
        with np.load(tmp_path / "src/buffer.npz") as g:  # v·d kept, the bonus where alive
            np.testing.assert_allclose(f["rew"][:1000], g["rew"] + 0.5 * ~ends[:1000],
                                       atol=1e-6)
