"""`seemrl repro surge|discount|sgd|adam --scale smoke`: each runs, writes its files with
sensible numbers, and a second run reuses the finished training runs."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from seemrl import cli
from seemrl.repro import _divergence as dv
from seemrl.repro import _report as rp

NAMES = ("surge", "discount", "sgd", "adam")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One dataset folder for the module: each tiny dataset is made once."""
    return tmp_path_factory.mktemp("data")


def _repro(name, out, data_dir) -> float:
    t0 = time.perf_counter()
    assert cli.main(["repro", name, "--scale", "smoke", "--out", str(out), "--data-dir",
                     str(data_dir), "--no-progress"]) == 0
    return time.perf_counter() - t0


def _finite_or_none(x) -> bool:
    return x is None or (isinstance(x, int | float) and math.isfinite(x))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, data_dir):
    """Every experiment run once at smoke scale (name -> (folder, results.json, seconds))."""
    out = tmp_path_factory.mktemp("repro")
    done = {}
    for name in NAMES:
        seconds = _repro(name, out, data_dir)
        folder = out / name
        done[name] = (folder, json.loads((folder / "results.json").read_text()), seconds, out)
    return done


@pytest.mark.parametrize("name", NAMES)
def test_writes_its_files(outputs, name):
    folder, record, _, _ = outputs[name]
    assert record["experiment"] == name and record["scale"] == "smoke"
    assert record["figures"], "no figure"
    for fig in record["figures"]:
        assert (folder / fig).stat().st_size > 10_000
    section = (folder / "section.md").read_text()
    assert section.startswith(f"## {name}:")
    assert "**Against the" in section
    assert "nan" not in section.lower()
    assert (folder / "runs").is_dir()


def test_surge_results(outputs):
    _, record, _, _ = outputs["surge"]
    res, p = record["results"], record["params"]
    assert set(res["seeds"]) == set(p["datasets"])
    for name, rows in res["seeds"].items():
        assert [r["seed"] for r in rows] == p["seeds"]
        assert res["q_ceiling"][name] > 0
        for r in rows:
            for key in ("seem_above_step", "q_past_ceiling_step", "lead_steps", "max_seem",
                        "max_abs_q"):
                assert _finite_or_none(r[key]), (key, r[key])
            assert r["max_seem"] is not None and -1.0 <= r["max_seem"] <= 1.0
            assert r["q_bounded"] == (r["q_past_ceiling_step"] is None)
    s = res["summary"]
    assert s["seed_runs"] == len(p["datasets"]) * len(p["seeds"])
    assert s["seem_at_or_before_q"] + s["seem_after_q"] + s["q_passed_without_seem"] \
        == s["q_passed_ceiling"]


def test_discount_results(outputs):
    _, record, _, _ = outputs["discount"]
    res, p = record["results"], record["params"]
    assert sorted(float(g) for g in res["per_gamma"]) == sorted(p["gammas"])
    ceilings = [res["per_gamma"][f"{g:g}"]["q_ceiling"] for g in sorted(p["gammas"])]
    assert np.all(np.diff(ceilings) > 0)  # max|r|/(1 − γ) grows with γ
    for r in res["per_gamma"].values():
        assert len(r["seeds"]) == len(p["seeds"])
        for s in r["seeds"]:
            assert s["final_seem"] is not None and -1.0 <= s["final_seem"] <= 1.0
            assert s["diverged"] == (s["self_exciting"] and not s["q_bounded"])
    crit = res["critical"]
    lo, hi = crit["converges_up_to"], crit["diverges_from"]
    assert lo is None or lo in p["gammas"]
    assert hi is None or hi in p["gammas"]
    assert lo is None or hi is None or lo < hi
    assert res["paper"]["converges_up_to"] == 0.927


def test_sgd_results(outputs):
    _, record, _, _ = outputs["sgd"]
    res, p = record["results"], record["params"]
    assert set(res["configs"]) == {c["name"] for c in p["configs"]}
    for cfg in res["configs"].values():
        assert cfg["L"] == len(p["critic_hidden"]) + 1
        assert len(cfg["seeds"]) == len(p["seeds"])
        for s in cfg["seeds"]:
            for key in ("crash_step", "onset_step"):
                assert _finite_or_none(s[key]), (key, s[key])
            for pred in s["predictions"].values():
                assert _finite_or_none(pred["t_star"])
                assert pred["exponent"] < 0


