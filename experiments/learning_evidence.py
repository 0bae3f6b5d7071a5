"""The learning-evidence table of docs/ALGORITHMS.md, from finished `seemrl train` runs.

    python experiments/learning_evidence.py RUN_DIR [RUN_DIR ...] > table.md
    python experiments/learning_evidence.py --per-seed RUN_DIR     # a row per seed

Each RUN_DIR is a `seemrl train` folder (config.json, metrics.jsonl, status.json). One row per
run: algorithm, dataset, the settings (the nearest preset of that algorithm, and every option
the preset sets that the run changed), steps, seeds, the evaluation curve (mean normalised
score over seeds at each evaluation), the final and best evaluation, the median and largest
normalised SEEM the run measured (all seeds, every measurement: SEEM's verdict threshold is
0.1), the fraction of the final evaluation's episodes that ended in a fall (runs made before
evaluation logged it show "—"), and the score the algorithm's paper reports on the D4RL
dataset of the same name. Numbers come from the run folders only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from seemrl import algos, runfolder
from seemrl import config as config_lib
from seemrl.presets import list_presets, load_preset
from seemrl.runconfig import split

PUBLISHED = {
    # Normalised scores on D4RL v2 from each algorithm's paper (CQL: the IQL paper's rerun,
    # as CQL's own table is on v0 data).
    "td3bc": {"halfcheetah-medium": 48.3, "hopper-medium": 59.3, "walker2d-medium": 83.7,
              "source": "Fujimoto & Gu 2021"},
    "iql": {"halfcheetah-medium": 47.4, "hopper-medium": 66.3, "walker2d-medium": 78.3,
            "source": "Kostrikov et al. 2021"},
    "cql": {"halfcheetah-medium": 44.0, "hopper-medium": 58.5, "walker2d-medium": 72.5,
            "source": "Kostrikov et al. 2021"},
    "diffql": {"halfcheetah-medium": 51.1, "hopper-medium": 90.5, "walker2d-medium": 87.0,
               "source": "Wang et al. 2022"},
    "rebrac": {"halfcheetah-medium": 65.6, "hopper-medium": 102.0, "walker2d-medium": 82.5,
               "source": "Tarasov et al. 2023"},
    # Behaviour cloning, the IQL paper's Table 1 column: how far plain cloning gets on D4RL.
    "bc": {"halfcheetah-medium": 42.6, "hopper-medium": 52.9, "walker2d-medium": 75.3,
           "source": "Kostrikov et al. 2021"},
}
NAMES = {"td3bc": "TD3+BC", "iql": "IQL", "cql": "CQL", "diffql": "Diffusion-QL",
         "rebrac": "ReBRAC", "bc": "BC (TD3+BC, α = 0)"}


def algo_key(config: dict) -> str:
    """The algorithm's name for the table: a TD3+BC run with α = 0 has no Q term in its actor
    loss, so it is behaviour cloning (its critic trains, unused) and compares with BC."""
    algo = config["train"]["algo"]
    if algo == "td3bc" and config["algo"].get("alpha") == 0 and config["algo"].get("bc_coef"):
        return "bc"
    return algo


def dataset_name(train: dict) -> str:
    """The dataset's name without folder and version: "hopper-medium"."""
    return pathlib.Path(str(train["dataset"])).name.split("-v0")[0]


def settings(config: dict) -> str:
    """"preset NAME" plus `option=value` for each option the run changed from the preset of its
    algorithm it differs least from (run-length options — steps, decay lengths — included:
    they are part of what was run); on a tie, the preset named after the run's dataset."""
    algo = algos.get(config["train"]["algo"])
    run = {**config["train"], **runfolder.migrate_algo_section(config["algo"], algo.Config)}
    dataset = dataset_name(config["train"])
    best: tuple[str, dict] | None = None
    for name in list_presets():
        preset = load_preset(name)
        if preset["algo"] != algo.NAME:
            continue
        train_part, algo_part = split(preset, algo.Config)
        full = config_lib.to_dict(config_lib.build(algo.Config, algo_part))
        wanted = {**{k: v for k, v in train_part.items() if k != "steps"}, **full}
        diff = {k: run[k] for k, v in wanted.items() if k in run and run[k] != v}
        if best is None or (len(diff), dataset not in name) < (len(best[1]),
                                                                 dataset not in best[0]):
            best = (name, diff)
    if best is None:
        return "no preset"
    changes = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best[1].items()))
    return f"preset {best[0]}" + (f"; {changes}" if changes else "")


