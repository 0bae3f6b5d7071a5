"""The online divergence verdict."""

import numpy as np

from seemrl.diagnostics.verdict import OnlineVerdict, VerdictConfig, verdict


def test_seem_rule_needs_consecutive_measurements():
    cfg = VerdictConfig(seem_threshold=0.1, consecutive=3)
    steps = np.arange(10) * 1000.0
    seem = np.array([0, 0.2, 0.3, 0.0, 0.2, 0.3, np.nan, 0.4, 0.5, 0.6])
    # Runs above 0.1: steps 1-2 (broken at 3), then 4, 5, (6 unmeasured), 7 -> third at 7.
    v = verdict(steps, seem, config=cfg)
    assert v.fired and v.reason == "seem" and v.step == 7000
    assert not verdict(steps, np.full(10, 0.05), config=cfg).fired


def test_q_rules():
    cfg = VerdictConfig(q_window=4, q_growth_exponent=1.5, q_min_growth=10, q_floor=100,
                        q_explode=1e6)
    steps = np.arange(1, 21) * 1000.0
    # Normal warm-up: Q rises steeply from ~0 but saturates below the floor: never fires.
    warm = 50 * (1 - np.exp(-steps / 3000))
    assert not verdict(steps, q=warm, config=cfg).fired
    # Q ∝ t^3 (Adam growth with L = 3): log-log slope 3 > 1.5; fires at the first window whose
    # last |Q| clears the floor and grew ≥ 10× over the window.
    cubic = 1e-8 * steps**3
    v = verdict(steps, q=cubic, config=cfg)
    expect = next(steps[i] for i in range(3, 20)
                  if cubic[i] >= 100 and cubic[i] >= 10 * cubic[i - 3])
    assert v.fired and v.reason == "q_growth" and v.step == expect
    # Q ∝ t (linear) never counts as super-linear, however large.
    assert not verdict(steps, q=1e3 * steps / 1000, config=cfg).fired
    # A NaN Q is an explosion.
    nan_q = np.where(steps >= 5000, np.nan, 1.0)
    v = verdict(steps, q=nan_q, config=cfg)
    assert v.reason == "q_explode" and v.step == 5000


def test_online_equals_offline():
    rng = np.random.default_rng(0)
    steps = np.arange(1, 41) * 500.0
    seem = np.where(steps > 12_000, 0.5, 0.0) + 0.01 * rng.standard_normal(40)
    q = np.where(steps > 15_000, 1e-6 * (steps - 14_000) ** 3, 10.0)
    # A rule that needs 3 SEEM measurements in a row: the SEEM rule fires before Q takes off.
    cfg = VerdictConfig(seem_threshold=0.1, consecutive=3)
    monitor = OnlineVerdict(cfg)
    for i, t in enumerate(steps):
        # Q every step, SEEM every other step.
        online = monitor.update(t, seem=seem[i] if i % 2 == 0 else None, q=q[i])
        offline = verdict(steps[:i + 1:2], seem[:i + 1:2], q[:i + 1], cfg,
                          q_steps=steps[:i + 1])
        assert online == offline
    assert online.fired and online.reason == "seem"
