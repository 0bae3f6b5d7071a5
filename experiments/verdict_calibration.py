"""Calibrate the divergence verdict on the calibration family alone, and show the grid.

    python experiments/verdict_calibration.py [--scale cpu] [--out runs/repro/cpu]

Trains (or reuses) the calibration family of `seemrl repro predict` (`predict.CALIBRATION`,
fixed in code before its runs, the same run folders `repro predict` uses), replays every rule
of `predict.GRID` on its logs, and prints the grid ranked by `predict.objective` (recall minus
false-alarm rate, then the median lead as a fraction of the time to the ceiling). The best rule
is what `VerdictConfig()`'s defaults should be; the held-out family is never read here, so
`seemrl repro predict` then judges the rule on runs it did not see.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from seemrl.repro import predict
from seemrl.repro._common import Context


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="cpu", choices=list(predict.SCALES))
    p.add_argument("--out", default=None, help="experiments folder (default runs/repro/SCALE)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    from rich.console import Console

    from seemrl.behaviour import files

    out = pathlib.Path(args.out or f"runs/repro/{args.scale}") / "predict"
    ctx = Context(name="predict", scale=args.scale, params=dict(predict.SCALES[args.scale]),
                  out=out, data_dir=pathlib.Path(args.data_dir) if args.data_dir
                  else files.default_data_dir(), console=Console())
    seeds = predict._train(ctx, predict._specs(ctx, ctx.params["calibration"]))
    best, rows = predict.calibrate([r for rs in seeds.values() for r in rs])
    rows.sort(key=predict.objective, reverse=True)
    keys = list(predict.GRID)
    print("| " + " | ".join(keys) + " | recall | false alarms | unsettled | median lead "
          "fraction |")
    print("|" + "---|" * (len(keys) + 4))
    for r in rows:
        print("| " + " | ".join(f"{r['rule'][k]:g}" for k in keys)
              + f" | {predict._pct(r['recall'])} | {r['false_alarms']} | "
                f"{r['unsettled_alarms']} | {predict._f2(r['lead_fraction_median'])} |")
    (out / "calibration.json").write_text(json.dumps(rows, indent=1))
    print(f"best: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
