"""repro fraction and predict: the smoke scale end to end, and the scoring on synthetic runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from seemrl import cli
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
