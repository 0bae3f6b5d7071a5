"""SeemMonitor: the driver's schedule and verdict, JAX = torch on copied weights, the examples."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.diagnostics import SeemMonitor, SeemSchedule, ntk
from seemrl.diagnostics.verdict import OnlineVerdict, VerdictConfig, replay
from seemrl.networks import Critic, MLPConfig, QNetwork, head_params, q_head_fn

OBS, ACT, N = 5, 2, 40
HIDDEN = (16, 16)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return {"obs": rng.standard_normal((n, OBS)), "act": rng.uniform(-1, 1, (n, ACT)),
            "rewards": rng.standard_normal(n), "next_obs": rng.standard_normal((n, OBS)),
            "done": (rng.random(n) < 0.1).astype(float)}


W_POLICY = np.random.default_rng(1).standard_normal((OBS, ACT)) * 0.5


def _jax_policy(obs):
    return jnp.tanh(obs @ W_POLICY)


class _Log:
    def __init__(self):
        self.records = []

    def log(self, records):
        self.records.extend(records)

    def close(self):
        pass


def _qnet(norm="none"):
    cfg = MLPConfig(hidden=HIDDEN, norm=norm)
    net = QNetwork(cfg)
    params = net.init(jax.random.key(0), jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    return cfg, net, params


def test_schedule_is_seem_schedule():
    cfg, net, params = _qnet()
    sched = SeemSchedule(first=2, every=16, per_octave=2)
    mon = SeemMonitor(lambda p, o, a: net.apply(p, o, a), _data(), 0.9, _jax_policy,
                      schedule=sched)
    measured = [t for t in range(1, 101) if mon.step(t, params).measured]
    assert measured == sched.steps(100)
    assert SeemMonitor(lambda p, o, a: net.apply(p, o, a), _data(), 0.9,
                       _jax_policy).schedule == SeemSchedule()


def test_td_grams_equals_gram_blocks():
    cfg, net, params = _qnet("layernorm")
    q = lambda p, o, a: net.apply(p, o, a)
    d = {k: jnp.asarray(v, jnp.float32) for k, v in _data().items()}
    c = 0.9 * (1 - d["done"])
    A, g = ntk.td_grams(q, params, d["obs"], d["act"], d["next_obs"], d["act"], c)
    g_ref = ntk.gram(q, params, d["obs"], d["act"])
    a_ref = c[:, None] * ntk.gram(q, params, d["next_obs"], d["act"], d["obs"], d["act"]) - g_ref
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(g_ref).max()))
    np.testing.assert_allclose(A, a_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(a_ref).max()))


def _run_diverging(logger=None, ceiling=None):
    """A small JAX critic driven up by hand: its parameters scaled a little more every step."""
    cfg, net, params = _qnet()
    sched = SeemSchedule(first=1, every=4, per_octave=2)
    mon = SeemMonitor(lambda p, o, a: net.apply(p, o, a), _data(), 0.9, _jax_policy,
                      schedule=sched, ceiling=ceiling, logger=logger)
    results = []
    for t in range(1, 41):
        scaled = jax.tree.map(lambda x, s=1.0 + 0.08 * t: x * s, params)
        results.append(mon.step(t, scaled))
    return mon, results


def test_verdict_equals_online_verdict_and_replay():
    log = _Log()
    mon, results = _run_diverging(logger=log, ceiling=5.0)
    series = [(r.step, r.metrics) for r in results if r.measured]
    assert len(series) >= 5
    v = OnlineVerdict(VerdictConfig(), 5.0)
    for t, m in series:
        v.update(t, m)
    assert mon.verdict == v.result
    measured = [r for r in log.records if "seem/normalized" in r]
    assert [r["step"] for r in measured] == [t for t, _ in series]
    assert replay(log.records, VerdictConfig(), 5.0) == mon.verdict
    for key in ("seem/normalized", "seem/q_data", "seem/ntk_cos"):
        assert key in measured[0]
    assert math.isnan(measured[0]["seem/ntk_cos"])


def test_diverged_at_freezes_the_verdict():
    mon, results = _run_diverging(ceiling=0.5)      # Q on the probe passes 0.5 early
    assert mon.diverged_at is not None
    frozen = next(r for r in results if r.diverged_at is not None)
    after = [r for r in results if r.step > frozen.step]
    assert all(not r.measured for r in after)
    assert all(r.verdict == frozen.verdict for r in after)
    assert all(r.diverged_at == mon.diverged_at for r in after)
    # a batch Q past the ceiling between measurements marks it too
    cfg, net, params = _qnet()
    m2 = SeemMonitor(lambda p, o, a: net.apply(p, o, a), _data(), 0.9, _jax_policy, ceiling=1.0)
    assert m2.step(3, params, q_mean=2.0).diverged_at == 3
    assert m2.step(50, params).measured is False
    m3 = SeemMonitor(lambda p, o, a: net.apply(p, o, a), _data(), 0.9, _jax_policy)
    assert m3.step(7, params, q_mean=float("nan")).diverged_at == 7


def test_default_ceiling_from_the_data():
    cfg, net, params = _qnet()
    d = _data()
    mon = SeemMonitor(lambda p, o, a: net.apply(p, o, a), d, 0.9, _jax_policy)
    assert mon.ceiling == pytest.approx(np.abs(d["rewards"]).max() / 0.1, rel=1e-6)


def test_mlp_config_fast_path_equals_generic():
    cfg = MLPConfig(hidden=HIDDEN)
    crit = Critic(cfg)
    cp = crit.init(jax.random.key(2), jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    sched = SeemSchedule(first=1, every=1)
    fast = SeemMonitor(cfg, _data(), 0.9, _jax_policy, schedule=sched).step(1, cp)
    generic = SeemMonitor(q_head_fn(cfg, 0), _data(), 0.9, _jax_policy, schedule=sched).step(1, cp)
    for k in ("seem/normalized", "seem/q_data", "seem/raw"):
        assert fast.metrics[k] == pytest.approx(generic.metrics[k], rel=1e-4, abs=1e-6)
    # actor params path: policy(actor_params, obs)
    w = jnp.asarray(W_POLICY)
    two_arg = SeemMonitor(cfg, _data(), 0.9, lambda ap, o: jnp.tanh(o @ ap), schedule=sched)
    assert two_arg.step(1, cp, w).metrics["seem/normalized"] == pytest.approx(
        fast.metrics["seem/normalized"], rel=1e-5)
    assert head_params(cp, 0) is not None


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_torch_monitor_equals_jax_on_copied_weights(norm):
    torch = pytest.importorskip("torch")
    cfg, net, params = _qnet(norm)
    p = params["params"]["mlp"]

    class Q(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layers, d = [], OBS + ACT
            for w in HIDDEN:
                layers.append(torch.nn.Linear(d, w))
                if norm == "layernorm":
                    layers.append(torch.nn.LayerNorm(w, eps=1e-6))   # flax's eps
                layers.append(torch.nn.ReLU())
                d = w
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 1))

        def forward(self, o, a):
            return self.net(torch.cat([o, a], -1))            # (N, 1): the monitor flattens

    tq = Q().double()
    lin = [m for m in tq.net if isinstance(m, torch.nn.Linear)]
    lns = [m for m in tq.net if isinstance(m, torch.nn.LayerNorm)]
    with torch.no_grad():
        for i, m in enumerate(lin):
            d = p[f"dense_{i}"] if i < len(HIDDEN) else p["out"]
            m.weight.copy_(torch.tensor(np.asarray(d["kernel"]).T))
            m.bias.copy_(torch.tensor(np.asarray(d["bias"])))
        for i, m in enumerate(lns):
            m.weight.copy_(torch.tensor(np.asarray(p[f"norm_{i}"]["scale"])))
            m.bias.copy_(torch.tensor(np.asarray(p[f"norm_{i}"]["bias"])))
    wt = torch.tensor(W_POLICY)
    sched = SeemSchedule(first=1, every=1)
    mj = SeemMonitor(lambda pp, o, a: net.apply(pp, o, a), _data(), 0.9, _jax_policy,
                     schedule=sched)
    mt = SeemMonitor(tq, _data(), 0.9, lambda o: torch.tanh(o @ wt), schedule=sched)
    for t in (1, 2):
        rj, rt = mj.step(t, params), mt.step(t)
        for k in ("seem/normalized", "seem/raw", "seem/q_data", "seem/q_policy",
                  "seem/param_norm"):
            assert rt.metrics[k] == pytest.approx(rj.metrics[k], rel=1e-4, abs=1e-6), k
    assert rt.metrics["seem/ntk_cos"] == pytest.approx(1.0, abs=1e-6)
    # the generic torch.func fallback (a parameter outside Linear/LayerNorm) gives the same
    tq.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))
    forward = tq.forward
    tq.forward = lambda o, a: forward(o, a) * tq.scale
    r_fb = SeemMonitor(tq, _data(), 0.9, lambda o: torch.tanh(o @ wt), schedule=sched).step(1)
    # d/d(scale) adds Q(x)Q(x')ᵀ to the Gram: SEEM changes, but matches seem_torch
    from seemrl.diagnostics.torch import seem_torch

    mon = SeemMonitor(tq, _data(), 0.9, lambda o: torch.tanh(o @ wt), schedule=sched)
    pr = mon.probe
    ref = seem_torch(tq, pr.obs_tm1, pr.a_tm1, pr.obs_t, np.tanh(pr.obs_t @ W_POLICY), 0.9,
                     1.0 - pr.discount_t)
    assert r_fb.metrics["seem/normalized"] == pytest.approx(ref.normalized, rel=1e-6, abs=1e-9)


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _hopper_available():
    return (pathlib.Path("~/.seemrl/datasets/hopper-medium-v0.hdf5").expanduser().exists())


@pytest.mark.skipif(not _hopper_available(), reason="needs the local hopper-medium copy")
def test_torch_example_predicts_before_the_ceiling():
    pytest.importorskip("torch")
    out = _example("torch_td3").main(["--steps", "400"])
    assert out["diverged_at"] is not None and out["predicted_at"] is not None
    assert out["predicted_at"] < out["diverged_at"]


@pytest.mark.slow
@pytest.mark.skipif(not _hopper_available(), reason="needs the local hopper-medium copy")
def test_jax_example_predicts_before_the_ceiling_and_layernorm_stays_quiet():
    ex = _example("jax_td3")
    out = ex.main(["--steps", "400"])
    assert out["predicted_at"] is not None and out["predicted_at"] < out["diverged_at"]
    quiet = ex.main(["--steps", "400", "--layer-norm"])
    assert quiet["predicted_at"] is None and quiet["diverged_at"] is None


def test_td_grams_finds_every_dense_kernel_of_a_critic():
    """The structured path sees the Dense kernels of a seemrl critic (LayerNorm included), and
    of one head of a critic ensemble (kernels sliced out of the stacked leaves), in the jaxpr,
    leaves biases and norm parameters to exact per-sample gradients, and equals the JVP Gram."""
    d = {k: jnp.asarray(v, jnp.float32) for k, v in _data().items()}
    c = 0.9 * (1 - d["done"])
    cfg, net, params = _qnet("layernorm")
    ensemble = Critic(cfg).init(jax.random.key(1), d["obs"][:1], d["act"][:1])
    for q, p, kernel_ndim in ((lambda p, o, a: net.apply(p, o, a), params, 2),
                              (q_head_fn(cfg, 1), ensemble, 3)):
        pairs, rest = ntk._structured_features(q, p, d["obs"], d["act"])
        kernels = [x for x in jax.tree.leaves(params) if x.ndim == 2]
        assert [(h.shape[1], dl.shape[1]) for h, dl in pairs] == [k.shape for k in kernels]
        assert rest.shape == (d["obs"].shape[0], ntk.num_params(p) - sum(
            x.size for x in jax.tree.leaves(p) if x.ndim == kernel_ndim))
        A, g = ntk.td_grams(q, p, d["obs"], d["act"], d["next_obs"], d["act"], c)
        g_ref = ntk.gram(q, p, d["obs"], d["act"])
        a_ref = c[:, None] * ntk.gram(q, p, d["next_obs"], d["act"], d["obs"], d["act"]) - g_ref
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(g_ref).max()))
        np.testing.assert_allclose(A, a_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(a_ref).max()))


def test_td_grams_exact_for_a_weight_used_twice():
    """A weight applied twice per sample has rank-two per-sample gradients: td_grams must leave
    it to exact per-sample gradients, not factor it."""
    rng = np.random.default_rng(1)
    params = {"w_in": jnp.asarray(rng.standard_normal((4, 8)) / 2, jnp.float32),
              "w_shared": jnp.asarray(rng.standard_normal((8, 8)) / 3, jnp.float32),
              "w_out": jnp.asarray(rng.standard_normal(8) / 3, jnp.float32)}

    def q(p, o, a):
        h = jnp.tanh(jnp.concatenate([o, a], -1) @ p["w_in"])
        h = jnp.tanh(h @ p["w_shared"])
        return jnp.tanh(h @ p["w_shared"]) @ p["w_out"]

    obs, nxt = (jnp.asarray(rng.standard_normal((16, 3)), jnp.float32) for _ in range(2))
    act = jnp.asarray(rng.standard_normal((16, 1)), jnp.float32)
    pairs, _ = ntk._structured_features(q, params, obs, act)
    assert len(pairs) == 1            # w_in; not w_shared (used twice), not the vector w_out
    c = jnp.full((16,), 0.9)
    A, g = ntk.td_grams(q, params, obs, act, nxt, act, c)
    g_ref = ntk.gram(q, params, obs, act)
    a_ref = c[:, None] * ntk.gram(q, params, nxt, act, obs, act) - g_ref
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(g_ref).max()))
    np.testing.assert_allclose(A, a_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(a_ref).max()))
