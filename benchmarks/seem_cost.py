"""Cost of one SEEM measurement on a Hopper-sized 256-256 critic, against the authors' way.

Reference ("loop"): what the authors' code does — one backward pass per sample in a Python
loop (here a jitted single-sample grad, the JAX analogue of their per-sample
`loss.backward()`), Φ(X) and Φ(X*) stacked on the host and divided by √P, the two Gram
blocks by dense matmul, then a full non-symmetric eigendecomposition (LAPACK geev, float64).

Ours: "dense generic" (any q; A = BΦᵀ through chunked JVPs), "dense fast" (the exact MLP
NTK path), "matrix-free" (Arnoldi on JVP/VJP products + sketched ‖A‖_F). All with the same
√P convention, so `raw` is comparable too. Times exclude compilation (reported separately as
`first_call_s`), as in training where a measurement compiles once; `steady_s` is the median
of `--repeats` calls (the reference is timed once: it takes minutes).

Per-stage rows ("stages", JSON only and a short table) time the dense fast path's pieces,
each beside the previous implementation in the same process, alternating, so their ratio
holds under the load of a shared machine: A formed from feature differences vs. as the
difference of two float32 Gram blocks, and the rightmost eigenpair by `krylov.py` on the
device array vs. ARPACK `eigs(which="LR", ncv=256)` on a float64 host copy.

    .venv/bin/python benchmarks/seem_cost.py [--sizes 256 2560] [--loop-limit K]

`--loop-limit K` times only K samples of the per-sample loop and extrapolates that part
linearly (flagged in the output); the default times the whole loop. The load average at the
start and end is recorded: on the shared 2-core machine every absolute time is inflated.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import ntk
from seemrl.diagnostics.seem import (
    _frobenius,
    mlp_seem_matrix,
    seem,
    seem_from_matrix,
    seem_mlp,
    top_eig,
)
from seemrl.networks import MLPConfig, QNetwork

OBS_DIM, ACT_DIM, GAMMA = 11, 3, 0.99
CONFIG = MLPConfig(hidden=(256, 256))


def _problem(n: int, key: int = 0):
    k = jax.random.split(jax.random.key(key), 5)
    obs = jax.random.normal(k[0], (n, OBS_DIM))
    act = jax.random.uniform(k[1], (n, ACT_DIM), minval=-1, maxval=1)
    next_obs = obs + 0.1 * jax.random.normal(k[2], (n, OBS_DIM))
    next_act = jax.random.uniform(k[3], (n, ACT_DIM), minval=-1, maxval=1)
    net = QNetwork(CONFIG)
    params = jax.jit(net.init)(k[4], obs, act)
    return net, params, obs, act, next_obs, next_act


def loop_reference(net, params, obs, act, next_obs, next_act, loop_limit=None):
    """The authors' recipe; returns (SeemResult, timings dict, extrapolated flag)."""
    n_params = ntk.num_params(params)

    @jax.jit
    def grad_one(p, o, a):
        return jax.grad(lambda p: net.apply(p, o[None], a[None])[0])(p)

    def phi_rows(o_all, a_all, count):
        rows = []
        for i in range(count):                    # one backward pass per sample
            g = grad_one(params, o_all[i], a_all[i])
            rows.append(np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(g)]))
        return np.stack(rows) / np.sqrt(n_params)

    n = obs.shape[0]
    count = n if loop_limit is None else min(loop_limit, n)
    grad_one(params, obs[0], act[0])              # compile outside the timing
    t = time.perf_counter()
    phi = phi_rows(obs, act, count)
    phi_s = phi_rows(next_obs, next_act, count)
    loop_s = (time.perf_counter() - t) * n / count
    if count < n:                                 # the rest is needed for the value
        phi = np.concatenate([phi, np.asarray(ntk.per_sample_grads(
            lambda p, o, a: net.apply(p, o, a), params, obs[count:], act[count:],
            scale=True, chunk_size=256))])
        phi_s = np.concatenate([phi_s, np.asarray(ntk.per_sample_grads(
            lambda p, o, a: net.apply(p, o, a), params, next_obs[count:], next_act[count:],
            scale=True, chunk_size=256))])
    t = time.perf_counter()
    A = GAMMA * phi_s @ phi.T - phi @ phi.T
    gram_s = time.perf_counter() - t
    t = time.perf_counter()
    res = seem_from_matrix(A, eig="full")
    eig_s = time.perf_counter() - t
    return res, {"loop_s": loop_s, "gram_s": gram_s, "eig_s": eig_s}, count < n


def _timed(fn, repeats: int = 3):
    """(result, first-call seconds incl. compilation, median and min of `repeats` steady calls;
    one steady call when the first took over a minute)."""
    t = time.perf_counter()
    res = fn()                                     # compiles
    first_s = time.perf_counter() - t
    times = []
    for _ in range(repeats if first_s < 60 else 1):
        t = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t)
    return res, first_s, float(np.median(times)), min(times)


