"""The measured table of docs/DATASETS.md, from the summaries `seemrl data make` writes.

    python experiments/dataset_table.py DATA_DIR [DATA_DIR ...] > table.md

Reads every `<dataset>.hdf5.json` in each DATA_DIR (written beside each file by `seemrl data
make`) and the shipped policies' records; one row per dataset, in env and level order.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from seemrl.behaviour.locomotion import ENVS, LEVELS
from seemrl.behaviour.policies import registry
from seemrl.evaluation import normalized_score


def rows(data_dirs: list[pathlib.Path]) -> list[dict]:
    reg = registry()
    out = []
    for path in sorted(p for d in data_dirs for p in d.glob("*.hdf5.json")):
        s = json.loads(path.read_text())
        env, level = s["name"].split("/")[-1].rsplit("-v", 1)[0].split("-", 1)
        record = reg.get(s["policy"]) if level in ("random", "medium", "expert") else None
        step = (reg.get(f"{env}-medium", {}).get("train_step") if level == "medium-replay"
                else record["train_step"] if record else None)
        out.append({"env": env, "level": level, "size": s["size"],
                    "policy_return": record and record["return_mean"],
                    "policy_normalized": record and record["normalized"], "step": step,
                    "episodes": s["episodes"], "complete": s.get("episodes_complete"),
                    "avg_return": s["avg_return"],
                    "avg_normalized": float(normalized_score(
                        s["avg_return"], (s["ref_min_score"], s["ref_max_score"]))),
                    "mib": (path.with_suffix("").stat().st_size / 2**20
                            if path.with_suffix("").exists() else None),
                    "seconds": s.get("make_seconds")})
    order = {e: i for i, e in enumerate(ENVS)}
    return sorted(out, key=lambda r: (order.get(r["env"], 99), LEVELS.index(r["level"]),
                                      r["size"]))


def _or_dash(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def markdown(table: list[dict]) -> str:
    lines = ["| dataset | behaviour policy: return (normalised) | snapshot step | transitions "
             "| episodes (complete) | avg episode return (normalised) | file MiB | make time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        policy = ("—" if r["policy_return"] is None
                  else f"{r['policy_return']:.0f} ({r['policy_normalized']:.1f})")
        cells = [f"{r['env']}-{r['level']}", policy, _or_dash(r["step"], "{}"),
                 f"{r['size']:,}", f"{r['episodes']} ({_or_dash(r['complete'], '{}')})",
                 f"{r['avg_return']:.0f} ({r['avg_normalized']:.1f})",
                 _or_dash(r["mib"], "{:.0f}"), _or_dash(r["seconds"], "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dirs", nargs="+", type=pathlib.Path)
    args = p.parse_args(argv)
    table = rows(args.data_dirs)
    if not table:
        print("error: no dataset summaries (*.hdf5.json) in "
              f"{' '.join(map(str, args.data_dirs))}", file=sys.stderr)
        return 2
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
