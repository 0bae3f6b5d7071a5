import _thread
import functools
import json
import os
import signal
import time

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seemrl import checkpoint
from seemrl.algos import td3bc
from seemrl.config import ConfigError
from seemrl.core import first_bad_step
from seemrl.diagnostics.schedule import SeemSchedule
from seemrl.logging import read_jsonl
from seemrl.runconfig import TrainConfig
from seemrl.train import Trainer, train
from seemrl.types import Terminated
from tests.conftest import stop_before_chunk

ALGO = td3bc.Config(critic_hidden=(32, 32), actor_hidden=(32, 32), bc_coef=0.0)


def tcfg(dataset, **kw):
    base = dict(dataset=str(dataset), algo="td3bc", seeds=(0, 1), steps=8, batch_size=32,
                log_every=2, eval_every=0, eval_episodes=0, checkpoint_every=4, seem_every=0)
    return TrainConfig(**{**base, **kw})


def checkpoint_payload(run_dir):
    """The raw checkpoint: every seed's state and the SEEM memory, plus the run metadata."""
    payload = flax.serialization.msgpack_restore(
        (run_dir / checkpoint.CHECKPOINT).read_bytes())
    return payload["state"], json.loads(payload["meta"])


def assert_same_run(a, b):
    (sa, ma), (sb, mb) = checkpoint_payload(a), checkpoint_payload(b)
    assert ma["step"] == mb["step"]
    assert jax.tree.structure(sa) == jax.tree.structure(sb)
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        np.testing.assert_array_equal(x, y)
    ra = [{k: v for k, v in r.items() if not k.startswith("time/")}
          for r in read_jsonl(a / "metrics.jsonl")]
    rb = [{k: v for k, v in r.items() if not k.startswith("time/")}
          for r in read_jsonl(b / "metrics.jsonl")]
    assert ra == rb


