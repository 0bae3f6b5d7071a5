import json
import os
import signal
import sys
import threading
import time

import pytest

from seemrl import checkpoint, engines, sweep, tables
from seemrl import grid as grid_lib
from seemrl.cli import main
from seemrl.config import ConfigError
from seemrl.grid import Grid
from seemrl.logging import read_jsonl
from seemrl.sweep import RunResult, RunSpec, run_sweep
from seemrl.train import Trainer
from seemrl.types import Terminated
from tests.conftest import stop_before_chunk

TINY = dict(seeds=(0, 1), steps=20, log_every=10, eval_episodes=0, seem_every=0,
            checkpoint_every=0, batch_size=32)
NETS = dict(critic_hidden=(32, 32), actor_hidden=(32, 32))
FLAGS = ["--seeds", "0", "1", "--steps", "20", "--log-every", "10", "--eval-episodes", "0",
         "--seem-every", "0", "--checkpoint-every", "0", "--batch-size", "32",
         "--fix", "critic_hidden=[32,32]", "--fix", "actor_hidden=[32,32]", "--no-progress"]


def two_runs(dataset, **train):
    """Two runs of a tiny TD3+BC that differ in their data only (rewards ×1 and ×2), so the
    second reuses the first one's compiled update (the session's XLA cache, conftest.py)."""
    return [RunSpec(f"r{scale}", {"dataset": str(dataset), "algo": "td3bc", "reward_scale": scale,
                                  **TINY, **train}, NETS) for scale in (1, 2)]