def test_adam_results(outputs):
    _, record, _, _ = outputs["adam"]
    res, p = record["results"], record["params"]
    Ls = [len(h) + 1 for h in p["critic_hidden"]]
    assert [c["L"] for c in res["critics"]] == Ls
    for c in res["critics"]:
        assert len(c["seeds"]) == len(p["seeds"])
        for s in c["seeds"]:
            assert _finite_or_none(s["k"]) and _finite_or_none(s["norm_slope"])


def test_rerun_skips_finished_runs(outputs, data_dir):
    for name in NAMES:
        folder, record, seconds, out = outputs[name]
        runs = sorted(p.name for p in (folder / "runs").iterdir() if p.is_dir())
        mtimes = {r: (folder / "runs" / r / "metrics.jsonl").stat().st_mtime for r in runs}
        again = _repro(name, out, data_dir)
        assert {r: (folder / "runs" / r / "metrics.jsonl").stat().st_mtime
                for r in runs} == mtimes, f"{name} retrained a finished run"
        assert again < seconds + 5.0
        new = json.loads((folder / "results.json").read_text())
        assert new["results"] == record["results"]


def test_helpers():
    assert rp.fmt(None) == "—" and rp.fmt(float("nan")) == "—"
    assert rp.fmt(12500.0) == "12,500" and rp.fmt(0.1234) == "0.123"
    assert rp.json_num(float("inf")) is None and rp.json_num(2) == 2.0
    assert dv.first_step(np.array([1.0, 2.0, 3.0]), np.array([False, True, True])) == 2.0
    assert dv.first_step(np.array([1.0]), np.array([False])) is None
    table = rp.md_table(["a", "b"], [["1", "2"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def _series(steps, q, norm, diverged_at=None, seem=None) -> dv.SeedSeries:
    steps = np.asarray(steps, np.float64)
    seem = np.full(len(steps), 0.5) if seem is None else np.asarray(seem, np.float64)
    return dv.SeedSeries(0, steps, np.asarray(q, np.float64), np.asarray(norm, np.float64),
                         steps, seem, diverged_at)


def test_sgd_analysis_recovers_a_synthetic_crash():
    """ρ^{−(2L−2)} falling linearly to 0 at t* = 1 000 (L = 3, Q ∝ ρ^L): the prediction from
    the first half of the divergent phase finds t*, the growth orders are the theory's."""
    from seemrl.repro import sgd

    L, t_star = 3, 1000.0
    steps = np.arange(10.0, t_star, 10.0)
    rho = (1e-4 * (t_star - steps)) ** (-1.0 / (2 * L - 2))
    q = 2.0 * rho**L
    # Onset: SEEM crosses the threshold at step 310, before Q passes the ceiling (step 510).
    seem = np.where(steps > 300, 0.5, 0.0)
    s = _series(steps, q, rho, diverged_at=int(t_star), seem=seem)
    a = sgd.analyse(s, ceiling=float(q[50]), L=L)
    assert a["onset"] == 310.0 and a["crash"] == t_star
    assert a["window"] == (310.0, 655.0)
    for quantity in ("norm", "q"):
        assert a["predictions"][quantity].t_star == pytest.approx(t_star, rel=1e-6)
        assert a["orders"][quantity].slope == pytest.approx(sgd.predicted_order(L, quantity),
                                                            rel=1e-6)


def test_adam_fit_recovers_a_synthetic_exponent():
    """ρ = 10 + 0.1·t and |Q| ∝ ρ^L: the fitted exponent is L, the norm slope 0.1."""
    from seemrl.repro import adam

    steps = np.arange(100.0, 10_001.0, 100.0)
    p = {"steps": 10_000, "fit_from": 0.25}
    for L in (2, 3, 4):
        rho = 10.0 + 0.1 * steps
        g = adam.fit_seed(_series(steps, 0.01 * rho**L, rho), ceiling=1.0, L=L, p=p)
        assert g.k == pytest.approx(L, rel=1e-6)
        assert g.norm_fit.slope == pytest.approx(0.1, rel=1e-6)
        assert g.steps.min() >= 2_500
    bounded = _series(steps, np.full(len(steps), 0.5), 10.0 + 0.1 * steps)
    assert adam.fit_seed(bounded, ceiling=1.0, L=2, p=p) is None
