"""The behaviour policies shipped with seemrl, and how they were picked from SAC runs.

Each policy is a SAC tanh-Gaussian actor (`seemrl.networks.GaussianActor`) stored as a
float32 npz of its parameters (keys like `mlp/dense_0/kernel`, no pickle). `policies.json`
records, per policy name (`hopper-medium`, ...): env id, level, file(s), architecture, the
return and D4RL-normalised score measured here (stochastic actions, the rollout convention),
and the SAC config and env steps that produced it, so `retrain` can rebuild it.

Levels, as D4RL defined them:
  random         the untrained actor (SAC's initialisation for the recorded seed);
  medium         the first snapshot along training whose score is in MEDIUM_BAND;
  expert         the best snapshot of the run (re-evaluated on fresh episodes);
  medium-replay  snapshots from the start of training up to the medium one, each rolled out
                 for the share of training steps it stands for (see `select_from_run`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from seemrl.types import DataError

POLICY_DIR = Path(__file__).parent
"""Where the shipped npz files and policies.json live (package data)."""
MEDIUM_BAND = (40.0, 60.0)
"""D4RL's medium datasets score about 40–60; a medium policy must land in this band."""
EVAL_EPISODES = 20
"""Episodes of the final measurement recorded for each picked policy."""
REPLAY_SNAPSHOTS = 5
"""Policies (untrained actor included) that stand for the training history in medium-replay."""
LEVELS = ("random", "medium", "expert", "medium-replay")
"""The levels one SAC run can provide (an env's levels may come from different runs)."""


@dataclasses.dataclass(frozen=True)
class BehaviourPolicy:
    """A loaded policy: `act(obs (B, obs_dim), key) -> (B, act_dim)` samples its actions."""

    name: str
    env_id: str
    params: Any
    act: Callable
    info: dict


def registry(policy_dir: Path = POLICY_DIR) -> dict[str, dict]:
    """policies.json as a dict name -> record ({} when nothing is shipped there)."""
    path = Path(policy_dir) / "policies.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_params(policy_dir: Path, file: str):
    from seemrl.behaviour.sac import load_actor

    path = Path(policy_dir) / file
    if not path.exists():
        raise DataError(f"behaviour policy file missing: {path}")
    return load_actor(path)


def make_act(record: dict) -> Callable:
    """The jitted stochastic policy for a record's architecture."""
    from seemrl.behaviour.sac import make_policy
    from seemrl.networks import MLPConfig

    mlp = MLPConfig(hidden=tuple(record["hidden"]), activation=record["activation"])
    policy = make_policy(mlp, record["act_dim"], record.get("max_action", 1.0))
    return lambda params, obs, key: policy(params, obs, key, True)


def load_policy(name: str, policy_dir: Path = POLICY_DIR, file: str | None = None
                ) -> BehaviourPolicy:
    """Loads policy `name` (e.g. 'hopper-expert'); `file` picks one snapshot of a record."""
    reg = registry(policy_dir)
    if name not in reg:
        raise DataError(f"no behaviour policy '{name}' in {policy_dir} "
                        f"(have: {', '.join(sorted(reg)) or 'none'})")
    record = reg[name]
    params = load_params(policy_dir, file or record["file"])
    return BehaviourPolicy(name, record["env_id"], params, make_act(record), record)


def _measure(policy, params, env_id: str, episodes: int, seed: int) -> dict:
    from seemrl.behaviour.sac import evaluate, normalized_score

    rets = evaluate(policy, params, env_id, episodes, seed=seed)
    return {"return_mean": float(rets.mean()), "return_std": float(rets.std()),
            "normalized": float(normalized_score(env_id, rets.mean())),
            "eval_episodes": episodes, "eval_seed": seed}


