"""The cells of `repro fraction` the CPU cannot run: CQL and Diffusion-QL at paper length.

    python experiments/fraction_gpu.py                      # on a GPU, ≤ --budget-s seconds
    python experiments/fraction_gpu.py --smoke --out DIR    # seconds, on the CPU (the test)
    seemrl repro fraction --scale cpu --collect             # the report then reads it

CQL and Diffusion-QL on hopper-medium at 1 % and 100 % of its transitions, each with and
without the LayerNorm critic: 1M gradient steps, the seeds side by side in one vmapped group
(10, the paper's count), 10 evaluation episodes every 100k steps, score = mean of the last 3.
Run names, options and the subset are `repro fraction`'s own (`fraction.specs`), so the cells
compare with the CPU ones. The runs go to OUT/runs (default: inside the CPU experiment's
folder, runs/repro/cpu/fraction/gpu, where its report looks) and OUT/results.json says what ran,
on what, and which runs finished.

Resumable: finished runs are skipped, interrupted ones resume from their last checkpoint
(every 50k steps). After --budget-s seconds the script interrupts training (a checkpoint is
saved), writes results.json with the unfinished runs as pending, and exits 0; run it again to
go on. How far one 10-minute call gets depends on the GPU; the report never waits for it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _gpu  # noqa: E402

from seemrl.repro import _common, fraction  # noqa: E402

PARAMS = {
    "datasets": ["hopper-medium"], "size": 1_000_000, "eval_episodes": 10, "evals": 10,
    "log_every": 5_000, "checkpoint_every": 50_000, "seem_every": 50_000, "seed_groups": 1,
    "score_last": 3,
    "algos": {a: {"steps": 1_000_000, "fractions": [0.01, 1.0], "seeds": list(range(10)),
                  "options": {}} for a in ("cql", "diffql")},
}
"""Paper scale on one dataset (the paper: 10 seeds, 1M steps, 9 datasets)."""

SMOKE = {
    "datasets": ["hopper-medium"], "size": 2_000, "eval_episodes": 1, "evals": 1,
    "log_every": 10, "score_last": 1, "seed_groups": 1,
    "algos": {a: {"steps": 10, "fractions": [0.01], "seeds": [0, 1],
                  "options": fraction.SCALES["smoke"]["algos"][a]["options"]}
              for a in ("cql", "diffql")},
}
"""Seconds on a CPU: the same code path with tiny nets, data and runs (1 % only: each run
costs a compilation)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _gpu.add_arguments(p, "runs/repro/cpu/fraction/gpu", "folder for runs/ and results.json "
                       "(default: where `repro fraction --scale cpu --collect` reads it)")
    args = p.parse_args(argv)
    from seemrl.behaviour import files

    params = json.loads(json.dumps(SMOKE if args.smoke else PARAMS))
    if args.seeds:
        for a in params["algos"].values():
            a["seeds"] = list(range(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = _common.Context(name="fraction_gpu", scale="smoke" if args.smoke else "gpu",
                          params=params, out=args.out,
                          data_dir=args.data_dir or files.default_data_dir(),
                          progress=not args.smoke)
    t0 = time.perf_counter()
    specs = fraction.specs(ctx)
    interrupted = _gpu.train_within(ctx, specs, args.budget_s)
    _gpu.write_record(args.out, "python experiments/fraction_gpu.py"
                      + (" --smoke" if args.smoke else ""), specs, params, t0, interrupted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
