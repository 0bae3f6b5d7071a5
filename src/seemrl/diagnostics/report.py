"""`seemrl diagnose RUN`: what happened in a run, per seed, with figures.

Reads RUN/metrics.jsonl (one JSON object per line with `step`, `seed` and namespaced keys;
a line may lack keys), RUN/config.json (`optimizer`, `gamma`, `critic` MLP dict, ...) and
RUN/status.json (through `seemrl.runfolder`), all read tolerantly. Per seed it gives, side by
side, the prediction (`predicted_at`: the online verdict, replayed on the logged SEEM series)
and the fact (`diverged_at`: |Q| past the ceiling max|r|/(1 − γ) or non-finite), when SEEM
turned positive, the growth order and, for SGD, the predicted crash step against the actual
one; it writes `seem_q.png` and `growth.png`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from seemrl import runfolder
from seemrl.diagnostics import growth
from seemrl.diagnostics.verdict import Verdict, VerdictConfig, replay

Q_KEYS = ("train/q_mean", "seem/q_data")
NORM_KEYS = ("train/critic_param_norm_0", "seem/param_norm")
SEEM_KEY = "seem/normalized"


@dataclasses.dataclass
class SeedReport:
    """Diagnosis of one seed (steps are training steps; None = did not happen)."""

    seed: int
    predicted: Verdict
    """The online verdict (predicted_at = predicted.step)."""
    seem_positive_step: float | None
    diverged_at: float | None
    """|mean Q| passed the ceiling or went non-finite (the fact)."""
    stopped_at: float | None
    """Training of the seed stopped (Q past q_bound or non-finite)."""
    growth: growth.CrashPrediction | growth.AdamGrowth | None
    note: str = ""

    @property
    def lead(self) -> float | None:
        """Steps from the prediction to the fact (None unless both happened)."""
        if not self.predicted.fired or self.diverged_at is None or self.predicted.step is None:
            return None
        return self.diverged_at - self.predicted.step


@dataclasses.dataclass
class Report:
    """Diagnosis of a run: config facts, one SeedReport per seed, the PNGs written."""

    run_dir: Path
    algo: str
    optimizer: str
    gamma: float | None
    L: int
    seeds: list[SeedReport]
    pngs: list[Path]
    ceiling: float | None = None

    def text(self) -> str:
        """A plain-text summary: a table of predicted_at against diverged_at, then one block
        per seed."""
        out = [f"run {self.run_dir}: algo={self.algo} optimizer={self.optimizer} "
               f"gamma={self.gamma} critic L={self.L} linear layers; Q ceiling "
               f"max|r|/(1-γ) = {_fmt(self.ceiling)}",
               f"{'seed':>6} {'predicted_at':>13} {'diverged_at':>12} {'lead':>8} "
               f"{'stopped_at':>11}  verdict"]
        for s in self.seeds:
            v = s.predicted
            what = (v.describe() if v.fired else "diverged without a prediction (missed)"
                    if s.diverged_at is not None else "no divergence predicted")
            out.append(f"{s.seed:>6} {_fmt(v.step):>13} {_fmt(s.diverged_at):>12} "
                       f"{_fmt(s.lead):>8} {_fmt(s.stopped_at):>11}  {what}")
        for s in self.seeds:
            out.append(f"seed {s.seed}: SEEM above the verdict threshold from step "
                       f"{_fmt(s.seem_positive_step)}")
            g = s.growth
            if isinstance(g, growth.CrashPrediction):
                name = "ρ" if g.quantity == "norm" else "|Q|"
                out.append(f"  SGD growth: {name}^({g.exponent:g}) linear in t (L={g.L}, "
                           f"R²={g.fit.r2:.3f}); predicted crash step {_fmt(g.t_star)} ± "
                           f"{_fmt(g.t_star_std)}, actual {_fmt(_crash(s))}")
            elif isinstance(g, growth.AdamGrowth):
                out.append(f"  Adam growth: ρ ≈ {g.norm_fit.intercept:.4g} + {g.norm_fit.slope:.4g}"
                           f"·t (R²={g.norm_fit.r2:.3f}); |Q| ∝ (t − t0)^k, k = {g.k:.2f} ± "
                           f"{g.k_std:.2f} (predicted L = {g.predicted_k}; vs log t: "
                           f"{g.k_raw:.2f})")
            if s.note:
                out.append(f"  note: {s.note}")
        out += [f"wrote {p}" for p in self.pngs]
        return "\n".join(out)


def _crash(s: SeedReport) -> float | None:
    """The step Q went non-finite or past the bound (SGD's crash), else past the ceiling."""
    return s.stopped_at if s.stopped_at is not None else s.diverged_at


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.3g}"