def select_from_run(run_dir: str | Path, out_dir: str | Path = POLICY_DIR,
                    log: Callable[[str], None] = print, top_k: int = 8,
                    band: tuple[float, float] = MEDIUM_BAND,
                    levels: Collection[str] = LEVELS) -> dict[str, dict]:
    """Picks random / medium / expert / medium-replay (those in `levels`) from a
    `seemrl.behaviour.sac` run.

    The run's own curve (10 stochastic episodes per snapshot) proposes candidates; they are
    re-measured on EVAL_EPISODES fresh episodes (seed 777000 + train seed) to choose, and the
    choice is measured once more on other episodes (seed 888000 + train seed): that last
    measurement is what gets recorded, so selection does not inflate the reported score.

    * expert: of the top_k snapshots by curve return, the best by re-measured return; skipped
      when it does not score above the medium band.
    * medium: the first snapshot in training order whose curve score and re-measured score
      both fall in `band` (default MEDIUM_BAND); if none does, the one whose re-measured
      score is closest to the band's middle among the first crossings tried; skipped (with
      medium-replay) when no snapshot's curve score is in the band.
    * medium-replay: snapshots at 0 (untrained), S/K, ..., (K−1)S/K of training before the
      medium snapshot at step S (K = REPLAY_SNAPSHOTS, rounded to the snapshot grid). Snapshot
      k is rolled out for the share of steps until the next one, as D4RL's replay buffer held
      data from each stage of training in proportion to its length.

    Writes `<env>_<level>.npz` (+ `<env>_replay_<step>.npz`) and merges the records into
    `out_dir/policies.json`. Returns the new records.
    """
    from seemrl.behaviour.sac import (
        SACConfig,
        env_short,
        init_state,
        load_actor,
        make_policy,
        run_keys,
        save_actor,
    )

    run, out = Path(run_dir), Path(out_dir)
    config = json.loads((run / "config.json").read_text())
    cfg = SACConfig(**{**config, "hidden": tuple(config["hidden"])})
    curves = json.loads((run / "curves.json").read_text())
    if curves[-1]["step"] < config["steps"]:
        # A run stopped early is the same run with fewer steps (the buffer is sampled only
        # below its fill level), so record what was actually trained for `retrain`.
        config = {**config, "steps": curves[-1]["step"], "planned_steps": config["steps"]}
    env_id, env = cfg.env, env_short(cfg.env)
    snap = {c["step"]: run / "snapshots" / f"actor_{c['step']:07d}.npz" for c in curves}
    probe = load_actor(snap[curves[0]["step"]])
    act_dim = probe["params"]["mlp"]["out"]["kernel"].shape[1] // 2
    obs_dim = probe["params"]["mlp"]["dense_0"]["kernel"].shape[0]
    policy = make_policy(cfg.mlp, act_dim)
    seed = 777_000 + cfg.seed  # evaluation episodes unseen during training
    report_seed = 888_000 + cfg.seed
    base = {"env_id": env_id, "hidden": list(cfg.hidden), "activation": cfg.activation,
            "act_dim": act_dim, "obs_dim": obs_dim, "max_action": 1.0, "algo": "sac",
            "train_seed": cfg.seed, "config": config, "run_curve": "curves.json"}
    records: dict[str, dict] = {}

    def pick(level: str, step: int, params, chosen_on: dict) -> None:
        file = f"{env}_{level}.npz"
        save_actor(out / file, params)
        # Picking the best of several noisy measurements inflates the winner's: the recorded
        # score comes from episodes that took no part in any choice.
        measured = _measure(policy, params, env_id, EVAL_EPISODES, report_seed)
        records[f"{env}-{level}"] = {**base, "level": level, "file": file, "train_step": step,
                                     **measured,
                                     "selection_return_mean": chosen_on["return_mean"]}
        log(f"{env}-{level}: step {step} return {measured['return_mean']:.1f} "
            f"norm {measured['normalized']:.1f}")

    init_actor = init_state(cfg, obs_dim, act_dim, run_keys(cfg.seed)[0]).actor
    if "random" in levels:
        pick("random", 0, init_actor,
             _measure(policy, init_actor, env_id, EVAL_EPISODES, seed))

    lo, hi = band
    best = None
    candidates = sorted(curves, key=lambda c: -c["return_mean"])[:top_k]
    for c in candidates if "expert" in levels else []:
        params = load_actor(snap[c["step"]])
        m = _measure(policy, params, env_id, EVAL_EPISODES, seed)
        if best is None or m["return_mean"] > best[2]["return_mean"]:
            best = (c["step"], params, m)
    # A run that never got past medium has no expert: shipping its best under that name
    # would mislabel the data.
    if best is not None and best[2]["normalized"] > hi:
        pick("expert", *best)
    elif best is not None:
        log(f"{env}-expert: not reached (best {best[2]['normalized']:.1f} ≤ {hi}); skipped")

    if not {"medium", "medium-replay"} & set(levels):
        return _merge(out, records)
    tried = []
    for c in curves:
        if not lo <= c["normalized"] <= hi:
            continue
        params = load_actor(snap[c["step"]])
        m = _measure(policy, params, env_id, EVAL_EPISODES, seed)
        tried.append((abs(m["normalized"] - (lo + hi) / 2), c["step"], params, m))
        if lo <= m["normalized"] <= hi or len(tried) >= 6:
            break
    if not tried:
        log(f"{env}-medium, {env}-medium-replay: no snapshot in the band {band}; skipped")
        return _merge(out, records)
    hit = [t for t in tried if lo <= t[3]["normalized"] <= hi]
    _, med_step, med_params, med_m = hit[0] if hit else min(tried, key=lambda t: t[0])
    if "medium" in levels:
        pick("medium", med_step, med_params, med_m)
    if "medium-replay" not in levels:
        return _merge(out, records)
    if "random" not in levels:
        save_actor(out / f"{env}_random.npz", init_actor)

    grid = sorted(s for s in snap if s < med_step)
    wanted = [round(k * med_step / REPLAY_SNAPSHOTS) for k in range(1, REPLAY_SNAPSHOTS)]
    steps = sorted({min(grid, key=lambda s, w=w: abs(s - w)) for w in wanted}  # type: ignore[misc]
                   if grid else set())
    bounds = [0, *steps, med_step]
    snapshots = [{"file": f"{env}_random.npz", "step": 0, "share": bounds[1] / med_step}]
    for k, step in enumerate(steps, start=1):
        file = f"{env}_replay_{step:07d}.npz"
        save_actor(out / file, load_actor(snap[step]))
        snapshots.append({"file": file, "step": step,
                          "share": (bounds[k + 1] - bounds[k]) / med_step})
    records[f"{env}-medium-replay"] = {**base, "level": "medium-replay",
                                       "file": snapshots[-1]["file"], "snapshots": snapshots,
                                       "train_step": med_step}
    return _merge(out, records)


