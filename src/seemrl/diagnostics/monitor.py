"""SeemMonitor: the training driver's SEEM schedule and divergence verdict, in your own loop.

    monitor = SeemMonitor(critic, data, gamma=0.99, policy=actor)     # torch or JAX critic
    for t in range(1, steps + 1):
        ...one update of your agent...
        out = monitor.step(t)          # JAX: monitor.step(t, critic_params, actor_params)
        if out.predicted and not warned: print(out.describe())

What it does, exactly as `seemrl train` does it (so a verdict here means what it means in a
run folder):

* a probe of `probe_size` transitions drawn once from `data` with `default_rng(seed)`
  (`tracking.draw_probe`, the driver's draw; 256 by default, the driver's `--seem-probe`);
* SEEM measured at the steps of `SeemSchedule` (dense early, geometric later), each
  measurement giving the driver's `seem/...` keys (`probe.METRIC_KEYS`);
* `OnlineVerdict` fed those measurements: `predicted_at` is the step the rule fired;
* `diverged_at` (the fact, kept apart): the first step at which |mean Q on the probe| reached
  the ceiling max|r|/(1 − γ) of `data` (or the `ceiling` you give, e.g. the whole dataset's)
  or went non-finite, or your `q_mean` passed it between measurements. The verdict is then
  frozen, and no more measurements are made.

Critics:

* a pure JAX `q(params, obs (N, ·), act (N, ·)) -> (N,)`: `ntk.td_grams` finds the h @ W
  kernels in q's jaxpr and forms their Gram terms from activations and backprop signals (as
  the MLP fast path does), the other leaves from exact per-sample gradients; it reuses
  `probe.probe_metrics` compiled once (its eigenvalue found on the host after the call: see
  `host_eig` there);
* a seemrl `MLPConfig` (params: a `networks.Critic` ensemble, head `head` is measured): the
  driver's exact fast NTK path;
* a PyTorch `nn.Module` `module(obs, act) -> (N,)` or (N, 1), read live at each step (torch is
  imported lazily): Linear and LayerNorm layers by their per-sample gradient factors
  (`torch.td_grams_torch`), other parameters through torch.func; float64 Grams.

The policy gives X* = (s', π(s')): for JAX `policy(actor_params, obs)` (pure; pass
`actor_params` to `step`) or `policy(obs)`; for torch an `nn.Module` actor or any callable on
tensors. Use the deterministic actor (the authors' choice, and the driver's).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from seemrl.diagnostics import probe as probe_lib
from seemrl.diagnostics.schedule import SeemSchedule
from seemrl.diagnostics.seem import _frobenius, top_eig
from seemrl.diagnostics.tracking import draw_probe
from seemrl.diagnostics.verdict import OnlineVerdict, Verdict, VerdictConfig
from seemrl.logging import Logger
from seemrl.networks import MLPConfig
from seemrl.types import Batch

DEFAULT_PROBE = 256


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """What `SeemMonitor.step` returns.

    step: the step passed in. measured: whether SEEM was measured at this call.
    verdict: the verdict so far (`Verdict`; `.fired`, `.step`, `.reason`, `.describe()`).
    metrics: the latest measurement's `seem/...` floats ({} before the first).
    measured_at: the step of `metrics`. diverged_at: the step Q passed the ceiling (or None).
    """

    step: int
    measured: bool
    verdict: Verdict
    metrics: Mapping[str, float]
    measured_at: int | None
    diverged_at: int | None

    @property
    def predicted(self) -> bool:
        return self.verdict.fired

    @property
    def predicted_at(self) -> int | None:
        return self.verdict.step

    @property
    def seem(self) -> float | None:
        """The latest normalised SEEM (None before the first measurement)."""
        return self.metrics.get("seem/normalized")

    def describe(self) -> str:
        """One line: the prediction and/or the fact, empty while neither happened."""
        parts = [self.verdict.describe()] if self.verdict.fired else []
        if self.diverged_at is not None:
            parts.append(f"Q passed the ceiling at step {self.diverged_at:,}")
        return "; ".join(parts)


def _as_batch(data) -> Batch:
    """A host `Batch` from a seemrl Dataset, a Batch, a mapping (D4RL or short keys) or a tuple
    (obs, act, rewards, next_obs, done)."""
    if isinstance(data, Batch):
        fields = (data.obs_tm1, data.a_tm1, data.r_t, data.obs_t, 1.0 - np.asarray(data.discount_t))
    elif hasattr(data, "observations"):  # seemrl.types.Dataset
        fields = (data.observations, data.actions, data.rewards, data.next_observations,
                  data.terminals)
    elif isinstance(data, Mapping):
        def pick(*names):
            for name in names:
                if name in data:
                    return data[name]
            raise KeyError(f"SeemMonitor data needs one of {names}")
        fields = (pick("observations", "obs"), pick("actions", "act", "action"),
                  pick("rewards", "reward", "rew"), pick("next_observations", "next_obs"),
                  pick("terminals", "done", "dones"))
    else:
        fields = tuple(data)
        if len(fields) != 5:
            raise ValueError("SeemMonitor data: a tuple (obs, act, rewards, next_obs, done)")
    obs, act, rew, next_obs, done = (np.asarray(_to_numpy(x), np.float32) for x in fields)
    # Host arrays: the probe is drawn from them, and only the probe goes to the device.
    return Batch(*cast(Any, (obs, act, rew.reshape(-1), next_obs, 1.0 - done.reshape(-1))))


def _to_numpy(x):
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return x


def _is_torch_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))


def _seem_on_host(A: np.ndarray) -> tuple[float, float]:
    """(max Re λ(A), normalised) with the driver's eigensolver; NaN for a non-finite A."""
    if not np.all(np.isfinite(A)):
        return float("nan"), float("nan")
    raw, fro = float(top_eig(A)[0].real), _frobenius(A)
    return raw, (raw / fro if fro > 0 else 0.0)


