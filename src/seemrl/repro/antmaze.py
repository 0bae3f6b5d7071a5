"""AntMaze (SPEC §5.7, the paper's Table 1): Diffusion-QL with a LayerNorm critic against
TD3+BC and IQL, normalised score = mean of the last evaluations.

Runs only where AntMaze data *and* an evaluation env exist; seemrl never downloads either:

* Data: seemrl's own AntMaze files (`seemrl data make antmaze-umaze`, made in the data
  folder), other D4RL-format `antmaze-*.hdf5` files in the data folder (`--data-dir`), and
  Minari AntMaze datasets (ids containing "antmaze", e.g. `D4RL/antmaze/umaze-v1`) under
  `$MINARI_DATASETS_PATH` (default `~/.minari/datasets`).
* Env: Gymnasium-Robotics' AntMaze (`pip install gymnasium-robotics`, not a dependency).
  Minari AntMaze datasets were collected in it and record their evaluation env spec, so they
  are evaluated in exactly that env, with their observation dict flattened the way the data is
  (keys achieved_goal, desired_goal, observation, concatenated in that order, as gymnasium's
  FlattenObservation does). D4RL-format files come from D4RL's mujoco-py AntMaze, whose maze
  frame (start cell at the origin, y axis flipped) and 29-dim observation differ from
  Gymnasium-Robotics'; no env here reproduces it, so they are found but not scored. seemrl's
  own files name their evaluation env (`seemrl/AntMaze-<maze>-v0`, `seemrl.antmaze`: D4RL's
  frame and observation, no extra dependency) and are scored there; they win over a Minari
  dataset of the same task.

Without data or env the experiment raises `ExperimentUnavailable` (the CLI exits 2) naming
what it looked for and where. Training without evaluation (Q and SEEM only) was considered
and not done: Table 1 is a table of scores, and LayerNorm's effect on Q and SEEM is what the
surge and regularizers experiments already show on data this machine has.

Agents (presets diffql-antmaze, iql-antmaze; TD3+BC from td3bc-locomotion):
* Diffusion-QL, the SEEM authors' AntMaze variant: TD3-style guidance α 2, LN critic 256×3
  mish (Linear → LN → mish), rewards ×10, max-Q backup over 10 samples. Differences from the
  authors', from algos/diffql.py: no return-prioritised sampling on medium/large (not in the
  driver); ε-net trained on continuous t; DPM-Solver (3 steps, order 2) in the backup and at
  evaluation; argmax instead of softmax(Q) action selection.
* Diffusion-QL without LN: the same with a plain critic (the paper's ablation, average 29.6).
* IQL: τ 0.9, β 10, rewards r − 1 (Kostrikov et al. 2021).
* TD3+BC: its locomotion settings with rewards r − 1 as for IQL (TD3+BC has no AntMaze
  setting of its own).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re
from typing import Any, cast

import numpy as np

from seemrl.repro import _report as rp
from seemrl.repro._common import Context, ExperimentUnavailable, Outcome
from seemrl.sweep import RunSpec

TITLE = "AntMaze (Table 1): Diffusion-QL with a LayerNorm critic vs TD3+BC and IQL"

TASKS = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play",
         "large-diverse")
# [paper] Table 1, normalised score (mean of the last 10 evaluations, 10 seeds), via SPEC §5.7:
# Diffusion-QL + LN per task, and the average of each method.
PAPER_DIFFQL_LN = {"umaze": 94.3, "umaze-diverse": 88.5, "medium-play": 85.6,
                   "medium-diverse": 83.9, "large-play": 65.4, "large-diverse": 67.1}
PAPER_AVERAGE = {"diffql-ln": 80.8, "td3bc": 16.4, "iql": 63.0, "diffql": 29.6}

# agent -> (preset, overrides on top of it)
AGENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "diffql-ln": ("diffql-antmaze", {}),
    "diffql": ("diffql-antmaze", {"layer_norm": False}),
    "td3bc": ("td3bc-locomotion", {"reward_bias": -1.0}),
    "iql": ("iql-antmaze", {}),
}
OBS_KEYS = ("achieved_goal", "desired_goal", "observation")
COLORS = {"diffql-ln": "C0", "td3bc": "C1", "iql": "C2", "diffql": "C3"}

_BASE: dict[str, Any] = {"agents": list(AGENTS), "tasks": list(TASKS)}
SCALES = {
    "smoke": {**_BASE, "seeds": [0], "steps": 200, "log_every": 100, "eval_every": 100,
              "eval_episodes": 2, "last_evals": 1, "seem_every": 100},
    # Sized by Diffusion-QL, whose max-Q backup samples 10 actions × 5 denoising steps per
    # transition: 3.5 steps/s for two vmapped seeds on one core here (IQL: 52), so 20k steps
    # are ≈ 1.6 h. Without LN it runs only at paper scale (the GPU script).
    "cpu": {**_BASE, "agents": ["diffql-ln", "td3bc", "iql"], "tasks": ["umaze"],
            "seeds": [0, 1], "steps": 20_000,
            "log_every": 500, "eval_every": 5_000, "eval_episodes": 10, "last_evals": 3,
            "seem_every": 5_000},
    "paper": {**_BASE, "seeds": list(range(10)), "steps": 1_000_000, "log_every": 1000,
              "eval_every": 50_000, "eval_episodes": 100, "last_evals": 10,
              "seem_every": 10_000},
}


# --------------------------------------------------------------------- data and env discovery


@dataclasses.dataclass(frozen=True)
class Source:
    """One AntMaze dataset found locally."""

    task: str
    """umaze, umaze-diverse, medium-play, ... (the file's or id's own name if unrecognised)."""
    kind: str
    """'seemrl' (an hdf5 file made by `seemrl data make antmaze-*`), 'd4rl' (another hdf5
    file) or 'minari' (a dataset's data directory)."""
    location: pathlib.Path

    def describe(self) -> str:
        if self.kind == "minari":
            return f"{self.task} (minari, {self.location.parent})"
        s = self.summary()
        made = (f"; {s['transitions']:,} transitions, {s['success_rate']:.0%} of its complete "
                f"episodes reach their goal" if {"transitions", "success_rate"} <= set(s) else "")
        return f"{self.location.name} ({self.kind}, {self.task}{made})"

    def summary(self) -> dict[str, Any]:
        """What `seemrl data make` wrote beside its file (`<file>.json`); {} for others."""
        import json

        path = self.location.with_name(self.location.name + ".json")
        if self.kind != "seemrl" or not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def behaviour_score(self) -> float | None:
        """The controller that made seemrl's data, scored as the agents are (success on the
        evaluation goal × 100, measured when it was shipped); None when not known."""
        from seemrl.antmaze.data import controller_score

        return controller_score(self.summary())


_TASK = re.compile(r"(umaze-diverse|umaze|medium-play|medium-diverse|large-play|large-diverse)")


def _task(name: str) -> str:
    m = _TASK.search(name.lower())
    return m.group(1) if m else name


def find_data(data_dir: pathlib.Path, minari_root: pathlib.Path) -> list[Source]:
    """D4RL-format `antmaze-*.hdf5` / `.h5` files directly in `data_dir`, and Minari
    datasets under `minari_root` whose id contains "antmaze" (never downloads)."""
    found = []
    if data_dir.is_dir():
        for path in sorted(data_dir.iterdir()):
            if path.is_file() and path.name.lower().startswith("antmaze-") \
                    and path.suffix.lower() in (".hdf5", ".h5"):
                kind = "seemrl" if _own_env_id(path) else "d4rl"
                found.append(Source(_task(path.stem[len("antmaze-"):]), kind, path))
    if minari_root.is_dir():
        for meta in sorted(minari_root.glob("**/data/metadata.json")):
            dataset_id = meta.parent.parent.relative_to(minari_root).as_posix()
            if "antmaze" in dataset_id.lower():
                found.append(Source(_task(dataset_id.split("/")[-1]), "minari", meta.parent))
    return found


def _own_env_id(path: pathlib.Path) -> str | None:
    """The evaluation env named by a file `seemrl data make antmaze-*` wrote, else None."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            env_id = f["metadata/env_id"][()] if "metadata/env_id" in f else b""
    except OSError:
        return None
    env_id = env_id.decode() if isinstance(env_id, bytes) else str(env_id)
    return env_id if env_id.startswith("seemrl/AntMaze-") else None


def env_available() -> bool:
    return importlib.util.find_spec("gymnasium_robotics") is not None


def check(data_dir: pathlib.Path, minari_root: pathlib.Path) -> list[Source]:
    """The sources to run (seemrl's own files, and Minari datasets when gymnasium-robotics is
    there); ExperimentUnavailable (one line) when nothing can be scored."""
    sources = find_data(data_dir, minari_root)
    # Several files of one task (another size or seed): the largest is run, listed last.
    own = sorted((s for s in sources if s.kind == "seemrl"),
                 key=lambda s: (s.location.stat().st_size, s.location.name))
    if own:  # scored in seemrl's own env; listed last so that they win a task
        minari = [s for s in sources if s.kind == "minari"] if env_available() else []
        return minari + own
    looked = (f"D4RL-format antmaze-*.hdf5 files in {data_dir} (--data-dir) and Minari "
              f"AntMaze datasets (e.g. D4RL/antmaze/umaze-v1) under {minari_root} "
              "($MINARI_DATASETS_PATH)")
    if not sources:
        raise ExperimentUnavailable(
            f"no AntMaze data: looked for {looked}; seemrl never downloads: make them with "
            "`seemrl data make antmaze-umaze`, or get them with "
            "`minari download D4RL/antmaze/umaze-v1` (pip install minari) or put D4RL files "
            "there")
    names = ", ".join(s.describe() for s in sources)
    if not env_available():
        raise ExperimentUnavailable(
            f"found AntMaze data ({names}) but no AntMaze evaluation env: Gymnasium-Robotics is "
            "not installed (pip install gymnasium-robotics); Table 1 is a table of scores, so "
            "nothing was trained")
    usable = [s for s in sources if s.kind == "minari"]
    if not usable:
        raise ExperimentUnavailable(
            f"found only D4RL-format AntMaze files ({names}); they cannot be scored in "
            "Gymnasium-Robotics' AntMaze (different maze frame and observations than D4RL's "
            "mujoco-py env): use the Minari datasets D4RL/antmaze/*-v1 instead")
    return usable


# ------------------------------------------------------------------------ env and datasets


def make_flat_env(spec_json: str, **kwargs):
    """The dataset's recorded evaluation env with its Dict observation flattened (sorted keys:
    achieved_goal, desired_goal, observation), i.e. the vector the data is converted to."""
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    from gymnasium.envs.registration import EnvSpec

    env = gym.make(EnvSpec.from_json(spec_json), **kwargs)
    keys = tuple(getattr(env.observation_space, "spaces", ()))
    if keys != OBS_KEYS:
        raise ValueError(f"AntMaze observation keys {keys}, expected {OBS_KEYS}")
    return gym.wrappers.FlattenObservation(env)


def prepare_source(source: Source, out: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Write the Minari dataset as a flat-observation .npz (once) and register its flat
    evaluation env in this process; returns (npz path, env id)."""
    import json

    import gymnasium as gym

    from seemrl.data import load_minari, save_npz

    if source.kind == "seemrl":  # trained on as it is, scored in the env it names
        return source.location, str(_own_env_id(source.location))
    meta = json.loads((source.location / "metadata.json").read_text())
    spec_json = meta.get("eval_env_spec") or meta.get("env_spec")
    if not spec_json:
        raise ExperimentUnavailable(f"{source.location}: the Minari dataset records no env spec")
    env_id = f"seemrl/FlatAntMaze-{source.task}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=cast(Any, make_flat_env), kwargs={"spec_json": spec_json})
    path = out / "data" / f"antmaze-{source.task}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset = load_minari(source.location, obs_keys=OBS_KEYS)
        dataset.metadata["env_id"] = env_id
        save_npz(path, dataset)
    return path, env_id


