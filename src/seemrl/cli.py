"""The `seemrl` command: subcommands only. It parses, validates and calls the library.

Errors in what the user gave (options, config files, data) end in one line on stderr and exit
code 2; an interrupted run ends with 130 and a line saying how to resume it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import typing

from seemrl import config as config_lib
from seemrl import process
from seemrl.config import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- seemrl train -----------------------------------------------------------------------------
def _train_parser(prog: str, algo_name: str) -> argparse.ArgumentParser:
    from seemrl import algos
    from seemrl.presets import list_presets
    from seemrl.runconfig import TrainConfig

    algo = algos.get(algo_name)
    p = _Parser(prog=prog, description="Train an offline-RL agent on several seeds at once.")
    p.add_argument("--out", metavar="DIR", help="run folder to create (default: runs/<name>)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON config; flags override it")
    p.add_argument("--preset", metavar="NAME", help="published hyper-parameters by name; a "
                   "config file and flags override it (one of: " + ", ".join(list_presets())
                   + ")")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint (only --steps and "
                        "the logging/eval options may change)")
    p.add_argument("--accept-other-data", action="store_true",
                   help="with --resume: go on although the dataset is not the one the run was "
                        "trained on (the run keeps its normaliser); without it that is an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    config_lib.add_flags(p, TrainConfig, "data and run options")
    config_lib.add_flags(p, algo.Config, f"{algo.NAME} options (--algo picks the algorithm)")
    return p


def cmd_train(argv: list[str]) -> int:
    from seemrl import runconfig, tables
    from seemrl.train import train_command

    # The algorithm decides which flags exist: find it first (a resumed run names its own).
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--algo", "--config", "--resume", "--preset"):
        pre.add_argument(flag)
    known, _ = pre.parse_known_args(argv)
    algo_name = runconfig.algo_for(known.algo, config_file=known.config, preset=known.preset,
                                   resume=known.resume)
    args = vars(_train_parser("seemrl train", algo_name).parse_args(argv))
    out, resume, no_progress = args.pop("out"), args.pop("resume"), args.pop("no_progress")
    other_data, preset = args.pop("accept_other_data"), args.pop("preset", None)
    config_file = args.pop("config", None)
    if other_data and not resume:
        raise ConfigError("--accept-other-data goes with --resume")
    if resume:
        cfg, out = runconfig.for_resume(resume, args, preset=preset), resume
    else:
        cfg = runconfig.resolve(args, preset=preset, config_file=config_file)
    out = out if out is not None else pathlib.Path("runs") / cfg.default_name()
    status = train_command(cfg.train, cfg.algo, out, resume=bool(resume),
                           progress=not no_progress, other_data=other_data)
    tables.print_status(status, out)
    return 0


# -- seemrl data ------------------------------------------------------------------------------
def cmd_data(argv: list[str]) -> int:
    p = _Parser(prog="seemrl data", description="Inspect, make and list offline datasets.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    info = sub.add_parser("info", help="sizes, shapes and returns per episode of a dataset")
    info.add_argument("dataset", help="a .hdf5/.npz file, a Minari id or path, or a built-in name")
    make = sub.add_parser("make", help="roll out a shipped behaviour policy into a dataset")
    make.add_argument("name", help="e.g. hopper-medium, walker2d-medium-expert "
                      "(see `seemrl data list`), antmaze-umaze, antmaze-medium-play")
    make.add_argument("--size", type=int, help="transitions (default 1M)")
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
    from seemrl import tables

    if args.action == "info":
        from seemrl.data import load_dataset, print_info

        dataset = load_dataset(args.dataset)
        print_info(dataset, action_space=tables.action_space_line(dataset))
    elif args.action == "make":
        from seemrl import behaviour

        path = behaviour.make_dataset(args.name, size=args.size, seed=args.seed,
                                      data_dir=args.data_dir, fmt=args.format,
                                      retrain=args.retrain, controller=args.controller)
        print(f"wrote {path}")
    else:
        from seemrl.behaviour import files, list_datasets

        data_dir = files.data_dir_or_default(args.data_dir)
        tables.print_dataset_list(list_datasets(data_dir), data_dir)
    return 0


# -- seemrl diagnose --------------------------------------------------------------------------
def cmd_diagnose(argv: list[str]) -> int:
    p = _Parser(prog="seemrl diagnose", description="Explain a finished or running run: "
                "divergence verdict, SEEM onset, Q explosion, growth order and (SGD) crash step.")
    p.add_argument("run", help="a run folder written by seemrl train")
    p.add_argument("--out", help="folder for the PNGs (default: the run folder)")
    p.add_argument("--no-plots", action="store_true", help="print only")
    args = p.parse_args(argv)
    from seemrl.diagnostics.report import check_run, diagnose

    check_run(args.run)
    report = diagnose(args.run, out_dir=args.out, plots=not args.no_plots)
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
    config_lib.add_flags(p, DemoConfig, "demo options")
    args = vars(p.parse_args(argv))
    out, data_dir, no_progress = args.pop("out"), args.pop("data_dir"), args.pop("no_progress")
    cfg = config_lib.build(DemoConfig, args)
    from rich.console import Console

    from seemrl.demo import fresh_folder, print_table, run_demo

    console = Console()
    out = fresh_folder(pathlib.Path(out))
    result = run_demo(cfg, out, data_dir=data_dir, progress=not no_progress, console=console)
    print_table(result, console)
    return 0


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
    console.print(_common.command(
        args.name, args.scale, pathlib.Path(args.out or f"runs/repro/{args.scale}"), args.doc,
        collect=args.collect, console=console, data_dir=args.data_dir, engine=args.engine,
        workers=args.workers, address=args.address, progress=not args.no_progress))
    return 0


# -- seemrl sweep -----------------------------------------------------------------------------
def cmd_sweep(argv: list[str]) -> int:
    from rich.console import Console

    from seemrl import algos, engines, sweep, tables
    from seemrl import grid as grid_lib
    from seemrl.runconfig import TrainConfig

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
    p.add_argument("--engine", choices=engines.ENGINES, default="local",
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
    config_lib.add_flags(p, TrainConfig, "options of every run", skip=("dataset", "algo"))
    args = vars(p.parse_args(argv))
    own = {k: args.pop(k) for k in ("grid", "datasets", "algos", "axes", "fix", "out", "engine",
                                    "workers", "address", "cpus_per_run", "retries", "dry_run",
                                    "no_progress")}
    specs = grid_lib.from_flags(own["grid"], datasets=own["datasets"], algos=own["algos"],
                                set_=own["axes"], fix=own["fix"], options=args).specs()
    console = Console()
    if own["dry_run"]:
        sweep.validate(specs)
        sweep.print_plan(specs, own["out"], console)
        return 0
    results = sweep.run_sweep(specs, own["out"], engine=own["engine"], workers=own["workers"],
                              address=own["address"], retries=own["retries"],
                              progress=not own["no_progress"], console=console,
                              cpus_per_run=own["cpus_per_run"])
    tables.print_summary(results, console, title=str(own["out"]))
    return 1 if any(r.outcome == "failed" for r in results) else 0


COMMANDS = {
    "demo": (cmd_demo, "the built-in demo: TD3 diverges, a LayerNorm critic does not"),
    "train": (cmd_train, "train an offline-RL agent (several seeds side by side)"),
    "diagnose": (cmd_diagnose, "SEEM verdict, growth order and crash step of a run"),
    "data": (cmd_data, "inspect, make and list datasets"),
    "repro": (cmd_repro, "reproduce an experiment of the paper (figures, tables, RESULTS.md)"),
    "sweep": (cmd_sweep, "train a grid of runs locally or on Ray; re-running skips finished ones"),
}
RERUN_TO_CONTINUE = ("repro", "sweep")
"""Commands a stop tells to run again (their finished runs are skipped); the others say
--resume."""


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
    return process.run_command(
        f"seemrl {args.command}", COMMANDS[args.command][0], argv[1:],
        process.RUN_AGAIN if args.command in RERUN_TO_CONTINUE else process.RESUME_RUN)


def run() -> None:
    """The `seemrl` program: `main`, its return value the exit status."""
    process.exit_with(main())


def _version() -> str:
    from seemrl import __version__

    return f"seemrl {__version__}"


if __name__ == "__main__":
    run()