class _JaxBackend:
    """`probe.probe_metrics` compiled once; the policy's actions are computed outside it (so a
    stateful `policy(obs)` is read at each call, never baked into a compiled function)."""

    def __init__(self, critic, policy: Callable, probe: Batch, gamma: float, *,
                 head: int, mask_terminal: bool):
        self.critic, self.head = critic, head
        self.probe = jax.tree.map(jnp.asarray, probe)
        self._policy, self._policy2 = policy, jax.jit(policy)
        self.memory: probe_lib.ProbeMemory | None = None

        def measure(critic_params, actions, probe, memory):
            # probe_metrics asks the policy for π(s') and π(s) on these very arrays.
            table = {id(probe.obs_t): actions[0], id(probe.obs_tm1): actions[1]}
            return probe_lib.probe_metrics(critic, critic_params, lambda _, o: table[id(o)],
                                           None, probe, gamma, memory, head=head,
                                           mask_terminal=mask_terminal, host_eig=True)

        self._measure = jax.jit(measure)

    def finite(self, critic_params) -> bool:
        return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(critic_params))

    def measure(self, critic_params, actor_params) -> dict[str, float]:
        if critic_params is None:
            raise ValueError("a JAX critic needs step(t, critic_params, ...)")
        p = self.probe
        if actor_params is None:
            actions = (self._policy(p.obs_t), self._policy(p.obs_tm1))
        else:
            actions = (self._policy2(actor_params, p.obs_t), self._policy2(actor_params, p.obs_tm1))
        if self.memory is None:
            self.memory = probe_lib.init_memory(self.critic, critic_params, p, self.head)
        metrics, self.memory, A = self._measure(critic_params, actions, p, self.memory)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        metrics["seem/raw"], metrics["seem/normalized"] = _seem_on_host(np.asarray(A))
        return metrics


