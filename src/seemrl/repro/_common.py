"""What every experiment shares: its context (scale, folders, data, sweeps, figures), its
outputs (results.json, section.md, PNGs) and the results document of `repro all`.

Experiment folder (`out/<name>`):
  results.json  {experiment, title, scale, params, command, machine, seconds, results}
  section.md    the experiment's section of docs/RESULTS.md (figures linked relatively)
  *.png         its figures
  runs/         one run folder per training run (a sweep: re-running skips finished runs)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import time
from collections.abc import Sequence
from typing import Any

from seemrl import plotting
from seemrl.config import ConfigError
from seemrl.repro import EXPERIMENTS, SCALES, get
from seemrl.sweep import RunResult, RunSpec, run_sweep
from seemrl.types import SeemrlError


class ExperimentUnavailable(SeemrlError):
    """The experiment cannot run here (e.g. its data does not exist): one line, exit 2."""


@dataclasses.dataclass
class Outcome:
    """What an experiment returns: its numbers and the Markdown that reports them."""

    results: dict[str, Any]
    """JSON-able numbers (per run and aggregated), written to results.json."""
    markdown: str
    """Section body (`_report.Report.markdown()`): what ran, tables, and plain statements of
    what matched the paper and what did not."""


@dataclasses.dataclass
class Context:
    """Everything an experiment's `run` needs to know and use."""

    name: str
    scale: str
    params: dict[str, Any]
    out: pathlib.Path
    data_dir: pathlib.Path
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    progress: bool = True
    console: Any = None
    figures: list[pathlib.Path] = dataclasses.field(default_factory=list)
    runs: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"trained": 0, "reused": 0, "failed": 0})
    """Training runs of this invocation: trained now, reused (finished before), failed."""

    def dataset(self, name: str, size: int) -> pathlib.Path:
        """Path of built-in dataset `name` with `size` transitions, made once if missing."""
        from seemrl import behaviour

        path = behaviour.resolve_builtin(name, self.data_dir, size=size, progress=self.progress,
                                         log=self.log)
        if path is None:
            raise behaviour.files.unknown(name, "dataset", behaviour.dataset_names())
        return path

    def unavailable(self, name: str, size: int) -> str | None:
        """Why built-in dataset `name` cannot be had here (not on disk, and its behaviour
        policy is not shipped, as for AntMaze before its controller is), else None."""
        from seemrl import behaviour

        fam = behaviour.family(name)
        if fam is None or fam.can_make(name) or behaviour.dataset_path(
                name, self.data_dir, size).exists():
            return None
        return (f"{name}: not in {self.data_dir} and seemrl cannot make it here (its behaviour "
                "policy is not shipped; see `seemrl data list`)")

    def train(self, specs: Sequence[RunSpec]) -> dict[str, RunResult]:
        """Train the specs (a sweep into out/runs; finished runs are skipped); by name."""
        results = run_sweep(specs, self.out / "runs", engine=self.engine, workers=self.workers,
                            address=self.address, progress=self.progress,
                            console=self.console)
        for r in results:
            self.runs[{"finished": "trained", "skipped": "reused"}.get(r.outcome, "failed")] += 1
        failed = [r for r in results if r.outcome == "failed"]
        for r in failed:
            self.log(f"[red]run {r.name} failed: {r.error}[/red]")
        return {r.name: r for r in results}

    def save_figure(self, fig, filename: str) -> pathlib.Path:
        """Save a matplotlib figure as out/<filename> (PNG) and list it in the section."""
        path = plotting.save(fig, self.out / filename)
        if path not in self.figures:
            self.figures.append(path)
        return path

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)


def machine() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend(),
            "device": devices[0].device_kind if devices else "?"}


def command_line(name: str, scale: str, collect: bool = False) -> str:
    return f"seemrl repro {name} --scale {scale}" + (" --collect" if collect else "")


