"""status.json read through seemrl.runfolder: today's layout and the one before predictions."""

import json

import pytest

from seemrl import runfolder


def _write(tmp_path, seeds):
    (tmp_path / "status.json").write_text(json.dumps({"step": 300, "steps": 500,
                                                      "seeds": seeds}))
    return runfolder.read_status(tmp_path)


def test_current_layout(tmp_path):
    s = _write(tmp_path, {"0": {"predicted_at": 100, "predicted_reason": "seem",
                                "diverged_at": 250, "stopped_at": 300, "final_score": 1.0,
                                "best_score": 2.0, "active": False},
                          "1": {"predicted_at": None, "predicted_reason": None,
                                "diverged_at": None, "stopped_at": None, "final_score": None,
                                "best_score": None, "active": True}})
    assert s.step == 300 and s.steps == 500 and not s.finished
    assert s.seeds[0] == runfolder.SeedStatus(100, "seem", 250, 300, 1.0, 2.0, False)
    assert s.seeds[1] == runfolder.SeedStatus()


def test_folders_from_before_predictions_still_read(tmp_path):
    # verdict_step / verdict_reason, and diverged_at = the step the seed was stopped at.
    s = _write(tmp_path, {"0": {"diverged_at": 800, "final_score": None, "best_score": None,
                                "active": False, "verdict_step": 600, "verdict_reason": "seem"},
                          "1": {"diverged_at": 900, "final_score": None, "best_score": None,
                                "active": False, "verdict_step": 900,
                                "verdict_reason": "q_explode"},
                          "2": {"diverged_at": None, "final_score": 3.0, "best_score": 4.0,
                                "active": True, "verdict_step": None, "verdict_reason": None}})
    assert s.seeds[0].predicted_at == 600 and s.seeds[0].stopped_at == 800
    # The old rule's q_explode clause fired after the fact: no prediction.
    assert s.seeds[1].predicted_at is None and s.seeds[1].predicted_reason is None
    assert s.seeds[1].diverged_at == 900
    assert s.seeds[2] == runfolder.SeedStatus(final_score=3.0, best_score=4.0)
    assert not s.finished  # seed 2 still active, step 300 of 500


def test_missing_or_broken(tmp_path):
    assert runfolder.read_status(tmp_path) is None
    (tmp_path / "status.json").write_text("{not json")
    assert runfolder.read_status(tmp_path) is None


def test_status_written_reads_back(tmp_path):
    status = runfolder.RunStatus(40, 100, {0: runfolder.SeedStatus(diverged_at=30,
                                                                   active=False),
                                           3: runfolder.SeedStatus(final_score=1.5)})
    runfolder.write_status(tmp_path, status)
    assert runfolder.read_status(tmp_path) == status
    assert json.loads((tmp_path / "status.json").read_text())["seeds"]["3"]["final_score"] == 1.5
    assert not runfolder.is_finished(tmp_path) and runfolder.is_finished(tmp_path, 40)


def test_partial_folders_are_cleared_and_others_left_alone(tmp_path):
    for name in ("config.json", "metrics.jsonl", "status.json.tmp", "error.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    assert runfolder.holds_only_partial(tmp_path)
    runfolder.clear_partial(tmp_path)
    assert not any(tmp_path.iterdir())
    (tmp_path / "notes.txt").write_text("mine")
    assert not runfolder.holds_only_partial(tmp_path)
    assert runfolder.holds_only_partial(tmp_path / "missing")


def test_read_run_names_the_missing_file(tmp_path):
    runfolder.write_config(tmp_path, {"train": {}, "algo": {}})
    with pytest.raises(FileNotFoundError, match="status.json"):
        runfolder.read_run(tmp_path)
