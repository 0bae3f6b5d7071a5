"""diagnose() on tiny synthetic run folders whose divergence follows the growth laws exactly."""

import json

import numpy as np
import pytest

from seemrl.diagnostics import growth
from seemrl.diagnostics.report import diagnose
from seemrl.diagnostics.verdict import VerdictConfig

STEPS = np.arange(0, 100_001, 1000, dtype=float)
T_A = 20_000.0          # divergence sets in (SEEM jumps)
T_STAR = 60_500.0       # SGD crash of the generator's law
CEILING = 100.0         # max|r|/(1 − γ) of the synthetic runs


def _sgd_series(L=3, rho_a=30.0):
    """ρ(t) = (ρ_a^{-(2L-2)} − κ(t − t_a))^{-1/(2L-2)} after t_a, Q = 1e-3 ρ^L (SPEC §3)."""
    p = 2 * L - 2
    kappa = rho_a ** -p / (T_STAR - T_A)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(STEPS < T_A, rho_a - 2.0 * (1 - STEPS / T_A),
                       (rho_a ** -p - kappa * (STEPS - T_A)) ** (-1.0 / p))
    rho = np.where(STEPS >= T_STAR, np.nan, rho)
    return rho, 1e-3 * rho ** L


def _write_run(path, optimizer, seeds):
    path.mkdir()
    lines = []
    for seed, (seem, q, norm) in seeds.items():
        for i, t in enumerate(STEPS):
            row = {"step": t, "seed": seed, "train/q_mean": None if np.isnan(q[i]) else q[i],
                   "train/critic_param_norm_0": None if np.isnan(norm[i]) else norm[i],
                   "train/critic_loss": 1.0}
            if i % 2 == 0:        # SEEM logged less often than train/*
                row.update({"seem/normalized": seem[i], "seem/ntk_cos": 1.0,
                            "seem/q_data": None if np.isnan(q[i]) else q[i]})
            lines.append(json.dumps(row))
        lines.append(json.dumps({"step": 100_000, "seed": seed, "eval/normalized_score": 1.0}))
    lines.append("not json")
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {"algo": "td3bc", "optimizer": optimizer, "gamma": 0.99, "q_ceiling": CEILING,
           "critic": {"hidden": [64, 64], "use_bias": False, "activation": "relu"}}
    (path / "config.json").write_text(json.dumps(cfg))
    div = {}
    for seed, (_, q, _) in seeds.items():
        bad, past = ~np.isfinite(q), ~np.isfinite(q) | (np.abs(q) > CEILING)
        div[str(seed)] = {"diverged_at": int(STEPS[np.argmax(past)]) if past.any() else None,
                          "stopped_at": int(STEPS[np.argmax(bad)]) if bad.any() else None,
                          "active": not bad.any()}
    (path / "status.json").write_text(json.dumps({"step": 100_000, "steps": 100_000,
                                                  "seeds": div}))
    return path


def _converging():
    q = 50.0 * (1 - np.exp(-STEPS / 1e4))
    return np.full_like(STEPS, -0.02), q, 30.0 + STEPS / 1e5


def test_sgd_run(tmp_path):
    rho, q = _sgd_series()
    seem = np.where(STEPS >= T_A, 0.6, 0.0)
    run = _write_run(tmp_path / "run", "sgd", {0: (seem, q, rho), 1: _converging()})
    rep = diagnose(run)
    cfg = VerdictConfig()
    s0, s1 = rep.seeds
    assert rep.L == 3 and rep.optimizer == "sgd"
    # SEEM is logged every 2000 steps: `consecutive` measurements above threshold from T_A,
    # with Q rising, before Q passes the ceiling: a prediction, ahead of the fact.
    assert s0.predicted.fired and s0.predicted.reason == "seem"
    assert s0.predicted.step == T_A + (cfg.consecutive - 1) * 2000
    assert s0.seem_positive_step == T_A
    assert s0.diverged_at == STEPS[np.argmax(np.abs(np.nan_to_num(q, nan=np.inf)) > CEILING)]
    assert s0.predicted.step < s0.diverged_at and s0.lead > 0
    assert s0.stopped_at == STEPS[np.argmax(~np.isfinite(q))]
    assert isinstance(s0.growth, growth.CrashPrediction)
    assert abs(s0.growth.t_star - s0.stopped_at) < 0.1 * s0.stopped_at
    assert not s1.predicted.fired and s1.growth is None and s1.diverged_at is None
    assert [p.name for p in rep.pngs] == ["seem_q.png", "growth.png"]
    assert all(p.stat().st_size > 10_000 for p in rep.pngs)
    text = rep.text()
    assert "predicted_at" in text and "diverged_at" in text
    assert "predicted to diverge" in text and "no divergence predicted" in text


def test_a_divergence_seen_first_is_not_a_prediction(tmp_path):
    # Q jumps past the ceiling between two measurements and SEEM turns positive only after:
    # the verdict did not come first, so it is "missed", not a late prediction.
    crossed = 51_000.0
    q = np.where(STEPS < crossed, 10.0, 10.0 * CEILING)
    rho = np.where(STEPS < crossed, 30.0, 60.0)
    seem = np.where(STEPS >= crossed, 0.6, 0.0)
    s0 = diagnose(_write_run(tmp_path / "run", "sgd", {0: (seem, q, rho)}), plots=False).seeds[0]
    assert not s0.predicted.fired and s0.diverged_at == crossed
    assert "missed" in diagnose(tmp_path / "run", plots=False).text()


def test_adam_run(tmp_path):
    # Adam: ρ = ρ_0 + v t after T_A, Q ∝ ρ^L (L = 3) -> k = 3 against t − t0.
    v, L = 0.07, 3
    rho = np.where(STEPS < T_A, 30.0, 30.0 + v * (STEPS - T_A))
    q = 1e-3 * rho ** L
    seem = np.where(STEPS >= T_A, 0.4, 0.0)
    run = _write_run(tmp_path / "run", "adam", {3: (seem, q, rho)})
    rep = diagnose(run, out_dir=tmp_path / "figs")
    g = rep.seeds[0].growth
    assert isinstance(g, growth.AdamGrowth)
    assert g.norm_fit.slope == pytest.approx(v, rel=1e-6)
    assert g.k == pytest.approx(L, abs=1e-3) and g.predicted_k == L
    assert (tmp_path / "figs" / "growth.png").exists()


def test_missing_files(tmp_path):
    rep = diagnose(tmp_path)
    assert rep.seeds == [] and rep.pngs == []
