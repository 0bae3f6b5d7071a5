"""seemrl's promises under faults (docs/RELIABILITY.md): a full or read-only disk, broken
files, bad data, runs killed at any point. Every expected failure is one line naming the
file, key or option, exit code 2, nothing half-written; a killed run resumes to exactly the
run it would have been."""

import errno
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import seemrl
from seemrl import checkpoint
from seemrl.cli import main
from seemrl.data.npz import save_npz
from tests.conftest import make_dataset, stop_before_chunk
from tests.test_train import assert_same_run

FAST = ["--steps", "4", "--log-every", "2", "--eval-every", "0", "--eval-episodes", "0",
        "--checkpoint-every", "2", "--batch-size", "16", "--critic-hidden", "16", "16",
        "--actor-hidden", "16", "16", "--no-progress"]


def run(argv, capsys):
    """(exit code, stdout, stderr) of `seemrl ARGV` in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def temp_files(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.fixture
def hopper_file(tmp_path):
    """A tiny Hopper-shaped dataset that names its env (Hopper-v5), so actions are checked
    against Hopper's action space and the policy can be evaluated."""
    path = tmp_path / "hopper_tiny.npz"
    save_npz(path, make_dataset(env_id="Hopper-v5"))
    return path


# -- 1. a full or read-only disk ---------------------------------------------------------------
def disk_full_at(monkeypatch, name: str) -> None:
    """Every write of run file `name` from now on fails as on a full disk: the atomically
    written ones at their fsync (after the data went into the temporary file), metrics.jsonl
    half-way through a line."""
    from seemrl.logging import JsonlLogger

    if name == "metrics.jsonl":
        original = JsonlLogger.log

        class Full:
            def __init__(self, file):
                self.file = file

            def write(self, data):
                self.file.write(data[: len(data) // 2])
                self.file.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def __getattr__(self, attr):
                return getattr(self.file, attr)

        def log(self, records):
            self._file = Full(self._file)
            return original(self, records)

        monkeypatch.setattr(JsonlLogger, "log", log)
        return
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(f"/{name}.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name", ["config.json", "normalizer.json", "metrics.jsonl",
                                  "status.json", "checkpoint.msgpack"])
def test_disk_full_is_one_line_naming_the_file_and_leaves_no_temp_file(name, hopper_npz,
                                                                      tmp_path, capsys,
                                                                      monkeypatch):
    out = tmp_path / "run"
    disk_full_at(monkeypatch, name)
    code, _, err = run(["train", "--dataset", hopper_npz, "--out", out, *FAST, "--steps", "6",
                        "--checkpoint-every", "4"], capsys)
    line = one_line(err)
    assert code == 2 and f"{out / name}: No space left on device" in line, line
    assert temp_files(out) == []
    if checkpoint.exists(out):  # the work up to it is kept, and the message says how to go on
        assert f"--resume {out}" in line
        monkeypatch.undo()  # space was freed
        code, _, err = run(["train", "--resume", out, "--no-progress"], capsys)
        assert code == 0, err
        assert json.loads((out / "status.json").read_text())["step"] == 6


def test_disk_full_in_a_sweep_names_sweep_json(hopper_npz, tmp_path, capsys, monkeypatch):
    disk_full_at(monkeypatch, "sweep.json")
    code, _, err = run(["sweep", "--dataset", hopper_npz, "--out", tmp_path / "sw", *FAST[:12],
                        "--no-progress"], capsys)
    assert code == 2 and "sweep.json: No space left on device" in one_line(err)
    assert temp_files(tmp_path / "sw") == []


def test_disk_full_while_writing_a_dataset(tmp_path, monkeypatch):
    from seemrl.data import save_d4rl
    from seemrl.types import WriteError

    real_savez = np.savez

    def savez(file, **arrays):  # half the file lands, then the disk is full
        real_savez(file, **arrays)
        size = os.path.getsize(file)
        os.truncate(file, size // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(WriteError, match=r"data\.npz: No space left on device"):
        save_npz(tmp_path / "data.npz", make_dataset(n=60))

    def create_group(self, name, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(h5py.File, "create_group", create_group)
    with pytest.raises(WriteError, match=r"data\.hdf5: No space left on device"):
        save_d4rl(tmp_path / "data.hdf5", make_dataset(n=60))
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_out_is_told_before_the_data_loads(hopper_npz, tmp_path, capsys,
                                                       monkeypatch):
    import seemrl.data

    real_mkdir = os.mkdir
    ro = tmp_path / "ro"

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(ro)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    def load_dataset(spec):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(seemrl.data, "load_dataset", load_dataset)
    code, _, err = run(["train", "--dataset", hopper_npz, "--out", ro / "run", *FAST], capsys)
    assert code == 2 and f"{ro / 'run'}: Read-only file system" in one_line(err)

    (tmp_path / "a-file").write_text("")
    code, _, err = run(["train", "--dataset", hopper_npz, "--out", tmp_path / "a-file", *FAST],
                       capsys)
    assert code == 2 and "a-file is a file" in one_line(err)


def test_a_run_that_fails_before_it_starts_leaves_no_folder(tmp_path, capsys):
    code, _, err = run(["train", "--dataset", tmp_path / "missing.npz", "--out",
                        tmp_path / "a" / "b" / "run", *FAST], capsys)
    assert code == 2 and "missing.npz" in one_line(err)
    assert not (tmp_path / "a").exists()


def test_an_unexpected_exception_keeps_its_traceback(hopper_npz, tmp_path, monkeypatch):
    from seemrl.train import Trainer

    def broken(self, logger):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Trainer, "run_chunk", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "--dataset", str(hopper_npz), "--out", str(tmp_path / "run"), *FAST])


# -- 2. a corrupt checkpoint ------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_says_what_to_do_and_the_advice_works(damage, hopper_npz, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    path = out / checkpoint.CHECKPOINT
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": os.urandom(len(data)),
                      "empty": b""}[damage])
    code, _, err = run(["train", "--resume", out, "--no-progress"], capsys)
    line = one_line(err)
    assert code == 2 and f"checkpoint {path} is unreadable" in line, line
    advice = line.split("`")[1].split()  # seemrl train --config RUN/config.json --out RUN
    path.unlink()
    code, _, err = run([*advice[1:], "--no-progress"], capsys)
    assert code == 0, err
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] \
        == [2, 4]


