"""What Lightning costs off-policy: ca12's MADDPG or MASAC against a plain TorchRL replay loop at
identical work.

    python benchmarks/vs_torchrl_offpolicy.py [--algo maddpg|masac] [--rounds 2] [--iters 4]
                                              [--updates 1000] [--minibatch 128] [--device cpu]

The work is BenchMARL's off-policy VMAS work (the GPU issue's reference): per iteration 6 000
frames from 60 navigation envs, written to the replay buffer, then `--updates` minibatches of
`--minibatch` transitions, each one Adam step of every optimiser (critic and actor; MASAC also
the temperature) and a soft target update; lr 5e-5, gamma 0.9, gradient norm clipped at 5.

The plain loop is what a TorchRL user writes by hand: `Collector` + `TensorDictReplayBuffer` +
TorchRL's `DDPGLoss` / `SACLoss` + Adam + `clip_grad_norm_` + `SoftUpdate`, no Lightning, no
checkpoints, no NaN guard. It uses ca12's networks and loss modules, so both sides run the same
maths. ca12 is the real `python -m ca12.fit` path (Lightning Trainer, ReplayDataModule,
metrics.csv, a checkpoint every iteration (the buffer's changed segments), the NaN guard). Runs
alternate (plain, ca12, ...); every run's first iteration is warm-up and dropped.
Prints seconds per iteration (median over rounds of each run's mean) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.nn.utils import clip_grad_norm_
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from vs_torchrl import ca12_fit, report, timed_batches  # the sibling script: run from anywhere, benchmarks/ is on sys.path

from ca12.algos import algo_class
from ca12.data.replay import replay_view
from ca12.envs import make_env, make_spec_env
from ca12.run.config import load_config

FRAMES, ENVS = 6000, 60


def overrides(args) -> list[str]:
    lr = ["algo.actor_lr=5e-5", "algo.critic_lr=5e-5"] + (["algo.alpha_lr=5e-5"] if args.algo == "masac" else [])
    return [
        f"env.num_envs={ENVS}",
        f"env.device={args.device}",
        f"collector.frames_per_batch={FRAMES}",
        f"collector.total_frames={FRAMES * args.iters}",
        f"algo.updates_per_frame={args.updates / FRAMES}",
        f"algo.minibatch_size={args.minibatch}",
        f"algo.buffer_device={args.device}",
        "algo.warmup_frames=0",
        "algo.gamma=0.9",
        "algo.max_grad_norm=5.0",
        *lr,
        "eval.every_n_iters=0",
        f"checkpoint.every_n_iters={args.iters}",
    ]


def plain_torchrl(args, seed: int) -> list[float]:
    """Seconds per iteration of a hand-written TorchRL replay loop (ca12's nets and loss module)."""
    cfg = load_config(args.algo, "vmas/navigation", overrides(args))
    torch.manual_seed(seed)
    module = algo_class(args.algo)(cfg, make_spec_env(cfg.env, seed)).to(args.device)
    loss = module.loss_module
    groups = [loss.actor_network_params, loss.value_network_params if args.algo == "maddpg" else loss.qvalue_network_params]
    optimisers = [torch.optim.Adam(list(p.values(True, True)), lr=5e-5) for p in groups]
    if args.algo == "masac":
        optimisers.append(torch.optim.Adam([loss.log_alpha], lr=5e-5))
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(cfg.algo.buffer_size, device=args.device), batch_size=args.minibatch)
    collector = Collector(
        make_env(cfg.env, seed),
        module.policy,
        frames_per_batch=FRAMES,
        total_frames=FRAMES * args.iters,
        reset_at_each_iter=True,
        auto_register_policy_transforms=False,
    )

    def step(optimiser, term: torch.Tensor) -> None:
        optimiser.zero_grad(set_to_none=True)
        term.backward()
        clip_grad_norm_([p for group in optimiser.param_groups for p in group["params"]], 5.0)
        optimiser.step()

    times = []
    for batch in timed_batches(collector, times):
        buffer.extend(replay_view(batch).reshape(-1))
        if getattr(module, "exploration", None) is not None:  # MADDPG's annealed action noise
            module.exploration.step(batch.numel())
        for _ in range(args.updates):
            sample = module.prepare(buffer.sample())
            if args.algo == "maddpg":
                step(optimisers[1], loss.loss_value(sample)[0])
                step(optimisers[0], loss.loss_actor(sample)[0])
            else:
                out = loss(sample)
                for optimiser, key in zip(optimisers, ("loss_actor", "loss_qvalue", "loss_alpha")):
                    step(optimiser, out[key])
            module.target_updater.step()
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("maddpg", "masac"), default="maddpg")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--updates", type=int, default=1000, help="Adam steps (of each optimiser) per iteration")
    parser.add_argument("--minibatch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    plain, ours = [], []
    for round_ in range(args.rounds):
        plain.append(statistics.mean(plain_torchrl(args, seed=round_)))
        ours.append(statistics.mean(ca12_fit(args.algo, overrides(args), args.device, seed=round_)))
    print(
        f"\n{args.algo.upper()} vmas/navigation on {args.device}: {ENVS} envs, {FRAMES} frames + {args.updates} updates of "
        f"{args.minibatch} per iteration; median of {args.rounds} rounds x {args.iters - 1} timed iterations"
    )
    report(plain, ours, "updates/s", args.updates)


if __name__ == "__main__":
    main()
