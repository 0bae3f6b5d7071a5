"""The built-in demo (the README's main command): divergence and its fix in a few minutes.

Makes (once) a small `hopper-medium` dataset from the shipped behaviour policy, keeps 1 % of
its transitions (the paper's hardest setting), and trains TD3 with no BC term (bc_coef 0, the
setting where critics diverge) on several seeds, once with a plain critic and once with a
LayerNorm critic. SEEM is measured along the way. Prints a comparison table and writes a PNG
of Q, critic norm and SEEM against steps.

A seed "overshoots" (diverged_at, the fact) when its mean Q exceeds the largest discounted
return any policy could collect on this data, max|r| / (1 − γ): a value no correct critic can
reach. The online verdict's predicted_at (from SEEM on the dense early schedule) is shown
beside it: a prediction counts only when it came first.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np

from seemrl import plotting, runfolder
from seemrl.algos import td3bc
from seemrl.prepare import Prepared
from seemrl.runconfig import TrainConfig
from seemrl.train import Trainer


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    dataset: str = "hopper-medium"
    """Built-in dataset to make (once) and train on."""
    size: int = 100_000
    """Transitions to roll out for the dataset (made once, then reused)."""
    fraction: float = 0.01
    """Fraction of the dataset's transitions to train on."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (side by side)."""
    steps: int = 10_000
    """Gradient steps per run."""
    eval_episodes: int = 5
    """Evaluation episodes per seed at the end."""


def dataset_file(cfg: DemoConfig, data_dir=None, progress: bool = True) -> pathlib.Path:
    from seemrl import behaviour

    path = behaviour.resolve_builtin(cfg.dataset, data_dir, size=cfg.size, progress=progress)
    if path is None:
        raise behaviour.files.unknown(cfg.dataset, "dataset", behaviour.dataset_names())
    return path


RUNS = {"TD3 (plain critic)": False, "TD3 + LayerNorm critic": True}


def _train_config(cfg: DemoConfig, dataset: str) -> TrainConfig:
    """Both runs' training options (the same for the plain and the LayerNorm critic)."""
    log_every = min(500, cfg.steps)
    return TrainConfig(dataset=dataset, seeds=cfg.seeds, steps=cfg.steps, fraction=cfg.fraction,
                       log_every=log_every, eval_every=0, eval_episodes=cfg.eval_episodes,
                       checkpoint_every=0,
                       seem_every=log_every * (2 if cfg.steps >= 2 * log_every else 1),
                       seem_probe=128, q_bound=float("inf"))


def run_demo(cfg: DemoConfig, out: str | pathlib.Path, data_dir=None, progress: bool = True,
             console=None) -> dict[str, Any]:
    """Train both runs into out/<name>, write out/demo.png; returns the comparison rows."""
    out = pathlib.Path(out)
    _train_config(cfg, cfg.dataset)  # a bad option fails here, before the dataset is made
    path = dataset_file(cfg, data_dir, progress)
    train_cfg = _train_config(cfg, str(path))
    rows: dict[str, dict[str, Any]] = {}
    prepared: Prepared | None = None
    for label, layer_norm in RUNS.items():
        run_dir = out / ("td3-layernorm" if layer_norm else "td3")
        algo_cfg = td3bc.Config(bc_coef=0.0, layer_norm=layer_norm)
        if console is not None:
            console.print(f"[bold]{label}[/bold] → {run_dir}")
        trainer = Trainer(train_cfg, algo_cfg, run_dir, prepared=prepared)
        prepared = trainer.p  # both runs share the data, subset and normalisation
        status = trainer.run(progress=progress, console=console)
        assert trainer.q_ceiling is not None  # the demo's γ < 1
        rows[label] = summarize(run_dir, status, trainer.q_ceiling)
    assert prepared is not None and trainer.q_ceiling is not None
    title = (f"TD3 without BC (bc_coef 0) on {len(prepared.dataset)} transitions "
             f"({100 * cfg.fraction:g} %) of {cfg.dataset}: plain vs LayerNorm critic "
             "(thin: seeds, bold: mean)")
    png = plot(out, rows, trainer.q_ceiling, title)
    return {"rows": rows, "png": str(png), "dataset": str(path),
            "transitions": len(prepared.dataset)}


