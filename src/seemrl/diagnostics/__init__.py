"""Divergence diagnostics: empirical NTK, SEEM, growth-order theory, verdict, run reports.

`from seemrl.diagnostics import seem` is the entry point for any pure JAX critic
q(params, obs, act) -> (N,); `seem_mlp` / `seem_heads` use the fast exact NTK path for
seemrl MLP critics; `probe_metrics` / `make_probe_fn` are the in-training measurement.
The PyTorch adapter is `seemrl.diagnostics.torch.seem_torch` (imports torch lazily), and
`seemrl.diagnostics.report.diagnose` reads a run folder (imports matplotlib lazily).
`SeemMonitor` brings the driver's SEEM schedule and verdict to a training loop you own
(JAX or PyTorch critic).
"""

from seemrl.diagnostics.growth import (
    fit_adam_growth,
    homogeneity_check,
    num_layers,
    predict_crash_sgd,
)
from seemrl.diagnostics.monitor import MonitorResult, SeemMonitor
from seemrl.diagnostics.ntk import gram, mlp_gram, per_sample_grads, td_grams
from seemrl.diagnostics.probe import init_memory, make_probe_fn, probe_metrics
from seemrl.diagnostics.report import diagnose
from seemrl.diagnostics.schedule import SeemSchedule
from seemrl.diagnostics.seem import (
    SeemResult,
    max_real_eig,
    mlp_seem_matrix,
    seem,
    seem_heads,
    seem_matrix,
    seem_mlp,
)
from seemrl.diagnostics.verdict import OnlineVerdict, Verdict, VerdictConfig, replay

__all__ = [
    "MonitorResult", "OnlineVerdict", "SeemMonitor", "SeemResult", "SeemSchedule", "Verdict",
    "VerdictConfig", "diagnose", "fit_adam_growth", "gram", "homogeneity_check", "init_memory",
    "make_probe_fn", "max_real_eig", "mlp_gram", "mlp_seem_matrix", "num_layers",
    "per_sample_grads", "predict_crash_sgd", "probe_metrics", "replay", "seem", "seem_heads",
    "seem_matrix", "seem_mlp", "td_grams",
]