def run_experiment(name: str, scale: str, out: str | pathlib.Path, *,
                   data_dir: str | pathlib.Path | None = None, engine: str = "local",
                   workers: int = 1, address: str | None = None, progress: bool = True,
                   console=None, collect: bool = False) -> dict[str, Any]:
    """Run one experiment at one scale into out/<name>; returns what results.json holds.

    With `collect`, nothing is trained: the experiment's `report(ctx)` writes results.json,
    section.md and the figures from the runs already in out/<name>/runs (finished ones; the
    rest are listed as pending). Only experiments with a `report` have this path."""
    from seemrl.behaviour import files

    module = get(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    if workers < 1:
        raise ConfigError("--workers must be >= 1")
    if collect and not hasattr(module, "report"):
        raise ConfigError(f"repro {name} has no --collect path (it trains and reports in one "
                          "go); --collect goes with 'all' or an experiment that has one")
    ctx = Context(name=name, scale=scale, params=dict(module.SCALES[scale]),
                  out=pathlib.Path(out) / name,
                  data_dir=files.data_dir_or_default(data_dir),
                  engine=engine, workers=workers, address=address, progress=progress,
                  console=console)
    ctx.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        outcome = module.report(ctx) if collect else module.run(ctx)
    except ExperimentUnavailable as e:  # noted, so that `repro all --collect` can say why
        _atomic_text(ctx.out / "unavailable.json", json.dumps({"scale": scale, "why": str(e)}))
        raise
    (ctx.out / "unavailable.json").unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    record = {"experiment": name, "title": module.TITLE, "scale": scale, "params": ctx.params,
              "command": command_line(name, scale, collect), "collected": collect,
              "machine": machine(),
              "date": datetime.date.today().isoformat(), "seconds": seconds,
              "runs": ctx.runs, "figures": [p.name for p in ctx.figures],
              "results": outcome.results}
    _atomic_text(ctx.out / "results.json", json.dumps(record, indent=1, default=_json_default))
    _atomic_text(ctx.out / "section.md", section(record, outcome.markdown))
    return record


def section(record: dict[str, Any], body: str) -> str:
    """The experiment's Markdown section: header, how it was run, figures, body."""
    m = record["machine"]
    params = ", ".join(f"{k} = {_short(v)}" for k, v in record["params"].items())
    runs = record.get("runs") or {}
    reused = (f"; {runs['reused']} of {runs['reused'] + runs['trained']} training runs were "
              "reused from an earlier invocation of the same command, so their time is not in "
              "it" if runs.get("reused") else "")
    how = (f"Collected by `{record['command']}` from the run folders that "
           f"`{command_line(record['experiment'], record['scale'])}` trained (trains nothing; "
           f"{record['date']}, jax {m['jax']})." if record.get("collected") else
           f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min on "
           f"{m['cpus']} CPU cores, {m['backend']} backend ({m['device']}), "
           f"jax {m['jax']}, {record['date']}{reused}).")
    lines = [f"## {record['experiment']}: {record['title']}", "", how, "",
             f"Scale `{record['scale']}`: {params}.", ""]
    for fig in record["figures"]:
        lines += [f"![{record['experiment']}: {fig}]({fig})", ""]
    lines += [body.strip(), ""]
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(type(o))


def _atomic_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results_doc(out: str | pathlib.Path, scale: str, names: Sequence[str],
                      doc: str | pathlib.Path, missing: dict[str, str],
                      collected: bool = False) -> pathlib.Path:
    """docs/RESULTS.md from the experiments' section.md files; figures copied beside it.
    `missing`: experiment -> why it has no section (unavailable here, or not run).

    When collecting, an experiment with no results in `out` keeps the section the document
    already has for it at this scale (made by an earlier collection, on a machine that had its
    runs; its own header says when and how), so re-collecting one experiment loses none of the
    others."""
    out, doc = pathlib.Path(out), pathlib.Path(doc)
    fig_dir = doc.parent / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    earlier = _sections(doc.read_text()) if collected and doc.is_file() else {}
    how = (f"assembled by `seemrl repro all --scale {scale} --collect` from the runs each "
           "experiment's own command made (each section gives it)" if collected else
           f"generated by `seemrl repro all --scale {scale}`")
    parts = ["# Results", "",
             f"This document was {how}: every number, table and figure below comes from those "
             "runs; nothing is typed in by hand. Each section says how it was run and where it "
             "agrees or disagrees with the paper.", ""]
    for name in names:
        if name in missing:
            kept = earlier.get(name)  # only a section of this scale's command
            parts += [kept] if kept and f"--scale {scale}`" in kept else [
                f"## {name}", "", f"Not run: {missing[name]}", ""]
            continue
        exp = out / name
        text = (exp / "section.md").read_text()
        for fig in json.loads((exp / "results.json").read_text())["figures"]:
            target = f"{name}-{fig}"
            shutil.copyfile(exp / fig, fig_dir / target)
            text = text.replace(f"]({fig})", f"](results/{target})")
        parts.append(text)
    _atomic_text(doc, "\n".join(parts))
    return doc


def _sections(text: str) -> dict[str, str]:
    """An existing results document's sections by experiment name ('## name: title' or
    '## name' headers), each ending in one newline: the blank lines between sections are the
    assembler's, so keeping a section again and again leaves the document as it was."""
    out: dict[str, str] = {}
    name, lines = None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if name is not None:
                out[name] = "\n".join(lines).rstrip() + "\n"
            name, lines = line[3:].split(":")[0].strip(), [line]
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines).rstrip() + "\n"
    return out


