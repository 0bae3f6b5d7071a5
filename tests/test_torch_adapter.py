"""The PyTorch adapter gives the JAX SEEM for the same weights (copied across)."""

import jax
import numpy as np
import pytest

from seemrl.diagnostics import seem
from seemrl.networks import MLPConfig, QNetwork

torch = pytest.importorskip("torch")


def _torch_copy(config: MLPConfig, params):
    """An nn.Module computing QNetwork(config) with the same weights (flax (in, out) kernels
    -> torch (out, in) weights; LayerNorm eps 1e-6 as in flax)."""
    p = params["params"]["mlp"]
    layers = []
    for i, _ in enumerate(config.hidden):
        lin = torch.nn.Linear(*p[f"dense_{i}"]["kernel"].shape)
        lin.weight.data = torch.tensor(np.asarray(p[f"dense_{i}"]["kernel"]).T.copy())
        lin.bias.data = torch.tensor(np.asarray(p[f"dense_{i}"]["bias"]))
        layers.append(lin)
        if config.normed(i):
            ln = torch.nn.LayerNorm(config.hidden[i], eps=1e-6)
            ln.weight.data = torch.tensor(np.asarray(p[f"norm_{i}"]["scale"]))
            ln.bias.data = torch.tensor(np.asarray(p[f"norm_{i}"]["bias"]))
            layers.append(ln)
        layers.append(torch.nn.ReLU())
    out = torch.nn.Linear(*p["out"]["kernel"].shape)
    out.weight.data = torch.tensor(np.asarray(p["out"]["kernel"]).T.copy())
    out.bias.data = torch.tensor(np.asarray(p["out"]["bias"]))
    net = torch.nn.Sequential(*layers, out)

    class Critic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, obs, act):
            return self.net(torch.cat([obs, act], dim=-1))    # (N, 1): the adapter reshapes

    return Critic()


@pytest.mark.parametrize("norm", [pytest.param("none", marks=pytest.mark.slow), "layernorm"])
def test_torch_equals_jax(norm):
    from seemrl.diagnostics.torch import seem_torch

    config = MLPConfig(hidden=(32, 32), norm=norm)
    k = jax.random.split(jax.random.key(3), 5)
    n = 40
    obs, act = jax.random.normal(k[0], (n, 4)), jax.random.normal(k[1], (n, 2))
    next_obs, next_act = 1.3 * obs + 0.1, jax.random.normal(k[2], (n, 2))
    done = (jax.random.uniform(k[3], (n,)) < 0.2).astype(np.float32)
    net = QNetwork(config)
    params = net.init(k[4], obs, act)
    module = _torch_copy(config, params)
    arrays = [np.asarray(x) for x in (obs, act, next_obs, next_act)]
    q_t = module(*[torch.tensor(x) for x in arrays[:2]]).detach().numpy()[:, 0]
    np.testing.assert_allclose(q_t, np.asarray(net.apply(params, obs, act)), rtol=1e-5,
                               atol=1e-6)
    ref = seem(lambda p, o, a: net.apply(p, o, a), params, obs, act, next_obs, next_act,
               0.95, done, method="dense")
    got = seem_torch(module, *arrays, 0.95, np.asarray(done), chunk_size=16)
    assert got.raw == pytest.approx(ref.raw, rel=1e-4)
    assert got.normalized == pytest.approx(ref.normalized, rel=1e-4)
    assert abs(np.vdot(got.eigenvector, ref.eigenvector)) == pytest.approx(1.0, abs=1e-4)
