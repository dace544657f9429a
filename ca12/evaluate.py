"""`python -m ca12.evaluate`: evaluation episodes of a trained checkpoint.

    python -m ca12.evaluate CHECKPOINT_OR_RUN_DIR [--episodes N] [--stochastic] [--video PATH]
    python -m ca12.evaluate --baseline NAME --env FAMILY/TASK [--seed S] [env.KEY=VALUE ...]

Rebuilds the run's env and algorithm from the config stored in the checkpoint, loads the
weights, and prints the mean and std of the episode return (over episodes, of the agents' mean)
and each agent's mean return. It runs the same `Evaluator` as the training-time evaluation, with
the same seed and, by default, the same deterministic actions (the policy's mode) as training's
evaluation, so `--episodes` as in the run's `eval` config reproduces
the logged `eval/episode_reward_mean`.

`--baseline NAME` evaluates instead one of the classical policies an env family offers (its
module's `BASELINES`: name -> factory(env) -> policy, e.g. market/allocation's `greedy` and
`optimal`) through the same `Evaluator`, on the same episodes a run's evaluation with that seed
sees, so a baseline and a trained policy are compared on equal terms. The env's episode
statistics (`("stats", name)`: waiting times, costs, success rates) are printed with the return.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ca12.errors import UsageError
from ca12.fit import OneLineParser, _out_of_memory, check_writable, quiet_libraries


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m ca12.evaluate", description="Evaluate a ca12 checkpoint.")
    parser.add_argument("args", nargs="*", metavar="PATH | env.KEY=VALUE",
                        help="a checkpoint file or a run directory (its checkpoints/last.ckpt); with --baseline: env overrides")
    parser.add_argument("--baseline", default=None, metavar="NAME", help="evaluate the env family's baseline policy NAME instead of a checkpoint")
    parser.add_argument("--env", default=None, metavar="FAMILY/TASK", help="with --baseline: the env")
    parser.add_argument("--seed", type=int, default=0, help="with --baseline: the seed a run would have (evaluation uses it as a run's does)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: the run's eval.episodes)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                      help="act with the policy's mode, as training's evaluation does (the default)")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions from the policy instead")
    parser.add_argument("--video", type=Path, default=None, metavar="PATH", help="write the first episode as a GIF")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def _episodes(cfg, episodes: int | None) -> int:
    """`--episodes`, or the config's `eval.episodes`; refused unless positive, or when its rollout
    cannot fit in memory (`check_rollout_fits`, one world an episode; not checked up to the
    config's own `eval.episodes`, which runs evaluate with)."""
    from ca12.evaluation import check_rollout_fits

    if episodes is not None and episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {episodes}")
    if episodes is None or episodes <= cfg.eval.episodes:
        return cfg.eval.episodes if episodes is None else episodes
    check_rollout_fits(cfg.env, episodes, cfg.seed)
    return episodes


def _run(evaluator, policy, video: Path | None, trace: bool = False):
    """`evaluator`'s episodes with `policy`, the first written to `video` as a GIF when asked
    (`trace`: keep the first step by step, `EvalResult.trace`); a video of an env that cannot
    render is refused before any episode runs."""
    from ca12.envs import family_renders
    from ca12.evaluation import save_gif

    family = evaluator.env_cfg.family
    if video is not None and not family_renders(family):
        raise UsageError(f"--video: {family}/{evaluator.env_cfg.task} cannot render (the {family} family draws no frames); leave --video out")
    result = evaluator.run(policy, render=video is not None, trace=trace)
    if video is not None:
        save_gif(result.frames, video)
    return result


def load_policy(path: Path):
    """(module, run config, the checkpoint's ca12 section) of the checkpoint at `path` (file or run
    directory), the module's weights loaded, on the CPU (`ca12.loading.load_module`)."""
    from ca12.loading import load_module

    module, cfg, checkpoint = load_module(path)
    return module, cfg, checkpoint["ca12"]


def evaluate(path: Path, episodes: int | None = None, deterministic: bool = True, video: Path | None = None, trace: bool = False):
    """Load the checkpoint at `path` (file or run directory) and run evaluation episodes."""
    from ca12.evaluation import Evaluator

    module, cfg, saved = load_policy(path)
    evaluator = Evaluator(cfg.env, _episodes(cfg, episodes), cfg.seed, deterministic, cfg.algo.groups, module.env_transforms())
    module.to(evaluator.env.device)
    return _run(evaluator, module.policy, video, trace), saved


def evaluate_baseline(name: str, env: str, overrides: list[str], seed: int = 0, episodes: int | None = None, video: Path | None = None,
                      trace: bool = False):
    """Run `env`'s baseline policy `name` (its family's `BASELINES`) through the `Evaluator` a
    run with `seed` would use; `overrides` are `env.KEY=VALUE` settings."""
    from ca12.config import load_config
    from ca12.envs import family_baselines
    from ca12.evaluation import Evaluator

    if "/" not in env:
        raise UsageError(f"--env expects FAMILY/TASK, got {env!r}")
    not_env = [text for text in overrides if not text.startswith("env.")]
    if not_env:
        raise UsageError(f"a baseline takes env settings only (env.KEY=VALUE), got {not_env[0]!r}")
    baselines = family_baselines(env.split("/")[0])
    if name not in baselines:
        offered = ", ".join(sorted(baselines)) or "none"
        raise UsageError(f"unknown baseline {name!r} for {env}; its family offers: {offered}")
    cfg = load_config("mappo", env, overrides, seed)  # the env section as a run of any algorithm composes it
    evaluator = Evaluator(cfg.env, _episodes(cfg, episodes), cfg.seed, deterministic=True)
    return _run(evaluator, baselines[name](evaluator.env), video, trace)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.video is not None:
            check_writable(args.video, "--video", directory=False)
        quiet_libraries()
        if args.baseline is not None:
            if args.env is None:
                raise UsageError("--baseline needs --env FAMILY/TASK")
            result = evaluate_baseline(args.baseline, args.env, args.args, args.seed, args.episodes, args.video)
            title, extra = f"{result.episodes} episodes of the {args.baseline} baseline on {args.env}", {"baseline": args.baseline}
        else:
            if args.env is not None:
                raise UsageError("--env goes with --baseline; a checkpoint names its own env")
            if len(args.args) != 1:
                raise UsageError("give one checkpoint or run directory (or --baseline NAME --env FAMILY/TASK)")
            result, saved = evaluate(Path(args.args[0]), args.episodes, args.deterministic, args.video)
            title = f"{result.episodes} episodes after {saved['frames']} training frames ({saved['iterations']} iterations)"
            extra = {"frames": saved["frames"]}
    except UsageError as exc:
        print(f"ca12.evaluate: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not _out_of_memory(exc):
            raise
        asked = f"--episodes {args.episodes}" if args.episodes is not None else "the run's eval.episodes"
        print(f"ca12.evaluate: error: out of memory ({type(exc).__name__}) with {asked}, one env world each: lower --episodes", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.metrics(), "episodes": result.episodes, **extra}))
        return 0
    print(title)
    print(f"episode return: {result.episode_reward_mean:.4f} +- {result.episode_reward_std:.4f}")
    for i, value in enumerate(result.per_agent_reward_mean):
        print(f"  agent {i}: {value:.4f}")
    for stat, (mean, std) in result.stats.items():
        print(f"{stat}: {mean:.4f} +- {std:.4f}")
    if args.video is not None:
        print(f"video: {args.video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
