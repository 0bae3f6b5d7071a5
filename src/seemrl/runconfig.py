"""A run's configuration, resolved in one place: `RunConfig(train, algo)`.

Every way of starting a run goes through here: `seemrl train` (flags, `--config`, `--preset`,
`--resume`), sweeps and grids (`RunSpec`s), the paper's experiments and presets. The layers
are, each overriding the last:

    defaults  <  preset  <  config file  <  flags

An option belongs to `TrainConfig` (data and how the run is driven) or to the algorithm's
`Config`, decided by `owner` alone. A stopped run resumes with its saved config; only the
options in `RESUME_OVERRIDABLE` may change (`changed_on_resume`, the one same-run rule, which
sweeps also use to tell their own run folders from another run's). `seed_groups` is resolved
once, when the run first starts (`resolve_seed_groups`), and saved, so a resume keeps it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

from seemrl import config as config_lib
from seemrl.config import ConfigError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What to train on and how the run is driven (the algorithm's own options are separate)."""

    dataset: str = ""
    """Dataset: a D4RL-format .hdf5 file, an .npz, a local Minari id or path, or a built-in name."""
    env: str | None = None
    """Gymnasium env for evaluation (default: the one the dataset names)."""
    algo: str = "td3bc"
    """Algorithm."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds, trained side by side in one process."""
    steps: int = 100_000
    """Gradient steps per seed."""
    batch_size: int = 256
    """Minibatch size."""
    fraction: float = 1.0
    """Fraction of the dataset's transitions used, in (0, 1] (e.g. 0.01 for 1 %)."""
    subset_mode: str = "transitions"
    """How the fraction is drawn: random 'transitions' or whole 'trajectories'."""
    data_seed: int = 0
    """Seed of the random subset; shared by all training seeds so they see the same data."""
    normalize_states: bool = True
    """Z-normalise states with the training subset's mean and std (+1e-3), as TD3+BC does."""
    reward_normalization: str = "none"
    """'returns': first multiply rewards by 1000 / (max − min episode return) of the whole
    dataset, IQL's rule for D4RL locomotion (the iql- and cql-locomotion presets); 'none'."""
    reward_scale: float = 1.0
    """Rewards are transformed to r·scale + bias."""
    reward_bias: float = 0.0
    """Rewards are transformed to r·scale + bias."""
    log_every: int = 1000
    """Log metrics every this many steps (also the longest jitted chunk). Records are also
    written at every SEEM measurement, which the SEEM schedule places, not this."""
    eval_every: int = 10_000
    """Evaluate every this many steps (0: only at the end), at the first log point at or
    after each multiple."""
    eval_episodes: int = 10
    """Episodes per evaluation and seed (0 disables evaluation)."""
    checkpoint_every: int = 50_000
    """Checkpoint every this many steps (and always at the end; 0: only at the end)."""
    seem_every: int = 10_000
    """Largest spacing of SEEM measurements (0: SEEM off). The authors measured every 10 000
    steps, which sees only the aftermath of the divergences that begin early."""
    seem_first: int = 50
    """Spacing of SEEM measurements at the start of training: every `seem_first` steps to
    step 40·seem_first, then 20 per doubling of the step up to `seem_every`
    (`diagnostics.schedule`); 0: every `seem_every` steps only. Overhead at the defaults:
    benchmarks/seem_cost.py."""
    seem_probe: int = 256
    """Transitions in the fixed SEEM probe batch, drawn once per seed (all of them when the
    data is smaller). The authors used 2 560: 0.2 s a measurement on a 2-core CPU with the exact
    MLP path (~1.5 % of training time every 10 000 steps), but ~6 s with the generic path that
    BatchNorm and spectral-norm critics need (docs/BENCHMARKS.md), so the default is smaller."""
    q_bound: float = 1e8
    """A seed whose |mean Q| exceeds this (or turns NaN/Inf) is stopped at its last finite
    state (`stopped_at`). It counts as diverged (`diverged_at`) as soon as |mean Q| passes
    the data's ceiling max|r|/(1 − γ), usually long before."""
    clip_actions: bool = False
    """Clip the dataset's actions into the evaluation env's action space; without it a dataset
    with actions outside that space is refused (they would poison TD targets and BC terms)."""
    seed_groups: int = 0
    """Seeds are split into this many groups, each vmapped, run concurrently in threads (0: one
    per CPU core on a CPU, 1 on an accelerator). One XLA CPU computation of this size keeps
    about one core busy, so on 2 cores two groups train ~1.7x more seed-updates/s than one
    (benchmarks/throughput.py). Saved resolved, so a resumed run reproduces exactly."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs seemrl[tensorboard])."""
    wandb_project: str | None = None
    """Also log to this W&B project (needs seemrl[wandb])."""

    def __post_init__(self):
        if not self.dataset:
            raise ConfigError("no dataset given (--dataset FILE_OR_NAME)")
        if not (0.0 < self.fraction <= 1.0) or math.isnan(self.fraction):
            raise ConfigError(f"option 'fraction' must be in (0, 1], got {self.fraction}")
        if self.subset_mode not in ("transitions", "trajectories"):
            raise ConfigError("option 'subset_mode' must be 'transitions' or 'trajectories'")
        if self.reward_normalization not in ("none", "returns"):
            raise ConfigError("option 'reward_normalization' must be 'none' or 'returns', got "
                              f"{self.reward_normalization!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"option 'seeds' needs distinct seeds, got {list(self.seeds)}")
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"option '{name}' must be positive")
        for name in ("eval_every", "checkpoint_every", "seem_every", "seem_first"):
            if getattr(self, name) < 0:
                raise ConfigError(f"option '{name}' must be >= 0 (0 turns it off)")
        if self.eval_episodes < 0 or self.seem_probe < 2:
            raise ConfigError("eval_episodes must be >= 0 and seem_probe >= 2")
        if not self.q_bound > 0:
            raise ConfigError("option 'q_bound' must be positive")
        if self.seed_groups < 0:
            raise ConfigError("option 'seed_groups' must be >= 0 (0: automatic)")


