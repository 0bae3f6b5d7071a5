import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from seemrl.cli import main
from tests.conftest import stop_before_chunk

FAST = ["--steps", "4", "--log-every", "2", "--eval-every", "0", "--eval-episodes", "0",
        "--checkpoint-every", "2", "--batch-size", "16", "--critic-hidden", "16", "16",
        "--actor-hidden", "16", "16", "--no-progress"]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_resolved_config_and_flags_override_file(hopper_npz, tmp_path, capsys):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("bc_coef: 0.0\ngamma: 0.95\nseeds: [3, 4]\nlayer_norm: true\n")
    out = tmp_path / "run"
    code, stdout, err = run(["train", "--config", cfg_file, "--dataset", hopper_npz,
                             "--gamma", "0.9", "--out", out, *FAST], capsys)
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["algo"]["gamma"] == 0.9  # the flag beats the file
    assert saved["algo"]["bc_coef"] == 0.0 and saved["algo"]["layer_norm"] is True
    assert saved["train"]["seeds"] == [3, 4]
    assert "step 4/4" in stdout


def test_saved_config_is_reusable(hopper_npz, tmp_path, capsys):
    assert run(["train", "--dataset", hopper_npz, "--out", tmp_path / "a", *FAST], capsys)[0] == 0
    code, _, err = run(["train", "--config", tmp_path / "a" / "config.json", "--out",
                        tmp_path / "b", "--no-progress"], capsys)
    assert code == 0, err
    a = json.loads((tmp_path / "a" / "config.json").read_text())
    b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert a["train"] == b["train"] and a["algo"] == b["algo"]


