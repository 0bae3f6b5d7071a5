"""What SeemMonitor costs in the examples' loops, and what its default probe (N = 256) loses.

Per critic type (torch module; JAX through the driver's MLP fast path; JAX through the
generic any-q path): seconds per measurement at the default probe (median of `--repeats`,
compilation excluded and reported apart), seconds per training step of the example's loop
without the monitor, the measurements SeemSchedule places in the example's run (3,000 steps)
and in 100k / 1M steps, and the monitor's overhead as a share of training time for each.

Probe-size error: the JAX example's critic trained K steps (a diverging one and a LayerNorm
one), SEEM on 10 probes of 256 against one of 2,560 (fast exact path).

    PYTHONPATH=src python benchmarks/monitor_cost.py [--repeats 5]

Writes benchmarks/results/monitor_cost.json. The load average is recorded: on a shared
machine every absolute number is inflated, ratios less so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seemrl.diagnostics import SeemMonitor, SeemSchedule
from seemrl.diagnostics.seem import seem_mlp
from seemrl.diagnostics.tracking import draw_probe
from seemrl.networks import Actor, Critic, MLPConfig, head_params, q_head_fn
from seemrl.types import Batch

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN_STEPS = (3_000, 100_000, 1_000_000)


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _time_measurements(monitor, args_fn, repeats):
    """(first call s, median steady s): step at the schedule's points, one per call."""
    sched = monitor.schedule.steps(10_000)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = monitor.step(sched[i], *args_fn())
        assert out.measured
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def _train_seconds_per_step(mod, argv, steps=300):
    """The example's loop without the monitor: s/step after the first 50 (compilation)."""
    short = mod.main([*argv, "--steps", "50", "--no-monitor"])
    full = mod.main([*argv, "--steps", str(steps), "--no-monitor"])
    return (full["seconds"] - short["seconds"]) / (steps - 50)


def probe_error(jx, steps_list=((150, False), (1_000, True)), trials=10):
    """SEEM at N = 256 (10 draws) against N = 2,560 on the JAX example's trained critic."""
    data = {k: np.asarray(v, np.float32) for k, v in jx.load(jx.LOCAL_COPY, 0.01, 0).items()}
    out = []
    for steps, ln in steps_list:
        n, od, ad = len(data["obs"]), data["obs"].shape[1], data["act"].shape[1]
        cfg = MLPConfig(hidden=(256, 256), norm="layernorm" if ln else "none")
        actor, critic = Actor(MLPConfig(hidden=(256, 256)), ad), Critic(cfg)
        ka, kc, key = jax.random.split(jax.random.key(0), 3)
        ap, cp = actor.init(ka, jnp.zeros((1, od))), critic.init(kc, jnp.zeros((1, od)),
                                                                  jnp.zeros((1, ad)))
        opt = optax.adam(jx.LR)
        s = {"actor": ap, "critic": cp, "actor_t": ap, "critic_t": cp,
             "actor_opt": opt.init(ap), "critic_opt": opt.init(cp)}
        critic_step, actor_step = jx.make_update(actor, critic, opt)
        rng = np.random.default_rng(0)
        cols = [jnp.asarray(data[k]) for k in ("obs", "act", "rewards", "next_obs", "done")]
        for t in range(1, steps + 1):
            idx = jnp.asarray(rng.integers(0, n, jx.BATCH))
            key, k = jax.random.split(key)
            s, _ = critic_step(s, [c[idx] for c in cols], k)
            if t % 2 == 0:
                s = actor_step(s, cols[0][idx])
        full = Batch(data["obs"], data["act"], data["rewards"], data["next_obs"],
                     1.0 - data["done"])

        def value(size, seed, full=full, actor=actor, s=s, cfg=cfg):
            p = draw_probe(full, size, seed)
            nxt = actor.apply(s["actor"], p.obs_t)
            return seem_mlp(cfg, head_params(s["critic"], 0), p.obs_tm1, p.a_tm1, p.obs_t, nxt,
                            jx.GAMMA, 1.0 - p.discount_t).normalized

        ref = value(2_560, 0)
        small = [value(256, seed) for seed in range(1, trials + 1)]
        err = np.abs(np.asarray(small) - ref)
        out.append({"critic": f"jax_td3 {'LN' if ln else 'no LN'} after {steps} steps",
                    "seem_2560": ref, "seem_256_mean": float(np.mean(small)),
                    "seem_256_std": float(np.std(small)), "abs_err_mean": float(err.mean()),
                    "abs_err_max": float(err.max())})
        print(out[-1])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-error", action="store_true")
    args = p.parse_args(argv)
    load0 = os.getloadavg()[0]
    jx, tt = _example("jax_td3"), _example("torch_td3")
    data = jx.load(jx.LOCAL_COPY, 0.01, 0)
    sched = SeemSchedule()
    counts = {s: len(sched.steps(s)) for s in RUN_STEPS}
    rows = []

    # JAX critics (the example's: a seemrl Critic ensemble, head 0 measured)
    od, ad = data["obs"].shape[1], data["act"].shape[1]
    cfg = MLPConfig(hidden=(256, 256))
    actor, critic = Actor(cfg, ad), Critic(cfg)
    ap = actor.init(jax.random.key(0), jnp.zeros((1, od)))
    cp = critic.init(jax.random.key(1), jnp.zeros((1, od)), jnp.zeros((1, ad)))
    jax_train = _train_seconds_per_step(jx, [])
    for name, crit in (("jax (MLPConfig fast path)", cfg), ("jax (generic q)",
                                                             q_head_fn(cfg, 0))):
        mon = SeemMonitor(crit, data, 0.99, actor.apply)
        first, steady = _time_measurements(mon, lambda: (cp, ap), args.repeats)
        rows.append((name, first, steady, jax_train))

    import torch

    torch.set_num_threads(1)
    t_actor = tt.Actor(od, ad, 1.0)
    t_critic = tt.Critic(od, ad, False)
    mon = SeemMonitor(t_critic, data, 0.99, t_actor)
    first, steady = _time_measurements(mon, lambda: (), args.repeats)
    rows.append(("torch (nn.Module, Linear factors)", first, steady,
                 _train_seconds_per_step(tt, [])))

    results = []
    for name, first, steady, train in rows:
        r = {"critic": name, "probe": 256, "first_call_s": first, "seconds_per_measurement": steady,
             "train_seconds_per_step": train}
        for s in RUN_STEPS:
            r[f"measurements_{s}"] = counts[s]
            r[f"overhead_pct_{s}"] = 100 * counts[s] * steady / (s * train)
        results.append(r)
        print(f"{name:36s} {steady * 1e3:7.1f} ms/measurement (first {first:.1f} s), "
              f"train {train * 1e3:.2f} ms/step, overhead "
              + ", ".join(f"{r[f'overhead_pct_{s}']:.1f} % @ {s:,}" for s in RUN_STEPS))
    error = [] if args.skip_error else probe_error(jx)
    out = {"results": results, "probe_size_error": error, "example_run_steps": RUN_STEPS[0],
           "load_average": [load0, os.getloadavg()[0]], "jax": jax.__version__,
           "torch": torch.__version__}
    path = ROOT / "benchmarks" / "results" / "monitor_cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
