"""Presets: every shipped preset loads and builds valid configs for its algorithm."""

import dataclasses

import pytest

from seemrl import algos
from seemrl import config as config_lib
from seemrl.config import ConfigError
from seemrl.presets import list_presets, load_preset
from seemrl.runconfig import TrainConfig

EXPECTED = {"td3bc-locomotion", "td3-divergence", "iql-locomotion", "iql-antmaze",
            "cql-locomotion", "cql-antmaze", "rebrac-hopper-medium", "rebrac-walker2d-medium",
            "rebrac-antmaze-umaze", "diffql-locomotion", "diffql-hopper-medium",
            "diffql-walker2d-medium", "diffql-antmaze"}


def test_the_paper_settings_are_shipped():
    assert EXPECTED <= set(list_presets())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_builds_configs(name):
    data = load_preset(name)
    algo = algos.get(data["algo"])
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    algo_names = {f.name for f in dataclasses.fields(algo.Config)}
    assert set(data) <= train_names | algo_names, set(data) - train_names - algo_names
    train = config_lib.build(TrainConfig, {"dataset": "x", **{k: v for k, v in data.items()
                                                                if k in train_names}})
    algo_cfg = config_lib.build(algo.Config, {k: v for k, v in data.items() if k in algo_names})
    assert train.algo == data["algo"]
    for k, v in data.items():  # every value reached its config unchanged (after coercion)
        got = getattr(train if k in train_names else algo_cfg, k)
        assert got == (tuple(v) if isinstance(v, list) else v), k


def test_published_values():
    assert load_preset("iql-antmaze")["expectile"] == 0.9
    assert load_preset("iql-antmaze")["beta"] == 10.0
    assert load_preset("td3-divergence")["bc_coef"] == 0.0
    assert load_preset("td3-divergence")["tau"] == 1.0
    assert load_preset("rebrac-hopper-medium")["batch_size"] == 1024
    assert load_preset("diffql-antmaze")["alpha"] == 2.0


def test_flags_override_a_preset():
    data = {**load_preset("iql-locomotion"), "expectile": 0.8}
    cfg = config_lib.build(algos.get("iql").Config,
                           {k: v for k, v in data.items()
                            if k in {f.name for f in dataclasses.fields(algos.get("iql").Config)}})
    assert cfg.expectile == 0.8


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError, match="iql-antmaze"):
        load_preset("iql-antmase")


def test_split_partitions_a_flat_mapping_and_names_unknown_keys():
    from seemrl.runconfig import split

    data = load_preset("rebrac-walker2d-medium")
    train, algo = split(data, algos.get("rebrac").Config)
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(train) == set(data) & train_names and "batch_size" in train
    assert set(algo) == set(data) - train_names and algo["beta_actor"] == data["beta_actor"]
    with pytest.raises(ConfigError, match=r"unknown option\(s\) in my.yaml: bogus"):
        split({**data, "bogus": 1}, algos.get("rebrac").Config, "my.yaml")