RUN_INFO_KEYS = ("env_id", "dataset_size", "q_ceiling", "dataset_metadata", "dataset_fingerprint")
"""Facts a saved config.json records beside its `train` and `algo` sections (not options)."""

RESUME_OVERRIDABLE = ("steps", "eval_every", "eval_episodes", "checkpoint_every", "tensorboard",
                      "wandb_project")
"""Options a stopped run may be resumed with another value of (extending it, logging more or
less); any other change would make the resumed run a different run."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's whole configuration: what it trains on and how (`train`), and the algorithm's
    own options (`algo`, an instance of `seemrl.algos.get(train.algo).Config`)."""

    train: TrainConfig
    algo: Any

    def to_dict(self) -> dict[str, Any]:
        """The `train` and `algo` sections of config.json."""
        return {"train": config_lib.to_dict(self.train), "algo": config_lib.to_dict(self.algo)}

    def default_name(self) -> str:
        """The run folder's name when none is given: dataset, algorithm, LN, fraction."""
        stem = pathlib.Path(self.train.dataset).stem or self.train.dataset
        ln = "-ln" if getattr(self.algo, "layer_norm", False) else ""
        frac = "" if self.train.fraction == 1.0 else f"-{self.train.fraction:g}"
        return f"{stem}-{self.train.algo}{ln}{frac}"


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def owner(key: str, algo_cls: type) -> type | None:
    """The config class option `key` belongs to in a run of the algorithm whose Config is
    `algo_cls`: TrainConfig, `algo_cls`, or None (neither has it)."""
    if key in field_names(TrainConfig):
        return TrainConfig
    return algo_cls if key in field_names(algo_cls) else None


def split(flat: dict[str, Any], algo_cls: type, source: str = "preset") -> tuple[dict, dict]:
    """A flat mapping (a preset, a flat config file, flags) as (TrainConfig keys, `algo_cls`
    keys); ConfigError naming the keys that are neither, with `source` saying where they came
    from."""
    unknown = sorted(k for k in flat if owner(k, algo_cls) is None)
    if unknown:
        raise ConfigError(f"unknown option(s) in {source}: {', '.join(unknown)}")
    return ({k: v for k, v in flat.items() if owner(k, algo_cls) is TrainConfig},
            {k: v for k, v in flat.items() if owner(k, algo_cls) is algo_cls})


def sections(data: dict[str, Any], algo_cls: type, source: str) -> tuple[dict, dict]:
    """A config file's (train, algo) options: either {"train": {...}, "algo": {...}} (as a run
    saves it, with its facts `RUN_INFO_KEYS` beside them) or one flat mapping."""
    if "train" in data or "algo" in data and isinstance(data.get("algo"), dict):
        extra = set(data) - {"train", "algo", *RUN_INFO_KEYS}
        if extra:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(extra))}")
        return dict(data.get("train") or {}), dict(data.get("algo") or {})
    return split(data, algo_cls, source)


def algo_name(*layers: dict[str, Any]) -> str:
    """The algorithm the most specific layer names (flags first; a saved config names it in
    its `train` section, a flat file or preset at the top), else td3bc."""
    for data in layers:
        named = (data.get("train") or {}).get("algo") if isinstance(data.get("train"), dict) \
            else None
        named = named or (data.get("algo") if isinstance(data.get("algo"), str) else None)
        if named:
            return named
    return "td3bc"


def algo_for(algo: str | None = None, *, config_file: str | pathlib.Path | None = None,
             preset: str | None = None, resume: str | pathlib.Path | None = None) -> str:
    """The algorithm a run trains: a resumed run's own; for a new run `algo` (a flag), else
    the config file's, else the preset's, else td3bc."""
    from seemrl.presets import load_preset

    if resume is not None:
        return algo_name({"train": _saved_or_refuse(resume)[0]})
    return algo or algo_name(config_lib.read_file(config_file) if config_file else {},
                             load_preset(preset) if preset else {})