def run_specs(params: dict[str, Any], datasets: dict[str, tuple[pathlib.Path, str]]
              ) -> list[RunSpec]:
    """One run per (task, agent): the agent's preset, the scale's length and seeds."""
    from seemrl import algos
    from seemrl.presets import load_preset
    from seemrl.runconfig import split

    specs = []
    for task, (path, env_id) in datasets.items():
        for agent in params["agents"]:
            preset, overrides = AGENTS[agent]
            flat = {**load_preset(preset), **overrides}
            train, algo = split(flat, algos.get(flat["algo"]).Config)
            train.update(dataset=str(path), env=env_id, seeds=list(params["seeds"]),
                         **{k: params[k] for k in ("steps", "log_every", "eval_every",
                                                   "eval_episodes", "seem_every")})
            if "lr_decay_steps" in algo:        # cosine decay over the run, as in the preset
                algo["lr_decay_steps"] = params["steps"]
            if "actor_decay_steps" in algo:
                algo["actor_decay_steps"] = params["steps"]
            specs.append(RunSpec(f"{task}-{agent}", train, algo))
    return specs


# -------------------------------------------------------------------------------- results


def collect(run_dir: pathlib.Path, seeds: list[int], last: int) -> dict[str, Any]:
    """Per seed: mean of the last `last` normalised scores, divergence, last SEEM and Q."""
    from seemrl import plotting, runfolder

    records = runfolder.read_metrics(run_dir)  # [] for a run that failed early
    out: dict[str, Any] = {"score": [], "curves": [], "last_seem": [], "last_q": []}
    for seed in seeds:
        steps, scores = plotting.series(records, "eval/normalized_score", seed)
        out["curves"].append((steps.tolist(), scores.tolist()))
        out["score"].append(float(np.mean(scores[-last:])) if len(scores) else None)
        _, seem = plotting.series(records, "seem/normalized", seed)
        _, q = plotting.series(records, "train/q_mean", seed)
        out["last_seem"].append(float(seem[-1]) if len(seem) else None)
        out["last_q"].append(float(q[-1]) if len(q) else None)
    return out


