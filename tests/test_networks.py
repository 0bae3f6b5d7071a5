import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seemrl.algos import common, iql, td3bc
from seemrl.config import ConfigError
from seemrl.diagnostics import probe as probe_lib
from seemrl.diagnostics.tracking import critic_spec
from seemrl.networks import (
    MLP,
    Actor,
    Critic,
    MLPConfig,
    QNetwork,
    SpectralDense,
    head_params,
    num_linear_layers,
    q_head_fn,
    spectral_norm_estimate,
)
from seemrl.types import Batch, EnvSpec


def param_names(config, in_dim=5):
    params = MLP(config, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, in_dim)))["params"]
    return set(params)


@pytest.mark.parametrize("hidden", [(8,), (8, 16), (4, 4, 4)])
def test_mlp_shapes(hidden):
    cfg = MLPConfig(hidden=hidden)
    net = MLP(cfg, 3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)))
    assert net.apply(params, jnp.ones((7, 5))).shape == (7, 3)
    assert net.apply(params, jnp.ones((2, 7, 5))).shape == (2, 7, 3)
    assert num_linear_layers(cfg) == len(hidden) + 1


def test_layernorm_layers_and_bias_switch():
    assert param_names(MLPConfig(hidden=(8, 8))) == {"dense_0", "dense_1", "out"}
    assert param_names(MLPConfig(hidden=(8, 8), norm="layernorm")) == {
        "dense_0", "norm_0", "dense_1", "norm_1", "out"}
    assert param_names(MLPConfig(hidden=(8, 8, 8), norm="layernorm", norm_layers=(0, 2))) == {
        "dense_0", "norm_0", "dense_1", "dense_2", "norm_2", "out"}
    params = MLP(MLPConfig(hidden=(8,), use_bias=False), 1).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
    assert all("bias" not in p for p in params.values())


@pytest.mark.parametrize("placement", ["before", "after"])
def test_layernorm_placement(placement):
    """before: act(LN(Wx)) is non-negative for ReLU; after: LN(act(Wx)) has zero mean."""
    cfg = MLPConfig(hidden=(32,), norm="layernorm", placement=placement)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5)) * 3
    net = MLP(cfg, 1)
    params = net.init(jax.random.PRNGKey(0), x)
    # Rebuild the hidden output by hand from the parameters and compare with the network.
    p = params["params"]
    h = x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"]
    ln = lambda z: (z - z.mean(-1, keepdims=True)) / jnp.sqrt(z.var(-1, keepdims=True) + 1e-6)
    ln = (lambda f: lambda z: f(z) * p["norm_0"]["scale"] + p["norm_0"]["bias"])(ln)
    h = jax.nn.relu(ln(h)) if placement == "before" else ln(jax.nn.relu(h))
    expected = h @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(net.apply(params, x), expected, rtol=1e-4, atol=1e-5)
    if placement == "before":
        assert float(h.min()) >= 0.0
    else:
        np.testing.assert_allclose(h.mean(-1), 0.0, atol=1e-5)


def test_layernorm_bounds_output_as_input_grows():
    """SPEC §4: with LN the output stays bounded as ‖x‖ → ∞; without it, it grows linearly."""
    x = jax.random.normal(jax.random.PRNGKey(3), (1, 5))
    outs = {}
    for norm in ("none", "layernorm"):
        net = MLP(MLPConfig(hidden=(64, 64), norm=norm), 1)
        params = net.init(jax.random.PRNGKey(0), x)
        outs[norm] = [float(jnp.abs(net.apply(params, c * x)).squeeze()) for c in (10, 1e3, 1e5)]
    assert outs["none"][2] > 100 * outs["none"][0]
    assert outs["layernorm"][2] < 10 * max(outs["layernorm"][0], 1e-3)


