"""The one training driver: every algorithm, every seed, one process.

`Trainer` is the stateful shell around the pure core (`seemrl.core`): the data made ready
(`seemrl.prepare`), repeated jitted chunks, and between chunks the edges: divergence marking,
logging, evaluation, SEEM and the online verdict, checkpoints. The run folder (`out`) is
written through `seemrl.runfolder`, which owns its layout; signals and the progress bar are
`seemrl.process`'s. `train` is the entry point: one run folder, fresh or resumed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seemrl import algos, checkpoint, core, evaluation, process, runfolder
from seemrl import config as config_lib
from seemrl import logging as log_lib
from seemrl.config import ConfigError
from seemrl.core import init_states, make_chunk, make_policy, q_ceiling
from seemrl.diagnostics.schedule import SeemSchedule
from seemrl.diagnostics.verdict import OnlineVerdict, VerdictConfig
from seemrl.prepare import Prepared, prepare
from seemrl.runconfig import RUN_INFO_KEYS, TrainConfig, resolve_seed_groups
from seemrl.types import RunError, WriteError


class Trainer:
    """The stateful shell around the pure chunk function: one run folder, all its seeds."""

    def __init__(self, cfg: TrainConfig, algo_cfg, out: str | pathlib.Path,
                 prepared: Prepared | None = None):
        # Saved resolved (config.json), so a resumed run splits its seeds the same way.
        cfg = dataclasses.replace(cfg, seed_groups=resolve_seed_groups(cfg))
        self.cfg, self.algo_cfg, self.out = cfg, algo_cfg, pathlib.Path(out)
        self.algo = algos.get(cfg.algo)
        self.p = prepared or prepare(cfg)
        p = self.p
        self.seeds = list(cfg.seeds)
        self.states = init_states(self.algo, algo_cfg, self.seeds, p.spec)
        self.chunk = make_chunk(self.algo, algo_cfg, p.spec, cfg.batch_size)
        self.policy = make_policy(self.algo, algo_cfg, p.normalizer, p.spec)
        self._compiled: dict[tuple[int, int], Any] = {}
        bounds = np.linspace(0, len(self.seeds), cfg.seed_groups + 1).round()
        self.groups = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self.step = 0
        self.active = np.ones(len(self.seeds), bool)
        self.diverged_at: list[int | None] = [None] * len(self.seeds)  # Q passed the ceiling
        self.stopped_at: list[int | None] = [None] * len(self.seeds)  # Q past q_bound / NaN
        self.scores: dict[str, list] = {"final": [None] * len(self.seeds),
                                        "best": [None] * len(self.seeds)}
        # The online verdict and reports use it as the explosion threshold of this run.
        gamma = algo_cfg.gamma
        self.q_ceiling = q_ceiling(p.dataset.rewards, gamma) if gamma < 1.0 else None
        self.verdicts = [OnlineVerdict(VerdictConfig(), self.q_ceiling) for _ in self.seeds]
        self.schedule = SeemSchedule(cfg.seem_first, cfg.seem_every)
        self.seem = None
        if self.schedule.enabled:
            from seemrl.diagnostics.tracking import SeemTracker

            self.seem = SeemTracker(self.algo, algo_cfg, p, cfg, self.seeds, self.states)

    # -- run folder -------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        info = {"env_id": self.p.env_id, "dataset_size": len(self.p.dataset),
                "q_ceiling": self.q_ceiling,
                "dataset_metadata": _jsonable(self.p.dataset.metadata),
                "dataset_fingerprint": self.p.fingerprint}
        assert set(info) == set(RUN_INFO_KEYS)
        return {"train": config_lib.to_dict(self.cfg), "algo": config_lib.to_dict(self.algo_cfg),
                **info}

    def write_run_files(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError.of(self.out, e) from e
        runfolder.write_config(self.out, self.config_dict())
        runfolder.write_normalizer(self.out, self.p.normalizer.to_dict())

    def run_status(self) -> runfolder.RunStatus:
        return runfolder.RunStatus(self.step, self.cfg.steps, {
            s: runfolder.SeedStatus(
                predicted_at=self.verdicts[j].result.step,
                predicted_reason=self.verdicts[j].result.reason or None,
                diverged_at=self.diverged_at[j], stopped_at=self.stopped_at[j],
                final_score=self.scores["final"][j], best_score=self.scores["best"][j],
                active=bool(self.active[j]))
            for j, s in enumerate(self.seeds)})

    def status(self) -> dict[str, Any]:
        """status.json's content (what `run` returns)."""
        return self.run_status().to_dict()

    def save(self) -> None:
        meta = {"step": self.step, "active": self.active.tolist(),
                "diverged_at": self.diverged_at, "stopped_at": self.stopped_at,
                "scores": self.scores}
        checkpoint.save(self.out, {"states": self.states,
                                   "seem": self.seem.memory if self.seem else None}, meta)
        runfolder.write_status(self.out, self.run_status())

    def restore(self, other_data: bool = False) -> None:
        """Continue from the checkpoint. `other_data`: the dataset may differ from the one the
        run was trained on (else RunError)."""
        if not other_data:
            self._check_same_data()
        target = {"states": self.states, "seem": self.seem.memory if self.seem else None}
        restored, meta = checkpoint.load(self.out, target)
        if int(meta["step"]) > self.cfg.steps:
            raise ConfigError(f"--steps {self.cfg.steps} is fewer than the {meta['step']} "
                              f"steps run {self.out} has done already")
        self.states = jax.tree.map(jnp.asarray, restored["states"])
        self.step, self.active = int(meta["step"]), np.asarray(meta["active"], bool)
        self.diverged_at, self.scores = meta["diverged_at"], meta["scores"]
        # Checkpoints from before `stopped_at` marked only the stop, under diverged_at.
        self.stopped_at = meta.get("stopped_at", [None if a else d for a, d in
                                                  zip(meta["active"], meta["diverged_at"],
                                                      strict=True)])
        if self.seem:
            self.seem.memory = jax.tree.map(jnp.asarray, restored["seem"])
        log_lib.truncate_jsonl(runfolder.path(self.out, runfolder.METRICS), self.step)
        # The verdicts are a function of the logged series: replay them.
        by_seed: dict[int, list] = {s: [] for s in self.seeds}
        for rec in runfolder.read_metrics(self.out):
            by_seed.get(rec.get("seed", -1), []).append(rec)
        for j, (verdict, seed) in enumerate(zip(self.verdicts, self.seeds, strict=True)):
            for rec in by_seed[seed]:
                if self.diverged_at[j] is not None and rec["step"] >= self.diverged_at[j]:
                    verdict.diverged()
                if "seem/normalized" in rec:
                    verdict.update(rec["step"], rec)
            if self.diverged_at[j] is not None:
                verdict.diverged()

    def _check_same_data(self) -> None:
        """RunError when config.json records a dataset other than the one loaded now (run
        folders from before fingerprints were recorded are taken on trust)."""
        saved = (runfolder.read_config(self.out) or {}).get("dataset_fingerprint")
        now = self.p.fingerprint
        if not isinstance(saved, dict) or now is None or saved == now:
            return
        then, today = (f"{f.get('transitions')} transitions, sha256 "
                       f"{str(f.get('sha256'))[:12]}" for f in (saved, now))
        raise RunError(
            f"dataset '{self.cfg.dataset}' is not the one run {self.out} was trained on "
            f"(then {then}; now {today}): resume it with that data, or pass "
            "--accept-other-data to go on with this one (keeping the run's normaliser)")

    # -- the loop ---------------------------------------------------------------------------
    def evaluate(self) -> list[dict[str, Any]]:
        env_id, ref = self.p.env_id, self.p.ref_scores
        assert env_id is not None and ref is not None, "evaluation needs an env"
        episodes = evaluation.evaluate(lambda obs: self.policy(self.states, obs), env_id,
                                       self.seeds, self.cfg.eval_episodes)
        returns = episodes.returns
        scores = evaluation.normalized_score(returns, ref)
        records = []
        for j, seed in enumerate(self.seeds):
            score = float(scores[j].mean())
            self.scores["final"][j] = score
            best = self.scores["best"][j]
            self.scores["best"][j] = score if best is None else max(best, score)
            records.append({"step": self.step, "seed": int(seed),
                            "eval/return_mean": float(returns[j].mean()),
                            "eval/return_std": float(returns[j].std()),
                            "eval/normalized_score": score,
                            "eval/normalized_score_std": float(scores[j].std()),
                            "eval/length_mean": float(episodes.lengths[j].mean()),
                            "eval/terminated_frac": float(episodes.terminated[j].mean())})
        return records

    def _run_groups(self, num_steps: int):
        """The compiled chunk on each seed group, concurrently; results joined along seeds."""
        step, run = jnp.int32(self.step), jnp.int32(num_steps)
        longest = self.cfg.log_every
        calls = []
        for lo, hi in self.groups:
            args = (jax.tree.map(lambda x, lo=lo, hi=hi: x[lo:hi], self.states), self.p.data,
                    step, jnp.asarray(self.active[lo:hi]))
            key = (longest, hi - lo)
            if key not in self._compiled:  # compile outside the timed region
                self._compiled[key] = self.chunk.lower(*args, num_steps=longest,
                                                       run_steps=run).compile()
            calls.append((functools.partial(self._compiled[key], run_steps=run), args))
        t0 = time.perf_counter()
        if len(calls) == 1:
            outs = [jax.device_get(calls[0][0](*calls[0][1]))]
        else:
            with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
                outs = list(pool.map(lambda c: jax.device_get(c[0](*c[1])), calls))
        sps = num_steps / (time.perf_counter() - t0)
        new = jax.tree.map(lambda *x: jnp.concatenate(x), *[o[0] for o in outs])
        metrics = {k: np.concatenate([o[1][k][:num_steps] for o in outs], axis=1)
                   for k in outs[0][1]}
        params = {k: np.concatenate([o[2][k] for o in outs]) for k in outs[0][2]}
        return new, metrics, params, sps

    def next_stop(self) -> int:
        """The step the next segment ends at: the next log point, SEEM measurement or the
        last step, whichever comes first."""
        cfg = self.cfg
        stop = min((self.step // cfg.log_every + 1) * cfg.log_every, cfg.steps)
        seem = self.schedule.next_after(self.step) if self.seem else None
        return stop if seem is None else min(stop, seem)

    def run_chunk(self, logger) -> None:
        """Train to the next stop (`next_stop`), then the edges: divergence marking, SEEM and
        the verdict, evaluation, logging, checkpoint."""
        cfg = self.cfg
        num_steps = self.next_stop() - self.step
        was_active = self.active.copy()
        new, metrics, params, sps = self._run_groups(num_steps)
        first_bad = core.first_bad_step(metrics, cfg.q_bound)
        first_bad[~self.active] = -1
        params_ok = np.all([np.isfinite(v) for v in params.values()], axis=0)
        first_bad = np.where((first_bad < 0) & ~params_ok & self.active, num_steps - 1, first_bad)
        stopped = first_bad >= 0
        if stopped.any():
            # Keep the last finite state (the chunk's start) for the seeds that blew up.
            keep = jnp.asarray(~stopped)
            new = jax.tree.map(
                lambda n, o: jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                new, self.states)
        crossed = (core.first_bad_step(metrics, self.q_ceiling) if self.q_ceiling is not None
                   else first_bad)
        records = core.chunk_records(self.step + num_steps, self.seeds, metrics, params, first_bad,
                                 sps)
        # Together, so that an interrupt never saves the new state under the old step.
        self.states, self.step = new, self.step + num_steps
        step0 = self.step - num_steps
        for j in np.flatnonzero(was_active):
            if self.diverged_at[j] is None and (crossed[j] >= 0 or stopped[j]):
                at = crossed[j] if crossed[j] >= 0 else first_bad[j]
                self.diverged_at[j] = step0 + int(at) + 1
                records[j]["diverged_at"] = self.diverged_at[j]
                self.verdicts[j].diverged()
            if stopped[j]:
                self.active[j] = False
                self.stopped_at[j] = step0 + int(first_bad[j]) + 1
                records[j]["stopped_at"] = self.stopped_at[j]
        if self.seem and self.step == self.schedule.next_after(step0):
            for rec, extra in zip(records, self.seem.measure(self.states), strict=True):
                rec.update(extra)
        self._update_verdicts(records)
        if cfg.eval_episodes and self.p.env_id and (
                self.step == cfg.steps or core.crossed(self.step, num_steps, cfg.eval_every)):
            for rec, extra in zip(records, self.evaluate(), strict=True):
                rec.update({k: v for k, v in extra.items() if k not in ("step", "seed")})
        logger.log(core.live_records(records, was_active))
        if stopped.any() or self.step == cfg.steps or (
                core.crossed(self.step, num_steps, cfg.checkpoint_every)):
            self.save()
        else:
            runfolder.write_status(self.out, self.run_status())
        self.last_records = records

    def _update_verdicts(self, records: list[dict[str, Any]]) -> None:
        """Feed the online verdict at each SEEM measurement; log the step it first fires."""
        for verdict, rec in zip(self.verdicts, records, strict=True):
            if "seem/normalized" not in rec:
                continue
            fired_before = verdict.result.fired
            result = verdict.update(rec["step"], rec)
            if result.fired and not fired_before:
                rec["verdict/predicted_at"] = result.step
                rec["verdict/reason"] = result.reason

    def run(self, resume: bool = False, progress: bool = True, console=None,
            other_data: bool = False) -> dict[str, Any]:
        if resume:
            self.restore(other_data)
        # On resume too: config.json records a new --steps (and data accepted with
        # --accept-other-data), and a lost normalizer.json is written again.
        self.write_run_files()
        logger = self._logger()
        # Around the save too: a second SIGTERM cannot cut it short.
        with process.sigterm_interrupts():
            try:
                with process.progress_bar(progress, console) as bar:
                    task = bar.add_task("train", total=self.cfg.steps, completed=self.step,
                                        info="", sps="—")
                    while self.step < self.cfg.steps:
                        if not self.active.any():
                            break
                        self.run_chunk(logger)
                        sps = self.last_records[0]["time/steps_per_sec"]
                        bar.update(task, completed=self.step, sps=f"{sps:.0f}",
                                   info=_summary(self.last_records, self.verdicts,
                                                 self.diverged_at))
            except KeyboardInterrupt:
                with process.interrupts_ignored():  # a second Ctrl-C or SIGTERM waits for the save
                    self.save()  # the state of the last completed chunk: --resume continues
                raise
            finally:
                logger.close()
        if not self.active.all() and self.step < self.cfg.steps:
            self.save()
        return self.status()

    def _logger(self):
        loggers: list = [log_lib.JsonlLogger(runfolder.path(self.out, runfolder.METRICS))]
        if self.cfg.tensorboard:
            loggers.append(log_lib.TensorBoardLogger(runfolder.path(self.out,
                                                                    runfolder.TENSORBOARD)))
        if self.cfg.wandb_project:
            loggers.append(log_lib.WandbLogger(self.cfg.wandb_project, self.out.name,
                                               self.config_dict(), self.seeds))
        return log_lib.MultiLogger(loggers)


def _summary(records: list[dict[str, Any]], verdicts: list[OnlineVerdict],
             diverged_at: list[int | None] | None = None) -> str:
    """The progress bar's line: Q and scores per seed, then the verdict the moment it fires
    ("seed 1: SEEM +0.62 since step 200: predicted to diverge") and the divergences."""
    q = [r.get("train/q_mean") for r in records]
    text = "Q " + " ".join(f"{v:.3g}" if v is not None and np.isfinite(v) else "—" for v in q)
    scores = [r["eval/normalized_score"] for r in records if "eval/normalized_score" in r]
    if scores:
        text += "  score " + " ".join(f"{s:.1f}" for s in scores)
    for r, v in zip(records, verdicts, strict=True):
        if v.result.fired:
            text += f"  [yellow]seed {r['seed']}: {v.result.describe()}[/yellow]"
    gone = [f"{r['seed']} at {d:,}" for r, d in zip(records, diverged_at or [], strict=False)
            if d is not None]
    if gone:
        text += f"  [red]Q past the ceiling: seed {', '.join(gone)}[/red]"
    return text


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item")
                                 else str(o)))


