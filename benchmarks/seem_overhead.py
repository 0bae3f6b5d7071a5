"""SEEM's share of training time at the defaults, per algorithm (issue 23, item 1: ≤ 5 %).

For each algorithm at its default `Config` (one seed, batch 256, a Hopper-shaped dataset of
10 000 random-walk transitions, no evaluation), in one process:

* `step_s`: seconds per gradient step, from a timed chunk of `--chunk` steps (compiled first);
* `seem_s`: seconds per SEEM measurement on the default probe (`TrainConfig().seem_probe`
  transitions, the driver's `SeemTracker.measure`: the NTK, eigenvalue, cosines), the median
  of `--repeats` calls after a first (compiling) one;
* the default schedule's measurement count over a run of `steps` (`SeemSchedule()` with
  `TrainConfig()`'s `seem_first` / `seem_every`), and the overhead
  count × seem_s / (steps × step_s) at 10k, 100k (the default run) and 1M steps.

Timings on the shared 2-core machine are inflated by whatever else runs; both numbers of an
algorithm are taken back to back in the same process, so their ratio holds better than
either. Results: benchmarks/results/seem_overhead.json (and a table on stdout).

    .venv/bin/python benchmarks/seem_overhead.py [--algos td3bc iql] [--chunk 500]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

RUN_LENGTHS = (10_000, 100_000, 1_000_000)


def _dataset(path: pathlib.Path, n: int = 10_000) -> pathlib.Path:
    from seemrl.data.npz import save_npz
    from seemrl.types import Dataset

    rng = np.random.default_rng(0)
    obs = np.cumsum(rng.normal(0, 0.1, (n + 1, 11)), axis=0).astype(np.float32)
    ends = np.zeros(n, bool)
    ends[999::1000] = True
    return save_npz(path, Dataset(observations=obs[:-1], next_observations=obs[1:],
                                  actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                                  rewards=rng.normal(1.0, 0.5, n).astype(np.float32),
                                  terminals=np.zeros(n, np.float32), timeouts=ends,
                                  episode_ends=ends, metadata={}))


def measure(algo: str, data: pathlib.Path, out: pathlib.Path, chunk: int, repeats: int):
    import jax

    from seemrl import algos
    from seemrl.diagnostics.schedule import SeemSchedule
    from seemrl.runconfig import TrainConfig
    from seemrl.train import Trainer

    cfg = TrainConfig(dataset=str(data), algo=algo, seeds=(0,), steps=10 * chunk,
                      log_every=chunk, eval_episodes=0, checkpoint_every=0, seed_groups=1)
    trainer = Trainer(cfg, algos.get(algo).Config(), out / algo)
    trainer._run_groups(chunk)  # compiles outside the timed call
    t0 = time.perf_counter()
    trainer.states = trainer._run_groups(chunk)[0]
    step_s = (time.perf_counter() - t0) / chunk
    trainer.seem.measure(trainer.states)  # compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(trainer.seem.measure(trainer.states))
        times.append(time.perf_counter() - t0)
    seem_s = float(np.median(times))
    schedule = SeemSchedule(cfg.seem_first, cfg.seem_every)
    rows = {}
    for steps in RUN_LENGTHS:
        count = len(schedule.steps(steps))
        rows[str(steps)] = {"measurements": count,
                            "overhead_pct": 100 * count * seem_s / (steps * step_s)}
    return {"algo": algo, "step_s": step_s, "seem_s": seem_s, "probe": cfg.seem_probe,
            "by_run_length": rows}


def main(argv=None) -> None:
    from seemrl import algos

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=list(algos.ALGORITHMS))
    p.add_argument("--chunk", type=int, default=500, help="timed training steps")
    p.add_argument("--repeats", type=int, default=5, help="timed SEEM measurements")
    p.add_argument("--out", default="benchmarks/results/seem_overhead.json")
    args = p.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        data = _dataset(tmp / "hopper_like.npz")
        rows = [measure(a, data, tmp, args.chunk, args.repeats) for a in args.algos]
    record = {"machine": platform.platform(), "cpus": os.cpu_count(),
              "load_before": load, "load_after": os.getloadavg(), "rows": rows}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"{'algo':8} {'step ms':>8} {'SEEM ms':>8} " + " ".join(
        f"{f'{n // 1000}k: n, %':>16}" for n in RUN_LENGTHS))
    for r in rows:
        print(f"{r['algo']:8} {1e3 * r['step_s']:8.2f} {1e3 * r['seem_s']:8.1f} " + " ".join(
            f"{v['measurements']:>7} {v['overhead_pct']:7.2f}%"
            for v in r["by_run_length"].values()))
    print(f"wrote {out} (load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after)")


if __name__ == "__main__":
    main()
