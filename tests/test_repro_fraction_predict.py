"""repro fraction and predict: the smoke scale end to end, and the scoring on synthetic runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from seemrl import cli
from seemrl.repro import fraction, predict


# -- predict: scoring on records with known answers -------------------------------------------
def _rec(exploded_at, verdict_step, reason=None, still_growing=False):
    return {"exploded_at": exploded_at, "verdict_step": verdict_step,
            "reason": reason or ("seem" if verdict_step is not None else None),
            "still_growing": still_growing}


def test_score_counts_warning_and_prediction():
    records = [
        _rec(5000.0, 2000.0),                    # hit, 3000 ahead
        _rec(8000.0, 7000.0, "q_growth"),        # hit, 1000 ahead
        _rec(3000.0, 3000.0, "q_explode"),       # flagged at the explosion: warning, no lead
        _rec(4000.0, None),                      # missed
        _rec(None, 6000.0, still_growing=True),  # false alarm, Q still growing
        _rec(None, 9000.0),                      # false alarm
        _rec(None, None, still_growing=True),    # calm, not flagged
        _rec(None, None),                        # calm, not flagged
    ]
    s = predict.score(records)
    assert (s["seed_runs"], s["exploded"], s["not_exploded"]) == (8, 4, 4)
    w, p = s["warning"], s["prediction"]
    assert (w["true_positive"], w["false_alarm"], w["missed"], w["true_negative"]) == (3, 2, 1, 2)
    assert w["accuracy"] == pytest.approx(5 / 8)
    assert w["false_alarm_rate"] == pytest.approx(0.5)
    assert w["miss_rate"] == pytest.approx(0.25)
    # Prediction: the seed flagged only at its explosion counts as missed.
    assert (p["true_positive"], p["missed"], p["false_alarm"]) == (2, 2, 2)
    assert p["accuracy"] == pytest.approx(4 / 8)
    assert s["steps_ahead"] == {"median": 1000.0, "min": 0.0, "max": 3000.0}
    assert s["steps_ahead_when_ahead"] == {"median": 2000.0, "min": 1000.0, "max": 3000.0}
    assert s["fired_by"] == {"seem": 3, "q_growth": 1, "q_explode": 1}
    assert s["false_alarms_q_still_growing"] == 1
    assert s["not_exploded_q_still_growing"] == 2


def test_score_empty_and_all_calm():
    s = predict.score([])
    assert s["seed_runs"] == 0 and s["warning"]["accuracy"] is None
    s = predict.score([_rec(None, None)] * 3)
    assert s["warning"]["accuracy"] == 1.0 and s["warning"]["miss_rate"] is None
    assert s["steps_ahead"]["median"] is None


def _seed_run(q, seem, ceiling=100.0, every=100, seem_every=200):
    q = np.asarray(q, float)
    q_steps = every * np.arange(1, len(q) + 1, dtype=float)
    seem = np.asarray(seem, float)
    seem_steps = seem_every * np.arange(1, len(seem) + 1, dtype=float)
    bad = ~np.isfinite(q) | (np.abs(q) > ceiling)
    return predict.SeedRun("r", 0, int(q_steps[-1]), seem_steps, seem, q_steps, q, ceiling,
                           float(q_steps[bad.argmax()]) if bad.any() else None)


def test_judge_replays_the_fixed_rule():
    # SEEM > 0.1 from the 1st measurement (step 200): the default rule (5 in a row) fires at
    # step 1000; Q passes the ceiling at step 1500.
    r = _seed_run([1, 2, 4, 8, 10, 12, 14, 16, 20, 30, 40, 50, 60, 80, 150, 300],
                  [0.5] * 8)
    rec = predict.judge(r)
    assert rec["exploded_at"] == 1500.0
    assert (rec["verdict_step"], rec["reason"]) == (1000.0, "seem")
    # SEEM never self-excites: only the Q-past-ceiling clause fires, at the explosion.
    r = _seed_run([1, 2, 4, 8, 10, math.nan], [0.0] * 3)
    rec = predict.judge(r)
    assert (rec["exploded_at"], rec["verdict_step"], rec["reason"]) == (600.0, 600.0,
                                                                        "q_explode")
    # Calm and flat: nothing.
    rec = predict.judge(_seed_run([10.0] * 10, [0.0] * 5))
    assert rec["exploded_at"] is None and rec["verdict_step"] is None
    assert not rec["still_growing"]


def test_still_growing():
    assert _seed_run([1, 2, 3, 4, 5, 6, 8, 10, 14, 20], [0.0]).still_growing()
    assert not _seed_run([10, 11, 12, 12, 12, 12, 13, 13, 13, 13], [0.0]).still_growing()
    assert not _seed_run([1, 2, 4, 500], [0.0]).still_growing()  # exploded: not "growing"


def test_families_hold_out_the_calibration_configs():
    for scale in predict.SCALES.values():
        assert not any(predict.in_calibration(c) for c in scale["family"])
    assert all(predict.in_calibration(c) for c in predict.CALIBRATION)
    assert len(predict.SCALES["cpu"]["family"]) * len(predict.SCALES["cpu"]["seeds"]) >= 40
    fam = predict.SCALES["cpu"]["family"]
    for key in ("dataset", "fraction", "gamma", "optimizer", "layer_norm"):
        assert len({c[key] for c in fam}) >= 2, key


# -- fraction: the summary on synthetic cells --------------------------------------------------
def test_fraction_summary_sign_and_trend():
    p = {"algos": {"td3bc": {"fractions": [1.0, 0.1, 0.01]}}}
    cells = [{"algo": "td3bc", "fraction": f, "diff_final_score_mean": d,
              "diff_best_score_mean": b}
             for f, d, b in ((1.0, -2.0, 1.0), (0.1, 5.0, 6.0), (0.01, 30.0, None))]
    s = fraction.summarize(cells, p)["td3bc"]
    assert s["trend_as_data_shrinks"] == "unclear"  # no seed pairs: no error to read
    assert s["by_fraction"]["1"]["same_sign_as_paper"] is False  # paper: +24
    assert s["by_fraction"]["0.01"]["same_sign_as_paper"] is True
    assert (s["same_sign"], s["compared"]) == (2, 3)
    assert s["by_fraction"]["0.01"]["diff_best_sum"] is None


def test_fraction_trend_needs_more_than_the_seed_noise():
    p = {"algos": {"td3bc": {"fractions": [1.0, 0.01]}}}

    def cells(small, best=50.0):
        return [{"algo": "td3bc", "fraction": f, "diff_final_score": d,
                 "diff_final_score_mean": float(np.mean(d)), "diff_best_score_mean": None,
                 "ln": {"best_score": [best, None]}, "no_ln": {"best_score": [3.0, 2.0]}}
                for f, d in ((1.0, [-5.0, 5.0]), (0.01, small))]

    # 1 %: mean +10 but seed pairs at -10 and +30: within 2 standard errors of 100 %'s 0.
    s = fraction.summarize(cells([-10.0, 30.0]), p)["td3bc"]
    assert s["trend_as_data_shrinks"] == "unclear"
    se = s["by_fraction"]["0.01"]["diff_final_se"]
    assert se == pytest.approx(np.std([-10.0, 30.0], ddof=1) / np.sqrt(2))
    trend = lambda small: fraction.summarize(cells(small), p)["td3bc"]["trend_as_data_shrinks"]
    assert trend([40.0, 44.0]) == "grows"
    assert trend([-40.0, -44.0]) == "shrinks"
    assert trend([10.0]) == "unclear"  # one seed pair
    # Policies that never scored 5 have learned nothing whose difference means anything.
    untrained = fraction.summarize(cells([40.0, 44.0], best=4.0), p)["td3bc"]
    assert untrained["trend_as_data_shrinks"] == "untrained"


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
    assert record["figures"] == ["fraction.png", "fraction_runs.png"]
    p = fraction.SCALES["smoke"]
    cells = record["results"]["cells"]
    assert len(cells) == sum(len(a["fractions"]) for a in p["algos"].values())
    for c in cells:
        for k in ("ln", "no_ln"):
            assert len(c[k]["final_score"]) == len(c["seeds"])
            assert all(isinstance(v, float) for v in c[k]["final_score"])  # evaluated
            assert c[k]["q_ceiling"] > 0
        want = [a - b for a, b in zip(c["ln"]["final_score"], c["no_ln"]["final_score"],
                                      strict=True)]
        assert c["diff_final_score"] == pytest.approx(want)
    summary = record["results"]["summary"]
    assert set(summary) == set(fraction.ALGOS)
    assert summary["td3bc"]["trend_as_data_shrinks"] in ("grows", "shrinks", "unclear",
                                                         "untrained")
    assert (out / "runs" / "cql-hopper-medium-f1-noln" / "metrics.jsonl").is_file()
    assert "LN − no-LN" in (out / "section.md").read_text()


def test_predict_smoke(smoke):
    tmp, codes = smoke
    assert codes["predict"] == 0
    out, record = _record(tmp, "predict")
    assert record["figures"] == ["predict_scatter.png", "predict_timeline.png",
                                 "predict_curves.png"]
    p = predict.SCALES["smoke"]
    res = record["results"]
    seeds = res["seeds"]
    assert len(seeds) == len(p["family"]) * len(p["seeds"])
    # The aggregate is the scoring of the per-seed records, recomputed here.
    assert res["overall"] == json.loads(json.dumps(predict.score(seeds)))
    assert [c["seed_runs"] for c in res["per_config"]] == [len(p["seeds"])] * len(p["family"])
    # Truth and verdict come from the run folders: re-read one and judge it again.
    run = predict.run_name(p["family"][0])
    again = [predict.judge(r) for r in predict.load_seeds(out / "runs" / run)]
    assert [r for r in seeds if r["run"] == run] == json.loads(json.dumps(again))
    assert res["rule"]["seem_threshold"] == 0.1


def test_verdict_calibration_scores_with_predicts_code():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "experiments" / "verdict_calibration.py"
    spec = importlib.util.spec_from_file_location("verdict_calibration", path)
    vc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vc)
    seeds = [_seed_run([1, 2, 4, 8, 10, 12, 14, 16, 20, 30, 40, 50, 60, 80, 150, 300],
                       [0.5] * 8),
             _seed_run([10.0] * 10, [0.0] * 5), _seed_run([10.0] * 10, [0.3] * 5)]
    e = vc.evaluate(seeds, predict.VerdictConfig())
    assert (e["runs"], e["true_positive"], e["false_alarm"], e["true_negative"]) == (3, 1, 1, 1)
    assert e["accuracy"] == pytest.approx(2 / 3)
    assert e["steps_ahead_median"] == 500.0 and e["fired_before_explosion"] == 1
    assert not any(predict.in_calibration(c) for c in vc.HELD_OUT)
    best, table = vc.calibrate(seeds)
    assert len(table) == len(vc.GRID["seem_threshold"]) * len(vc.GRID["consecutive"])