def test_run_folder_contents(hopper_npz, tmp_path):
    status = train(tcfg(hopper_npz), ALGO, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "normalizer.json", "metrics.jsonl",
                                               "status.json", "checkpoint.msgpack"}
    records = read_jsonl(run / "metrics.jsonl")
    assert [(r["step"], r["seed"]) for r in records] == [(s, d) for s in (2, 4, 6, 8)
                                                         for d in (0, 1)]
    for key in ("train/critic_loss", "train/q_mean", "train/q_pi", "train/actor_loss",
                "train/bc_loss", "train/critic_param_norm_0", "train/critic_param_norm_1"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert status["step"] == 8 and all(s["diverged_at"] is None for s in status["seeds"].values())
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["seeds"] == [0, 1] and saved["algo"]["bc_coef"] == 0.0


def test_resume_after_extension_equals_uninterrupted(hopper_npz, tmp_path):
    train(tcfg(hopper_npz), ALGO, tmp_path / "full", progress=False)
    train(tcfg(hopper_npz, steps=4), ALGO, tmp_path / "part", progress=False)
    train(tcfg(hopper_npz), ALGO, tmp_path / "part", resume=True, progress=False)
    assert_same_run(tmp_path / "full", tmp_path / "part")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_resume_after_interrupt_equals_uninterrupted(hopper_npz, tmp_path, monkeypatch, how):
    train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "full", progress=False)
    original = stop_before_chunk(monkeypatch, 3, how)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated if how == "sigterm" else KeyboardInterrupt):
        train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "part", progress=False)
    # Saved at the last whole chunk, though no checkpoint was due before step 8.
    assert json.loads((tmp_path / "part" / "status.json").read_text())["step"] in (4, 6)
    assert signal.getsignal(signal.SIGTERM) is handler_before  # seemrl's handler is removed
    monkeypatch.setattr(Trainer, "run_chunk", original)
    train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "part", resume=True,
          progress=False)
    assert_same_run(tmp_path / "full", tmp_path / "part")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupts_during_the_save_do_not_cut_it_short(hopper_npz, tmp_path, monkeypatch, how,
                                                         request):
    """While an interrupted run saves, a second Ctrl-C (`_thread.interrupt_main`, which is
    also how `ray.cancel` interrupts a task) and a SIGTERM arrive; the save completes and the
    run resumes as if uninterrupted."""
    train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "full", progress=False)
    original_chunk = stop_before_chunk(monkeypatch, 3, how)
    # Python's Ctrl-C handler, also where the process started with SIGINT ignored (pytest-xdist's
    # workers, a background job), so that interrupt_main below does interrupt.
    request.addfinalizer(functools.partial(signal.signal, signal.SIGINT,
                                           signal.getsignal(signal.SIGINT)))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real_save, handlers_before = checkpoint.save, signal.getsignal(signal.SIGINT)

    def interrupted_save(*args, **kwargs):
        _thread.interrupt_main()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(20):  # Python runs signal handlers between bytecodes: give them time
            time.sleep(0.01)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", interrupted_save)
    with pytest.raises(Terminated if how == "sigterm" else KeyboardInterrupt):
        train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "part", progress=False)
    assert checkpoint.exists(tmp_path / "part")
    assert signal.getsignal(signal.SIGINT) is handlers_before
    monkeypatch.setattr(Trainer, "run_chunk", original_chunk)
    monkeypatch.setattr(checkpoint, "save", real_save)
    train(tcfg(hopper_npz, checkpoint_every=8), ALGO, tmp_path / "part", resume=True,
          progress=False)
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_diverged_seed_keeps_last_finite_state_and_others_go_on(hopper_npz, tmp_path):
    trainer = Trainer(tcfg(hopper_npz), ALGO, tmp_path / "run")
    # Poison seed 1's critic: its Q is NaN from the first step on.
    poison = lambda x: x.at[1].set(jnp.nan) if x.dtype.kind == "f" else x
    trainer.states = trainer.states.replace(critic_params=jax.tree.map(
        poison, trainer.states.critic_params))
    before = jax.tree.map(lambda x: np.asarray(x[1]), trainer.states)
    status = trainer.run(progress=False)
    assert status["seeds"]["1"]["diverged_at"] == 1
    assert status["seeds"]["0"]["diverged_at"] is None and status["step"] == 8
    states, meta = checkpoint.load(tmp_path / "run", {"states": trainer.states, "seem": None})
    after = jax.tree.map(lambda x: np.asarray(x[1]), states["states"])
    for x, y in zip(jax.tree.leaves(before.actor_params), jax.tree.leaves(after.actor_params),
                    strict=True):
        np.testing.assert_array_equal(x, y)  # frozen at its last state, never updated
    assert meta["active"] == [True, False]
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r.get("diverged_at") for r in records if r["seed"] == 1][0] == 1
    assert status["seeds"]["1"]["stopped_at"] == 1
    assert max(r["step"] for r in records if r["seed"] == 0) == 8
    # Nothing is logged for the stopped seed after the chunk it stopped in: its updates are
    # thrown away, so their metrics would describe nothing.
    assert [r["step"] for r in records if r["seed"] == 1] == [2]


def test_q_bound_marks_divergence(hopper_npz, tmp_path):
    status = train(tcfg(hopper_npz, q_bound=1e-6), ALGO, tmp_path / "run", progress=False)
    assert all(s["diverged_at"] == 1 for s in status["seeds"].values())
    assert status["step"] == 2  # stopped once every seed had diverged


def test_first_bad_step():
    q = np.array([[1.0, 1.0, 1.0], [2.0, np.nan, 1.0], [5.0, 1.0, np.inf]])
    loss = np.ones_like(q)
    np.testing.assert_array_equal(first_bad_step({"q_mean": q, "critic_loss": loss}, 4.0),
                                  [2, 1, 2])