class _TorchBackend:
    """The same metrics for a live torch critic (`td_grams_torch`, float64 on the host)."""

    def __init__(self, module, policy: Callable, probe: Batch, gamma: float, *,
                 mask_terminal: bool):
        self.module, self.policy, self.gamma = module, policy, gamma
        self.probe, self.mask_terminal = probe, mask_terminal
        self._tensors = None
        self._prev: tuple | None = None   # (G(X, X), flat params, flat probe TD gradient)

    def _data(self):
        import torch

        like = next(self.module.parameters())
        if self._tensors is None or self._tensors[0].device != like.device:
            p = self.probe
            c = self.gamma * (np.asarray(p.discount_t) if self.mask_terminal
                              else np.ones_like(p.discount_t))
            self._tensors = tuple(torch.as_tensor(np.asarray(x), dtype=like.dtype,
                                                  device=like.device)
                                  for x in (p.obs_tm1, p.a_tm1, p.r_t, p.obs_t, c))
        return self._tensors

    def finite(self, _params=None) -> bool:
        import torch

        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in self.module.parameters())

    def measure(self, _critic_params=None, _actor_params=None) -> dict[str, float]:
        import torch

        from seemrl.diagnostics.torch import td_grams_torch

        module = self.module
        obs, act, rew, next_obs, c = self._data()
        with torch.no_grad():
            next_act, pi_act = self.policy(next_obs), self.policy(obs)
        A, g_xx, q_x = td_grams_torch(module, obs, act, next_obs, next_act, c)
        raw, normalized = _seem_on_host(A.cpu().numpy())
        nan = float("nan")
        params = [p for p in module.parameters() if p.requires_grad]
        with torch.enable_grad():
            # Target held fixed, as in the SEEM derivation (and probe_metrics).
            y = rew + c * module(next_obs, next_act).reshape(-1).detach()
            loss = 0.5 * torch.mean(torch.square(module(obs, act).reshape(-1) - y))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            flat_p = torch.cat([p.reshape(-1) for p in params]).double().cpu().numpy()
            flat_g = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                for g, p in zip(grads, params, strict=True)]
                               ).double().cpu().numpy()
            q_policy = float(module(obs, pi_act).reshape(-1).mean())
        g_xx = g_xx.cpu().numpy()
        prev = self._prev
        metrics = {
            "seem/normalized": normalized,
            "seem/raw": raw,
            "seem/q_data": float(q_x.mean()),
            "seem/q_policy": q_policy,
            "seem/param_norm": float(np.linalg.norm(flat_p)),
            "seem/ntk_cos": _cos(g_xx, prev[0]) if prev else nan,
            "seem/param_cos": _cos(flat_p, prev[1]) if prev else nan,
            "seem/grad_cos": _cos(flat_g, prev[2]) if prev else nan,
        }
        self._prev = (g_xx, flat_p, flat_g)
        return metrics