def fresh_folder(path: pathlib.Path) -> pathlib.Path:
    """`path`, or path-2, path-3, ... when it already holds something (never overwrite)."""
    candidate, n = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def summarize(run_dir: pathlib.Path, status: dict, ceiling: float) -> dict[str, Any]:
    records = runfolder.read_metrics(run_dir)
    seeds = [int(s) for s in status["seeds"]]
    known = runfolder.read_status(run_dir)
    final_q, max_q, seem, scores = [], [], [], []
    for seed in seeds:
        _, q = plotting.series(records, "train/q_mean", seed)
        _, s = plotting.series(records, "seem/normalized", seed)
        final_q.append(q[-1] if len(q) else np.nan)
        max_q.append(np.max(np.abs(q)) if len(q) else np.nan)
        seem.append(s[-1] if len(s) else np.nan)
        scores.append(status["seeds"][str(seed)]["final_score"])
    overshoot = sum(1 for q in max_q if not np.isfinite(q) or q > ceiling)
    events = [known.seeds[s] if known else runfolder.SeedStatus() for s in seeds]
    return {"run_dir": str(run_dir), "seeds": seeds, "final_q": final_q, "max_abs_q": max_q,
            "q_ceiling": ceiling, "overshooting_seeds": overshoot,
            "predicted_at": [e.predicted_at for e in events],
            "diverged_at": [e.diverged_at for e in events],
            "stopped_seeds": sum(e.stopped_at is not None for e in events),
            "final_seem": seem, "final_score": scores}


def plot(out: pathlib.Path, rows: dict[str, dict], ceiling: float, title: str) -> pathlib.Path:
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {False: "tab:red", True: "tab:blue"}
    panels = [("train/q_mean", "|mean Q(s, a)| on batches", True),
              ("train/critic_param_norm_0", "critic parameter norm (head 0)", False),
              ("seem/normalized", "SEEM (max Re λ(A) / ‖A‖_F)", False)]
    for label, row in rows.items():
        records = runfolder.read_metrics(row["run_dir"])
        for ax, (key, _, _) in zip(axes, panels, strict=True):
            curves = [plotting.series(records, key, s) for s in row["seeds"]]
            plotting.seeds_and_mean(ax, curves, colors[RUNS[label]], label,
                                    transform=np.abs if key == "train/q_mean" else lambda v: v)
        # The two events per seed: ▼ on its SEEM curve where the verdict fired, × on the
        # ceiling where its Q passed it.
        for seed, pred, div in zip(row["seeds"], row["predicted_at"], row["diverged_at"],
                                   strict=True):
            steps, seem = plotting.series(records, "seem/normalized", seed)
            if pred is not None and len(steps):
                axes[2].plot([pred], [np.interp(pred, steps, seem)], "v", ms=8,
                             color=colors[RUNS[label]], mec="k", mew=0.5)
            if div is not None:
                axes[0].plot([div], [ceiling], "X", ms=9, color=colors[RUNS[label]],
                             mec="k", mew=0.5)
    axes[0].axhline(ceiling, color="k", ls="--", lw=1,
                    label=f"max possible return {ceiling:.3g} (×: a seed's Q passed it)")
    axes[2].plot([], [], "v", color="k", label="predicted to diverge (the verdict)")
    axes[2].legend(fontsize=8)
    for ax, (_, panel_title, log) in zip(axes, panels, strict=True):
        ax.set_title(panel_title)
        ax.set_xlabel("gradient step")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[2].axhline(0.0, color="k", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return plotting.save(fig, out / "demo.png")


def print_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"TD3 (bc_coef 0) on {result['transitions']} transitions of "
                        f"{pathlib.Path(result['dataset']).name}")
    for col in ("critic", "seeds with Q > max possible return",
                "predicted_at → diverged_at, per seed", "max |Q| (mean over seeds)",
                "final SEEM (mean)", "final score (mean)"):
        table.add_column(col, justify="right")
    for label, row in result["rows"].items():
        with np.errstate(all="ignore"):
            table.add_row(label, f"{row['overshooting_seeds']} / {len(row['seeds'])}",
                          events(row),
                          f"{np.nanmean(row['max_abs_q']):.3g} (ceiling {row['q_ceiling']:.3g})",
                          f"{np.nanmean(row['final_seem']):+.3f}",
                          _mean(row["final_score"]))
    console.print(table)
    console.print(f"figure: {result['png']}")


def events(row: dict[str, Any]) -> str:
    """'0: 350 → 900, 1: — → —' (the prediction, then the fact; — when it did not happen)."""
    f = lambda x: "—" if x is None else f"{x:,}"
    return ", ".join(f"{s}: {f(p)} → {f(d)}" for s, p, d in
                     zip(row["seeds"], row["predicted_at"], row["diverged_at"], strict=True))


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.1f}" if values else "—"