# -- 3. actions outside the action space ------------------------------------------------------
def test_actions_outside_the_action_space_are_refused_or_clipped_on_request(tmp_path, capsys):
    data = make_dataset(env_id="Hopper-v5")
    data.actions[17, 2] = 5.0
    data.actions[40, 0] = -3.0
    path = tmp_path / "hopper_bad_actions.npz"
    save_npz(path, data)
    from seemrl.data import load_dataset
    from seemrl.tables import action_space_line

    code, stdout, err = run(["data", "info", path], capsys)
    assert code == 0 and "action space" in stdout, err
    assert action_space_line(load_dataset(path)) == (
        "Hopper-v5 [-1, 1]: 2 rows outside (first: row 17, 5); seemrl train refuses the data, "
        "or clips them with --clip-actions")
    code, _, err = run(["train", "--dataset", path, "--out", tmp_path / "a", *FAST], capsys)
    line = one_line(err)
    assert code == 2 and "action 5 at row 17" in line and "[-1, 1]" in line, line
    assert "--clip-actions" in line
    code, _, err = run(["train", "--dataset", path, "--out", tmp_path / "b", *FAST,
                        "--clip-actions"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["clip_actions"]


def test_data_info_says_when_all_actions_fit(hopper_file, hopper_npz):
    from seemrl.data import load_dataset
    from seemrl.tables import action_space_line

    assert action_space_line(load_dataset(hopper_file)) == "Hopper-v5 [-1, 1]: every action inside"
    assert action_space_line(load_dataset(hopper_npz)).startswith("not checked: the dataset "
                                                                   "names no env")


# -- 4. resume on other data ------------------------------------------------------------------
@pytest.mark.parametrize("other", ["same size", "fewer rows"])
def test_resume_refuses_other_data_unless_told_and_then_keeps_the_normaliser(
        other, hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    normalizer = (out / "normalizer.json").read_text()
    fingerprint = json.loads((out / "config.json").read_text())["dataset_fingerprint"]
    assert fingerprint["transitions"] == 600 and len(fingerprint["sha256"]) == 64
    save_npz(hopper_npz, make_dataset(n=600 if other == "same size" else 300, seed=1))
    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    line = one_line(err)
    assert code == 2 and "is not the one run" in line and "--accept-other-data" in line, line
    assert json.loads((out / "status.json").read_text())["step"] == 4  # untouched

    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress",
                        "--accept-other-data"], capsys)
    assert code == 0, err
    assert (out / "normalizer.json").read_text() == normalizer  # the run's own, kept
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset_fingerprint"] != fingerprint  # the data it now goes on with
    assert saved["dataset_size"] == (600 if other == "same size" else 300)


def test_a_run_folder_from_before_fingerprints_still_resumes(hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    saved = json.loads((out / "config.json").read_text())
    del saved["dataset_fingerprint"]
    (out / "config.json").write_text(json.dumps(saved))
    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    assert code == 0, err
    assert "dataset_fingerprint" in json.loads((out / "config.json").read_text())


# -- 5. --resume --steps N is recorded ----------------------------------------------------------
def test_an_extended_run_stopped_again_resumes_to_its_new_end(hopper_npz, tmp_path, capsys,
                                                              monkeypatch):
    from seemrl.train import Trainer

    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    original = stop_before_chunk(monkeypatch, 2, how="ctrl-c")  # extended to 8, stopped at 6
    code, _, _ = run(["train", "--resume", out, "--steps", "8", "--no-progress"], capsys)
    assert code == 130
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 8
    monkeypatch.setattr(Trainer, "run_chunk", original)
    code, stdout, err = run(["train", "--resume", out, "--no-progress"], capsys)
    assert code == 0, err
    assert "step 8/8" in stdout
    code, _, err = run(["train", "--resume", out, "--steps", "4", "--no-progress"], capsys)
    assert code == 2 and "--steps 4 is fewer than the 8 steps" in one_line(err)


# -- 6. non-numeric fields ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_a_non_numeric_field_is_one_line_naming_the_key(fmt, tmp_path, capsys):
    n = 50
    fields = dict(observations=np.zeros((n, 11), np.float32), actions=np.zeros((n, 3), np.float32),
                  rewards=np.array([f"{i}.0" for i in range(n)]), terminals=np.zeros(n, bool),
                  timeouts=np.zeros(n, bool))
    path = tmp_path / f"strings.{fmt}"
    if fmt == "hdf5":
        fields["rewards"] = fields["rewards"].astype("S")
        with h5py.File(path, "w") as f:
            for k, v in fields.items():
                f[k] = v
    else:
        np.savez(path, **fields)
    for argv in (["data", "info", path],
                 ["train", "--dataset", path, "--out", tmp_path / "run", *FAST]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "key 'rewards' holds" in one_line(err) and "not numbers" in err


# -- 7. diagnose with nothing logged yet --------------------------------------------------------
def test_diagnose_before_the_first_log_point_says_there_is_nothing_yet(hopper_npz, tmp_path,
                                                                       capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    (out / "metrics.jsonl").write_text("")  # as a run just started leaves it
    code, _, err = run(["diagnose", out, "--no-plots"], capsys)
    assert code == 2 and "nothing to diagnose yet" in one_line(err)


# -- also: killed before the first checkpoint; a lost normalizer.json --------------------------
def test_a_run_killed_before_its_first_checkpoint_is_no_dead_end(hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", hopper_npz, "--out", out, *FAST]
    assert run(argv, capsys)[0] == 0
    ref = {p: (out / p).read_bytes() for p in ("config.json", "normalizer.json")}
    for leftover in (checkpoint.CHECKPOINT, "status.json"):  # as SIGKILL at step 2 leaves it
        (out / leftover).unlink()
    (out / "checkpoint.msgpack.tmp").write_bytes(b"half")
    code, _, err = run(["train", "--resume", out, "--no-progress"], capsys)
    assert code == 0 and "starting it again from step 0" in err, err
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] \
        == [2, 4]
    assert temp_files(out) == []
    (out / checkpoint.CHECKPOINT).unlink()
    assert run(argv, capsys)[0] == 0  # a fresh start may reuse it too
    assert {p: (out / p).read_bytes() for p in ref} == ref
    (out / "notes.txt").write_text("mine")
    (out / checkpoint.CHECKPOINT).unlink()
    code, _, err = run(argv, capsys)  # never a folder holding anything else
    assert code == 2 and "is not empty" in one_line(err)


def test_a_lost_normalizer_is_written_again_on_resume(hopper_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--dataset", hopper_npz, "--out", out, *FAST], capsys)[0] == 0
    normalizer = (out / "normalizer.json").read_text()
    (out / "normalizer.json").unlink()
    code, _, err = run(["train", "--resume", out, "--steps", "6", "--no-progress"], capsys)
    assert code == 0, err
    assert (out / "normalizer.json").read_text() == normalizer


# -- kills: SIGKILL at random points, then --resume -------------------------------------------
KILL_RUN = ["--steps", "24", "--log-every", "2", "--eval-every", "4", "--eval-episodes", "1",
            "--checkpoint-every", "6", "--seem-every", "4", "--seem-probe", "16",
            "--batch-size", "16", "--critic-hidden", "16", "16", "--actor-hidden", "16", "16",
            "--seeds", "0", "1", "--seed-groups", "1", "--no-progress"]
VARIANTS = {"log": ("before", "torn"), "status": ("tmp", "renamed", "after"),
            "checkpoint": ("tmp", "renamed", "after"), "eval": ("before", "after"),
            "time": ("",)}


def _seemrl(site: str, variant: str, step: int, argv: list[str]) -> subprocess.Popen:
    """`seemrl ARGV` in a child process that kills itself at (site, variant, step)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(pathlib.Path(seemrl.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    script = pathlib.Path(__file__).with_name("kill_at.py")
    return subprocess.Popen([sys.executable, str(script), site, variant, str(step), "--",
                             *map(str, argv)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_when_at(proc: subprocess.Popen, out: pathlib.Path, step: int, rng) -> None:
    """SIGKILL `proc` at a random moment once it has written a status.json at `step` or
    later."""
    start = time.time()
    while proc.poll() is None:
        try:
            status = out / "status.json"
            reached = status.stat().st_mtime > start and json.loads(status.read_text())[
                "step"] >= step
        except (OSError, ValueError, KeyError):
            reached = False
        if reached:
            time.sleep(rng.uniform(0.0, 0.05))
            proc.kill()
            return
        time.sleep(0.005)


def kill_and_resume(out: pathlib.Path, dataset, points) -> int:
    """Train into `out` in a child process killed at each (site, variant, step) of `points` in
    turn, resumed after each kill, the last time here; returns how many times it was killed."""
    kills = 0
    for i, (site, variant, step) in enumerate(points):
        argv = (["train", "--dataset", dataset, "--out", out, *KILL_RUN] if i == 0
                else ["train", "--resume", out, "--no-progress"])
        proc = _seemrl(site, variant, step, argv)
        if site == "time":
            _kill_when_at(proc, out, step, random.Random(step))
        _, err = proc.communicate(timeout=300)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, (site, variant, step, err)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    return kills


def kill_points(rng: random.Random, n: int, sites) -> list[tuple[str, str, int]]:
    """`n` kill points at increasing steps below the last (so each is reached again after the
    kill before it: a resume starts at or before the step it was killed at)."""
    steps = sorted(rng.sample(range(1, 23), n))
    return [(site, rng.choice(VARIANTS[site]), step)
            for site, step in zip(sites, steps, strict=True)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, xla_cache):
    """The uninterrupted run (here: the same compiled programs as in a child process, from
    the session's XLA cache), and its dataset."""
    base = tmp_path_factory.mktemp("uninterrupted")
    dataset = base / "hopper_tiny.npz"
    save_npz(dataset, make_dataset(env_id="Hopper-v5"))
    assert main(["train", "--dataset", str(dataset), "--out", str(base / "run"),
                 *KILL_RUN]) == 0
    return base / "run", dataset


def assert_resumed_exactly(run_dir: pathlib.Path, ref: pathlib.Path) -> None:
    assert_same_run(run_dir, ref)  # every parameter bit, every logged value
    for name in ("status.json", "config.json"):
        assert json.loads((run_dir / name).read_text()) == json.loads((ref / name).read_text())
    assert temp_files(run_dir) == []


def test_killed_at_a_log_an_evaluation_and_a_checkpoint_write_resumes_exactly(reference,
                                                                             tmp_path):
    ref, dataset = reference
    rng = random.Random(24)
    sites = rng.sample(["log", "eval", "checkpoint"], 3)
    points = kill_points(rng, 3, sites)
    assert kill_and_resume(tmp_path / "run", dataset, points) == 3, points
    assert_resumed_exactly(tmp_path / "run", ref)


@pytest.mark.slow
@pytest.mark.parametrize("chain", range(4))
def test_killed_at_random_points_resumes_exactly(chain, reference, tmp_path):
    """4 chains of 6 kills: 24 kill points over log, status, evaluation and checkpoint writes
    (each cut before, in the middle of or after the write) and at random moments."""
    ref, dataset = reference
    rng = random.Random(1000 + chain)
    sites = [rng.choice(list(VARIANTS)) for _ in range(6)]
    points = kill_points(rng, 6, sites)
    assert kill_and_resume(tmp_path / "run", dataset, points) == 6, points
    assert_resumed_exactly(tmp_path / "run", ref)