def measure_size(n: int, loop_limit: int | None, repeats: int) -> list[dict]:
    """All methods at probe size n; rows carry time, value and error against the loop."""
    net, params, obs, act, next_obs, next_act = _problem(n)

    def q(p, o, a):
        return net.apply(p, o, a)

    load = os.getloadavg()[0]
    ref, parts, extrapolated = loop_reference(net, params, obs, act, next_obs, next_act,
                                              loop_limit)
    ref_s = sum(parts.values())
    rows = [{"N": n, "method": "loop (authors)", "first_call_s": None, "steady_s": ref_s,
             **parts, "loop_extrapolated": extrapolated, "normalized": ref.normalized,
             "raw": ref.raw, "load_1min": [load, os.getloadavg()[0]]}]
    data = (params, obs, act, next_obs, next_act, GAMMA)
    methods = {
        "dense generic": lambda: seem(q, *data, method="dense", scale=True),
        "dense fast (MLP)": lambda: seem_mlp(CONFIG, *data, scale=True),
        "matrix-free": lambda: seem(q, *data, method="matrix_free", scale=True),
    }
    for name, fn in methods.items():
        load = os.getloadavg()[0]
        res, first_s, steady_s, min_s = _timed(fn, repeats)
        rows.append({"N": n, "method": name, "first_call_s": first_s, "steady_s": steady_s,
                     "steady_min_s": min_s, "normalized": res.normalized, "raw": res.raw,
                     "load_1min": [load, os.getloadavg()[0]]})
    for r in rows:
        r["speedup_vs_loop"] = ref_s / r["steady_s"]
        r["rel_err_normalized"] = abs(r["normalized"] - ref.normalized) / abs(ref.normalized)
        r["rel_err_raw"] = abs(r["raw"] - ref.raw) / abs(ref.raw)
    return rows


def _previous_formation(params, obs, act, next_obs, next_act):
    """A as the previous fast path formed it: c·G(X*, X) − G(X, X) from two float32 Grams."""
    fx = ntk.mlp_features(CONFIG, params, obs, act)
    fs = ntk.mlp_features(CONFIG, params, next_obs, next_act)
    A = GAMMA * ntk.mlp_gram_from_features(CONFIG, fs, fx)
    return (A - ntk.mlp_gram_from_features(CONFIG, fx, fx)) / ntk.num_params(params)


def _previous_eig(A):
    """The previous top_eig for N > 300: float64 host copy, ARPACK LR, ncv = 256, 10 restarts."""
    from scipy.sparse.linalg import eigs

    A = np.asarray(A, np.float64)
    v0 = np.random.default_rng(0).standard_normal(A.shape[0])
    w, _ = eigs(A, k=1, which="LR", tol=1e-8, ncv=min(A.shape[0], 256), v0=v0, maxiter=10)
    return complex(w[0])


def measure_stages(n: int, repeats: int) -> list[dict]:
    """The dense fast path's stages at probe size n, each next to the previous implementation
    in the same process (alternating calls, medians), with the value each gives."""
    _, params, obs, act, next_obs, next_act = _problem(n)
    args = (params, obs, act, next_obs, next_act)
    features = jax.jit(lambda p, o, a: ntk.mlp_features(CONFIG, p, o, a))
    form_new = jax.jit(lambda *a: mlp_seem_matrix(CONFIG, *a, GAMMA, scale=True))
    form_old = jax.jit(_previous_formation)
    A = jax.block_until_ready(form_new(*args))
    A_old = jax.block_until_ready(form_old(*args))
    stages = {
        "features (X and X*)": (lambda: jax.block_until_ready(
            (features(params, obs, act), features(params, next_obs, next_act))), None),
        "form A": (lambda: jax.block_until_ready(form_new(*args)),
                   lambda: jax.block_until_ready(form_old(*args))),
        "host copy": (lambda: np.asarray(A), lambda: np.asarray(A_old, np.float64)),
        "frobenius": (lambda: _frobenius(A), lambda: np.linalg.norm(
            np.asarray(A_old, np.float64))),
        "rightmost eigenpair": (lambda: top_eig(A), lambda: _previous_eig(A_old)),
    }
    rows = []
    for name, (new_fn, old_fn) in stages.items():
        load = os.getloadavg()[0]
        new_fn(), old_fn and old_fn()              # compile / warm up
        t_new, t_old = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            new_fn()
            t_new.append(time.perf_counter() - t)
            if old_fn:
                t = time.perf_counter()
                old_fn()
                t_old.append(time.perf_counter() - t)
        row = {"N": n, "stage": name, "now_s": float(np.median(t_new)),
               "previous_s": float(np.median(t_old)) if t_old else None,
               "load_1min": [load, os.getloadavg()[0]]}
        if t_old:
            row["previous_over_now"] = row["previous_s"] / row["now_s"]
        rows.append(row)
    full = np.linalg.eigvals(np.asarray(A, np.float64)) if n <= 1024 else None
    lam_new, lam_old = top_eig(A)[0], _previous_eig(A_old)
    rows.append({"N": n, "stage": "values", "eig_now": lam_new.real, "eig_previous":
                 lam_old.real, "eig_full_geev_of_A_now": None if full is None else
                 float(full.real.max())})
    return rows


