"""`python -m ca12.evaluate`: evaluation episodes of a trained checkpoint.

    python -m ca12.evaluate CHECKPOINT_OR_RUN_DIR [--episodes N] [--stochastic] [--video PATH]

Rebuilds the run's env and algorithm from the config stored in the checkpoint, loads the
weights, and prints the mean and std of the episode return (over episodes, of the agents' mean)
and each agent's mean return. It runs the same `Evaluator` as the training-time evaluation, with
the same seed and, by default, the same deterministic actions (the policy's mode) as training's
evaluation, so `--episodes` as in the run's `eval` config reproduces
the logged `eval/episode_reward_mean`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ca12.errors import UsageError
from ca12.fit import OneLineParser, quiet_libraries


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m ca12.evaluate", description="Evaluate a ca12 checkpoint.")
    parser.add_argument("path", type=Path, help="a checkpoint file, or a run directory (its checkpoints/last.ckpt)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: the run's eval.episodes)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                      help="act with the policy's mode, as training's evaluation does (the default)")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions from the policy instead")
    parser.add_argument("--video", type=Path, default=None, metavar="PATH", help="write the first episode as a GIF")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def evaluate(path: Path, episodes: int | None = None, deterministic: bool = True, video: Path | None = None):
    """Load the checkpoint at `path` (file or run directory) and run evaluation episodes."""
    from omegaconf import OmegaConf

    from ca12.algos import algo_class
    from ca12.checkpoints import read_checkpoint
    from ca12.envs import make_spec_env
    from ca12.evaluation import Evaluator, save_gif
    from ca12.seeding import isolated_rng

    ckpt_path = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    checkpoint = read_checkpoint(ckpt_path)
    saved = checkpoint["ca12"]
    cfg = OmegaConf.create(saved["run_config"])
    episodes = cfg.eval.episodes if episodes is None else episodes
    if episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {episodes}")
    with isolated_rng():
        module = algo_class(cfg.algo.name)(cfg, make_spec_env(cfg.env, cfg.seed))
    evaluator = Evaluator(cfg.env, episodes, cfg.seed, deterministic, cfg.algo.groups, module.env_transforms())
    module.load_state_dict(checkpoint["state_dict"])
    module.to(evaluator.env.device)
    result = evaluator.run(module.policy, render=video is not None)
    if video is not None:
        save_gif(result.frames, video)
    return result, saved


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        quiet_libraries()
        result, saved = evaluate(args.path, args.episodes, args.deterministic, args.video)
    except UsageError as exc:
        print(f"ca12.evaluate: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.metrics(), "episodes": result.episodes, "frames": saved["frames"]}))
        return 0
    print(f"{result.episodes} episodes after {saved['frames']} training frames ({saved['iterations']} iterations)")
    print(f"episode return: {result.episode_reward_mean:.4f} +- {result.episode_reward_std:.4f}")
    for i, value in enumerate(result.per_agent_reward_mean):
        print(f"  agent {i}: {value:.4f}")
    if args.video is not None:
        print(f"video: {args.video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