def test_critic_heads_are_independent_and_sliceable():
    cfg = MLPConfig(hidden=(16, 16), norm="layernorm")
    critic = Critic(cfg, num_heads=3)
    obs, act = jnp.ones((5, 4)), jnp.ones((5, 2))
    params = critic.init(jax.random.PRNGKey(0), obs, act)
    q = critic.apply(params, obs, act)
    assert q.shape == (3, 5)
    assert not np.allclose(q[0], q[1])
    for h in range(3):
        single = QNetwork(cfg).apply({"params": head_params(params, h)}, obs, act)
        np.testing.assert_allclose(single, q[h], rtol=1e-6)
        np.testing.assert_allclose(q_head_fn(cfg, h)(params, obs, act), q[h], rtol=1e-6)


def test_actor_bounded():
    actor = Actor(MLPConfig(hidden=(16,)), act_dim=2, max_action=0.5)
    params = actor.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    a = actor.apply(params, 100 * jax.random.normal(jax.random.PRNGKey(1), (50, 3)))
    assert a.shape == (50, 2) and float(jnp.abs(a).max()) <= 0.5


@pytest.mark.parametrize("bad", [dict(norm="groupnorm"), dict(placement="middle"),
                                 dict(activation="swish2"), dict(norm_layers=(5,)),
                                 dict(dropout=1.0), dict(dropout=-0.1), dict(out_scale=0.0),
                                 dict(hidden_init="xavier"), dict(out_init="he")])
def test_bad_mlp_config(bad):
    with pytest.raises(ValueError):
        MLPConfig(hidden=(8, 8), **bad)


@pytest.mark.parametrize("algo", [td3bc, iql])
def test_edac_init_sets_hidden_biases_and_small_output_layers(algo):
    """init_scheme edac: PyTorch kernels (the same draws as torch), every hidden bias 0.1, the
    output layer U(±3e-3) in critics and value nets and U(±1e-3) in actors."""
    torch_cfg, edac_cfg = algo.Config(init_scheme="torch"), algo.Config(init_scheme="edac")
    nets = [("critic", torch_cfg.critic_mlp(), edac_cfg.critic_mlp(), 3e-3),
            ("actor", torch_cfg.actor_mlp(), edac_cfg.actor_mlp(), 1e-3)]
    if algo is iql:
        nets.append(("value", torch_cfg.value_mlp(), edac_cfg.value_mlp(), 3e-3))
    x = jnp.ones((1, 7))
    for name, torch_mlp, edac_mlp, bound in nets:
        key = jax.random.PRNGKey(3)
        plain = MLP(torch_mlp, 4).init(key, x)["params"]
        edac = MLP(edac_mlp, 4).init(key, x)["params"]
        for i in range(len(edac_mlp.hidden)):
            layer = edac[f"dense_{i}"]
            np.testing.assert_array_equal(layer["bias"],
                                          np.full(layer["bias"].shape, 0.1, np.float32))
            np.testing.assert_array_equal(layer["kernel"], plain[f"dense_{i}"]["kernel"])
        for leaf in ("kernel", "bias"):
            out = np.asarray(edac["out"][leaf])
            assert np.abs(out).max() <= bound and np.abs(out).max() > bound / 10, name
            # PyTorch's default output layer is U(±1/√fan_in), far wider.
            assert np.abs(np.asarray(plain["out"][leaf])).max() > 5 * bound, name
    with pytest.raises(ConfigError, match="init_scheme"):
        algo.Config(init_scheme="xavier")


def test_iql_defaults_to_its_authors_orthogonal_init():
    """IQL's authors (jaxrl's default_init): every layer of critic, value net and actor an
    orthogonal kernel of gain √2 (its rows or columns, whichever are fewer, orthogonal with
    squared norm 2), every bias zero."""
    cfg = iql.Config(critic_hidden=(32, 64), actor_hidden=(32, 32), value_hidden=(16, 8))
    assert cfg.init_scheme == "orthogonal"
    x = jnp.ones((1, 7))
    for mlp in (cfg.critic_mlp(), cfg.value_mlp(), cfg.actor_mlp()):
        params = MLP(mlp, 3).init(jax.random.PRNGKey(4), x)["params"]
        for name, layer in params.items():
            k = np.asarray(layer["kernel"])
            gram = k @ k.T if k.shape[0] <= k.shape[1] else k.T @ k
            np.testing.assert_allclose(gram, 2.0 * np.eye(len(gram)), atol=1e-5, err_msg=name)
            assert not np.any(np.asarray(layer["bias"])), name


