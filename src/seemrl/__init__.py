"""seemrl: offline RL that stops diverging.

SEEM divergence diagnostics, LayerNorm critics and the paper's experiments, in JAX.
"""

__version__ = "0.1.0"
