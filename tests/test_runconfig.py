"""seemrl.runconfig: one resolution of a run's config, one same-run rule."""

import json

import pytest

from seemrl import runconfig, runfolder
from seemrl.algos import iql, td3bc
from seemrl.config import ConfigError
from seemrl.runconfig import RunConfig, TrainConfig


def test_layers_defaults_preset_file_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batch_size: 64\nalpha: 1.0\n")
    cfg = runconfig.resolve({"dataset": "d.npz", "alpha": 3.0}, preset="td3bc-locomotion",
                            config_file=path)
    assert isinstance(cfg, RunConfig) and isinstance(cfg.algo, td3bc.Config)
    assert cfg.train.batch_size == 64  # the file over the preset and the default
    assert cfg.algo.alpha == 3.0  # the flag over the file
    assert cfg.train.steps == 1_000_000  # the preset over the default (100 000)


def test_the_algorithm_comes_from_the_most_specific_layer(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("algo: iql\nexpectile: 0.9\n")
    assert runconfig.algo_for(config_file=path) == "iql"
    assert runconfig.algo_for("cql", config_file=path) == "cql"
    assert runconfig.algo_for() == "td3bc"
    cfg = runconfig.resolve({"dataset": "d.npz"}, config_file=path)
    assert isinstance(cfg.algo, iql.Config) and cfg.algo.expectile == 0.9


def test_owner_and_split_name_unknown_keys():
    assert runconfig.owner("steps", td3bc.Config) is TrainConfig
    assert runconfig.owner("bc_coef", td3bc.Config) is td3bc.Config
    assert runconfig.owner("expectile", td3bc.Config) is None
    with pytest.raises(ConfigError, match=r"unknown option\(s\) in flags: expectile"):
        runconfig.split({"expectile": 0.7}, td3bc.Config, "flags")


def _saved_run(tmp_path, **train):
    cfg = runconfig.build({"dataset": "d.npz", "seed_groups": 2, **train}, {"gamma": 0.9})
    runfolder.write_config(tmp_path, {**cfg.to_dict(), "q_ceiling": 1.0})
    return runconfig.saved(tmp_path)


def test_resume_may_change_only_the_overridable_options(tmp_path):
    saved = _saved_run(tmp_path)
    assert runconfig.changed_on_resume(saved, {"steps": 10, "eval_episodes": 0}, {}) == []
    assert runconfig.changed_on_resume(saved, {"batch_size": 32}, {"gamma": 0.5}) == [
        "batch_size", "gamma"]
    assert runconfig.changed_on_resume(saved, {}, {"gamma": 0.9}) == []  # the same value
    # seed_groups 0 (automatic) means the run's own; a resume keeps them.
    assert runconfig.changed_on_resume(saved, {"seed_groups": 0}, {}) == []
    assert runconfig.changed_on_resume(saved, {"seed_groups": 1}, {}) == ["seed_groups"]
    resumed = runconfig.resumed(saved, {"steps": 10, "seed_groups": 0}, {})
    assert resumed.train.steps == 10 and resumed.train.seed_groups == 2
    assert resumed.algo.gamma == 0.9


def test_a_run_saved_before_an_option_resumes_with_the_value_it_ran_with(tmp_path):
    saved = _saved_run(tmp_path)
    raw = json.loads((tmp_path / runfolder.CONFIG).read_text())
    del raw["algo"]["init_scheme"]  # as written before init_scheme existed (PyTorch's init)
    (tmp_path / runfolder.CONFIG).write_text(json.dumps(raw))
    saved = runconfig.saved(tmp_path)
    assert saved[1]["init_scheme"] == "torch"
    assert runconfig.changed_on_resume(saved, {}, {"init_scheme": "edac"}) == ["init_scheme"]


def test_no_saved_config(tmp_path):
    assert runconfig.saved(tmp_path) is None


def test_seed_groups_are_at_most_one_per_seed():
    cfg = TrainConfig(dataset="d", seeds=(0, 1), seed_groups=8)
    assert runconfig.resolve_seed_groups(cfg) == 2