class SeemMonitor:
    """SEEM and the divergence verdict for a training loop you own (see module doc).

    Args:
      critic: a pure JAX q(params, obs, act) -> (N,), a seemrl `MLPConfig` (params are a
        `networks.Critic` ensemble), or a torch `nn.Module` module(obs, act) -> (N,) / (N, 1).
      data: your transitions: a seemrl `Dataset`, a `Batch`, a mapping with D4RL keys
        (observations, actions, rewards, next_observations, terminals) or short ones (obs,
        act, rewards, next_obs, done), or a tuple (obs, act, rewards, next_obs, done); NumPy,
        JAX or torch arrays. The probe is drawn from it once.
      gamma: the discount of your TD target.
      policy: X*'s actions: JAX policy(actor_params, obs) or policy(obs); torch: a module or
        any callable on tensors. Deterministic (no exploration noise).
      probe_size: transitions in the probe (all of `data` when smaller). 256, the driver's
        default. Against N = 2,560 on the
        examples' diverging critic (SEEM 0.79) ten probes of 256 erred by 0.07 on average
        (0.20 at most), far from the verdict's 0.05 threshold; on a LayerNorm critic by
        6e-5 (docs/MONITOR.md).
      seed: draws the probe; also the `seed` of logged records.
      ceiling: the |Q| that counts as diverged; default max|r|/(1 − γ) over `data` (None for
        γ ≥ 1). Pass the whole dataset's when `data` is a sample of it.
      schedule: when to measure (None: the driver's defaults). verdict: the rule's parameters
        (None: the defaults).
      mask_terminal: mask the γ term by (1 − done), as the driver does.
      head: the ensemble head measured (MLPConfig only).
      logger: a `seemrl.logging.Logger` (JSONL, TensorBoard, W&B): one record per measurement
        with the driver's keys (`step`, `seed`, `seem/...`, `verdict/predicted_at`, ...) and
        one carrying `diverged_at`; `verdict.replay` on them gives this monitor's verdict.
    """

    def __init__(self, critic, data, gamma: float, policy: Callable, *,
                 probe_size: int = DEFAULT_PROBE, seed: int = 0, ceiling: float | None = None,
                 schedule: SeemSchedule | None = None, verdict: VerdictConfig | None = None,
                 mask_terminal: bool = True,
                 head: int = 0, logger: Logger | None = None):
        schedule = SeemSchedule() if schedule is None else schedule
        verdict = VerdictConfig() if verdict is None else verdict
        batch = _as_batch(data)
        if ceiling is None and gamma < 1.0:
            # As train.q_ceiling: the largest |discounted return| these rewards allow.
            ceiling = float(np.max(np.abs(batch.r_t)) / (1.0 - gamma))
        self.gamma, self.ceiling, self.seed = gamma, ceiling, seed
        self.schedule, self.logger = schedule, logger
        self.probe = draw_probe(batch, probe_size, seed)
        if _is_torch_module(critic):
            self._backend: _TorchBackend | _JaxBackend = _TorchBackend(
                critic, policy, self.probe, gamma, mask_terminal=mask_terminal)
        elif isinstance(critic, MLPConfig) or callable(critic):
            self._backend = _JaxBackend(critic, policy, self.probe, gamma, head=head,
                                        mask_terminal=mask_terminal)
        else:
            raise TypeError(f"SeemMonitor: unsupported critic {type(critic).__name__}")
        self._verdict = OnlineVerdict(verdict, ceiling)
        self._next = schedule.next_after(0)
        self.metrics: dict[str, float] = {}
        self.measured_at: int | None = None
        self.diverged_at: int | None = None
        self.measurements = 0
        self.seconds = 0.0
        """Wall-clock time spent measuring (the monitor's cost)."""

    @property
    def verdict(self) -> Verdict:
        return self._verdict.result

    def step(self, t: int, critic_params=None, actor_params=None, *,
             q_mean: float | None = None) -> MonitorResult:
        """Call once per training step, after the update; measures when the schedule says.

        Args:
          t: updates done so far (the first measurement is at t = 50 by default). Steps may be
            skipped: a measurement due at or before t is made at t.
          critic_params: the current critic parameters (JAX critics; a torch module is read
            live).
          actor_params: the actor parameters for a JAX policy(actor_params, obs).
          q_mean: optional mean Q of your training batch; a non-finite value or one past the
            ceiling marks `diverged_at` between measurements, as the driver does with its
            `train/q_mean`.

        Returns:
          MonitorResult.
        """
        t = int(t)
        if self.diverged_at is None and q_mean is not None:
            q = float(q_mean)
            if not math.isfinite(q) or (self.ceiling is not None and abs(q) > self.ceiling):
                self._diverge(t)
        measured = False
        if self.diverged_at is None and self._next is not None and t >= self._next:
            self._next = self.schedule.next_after(t)
            start = time.perf_counter()
            if not self._backend.finite(critic_params):
                self._diverge(t)
            else:
                self._measure(t, critic_params, actor_params)
                measured = True
            self.seconds += time.perf_counter() - start
        return MonitorResult(t, measured, self.verdict, dict(self.metrics), self.measured_at,
                             self.diverged_at)

    def _measure(self, t: int, critic_params, actor_params) -> None:
        metrics = self._backend.measure(critic_params, actor_params)
        self.measurements += 1
        self.metrics, self.measured_at = metrics, t
        fired_before = self.verdict.fired
        result = self._verdict.update(t, metrics)
        record: dict[str, Any] = {"step": t, "seed": self.seed, **metrics}
        if result.fired and not fired_before:
            record["verdict/predicted_at"] = result.step
            record["verdict/reason"] = result.reason
        q = metrics["seem/q_data"]
        if not math.isfinite(q) or (self.ceiling is not None and abs(q) >= self.ceiling):
            self._diverge(t, record)
        elif self.logger is not None:
            self.logger.log([record])

    def _diverge(self, t: int, record: dict[str, Any] | None = None) -> None:
        self.diverged_at = t
        self._verdict.diverged()
        if self.logger is not None:
            self.logger.log([{**(record or {"step": t, "seed": self.seed}), "diverged_at": t}])
