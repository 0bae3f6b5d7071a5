"""Toy maze (SPEC §5.4, §3): full-batch SGD Q-learning on one trajectory with all rewards 0
blows up in finite time, 1/Q falls linearly to the crash, and the crash step is predictable.

Setting (the SEEM authors' toy-maze script, yueyang130/SEEM toy-maze/toy_maze.py):

* Data: one 2-D trajectory of `steps` transitions, s_0 ~ U[0, 1]², actions drawn uniformly from
  the 8 unit vectors a_k = (cos kπ/4, sin kπ/4), s' = s + 0.1·a + U[0, 0.02]², r = 0. The true
  Q is 0 everywhere. The trajectory is fixed by `data_seed`; the seeds vary the network's
  initialisation (as in the authors' script, which fixed the data and varied the torch seed).
* Q: a 2-layer ReLU MLP (Linear(4 → 64) → ReLU → Linear(64 → 1), biases, PyTorch's default
  init) on the concatenation (s, a) with the action as its 2-D unit vector, as the authors did
  (a one-hot action would give the same network a different input geometry; we keep theirs).
  L = 2 linear layers, so the growth theory predicts |Q|^{−(2L−2)/L} = 1/|Q| linear in t.
* Update: full batch, y_i = γ·max_k Q(s'_i, a_k) recomputed from the current network each
  iteration (no target network) and held fixed within the step, loss mean_i (Q(s_i, a_i) −
  y_i)² (PyTorch's MSELoss), plain SGD, γ 0.99, lr 2e-2, 400 iterations. One jitted lax.scan
  over iterations, seeds vmapped.
* Control (not in the paper): the same run with Linear → LayerNorm → ReLU (SPEC §4).

Crash prediction: for each seed, the line is fitted to 1/|Q| over the iterations where 1/|Q|
first falls through a window (e.g. from 0.5 to 0.25, i.e. |Q| from 2 to 4) with
`growth.predict_crash_sgd(L=2, quantity="q")`, using only data up to the window's end; the
actual crash is the first iteration whose mean Q is non-finite or above `crash_limit`.
SEEM (diagnostics/seem.py) is measured every `seem_every` iterations on all transitions with
X* = (s', argmax_k Q(s', a_k)), the action the max backup uses; "self-exciting" means above
the online verdict's calibrated threshold (`VerdictConfig.seem_threshold`), which was
fixed on other runs, not on this one.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import growth
from seemrl.diagnostics.seem import mlp_seem_matrix, seem_from_matrix
from seemrl.diagnostics.verdict import VerdictConfig
from seemrl.networks import MLPConfig, QNetwork
from seemrl.repro import _report as rp
from seemrl.repro._common import Context, Outcome

TITLE = "Toy maze: SGD Q-learning with zero rewards crashes in finite time, 1/Q linear to it"

# [code] The authors' toy run (SPEC §3): 1/Q falls linearly from 0.30 at iteration 200 to 0 at
# about iteration 303 (yueyang130/SEEM, toy-maze/Q-value.png).
PAPER_INV_Q_AT_200 = 0.30
PAPER_CRASH_ITERATION = 303
SEEM_THRESHOLD = VerdictConfig().seem_threshold

_BASE: dict[str, Any] = {
    "steps": 64,            # transitions in the trajectory
    "width": 64,            # hidden width of the 2-layer MLP
    "gamma": 0.99,
    "lr": 0.02,
    "iterations": 400,
    "data_seed": 0,         # the one trajectory
    # Fit windows in 1/|Q|: the line is fitted while 1/|Q| falls from the first value to the
    # second. The first is the early one the figure shows; the second starts where the paper's
    # plot starts (1/Q = 0.30).
    "fit_windows": [[0.5, 0.25], [0.3, 0.1]],
    "crash_limit": 1e30,    # |mean Q| above this counts as crashed (float32 overflows at 3e38)
    "critics": ["none", "layernorm"],
}
SCALES = {
    "smoke": {**_BASE, "seeds": 8, "seem_every": 50},
    "cpu": {**_BASE, "seeds": 64, "seem_every": 10},
    "paper": {**_BASE, "seeds": 256, "seem_every": 10},
}
LABELS = {"none": "plain MLP (paper)", "layernorm": "LayerNorm MLP (control)"}
COLORS = {"none": "C3", "layernorm": "C0"}
SHOW_SEEDS = 6  # crashing seeds drawn in the 1/Q panel (all are in the scatter and tables)


# ----------------------------------------------------------------------------------- data


def action_set() -> jnp.ndarray:
    """The 8 unit-vector actions (cos kπ/4, sin kπ/4): (8, 2)."""
    angles = jnp.arange(8) * jnp.pi / 4
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)


def make_trajectory(key: jax.Array, steps: int) -> tuple[jnp.ndarray, ...]:
    """One toy-maze trajectory: (obs (T, 2), act (T, 2), next_obs (T, 2)), rewards all 0."""
    k_start, k_act, k_noise = jax.random.split(key, 3)
    start = jax.random.uniform(k_start, (2,))
    act = action_set()[jax.random.randint(k_act, (steps,), 0, 8)]
    moves = 0.1 * act + 0.02 * jax.random.uniform(k_noise, (steps, 2))
    states = start + jnp.concatenate([jnp.zeros((1, 2)), jnp.cumsum(moves, axis=0)])
    return states[:-1], act, states[1:]


# ------------------------------------------------------------------------------- training


def critic_config(width: int, norm: str = "none") -> MLPConfig:
    return MLPConfig(hidden=(width,), activation="relu", norm=norm, placement="before")


def _greedy(net: QNetwork, params, next_obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """max_k Q(s', a_k) (T,) and the argmax action (T, 2)."""
    actions = action_set()
    t = next_obs.shape[0]
    q_all = net.apply(params, jnp.repeat(next_obs, 8, axis=0), jnp.tile(actions, (t, 1)))
    q_all = q_all.reshape(t, 8)  # type: ignore[union-attr]  # flax apply: an array
    return q_all.max(axis=1), actions[q_all.argmax(axis=1)]


def train(keys: jax.Array, data: tuple[jnp.ndarray, ...], params: dict[str, Any],
          norm: str = "none") -> dict:
    """Full-batch SGD Q-learning for every seed key, vmapped.

    Args:
      keys: (S,) init keys. data: (obs, act, next_obs), each (T, 2).
      params: the scale's parameters (width, gamma, lr, iterations). norm: none | layernorm.

    Returns:
      dict with leading axes (S, I), values *before* the update of that iteration:
      "q_mean" (S, I) and "params" (the network's parameters, leaves (S, I, ...)).
    """
    obs, act, next_obs = data
    net = QNetwork(critic_config(params["width"], norm))
    gamma, lr = params["gamma"], params["lr"]

    def loss(p, y):
        return jnp.mean((net.apply(p, obs, act) - y) ** 2)

    def step(p, _):
        y = gamma * jax.lax.stop_gradient(_greedy(net, p, next_obs)[0])
        out = {"q_mean": jnp.mean(net.apply(p, obs, act)), "params": p}
        return jax.tree.map(lambda x, g: x - lr * g, p, jax.grad(loss)(p, y)), out

    def one_seed(key):
        return jax.lax.scan(step, net.init(key, obs, act), None, length=params["iterations"])[1]

    return jax.jit(jax.vmap(one_seed))(keys)


def seem_series(params_hist, data, params: dict[str, Any], norm: str = "none"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised SEEM every `seem_every` iterations for every seed (NaN once the network is
    not finite). Returns (iterations (K,), seem (S, K))."""
    obs, act, next_obs = data
    config = critic_config(params["width"], norm)
    net = QNetwork(config)
    iters = np.arange(0, params["iterations"], params["seem_every"])

    @jax.jit
    def matrices(p):
        def one(pp):
            next_act = _greedy(net, pp, next_obs)[1]
            return mlp_seem_matrix(config, pp, obs, act, next_obs, next_act, params["gamma"])

        return jax.vmap(jax.vmap(one))(p)

    mats = np.asarray(matrices(jax.tree.map(lambda x: x[:, iters], params_hist)), np.float64)
    out = np.full(mats.shape[:2], np.nan)
    for i, j in np.ndindex(*out.shape):
        if np.all(np.isfinite(mats[i, j])):
            out[i, j] = seem_from_matrix(mats[i, j]).normalized
    return iters, out


# ------------------------------------------------------------------------------- analysis


def crash_iteration(q: np.ndarray, limit: float) -> int | None:
    """First iteration whose mean Q is non-finite or above `limit` (None: no crash)."""
    c = growth.crash_step(np.arange(len(q)), q, limit)
    return None if c is None else int(c)


def predict_from_window(q: np.ndarray, window: tuple[float, float], L: int = 2) -> dict:
    """Crash predicted from the iterations where 1/|Q| first falls from window[0] to window[1].

    Only iterations before 1/|Q| first reaches window[1] are used, so the prediction exists at
    that iteration (`made_at`). NaNs when the window is not crossed with ≥ 3 points.
    """
    q = np.asarray(q, np.float64)
    with np.errstate(all="ignore"):
        inv = 1.0 / np.abs(q)
    nan = float("nan")
    none = {"start": None, "made_at": None, "t_star": nan, "t_star_std": nan, "slope": nan,
            "intercept": nan, "r2": nan}
    entered = np.nonzero(np.isfinite(inv) & (inv <= window[0]))[0]
    if not len(entered):
        return none
    start = int(entered[0])
    left = np.nonzero(~np.isfinite(inv[start:]) | (inv[start:] <= window[1]))[0]
    if not len(left) or left[0] < 3:
        return none
    made_at = start + int(left[0])
    pred = growth.predict_crash_sgd(np.arange(len(q)), q, L, "q", window=(start, made_at - 1))
    return {"start": start, "made_at": made_at, "t_star": pred.t_star,
            "t_star_std": pred.t_star_std, "slope": pred.fit.slope,
            "intercept": pred.fit.intercept, "r2": pred.fit.r2}


def analyse(q: np.ndarray, seem_iters: np.ndarray, seem_vals: np.ndarray,
            params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed: crash, the prediction of each fit window, and SEEM before the crash."""
    rows = []
    for i in range(q.shape[0]):
        crash = crash_iteration(q[i], params["crash_limit"])
        preds = []
        for window in params["fit_windows"]:
            p = predict_from_window(q[i], tuple(window))
            crashed = crash is not None and p["made_at"] is not None
            p["error"] = p["t_star"] - crash if crashed else float("nan")
            p["lead"] = crash - p["made_at"] if crashed else float("nan")
            preds.append(p)
        before = seem_iters < (crash if crash is not None else params["iterations"])
        s, at = seem_vals[i][before], seem_iters[before]
        finite = np.isfinite(s)
        # Onset: the measurement from which SEEM stays above the threshold to the crash / end.
        above = s > SEEM_THRESHOLD
        onset = None
        if finite.any() and above[finite][-1]:
            below = np.nonzero(~above[: np.nonzero(finite)[0][-1] + 1])[0]
            onset = int(at[0 if not len(below) else below[-1] + 1])
        rows.append({
            "seed": i, "crash": crash,
            "final_abs_q": float(abs(q[i][-1])) if np.isfinite(q[i][-1]) else None,
            "max_abs_q_before_crash": float(np.nanmax(np.abs(np.where(
                np.isfinite(q[i]) & (np.abs(q[i]) < params["crash_limit"]), q[i], np.nan)))),
            "predictions": preds,
            "seem_init": float(s[0]) if len(s) and finite[0] else float("nan"),
            "seem_last": float(s[finite][-1]) if finite.any() else float("nan"),
            "seem_max": float(s[finite].max()) if finite.any() else float("nan"),
            "seem_onset": onset,
        })
    return rows


def summarise(rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    crashed = [r for r in rows if r["crash"] is not None]
    calm = [r for r in rows if r["crash"] is None]
    out: dict[str, Any] = {
        "seeds": len(rows), "crashed": len(crashed),
        "crash_median": _median([r["crash"] for r in crashed]),
        "crash_min": min((r["crash"] for r in crashed), default=None),
        "crash_max": max((r["crash"] for r in crashed), default=None),
        "final_abs_q_median_no_crash": _median([r["final_abs_q"] for r in calm]),
        "max_abs_q_median_no_crash": _median([r["max_abs_q_before_crash"] for r in calm]),
        "seem_max_median": _median([r["seem_max"] for r in rows]),
        "seem_positive_before_crash": sum(r["seem_last"] > 0 for r in crashed),
        "seem_positive_no_crash": sum(r["seem_max"] > 0 for r in calm),
        "seem_above_threshold_before_crash": sum(r["seem_last"] > SEEM_THRESHOLD
                                                 for r in crashed),
        "seem_onset_lead_median": _median([r["crash"] - r["seem_onset"] for r in crashed
                                           if r["seem_onset"] is not None]),
        "seem_ever_above_threshold_no_crash": sum(r["seem_max"] > SEEM_THRESHOLD for r in calm),
        "windows": []}
    for w, window in enumerate(params["fit_windows"]):
        ok = [r["predictions"][w] for r in crashed if np.isfinite(r["predictions"][w]["error"])]
        errors = np.array([p["error"] for p in ok])
        leads = np.array([p["lead"] for p in ok])
        out["windows"].append({
            "window_inv_q": list(window), "predicted": len(ok),
            "median_abs_error": _median(np.abs(errors)), "mean_error": _mean(errors),
            "median_lead": _median(leads),
            "median_abs_error_over_lead": _median(np.abs(errors) / np.maximum(leads, 1)),
            "median_r2": _median([p["r2"] for p in ok]),
            "median_slope": _median([p["slope"] for p in ok]),
            # Seeds that never crashed although their line reached 0 within the run.
            "false_alarms": sum(r["predictions"][w]["t_star"] < params["iterations"]
                                for r in calm)})
    return out


def _median(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.median(x)) if x.size else float("nan")


def _mean(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.mean(x)) if x.size else float("nan")


# -------------------------------------------------------------------------------- figures


def _nan_stat(stat, values: np.ndarray) -> np.ndarray:
    """stat over seeds (axis 0) where at least half the seeds are finite, else NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alive = np.isfinite(values).mean(axis=0) >= 0.5
        return np.where(alive, stat(values, axis=0), np.nan)


def figure(runs: dict[str, dict[str, Any]], params: dict[str, Any]):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from seemrl import plotting

    plt = plotting.pyplot()
    fig, ((ax_inv, ax_scatter), (ax_q, ax_seem)) = plt.subplots(2, 2, figsize=(13, 9.5))
    plain = runs["none"]
    q, rows = plain["q"], plain["rows"]
    iters = np.arange(q.shape[1])
    crashed = [r for r in rows if r["crash"] is not None]
    window = params["fit_windows"][0]

    # (a) 1/Q of a few crashing seeds with their early-window line.
    shown = [r for r in crashed if np.isfinite(r["predictions"][0]["t_star"])][:SHOW_SEEDS]
    for k, r in enumerate(shown):
        c, p = plt.get_cmap("tab10")(k), r["predictions"][0]
        with np.errstate(all="ignore"):
            inv = np.where(q[r["seed"]] > 0, 1.0 / q[r["seed"]], np.nan)
        ax_inv.plot(iters, inv, color=c, lw=1.0, alpha=0.8)
        xs = np.linspace(p["start"], p["t_star"], 50)
        ax_inv.plot(xs, p["intercept"] + p["slope"] * xs, color=c, lw=1.6, ls="--")
        ax_inv.axvspan(p["start"], p["made_at"], color=c, alpha=0.06)
        ax_inv.plot([p["t_star"]], [0], marker="x", color=c, ms=9, mew=2, clip_on=False)
        ax_inv.plot([r["crash"]], [0], marker="o", color=c, ms=7, mfc="none", mew=1.5,
                    clip_on=False)
    for level in window:
        ax_inv.axhline(level, color="grey", lw=0.6, ls=":")
    ax_inv.set(ylim=(0, 0.8), xlim=(0, params["iterations"]), xlabel="SGD iteration",
               ylabel="1 / (mean Q on the data)   (1/Q)")
    ax_inv.set_title(f"Plain MLP: 1/Q falls linearly to the crash ({len(shown)} of "
                     f"{len(crashed)} crashing seeds)", fontsize=11)
    ax_inv.legend(handles=[
        Line2D([], [], color="k", lw=1.0, label="1/Q of one seed (one colour per seed)"),
        Line2D([], [], color="k", lw=1.6, ls="--",
               label=f"line fitted while 1/Q fell {window[0]} → {window[1]} (dotted levels)"),
        Patch(color="k", alpha=0.12, label="fit window; the prediction is made at its end"),
        Line2D([], [], color="k", marker="x", ls="", mew=2, label="predicted crash"),
        Line2D([], [], color="k", marker="o", mfc="none", ls="",
               label="actual crash (mean Q non-finite)")], fontsize=8, loc="upper right")

    # (b) predicted against actual crash, every crashing seed, each window.
    top = params["iterations"]
    ax_scatter.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="predicted = actual")
    for w, win in enumerate(params["fit_windows"]):
        pts = np.array([(r["crash"], r["predictions"][w]["t_star"]) for r in crashed
                        if np.isfinite(r["predictions"][w]["t_star"])]).reshape(-1, 2)
        ax_scatter.scatter(pts[:, 0], pts[:, 1], s=14, alpha=0.75, color=f"C{w}",
                           label=f"line fitted while 1/Q fell {win[0]} → {win[1]} "
                                 f"({len(pts)} seeds)")
    ax_scatter.set(xlim=(0, top), ylim=(0, top), xlabel="actual crash (SGD iteration)",
                   ylabel="predicted crash (SGD iteration)")
    ax_scatter.set_title("Plain MLP: predicted vs actual crash, every crashing seed",
                         fontsize=11)
    ax_scatter.legend(fontsize=8, loc="upper left")

    # (c) |Q| on a log axis and (d) SEEM, both critics: every seed thin first, then the bold
    # aggregates on top so that no critic's seeds hide another's aggregate.
    absq = {}
    for norm, run in runs.items():
        with np.errstate(all="ignore"):
            absq[norm] = np.where(np.isfinite(run["q"]) &
                                  (np.abs(run["q"]) < params["crash_limit"]),
                                  np.abs(run["q"]), np.nan)
        for i in range(run["q"].shape[0]):
            ax_q.plot(iters, absq[norm][i], color=COLORS[norm], lw=0.6, alpha=0.3)
            ax_seem.plot(run["seem_iters"], run["seem"][i], color=COLORS[norm], lw=0.6,
                         alpha=0.3)
    for norm, run in runs.items():
        n, n_crash = run["q"].shape[0], sum(r["crash"] is not None for r in run["rows"])
        ax_q.plot(iters, _nan_stat(np.nanmedian, absq[norm]), color=COLORS[norm], lw=2.4,
                  label=f"{LABELS[norm]}: median of {n} seeds ({n_crash} crash)")
        ax_seem.plot(run["seem_iters"], _nan_stat(np.nanmean, run["seem"]),
                     color=COLORS[norm], lw=2.4, label=f"{LABELS[norm]}: mean of {n} seeds")
    ax_q.set_yscale("log")
    ax_q.set(xlim=(0, params["iterations"]), xlabel="SGD iteration",
             ylabel="|mean Q| on the data (log scale; the true Q is 0)")
    ax_q.set_title("Q explodes although every reward is 0; LayerNorm keeps it bounded\n"
                   "(thin: seeds, until they crash; bold: while half the seeds are finite)",
                   fontsize=10)
    ax_q.legend(fontsize=8, loc="upper left")
    ax_seem.axhline(0, color="grey", lw=0.8)
    ax_seem.axhline(SEEM_THRESHOLD, color="k", lw=0.8, ls="--",
                    label=f"self-excitation threshold {SEEM_THRESHOLD} (online verdict's)")
    ax_seem.set(xlim=(0, params["iterations"]), xlabel="SGD iteration",
                ylabel="SEEM = max Re λ(A) / ‖A‖_F")
    ax_seem.set_title(f"SEEM every {params['seem_every']} iterations, X* = (s', argmax_a Q)",
                      fontsize=11)
    ax_seem.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Toy maze: {params['steps']}-step trajectory, rewards 0, 2-layer ReLU MLP "
                 f"width {params['width']}, full-batch SGD lr {params['lr']}, γ {params['gamma']}"
                 f", {params['seeds']} init seeds", fontsize=12)
    fig.tight_layout()
    return fig


def trajectory_figure(data):
    from seemrl import plotting

    plt = plotting.pyplot()
    obs, act, next_obs = (np.asarray(x) for x in data)
    fig, ax = plt.subplots(figsize=(5, 5))
    path = np.concatenate([obs, next_obs[-1:]])
    ax.plot(path[:, 0], path[:, 1], color="grey", lw=0.8, zorder=1, label="trajectory")
    ax.quiver(obs[:, 0], obs[:, 1], act[:, 0], act[:, 1], color="C2", angles="xy",
              scale_units="xy", scale=20, width=0.004, zorder=2,
              label="action a (unit vector, drawn 1/20 long)")
    ax.scatter(*obs[0], color="C1", zorder=3, label="s₀")
    ax.set_aspect("equal")
    ax.set(xlabel="x (maze units)", ylabel="y (maze units)")
    ax.set_title(f"Toy-maze data: one {len(obs)}-step trajectory, r = 0", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------- markdown


def markdown(runs: dict[str, dict[str, Any]], params: dict[str, Any]) -> str:
    s = runs["none"]["summary"]
    report = rp.Report(
        "Setting: the authors' toy-maze script (action as its 2-D unit vector, PyTorch "
        "default init, MSELoss, targets from the current network); one fixed trajectory "
        f"(data seed {params['data_seed']}, {params['steps']} transitions), init seeds "
        "vary. The LayerNorm critic (Linear → LN → ReLU) is a control the paper does not "
        "run on the toy.")
    report.table(
        ["critic", "seeds", "crashed", "median crash iteration", "median max \\|Q\\| (seeds "
         "without crash)", "median max SEEM", "crashing seeds with SEEM > "
         f"{SEEM_THRESHOLD} before the crash", f"other seeds ever above {SEEM_THRESHOLD}"],
        [[LABELS[norm], t["seeds"], t["crashed"], _fmt(t["crash_median"], ".0f"),
          _fmt(t["max_abs_q_median_no_crash"], ".3g"), _fmt(t["seem_max_median"], ".3f"),
          f"{t['seem_above_threshold_before_crash']} of {t['crashed']}",
          f"{t['seem_ever_above_threshold_no_crash']} of {t['seeds'] - t['crashed']}"]
         for norm, t in ((norm, run["summary"]) for norm, run in runs.items())])
    report.table(
        ["line fitted while 1/Q fell", "seeds predicted", "median r²", "median lead "
         "(iterations before the crash)", "median \\|error\\| (iterations)", "mean error",
         "median \\|error\\| / lead", "false alarms"],
        [[f"{w['window_inv_q'][0]} → {w['window_inv_q'][1]}", w["predicted"],
          _fmt(w["median_r2"], ".4f"), _fmt(w["median_lead"], ".0f"),
          _fmt(w["median_abs_error"]), _fmt(w["mean_error"], "+.1f"),
          f"{_fmt(100 * w['median_abs_error_over_lead'], '.0f')} %", w["false_alarms"]]
         for w in s["windows"]],
        caption="Crash prediction for the plain MLP (growth theory, L = 2: 1/Q linear):")
    report.text("Error = predicted − actual crash iteration; lead = actual crash − the "
                "iteration the prediction was made at (the end of the fit window); a false "
                f"alarm is a seed that did not crash in {params['iterations']} iterations "
                "although its line reached 0 before then.")
    findings(report, runs, params)
    report.details(
        "Per seed, plain MLP",
        ["seed", "crash", "predicted (first window) ± 1σ", "error", "lead", "predicted (second "
         "window)", "SEEM at init", "SEEM before crash", f"SEEM > {SEEM_THRESHOLD} from"],
        [[r["seed"], r["crash"] if r["crash"] is not None else "none",
          f"{_fmt(p0['t_star'])} ± {_fmt(p0['t_star_std'])}", _fmt(p0["error"], "+.1f"),
          _fmt(p0["lead"], ".0f"), _fmt(p1["t_star"]), _fmt(r["seem_init"], ".3f"),
          _fmt(r["seem_last"], ".3f"), rp.fmt_as(r["seem_onset"], "d")]
         for r, p0, p1 in ((r, r["predictions"][0], r["predictions"][-1])
                           for r in runs["none"]["rows"])])
    return report.markdown()


def findings(report: rp.Report, runs: dict[str, dict[str, Any]], params: dict[str, Any]
             ) -> None:
    s = runs["none"]["summary"]
    if not s["crashed"]:
        report.finding(f"No seed of the plain MLP crashed within {params['iterations']} "
                       f"iterations, while the paper's run crashed at ≈ "
                       f"{PAPER_CRASH_ITERATION}.", rp.DIFFERS)
        return
    w0, w1 = s["windows"][0], s["windows"][-1]
    inside = s["crash_min"] <= PAPER_CRASH_ITERATION <= s["crash_max"]
    report.finding(
        f"{s['crashed']} of {s['seeds']} initialisations crash although every reward is "
        f"0 (iterations {s['crash_min']}–{s['crash_max']}, median {s['crash_median']:.0f}); "
        f"the paper's one run crashed at ≈ {PAPER_CRASH_ITERATION}, which is "
        + ("inside this range." if inside
           else "outside this range (ours crash "
           + ("earlier)." if s["crash_max"] < PAPER_CRASH_ITERATION else "later)."))
        + " The crash iteration depends on the initialisation and the data.",
        rp.HOLDS if inside else rp.DIFFERS)
    if w0["predicted"]:
        linear = w0["median_r2"] > 0.98
        report.finding(
            f"1/Q falls linearly, as in the paper: the line fitted while 1/Q fell "
            f"{w0['window_inv_q'][0]} → {w0['window_inv_q'][1]} has median r² "
            f"{w0['median_r2']:.4f}" + (" (matches)." if linear else
                                         " (below 0.98: not convincingly linear).")
            + f" Median slope {w0['median_slope']:.4f} per iteration; the paper's run fell "
            f"{PAPER_INV_Q_AT_200} over {PAPER_CRASH_ITERATION - 200} iterations "
            f"({-PAPER_INV_Q_AT_200 / (PAPER_CRASH_ITERATION - 200):.4f} per iteration).",
            rp.HOLDS if linear else rp.DIFFERS)
        bias = "early" if w0["mean_error"] < 0 else "late"
        report.finding(
            f"The crash is predictable from an early window: median |error| "
            f"{w0['median_abs_error']:.1f} iterations, made a median {w0['median_lead']:.0f} "
            f"iterations ahead ({100 * w0['median_abs_error_over_lead']:.0f} % of the lead). "
            f"The error is a bias (predicted {bias}, mean {w0['mean_error']:+.1f}): 1/Q is "
            "slightly convex until the growing direction dominates the parameters (biases and "
            "the non-growing weights make the net only approximately 2-homogeneous)."
            + (f" Fitting later (1/Q {w1['window_inv_q'][0]} → {w1['window_inv_q'][1]}, where "
               f"the paper's plot starts) the median |error| is {w1['median_abs_error']:.1f} "
               f"with a median lead of {w1['median_lead']:.0f}." if w1 is not w0
               and w1["predicted"] else ""))
    above, onset = s["seem_above_threshold_before_crash"], s["seem_onset_lead_median"]
    positive = s["seem_positive_before_crash"]
    report.finding(
        f"SEEM > 0 at the last measurement before the crash in {positive} of {s['crashed']} "
        "crashing seeds" + (", as the paper claims" if positive == s["crashed"] else
                            ", so the paper's claim holds only for those")
        + f"; above the verdict threshold {SEEM_THRESHOLD} in {above} of {s['crashed']}"
        + (f", from a median {onset:.0f} iterations before the crash." if np.isfinite(onset)
           else "."), rp.HOLDS if positive == s["crashed"] else rp.DIFFERS)
    if "layernorm" in runs:
        t = runs["layernorm"]["summary"]
        calm = t["seeds"] - t["crashed"]
        fa = t["windows"][0]["false_alarms"]
        report.finding(
            f"Control: with LayerNorm {t['crashed']} of {t['seeds']} seeds crash; |Q| stays "
            f"bounded (median max {_fmt(t['max_abs_q_median_no_crash'], '.3g')}, still "
            f"above the true 0: the max backup over-estimates) and SEEM stays below "
            f"{SEEM_THRESHOLD} in {calm - t['seem_ever_above_threshold_no_crash']} of {calm} "
            f"seeds (median max {_fmt(t['seem_max_median'], '.3f')}), consistent with SPEC §4; "
            f"it is still > 0 somewhere in {t['seem_positive_no_crash']} of {calm}, so it is "
            "the threshold, not the sign, that separates the two critics here. "
            f"The 1/Q extrapolation alone would have raised {fa} false alarms here: 1/Q also "
            "falls while Q rises to its bounded level, so SEEM, not the Q trend, tells the "
            "two apart.")


def _fmt(x, spec: str = ".1f") -> str:
    return rp.fmt_as(x, spec)


# -------------------------------------------------------------------------------------- run


def run(ctx: Context) -> Outcome:
    params = ctx.params
    data = make_trajectory(jax.random.PRNGKey(params["data_seed"]), params["steps"])
    keys = jax.random.split(jax.random.PRNGKey(1), params["seeds"])
    runs: dict[str, dict[str, Any]] = {}
    for norm in params["critics"]:
        ctx.log(f"toy maze ({LABELS[norm]}): {params['seeds']} seeds × "
                f"{params['iterations']} SGD iterations")
        hist = train(keys, data, params, norm)
        q = np.asarray(hist["q_mean"], np.float64)
        seem_iters, seem_vals = seem_series(hist["params"], data, params, norm)
        rows = analyse(q, seem_iters, seem_vals, params)
        runs[norm] = {"q": q, "seem_iters": seem_iters, "seem": seem_vals, "rows": rows,
                      "summary": summarise(rows, params)}

    ctx.save_figure(figure(runs, params), "toy_maze.png")
    ctx.save_figure(trajectory_figure(data), "toy_maze_data.png")
    results = {"paper": {"inv_q_at_200": PAPER_INV_Q_AT_200,
                         "crash_iteration": PAPER_CRASH_ITERATION},
               "seem_threshold": SEEM_THRESHOLD,
               "seem_iterations": runs["none"]["seem_iters"].tolist(),
               **{norm: {"summary": run["summary"], "per_seed": run["rows"],
                         "q_mean": run["q"].tolist(), "seem": run["seem"].tolist()}
                  for norm, run in runs.items()}}
    return Outcome(_json_safe(results), markdown(runs, params))


def _json_safe(obj):
    """NaN/inf -> None everywhere (results.json stays strict JSON); numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj
