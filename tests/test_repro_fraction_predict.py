"""repro fraction and predict: the smoke scale end to end, and the scoring on synthetic runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from seemrl import cli, runfolder, stats
from seemrl.diagnostics.verdict import VerdictConfig
from seemrl.repro import fraction, predict


# -- predict: scoring on records with known answers -------------------------------------------
def _rec(diverged_at, predicted_at, reason=None, steps=10_000):
    return {"diverged_at": diverged_at, "predicted_at": predicted_at, "steps": steps,
            "reason": reason or ("seem" if predicted_at is not None else None)}


def test_score_recall_false_alarms_and_lead():
    records = [
        _rec(5000, 2000),               # predicted ahead: lead 3000, 0.6 of the time
        _rec(8000, 6000, "q_trend"),    # ahead: lead 2000, 0.25
        _rec(4000, None),               # missed (a verdict at/after the fact is none)
        _rec(None, 600),                # calm, alarm at 600 in a 10 000-step run: false
        _rec(None, 4000),               # calm, alarm at 4 000: the run is too short to say
        _rec(None, None),               # calm, quiet
        _rec(None, None),
    ]
    s = predict.score(records)
    assert (s["seed_runs"], s["diverged"], s["calm"], s["predicted_ahead"]) == (7, 3, 4, 2)
    assert s["recall"] == pytest.approx(2 / 3)
    assert (s["false_alarms"], s["unsettled_alarms"]) == (1, 1)
    assert s["false_alarm_rate"] == pytest.approx(1 / 4)
    assert s["false_alarm_rate_with_unsettled"] == pytest.approx(2 / 4)
    assert s["lead_steps_median"] == 2500
    assert s["lead_fraction_median"] == pytest.approx((0.6 + 0.25) / 2)
    assert s["fired_by"] == {"seem": 3, "q_trend": 1}


def test_score_empty_and_all_calm():
    s = predict.score([])
    assert s["seed_runs"] == 0 and s["recall"] is None and s["false_alarm_rate"] is None
    s = predict.score([_rec(None, None)] * 3)
    assert s["recall"] is None and s["false_alarm_rate"] == 0.0
    assert s["lead_fraction_median"] is None


def _seed_run(seem, q, diverged_at, ceiling=100.0, every=100):
    rows = [{"step": every * (i + 1), "seed": 0, "seem/normalized": s, "seem/q_data": v,
             "seem/ntk_cos": 1.0} for i, (s, v) in enumerate(zip(seem, q, strict=True))]
    return predict.SeedRun("r", 0, 10_000, ceiling, diverged_at, rows)


def test_judge_counts_only_verdicts_before_the_fact():
    rule = VerdictConfig(seem_threshold=0.1, consecutive=3)
    # SEEM > 0.1 from step 100 with Q rising: the rule fires at step 300, Q passes at 550.
    rec = predict.judge(_seed_run([0.5] * 5, [10, 20, 40, 80, 160], 550), rule)
    assert (rec["predicted_at"], rec["reason"], rec["diverged_at"]) == (300, "seem", 550)
    # The same series, but Q passed the ceiling at step 250 (between measurements): the
    # verdict at 300 came after the fact, so there is no prediction.
    rec = predict.judge(_seed_run([0.5] * 5, [10, 20, 40, 80, 160], 250), rule)
    assert rec["predicted_at"] is None and rec["reason"] is None


def test_calibration_picks_from_the_grid_by_recall_then_lead():
    seeds = [_seed_run([0.5] * 6, [10, 20, 30, 40, 50, 60], 1000),     # diverges at 1000
             _seed_run([0.03] * 6, [10, 11, 12, 12, 12, 12], None)]    # calm, SEEM 0.03
    best, rows = predict.calibrate(seeds, {"seem_threshold": (0.02, 0.1),
                                           "consecutive": (1, 3)})
    assert len(rows) == 4
    # 0.02 flags the calm seed (a false alarm); 0.1 with one measurement has the longest lead.
    assert (best.seem_threshold, best.consecutive) == (0.1, 1)


def test_families_are_fixed_and_held_apart():
    cal, held = predict.CALIBRATION, predict.HELD_OUT
    predict.check_families(cal, held)
    assert not {c["dataset"] for c in cal} & {c["dataset"] for c in held}
    assert len(held) * len(predict.SCALES["cpu"]["seeds"]) >= 60
    assert len({c["dataset"] for c in held}) >= 4
    assert any("medium-replay" in c["dataset"] for c in held)
    assert any("medium-expert" in c["dataset"] for c in held)
    for key in ("fraction", "gamma", "optimizer", "layer_norm", "tau", "bc_coef"):
        assert len({c[key] for c in held}) >= 2, key
    assert {1.0, 0.1} <= {c["bc_coef"] for c in held}
    with pytest.raises(ValueError, match="repeats calibration"):
        predict.check_families(cal, [*held, cal[0]])


# -- fraction: statistics and reading on synthetic run folders -------------------------------
def test_bootstrap_ci_known_data():
    ci = stats.mean_ci([3.0] * 5)
    assert (ci["mean"], ci["lo"], ci["hi"], ci["n"]) == (3.0, 3.0, 3.0, 5)  # zero width
    one = stats.mean_ci([7.0, None])
    assert (one["mean"], one["lo"], one["hi"], one["n"]) == (7.0, None, None, 1)
    assert stats.mean_ci([1.0, 2.0, 9.0]) == stats.mean_ci([1.0, 2.0, 9.0])  # seeded
    # Coverage: the 95 % interval of 20 normal draws holds the true mean most of the time.
    rng = np.random.default_rng(1)
    hits = [(c := stats.mean_ci(rng.normal(5.0, 2.0, 20), n=2000))["lo"] <= 5.0 <= c["hi"]
            for _ in range(200)]
    assert 0.86 <= np.mean(hits) <= 0.99
    assert stats.excludes_zero({"lo": 0.5, "hi": 2}) == 1
    assert stats.excludes_zero({"lo": -1, "hi": 2}) == 0
    g = stats.grouped_mean_ci([[1.0, 1.0], [3.0, 3.0, 3.0]])
    assert (g["mean"], g["lo"], g["hi"], g["n"]) == (2.0, 2.0, 2.0, [2, 3])


def _run_folder(path, evals, steps=50, step=None, stopped_at=None, diverged_at=None,
                seem=None):
    """A run folder as the trainer writes it: evals {seed: [score at step 10, 20, ...]}."""
    path.mkdir(parents=True)
    seeds = {str(s): {"active": stopped_at is None or s not in stopped_at,
                      "predicted_at": None, "predicted_reason": None,
                      "diverged_at": (diverged_at or {}).get(s),
                      "stopped_at": (stopped_at or {}).get(s),
                      "final_score": v[-1], "best_score": max(v)} for s, v in evals.items()}
    (path / "status.json").write_text(json.dumps(
        {"step": steps if step is None else step, "steps": steps, "seeds": seeds}))
    rows = []
    for s, v in evals.items():
        for k, score in enumerate(v):
            st = 10 * (k + 1)
            row = {"step": st, "seed": s, "eval/normalized_score": score,
                   "time/steps_per_sec": 100.0}
            if stopped_at and s in stopped_at and st > stopped_at[s]:
                row = {"step": st, "seed": s, "stopped": True, "eval/normalized_score": score}
            if seem is not None:
                row["seem/normalized"] = seem[s] * (k + 1)
            rows.append(row)
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_score_is_the_mean_of_the_last_evaluations(tmp_path):
    _run_folder(tmp_path / "r", {0: [1.0, 2.0, 10.0, 20.0, 30.0], 1: [5.0, 5.0, 50.0, 0.0, 1.0]},
                stopped_at={1: 30}, diverged_at={1: 25}, seem={0: 0.01, 1: 0.2})
    # A resume that re-logged step 50 of seed 0: the row counts once.
    with (tmp_path / "r" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 50, "seed": 0, "eval/normalized_score": 30.0}) + "\n")
    res = runfolder.read_results(tmp_path / "r", last=3)
    assert res[0].score == pytest.approx(20.0) and res[0].evaluations == 3
    assert res[1].score == pytest.approx(17.0)  # the stopped seed's frozen evaluations count
    assert (res[1].stopped, res[1].diverged_at, res[0].stopped) == (True, 25, False)
    assert res[0].seem_final == pytest.approx(0.05)
    assert runfolder.read_results(tmp_path / "r", last=10)[0].evaluations == 5
    # 50 steps at 100 steps/s, seed 0's rows (the seeds train side by side).
    assert runfolder.training_seconds(tmp_path / "r") == pytest.approx(0.5)


P_PARTIAL = {"datasets": ["hopper-medium", "walker2d-medium"], "score_last": 3,
             "eval_episodes": 10, "evals": 5, "log_every": 10,
             "algos": {"td3bc": {"steps": 50, "fractions": [0.01, 1.0], "seeds": [0, 1, 2]}}}


def _partial_runs(root, unfinished=(), missing=(), gain_small=30.0):
    for ds in P_PARTIAL["datasets"]:
        for f in (0.01, 1.0):
            for ln in (False, True):
                name = fraction.run_name("td3bc", ds, f, ln)
                if name in missing:
                    continue
                base = 40.0 + (gain_small if ln and f == 0.01 else 0.0) + (2.0 if ln else 0.0)
                evals = {s: [base + s] * 5 for s in range(3)}
                _run_folder(root / name, evals, step=20 if name in unfinished else None)


def test_partial_runs_give_a_report_with_pending_cells(tmp_path):
    noln = fraction.run_name("td3bc", "walker2d-medium", 0.01, False)
    ln = fraction.run_name("td3bc", "hopper-medium", 1.0, True)
    _partial_runs(tmp_path, unfinished={noln}, missing={ln})
    cells = fraction.collect(P_PARTIAL, tmp_path)
    assert len(cells) == 4
    pending = {(c["dataset"], c["fraction"], k) for c in cells for k in fraction.CRITICS
               if not c[k]["finished"]}
    assert pending == {("walker2d-medium", 0.01, "no_ln"), ("hopper-medium", 1.0, "ln")}
    s = fraction.summarize(cells, P_PARTIAL)["td3bc"]
    assert (s["verdict"], s["runs_finished"], s["runs"]) == ("not yet", 6, 8)
    # The finished 1 % dataset still reads: +32 on hopper, walker2d left out (pending).
    assert s["by_fraction"]["0.01"]["gain"]["mean"] == pytest.approx(32.0)
    assert s["by_fraction"]["0.01"]["datasets_finished"] == 1
    results = {"runs_finished": 6, "runs": 8, "training_cpu_hours": 0.0,
               "training_cpu_hours_means": "x", "gpu": None}
    text = fraction.markdown(cells, fraction.summarize(cells, P_PARTIAL), P_PARTIAL, results)
    assert "not yet: 6 of 8 runs finished" in text
    assert f"{noln} (step 20 of 50)" in text and f"{ln} (step 0 of 50)" in text


def test_claim_verdicts_from_the_cis(tmp_path):
    _partial_runs(tmp_path / "a")
    s = fraction.summarize(fraction.collect(P_PARTIAL, tmp_path / "a"), P_PARTIAL)["td3bc"]
    assert s["verdict"] == "holds"  # +32 at 1 %, +2 at 100 %, seeds identical across critics
    assert s["gain_change_small_minus_large"]["mean"] == pytest.approx(30.0)
    assert "the paper's claim holds here" in fraction.statement("td3bc", s)
    _partial_runs(tmp_path / "b", gain_small=-20.0)
    s = fraction.summarize(fraction.collect(P_PARTIAL, tmp_path / "b"), P_PARTIAL)["td3bc"]
    assert s["verdict"] == "contradicted"


# -- both at smoke scale, through the CLI -------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    codes = {name: cli.main(["repro", name, "--scale", "smoke", "--out", str(tmp),
                             "--data-dir", str(tmp / "data"), "--no-progress"])
             for name in ("fraction", "predict")}
    return tmp, codes


def _record(tmp, name):
    out = tmp / name
    assert (out / "section.md").is_file()
    record = json.loads((out / "results.json").read_text())
    for fig in record["figures"]:
        assert (out / fig).stat().st_size > 10_000
    return out, record


def test_fraction_smoke(smoke):
    tmp, codes = smoke
    assert codes["fraction"] == 0
    out, record = _record(tmp, "fraction")
    assert record["figures"] == ["fraction.png", "fraction_scores.png"]
    p = fraction.SCALES["smoke"]
    cells = record["results"]["cells"]
    assert len(cells) == sum(len(a["fractions"]) for a in p["algos"].values())
    for c in cells:
        for k in ("ln", "no_ln"):
            assert c[k]["finished"]
            assert len(c[k]["score"]) == len(c["seeds"])
            assert all(isinstance(v, float) for v in c[k]["score"])  # evaluated
        want = [a - b for a, b in zip(c["ln"]["score"], c["no_ln"]["score"], strict=True)]
        assert c["diff"] == pytest.approx(want)
    res = record["results"]
    assert (res["runs_finished"], res["runs"]) == (2 * len(cells), 2 * len(cells))
    assert res["training_cpu_hours"] > 0
    assert set(res["summary"]) == set(fraction.ALGOS)
    assert res["summary"]["td3bc"]["verdict"] in ("holds", "contradicted", "not shown",
                                                  "untrained")
    assert (out / "runs" / "cql-hopper-medium-f1-noln" / "metrics.jsonl").is_file()
    assert "LN − no-LN" in (out / "section.md").read_text()


def test_fraction_collect_trains_nothing_and_lists_pending(smoke, tmp_path, monkeypatch):
    import shutil

    src, _ = smoke
    shutil.copytree(src / "fraction", tmp_path / "fraction")
    run = tmp_path / "fraction" / "runs" / "td3bc-hopper-medium-f0.1-ln"
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "step": 0}))  # as if interrupted
    monkeypatch.setattr(fraction, "run", lambda ctx: pytest.fail("--collect must not train"))
    assert cli.main(["repro", "fraction", "--scale", "smoke", "--collect", "--out",
                     str(tmp_path), "--no-progress"]) == 0
    record = json.loads((tmp_path / "fraction" / "results.json").read_text())
    assert record["collected"] and record["runs"]["trained"] == 0
    assert record["results"]["runs_finished"] == record["results"]["runs"] - 1
    text = (tmp_path / "fraction" / "section.md").read_text()
    assert "td3bc-hopper-medium-f0.1-ln (step 0 of 20)" in text
    assert "--collect` from the run folders" in text
    assert "- **Not settled.** TD3+BC: not yet: 3 of 4 runs finished" in text


def test_predict_smoke(smoke):
    tmp, codes = smoke
    assert codes["predict"] == 0
    out, record = _record(tmp, "predict")
    assert record["figures"] == ["predict_scatter.png", "predict_curves.png"]
    p = predict.SCALES["smoke"]
    res = record["results"]
    seeds = res["seeds"]
    assert len(seeds) == len(p["held_out"]) * len(p["seeds"])
    # The aggregate is the scoring of the per-seed records, recomputed here.
    assert res["overall"] == json.loads(json.dumps(predict.score(seeds)))
    assert [c["seed_runs"] for c in res["per_config"]] == [len(p["seeds"])] * len(p["held_out"])
    # Truth and verdict come from the run folders: re-read one and judge it again.
    run = predict.run_name(p["held_out"][0])
    again = [predict.judge(r) for r in predict.load_seeds(out / "runs" / run)]
    assert [r for r in seeds if r["run"] == run] == json.loads(json.dumps(again))
    assert res["rule"] == json.loads(json.dumps(dataclasses.asdict(VerdictConfig())))
    assert set(res["alternatives"]) == set(predict.ALTERNATIVES)


# -- the GPU script at smoke size: it writes what the report reads -----------------------------
@pytest.mark.slow  # trains CQL and Diffusion-QL (~75 s on the 2-core machine)
def test_fraction_gpu_script_smoke_feeds_the_report(tmp_path):
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).parents[1] / "experiments" / "fraction_gpu.py"
    spec = importlib.util.spec_from_file_location("fraction_gpu", script)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    exp = tmp_path / "fraction"
    assert gpu.main(["--smoke", "--out", str(exp / "gpu"), "--data-dir",
                     str(tmp_path / "data")]) == 0
    record = json.loads((exp / fraction.GPU_RESULTS).read_text())
    assert record["pending"] == [] and len(record["finished"]) == 4
    # The CPU report with none of its own runs yet: its cells pending, the GPU cells read.
    from seemrl.repro._common import Context

    ctx = Context(name="fraction", scale="smoke", params=P_PARTIAL, out=exp,
                  data_dir=tmp_path / "data")
    outcome = fraction.report(ctx)
    cells = [c for c in outcome.results["cells"] if c.get("source") == "gpu"]
    assert {c["algo"] for c in cells} == {"cql", "diffql"}
    assert all(c[k]["finished"] and len(c["diff"]) == 2 for c in cells for k in ("ln", "no_ln"))
    assert "CQL (GPU)" in outcome.markdown and "Diffusion-QL (GPU)" in outcome.markdown
    assert outcome.results["summary"]["td3bc"]["verdict"] == "not yet"


def test_predict_collect_reports_finished_runs_and_lists_the_rest(smoke, tmp_path):
    import shutil

    from seemrl.repro import _common

    tmp, _ = smoke
    out = tmp_path / "copy"
    shutil.copytree(tmp / "predict", out / "predict")
    p = predict.SCALES["smoke"]
    unfinished = predict.run_name(p["held_out"][1])
    (out / "predict" / "runs" / unfinished / "status.json").unlink()
    record = _common.run_experiment("predict", "smoke", out, data_dir=tmp / "data",
                                    progress=False, collect=True)
    res = record["results"]
    assert res["pending"] == [unfinished] and res["calibration"]["pending"] == []
    assert [c["name"] for c in res["per_config"]] == [predict.run_name(p["held_out"][0])]
    assert res["overall"]["seed_runs"] == len(p["seeds"])
    assert "Not finished yet (1 runs" in (out / "predict" / "section.md").read_text()