def _merge(out: Path, records: dict[str, dict]) -> dict[str, dict]:
    """Merges `records` into out/policies.json (other envs' records are kept)."""
    reg = registry(out)
    reg.update(records)
    (out / "policies.json").write_text(json.dumps(reg, indent=1, sort_keys=True) + "\n")
    return records


def retrain(name: str, work_dir: str | Path, out_dir: str | Path,
            log: Callable[[str], None] = print, policy_dir: Path = POLICY_DIR
            ) -> dict[str, dict]:
    """Re-runs the recorded SAC training behind policy `name` and picks again every level
    that was picked from that run.

    Args:
      name: a recorded policy (e.g. 'hopper-medium'); its recorded SAC config and seed are used.
      work_dir: where the SAC run (curves, snapshots) goes.
      out_dir: where the picked policies and their policies.json are written.
      policy_dir: where the records are read (default: the shipped ones).
    """
    from seemrl.behaviour.sac import SACConfig, train

    reg = registry(policy_dir)
    if name not in reg:
        raise DataError(f"no recorded behaviour policy '{name}' to retrain "
                        f"(have: {', '.join(sorted(reg)) or 'none'})")
    # The records picked from this same run (an env's expert may come from another). A run
    # key leaves out the step count, so the run is trained as far as its longest record went.
    same = [r for r in reg.values() if _run_key(r) == _run_key(reg[name])]
    config = dict(reg[name]["config"], steps=max(r["config"]["steps"] for r in same))
    config.pop("planned_steps", None)
    cfg = SACConfig(**{**config, "hidden": tuple(config["hidden"])})
    train(cfg, work_dir, log=log)
    return select_from_run(work_dir, out_dir, log=log, levels=[r["level"] for r in same])


def _run_key(record: dict) -> tuple[str, str]:
    """What identifies the SAC run a record was picked from: env, config and seed (a run
    stopped early is the same run, so the step counts are left out)."""
    config = {k: v for k, v in record["config"].items() if k not in ("planned_steps", "steps")}
    return record["env_id"], json.dumps(config, sort_keys=True)


def same_run(a: str, b: str, policy_dir: Path = POLICY_DIR) -> bool:
    """Whether recorded policies `a` and `b` were picked from the same SAC run."""
    reg = registry(policy_dir)
    return a in reg and b in reg and _run_key(reg[a]) == _run_key(reg[b])