def markdown(results: dict[str, dict[str, dict[str, Any]]], params: dict[str, Any],
             sources: list[Source]) -> str:
    """The section: scores per task and agent (mean ± std over seeds) beside the behaviour
    that made the data and the paper's numbers; whether each agent learnt; the paper's
    claims on them, judged as claims about 1M-step runs."""
    report = rp.Report(
        f"Score = mean of the last {params['last_evals']} evaluations "
        f"({params['eval_episodes']} episodes each, every {params['eval_every']:,} steps), "
        f"{len(params['seeds'])} seeds, {params['steps']:,} steps. Data: "
        + ", ".join(s.describe() for s in sources) + ". \"behaviour\" is the controller "
        "that made the data, scored the same way (its success rate on the evaluation goal "
        "with the data's action noise, × 100).")
    agents = params["agents"]
    behaviour = {s.task: s.behaviour_score() for s in sources}
    rows = []
    for task, per_agent in results.items():
        cells = []
        for agent in agents:
            s = [v for v in per_agent[agent]["score"] if v is not None]
            cells.append(f"{np.mean(s):.1f} ± {np.std(s):.1f}" if s else "—")
        rows.append([task, rp.fmt_as(behaviour.get(task), ".0f"), *cells,
                     PAPER_DIFFQL_LN.get(task, "—")])
    averages = {a: _average(results, a) for a in agents}
    rows.append(["average (these tasks)", "", *(rp.fmt_as(averages[a], ".1f") for a in agents),
                 rp.fmt_as(_paper_avg_over(results), ".1f")])
    rows.append(["paper average (6 tasks)", "", *(PAPER_AVERAGE.get(a, "—") for a in agents),
                 PAPER_AVERAGE["diffql-ln"]])
    report.table(["task", "behaviour", *agents, "paper: Diffusion-QL + LN"], rows)
    for task, per_agent in results.items():
        report.text(f"Learning on {task}: " + "; ".join(
            _learning(agent, per_agent[agent], behaviour.get(task)) for agent in agents) + ".")
    short = params["steps"] < PAPER_STEPS
    at = f" at {params['steps']:,} steps against the paper's {PAPER_STEPS:,}" if short else ""
    ours, paper = _average(results, "diffql-ln"), _paper_avg_over(results)
    if ours is not None and paper is not None:
        gap = ours - paper
        close = abs(gap) <= 10
        report.finding(
            f"Diffusion-QL + LN averages {ours:.1f} on these tasks against the paper's "
            f"{paper:.1f} on the same tasks: "
            + ("matches within 10 points" if close else
               f"{abs(gap):.1f} points {'lower' if gap < 0 else 'higher'}, not a match")
            + f"{at}.",
            rp.HOLDS if close else rp.NOT_AT_THIS_SCALE if short else rp.DIFFERS)
    for agent in ("td3bc", "iql", "diffql"):
        if agent in agents and "diffql-ln" in agents:
            report.finding(*_ordering(results, agent, at, short))
    return report.markdown()


