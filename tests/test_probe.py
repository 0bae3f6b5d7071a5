"""The in-training probe measurement: values, cosines to the previous call, seeds by vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl.diagnostics import ntk, seem_mlp
from seemrl.diagnostics.probe import METRIC_KEYS, init_memory, make_probe_fn, probe_metrics
from seemrl.networks import Actor, Critic, MLPConfig, QNetwork, head_params, q_head_fn
from seemrl.types import Batch

CFG = MLPConfig(hidden=(16, 16))
N = 24
ACTOR = Actor(CFG, 2)


def policy(actor_params, obs):
    return ACTOR.apply(actor_params, obs)


def _setup(key=0):
    k = jax.random.split(jax.random.key(key), 6)
    obs = jax.random.normal(k[0], (N, 4))
    probe = Batch(obs, jax.random.uniform(k[1], (N, 2), minval=-1, maxval=1),
                  jax.random.normal(k[2], (N,)), 1.4 * obs + 0.1 * jax.random.normal(k[3], (N, 4)),
                  jnp.ones(N).at[::6].set(0.0))
    critic_params = jax.jit(Critic(CFG).init)(k[4], obs, probe.a_tm1)
    actor_params = jax.jit(ACTOR.init)(k[5], obs)
    return probe, critic_params, actor_params


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def _cos(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def test_probe_metrics_values_and_cosines():
    probe, cp, ap = _setup()
    gamma = 0.99
    measure = make_probe_fn(CFG, policy, gamma)
    m1, mem = measure(cp, ap, probe, init_memory(CFG, cp, probe))
    assert set(m1) == set(METRIC_KEYS)
    assert all(np.isnan(m1[k]) for k in ("seem/ntk_cos", "seem/param_cos", "seem/grad_cos"))
    h0 = head_params(cp, 0)
    next_act = policy(ap, probe.obs_t)
    ref = seem_mlp(CFG, h0, probe.obs_tm1, probe.a_tm1, probe.obs_t, next_act, gamma,
                   1.0 - probe.discount_t)
    assert float(m1["seem/normalized"]) == pytest.approx(ref.normalized, rel=1e-4)
    assert float(m1["seem/raw"]) == pytest.approx(ref.raw, rel=1e-4)
    q = q_head_fn(CFG, 0)
    assert float(m1["seem/q_data"]) == pytest.approx(
        float(jnp.mean(q(cp, probe.obs_tm1, probe.a_tm1))), rel=1e-5)
    assert float(m1["seem/q_policy"]) == pytest.approx(
        float(jnp.mean(q(cp, probe.obs_tm1, policy(ap, probe.obs_tm1)))), rel=1e-5)
    assert float(m1["seem/param_norm"]) == pytest.approx(float(jnp.linalg.norm(_flat(h0))),
                                                         rel=1e-6)

    # A second measurement after the parameters moved: cosines against the first.
    cp2 = jax.tree.map(lambda x: x + 0.05 * jnp.sin(7.0 * x), cp)
    m2, _ = measure(cp2, ap, probe, mem)
    h1 = head_params(cp2, 0)
    gram = jax.jit(lambda h: ntk.mlp_gram(CFG, h, probe.obs_tm1, probe.a_tm1))
    grams = [gram(h) for h in (h0, h1)]

    def td_grad(h):
        c = gamma * probe.discount_t

        def loss(p):
            # TD loss on the probe with the target held fixed (what probe_metrics documents).
            y = probe.r_t + c * jax.lax.stop_gradient(_q_head(p, probe.obs_t, next_act))
            return 0.5 * jnp.mean((_q_head(p, probe.obs_tm1, probe.a_tm1) - y) ** 2)
        return _flat(jax.grad(loss)(h))

    td_grad = jax.jit(td_grad)
    assert float(m2["seem/ntk_cos"]) == pytest.approx(_cos(*grams), abs=1e-5)
    assert float(m2["seem/param_cos"]) == pytest.approx(_cos(_flat(h0), _flat(h1)), abs=1e-5)
    assert float(m2["seem/grad_cos"]) == pytest.approx(_cos(td_grad(h0), td_grad(h1)), abs=1e-4)
    assert float(m2["seem/param_cos"]) < 1.0


def _q_head(params, obs, act):
    return QNetwork(CFG).apply({"params": params}, obs, act)


def test_generic_path_and_seed_vmap():
    probe, cp, ap = _setup()
    measure = make_probe_fn(CFG, policy, 0.99)            # compiled once, reused below
    fast, _ = measure(cp, ap, probe, init_memory(CFG, cp, probe))
    generic, _ = jax.jit(lambda c: probe_metrics(q_head_fn(CFG, 0), c, policy, ap, probe,
                                                 0.99))(cp)
    for k in ("seem/normalized", "seem/raw", "seem/q_data", "seem/q_policy"):
        assert float(generic[k]) == pytest.approx(float(fast[k]), rel=1e-4)

    # Two seeds stacked on a leading axis, measured by one vmapped call.
    seeds = [_setup(key) for key in (1, 2)]

    def stack(*xs):
        return jax.tree.map(lambda *a: jnp.stack(a), *xs)

    probes, cps, aps = (stack(*[s[i] for s in seeds]) for i in range(3))
    batched_measure = make_probe_fn(CFG, policy, 0.99, num_seeds=2)
    mems = jax.vmap(lambda c, p: init_memory(CFG, c, p))(cps, probes)
    batched, _ = batched_measure(cps, aps, probes, mems)
    for i, (probe_i, cp_i, ap_i) in enumerate(seeds):
        single, _ = measure(cp_i, ap_i, probe_i, init_memory(CFG, cp_i, probe_i))
        for k in ("seem/normalized", "seem/q_data", "seem/param_norm"):
            assert float(batched[k][i]) == pytest.approx(float(single[k]), rel=1e-4)