def time_probe(n: int) -> dict:
    """Steady-state cost of the in-training `probe_metrics` call (all 8 `seem/` metrics, fast
    MLP path on head 0 of a 2-head critic, current actor for X*)."""
    from seemrl.diagnostics.probe import init_memory, make_probe_fn
    from seemrl.networks import Actor, Critic
    from seemrl.types import Batch

    _, _, obs, act, next_obs, _ = _problem(n)
    actor = Actor(CONFIG, ACT_DIM)
    k = jax.random.split(jax.random.key(1), 2)
    cp = jax.jit(Critic(CONFIG).init)(k[0], obs, act)
    ap = jax.jit(actor.init)(k[1], obs)
    probe = Batch(obs, act, jnp.zeros(n), next_obs, jnp.ones(n))
    measure = make_probe_fn(CONFIG, actor.apply, GAMMA)
    memory = init_memory(CONFIG, cp, probe)

    def call():
        return jax.block_until_ready(measure(cp, ap, probe, memory))

    _, first_s, steady_s, _ = _timed(call)
    return {"N": n, "method": "probe_metrics (in training)", "first_call_s": first_s,
            "steady_s": steady_s}


def run(sizes, loop_limit, repeats):
    rows = []
    for n in sizes:
        rows += measure_size(n, loop_limit, repeats)
        print_table([r for r in rows if r["N"] == n and "method" in r])
        rows += measure_stages(n, repeats)
        print_stages([r for r in rows if r["N"] == n and "stage" in r])
    return rows


def print_stages(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dense fast path by stage, N = {rows[0]['N']} (medians, alternating)")
    for col in ("stage", "now s", "previous s", "previous / now", "load"):
        table.add_column(col, justify="right")
    for r in rows:
        if r["stage"] == "values":
            continue
        prev = r["previous_s"]
        table.add_row(r["stage"], f"{r['now_s']:.3f}", "—" if prev is None else f"{prev:.3f}",
                      "—" if prev is None else f"{r['previous_over_now']:.1f}×",
                      f"{r['load_1min'][0]:.1f}")
    Console(width=140).print(table)
    v = rows[-1]
    print(f"rightmost eigenvalue now {v['eig_now']:.9e}, previous {v['eig_previous']:.9e}"
          + ("" if v["eig_full_geev_of_A_now"] is None
             else f", full geev {v['eig_full_geev_of_A_now']:.9e}"))


def print_table(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one SEEM measurement, 256-256 critic, N = {rows[0]['N']}")
    for col in ("method", "steady s", "first call s", "speed-up", "SEEM", "rel err SEEM",
                "rel err raw"):
        table.add_column(col, justify="right")
    for r in rows:
        note = " (loop extrapolated)" if r.get("loop_extrapolated") else ""
        table.add_row(r["method"] + note, f"{r['steady_s']:.3f}",
                      "—" if r["first_call_s"] is None else f"{r['first_call_s']:.2f}",
                      f"{r['speedup_vs_loop']:.1f}×", f"{r['normalized']:.6f}",
                      f"{r['rel_err_normalized']:.1e}", f"{r['rel_err_raw']:.1e}")
    Console(width=140).print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 2560])
    parser.add_argument("--loop-limit", type=int, default=None,
                        help="time only this many samples of the per-sample loop and "
                             "extrapolate linearly (flagged in the output)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="steady calls per method (the median is reported)")
    parser.add_argument("--probe-sizes", type=int, nargs="*", default=[256, 512, 2560],
                        help="also time the in-training probe_metrics call at these N")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                              "seem_cost.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()
    rows = run(args.sizes, args.loop_limit, args.repeats)
    for n in args.probe_sizes:
        rows.append(time_probe(n))
        print(f"probe_metrics at N = {n}: {rows[-1]['steady_s']:.3f} s per call "
              f"(first call with compilation {rows[-1]['first_call_s']:.2f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
            "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(),
            "jax": jax.__version__,
            # krylov.py limits BLAS to one thread when threadpoolctl is importable.
            "threadpoolctl": importlib.util.find_spec("threadpoolctl") is not None,
            "backend": jax.default_backend(), "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
            "hidden": list(CONFIG.hidden), "P": ntk.num_params(_problem(2)[1]),
            "times_exclude_compilation": True}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