def test_existing_run_folder_is_not_overwritten(hopper_npz, tmp_path):
    run = tmp_path / "run"
    train(tcfg(hopper_npz, steps=2), ALGO, run, progress=False)
    before = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="not empty"):
        train(tcfg(hopper_npz, steps=2), ALGO, run, progress=False)
    assert (run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize("bad", [dict(fraction=0.0), dict(fraction=1.5), dict(seeds=()),
                                 dict(seeds=(1, 1)), dict(eval_every=-1), dict(steps=0),
                                 dict(dataset="")])
def test_bad_train_config(bad, hopper_npz):
    with pytest.raises(ConfigError):
        tcfg(bad.pop("dataset", hopper_npz), **bad)


def test_seem_logged_during_training_and_resume_keeps_it_identical(hopper_npz, tmp_path):
    seem = dict(seem_every=2, seem_probe=16)
    train(tcfg(hopper_npz, **seem), ALGO, tmp_path / "full", progress=False)
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    for r in records:
        for key in ("seem/normalized", "seem/raw", "seem/q_data", "seem/q_policy",
                    "seem/param_norm"):
            assert r[key] is not None and np.isfinite(r[key]), key
        assert abs(r["seem/normalized"]) <= 1.0 + 1e-6  # max Re λ ≤ ‖A‖_F
    first = [r for r in records if r["step"] == 2]
    assert all(r["seem/ntk_cos"] is None for r in first)  # nothing to compare with yet
    later = [r for r in records if r["step"] > 2]
    assert all(-1.0 <= r["seem/ntk_cos"] <= 1.0 for r in later)
    train(tcfg(hopper_npz, steps=4, **seem), ALGO, tmp_path / "part", progress=False)
    train(tcfg(hopper_npz, **seem), ALGO, tmp_path / "part", resume=True, progress=False)
    assert_same_run(tmp_path / "full", tmp_path / "part")  # SEEM cosines included


def test_passing_the_ceiling_is_a_divergence_not_a_prediction(hopper_npz, tmp_path):
    # Rewards scaled to 0 put the run's Q ceiling max|r|/(1 − γ) at 0, so the first update's
    # Q is past it: diverged_at 1 (the fact) for every seed, no prediction (nothing came
    # before the fact), the seeds go on training (only q_bound stops them), and a resumed
    # run says the same.
    zero = dict(reward_scale=0.0, seem_every=2, seem_first=0, seem_probe=16)
    status = train(tcfg(hopper_npz, **zero), ALGO, tmp_path / "full", progress=False)
    assert json.loads((tmp_path / "full" / "config.json").read_text())["q_ceiling"] == 0.0
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    for seed, s in status["seeds"].items():
        assert s["diverged_at"] == 1 and s["stopped_at"] is None and s["active"]
        assert s["predicted_at"] is None and s["predicted_reason"] is None
        mine = [r for r in records if r["seed"] == int(seed)]
        assert [r["step"] for r in mine if "diverged_at" in r] == [2]  # logged once
        assert not any("verdict/predicted_at" in r for r in mine)
        assert max(r["step"] for r in mine) == 8  # trained to the end
    train(tcfg(hopper_npz, steps=4, **zero), ALGO, tmp_path / "part", progress=False)
    resumed = train(tcfg(hopper_npz, **zero), ALGO, tmp_path / "part", resume=True,
                    progress=False)
    assert resumed["seeds"] == status["seeds"]
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_q_ceiling_is_max_reward_over_one_minus_gamma(hopper_npz, tmp_path):
    from seemrl.data import load_dataset

    train(tcfg(hopper_npz, steps=2), ALGO, tmp_path / "run", progress=False)
    rewards = load_dataset(str(hopper_npz)).rewards
    ceiling = json.loads((tmp_path / "run" / "config.json").read_text())["q_ceiling"]
    assert ceiling == pytest.approx(float(np.abs(rewards).max()) / (1 - ALGO.gamma), rel=1e-6)


def test_periods_need_not_be_multiples_of_log_every():
    from seemrl.core import crossed

    # log every 3 steps, evaluate every 5: at steps 6 (crossed 5), 12 (crossed 10), 15, 21...
    fired = [s for s in range(3, 31, 3) if crossed(s, 3, 5)]
    assert fired == [6, 12, 15, 21, 27, 30]
    assert not any(crossed(s, 3, 0) for s in range(3, 31, 3))


def test_driver_feeds_next_actions_to_rebrac(hopper_npz, tmp_path):
    from seemrl.algos import rebrac

    cfg = rebrac.Config(critic_hidden=(16, 16), actor_hidden=(16, 16))
    train(tcfg(hopper_npz, algo="rebrac", steps=4, fraction=0.5), cfg, tmp_path / "run",
          progress=False)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    penalties = [r["train/critic_bc_penalty"] for r in records]
    assert all(p is not None and np.isfinite(p) and p >= 0 for p in penalties)


def test_seed_groups_match_one_group_and_are_saved_resolved(hopper_npz, tmp_path):
    for groups in (1, 2):
        train(tcfg(hopper_npz, seeds=(0, 1, 2), seed_groups=groups), ALGO,
              tmp_path / f"g{groups}", progress=False)
    one, two = (read_jsonl(tmp_path / f"g{g}" / "metrics.jsonl") for g in (1, 2))
    assert [(r["step"], r["seed"]) for r in one] == [(r["step"], r["seed"]) for r in two]
    for a, b in zip(one, two, strict=True):
        for k in ("train/critic_loss", "train/q_mean", "train/critic_param_norm_0"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4)  # batched vs unbatched rounding
    train(tcfg(hopper_npz, seeds=(0, 1, 2)), ALGO, tmp_path / "auto", progress=False)
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())["train"]["seed_groups"]
    assert 1 <= saved <= 3


