"""State normaliser (mean, std + 1e-3) and reward scaling."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.data.normalize import (
    EPS,
    Normalizer,
    normalize_dataset,
    return_range_scale,
    scale_rewards,
)
from seemrl.types import DataError, Dataset


@pytest.fixture
def obs():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[3.0, -2.0, 0.0, 10.0], scale=[0.5, 4.0, 1.0, 0.0], size=(500, 4))
    return x.astype(np.float32)  # last feature is constant


def test_fit_matches_td3bc_statistics(obs):
    norm = Normalizer.fit(obs)
    x = obs.astype(np.float64)
    np.testing.assert_allclose(norm.mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, x.std(0) + 1e-3, rtol=1e-6)
    assert EPS == 1e-3
    assert norm.mean.dtype == norm.std.dtype == np.float32
    z = norm.normalize(obs)
    assert np.isfinite(z).all()  # the constant feature does not divide by zero
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), x.std(0) / (x.std(0) + 1e-3), rtol=1e-4)


def test_round_trip(obs):
    norm = Normalizer.fit(obs)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(obs)), obs, rtol=1e-5,
                               atol=1e-5)


def test_numpy_and_jax_give_identical_results(obs):
    norm = Normalizer.fit(obs)
    z_np = norm.normalize(obs)
    z_jax = norm.normalize(jnp.asarray(obs))
    z_jit = jax.jit(norm.normalize)(jnp.asarray(obs))
    assert isinstance(z_np, np.ndarray) and isinstance(z_jax, jax.Array)
    assert z_np.dtype == np.float32 and z_jax.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(z_jax), z_np)
    np.testing.assert_array_equal(np.asarray(z_jit), z_np)
    # A single observation (evaluation) normalises like the same row of a batch.
    np.testing.assert_array_equal(norm.normalize(obs[7]), z_np[7])


def test_dict_round_trip_is_exact_and_json_serialisable(obs):
    norm = Normalizer.fit(obs)
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    np.testing.assert_array_equal(back.normalize(obs), norm.normalize(obs))


def test_identity_is_a_no_op(obs):
    ident = Normalizer.identity(obs.shape[1])
    np.testing.assert_array_equal(ident.normalize(obs), obs)
    assert ident.obs_dim == obs.shape[1]


def test_bad_normalisers():
    with pytest.raises(DataError):
        Normalizer(mean=np.zeros(3), std=np.ones(4))
    with pytest.raises(DataError):
        Normalizer(mean=np.zeros(3), std=np.zeros(3))
    with pytest.raises(DataError):
        Normalizer(mean=np.array([0.0, np.nan]), std=np.ones(2))
    with pytest.raises(DataError, match="mean"):
        Normalizer.from_dict({"std": [1.0]})
    with pytest.raises(DataError):
        Normalizer.fit(np.zeros((0, 3)))


def make_dataset(obs):
    n = len(obs)
    rng = np.random.default_rng(1)
    return Dataset(observations=obs, actions=np.zeros((n, 1), np.float32),
                   rewards=rng.normal(size=n).astype(np.float32),
                   next_observations=obs[::-1].copy(), terminals=np.zeros(n, np.float32),
                   timeouts=np.zeros(n, bool), episode_ends=np.arange(n) == n - 1)


def test_normalize_dataset_applies_to_both_observation_fields(obs):
    ds = make_dataset(obs)
    norm = Normalizer.fit(obs)
    out = normalize_dataset(ds, norm)
    np.testing.assert_array_equal(out.observations, norm.normalize(obs))
    np.testing.assert_array_equal(out.next_observations, norm.normalize(obs[::-1]))
    np.testing.assert_array_equal(out.rewards, ds.rewards)
    with pytest.raises(DataError, match="obs_dim"):
        normalize_dataset(ds, Normalizer.identity(2))


def test_scale_rewards(obs):
    ds = make_dataset(obs)
    out = scale_rewards(ds, scale=10.0, bias=-1.0)
    np.testing.assert_allclose(out.rewards, ds.rewards * 10.0 - 1.0, rtol=1e-6)
    assert out.rewards.dtype == np.float32
    assert out.metadata["reward_scale"] == 10.0 and out.metadata["reward_bias"] == -1.0
    twice = scale_rewards(out, scale=2.0, bias=0.5)  # r' = 2 (10 r - 1) + 0.5
    np.testing.assert_allclose(twice.rewards, ds.rewards * 20.0 - 1.5, rtol=1e-5, atol=1e-6)
    assert twice.metadata["reward_scale"] == 20.0 and twice.metadata["reward_bias"] == -1.5
    np.testing.assert_array_equal(ds.rewards, make_dataset(obs).rewards)  # input untouched
    for bad in (float("nan"), float("inf"), "2"):
        with pytest.raises(DataError, match="scale"):
            scale_rewards(ds, scale=bad)


def test_return_range_scale_is_1000_over_the_spread_of_episode_returns(obs):
    ds = make_dataset(obs)
    ends = np.zeros(len(obs), bool)
    ends[[4, 9, len(obs) - 1]] = True  # three episodes, the last one possibly cut
    ds = Dataset(**{**ds.__dict__, "episode_ends": ends})
    rets = [ds.rewards[a:b].sum(dtype=np.float64) for a, b in ((0, 5), (5, 10), (10, len(obs)))]
    np.testing.assert_allclose(return_range_scale(ds), 1000.0 / (max(rets) - min(rets)),
                               rtol=1e-6)
    one = Dataset(**{**ds.__dict__, "episode_ends": np.arange(len(obs)) == len(obs) - 1})
    with pytest.raises(DataError, match="return"):
        return_range_scale(one)


def test_train_option_returns_rescales_before_the_subset(hopper_npz):
    from seemrl.config import ConfigError
    from seemrl.data import load_dataset
    from seemrl.prepare import prepare
    from seemrl.runconfig import TrainConfig

    base = dict(dataset=hopper_npz, eval_episodes=0, fraction=0.5, normalize_states=False)
    raw = prepare(TrainConfig(**base)).dataset
    scaled = prepare(TrainConfig(**base, reward_normalization="returns")).dataset
    expect = return_range_scale(load_dataset(hopper_npz))
    np.testing.assert_allclose(scaled.rewards, raw.rewards * expect, rtol=1e-5, atol=1e-6)
    assert scaled.metadata["reward_scale"] == pytest.approx(expect)
    with pytest.raises(ConfigError, match="reward_normalization"):
        TrainConfig(**base, reward_normalization="iql")