PAPER_STEPS = 1_000_000
"""Table 1's runs: 1M gradient steps."""


def _learning(agent: str, res: dict[str, Any], behaviour: float | None) -> str:
    """'agent 3 → 45 (behaviour 76)': the mean score at the first evaluation and the run's
    score (mean over seeds)."""
    firsts = [(s[0], v[0]) for s, v in res["curves"] if len(v) and v[0] is not None]
    final = [v for v in res["score"] if v is not None]
    if not firsts or not final:
        return f"{agent} has no evaluations"
    step, first = int(firsts[0][0]), float(np.mean([v for _, v in firsts]))
    return (f"{agent} {first:.0f} at step {step:,} → {np.mean(final):.0f}"
            + ("" if behaviour is None else
               f" ({'above' if np.mean(final) > behaviour else 'below'} the behaviour's "
               f"{behaviour:.0f})"))


def _ordering(results, agent: str, at: str, short: bool) -> tuple[str, str]:
    """The paper's ordering: `agent` scores below Diffusion-QL + LN. Held against every seed
    of every task: settled only when the seeds' ranges do not overlap on each task."""
    mine, ours = _average(results, agent), _average(results, "diffql-ln")
    if mine is None or ours is None:
        return f"{agent}: no scores to compare.", rp.NOT_SETTLED
    apart = []
    for per in results.values():
        a = [v for v in per[agent]["score"] if v is not None]
        b = [v for v in per["diffql-ln"]["score"] if v is not None]
        apart.append(bool(a and b) and (max(a) < min(b) or min(a) > max(b)))
    text = (f"{agent}: {mine:.1f} against Diffusion-QL + LN's {ours:.1f}"
            f" ({'below' if mine < ours else 'not below'}, as the paper's ordering "
            f"{'predicts' if mine < ours else 'does not predict'}){at}")
    if not all(apart):
        return text + "; the seeds' scores overlap, so this does not decide it.", rp.NOT_SETTLED
    if mine < ours:
        return text + ".", rp.HOLDS
    return text + ".", rp.NOT_AT_THIS_SCALE if short else rp.DIFFERS