def train(cfg: TrainConfig, algo_cfg, out: str | pathlib.Path, resume: bool = False,
          progress: bool = True, console=None, other_data: bool = False) -> dict[str, Any]:
    """Train `cfg.seeds` side by side into run folder `out`; returns the final status.

    A fresh start may reuse a folder that holds only what a run stopped before its first
    checkpoint left (nothing in it could be resumed). `other_data`: with `resume`, go on
    although the dataset is not the one the run was trained on, with the run's normaliser.
    """
    out = pathlib.Path(out)
    made = check_run_folder(out, resume)  # before the data loads (tens of seconds)
    try:
        normalizer = _saved_normalizer(out) if resume and other_data else None
        trainer = Trainer(cfg, algo_cfg, out, prepare(cfg, normalizer))
    except BaseException:
        _remove_folders(made)
        raise
    if not resume:
        runfolder.clear_partial(out)
    return trainer.run(resume=resume, progress=progress, console=console, other_data=other_data)


def train_command(cfg: TrainConfig, algo_cfg, out: str | pathlib.Path, *, resume: bool,
                  progress: bool = True, other_data: bool = False) -> dict[str, Any]:
    """`seemrl train`: `train` into `out`, with two kindnesses to a user at a prompt.

    A `--resume` of a run stopped before its first checkpoint starts it again from step 0
    (nothing in it could be resumed; said on stderr). A write error names the run's last
    checkpoint, which is kept, and how to continue from it.
    """
    import sys

    out = pathlib.Path(out)
    if resume and not checkpoint.exists(out):
        print(f"seemrl train: {out} has no checkpoint yet (it stopped before its first one): "
              "starting it again from step 0", file=sys.stderr)
        resume, other_data = False, False
    try:
        return train(cfg, algo_cfg, out, resume=resume, progress=progress,
                     other_data=other_data)
    except WriteError as e:
        if checkpoint.exists(out):
            raise WriteError(f"{e}; the run's last checkpoint is kept: continue it with "
                             f"--resume {out}") from e
        raise


