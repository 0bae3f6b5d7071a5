"""SeemMonitor in a PyTorch TD3 loop written the way CORL writes one (single file, top to bottom).

The setting diverges without LayerNorm (SPEC §5.1, the paper's SEEM-surge runs): TD3 with no
BC term, a hard target copy (τ = 1) at every actor step, γ 0.99, Adam 3e-4, on 1 % of
hopper-medium. The monitor warns before Q passes the ceiling max|r|/(1 − γ); with
`--layer-norm` (Linear → LayerNorm → ReLU in the critics, the paper's fix) it stays quiet.

    python examples/torch_td3.py                 # predicted, then Q passes the ceiling
    python examples/torch_td3.py --layer-norm    # no prediction, no divergence

Deviations from CORL's TD3+BC: bc weight 0 (the actor maximises λ·Q only), τ = 1, a 1 % subset.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seemrl.data import load_dataset
from seemrl.data.subset import subset
from seemrl.diagnostics import SeemMonitor

LOCAL_COPY = "~/.seemrl/datasets/hopper-medium-v0.hdf5"


def mlp(in_dim: int, out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    layers, d = [], in_dim
    for _ in range(2):
        layers += [nn.Linear(d, 256)] + ([nn.LayerNorm(256)] if layer_norm else []) + [nn.ReLU()]
        d = 256
    return nn.Sequential(*layers, nn.Linear(d, out_dim))


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, max_action: float):
        super().__init__()
        self.net, self.max_action = mlp(obs_dim, act_dim), max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(obs))


class Critic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, layer_norm: bool):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, layer_norm)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)


def load(path: str, fraction: float, seed: int):
    """1 % of hopper-medium, states z-normalised (std + 1e-3, as TD3+BC)."""
    local = os.path.expanduser(path)
    data = subset(load_dataset(local if os.path.exists(local) else "hopper-medium"),
                  fraction, seed)
    mean, std = data.observations.mean(0), data.observations.std(0) + 1e-3
    return {"obs": (data.observations - mean) / std, "act": data.actions,
            "rewards": data.rewards, "next_obs": (data.next_observations - mean) / std,
            "done": data.terminals}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer-norm", action="store_true", help="LayerNorm in the critics")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--dataset", default=LOCAL_COPY, help="D4RL file (else built-in hopper-medium)")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-monitor", action="store_true", help="train only (to time the loop)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = load(args.dataset, args.fraction, args.seed)
    t = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in data.items()}
    n, obs_dim, act_dim = len(t["obs"]), t["obs"].shape[1], t["act"].shape[1]
    gamma, max_action, policy_noise, noise_clip, alpha = 0.99, 1.0, 0.2, 0.5, 2.5

    actor = Actor(obs_dim, act_dim, max_action)
    critic_1, critic_2 = (Critic(obs_dim, act_dim, args.layer_norm) for _ in range(2))
    actor_t, critic_1_t, critic_2_t = (copy.deepcopy(m) for m in (actor, critic_1, critic_2))
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    critic_opt = torch.optim.Adam([*critic_1.parameters(), *critic_2.parameters()], lr=3e-4)

    # The monitor: critic 1 (the one the actor follows), the deterministic actor, your data.
    monitor = SeemMonitor(critic_1, data, gamma, policy=actor, seed=args.seed)
    print(f"{n:,} transitions, Q ceiling max|r|/(1-γ) = {monitor.ceiling:.1f}")
    predicted_at = diverged_at = None
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n, (256,))
        obs, act, rew, next_obs, done = (t[k][idx] for k in
                                         ("obs", "act", "rewards", "next_obs", "done"))
        with torch.no_grad():
            noise = (torch.randn_like(act) * policy_noise).clamp(-noise_clip, noise_clip)
            next_act = (actor_t(next_obs) + noise).clamp(-max_action, max_action)
            target_q = torch.min(critic_1_t(next_obs, next_act), critic_2_t(next_obs, next_act))
            target_q = rew + gamma * (1.0 - done) * target_q
        q1, q2 = critic_1(obs, act), critic_2(obs, act)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()

        if step % 2 == 0:  # delayed actor update; no BC term (the setting that diverges)
            q = critic_1(obs, actor(obs))
            actor_loss = -(alpha / q.abs().mean().detach()) * q.mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            for net, target in ((actor, actor_t), (critic_1, critic_1_t), (critic_2, critic_2_t)):
                target.load_state_dict(net.state_dict())  # τ = 1: a hard copy

        if args.no_monitor:
            continue
        out = monitor.step(step, q_mean=q1.mean().item())
        if out.predicted and predicted_at is None:
            predicted_at = out.predicted_at
            print(f"step {step}: {out.verdict.describe()}  (mean Q on the probe "
                  f"{out.metrics['seem/q_data']:.1f})")
        if out.diverged_at is not None:
            diverged_at = out.diverged_at
            print(f"step {step}: Q passed the ceiling {monitor.ceiling:.1f} "
                  f"(batch mean Q {q1.mean().item():.3g})")
            break
    seconds = time.perf_counter() - start
    print(f"predicted_at={predicted_at} diverged_at={diverged_at} after {step} steps; "
          f"{seconds:.1f} s, of which the monitor {monitor.seconds:.1f} s "
          f"({monitor.measurements} measurements)")
    return {"predicted_at": predicted_at, "diverged_at": diverged_at, "steps": step,
            "seconds": seconds, "monitor_seconds": monitor.seconds,
            "measurements": monitor.measurements, "latest": dict(monitor.metrics)}


if __name__ == "__main__":
    main()