def _average(results, agent: str) -> float | None:
    means = [np.mean([v for v in per[agent]["score"] if v is not None])
             for per in results.values() if any(v is not None for v in per[agent]["score"])]
    return float(np.mean(means)) if means else None


def _paper_avg_over(results) -> float | None:
    vals = [PAPER_DIFFQL_LN[t] for t in results if t in PAPER_DIFFQL_LN]
    return float(np.mean(vals)) if vals else None


def figure(results, params: dict[str, Any], behaviour: dict[str, float | None] | None = None):
    """Score curves per task and agent, with the paper's Diffusion-QL + LN score and the
    behaviour controller's (`behaviour`, by task) as horizontal lines."""
    from seemrl import plotting

    plt = plotting.pyplot()
    tasks = list(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for agent in params["agents"]:
            curves = [(np.asarray(s), np.asarray(v)) for s, v in results[task][agent]["curves"]]
            plotting.seeds_and_mean(ax, curves, COLORS[agent], agent)
        if task in PAPER_DIFFQL_LN:
            ax.axhline(PAPER_DIFFQL_LN[task], color=COLORS["diffql-ln"], ls="--", lw=0.8,
                       label="paper: Diffusion-QL + LN")
        level = (behaviour or {}).get(task)
        if level is not None:
            ax.axhline(level, color="grey", ls=":", lw=1.0,
                       label="behaviour (the data's controller)")
        ax.set(xlabel="gradient step", ylabel="score = success rate × 100",
               ylim=(-3, 103),
               title=f"antmaze-{task}")
        ax.legend(fontsize=8)
    fig.suptitle("AntMaze: normalised score during training (seeds thin, mean bold)")
    fig.tight_layout()
    return fig


def run(ctx: Context) -> Outcome:
    from seemrl.data.minari import minari_root

    params = ctx.params
    sources = check(ctx.data_dir, minari_root())
    by_task = {s.task: s for s in sources if s.task in params["tasks"]}
    if not by_task:
        raise ExperimentUnavailable(f"AntMaze data found for {sorted({s.task for s in sources})}"
                                    f" but this scale runs {params['tasks']}")
    # seemrl's own envs register in any process that makes them; Minari's flat ones do not.
    if any(s.kind == "minari" for s in by_task.values()) and (
            ctx.engine != "local" or ctx.workers != 1):
        raise ExperimentUnavailable("antmaze evaluates Minari data in an env registered in "
                                    "this process: run it with the local engine and one worker")
    datasets = {task: prepare_source(s, ctx.out) for task, s in by_task.items()}
    runs = ctx.train(run_specs(params, datasets))
    results = {task: {agent: collect(pathlib.Path(runs[f"{task}-{agent}"].run_dir),
                                     params["seeds"], params["last_evals"])
                      for agent in params["agents"]} for task in datasets}
    ctx.save_figure(figure(results, params, {t: s.behaviour_score() for t, s in by_task.items()}),
                    "antmaze_scores.png")
    return Outcome({"tasks": results, "paper": {"diffql_ln": PAPER_DIFFQL_LN,
                                                "average": PAPER_AVERAGE}},
                   markdown(results, params, list(by_task.values())))