def _find(cfg, key: str, default):
    """The first non-dict value of `key` in a nested config (drivers nest it differently:
    {"gamma": ..} or {"algo": {"gamma": ..}, "train": {"algo": "td3bc"}})."""
    if isinstance(cfg, dict):
        if key in cfg and not isinstance(cfg[key], dict):
            return cfg[key]
        for v in cfg.values():
            found = _find(v, key, None)
            if found is not None:
                return found
    return default


def read_metrics(path: Path) -> dict[int, list[dict]]:
    """metrics.jsonl -> {seed: [rows sorted by step]}; unreadable lines are skipped."""
    by_seed: dict[int, list[dict]] = {}
    if not path.exists():
        return by_seed
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            by_seed.setdefault(int(row.get("seed", 0)), []).append(row)
    return {k: sorted(v, key=lambda r: r["step"]) for k, v in sorted(by_seed.items())}


def _series(rows: list[dict], keys) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the first key in `keys` present; non-numbers become NaN."""
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            steps = np.array([p[0] for p in pts], np.float64)
            vals = np.array([np.nan if v is None else float(v) for _, v in pts], np.float64)
            return steps, vals
    return np.zeros(0), np.zeros(0)


def _first(steps: np.ndarray, mask: np.ndarray) -> float | None:
    return float(steps[np.argmax(mask)]) if mask.any() else None


def _growth(optimizer: str, L: int, q: tuple, norm: tuple, start: float | None,
            crash: float | None):
    """Growth fit over the divergent phase; (fit or None, note)."""
    if start is None:
        return None, ""
    steps, vals = norm if len(norm[0]) else q
    quantity = "norm" if len(norm[0]) else "q"
    if optimizer == "sgd":
        # Predict from the first half of the divergent phase, as an online user would.
        end = start + (crash - start) / 2 if crash is not None else np.inf
        keep = (steps >= start) & (steps <= end) & np.isfinite(vals)
        if keep.sum() < 4:
            return None, "too few finite points in the divergent phase to fit the SGD law"
        return growth.predict_crash_sgd(steps[keep], vals[keep], L, quantity), ""
    qs, qv = q
    ns, nv = norm
    common, qi, ni = np.intersect1d(qs, ns, return_indices=True)
    keep = (common >= start) & np.isfinite(qv[qi]) & np.isfinite(nv[ni])
    if keep.sum() < 4:
        return None, "too few finite points after divergence set in to fit Adam's growth"
    return growth.fit_adam_growth(common[keep], nv[ni][keep], qv[qi][keep], L), ""


def check_run(run_dir: str | Path) -> None:
    """Raises why `run_dir` cannot be diagnosed (`seemrl diagnose` asks first; `diagnose`
    itself reports an empty folder as a report without seeds).

    Raises:
      ConfigError: not a run folder (no metrics.jsonl).
      RunError: no log points yet.
    """
    from seemrl.config import ConfigError
    from seemrl.types import RunError

    path = runfolder.path(run_dir, runfolder.METRICS)
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a seemrl run folder (no metrics.jsonl)")
    if not read_metrics(path):
        raise RunError(f"{run_dir} has no log points yet (the first comes after --log-every "
                       "steps): nothing to diagnose yet")


def diagnose(run_dir: str | Path, *, out_dir: str | Path | None = None, plots: bool = True,
             config: VerdictConfig | None = None) -> Report:
    """Diagnose a run folder (see module doc); PNGs go to `out_dir` (default RUN).

    Args:
      run_dir: the run folder. out_dir: where PNGs go (default run_dir).
      plots: write PNGs. config: verdict rule (default VerdictConfig(), as in training).
    """
    run_dir = Path(run_dir)
    cfg = runfolder.read_config(run_dir) or {}
    config = VerdictConfig() if config is None else config
    # The driver records the run's Q ceiling max|r|/(1 − γ) of its training data.
    ceiling = cfg.get("q_ceiling")
    critic = found if isinstance(found := cfg.get("critic"), dict) else {}
    hidden = critic.get("hidden", _find(cfg, "critic_hidden", (256, 256)))
    use_bias = critic.get("use_bias", _find(cfg, "critic_bias", True))
    L = len(hidden) + 1
    optimizer = str(_find(cfg, "optimizer", "adam")).lower()
    gamma = _find(cfg, "gamma", None)
    algo = cfg.get("algo") if isinstance(cfg.get("algo"), str) else _find(cfg, "algo", "?")
    status = runfolder.read_status(run_dir)
    seeds = []
    metrics = read_metrics(runfolder.path(run_dir, runfolder.METRICS))
    for seed, rows in metrics.items():
        known = status.seeds.get(seed) if status else None
        seem_s, seem_v = _series(rows, (SEEM_KEY,))
        q, norm = _series(rows, Q_KEYS), _series(rows, NORM_KEYS)
        qa = np.abs(q[1])
        past = ~np.isfinite(qa) | ((qa > ceiling) if ceiling is not None else False)
        diverged = known.diverged_at if known and known.diverged_at is not None \
            else _first(q[0], past)
        stopped = known.stopped_at if known else None
        v = replay(rows, config, ceiling)
        if diverged is not None and v.fired and v.step is not None and v.step >= diverged:
            v = Verdict()  # the fact came first (seen between measurements): no prediction
        pos = _first(seem_s, seem_v > config.seem_threshold)
        crash = stopped if stopped is not None else diverged
        start = min((t for t in (pos, v.step if v.fired else None) if t is not None),
                    default=None)
        fit, note = _growth(optimizer, L, q, norm, start, crash)
        if use_bias:
            note = (note + "; " if note else "") + ("critic has biases: growth laws are exact "
                                                    "only for bias-free ReLU nets")
        seeds.append(SeedReport(seed, v, pos, diverged, stopped, fit, note))
    report = Report(run_dir, str(algo), optimizer, gamma, L, seeds, [], ceiling)
    if plots and metrics:
        out = Path(out_dir) if out_dir is not None else run_dir
        out.mkdir(parents=True, exist_ok=True)
        report.pngs.append(plot_seem_q(metrics, report, out / "seem_q.png", config))
        if any(s.growth is not None for s in seeds):
            report.pngs.append(plot_growth(report, out / "growth.png"))
    return report


def plot_seem_q(metrics: dict, report: Report, path: Path, config: VerdictConfig) -> Path:
    """SEEM and |Q| (log) against step, one thin line per seed; dashed = recorded divergence,
    triangle = verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_q) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    colors = plt.get_cmap("tab10")
    for k, (seed, rows) in enumerate(metrics.items()):
        c = colors(k % 10)
        s, v = _series(rows, (SEEM_KEY,))
        ax_s.plot(s, v, lw=1.0, color=c, label=f"seed {seed}")
        qs, qv = _series(rows, Q_KEYS)
        ax_q.plot(qs, np.abs(qv), lw=1.0, color=c, label=f"seed {seed}")
        sr = report.seeds[k]
        for ax in (ax_s, ax_q):
            if sr.diverged_at is not None:
                ax.axvline(sr.diverged_at, color=c, ls="--", lw=0.8)
        if sr.predicted.fired and sr.predicted.step is not None:
            # On the seed's own SEEM curve, so markers of seeds firing together stay apart.
            ok = np.isfinite(v)
            y = (np.interp(sr.predicted.step, s[ok], v[ok]) if ok.any()
                 else config.seem_threshold)
            ax_s.plot([sr.predicted.step], [y], marker="v", color=c, ms=8)
    ax_s.axhline(config.seem_threshold, color="grey", ls=":", lw=0.8,
                 label=f"threshold {config.seem_threshold:g}")
    ax_s.axhline(0.0, color="black", lw=0.5)
    ax_s.set_ylabel("normalised SEEM  (max Re λ / ‖A‖_F)")
    ax_s.set_title(f"{report.algo} ({report.optimizer}, γ={report.gamma}): SEEM and Q")
    ax_s.legend(fontsize=8, loc="best")
    ax_q.set_yscale("log")
    ax_q.set_ylabel("|mean Q|  (log scale)")
    if report.ceiling is not None:
        ax_q.axhline(report.ceiling, color="black", ls=":", lw=0.8,
                     label=f"ceiling max|r|/(1−γ) = {report.ceiling:.3g}")
        ax_q.legend(fontsize=8, loc="best")
    ax_q.set_xlabel("training step   (▼: predicted to diverge; dashed: Q passed the ceiling)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_growth(report: Report, path: Path) -> Path:
    """The growth-law fits against the data: SGD ρ^{−(2L−2)} line to the crash; Adam ρ linear
    in t and |Q| against t − t0 in log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = [s for s in report.seeds if s.growth is not None]
    sgd = report.optimizer == "sgd"
    fig, axes = plt.subplots(1, 1 if sgd else 2, figsize=(7 if sgd else 12, 4.5), squeeze=False)
    colors = plt.get_cmap("tab10")
    for k, s in enumerate(fits):
        c, g = colors(k % 10), s.growth
        if isinstance(g, growth.CrashPrediction):
            ax = axes[0, 0]
            ax.plot(g.steps, g.transformed, "o", ms=3, color=c, label=f"seed {s.seed} data")
            t = np.linspace(g.steps.min(), g.t_star if np.isfinite(g.t_star) else g.steps.max())
            ax.plot(t, g.fit(t), "-", lw=1, color=c,
                    label=f"fit: crash {_fmt(g.t_star)} ± {_fmt(g.t_star_std)}")
            if _crash(s) is not None:
                ax.axvline(_crash(s), color=c, ls="--", lw=0.8,
                           label=f"actual crash {_fmt(_crash(s))}")
            ax.set_ylabel(f"{'ρ' if g.quantity == 'norm' else '|Q|'}^({g.exponent:g})")
            ax.set_xlabel("training step")
            ax.set_title(f"SGD growth (L={g.L}): linear fall to the crash step")
        else:
            assert g is not None  # only the seeds with a fit are drawn
            ax_n, ax_q = axes[0]
            ax_n.plot(g.steps, g.norms, "o", ms=3, color=c, label=f"seed {s.seed} data")
            ax_n.plot(g.steps, g.norm_fit(g.steps), "-", lw=1, color=c,
                      label=f"linear fit, R²={g.norm_fit.r2:.3f}")
            x = g.steps - g.t0
            ax_q.loglog(x, g.q, "o", ms=3, color=c, label=f"seed {s.seed} data")
            ok = x > 0
            ax_q.loglog(x[ok], np.exp(g.k_intercept) * x[ok] ** g.k, "-", lw=1, color=c,
                        label=f"slope k={g.k:.2f} (L={g.predicted_k})")
            ax_n.set(xlabel="training step", ylabel="critic parameter norm ρ",
                     title="Adam: ρ grows linearly")
            ax_q.set(xlabel="step − t0 (t0: where the ρ line is 0)", ylabel="|mean Q|",
                     title="Adam: |Q| ∝ (t − t0)^k, predicted k = L")
    for ax in axes.ravel():
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
