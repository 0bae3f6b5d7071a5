"""The measured table of docs/DATASETS.md, from the summaries `seemrl data make` writes.

    python experiments/dataset_table.py DATA_DIR [DATA_DIR ...] > table.md

Reads every `<dataset>.hdf5.json` in each DATA_DIR (written beside each file by `seemrl data
make`) and the shipped policies' records; one row per dataset, in env and level order. AntMaze
datasets (made by the controller, not a scored policy) get a table of their own after it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from seemrl.antmaze.data import controller_score
from seemrl.behaviour.locomotion import ENVS, LEVELS
from seemrl.behaviour.policies import registry
from seemrl.evaluation import normalized_score
from seemrl.repro.antmaze import TASKS


def summaries(data_dirs: list[pathlib.Path]) -> list[tuple[pathlib.Path, dict]]:
    """(summary path, summary) for every made file in data_dirs."""
    return [(path, json.loads(path.read_text()))
            for path in sorted(p for d in data_dirs for p in d.glob("*.hdf5.json"))]


def _mib(summary_path: pathlib.Path) -> float | None:
    data = summary_path.with_suffix("")
    return data.stat().st_size / 2**20 if data.exists() else None


def rows(data_dirs: list[pathlib.Path]) -> list[dict]:
    reg = registry()
    out = []
    for path, s in summaries(data_dirs):
        if "maze" in s:
            continue
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
                    "mib": _mib(path), "seconds": s.get("make_seconds")})
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


def antmaze_rows(data_dirs: list[pathlib.Path]) -> list[dict]:
    out = []
    for path, s in summaries(data_dirs):
        if "maze" not in s:
            continue
        out.append({"task": s["task"], "size": s["size"], "episodes": s["episodes"],
                    "complete": s["episodes_complete"], "reaching": s["episodes_reaching_goal"],
                    "success": s["success_rate"], "controller": controller_score(s),
                    "mib": _mib(path), "seconds": s.get("make_seconds")})
    order = {t: i for i, t in enumerate(TASKS)}
    return sorted(out, key=lambda r: (order.get(r["task"], 99), r["size"]))


def antmaze_markdown(table: list[dict]) -> str:
    lines = ["| dataset | controller's success in this maze | transitions | episodes (complete) "
             "| episodes reaching the goal | success rate of the data | file MiB "
             "| make time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        cells = [f"antmaze-{r['task']}", _or_dash(r["controller"], "{:.0f}%"), f"{r['size']:,}",
                 f"{r['episodes']} ({r['complete']})", f"{r['reaching']}",
                 f"{r['success']:.0%}", _or_dash(r["mib"], "{:.0f}"),
                 _or_dash(r["seconds"], "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dirs", nargs="+", type=pathlib.Path)
    args = p.parse_args(argv)
    table, mazes = rows(args.data_dirs), antmaze_rows(args.data_dirs)
    if not table and not mazes:
        print("error: no dataset summaries (*.hdf5.json) in "
              f"{' '.join(map(str, args.data_dirs))}", file=sys.stderr)
        return 2
    print("\n\n".join(md for md in (table and markdown(table), mazes and antmaze_markdown(mazes))
                      if md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