def test_resume_extends_but_cannot_change_hyperparameters(hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    code, _, err = run(["train", "--resume", out, "--gamma", "0.5"], capsys)
    assert code == 2 and "gamma" in err and len(err.strip().splitlines()) == 1
    code, stdout, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_resume_of_a_run_saved_before_init_scheme_keeps_pytorch_init(hopper_npz, tmp_path,
                                                                      capsys, monkeypatch):
    """ReBRAC now starts from its authors' init; a run whose config.json predates the option
    was initialised with PyTorch's defaults, and its resumed config must say so (not switch)."""
    import seemrl.train as train_mod

    seen, real_train = [], train_mod.train

    def spy(train_cfg, algo_cfg, *args, **kwargs):
        seen.append(algo_cfg.init_scheme)
        return real_train(train_cfg, algo_cfg, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train", spy)
    out = tmp_path / "run"
    argv = ["train", "--algo", "rebrac", "--dataset", hopper_npz, "--out", out, *FAST]
    assert run(argv, capsys)[0] == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["algo"]["init_scheme"] == "edac"
    del saved["algo"]["init_scheme"]
    (out / "config.json").write_text(json.dumps(saved))
    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    assert code == 0, err
    assert seen == ["edac", "torch"]


def test_resume_of_a_cql_run_saved_before_corl_networks_keeps_its_networks(hopper_npz, tmp_path,
                                                                           capsys, monkeypatch):
    """CQL now starts from CORL's networks (another actor: learned log-std scalars); a run
    saved before init_scheme and actor_log_std existed must resume with the networks in its
    checkpoint."""
    import seemrl.train as train_mod

    seen, real_train = [], train_mod.train

    def spy(train_cfg, algo_cfg, *args, **kwargs):
        seen.append((algo_cfg.init_scheme, algo_cfg.actor_log_std))
        return real_train(train_cfg, algo_cfg, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train", spy)
    out = tmp_path / "run"
    argv = ["train", "--algo", "cql", "--dataset", hopper_npz, "--out", out,
            "--init-scheme", "torch", "--actor-log-std", "squash", *FAST]
    assert run(argv, capsys)[0] == 0
    saved = json.loads((out / "config.json").read_text())
    for key in ("init_scheme", "actor_log_std"):
        del saved["algo"][key]
    (out / "config.json").write_text(json.dumps(saved))
    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    assert code == 0, err
    assert seen == [("torch", "squash")] * 2


def _bad_hdf5(tmp_path, drop=None, nan=False, short=False):
    path = tmp_path / "bad.hdf5"
    n = 50
    fields = dict(observations=np.zeros((n, 11), np.float32), actions=np.zeros((n, 3), np.float32),
                  rewards=np.zeros(n, np.float32), terminals=np.zeros(n, bool),
                  timeouts=np.zeros(n, bool))
    if nan:
        fields["rewards"][7] = np.nan
    if short:
        fields["actions"] = fields["actions"][:-3]
    with h5py.File(path, "w") as f:
        for k, v in fields.items():
            if k != drop:
                f[k] = v
    return path


@pytest.mark.parametrize("argv, needle", [
    (["train", "--dataset", "/nonexistent/file.hdf5"], "file.hdf5"),
    (["train", "--dataset", "{npz}", "--fraction", "0"], "fraction"),
    (["train", "--dataset", "{npz}", "--fraction", "1.5"], "fraction"),
    (["train", "--dataset", "{npz}", "--algo", "nope"], "nope"),
    (["train", "--dataset", "{npz}", "--bogus-option", "1"], "bogus"),
    (["train", "--dataset", "{npz}", "--steps", "many"], "steps"),
    (["train", "--dataset", "{npz}", "--env", "Walker2d-v5"], "Walker2d-v5"),
    (["train", "--dataset", "{npz}", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["train", "--dataset", "{npz}", "--ln-placement", "sideways"], "placement"),
    (["train", "--dataset", "{npz}", "--optimizer", "rmsprop"], "rmsprop"),
    (["train", "--dataset", "{npz}"], "--env"),  # the npz names no environment
    (["train", "--config", "/nonexistent/run.yaml"], "run.yaml"),
    (["train", "--resume", "/nonexistent/run"], "run"),
    (["train", "--dataset", "{missing_key}"], "next_observations|actions"),
    (["train", "--dataset", "{nan}"], "rewards"),
    (["train", "--dataset", "{short}"], "actions"),
    (["data", "info", "/nonexistent/x.npz"], "x.npz"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, hopper_npz, tmp_path, capsys):
    files = {"{npz}": hopper_npz, "{missing_key}": _bad_hdf5(tmp_path, drop="actions"),
             "{nan}": None, "{short}": None}
    if "{nan}" in argv:
        files["{nan}"] = _bad_hdf5(tmp_path, nan=True)
    if "{short}" in argv:
        files["{short}"] = _bad_hdf5(tmp_path, short=True)
    argv = [str(files.get(a, a)) for a in argv] + ["--out", str(tmp_path / "out")] * (
        argv[0] == "train" and "--resume" not in argv)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits directly
        code = e.code
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    import re

    assert re.search(needle, lines[0]), lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_error_keeps_existing_run_folder(hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)
    assert code == 2 and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_saves_the_run_and_exits_143(hopper_npz, tmp_path, capsys, monkeypatch):
    from seemrl.train import Trainer

    original = stop_before_chunk(monkeypatch, 2)
    out = tmp_path / "run"
    argv = ["train", "--dataset", hopper_npz, "--out", out, *FAST, "--steps", "8",
            "--checkpoint-every", "8"]
    code, _, err = run(argv, capsys)
    assert code == 143 and err.count("\n") == 1 and "--resume" in err, err
    assert json.loads((out / "status.json").read_text())["step"] in (2, 4)
    monkeypatch.setattr(Trainer, "run_chunk", original)
    code, _, err = run(["train", "--resume", out, "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((out / "status.json").read_text())["step"] == 8


def test_stopped_program_exits_without_waiting_for_the_running_chunk(hopper_npz, tmp_path):
    # The `seemrl` program (`python -m seemrl.cli` runs the same `run`), stopped by SIGTERM
    # while a chunk computes: it saves the last whole chunk and exits at once, instead of
    # waiting at interpreter exit for the chunk still running in XLA's threads.
    out, chunk = tmp_path / "run", 1000
    argv = [sys.executable, "-m", "seemrl.cli", "train", "--dataset", str(hopper_npz),
            "--out", str(out), *FAST, "--steps", str(3 * chunk), "--log-every", str(chunk),
            "--batch-size", "256", "--critic-hidden", "256", "256", "--actor-hidden", "256",
            "256", "--seem-every", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    try:
        while not (metrics.exists() and metrics.read_text().endswith("\n")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # the second chunk is computing now
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=600)
        exit_s = time.monotonic() - start
    finally:
        proc.kill()
    chunk_s = chunk / json.loads(metrics.read_text().splitlines()[0])["time/steps_per_sec"]
    assert proc.returncode == 143 and err.count("\n") == 1 and "--resume" in err, err
    assert json.loads((out / "status.json").read_text())["step"] == chunk
    if chunk_s < 1.0:
        pytest.skip(f"a chunk takes {chunk_s:.2f} s here: too short to tell a prompt exit")
    assert exit_s < 0.5 * chunk_s, (exit_s, chunk_s)


def test_data_info(hopper_npz, capsys):
    code, out, err = run(["data", "info", hopper_npz], capsys)
    assert code == 0, err
    assert "600" in out  # the number of transitions of the fixture


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--env", "--algo", "--bc-coef", "--layer-norm", "--fraction",
                 "--seeds", "--steps", "--out", "--resume", "--config", "--ln-placement",
                 "--ln-layers", "--optimizer", "--q-bound"):
        assert flag in out


def test_env_inferred_from_dataset_name_or_metadata():
    from seemrl.evaluation import infer_env_id

    assert infer_env_id({"name": "hopper-medium-v2"}) == "Hopper-v5"
    assert infer_env_id({"source": "/d/halfcheetah_medium_expert.hdf5"}) == "HalfCheetah-v5"
    assert infer_env_id({"name": "walker2d-random"}) == "Walker2d-v5"
    assert infer_env_id({"name": "antmaze-umaze-v2"}) is None
    assert infer_env_id({"env_id": "Ant-v5", "name": "hopper"}) == "Ant-v5"
    assert infer_env_id({"name": "my_robot_logs"}) is None


def test_preset_then_file_then_flags(hopper_npz, tmp_path, capsys):
    from seemrl.presets import load_preset

    preset = load_preset("td3-divergence")
    cfg_file = tmp_path / "over.json"
    cfg_file.write_text(json.dumps({"gamma": 0.95}))
    out = tmp_path / "run"
    code, _, err = run(["train", "--preset", "td3-divergence", "--config", cfg_file,
                        "--dataset", hopper_npz, "--alpha", "1.0", "--out", out, *FAST], capsys)
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["algo"]["tau"] == preset["tau"] and saved["algo"]["bc_coef"] == preset["bc_coef"]
    assert saved["algo"]["gamma"] == 0.95  # the file beats the preset
    assert saved["algo"]["alpha"] == 1.0  # the flag beats both
    assert saved["train"]["steps"] == 4  # FAST's --steps beats the preset's 1M


def test_unknown_preset(hopper_npz, capsys):
    code, _, err = run(["train", "--preset", "nope", "--dataset", hopper_npz], capsys)
    assert code == 2 and "nope" in err and "td3-divergence" in err