def test_rebrac_defaults_to_its_authors_init():
    from seemrl.algos import rebrac
    assert rebrac.Config().init_scheme == "edac"
    mlp = rebrac.Config().critic_mlp()
    assert (mlp.hidden_bias, mlp.out_init, mlp.out_scale) == (0.1, "uniform", 3e-3)


# ------------------------------------------------- regularisers (SPEC §5.8): defaults first


def test_defaults_have_params_only_and_plain_dense_layers():
    """The default critic is what it always was: one "params" collection, nn.Dense layers,
    no train-mode differences (so existing checkpoints and param names stay valid)."""
    cfg = MLPConfig()
    assert not cfg.has_train_mode and cfg.fast_ntk
    obs, act = jnp.ones((3, 4)), jnp.ones((3, 2))
    critic = Critic(cfg)
    variables = critic.init(jax.random.PRNGKey(0), obs, act)
    assert set(variables) == {"params"}
    np.testing.assert_array_equal(critic.apply(variables, obs, act, train=True),
                                  critic.apply(variables, obs, act))
    options = td3bc.Config()
    assert options.critic_mlp() == MLPConfig()
    assert common.make_optimizer("adam", 1e-3).init(variables)[0].__class__.__name__ == \
        "ScaleByAdamState"


def test_spectral_norm_estimate_matches_svd():
    for shape, seed in [((14, 256), 0), ((256, 256), 1), ((64, 1), 2)]:
        w = jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-0.1, maxval=0.1)
        exact = np.linalg.svd(np.asarray(w), compute_uv=False)[0]
        estimate = float(spectral_norm_estimate(w))
        assert 0.98 * exact <= estimate <= exact * (1 + 1e-5)


def test_spectral_dense_has_unit_norm_and_plain_init():
    x = jnp.ones((2, 32))
    layer = SpectralDense(64)
    params = layer.init(jax.random.PRNGKey(0), x)
    plain = nn.Dense(64).init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(params) == jax.tree.structure(plain)
    kernel = params["params"]["kernel"] * 50.0  # a "trained", much larger kernel
    kernel = kernel.at[:, 0].mul(10.0)  # with one clearly dominant direction
    effective = kernel / spectral_norm_estimate(kernel)
    assert np.linalg.svd(np.asarray(effective), compute_uv=False)[0] == pytest.approx(1, 1e-3)
    # The layer is invariant to the scale of its kernel (what bounds its Lipschitz constant).
    y1 = layer.apply(params, x)
    scaled = {"params": {**params["params"], "kernel": params["params"]["kernel"] * 1e3}}
    np.testing.assert_allclose(layer.apply(scaled, x), y1, rtol=1e-4, atol=1e-5)
    # Only hidden layers are normalised; parameter names are those of the plain MLP.
    cfg = MLPConfig(hidden=(8, 8), spectral_norm=True)
    assert param_names(cfg) == param_names(MLPConfig(hidden=(8, 8)))
    assert not cfg.fast_ntk


def test_dropout_only_in_training_passes():
    cfg = MLPConfig(hidden=(64, 64), dropout=0.5)
    obs, act = jnp.ones((4, 3)), jnp.ones((4, 2))
    critic = Critic(cfg)
    variables = critic.init(jax.random.PRNGKey(0), obs, act)
    plain = Critic(MLPConfig(hidden=(64, 64))).apply(variables, obs, act)
    np.testing.assert_array_equal(critic.apply(variables, obs, act), plain)  # deterministic
    train = lambda k: critic.apply(variables, obs, act, train=True,
                                   rngs={"dropout": jax.random.PRNGKey(k)})
    np.testing.assert_array_equal(train(1), train(1))
    assert not np.allclose(train(1), train(2))
    assert not np.allclose(train(1), plain)
    q = train(1)  # the two heads draw their own masks: ratios to the plain net differ
    assert not np.allclose(q[0] / plain[0], q[1] / plain[1])
    assert cfg.has_train_mode and cfg.fast_ntk  # SEEM's deterministic net is a plain MLP