def test_seem_schedule_and_verdict_do_not_depend_on_log_every(hopper_npz, tmp_path):
    # SEEM at the schedule's steps (every 2 to step 16, then 4, ... capped at 8) whatever the
    # logging period; the states there, so the measurements and the verdict, are the same.
    from seemrl.diagnostics.schedule import SeemSchedule

    seem = dict(steps=40, seem_first=2, seem_every=8, seem_probe=16)
    runs = {}
    for log_every in (5, 20):
        train(tcfg(hopper_npz, log_every=log_every, **seem), ALGO, tmp_path / f"l{log_every}",
              progress=False)
        runs[log_every] = read_jsonl(tmp_path / f"l{log_every}" / "metrics.jsonl")
    want = SeemSchedule(2, 8).steps(40)
    for seed in (0, 1):
        series = {}
        for log_every, records in runs.items():
            rows = [r for r in records if r["seed"] == seed and "seem/normalized" in r]
            assert [r["step"] for r in rows] == want
            series[log_every] = [(r["seem/normalized"], r["seem/q_data"]) for r in rows]
            # Log points are still there too, at every multiple of log_every.
            steps = {r["step"] for r in records if r["seed"] == seed}
            assert set(range(log_every, 41, log_every)) <= steps
        assert series[5] == series[20]
    status = {k: json.loads((tmp_path / f"l{k}" / "status.json").read_text()) for k in runs}
    assert status[5]["seeds"] == status[20]["seeds"]


@pytest.fixture(scope="module")
def hopper_5k(tmp_path_factory):
    """5 000 transitions of seemrl's own hopper-medium (made here, ~5 s)."""
    from seemrl import behaviour

    return behaviour.make_dataset("hopper-medium", size=5_000,
                                  data_dir=tmp_path_factory.mktemp("data"), progress=False)


def test_a_diverging_critic_is_predicted_before_it_diverges_and_layernorm_is_not(hopper_5k,
                                                                                 tmp_path):
    # TD3 without its BC term, hard target copies (τ = 1): the plain critic passes the
    # ceiling after a few hundred steps, several SEEM measurements in; the verdict must
    # fire strictly before that, on the default schedule and rule. The LayerNorm critic, same
    # seeds and data, neither diverges nor is flagged.
    from seemrl.algos import td3bc

    cfg = dict(dataset=str(hopper_5k), seeds=(0, 1), steps=700, log_every=100,
               eval_episodes=0, checkpoint_every=0, seed_groups=1, seem_probe=64, q_bound=1e5)
    nets = dict(bc_coef=0.0, tau=1.0, critic_hidden=(64, 64), actor_hidden=(64, 64))
    plain = train(TrainConfig(**cfg), td3bc.Config(**nets), tmp_path / "plain", progress=False)
    for s in plain["seeds"].values():
        assert s["diverged_at"] is not None and s["predicted_at"] is not None
        assert s["predicted_at"] < s["diverged_at"]
        assert s["diverged_at"] > 2 * SeemSchedule().first  # late: not at the first look
    ln = train(TrainConfig(**cfg), td3bc.Config(layer_norm=True, **nets), tmp_path / "ln",
               progress=False)
    for s in ln["seeds"].values():
        assert s["diverged_at"] is None and s["predicted_at"] is None
