"""Table 1 at the paper's length on a GPU: `repro antmaze`'s agents on seemrl's AntMaze data.

    python experiments/antmaze_gpu.py                       # on a GPU, ≤ --budget-s seconds
    python experiments/antmaze_gpu.py --smoke --out DIR     # seconds, on the CPU (the test)

Diffusion-QL with and without its LayerNorm critic, IQL and TD3+BC (`repro antmaze`'s agents,
presets and run names) on the AntMaze tasks whose data is in the data folder, umaze first:
1M gradient steps, the seeds side by side in one vmapped group (10, the paper's count; fewer
with --seeds if they do not fit), 100 evaluation episodes every 50k steps, score = mean of
the last 10 evaluations (the paper's protocol). The runs go to OUT/runs; OUT/results.json says
what ran, on what, which runs finished, and the score of each finished one
(`repro antmaze`'s `collect`). Make the data first (`seemrl data make antmaze-umaze`, with the
shipped controller); a task without data is listed as not run.

Resumable: finished runs are skipped, interrupted ones resume from their last checkpoint.
After --budget-s seconds the script interrupts training (a checkpoint is saved), writes
results.json with the unfinished runs as pending, and exits 0; run it again to go on.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _gpu  # noqa: E402

from seemrl import runfolder  # noqa: E402
from seemrl.repro import _common, antmaze  # noqa: E402

PARAMS = {**antmaze.SCALES["paper"], "checkpoint_every": 50_000}
"""The paper's protocol (Table 1): 10 seeds, 1M steps, evaluations every 50k, last 10."""

SMOKE = {**antmaze.SCALES["smoke"], "tasks": ["umaze"], "seeds": [0, 1], "steps": 20,
         "log_every": 10, "eval_every": 10, "eval_episodes": 1, "seem_every": 10}
"""Seconds on a CPU: the same code path on a tiny umaze file made by an untrained controller."""


SMOKE_SIZE = 2_000


def _smoke_data(data_dir: pathlib.Path) -> None:
    """A 2 000-step antmaze-umaze file rolled out by an untrained 32×32 controller (found by
    `repro antmaze` under its own name, antmaze-umaze-v0-n2000.hdf5)."""
    import jax
    import numpy as np

    from seemrl import behaviour
    from seemrl.antmaze.controller import INPUT_DIM
    from seemrl.behaviour.sac import GaussianActor, save_actor
    from seemrl.networks import MLPConfig

    if behaviour.dataset_path("antmaze-umaze", data_dir, SMOKE_SIZE).exists():
        return
    params = GaussianActor(MLPConfig(hidden=(32, 32)), 8).init(
        jax.random.PRNGKey(0), np.zeros((1, INPUT_DIM), np.float32))
    controller = data_dir / "untrained-controller.npz"
    data_dir.mkdir(parents=True, exist_ok=True)
    save_actor(controller, params)
    controller.with_suffix(".json").write_text(json.dumps({"hidden": [32, 32],
                                                           "recipe": "untrained (smoke)"}))
    behaviour.make_dataset("antmaze-umaze", size=SMOKE_SIZE, data_dir=data_dir,
                           controller=controller, progress=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _gpu.add_arguments(p, "runs/repro/gpu/antmaze", "folder for runs/ and results.json "
                       "(default runs/repro/gpu/antmaze; --smoke makes its data in OUT/data)")
    args = p.parse_args(argv)
    from seemrl.behaviour import files
    from seemrl.data.minari import minari_root

    params = json.loads(json.dumps(SMOKE if args.smoke else PARAMS))
    if args.seeds:
        params["seeds"] = list(range(args.seeds))
    data_dir = args.data_dir or (args.out / "data" if args.smoke else files.default_data_dir())
    if args.smoke:
        _smoke_data(data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = _common.Context(name="antmaze_gpu", scale="smoke" if args.smoke else "gpu",
                          params=params, out=args.out, data_dir=data_dir,
                          progress=not args.smoke)
    try:
        found = antmaze.check(data_dir, minari_root())
    except _common.ExperimentUnavailable as e:
        print(f"antmaze_gpu: {e}", file=sys.stderr)
        return 2
    sources = {s.task: s for s in found if s.task in params["tasks"]}
    not_run = [t for t in params["tasks"] if t not in sources]
    datasets = {t: antmaze.prepare_source(sources[t], ctx.out)
                for t in params["tasks"] if t in sources}  # umaze first, as listed
    specs = antmaze.run_specs(params, datasets)
    started = time.perf_counter()
    interrupted = _gpu.train_within(ctx, specs, args.budget_s)
    scores = {}
    for s in specs:
        run = args.out / "runs" / s.name
        if (status := runfolder.read_status(run)) and status.finished:
            scores[s.name] = antmaze.collect(run, params["seeds"], params["last_evals"])
    _gpu.write_record(args.out, "python experiments/antmaze_gpu.py"
                      + (" --smoke" if args.smoke else ""), specs, params, started,
                      interrupted, scores=scores, not_run=not_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