def test_batchnorm_train_uses_batch_statistics_eval_running_averages():
    cfg = MLPConfig(hidden=(16, 16), norm="batchnorm")
    assert param_names(cfg) == {"dense_0", "norm_0", "dense_1", "norm_1", "out"}
    critic = Critic(cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 5))
    obs, act = x[:, :3], x[:, 3:]
    variables = critic.init(jax.random.PRNGKey(0), obs, act)
    assert set(variables) == {"params", "batch_stats"}
    train = lambda v, o: critic.apply(v, o, act, train=True, mutable=["batch_stats"])
    q, updates = train(variables, obs)
    # Batch statistics: shifting every sample by the same vector changes nothing in training
    # (the first layer's batch mean absorbs it), but does change the eval form.
    q_shifted, _ = train(variables, obs + 3.0)
    np.testing.assert_allclose(q_shifted, q, rtol=1e-4, atol=1e-4)
    assert not np.allclose(critic.apply(variables, obs + 3.0, act),
                           critic.apply(variables, obs, act))
    # Running averages move 10 % of the way to the batch's mean (PyTorch's momentum 0.1) ...
    h0 = obs @ variables["params"]["heads"]["mlp"]["dense_0"]["kernel"][0][:3] \
        + act @ variables["params"]["heads"]["mlp"]["dense_0"]["kernel"][0][3:] \
        + variables["params"]["heads"]["mlp"]["dense_0"]["bias"][0]
    np.testing.assert_allclose(updates["batch_stats"]["heads"]["mlp"]["norm_0"]["mean"][0],
                               0.1 * h0.mean(0), rtol=1e-4, atol=1e-6)
    # ... and after many passes on one batch the eval form equals the training form.
    v = variables
    for _ in range(200):
        v = {**v, **train(v, obs)[1]}
    np.testing.assert_allclose(critic.apply(v, obs, act), q, rtol=1e-3, atol=1e-3)
    # SEEM's q for one head: the eval form, no gradient into the running averages.
    np.testing.assert_allclose(q_head_fn(cfg, 1)(v, obs, act), critic.apply(v, obs, act)[1],
                               rtol=1e-6)
    grads = jax.grad(lambda p: q_head_fn(cfg, 0)(p, obs, act).sum())(v)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["batch_stats"]))
    assert not cfg.fast_ntk


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_weight_decay_shrinks_params_with_zero_grads(name):
    variables = {"params": {"w": jnp.full((3,), 2.0)}, "batch_stats": {"m": jnp.ones(3)}}
    lr, wd = 0.1, 0.5
    opt = common.make_optimizer(name, lr, wd)
    state = opt.init(variables)
    zeros = jax.tree.map(jnp.zeros_like, variables)
    updates, _ = opt.update(zeros, state, variables)
    new = optax.apply_updates(variables, updates)
    np.testing.assert_allclose(new["params"]["w"], 2.0 * (1 - lr * wd), rtol=1e-6)
    np.testing.assert_array_equal(new["batch_stats"]["m"], 1.0)  # statistics do not decay
    plain = common.make_optimizer(name, lr)
    updates, _ = plain.update(zeros, plain.init(variables), variables)
    np.testing.assert_array_equal(optax.apply_updates(variables, updates)["params"]["w"], 2.0)


