"""The online divergence verdict: a prediction from SEEM measurements, frozen at the fact."""

import math

import pytest

from seemrl.diagnostics.verdict import OnlineVerdict, Verdict, VerdictConfig, replay

CEILING = 100.0


def _feed(v, rows):
    out = []
    for step, seem, q, cos in rows:
        out.append(v.update(step, {"seem/normalized": seem, "seem/q_data": q,
                                   "seem/ntk_cos": cos}))
    return out


def test_seem_clause_needs_a_persistent_stable_q_raising_streak():
    cfg = VerdictConfig(seem_threshold=0.1, consecutive=3, ntk_cos_min=0.9, q_rise=1.0,
                        q_trend_frac=math.inf)
    # A streak broken by a measurement below the threshold, then three in a row with Q rising.
    rows = [(50, 0.3, 1.0, math.nan), (100, 0.3, 2.0, 0.95), (150, 0.05, 3.0, 0.95),
            (200, 0.3, 4.0, 0.95), (250, 0.4, 5.0, 0.97), (300, 0.5, 6.0, 0.99)]
    out = _feed(OnlineVerdict(cfg, CEILING), rows)
    assert not any(v.fired for v in out[:-1])
    assert out[-1] == Verdict(True, 300, "seem", 0.5, 200)
    assert "SEEM +0.50 since step 200: predicted to diverge" in out[-1].describe()
    # The NTK direction still turning (cos 0.5) breaks the streak.
    turning = [(s, x, q, 0.5 if s == 250 else 0.95) for s, x, q, _ in rows]
    assert not _feed(OnlineVerdict(cfg, CEILING), turning)[-1].fired
    # Q falling over the streak: positive SEEM alone is not self-excitation.
    falling = [(s, x, 10.0 - s / 100, 0.99) for s, x, _, _ in rows]
    assert not _feed(OnlineVerdict(cfg, CEILING), falling)[-1].fired


def test_q_trend_clause_reads_q_against_the_ceiling():
    cfg = VerdictConfig(seem_threshold=math.inf, q_trend_frac=0.5, q_trend_window=4,
                        q_trend_exponent=1.5)
    steps = [1000 * i for i in range(1, 11)]
    # Warm-up that levels off below half the ceiling: never fires.
    warm = [(t, 0.0, 45.0 * (1 - math.exp(-t / 3000)), 1.0) for t in steps]
    assert not _feed(OnlineVerdict(cfg, CEILING), warm)[-1].fired
    # |Q| ∝ t³ through the upper half: fires before it passes the ceiling.
    cubic = [(t, 0.0, 1e-10 * t ** 3 * 9, 1.0) for t in steps]
    out = _feed(OnlineVerdict(cfg, CEILING), cubic)
    fired = next(v for v in out if v.fired)
    assert fired.reason == "q_trend" and 1e-10 * fired.step ** 3 * 9 < CEILING
    # The same shape scaled to another reward scale fires at the same step (relative rule).
    big = [(t, 0.0, 1000 * q, 1.0) for t, _, q, _ in cubic]
    assert next(v for v in _feed(OnlineVerdict(cfg, 1000 * CEILING), big) if v.fired) == fired


def test_past_the_ceiling_is_too_late():
    cfg = VerdictConfig(seem_threshold=0.1, consecutive=2)
    v = OnlineVerdict(cfg, CEILING)
    _feed(v, [(100, 0.5, 50.0, 1.0), (200, 0.5, 150.0, 1.0), (300, 0.5, 300.0, 1.0)])
    assert not v.result.fired and v.too_late  # Q passed the ceiling at the 2nd measurement
    v = OnlineVerdict(cfg, CEILING)
    _feed(v, [(100, 0.5, float("nan"), 1.0), (200, 0.5, 1.0, 1.0), (300, 0.5, 2.0, 1.0)])
    assert not v.result.fired  # non-finite Q is the fact too
    v = OnlineVerdict(cfg, CEILING)
    _feed(v, [(100, 0.5, 10.0, 1.0)])
    v.diverged()  # the driver saw Q pass the ceiling between measurements
    assert not _feed(v, [(200, 0.5, 20.0, 1.0)])[-1].fired


def test_replay_equals_online_and_skips_rows_without_seem():
    cfg = VerdictConfig(seem_threshold=0.1, consecutive=2)
    rows = [{"step": 50 * i, "seed": 0, "train/q_mean": 1.0 * i} for i in range(1, 20)]
    for i, r in enumerate(rows):
        if i % 3 == 0:
            r.update({"seem/normalized": 0.2 if i > 6 else 0.0, "seem/q_data": float(i),
                      "seem/ntk_cos": 0.99})
    online = OnlineVerdict(cfg, CEILING)
    for r in rows:
        if "seem/normalized" in r:
            online.update(r["step"], r)
    assert replay(rows, cfg, CEILING) == online.result
    assert online.result.fired and online.result.step == rows[12]["step"]


def test_config_is_validated():
    with pytest.raises(ValueError):
        VerdictConfig(consecutive=0)