def build(train: dict[str, Any], algo: dict[str, Any]) -> RunConfig:
    """RunConfig of these options (the algorithm is `train["algo"]`, default td3bc), types
    coerced; ConfigError for unknown or bad options."""
    from seemrl import algos

    train_cfg = config_lib.build(TrainConfig, train)
    return RunConfig(train_cfg, config_lib.build(algos.get(train_cfg.algo).Config, algo))


def resolve(flags: dict[str, Any], *, preset: str | None = None,
            config_file: str | pathlib.Path | None = None) -> RunConfig:
    """A new run's config: defaults < preset < config file < flags.

    Args:
      flags: option -> value, any option of TrainConfig or the algorithm's Config (the
        options a user typed; parsed flags hold no defaults).
      preset: a shipped preset's name (`seemrl.presets`).
      config_file: a YAML or JSON file, flat or in a saved run's two sections.
    """
    from seemrl import algos
    from seemrl.presets import load_preset

    preset_data = load_preset(preset) if preset else {}
    file_data = config_lib.read_file(config_file) if config_file else {}
    algo_cls = algos.get(algo_name(flags, file_data, preset_data)).Config
    train: dict[str, Any] = {}
    algo: dict[str, Any] = {}
    for t, a in (sections(preset_data, algo_cls, "preset"),
                 sections(file_data, algo_cls, "config file"),
                 split(flags, algo_cls, "flags")):
        train.update(t)
        algo.update(a)
    return build(train, algo)


def saved(run_dir: str | pathlib.Path) -> tuple[dict, dict] | None:
    """The (train, algo) options a run folder's config.json records, migrated to today's
    options (`runfolder.migrate_algo_section`); None when it has none."""
    from seemrl import algos, runfolder

    data = runfolder.read_config(run_dir)
    if data is None:
        return None
    algo_cls = algos.get(algo_name(data)).Config
    train, algo = sections(data, algo_cls, str(runfolder.path(run_dir, runfolder.CONFIG)))
    return train, runfolder.migrate_algo_section(algo, algo_cls)


def _saved_or_refuse(run_dir: str | pathlib.Path) -> tuple[dict, dict]:
    found = saved(run_dir)
    if found is None:
        raise ConfigError(f"--resume {run_dir}: no config.json there (not a seemrl run folder)")
    return found


def for_resume(run_dir: str | pathlib.Path, flags: dict[str, Any], *,
               preset: str | None = None) -> RunConfig:
    """The config the stopped run in `run_dir` continues with, given the options typed with
    `--resume` (any of TrainConfig's or the algorithm's).

    Raises:
      ConfigError: no config.json in run_dir; a preset; an option the same-run rule
        (`changed_on_resume`) does not let a resume change.
    """
    from seemrl import algos

    saved_options = _saved_or_refuse(run_dir)
    if preset:
        raise ConfigError("--preset cannot be combined with --resume (the run keeps its "
                          "config)")
    algo_cls = algos.get(algo_name({"train": saved_options[0]})).Config
    train, algo = split(flags, algo_cls, "flags")
    changed = changed_on_resume(saved_options, train, algo)
    if changed:
        raise ConfigError(f"--resume cannot change {', '.join(changed)} (only "
                          f"{', '.join(RESUME_OVERRIDABLE)})")
    return resumed(saved_options, train, algo)


def changed_on_resume(saved_options: tuple[dict, dict], train: dict[str, Any],
                      algo: dict[str, Any]) -> list[str]:
    """The options in `train`/`algo` whose value differs from the saved run's (or, where it
    predates the option, from the default it ran with) and that a resume may not change:
    the same-run rule. Empty: these options continue the saved run. `seed_groups` 0
    (automatic) means the run's own."""
    from seemrl import algos

    saved_train, saved_algo = saved_options
    algo_cls = algos.get(algo_name({"train": saved_train})).Config
    changed = []
    for now, before, cls in ((train, saved_train, TrainConfig), (algo, saved_algo, algo_cls)):
        for key, value in now.items():
            if key in RESUME_OVERRIDABLE or key not in field_names(cls) or (
                    key == "seed_groups" and not value):
                continue
            was = before[key] if key in before else next(
                f.default for f in dataclasses.fields(cls) if f.name == key)
            if config_lib.coerce(cls, key, value) != config_lib.coerce(cls, key, was):
                changed.append(key)
    return sorted(changed)


def resumed(saved_options: tuple[dict, dict], train: dict[str, Any],
            algo: dict[str, Any]) -> RunConfig:
    """The config a stopped run continues with: its saved one, with `train`/`algo` options
    on top (callers have refused the ones `changed_on_resume` lists). It keeps its seed
    groups, so it continues exactly."""
    saved_train, saved_algo = saved_options
    train = {k: v for k, v in train.items() if k != "seed_groups" or v}
    return build({**saved_train, **train}, {**saved_algo, **algo})


def resolve_seed_groups(cfg: TrainConfig) -> int:
    """The seed groups a new run trains in (the driver saves them resolved): cfg.seed_groups,
    or for 0 one per CPU core (1 on an accelerator); at most one per seed."""
    import jax

    groups = cfg.seed_groups or (os.cpu_count() or 1 if jax.default_backend() == "cpu" else 1)
    return max(1, min(groups, len(cfg.seeds)))