def run_cli(argv, capsys):
    """Exit code, stdout with its whitespace collapsed (rich wraps lines at the console's
    width, 80 columns without a terminal, so a long tmp path moves the breaks), stderr."""
    code = main(["sweep", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), err


def steps_logged(run_dir):
    return sorted((r["step"], r["seed"]) for r in read_jsonl(run_dir / "metrics.jsonl"))


def outcomes(out):
    record = json.loads((out / "sweep.json").read_text())
    return {r["name"]: r["outcome"] for r in record["runs"]}


# -- the grid ---------------------------------------------------------------------------------
def test_grid_expands_datasets_algos_and_axes_into_named_runs():
    grid = Grid(datasets=("hopper-medium", "data/walker.npz"), algos=("td3bc", "iql"),
                axes={"layer_norm": (True, False), "fraction": ("1", 0.1)},
                fixed={"seeds": [0, 1, 2], "steps": 100, "gamma": 0.9})
    specs = grid.specs()
    assert len(specs) == 2 * 2 * 2 * 2
    names = [s.name for s in specs]
    assert names[0] == "hopper-medium_td3bc_fraction-1_layer_norm-true"
    assert "walker_iql_fraction-0.1_layer_norm-false" in names
    spec = specs[1]  # axes vary in name order, the last fastest
    assert spec.name == "hopper-medium_td3bc_fraction-1_layer_norm-false"
    assert spec.train == {"dataset": "hopper-medium", "algo": "td3bc", "seeds": (0, 1, 2),
                          "steps": 100, "fraction": 1.0}
    assert spec.algo == {"gamma": 0.9, "layer_norm": False}
    sweep.validate(specs)


def test_an_option_of_some_algorithms_applies_to_their_runs_only():
    specs = Grid(datasets=("d.npz",), algos=("td3bc", "iql"),
                 axes={"bc_coef": (0, 1)}, fixed={"expectile": 0.9}).specs()
    assert [s.name for s in specs] == ["d_td3bc_bc_coef-0", "d_td3bc_bc_coef-1", "d_iql"]
    assert specs[0].algo == {"bc_coef": 0.0} and specs[2].algo == {"expectile": 0.9}


@pytest.mark.parametrize("grid, message", [
    (Grid(datasets=("d",), axes={"layer_nrom": (True,)}), "unknown option 'layer_nrom'"),
    (Grid(datasets=("d",), axes={"layer_norm": ("maybe",)}), "layer_norm"),
    (Grid(datasets=("d",), axes={"seeds": ((0,), (1,))}), "side by side"),
    (Grid(datasets=("d",), axes={"dataset": ("a", "b")}), "--dataset"),
    (Grid(datasets=("d",), axes={"fraction": (1, 1.0)}), "twice"),
    (Grid(datasets=("a/d.npz", "b/d.npz")), "distinct"),
    (Grid(datasets=("d",), algos=("td4",)), "unknown algorithm"),
    (Grid(datasets=()), "no dataset"),
])
def test_bad_grids_are_one_clear_error(grid, message):
    with pytest.raises(ConfigError, match=message):
        sweep.validate(grid.specs())


def test_values_that_build_no_config_fail_validation():
    specs = Grid(datasets=("d",), axes={"fraction": (2.0,)}).specs()
    with pytest.raises(ConfigError, match=r"run d_td3bc_fraction-2: .*fraction"):
        sweep.validate(specs)


def test_axis_and_fixed_values_are_read_as_yaml():
    assert grid_lib.parse_axis("layer-norm=true,false") == ("layer_norm", (True, False))
    assert grid_lib.parse_axis("critic_hidden=[64,64],[256]") == ("critic_hidden",
                                                                ([64, 64], [256]))
    assert grid_lib.parse_fixed("actor_hidden=[64, 64]") == ("actor_hidden", [64, 64])
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        grid_lib.parse_axis("layer_norm")


def test_run_names_are_stable_and_safe():
    point = {"ln_layers": None, "critic_hidden": (64, 64), "lr_critic": 3e-4, "activation": "a/b"}
    name = grid_lib.run_name("/data/x/hopper medium.hdf5", "td3bc", point)
    assert name == ("hopper-medium_td3bc_activation-a-b_critic_hidden-64x64_ln_layers-none_"
                    "lr_critic-0.0003")
    assert grid_lib.run_name("d", "iql", dict(reversed(point.items()))) == name.replace(
        "hopper-medium_td3bc", "d_iql")
    assert grid_lib.dataset_label("seemrl/hopper-medium-v0") == "hopper-medium-v0"
    assert grid_lib.dataset_label("~/minari/hopper-medium-v0/data") == "hopper-medium-v0"
    long = grid_lib.run_name("d", "td3bc", {f"option_{i}": i for i in range(30)})
    assert len(long) <= 120 and long != grid_lib.run_name("d", "td3bc", {"option_0": 0})


def test_grid_file_and_flags_combine(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("datasets: [a.npz, b.npz]\nalgos: iql\nseeds: [0, 1]\n"
                    "grid:\n  layer_norm: [true, false]\n  expectile: [0.7, 0.9]\n"
                    "fixed:\n  steps: 50\n  fraction: 0.5\n")
    grid = grid_lib.combine(grid_lib.read_grid(path), datasets=["c.npz"],
                         axes={"fraction": (1, 0.1)}, fixed={"expectile": 0.8, "steps": 60})
    specs = grid.specs()
    assert [s.name for s in specs] == ["c_iql_fraction-1_layer_norm-true",
                                       "c_iql_fraction-1_layer_norm-false",
                                       "c_iql_fraction-0.1_layer_norm-true",
                                       "c_iql_fraction-0.1_layer_norm-false"]
    assert specs[0].train["steps"] == 60 and specs[0].train["seeds"] == (0, 1)
    assert specs[0].algo == {"expectile": 0.8, "layer_norm": True}
    path.write_text("datasets: [a]\nsweep: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        grid_lib.read_grid(path)


@pytest.mark.parametrize("argv, message", [
    (["--set", "no_such_option=1,2"], "unknown option 'no_such_option'"),
    (["--set", "fraction=1,7"], "fraction"),
    (["--fix", "layer_norm=maybe"], "layer_norm"),
    (["--set", "gamma=0.9", "--fix", "gamma=0.99"], "both"),
    (["--set", "gamma=0.9", "--set", "gamma=0.99"], "twice"),
    (["--engine", "ray", "--set", "gamma=2"], "gamma"),
])
def test_bad_options_exit_2_before_anything_trains(argv, message, hopper_npz, tmp_path, capsys):
    out = tmp_path / "sweep"
    code, _, err = run_cli(["--dataset", hopper_npz, "--out", out, *FLAGS, *argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# -- running ----------------------------------------------------------------------------------
def test_sweep_trains_every_run_then_skips_them(hopper_npz, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--dataset", hopper_npz, "--set", "reward_scale=1,2", "--out", out, *FLAGS]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    names = ["tiny_data_td3bc_reward_scale-1", "tiny_data_td3bc_reward_scale-2"]
    assert outcomes(out) == dict.fromkeys(names, "finished")
    for name in names:
        assert steps_logged(out / name) == [(10, 0), (10, 1), (20, 0), (20, 1)]
        assert json.loads((out / name / "config.json").read_text())["algo"]["critic_hidden"] == [
            32, 32]
    assert "2 finished" in stdout and "0/2" in stdout

    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert outcomes(out) == dict.fromkeys(names, "skipped") and "2 skipped" in stdout
    assert steps_logged(out / names[0]) == [(10, 0), (10, 1), (20, 0), (20, 1)]

    # Other options under the same names: reported, the finished runs left as they are.
    code, stdout, _ = run_cli([*argv, "--fix", "gamma=0.9"], capsys)
    assert code == 1 and "holds a run with other gamma" in stdout
    assert json.loads((out / names[0] / "config.json").read_text())["algo"]["gamma"] == 0.99


def test_a_failing_run_is_retried_and_reported_while_the_others_finish(hopper_npz, tmp_path,
                                                                       capsys):
    specs = [RunSpec("missing", {**two_runs(hopper_npz)[0].train,
                                 "dataset": str(tmp_path / "missing.npz")}, NETS),
             two_runs(hopper_npz)[0]]
    results = run_sweep(specs, tmp_path / "sweep", retries=1, progress=False)
    failed, ok = results
    assert (failed.outcome, failed.attempts) == ("failed", 2)
    assert "missing.npz" in failed.error and "no such file" in failed.error
    assert (tmp_path / "sweep" / "missing" / "error.txt").is_file()
    assert (ok.outcome, ok.attempts, ok.status["step"]) == ("finished", 1, 20)
    assert outcomes(tmp_path / "sweep") == {"missing": "failed", "r1": "finished"}
    tables.print_summary(results)
    assert "missing: " in capsys.readouterr().out


def test_a_retry_starts_clean_and_more_steps_extend_a_finished_run(hopper_npz, tmp_path,
                                                                  monkeypatch):
    original, calls = Trainer.run_chunk, {"n": 0}

    def crash_once(self, logger):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first chunk was logged, before any checkpoint
            raise RuntimeError("flaky machine")
        return original(self, logger)

    monkeypatch.setattr(Trainer, "run_chunk", crash_once)
    spec = two_runs(hopper_npz)[0]
    (result,) = run_sweep([spec], tmp_path, retries=1, progress=False)
    run_dir = tmp_path / spec.name
    assert (result.outcome, result.attempts) == ("finished", 2)
    assert steps_logged(run_dir) == [(10, 0), (10, 1), (20, 0), (20, 1)]  # no duplicates
    assert not (run_dir / "error.txt").exists()

    longer = RunSpec(spec.name, {**spec.train, "steps": 30}, spec.algo)
    (result,) = run_sweep([longer], tmp_path, progress=False)
    assert result.outcome == "finished" and result.status["step"] == 30
    assert steps_logged(run_dir)[-2:] == [(30, 0), (30, 1)] and len(steps_logged(run_dir)) == 6


def test_local_workers_train_runs_in_separate_processes(hopper_npz, tmp_path):
    results = run_sweep(two_runs(hopper_npz), tmp_path, workers=2, progress=False)
    assert [r.outcome for r in results] == ["finished", "finished"]
    assert all(r.status["step"] == 20 for r in results)
    for r in results:  # the seeds shared the cores: 2 cores / 2 workers
        saved = json.loads((tmp_path / r.name / "config.json").read_text())
        assert saved["train"]["seed_groups"] >= 1
    assert set(outcomes(tmp_path).values()) == {"finished"}


def test_sigterm_stops_a_sweep_that_the_same_command_continues(hopper_npz, tmp_path, capsys,
                                                              monkeypatch):
    stop_before_chunk(monkeypatch, 2)  # in the first run
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "sweep"
    argv = ["--dataset", hopper_npz, "--set", "reward_scale=1,2", "--out", out, *FLAGS,
            "--fix", "checkpoint_every=10"]
    code, _, err = run_cli(argv, capsys)
    assert code == 143 and err.count("\n") == 1 and "terminated" in err, err
    first, second = "tiny_data_td3bc_reward_scale-1", "tiny_data_td3bc_reward_scale-2"
    assert outcomes(out) == {first: "interrupted", second: "pending"}
    assert json.loads((out / first / "status.json").read_text())["step"] == 10
    assert signal.getsignal(signal.SIGTERM) == handler  # put back

    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert outcomes(out) == {first: "finished", second: "finished"}
    assert steps_logged(out / first) == [(10, 0), (10, 1), (20, 0), (20, 1)]


def sigterm_once_training(specs, out, **sweep_options):
    """Runs a sweep of long runs and SIGTERMs this process once every run has logged its first
    chunk; checks that the sweep stops and that every run saved a checkpoint on the way.
    Returns the seconds from the signal to the sweep's return."""
    status = [out / s.name / "status.json" for s in specs]
    sent = {}

    def terminate_once_all_train():
        deadline = time.monotonic() + 300
        while not all(p.exists() for p in status) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.3)  # the next chunks are computing now
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_all_train, daemon=True).start()
    with pytest.raises(Terminated):
        run_sweep(specs, out, progress=False, **sweep_options)
    stopped_s = time.monotonic() - sent["at"]
    assert set(outcomes(out).values()) == {"interrupted"}
    for s, p in zip(specs, status, strict=True):  # saved between the first chunk and the end
        assert 0 < json.loads(p.read_text())["step"] < s.train["steps"]
        assert checkpoint.exists(out / s.name)
    return stopped_s


def test_sigterm_reaches_the_worker_processes_which_save_their_runs(hopper_npz, tmp_path):
    """The sweep forwards its SIGTERM to its workers (a scheduler may signal the sweep alone)
    and returns once they have saved, without waiting for the chunks they were computing."""
    chunk = 500
    specs = [RunSpec(s.name, {**s.train, "log_every": chunk, "batch_size": 256},
                     {"critic_hidden": (256, 256), "actor_hidden": (256, 256)})
             for s in two_runs(hopper_npz, steps=100_000, checkpoint_every=100_000)]
    stopped_s = sigterm_once_training(specs, tmp_path, workers=2)
    chunk_s = min(chunk / read_jsonl(tmp_path / s.name / "metrics.jsonl")[0][
        "time/steps_per_sec"] for s in specs)
    if chunk_s < 1.0:
        pytest.skip(f"a chunk takes {chunk_s:.2f} s here: too short to tell a prompt stop")
    assert stopped_s < 0.5 * chunk_s, (stopped_s, chunk_s)


@pytest.fixture
def local_ray():
    """A local Ray instance for one test (Ray starts its processes with fork+exec). It is
    started with SIGINT ignored, as in a sweep that a shell script runs in the background
    (and under pytest-xdist): Ray's processes inherit that."""
    ray = pytest.importorskip("ray", reason="the ray engine needs `pip install seemrl[ray]`")
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 2**20)
    finally:
        signal.signal(signal.SIGINT, handler)
    yield ray
    ray.shutdown()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_ray_engine_runs_a_two_run_sweep_on_a_local_instance(local_ray, hopper_npz, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(hopper_npz.parent)  # a relative dataset path means the same to the tasks
    specs = two_runs(hopper_npz.name)
    results = run_sweep(specs, tmp_path / "sweep", engine="ray", progress=False)
    assert [r.outcome for r in results] == ["finished", "finished"], [r.error for r in results]
    assert outcomes(tmp_path / "sweep") == {"r1": "finished", "r2": "finished"}
    assert local_ray.is_initialized()  # the test's instance is left to the test
    again = run_sweep(specs, tmp_path / "sweep", engine="ray", progress=False)
    assert [r.outcome for r in again] == ["skipped", "skipped"]


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_sigterm_cancels_the_ray_tasks_which_save_their_runs(local_ray, hopper_npz, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(engines, "CANCEL_WAIT_S", 60.0)  # ample here; bounds a failure's wait
    sigterm_once_training(two_runs(hopper_npz, steps=100_000, checkpoint_every=100_000),
                          tmp_path, engine="ray")


def test_the_ray_engine_without_ray_says_how_to_install_it(hopper_npz, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install seemrl\[ray\]"):
        run_sweep(two_runs(hopper_npz), tmp_path / "sweep", engine="ray")
    assert not (tmp_path / "sweep").exists()
    code, _, err = run_cli(["--dataset", hopper_npz, "--engine", "ray", "--out",
                            tmp_path / "sweep", *FLAGS], capsys)
    assert code == 2 and "pip install seemrl[ray]" in err


def test_summary_rows_count_diverged_seeds_and_average_scores():
    seeds = {"0": {"diverged_at": 500, "final_score": 10.0, "best_score": 30.0},
             "1": {"diverged_at": None, "final_score": 20.0, "best_score": 20.0},
             "2": {"diverged_at": None, "final_score": None, "best_score": None}}
    rows = tables.summary_rows([
        RunResult("a", "out/a", "finished", {"seeds": seeds}, seconds=12.0),
        RunResult("b", "out/b", "skipped", {"seeds": seeds}),
        RunResult("c", "out/c", "failed", None, "DataError: no such file")])
    assert rows[0] | {"seconds": 0} == {"run": "a", "outcome": "finished", "diverged": 1,
                                        "seeds": 3, "final_score": 15.0, "best_score": 25.0,
                                        "seconds": 0, "error": None}
    assert rows[0]["seconds"] == 12.0 and rows[1]["seconds"] is None
    assert rows[2]["seeds"] == 0 and rows[2]["final_score"] is None


def test_dry_run_lists_the_runs_and_trains_nothing(hopper_npz, tmp_path, capsys):
    code, stdout, err = run_cli(["--dataset", hopper_npz, "--algo", "td3bc", "iql", "--set",
                                 "layer_norm=true,false", "--out", tmp_path / "s", "--dry-run",
                                 *FLAGS], capsys)
    assert code == 0, err
    assert "4 runs" in stdout and not (tmp_path / "s").exists()
