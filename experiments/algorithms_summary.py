"""docs/ALGORITHMS.md's table, generated: algorithm × dataset from finished `seemrl train` runs.

    python experiments/algorithms_summary.py RUN_DIR [RUN_DIR ...] > table.md

One row per algorithm × dataset (all the given runs of it pooled, one value per seed): steps,
seeds, the mean final normalised score with its 95 % bootstrap CI over seeds (`seemrl.stats`),
and the score the algorithm's paper reports. Runs are read by `learning_evidence.row` (the
per-seed and per-run detail: `learning_evidence.py --per-seed`); nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import learning_evidence as le  # noqa: E402

from seemrl import runfolder, stats  # noqa: E402


def table(runs: list[pathlib.Path]) -> str:
    cells: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        for seed in le.run_seeds(run):
            r = le.row(run, seed)
            cells.setdefault((r["algo"], r["dataset"]), []).append(r)
    lines = ["| algorithm | dataset | steps | seeds | final score, mean [95 % CI] | paper |",
             "|---|---|---|---|---|---|"]
    for (algo, dataset), rows in sorted(cells.items()):
        ci = stats.mean_ci([r["final"] for r in rows])
        band = "" if ci["lo"] is None else f" [{ci['lo']:.1f}, {ci['hi']:.1f}]"
        steps = sorted({r["steps"] for r in rows})
        paper = rows[0]["published"]
        source = le.PUBLISHED.get(algo, {}).get("source", "")
        lines.append(f"| {le.NAMES.get(algo, algo)} | {dataset} | "
                     f"{', '.join(f'{s:,}' for s in steps)} | {len(rows)} | "
                     f"{ci['mean']:.1f}{band} | "
                     f"{'—' if paper is None else f'{paper:.1f} ({source})'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    args = p.parse_args(argv)
    missing = [r for r in args.runs if runfolder.read_status(r) is None]
    if missing:
        print(f"error: not a seemrl run folder: {missing[0]}", file=sys.stderr)
        return 2
    print(table(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
