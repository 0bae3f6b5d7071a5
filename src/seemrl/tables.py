"""What seemrl prints as tables (rich): a run's status, a sweep's plan and summary, the
datasets. Presentation only: the numbers come from `seemrl.runfolder` and the libraries."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from seemrl.types import SeemrlError


def print_status(status: dict[str, Any], out) -> None:
    """The per seed table `seemrl train` ends with (status.json's content)."""
    from rich.console import Console
    from rich.table import Table

    from seemrl import runfolder

    table = Table(title=f"{out} — step {status['step']}/{status['steps']}")
    for col in ("seed", "final score", "best score", "predicted to diverge at",
                "diverged at (Q past the ceiling)", "stopped at"):
        table.add_column(col, justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.1f}"
    step = lambda v: "—" if v is None else f"{v:,}"
    for seed, raw in status["seeds"].items():
        s = runfolder.seed_status(raw)
        table.add_row(seed, fmt(s.final_score), fmt(s.best_score), step(s.predicted_at),
                      step(s.diverged_at), step(s.stopped_at))
    Console().print(table)


def action_space_line(dataset) -> str:
    """What `data info` says of the actions against the env's action space, and what
    `seemrl train` will do with them."""
    from seemrl import evaluation

    env_id = evaluation.infer_env_id(dataset.metadata)
    if env_id is None:
        return "not checked: the dataset names no env (seemrl train --env ENV checks it)"
    try:
        _, act_dim, max_action = evaluation.env_dims(env_id)
    except SeemrlError as e:
        return f"not checked: {' '.join(str(e).split())}"
    if act_dim != dataset.act_dim:
        return f"{env_id} has {act_dim} action dimensions, the data {dataset.act_dim}"
    space = f"{env_id} [{-max_action:g}, {max_action:g}]"
    outside = dataset.outside_actions(max_action)
    if outside is None:
        return f"{space}: every action inside"
    rows, row, value = outside
    return (f"{space}: {rows:,} row{'s' * (rows > 1)} outside (first: row {row}, {value:g}); "
            "seemrl train refuses the data, or clips them with --clip-actions")


def print_dataset_list(rows: Sequence[dict[str, Any]], data_dir: pathlib.Path) -> None:
    """`seemrl data list`: the rows of `seemrl.behaviour.list_datasets(data_dir)`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seemrl datasets (folder: {data_dir})")
    for col in ("name", "policy score", "on disk", "transitions", "avg return",
                "MB"):
        # Names are what users copy into `data make`: never cut them, even in a narrow pipe.
        table.add_column(col, justify="left" if col == "name" else "right",
                         no_wrap=col == "name", min_width=25 if col == "name" else None)
    for r in rows:
        policy = r["policy_score"]
        size = r.get("size_bytes")
        on_disk = "stale" if r.get("stale") else _cell(r.get("on_disk"))
        table.add_row(r["name"], _cell(policy), on_disk,
                      _cell(r.get("transitions")), _cell(r.get("avg_return")),
                      _cell(size / 2**20 if size else None))
    if any(r.get("stale") for r in rows):
        table.caption = ("stale: made with behaviour policies that have changed since; "
                         "`seemrl data make NAME` remakes it")
    # Piped output has no terminal width to fit: give the table room instead of 80 columns.
    Console(width=None if sys.stdout.isatty() else 100).print(table)


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


# -- sweeps -----------------------------------------------------------------------------------
def summary_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    """Per run: outcome, seeds diverged, final and best score (mean over seeds), seconds."""
    rows = []
    for r in results:
        seeds = list(((r.status or {}).get("seeds") or {}).values())
        mean = lambda key, seeds=seeds: _mean([s.get(key) for s in seeds])
        rows.append({"run": r.name, "outcome": r.outcome,
                     "diverged": sum(s.get("diverged_at") is not None for s in seeds),
                     "seeds": len(seeds), "final_score": mean("final_score"),
                     "best_score": mean("best_score"),
                     "seconds": r.seconds if r.outcome != "skipped" else None,
                     "error": r.error})
    return rows


def print_summary(results: Sequence[Any], console=None, title: str = "sweep") -> None:
    """The summary table (rich), then each failed run's error."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    rows = summary_rows(results)
    counts = {o: sum(r["outcome"] == o for r in rows) for o in ("finished", "skipped", "failed")}
    table = Table(title=f"{title}: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n))
    table.add_column("run", overflow="fold")
    table.add_column("outcome")
    for col in ("diverged", "final score", "best score", "time"):
        table.add_column(col, justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.1f}"
    for r in rows:
        table.add_row(r["run"], f"[{_COLOUR[r['outcome']]}]{r['outcome']}[/]",
                      f"{r['diverged']}/{r['seeds']}" if r["seeds"] else "—",
                      fmt(r["final_score"]), fmt(r["best_score"]),
                      "—" if r["seconds"] is None else f"{r['seconds']:.0f} s")
    console.print(table)
    for r in rows:
        if r["error"]:
            console.print(f"[red]{escape(r['run'])}[/red]: {escape(r['error'])}")


def say(console, message: str) -> None:
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(message)


_COLOUR = {"finished": "green", "skipped": "dim", "failed": "red"}


def done_line(done: int, total: int, r: Any) -> str:
    from rich.markup import escape

    extra = f": {escape(r.error)}" if r.error else f" ({r.seconds:.0f} s)" if r.seconds else ""
    return f"[{done}/{total}] {escape(r.name)} [{_COLOUR[r.outcome]}]{r.outcome}[/]{extra}"


def one_line(e: BaseException) -> str:
    """A run's error in one line (a sweep's summary); its type only where the message is not
    one of seemrl's own."""
    text = " ".join(str(e).split())
    if isinstance(e, SeemrlError) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