def collected_record(out: pathlib.Path, name: str, scale: str) -> dict[str, Any] | str:
    """The saved results.json of `name` at `scale`, or why there is none."""
    exp = pathlib.Path(out) / name
    for file, key in (("results.json", None), ("unavailable.json", "why")):
        path = exp / file
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("scale") == scale:
                return record if key is None else record[key]
    return f"no results at scale {scale} yet (run `{command_line(name, scale)}`)"


def run_all(scale: str, out: str | pathlib.Path, doc: str | pathlib.Path | None, *,
            collect: bool = False, console=None, **kwargs) -> dict[str, Any]:
    """Every experiment at `scale` (unavailable ones noted), then the results document.

    With `collect`, nothing is trained: the document is assembled from the experiments'
    results already in `out` (made by `seemrl repro NAME --scale SCALE` one at a time)."""
    records, missing = {}, {}
    for name in EXPERIMENTS:
        if collect:
            found = collected_record(pathlib.Path(out), name, scale)
            if isinstance(found, str):
                missing[name] = found
            else:
                records[name] = found
            continue
        if console is not None:
            console.rule(f"repro {name} --scale {scale}")
        try:
            records[name] = run_experiment(name, scale, out, console=console, **kwargs)
        except ExperimentUnavailable as e:
            missing[name] = str(e)
            if console is not None:
                console.print(f"[yellow]{name}: {e}[/yellow]")
    path = (write_results_doc(out, scale, EXPERIMENTS, doc, missing, collected=collect)
            if doc else None)
    return {"records": records, "unavailable": missing, "doc": str(path) if path else None}


def command(name: str, scale: str, out: str | pathlib.Path, doc: str | pathlib.Path | None, *,
            collect: bool = False, console=None, **kwargs) -> str:
    """`seemrl repro NAME` ('list', 'all' or an experiment): what it prints at the end."""
    if name == "list":
        return "\n".join(f"[bold]{n:13s}[/bold] {get(n).TITLE}" for n in EXPERIMENTS)
    if name == "all":
        result = run_all(scale, out, doc, collect=collect, console=console, **kwargs)
        return f"results document: {result['doc']}"
    record = run_experiment(name, scale, out, console=console, collect=collect, **kwargs)
    folder = pathlib.Path(out) / name
    return (f"{name}: {folder / 'results.json'}, {folder / 'section.md'}, figures "
            f"{', '.join(record['figures']) or '—'} ({record['seconds']:.0f} s)")