def _short(value) -> str:
    if isinstance(value, list):
        return "×".join(map(str, value))
    return str(value)


def run_seeds(run: pathlib.Path) -> list[int]:
    return sorted(runfolder.read_run(run).status.seeds)


def row(run: pathlib.Path, seed: int | None = None) -> dict:
    """The run's row over all its seeds, or over `seed` alone."""
    folder = runfolder.read_run(run)
    config, status = folder.config, folder.status.to_dict()
    train = config["train"]
    seeds = status["seeds"] if seed is None else {str(seed): status["seeds"][str(seed)]}
    curve: dict[int, list[float]] = {}
    falls: dict[int, list[float]] = {}
    seem: list[float] = []
    for m in folder.metrics:
        if seed is not None and m.get("seed") != seed:
            continue
        if "eval/normalized_score" in m:
            curve.setdefault(m["step"], []).append(m["eval/normalized_score"])
        if "eval/terminated_frac" in m:
            falls.setdefault(m["step"], []).append(m["eval/terminated_frac"])
        if "seem/normalized" in m:
            seem.append(m["seem/normalized"])
    steps = sorted(curve)
    means = [float(np.mean(curve[s])) for s in steps]
    dataset = dataset_name(train)
    return {"algo": algo_key(config), "dataset": dataset, "settings": settings(config),
            "steps": status["step"],
            "planned_steps": status["steps"], "seeds": sorted(int(s) for s in seeds),
            "fraction": train["fraction"], "batch_size": train["batch_size"],
            "curve_steps": steps, "curve": means,
            "final": float(np.mean([s["final_score"] for s in seeds.values()])),
            "best": float(np.mean([s["best_score"] for s in seeds.values()])),
            "seem_median": float(np.median(seem)) if seem else None,
            "seem_max": float(np.max(seem)) if seem else None,
            "final_falls": float(np.mean(falls[steps[-1]])) if steps and steps[-1] in falls
            else None,
            "published": PUBLISHED.get(algo_key(config), {}).get(dataset)}


def markdown(rows: list[dict]) -> str:
    lines = ["| algorithm | dataset | settings | steps | seeds | batch | normalised score at "
             "each evaluation | final | falls at final | best | SEEM median (max) | paper (D4RL) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        curve = ", ".join(f"{v:.1f}" for v in r["curve"])
        every = r["curve_steps"][0] if r["curve_steps"] else 0
        paper = "—" if r["published"] is None else (
            f"{r['published']:.1f} ({PUBLISHED[r['algo']]['source']})")
        seem = "—" if r["seem_median"] is None else (
            f"{r['seem_median']:.3f} ({r['seem_max']:.3f})")
        falls = "—" if r["final_falls"] is None else f"{100 * r['final_falls']:.0f} %"
        steps = f"{r['steps']:,}" + ("" if r["steps"] == r["planned_steps"]
                                     else f" of {r['planned_steps']:,}")
        lines.append(f"| {NAMES.get(r['algo'], r['algo'])} | {r['dataset']} | {r['settings']} | "
                     f"{steps} | "
                     f"{', '.join(map(str, r['seeds']))} | {r['batch_size']} | every "
                     f"{every:,}: {curve} | {r['final']:.1f} | {falls} | {r['best']:.1f} | "
                     f"{seem} | {paper} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--json", type=pathlib.Path, help="also write the rows as JSON here")
    p.add_argument("--per-seed", action="store_true",
                   help="a row for each seed of each run (default: a run's seeds averaged)")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if runfolder.read_status(r) is None]
    if missing:
        print(f"error: not a finished seemrl run folder: {missing[0]}", file=sys.stderr)
        return 2
    if args.per_seed:
        rows = [row(r, s) for r in args.runs for s in run_seeds(r)]
    else:
        rows = [row(r) for r in args.runs]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