def test_network_options_reach_the_critic_and_are_refused_where_not_plumbed():
    cfg = td3bc.Config(weight_decay=0.1, critic_dropout=0.2, batch_norm=True,
                       spectral_norm=True, ln_placement="after", ln_layers=(1,))
    mlp = cfg.critic_mlp()
    assert (mlp.norm, mlp.placement, mlp.norm_layers, mlp.dropout, mlp.spectral_norm) == (
        "batchnorm", "after", (1,), 0.2, True)
    # The regularisers are the critic's only (the LN placement options are shared).
    plain = td3bc.Config(ln_placement="after", ln_layers=(1,))
    assert cfg.actor_mlp() == plain.actor_mlp()
    with pytest.raises(ConfigError, match="alternatives"):
        td3bc.Config(layer_norm=True, batch_norm=True)
    with pytest.raises(ConfigError, match="critic_dropout"):
        iql.Config(critic_dropout=0.1)
    iql.Config(spectral_norm=True)  # stateless: every algorithm has it


def _data(n=64, obs_dim=5, act_dim=2):
    k = jax.random.split(jax.random.PRNGKey(7), 3)
    return Batch(jax.random.normal(k[0], (n, obs_dim)),
                 jax.random.uniform(k[1], (n, act_dim), minval=-1, maxval=1),
                 jax.random.normal(k[2], (n,)), jax.random.normal(k[0], (n, obs_dim)) + 0.1,
                 jnp.ones(n))


VARIANTS = {"weight_decay": dict(weight_decay=0.1), "dropout": dict(critic_dropout=0.2),
            "batch_norm": dict(batch_norm=True), "spectral_norm": dict(spectral_norm=True),
            "layer_norm_after": dict(layer_norm=True, ln_placement="after", ln_layers=(0,))}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_td3_update_and_seem_for_each_regulariser(variant):
    """td3bc trains with the option (jit = eager, finite), and SEEM measures its critic (the
    fast NTK path where it applies, else the generic one on the deterministic network)."""
    cfg = td3bc.Config(critic_hidden=(32, 32), actor_hidden=(32, 32), bc_coef=0.0,
                       **VARIANTS[variant])
    data = _data()
    state = td3bc.init(jax.random.PRNGKey(0), EnvSpec(5, 2), cfg)
    update = jax.jit(td3bc.update, static_argnums=(3, 4))
    # Adam turns last-bit differences in tiny gradients into steps of ±lr, and BatchNorm on
    # 16 samples amplifies rounding: eager and jit then agree to a few lr, not to 1e-5.
    atol = 2e-3 if variant == "batch_norm" else 1e-5
    for step in range(3):
        batch = jax.tree.map(lambda x, s=step: x[16 * s:16 * s + 16], data)
        eager, _ = td3bc.update(state, batch, jnp.int32(step), cfg, EnvSpec(5, 2))
        state, metrics = update(state, batch, jnp.int32(step), cfg, EnvSpec(5, 2))
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)
        assert np.isfinite(float(metrics["critic_loss"]))
    if variant == "batch_norm":
        stats = state.critic_params["batch_stats"]["heads"]["mlp"]["norm_0"]["mean"]
        assert float(jnp.abs(stats).max()) > 0  # the running averages were updated
    spec = critic_spec(td3bc, cfg)
    assert isinstance(spec, MLPConfig) == cfg.critic_mlp().fast_ntk
    policy = lambda s, o: td3bc.act(s, o, cfg, EnvSpec(5, 2))
    probe = jax.tree.map(lambda x: x[:24], data)
    metrics, _ = probe_lib.probe_metrics(spec, state.critic_params, policy, state, probe, 0.99)
    assert np.isfinite(float(metrics["seem/normalized"]))
    # Both NTK paths measure the same (deterministic) critic.
    generic, _ = probe_lib.probe_metrics(td3bc.critic_q(cfg, 0), state.critic_params, policy,
                                         state, probe, 0.99)
    np.testing.assert_allclose(metrics["seem/normalized"], generic["seem/normalized"],
                               rtol=1e-3, atol=1e-4)
