"""The `seemrl` command: subcommands only. It parses, validates and calls the library.

Errors in what the user gave (options, config files, data) end in one line on stderr and exit
code 2; an interrupted run ends with 130 and a line saying how to resume it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import pathlib
import sys
import typing
from typing import Any

from seemrl import config as config_lib
from seemrl.config import ConfigError
from seemrl.types import SeemrlError, Terminated

USAGE_ERRORS = (SeemrlError, FileNotFoundError, NotADirectoryError, PermissionError,
                IsADirectoryError)
"""Expected failures (what the user gave, the state of their disk): one line and exit code 2.
Anything else keeps its traceback, so that a bug stays visible."""
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
"""OSErrors that come from the machine, never from a bug, wherever they are raised."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- flags from config dataclasses ------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per field (`field_name` -> `--field-name`); help from the field docstrings.

    Defaults are SUPPRESSed so that only flags the user typed override the config file.
    """
    group = parser.add_argument_group(title)
    docs, types_ = config_lib.field_docs(cls), config_lib.field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = config_lib._strip_optional(types_[f.name])
        help_ = f"{docs.get(f.name, '')} (default: {_show(f.default)})".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_,
                                  "dest": f.name}
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif config_lib._is_tuple(tp):
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.name[:-1].upper() if f.name.endswith("s") else "N"
        else:
            kwargs["metavar"] = f.name.upper().split("_")[-1]
        group.add_argument(flag, **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _split_config(data: dict[str, Any], algo_cls: type) -> tuple[dict, dict]:
    """A config file is either {"train": {...}, "algo": {...}} (as saved) or one flat mapping."""
    from seemrl.train import RUN_INFO_KEYS

    if "train" in data or "algo" in data and isinstance(data.get("algo"), dict):
        extra = set(data) - {"train", "algo", *RUN_INFO_KEYS}
        if extra:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(extra))}")
        return dict(data.get("train") or {}), dict(data.get("algo") or {})
    from seemrl.presets import split

    return split(data, algo_cls, "config file")


# -- seemrl train -----------------------------------------------------------------------------


def _train_parser(prog: str, algo_name: str) -> argparse.ArgumentParser:
    from seemrl import algos
    from seemrl.train import TrainConfig

    algo = algos.get(algo_name)
    p = _Parser(prog=prog, description="Train an offline-RL agent on several seeds at once.")
    p.add_argument("--out", metavar="DIR", help="run folder to create (default: runs/<name>)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON config; flags override it")
    p.add_argument("--preset", metavar="NAME", help="published hyper-parameters by name; a "
                   "config file and flags override it (one of: " + ", ".join(_preset_names())
                   + ")")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint (only --steps and "
                        "the logging/eval options may change)")
    p.add_argument("--accept-other-data", action="store_true",
                   help="with --resume: go on although the dataset is not the one the run was "
                        "trained on (the run keeps its normaliser); without it that is an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p, TrainConfig, "data and run options")
    add_config_flags(p, algo.Config, f"{algo.NAME} options (--algo picks the algorithm)")
    return p


def cmd_train(argv: list[str]) -> int:
    from seemrl import algos
    from seemrl.train import RESUME_OVERRIDABLE, TrainConfig, train

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo")
    pre.add_argument("--config")
    pre.add_argument("--resume")
    pre.add_argument("--preset")
    known, _ = pre.parse_known_args(argv)

    preset_data: dict[str, Any] = {}
    if known.preset and not known.resume:
        from seemrl.presets import load_preset

        preset_data = load_preset(known.preset)
    file_data: dict[str, Any] = {}
    if known.resume:
        run = pathlib.Path(known.resume)
        if not (run / "config.json").is_file():
            raise ConfigError(f"--resume {run}: no config.json there (not a seemrl run folder)")
        file_data = config_lib.read_file(run / "config.json")
    elif known.config:
        file_data = config_lib.read_file(known.config)
    algo_name = known.algo or (file_data.get("train") or {}).get("algo") or (
        file_data.get("algo") if isinstance(file_data.get("algo"), str) else None) or \
        preset_data.get("algo") or "td3bc"
    algo = algos.get(algo_name)
    if known.resume and isinstance(file_data.get("algo"), dict):
        from seemrl.algos.common import with_pre_option_values

        file_data["algo"] = with_pre_option_values(file_data["algo"], algo.Config)

    args = vars(_train_parser("seemrl train", algo_name).parse_args(argv))
    out, resume, no_progress = args.pop("out"), args.pop("resume"), args.pop("no_progress")
    other_data = args.pop("accept_other_data")
    if other_data and not resume:
        raise ConfigError("--accept-other-data goes with --resume")
    args.pop("config", None)
    if args.pop("preset", None) and known.resume:
        raise ConfigError("--preset cannot be combined with --resume (the run keeps its config)")
    preset_train, preset_algo = _split_config(preset_data, algo.Config)
    train_over, algo_over = _split_config(file_data, algo.Config)
    train_over, algo_over = {**preset_train, **train_over}, {**preset_algo, **algo_over}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    flags_train = {k: v for k, v in args.items() if k in train_names}
    flags_algo = {k: v for k, v in args.items() if k not in train_names}
    if resume:
        changed = sorted(k for k, v in {**flags_train, **flags_algo}.items()
                         if k not in RESUME_OVERRIDABLE
                         and config_lib.coerce(TrainConfig if k in train_names else algo.Config,
                                               k, v) != _coerced(train_over, algo_over, k, algo))
        if changed:
            raise ConfigError(f"--resume cannot change {', '.join(changed)} (only "
                              f"{', '.join(RESUME_OVERRIDABLE)})")
        out = resume
    train_cfg = config_lib.build(TrainConfig, {**train_over, **flags_train})
    algo_cfg = config_lib.build(algo.Config, {**algo_over, **flags_algo})
    if out is None:
        out = pathlib.Path("runs") / _default_run_name(train_cfg, algo_cfg)
    from seemrl import checkpoint
    from seemrl.types import WriteError

    if resume and not checkpoint.exists(out):  # stopped before its first: nothing to lose
        print(f"seemrl train: {out} has no checkpoint yet (it stopped before its first one): "
              "starting it again from step 0", file=sys.stderr)
        resume, other_data = None, False
    try:
        status = train(train_cfg, algo_cfg, out, resume=bool(resume), progress=not no_progress,
                       other_data=other_data)
    except WriteError as e:
        if checkpoint.exists(out):
            raise WriteError(f"{e}; the run's last checkpoint is kept: continue it with "
                             f"--resume {out}") from e
        raise
    _print_status(status, out)
    return 0


def _preset_names() -> list[str]:
    from seemrl.presets import list_presets

    return list_presets()


def _coerced(train_over, algo_over, key, algo):
    from seemrl.train import TrainConfig

    if key in train_over:
        return config_lib.coerce(TrainConfig, key, train_over[key])
    if key in algo_over:
        return config_lib.coerce(algo.Config, key, algo_over[key])
    cls = TrainConfig if key in {f.name for f in dataclasses.fields(TrainConfig)} else algo.Config
    return next(f.default for f in dataclasses.fields(cls) if f.name == key)


def _default_run_name(train_cfg, algo_cfg) -> str:
    stem = pathlib.Path(train_cfg.dataset).stem or train_cfg.dataset
    ln = "-ln" if getattr(algo_cfg, "layer_norm", False) else ""
    frac = "" if train_cfg.fraction == 1.0 else f"-{train_cfg.fraction:g}"
    return f"{stem}-{train_cfg.algo}{ln}{frac}"


def _print_status(status: dict[str, Any], out) -> None:
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


# -- seemrl data ------------------------------------------------------------------------------
def cmd_data(argv: list[str]) -> int:
    p = _Parser(prog="seemrl data", description="Inspect, make and list offline datasets.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    info = sub.add_parser("info", help="sizes, shapes and returns per episode of a dataset")
    info.add_argument("dataset", help="a .hdf5/.npz file, a Minari id or path, or a built-in name")
    make = sub.add_parser("make", help="roll out a shipped behaviour policy into a dataset")
    make.add_argument("name", help="e.g. hopper-medium, walker2d-medium-expert "
                      "(see `seemrl data list`), antmaze-umaze, antmaze-medium-play")
    make.add_argument("--size", type=int, default=1_000_000, help="transitions (default 1M)")
    make.add_argument("--seed", type=int, default=0, help="rollout seed (default 0)")
    make.add_argument("--data-dir", help="output folder (default $SEEMRL_DATA_DIR or "
                      "~/.seemrl/datasets)")
    make.add_argument("--format", choices=("hdf5", "minari"), default="hdf5",
                      help="D4RL-format HDF5 (default) or a local Minari dataset")
    make.add_argument("--retrain", action="store_true",
                      help="train the behaviour policies again from scratch first (hours)")
    make.add_argument("--controller", type=pathlib.Path,
                      help="antmaze-*: a controller .npz other than the shipped one (e.g. "
                      "a training run's snapshots/actor_<step>.npz)")
    lst = sub.add_parser("list", help="datasets seemrl can make, and those already on disk")
    lst.add_argument("--data-dir", help="folder to look in (default as for make)")
    args = p.parse_args(argv)
    if args.action == "info":
        from seemrl.data import load_dataset, print_info

        dataset = load_dataset(args.dataset)
        print_info(dataset, action_space=_action_space_line(dataset))
    elif args.action == "make":
        from seemrl.data import generate

        if args.size <= 0:
            raise ConfigError(f"--size must be positive, got {args.size}")
        if args.name.startswith(("antmaze-", "seemrl/antmaze-")):
            from seemrl.antmaze import data as antmaze_data

            if args.retrain:
                raise ConfigError("--retrain: AntMaze's controller is trained with "
                                  "`python -m seemrl.antmaze.controller` (see its --help)")
            path = antmaze_data.make_dataset(args.name, size=args.size, seed=args.seed,
                                             data_dir=args.data_dir, fmt=args.format,
                                             controller=args.controller)
        elif args.controller is not None:
            raise ConfigError("--controller applies to antmaze-* datasets only")
        else:
            path = generate.make_dataset(args.name, size=args.size, seed=args.seed,
                                         data_dir=args.data_dir, fmt=args.format,
                                         retrain=args.retrain)
        print(f"wrote {path}")
    else:
        _print_dataset_list(args.data_dir)
    return 0


def _action_space_line(dataset) -> str:
    """What `data info` says of the actions against the env's action space, and what
    `seemrl train` will do with them."""
    from seemrl import evaluation

    env_id = evaluation.infer_env_id(dataset.metadata)
    if env_id is None:
        return "not checked: the dataset names no env (seemrl train --env ENV checks it)"
    try:
        _, act_dim, max_action = evaluation.env_dims(env_id)
    except SeemrlError as e:
        return f"not checked: {_one_line(e)}"
    if act_dim != dataset.act_dim:
        return f"{env_id} has {act_dim} action dimensions, the data {dataset.act_dim}"
    space = f"{env_id} [{-max_action:g}, {max_action:g}]"
    outside = dataset.outside_actions(max_action)
    if outside is None:
        return f"{space}: every action inside"
    rows, row, value = outside
    return (f"{space}: {rows:,} row{'s' * (rows > 1)} outside (first: row {row}, {value:g}); "
            "seemrl train refuses the data, or clips them with --clip-actions")


def _print_dataset_list(data_dir) -> None:
    from rich.console import Console
    from rich.table import Table

    from seemrl.data import generate
    from seemrl.policies import registry

    data_dir = pathlib.Path(data_dir) if data_dir else generate.default_data_dir()
    policies = registry()
    table = Table(title=f"seemrl datasets (folder: {data_dir})")
    for col in ("name", "policy score", "on disk", "transitions", "avg return",
                "MB"):
        # Names are what users copy into `data make`: never cut them, even in a narrow pipe.
        table.add_column(col, justify="left" if col == "name" else "right",
                         no_wrap=col == "name", min_width=25 if col == "name" else None)
    from seemrl.antmaze import data as antmaze_data

    rows = generate.list_datasets(data_dir) + antmaze_data.list_datasets(data_dir)
    for r in rows:
        policy = r.get("policy_score", policies.get(r["name"], {}).get("normalized"))
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


# -- seemrl diagnose --------------------------------------------------------------------------
def cmd_diagnose(argv: list[str]) -> int:
    p = _Parser(prog="seemrl diagnose", description="Explain a finished or running run: "
                "divergence verdict, SEEM onset, Q explosion, growth order and (SGD) crash step.")
    p.add_argument("run", help="a run folder written by seemrl train")
    p.add_argument("--out", help="folder for the PNGs (default: the run folder)")
    p.add_argument("--no-plots", action="store_true", help="print only")
    args = p.parse_args(argv)
    from seemrl.diagnostics.report import diagnose

    run = pathlib.Path(args.run)
    if not (run / "metrics.jsonl").is_file():
        raise ConfigError(f"{run} is not a seemrl run folder (no metrics.jsonl)")
    from seemrl.diagnostics.report import read_metrics
    from seemrl.types import RunError

    if not read_metrics(run / "metrics.jsonl"):
        raise RunError(f"{run} has no log points yet (the first comes after --log-every "
                       "steps): nothing to diagnose yet")
    report = diagnose(run, out_dir=args.out, plots=not args.no_plots)
    print(report.text())
    return 0


# -- seemrl demo ------------------------------------------------------------------------------
def cmd_demo(argv: list[str]) -> int:
    from seemrl.demo import DemoConfig

    p = _Parser(prog="seemrl demo", description="Divergence and its fix in minutes: TD3 "
                "(bc_coef 0) with and without a LayerNorm critic on 1 %% of hopper-medium.")
    p.add_argument("--out", default="runs/demo", help="folder for the two runs and demo.png "
                   "(default runs/demo; a numbered sibling if it exists)")
    p.add_argument("--data-dir", help="dataset folder (default $SEEMRL_DATA_DIR or "
                   "~/.seemrl/datasets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_flags(p, DemoConfig, "demo options")
    args = vars(p.parse_args(argv))
    out, data_dir, no_progress = args.pop("out"), args.pop("data_dir"), args.pop("no_progress")
    cfg = config_lib.build(DemoConfig, args)
    from rich.console import Console

    from seemrl.demo import print_table, run_demo

    console = Console()
    out = _fresh_folder(pathlib.Path(out))
    result = run_demo(cfg, out, data_dir=data_dir, progress=not no_progress, console=console)
    print_table(result, console)
    return 0


def _fresh_folder(path: pathlib.Path) -> pathlib.Path:
    """`path`, or path-2, path-3, ... when it already holds something (never overwrite)."""
    candidate, n = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


# -- seemrl repro -----------------------------------------------------------------------------
def cmd_repro(argv: list[str]) -> int:
    from seemrl.repro import EXPERIMENTS, SCALES

    p = _Parser(prog="seemrl repro", description="Run one experiment of the paper (or all of "
                "them): its sweep, figures (PNG), results.json and a Markdown section. "
                "Finished runs are reused when a command is run again.")
    p.add_argument("name", choices=[*EXPERIMENTS, "all", "list"], metavar="NAME",
                   help=f"experiment: {', '.join(EXPERIMENTS)}; 'all' runs every one and writes "
                        "the results document; 'list' shows them")
    p.add_argument("--scale", choices=SCALES, default="smoke",
                   help="smoke: seconds (a check); cpu: what a 2-core machine runs in about an "
                        "hour (docs/RESULTS.md); paper: the paper's full scale (default smoke)")
    p.add_argument("--out", help="folder for the experiment folders (default runs/repro/SCALE)")
    p.add_argument("--data-dir", help="dataset folder (default $SEEMRL_DATA_DIR or "
                   "~/.seemrl/datasets)")
    p.add_argument("--doc", default="docs/RESULTS.md",
                   help="results document written by 'repro all' (default docs/RESULTS.md)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where the training runs go (default local)")
    p.add_argument("--workers", type=int, default=1,
                   help="local engine: runs trained at once in separate processes (default 1)")
    p.add_argument("--address", help="ray engine: address of an existing cluster")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: with 'all', assemble the results document from the "
                        "experiments already run at this scale in --out; with an experiment "
                        "that has a report of its own (fraction), write its results.json, "
                        "section.md and figures from the runs finished so far (the rest "
                        "listed as pending)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    from rich.console import Console

    from seemrl.repro import _common

    console = Console()
    if args.name == "list":
        from seemrl.repro import get

        for name in EXPERIMENTS:
            console.print(f"[bold]{name:13s}[/bold] {get(name).TITLE}")
        return 0
    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    out = pathlib.Path(args.out or f"runs/repro/{args.scale}")
    kwargs = dict(data_dir=args.data_dir, engine=args.engine, workers=args.workers,
                  address=args.address, progress=not args.no_progress)
    try:
        if args.name == "all":
            result = _common.run_all(args.scale, out, args.doc, collect=args.collect,
                                     console=console, **kwargs)
            console.print(f"results document: {result['doc']}")
            return 0
        record = _common.run_experiment(args.name, args.scale, out, console=console,
                                        collect=args.collect, **kwargs)
    except _common.ExperimentUnavailable as e:
        print(f"seemrl repro {args.name}: {e}", file=sys.stderr)
        return 2
    folder = out / args.name
    console.print(f"{args.name}: {folder / 'results.json'}, {folder / 'section.md'}, "
                  f"figures {', '.join(record['figures']) or '—'} "
                  f"({record['seconds']:.0f} s)")
    return 0


# -- seemrl sweep -----------------------------------------------------------------------------
def cmd_sweep(argv: list[str]) -> int:
    from rich.console import Console

    from seemrl import algos, sweep
    from seemrl import grid as grid_lib
    from seemrl.train import TrainConfig

    p = _Parser(prog="seemrl sweep", description="Train a grid of runs (datasets x algorithms "
                "x option values), each training all its seeds side by side, into OUT/<run>. "
                "Running the same command again skips finished runs and resumes started ones. "
                "Ends with a summary table; exit code 1 when a run failed. See docs/SWEEPS.md.")
    p.add_argument("--grid", metavar="FILE", help="YAML/JSON grid file (datasets, algos, seeds, "
                   "grid, fixed); flags override it")
    p.add_argument("--dataset", nargs="+", dest="datasets", default=[], metavar="DATASET",
                   help="datasets (an axis): .hdf5/.npz files, Minari ids or built-in names")
    p.add_argument("--algo", nargs="+", dest="algos", default=[], metavar="ALGO",
                   help=f"algorithms (an axis): {', '.join(algos.ALGORITHMS)} (default td3bc)")
    p.add_argument("--set", action="append", dest="axes", default=[], metavar="KEY=V1,V2",
                   help="an axis: any option of seemrl train and its values, read as YAML "
                        "(layer_norm=true,false  fraction=1,0.1  critic_hidden=[64,64],[256,"
                        "256]); repeatable; axes are part of the run names")
    p.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for every run, e.g. an algorithm's (bc_coef=0); repeatable "
                        "(the data and run options also have their own flags below)")
    p.add_argument("--out", default="runs/sweep", metavar="DIR",
                   help="sweep folder: OUT/<run> per run and OUT/sweep.json (default runs/sweep)")
    p.add_argument("--engine", choices=sweep.ENGINES, default="local",
                   help="local: this machine (default); ray: a Ray cluster, one task per run "
                        "(pip install seemrl[ray])")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local engine: runs "
                   "trained at once, each in its own process with cores/N seed groups (default "
                   "1: one after another, in this process)")
    p.add_argument("--address", metavar="ADDR", help="ray engine: address of an existing "
                   "cluster (default: a local Ray instance)")
    p.add_argument("--cpus-per-run", type=int, default=1, metavar="N",
                   help="ray engine: CPUs each run reserves (default 1)")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="a failing run is tried again this many times (default 1)")
    p.add_argument("--dry-run", action="store_true", help="list the runs; train nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_flags(p, TrainConfig, "options of every run", skip=("dataset", "algo"))
    args = vars(p.parse_args(argv))
    own = {k: args.pop(k) for k in ("grid", "datasets", "algos", "axes", "fix", "out", "engine",
                                    "workers", "address", "cpus_per_run", "retries", "dry_run",
                                    "no_progress")}
    axes = [grid_lib.parse_axis(t) for t in own["axes"]]
    if len({k for k, _ in axes}) < len(axes):
        raise ConfigError("--set names an option twice (give all its values in one --set)")
    fixed = {**dict(grid_lib.parse_fixed(t) for t in own["fix"]), **args}
    grid = grid_lib.read_grid(own["grid"]) if own["grid"] else None
    specs = grid_lib.combine(grid, datasets=own["datasets"], algos=own["algos"], axes=dict(axes),
                             fixed=fixed).specs()
    console = Console()
    if own["dry_run"]:
        sweep.validate(specs)
        sweep.print_plan(specs, own["out"], console)
        return 0
    try:
        results = sweep.run_sweep(specs, own["out"], engine=own["engine"],
                                  workers=own["workers"], address=own["address"],
                                  retries=own["retries"], progress=not own["no_progress"],
                                  console=console, cpus_per_run=own["cpus_per_run"])
    except KeyboardInterrupt as e:
        how, code = _stopped(e)
        print(f"seemrl sweep: {how}; run the same command again to continue (finished runs "
              "are skipped, started ones resume)", file=sys.stderr)
        return code
    sweep.print_summary(results, console, title=str(own["out"]))
    return 1 if any(r.outcome == "failed" for r in results) else 0


TERMINATED_CODE, INTERRUPTED_CODE = 143, 130  # the shell's codes for SIGTERM and SIGINT


def _stopped(e: KeyboardInterrupt) -> tuple[str, int]:
    """How a run was stopped, and the exit code."""
    if isinstance(e, Terminated):
        return "terminated", TERMINATED_CODE
    return "interrupted", INTERRUPTED_CODE


COMMANDS = {
    "demo": (cmd_demo, "the built-in demo: TD3 diverges, a LayerNorm critic does not"),
    "train": (cmd_train, "train an offline-RL agent (several seeds side by side)"),
    "diagnose": (cmd_diagnose, "SEEM verdict, growth order and crash step of a run"),
    "data": (cmd_data, "inspect, make and list datasets"),
    "repro": (cmd_repro, "reproduce an experiment of the paper (figures, tables, RESULTS.md)"),
    "sweep": (cmd_sweep, "train a grid of runs locally or on Ray; re-running skips finished ones"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="seemrl", description="Offline RL that stops diverging: SEEM diagnostics "
                "and LayerNorm critics.")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                   help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help", "--version"):
        p.parse_args(argv or ["--help"])
    args = p.parse_args(argv[:1])
    handler = COMMANDS[args.command][0]
    try:
        return handler(argv[1:])
    except USAGE_ERRORS as e:
        print(f"seemrl {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        print(f"seemrl {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how, code = _stopped(e)
        print(f"seemrl {args.command}: {how}; the last checkpoint is kept (continue with "
              "--resume RUN_DIR)", file=sys.stderr)
        return code


def run() -> None:
    """The `seemrl` program: `main`, its return value the exit status.

    A command stopped by Ctrl-C or SIGTERM returns once it has saved, but the compiled chunk
    that was running when the signal came keeps going in XLA's threads, and the interpreter's
    exit waits for it: a whole log chunk (minutes for CQL or Diffusion-QL on a CPU) after the
    message said the run was saved, long enough for a scheduler to escalate to SIGKILL.
    Everything is written by then (logs closed, checkpoint and status written atomically),
    so a stopped command leaves at once.
    """
    code = main()
    if code in (TERMINATED_CODE, INTERRUPTED_CODE):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename:
        text = f"no such file: {e.filename}"
    elif isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        text = f"{e.filename or 'a file'}: {e.strerror or e}"
    return " ".join(text.split())


def _version() -> str:
    from seemrl import __version__

    return f"seemrl {__version__}"


if __name__ == "__main__":
    run()
