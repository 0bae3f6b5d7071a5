"""docs/ALGORITHMS.md's table, generated: algorithm × dataset from finished `seemrl train` runs.

    python experiments/algorithms_summary.py RUN_DIR [RUN_DIR ...] [--write docs/ALGORITHMS.md]

One row per algorithm (with or without its LayerNorm critic) × dataset × data fraction (all
the given runs of it pooled, one value per seed): steps, seeds, the mean normalised score (a
seed's: the mean of its last 3 evaluations) with its 95 % bootstrap CI over seeds
(`seemrl.stats`), and the score the algorithm's paper reports (for the whole dataset). Runs
are read by `learning_evidence.row` (the per-seed and per-run detail: `learning_evidence.py
--per-seed`); nothing is typed in by hand. With `--write DOC` the table and the command that
made it replace everything below DOC's "## Scores (generated)" heading; otherwise the table
is printed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import learning_evidence as le  # noqa: E402

from seemrl import runfolder, stats  # noqa: E402

HEADING = "## Scores (generated)"
LAST = 3
"""A seed's score: the mean of its last LAST evaluations (as `repro fraction` scores)."""


def _layer_norm(run: pathlib.Path) -> bool:
    return bool(runfolder.read_run(run).config["algo"].get("layer_norm"))


def table(runs: list[pathlib.Path]) -> str:
    cells: dict[tuple[str, bool, str, float], list[dict]] = {}
    for run in runs:
        ln = _layer_norm(run)
        for seed in le.run_seeds(run):
            r = le.row(run, seed)
            cells.setdefault((r["algo"], ln, r["dataset"], r["fraction"]), []).append(r)
    lines = ["| algorithm | critic | dataset | data | steps | seeds | score (last 3 evals), "
             "mean [95 % CI] | paper (100 %) |", "|---|---|---|---|---|---|---|---|"]
    for (algo, ln, dataset, fraction), rows in sorted(cells.items()):
        ci = stats.mean_ci([float(np.mean(r["curve"][-LAST:])) for r in rows])
        band = "" if ci["lo"] is None else f" [{ci['lo']:.1f}, {ci['hi']:.1f}]"
        steps = sorted({r["steps"] for r in rows})
        paper = rows[0]["published"]
        source = le.PUBLISHED.get(algo, {}).get("source", "")
        lines.append(f"| {le.NAMES.get(algo, algo)} | {'LayerNorm' if ln else 'plain'} | "
                     f"{dataset} | {100 * fraction:g} % | "
                     f"{', '.join(f'{s:,}' for s in steps)} | {len(rows)} | "
                     f"{ci['mean']:.1f}{band} | "
                     f"{'—' if paper is None else f'{paper:.1f} ({source})'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--write", type=pathlib.Path, metavar="DOC",
                   help=f"replace what follows DOC's '{HEADING}' with the table")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if runfolder.read_status(r) is None]
    if missing:
        print(f"error: not a seemrl run folder: {missing[0]}", file=sys.stderr)
        return 2
    text = table(args.runs)
    if args.write is None:
        print(text)
        return 0
    doc = args.write.read_text() if args.write.is_file() else ""
    if HEADING not in doc:
        print(f"error: {args.write} has no '{HEADING}' heading to write under", file=sys.stderr)
        return 2
    runs = " ".join(str(r) for r in args.runs)
    body = (f"{HEADING}\n\nMade by `python experiments/algorithms_summary.py {runs} --write "
            f"{args.write}` from the run folders (config.json, status.json, metrics.jsonl); "
            "per-seed detail stays in the folders (`python experiments/learning_evidence.py "
            f"--per-seed RUN_DIR`).\n\n{text}\n")
    args.write.write_text(doc[:doc.index(HEADING)] + body)
    print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