def check_run_folder(out: pathlib.Path, resume: bool) -> list[pathlib.Path]:
    """Raises what would stop a run using folder `out`; creates it if missing, and returns the
    folders it created (deepest first), for a run that fails before it starts to remove.

    Raises:
      RunError: resume, and there is no checkpoint to continue from.
      ConfigError: a fresh start, and `out` holds a checkpoint or files of its own.
      WriteError: `out` cannot be written (read-only, no permission).
    """
    if resume and not checkpoint.exists(out):
        raise RunError(f"run {out} has no checkpoint yet (it stopped before its first one): "
                       "start it again with `seemrl train --config "
                       f"{runfolder.path(out, runfolder.CONFIG)} "
                       f"--out {out}`")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if not resume and not runfolder.holds_only_partial(out):
        raise ConfigError(f"run folder {out} is not empty: use --resume {out} to continue it, "
                          "or choose another --out")
    made = [p for p in (out, *out.parents) if not p.exists()]
    probe = out / f".seemrl-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        _remove_folders(made)
        raise WriteError.of(out, e) from e
    return made


def _remove_folders(folders: list[pathlib.Path]) -> None:
    """Remove these folders, deepest first, where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _saved_normalizer(out: pathlib.Path):
    from seemrl.data.normalize import Normalizer

    try:
        return Normalizer.from_dict(runfolder.read_normalizer(out))
    except (OSError, ValueError) as e:
        raise RunError(f"{runfolder.path(out, runfolder.NORMALIZER)} cannot be read ({e}): "
                       "without the run's own normaliser it cannot go on with other data") from e
