"""Calibrate the divergence verdict on real runs, then measure it on runs it never saw.

    python experiments/verdict_calibration.py --out runs/verdict [--steps 15000] [--plan]

Runs TD3 with no BC term (the diverging setting) on small subsets of seemrl's own datasets,
LayerNorm off and on, several γ, 3 seeds each, logging SEEM every `seem_every` steps.
Ground truth for a seed: its mean Q passes max|r|/(1 − γ) (no correct critic can) or turns
non-finite before the end; the explosion step is the first log point where it does.

Calibration runs (hopper-medium) pick the rule's SEEM threshold and persistence by accuracy
(ties: the earlier warning). Held-out runs (other datasets and γ, fixed before they are run)
then report accuracy, false alarms, misses and how many steps before the explosion the rule
fired. Results go to OUT/verdict.json and OUT/verdict.md (numbers only from the runs).

The truth, the replay of the verdict and the scoring are `seemrl.repro.predict`'s (the same
code measures the fixed rule on the larger held-out family of `seemrl repro predict`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import sys
import time

from seemrl.algos import td3bc
from seemrl.diagnostics.verdict import VerdictConfig
from seemrl.repro.predict import CALIBRATION, SeedRun, config, judge, load_seeds, score
from seemrl.train import TrainConfig, Trainer

# CALIBRATION (the runs the rule is fitted on) lives in seemrl.repro.predict, so the held-out
# family of `seemrl repro predict` can be checked against it.
HELD_OUT = [config(d, 0.01, 0.99, ln) for d in ("hopper-expert", "hopper-medium-replay")
            for ln in (False, True)]
GRID = dict(seem_threshold=(0.02, 0.05, 0.1, 0.2), consecutive=(1, 2, 3, 5))


def run_name(spec: dict) -> str:
    return (f"{spec['dataset']}-f{spec['fraction']:g}-g{spec['gamma']:g}"
            f"{'-ln' if spec['layer_norm'] else ''}")


def run_one(spec: dict, args, out: pathlib.Path) -> pathlib.Path:
    from seemrl.data import generate

    run_dir = out / run_name(spec)
    if (run_dir / "status.json").exists() and json.loads(
            (run_dir / "status.json").read_text())["step"] >= args.steps:
        return run_dir  # finished before: reuse
    data = generate.dataset_path(spec["dataset"], args.data_dir, args.size)
    if not data.exists():
        generate.make_dataset(spec["dataset"], size=args.size, data_dir=args.data_dir)
    cfg = TrainConfig(dataset=str(data), seeds=(0, 1, 2), steps=args.steps,
                      fraction=spec["fraction"], log_every=500, eval_every=0, eval_episodes=0,
                      checkpoint_every=0, seem_every=args.seem_every, seem_probe=128,
                      q_bound=float("inf"))
    algo = td3bc.Config(bc_coef=0.0, gamma=spec["gamma"], layer_norm=spec["layer_norm"],
                        optimizer=spec["optimizer"], tau=spec["tau"],
                        lr_critic=spec["lr"])
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an unfinished earlier attempt
    Trainer(cfg, algo, run_dir).run(progress=False)
    return run_dir


def evaluate(seeds: list[SeedRun], cfg: VerdictConfig) -> dict:
    """The rule `cfg` on these seeds: `seemrl.repro.predict.score` of their records, with the
    calibration's original summary keys."""
    s = score([judge(r, cfg) for r in seeds])
    w = s["warning"]
    return {"runs": s["seed_runs"], "accuracy": w["accuracy"] or 0.0,
            "true_positive": w["true_positive"], "false_alarm": w["false_alarm"],
            "missed": w["missed"], "true_negative": w["true_negative"],
            "steps_ahead_median": s["steps_ahead"]["median"],
            "steps_ahead_min": s["steps_ahead"]["min"],
            "fired_before_explosion": s["prediction"]["true_positive"]}


def calibrate(seeds: list[SeedRun]) -> tuple[VerdictConfig, list[dict]]:
    table = []
    for thr, k in itertools.product(GRID["seem_threshold"], GRID["consecutive"]):
        cfg = VerdictConfig(seem_threshold=thr, consecutive=k)
        table.append({"seem_threshold": thr, "consecutive": k, **evaluate(seeds, cfg)})
    best = max(table, key=lambda r: (r["accuracy"], r["steps_ahead_median"] or -1e18))
    return VerdictConfig(seem_threshold=best["seem_threshold"],
                         consecutive=best["consecutive"]), table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/verdict")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seem-every", type=int, default=1000)
    p.add_argument("--size", type=int, default=100_000, help="transitions per dataset")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--plan", action="store_true", help="list the runs and exit")
    args = p.parse_args(argv)
    from seemrl.data import generate

    args.data_dir = pathlib.Path(args.data_dir) if args.data_dir else generate.default_data_dir()
    out = pathlib.Path(args.out)
    if args.plan:
        for group, specs in (("calibration", CALIBRATION), ("held-out", HELD_OUT)):
            print(group, *map(run_name, specs), sep="\n  ")
        return 0
    t0 = time.time()
    cal = [s for spec in CALIBRATION for s in load_seeds(run_one(spec, args, out))]
    best, table = calibrate(cal)
    held = [s for spec in HELD_OUT for s in load_seeds(run_one(spec, args, out))]
    result = {"steps": args.steps, "seeds": [0, 1, 2], "seem_every": args.seem_every,
              "calibrated": dataclasses.asdict(best), "calibration_grid": table,
              "calibration": evaluate(cal, best), "held_out": evaluate(held, best),
              "runs": {s.run + f"/seed{s.seed}": {"exploded_at": s.exploded_at,
                                                   "ceiling": s.ceiling,
                                                   "final_seem": float(s.seem[-1])
                                                   if len(s.seem) else None}
                       for s in cal + held},
              "minutes": round((time.time() - t0) / 60, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "verdict.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    c, h, b = r["calibration"], r["held_out"], r["calibrated"]
    row = lambda name, e: (f"| {name} | {e['runs']} | {100 * e['accuracy']:.0f} % | "
                           f"{e['false_alarm']} | {e['missed']} | {e['fired_before_explosion']}"
                           f" of {e['true_positive']} | {e['steps_ahead_median']} |")
    return "\n".join([
        "## Divergence verdict: calibration and held-out accuracy",
        "",
        f"TD3 (bc_coef 0), {r['steps']} steps, seeds {r['seeds']}, SEEM every "
        f"{r['seem_every']} steps on a 128-transition probe. A seed diverges when its mean Q "
        "passes max|r|/(1 − γ) or turns non-finite.",
        f"Calibrated rule: SEEM > {b['seem_threshold']} for {b['consecutive']} measurement(s) "
        "in a row, or super-linear Q growth / Q past the ceiling.",
        "",
        "| runs | seed-runs | accuracy | false alarms | missed | fired before explosion |"
        " median steps ahead |",
        "|---|---|---|---|---|---|---|",
        row("calibration (hopper-medium)", c),
        row("held out (hopper-expert, hopper-medium-replay)", h),
        "", f"({r['minutes']} minutes of runs)", ""])


if __name__ == "__main__":
    sys.exit(main())
