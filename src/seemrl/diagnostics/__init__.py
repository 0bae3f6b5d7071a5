"""Divergence diagnostics: empirical NTK, SEEM, growth-order theory, verdict, run reports.

`from seemrl.diagnostics import seem` is the entry point for any pure JAX critic
q(params, obs, act) -> (N,); `seem_mlp` / `seem_heads` use the fast path for seemrl MLPs.
The PyTorch adapter lives in `seemrl.diagnostics.torch` (imports torch lazily).
"""

from seemrl.diagnostics.ntk import gram, mlp_gram, per_sample_grads
from seemrl.diagnostics.seem import (
    SeemResult,
    max_real_eig,
    mlp_seem_matrix,
    seem,
    seem_heads,
    seem_matrix,
    seem_mlp,
)

__all__ = [
    "SeemResult", "gram", "max_real_eig", "mlp_gram", "mlp_seem_matrix", "per_sample_grads",
    "seem", "seem_heads", "seem_matrix", "seem_mlp",
]
