"""experiments/learning_evidence.py: the docs' evidence table is built from run folders only."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from seemrl import algos
from seemrl import config as config_lib
from seemrl.presets import load_preset
from seemrl.runconfig import TrainConfig, split

SCRIPT = pathlib.Path(__file__).parents[1] / "experiments" / "learning_evidence.py"


@pytest.fixture(scope="module")
def evidence():
    spec = importlib.util.spec_from_file_location("learning_evidence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: pathlib.Path, preset: str, changes: dict, scores: dict, seem: list,
              dataset: str = "hopper-medium", falls: dict | None = None):
    """A run folder as `seemrl train` leaves it: config.json, metrics.jsonl, status.json;
    `falls` (seed -> fraction at each evaluation) as runs log it since evaluation counts falls."""
    flat = {**load_preset(preset), **changes}
    algo = algos.get(flat["algo"])
    train, algo_part = split(flat, algo.Config)
    train.update(dataset=f"/data/{dataset}-v0.hdf5", seeds=sorted(scores), steps=2000)
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "train": config_lib.to_dict(config_lib.build(TrainConfig, train)),
        "algo": config_lib.to_dict(config_lib.build(algo.Config, algo_part))}))
    lines = []
    for seed, curve in scores.items():
        for i, score in enumerate(curve):
            record = {"step": 1000 * (i + 1), "seed": seed, "eval/normalized_score": score}
            if falls is not None:
                record["eval/terminated_frac"] = falls[seed][i]
            lines.append(record)
    lines += [{"step": 100 * (i + 1), "seed": 0, "seem/normalized": v} for i, v in enumerate(seem)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    (path / "status.json").write_text(json.dumps({"step": 2000, "steps": 2000, "seeds": {
        str(s): {"final_score": c[-1], "best_score": max(c)} for s, c in scores.items()}}))


def test_row_reads_curve_seem_and_changed_options(evidence, tmp_path):
    rng = np.random.default_rng(0)
    scores = {0: list(rng.uniform(0, 100, 2)), 1: list(rng.uniform(0, 100, 2))}
    seem = list(rng.uniform(0, 0.5, 5))
    run = tmp_path / "run"
    falls = {0: [0.0, 0.3], 1: [1.0, 0.8]}
    write_run(run, "iql-locomotion", {"beta": 10.0}, scores, seem, falls=falls)

    row = evidence.row(run)

    assert row["algo"] == "iql" and row["dataset"] == "hopper-medium"
    assert row["settings"] == "preset iql-locomotion; beta=10.0"
    assert row["seeds"] == [0, 1] and row["curve_steps"] == [1000, 2000]
    np.testing.assert_allclose(row["curve"], np.mean([scores[0], scores[1]], axis=0))
    assert row["final"] == pytest.approx(np.mean([scores[0][-1], scores[1][-1]]))
    assert row["best"] == pytest.approx(np.mean([max(scores[0]), max(scores[1])]))
    assert row["seem_median"] == pytest.approx(np.median(seem))
    assert row["seem_max"] == pytest.approx(max(seem))
    assert row["final_falls"] == pytest.approx(np.mean([falls[0][-1], falls[1][-1]]))
    table = evidence.markdown([row])
    assert f"| {100 * row['final_falls']:.0f} % |" in table
    assert f"{np.median(seem):.3f} ({max(seem):.3f})" in table
    assert "66.3 (Kostrikov et al. 2021)" in table     # IQL's hopper-medium in PUBLISHED


def test_unchanged_preset_names_no_options_and_run_without_seem_or_falls(evidence, tmp_path):
    run = tmp_path / "run"
    write_run(run, "td3bc-locomotion", {}, {0: [10.0, 20.0]}, [])
    row = evidence.row(run)
    assert row["settings"] == "preset td3bc-locomotion"
    assert row["seem_median"] is None and row["final_falls"] is None
    assert evidence.markdown([row]).count("| — |") == 2  # SEEM, and falls (not logged)


def test_td3bc_without_its_q_term_is_labelled_and_compared_as_bc(evidence, tmp_path):
    write_run(tmp_path / "bc", "td3bc-locomotion", {"alpha": 0.0}, {0: [1.0]}, [],
              dataset="walker2d-medium")
    write_run(tmp_path / "td3bc", "td3bc-locomotion", {"alpha": 1.0}, {0: [1.0]}, [],
              dataset="walker2d-medium")
    bc, td3bc = evidence.row(tmp_path / "bc"), evidence.row(tmp_path / "td3bc")
    assert (bc["algo"], td3bc["algo"]) == ("bc", "td3bc")
    assert bc["settings"] == "preset td3bc-locomotion; alpha=0.0"
    table = evidence.markdown([bc, td3bc]).splitlines()
    assert table[2].startswith("| BC (TD3+BC, α = 0) |")
    assert bc["published"] == evidence.PUBLISHED["bc"]["walker2d-medium"]
    assert td3bc["published"] == evidence.PUBLISHED["td3bc"]["walker2d-medium"]


def test_a_tie_goes_to_the_preset_named_after_the_dataset(evidence, tmp_path):
    # diffql-walker2d-medium and diffql-locomotion set the same values; hopper's clips at 9.
    write_run(tmp_path / "walker", "diffql-locomotion", {}, {0: [1.0]}, [],
              dataset="walker2d-medium")
    write_run(tmp_path / "hopper", "diffql-locomotion", {}, {0: [1.0]}, [])
    assert evidence.row(tmp_path / "walker")["settings"] == "preset diffql-walker2d-medium"
    assert evidence.row(tmp_path / "hopper")["settings"] == "preset diffql-locomotion"


def test_main_refuses_a_folder_that_is_not_a_run(evidence, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert evidence.main([str(tmp_path / "empty")]) == 2
    assert "not a finished seemrl run folder" in capsys.readouterr().err


def test_per_seed_rows_read_each_seeds_own_curve_falls_and_seem(evidence, tmp_path, capsys):
    rng = np.random.default_rng(1)
    scores = {1: list(rng.uniform(0, 100, 3)), 2: list(rng.uniform(0, 100, 3))}
    falls = {1: list(rng.uniform(0, 1, 3)), 2: list(rng.uniform(0, 1, 3))}
    run = tmp_path / "run"
    write_run(run, "td3bc-locomotion", {"layer_norm": True}, scores, [], falls=falls)
    seem = {1: list(rng.uniform(0, 0.5, 4)), 2: list(rng.uniform(0, 0.5, 4))}
    with open(run / "metrics.jsonl", "a") as f:
        for seed, values in seem.items():
            for i, v in enumerate(values):
                f.write(json.dumps({"step": 500 * (i + 1), "seed": seed,
                                    "seem/normalized": v}) + "\n")

    for seed in (1, 2):
        r = evidence.row(run, seed)
        assert r["seeds"] == [seed]
        np.testing.assert_allclose(r["curve"], scores[seed])
        assert r["final"] == pytest.approx(scores[seed][-1])
        assert r["best"] == pytest.approx(max(scores[seed]))
        assert r["final_falls"] == pytest.approx(falls[seed][-1])
        assert r["seem_median"] == pytest.approx(np.median(seem[seed]))
        assert r["seem_max"] == pytest.approx(max(seem[seed]))

    assert evidence.main(["--per-seed", str(run)]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 2
    assert [r.split(" | ")[4] for r in rows] == ["1", "2"]   # the seeds column


def test_algorithms_summary_pools_seeds_per_critic_and_writes_under_its_heading(tmp_path):
    import sys

    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("algorithms_summary",
                                                  SCRIPT.parent / "algorithms_summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    rng = np.random.default_rng(1)
    runs = []
    for name, ln in (("plain", False), ("ln", True)):
        scores = {s: list(rng.uniform(0, 100, 4)) for s in range(3)}
        write_run(tmp_path / name, "td3bc-locomotion", {"layer_norm": ln}, scores, [])
        runs.append((tmp_path / name, scores))
    doc = tmp_path / "ALGORITHMS.md"
    doc.write_text(f"# Algorithms\n\nprose kept\n\n{summary.HEADING}\n\nold table\n")
    assert summary.main([str(r) for r, _ in runs] + ["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Algorithms\n\nprose kept\n") and "old table" not in text
    for (_, scores), critic in zip(runs, ("plain", "LayerNorm"), strict=True):
        mean = np.mean([np.mean(c[-summary.LAST:]) for c in scores.values()])
        line = next(x for x in text.splitlines() if f"| {critic} |" in x)
        assert f"| 3 | {mean:.1f} [" in line
    assert summary.main([str(runs[0][0]), "--write", str(tmp_path / "none.md")]) == 2
