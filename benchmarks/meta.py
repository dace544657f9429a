"""MAML against fine-tuning on held-out navigation goals (Finn et al. 2017, figure 4's setting).

Trains, with `ca12.fit` on `meta/navigation`:
    * maml: MAML-RL (conf/algo/maml.yaml), k = algo.inner_steps inner policy-gradient steps;
    * pretrained: the same module with algo.inner_steps=0 (plain policy gradient on random
      tasks, the paper's multi-task "pretrained" baseline), for the same number of env steps;
and compares, on the same held-out tasks and the same sampled noise (one generator seed for all
rows), the return before adaptation and after each of `--eval-steps` inner steps (inner_lr,
`env.num_envs` episodes per task and step, as in training) from
    * maml's initialisation, pretrained's, and a freshly initialised policy (from scratch).
Prints a table with the returns, MAML's margin over from-scratch fine-tuning after k steps, and
the budget. Short run (a few minutes on 2 CPU cores):

    .venv/bin/python benchmarks/meta.py --frames 320000
Full run (conf/algo/maml.yaml's 1.6 M frames, 100 iterations each):

    .venv/bin/python benchmarks/meta.py                      # k = 1
    .venv/bin/python benchmarks/meta.py --inner-steps 3      # k = 3 (50 meta-updates in the same budget)

Measured (full runs, OMP_NUM_THREADS=1, about a minute each on 2 CPU cores), returns after k steps:
    k = 1, seed 0:       maml -3.19, pretrained -5.71, scratch -6.79 (maml +3.60 over scratch);
                         MAML's adapted policy is tuned for one step: after 3 steps it has -3.16
                         against pretrained's -2.45.
    k = 3, seeds 0/1/2:  maml -2.13 / -2.27 / -2.19, pretrained -2.45 / -2.46 / -2.44, scratch
                         -5.41 / -5.37 / -5.19 (maml +3.28 / +3.09 / +3.00 over scratch, +0.32 /
                         +0.19 / +0.25 over pretrained), and ahead of both after every step.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ca12.algos.maml import MAML
from ca12.envs import make_spec_env
from ca12.fit import main
from ca12.run.config import load_config
from ca12.run.rundir import load_module

HELD_OUT_SEED = 987_654_321  # far from every training stream ((seed + 7919 r) * 1_000_003 + iteration)


def train(run_dir: Path, frames: int, seed: int, extra: list[str]) -> MAML:
    """Train with ca12.fit and return the module with its final weights."""
    args = [
        "--algo",
        "maml",
        "--env",
        "meta/navigation",
        "--run-dir",
        str(run_dir),
        "--seed",
        str(seed),
        "logger=csv",
        "eval.every_n_iters=0",
        f"collector.total_frames={frames}",
        *extra,
    ]
    if main(args) != 0:
        raise SystemExit(f"training failed: {' '.join(args)}")
    return load(run_dir / "checkpoints" / "last.ckpt")


def load(checkpoint: Path) -> MAML:
    return load_module(checkpoint)[0]


def evaluate(module: MAML, evaluator: MAML, tasks: int, steps: int) -> list[float]:
    """Mean return over `tasks` held-out tasks before and after each of `steps` inner steps from
    `module`'s weights, adapted with `evaluator`'s settings (inner_lr, episodes per step)."""
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    held_out = evaluator.family.sample(tasks, generator)
    params = {name: p.detach() for name, p in module.actor.named_parameters()}
    return evaluator.adaptation_returns(held_out, generator, steps, params).tolist()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_600_000, help="training env steps of each method")
    parser.add_argument("--tasks", type=int, default=100, help="held-out tasks")
    parser.add_argument("--eval-steps", type=int, default=3, help="inner steps at evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--inner-steps",
        type=int,
        default=1,
        help="MAML's k in training (algo.inner_steps); an iteration then costs meta_batch x (k + 1) x worlds x horizon env steps",
    )
    parser.add_argument(
        "--scratch-seed",
        type=int,
        default=None,
        help="seed of the freshly initialised policy (default --seed: the initialisation maml's training started from)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        k, shipped = args.inner_steps, load_config("maml", "meta/navigation")
        round_frames = shipped.algo.meta_batch * shipped.env.num_envs * shipped.env.max_steps  # one rollout round; an iteration takes k + 1
        maml = train(Path(tmp) / "maml", args.frames, args.seed, [f"algo.inner_steps={k}", f"collector.frames_per_batch={round_frames * (k + 1)}"])
        # Half an iteration's cost without the inner episodes: frames_per_batch follows the budget.
        cfg = maml.cfg
        per_iteration = cfg.meta_batch * maml.worlds * maml.family.horizon
        pretrained = train(Path(tmp) / "pretrained", args.frames, args.seed, ["algo.inner_steps=0", f"collector.frames_per_batch={per_iteration}"])
    run_config = OmegaConf.create(maml.run_config)
    torch.manual_seed(args.seed if args.scratch_seed is None else args.scratch_seed)  # as ca12.fit seeds before building the module
    scratch = MAML(run_config, make_spec_env(run_config.env, run_config.seed))
    rows = {
        name: evaluate(module, maml, args.tasks, args.eval_steps)
        for name, module in (("maml", maml), ("pretrained", pretrained), ("scratch", scratch))
    }

    k = cfg.inner_steps
    header = "| method | " + " | ".join(["before"] + [f"after {j} step{'s' if j > 1 else ''}" for j in range(1, args.eval_steps + 1)]) + " |"
    print(
        f"\nmeta/navigation, {args.tasks} held-out goals, inner_lr {cfg.inner_lr}, {maml.worlds} episodes of "
        f"{maml.family.horizon} steps per task and inner step; training: {args.frames} env steps per method "
        f"(maml: {args.frames // maml._frames_per_iteration} meta-updates with k={k}; pretrained: "
        f"{args.frames // per_iteration} policy-gradient updates)\n"
    )
    print(header)
    print("|" + "---|" * (args.eval_steps + 2))
    for name, returns in rows.items():
        print(f"| {name} | " + " | ".join(f"{r:.3f}" for r in returns) + " |")
    margin = rows["maml"][k] - rows["scratch"][k]
    print(f"\nmargin after k={k} step(s): maml - scratch = {margin:+.3f}, maml - pretrained = {rows['maml'][k] - rows['pretrained'][k]:+.3f}")


if __name__ == "__main__":
    run()
