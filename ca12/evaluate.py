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

from ca12.cli import OneLineParser, check_writable, out_of_memory, quiet_libraries, run_command
from ca12.errors import UsageError
from ca12.untrusted import is_env_factory, name_env_factory


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m ca12.evaluate", description="Evaluate a ca12 checkpoint.")
    parser.add_argument(
        "args",
        nargs="*",
        metavar="PATH | env.KEY=VALUE",
        help="a checkpoint file or a run directory (its checkpoints/last.ckpt); with --baseline: env overrides",
    )
    parser.add_argument("--baseline", default=None, metavar="NAME", help="evaluate the env family's baseline policy NAME instead of a checkpoint")
    parser.add_argument(
        "--env", default=None, metavar="FAMILY/TASK", help="with --baseline: the env; with a run of your own env: its factory MODULE:FUNCTION"
    )
    parser.add_argument(
        "--opponent",
        default=None,
        metavar="NAME",
        help="a board game's run (pettingzoo/tictactoe, connect_four): play --episodes games against random, minimax:N or perfect",
    )
    parser.add_argument("--seed", type=int, default=0, help="with --baseline: the seed a run would have (evaluation uses it as a run's does)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: the run's eval.episodes)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=True,
        help="act with the policy's mode, as training's evaluation does (the default)",
    )
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions from the policy instead")
    parser.add_argument("--video", type=Path, default=None, metavar="PATH", help="write the first episode as a GIF")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = build_parser().parse_args(argv)
        if args.env is not None and is_env_factory(args.env):
            name_env_factory(args.env)  # the user's own code, named by their command
        if args.video is not None:
            check_writable(args.video, "--video", directory=False)
        quiet_libraries()
        from ca12.run.score import evaluate, evaluate_against, evaluate_baseline  # torch, TorchRL: after the arguments were read

        try:
            if args.baseline is not None:
                if args.opponent is not None:
                    raise UsageError("--opponent plays a trained run's policy; a baseline has no seat to fill (leave one out)")
                if args.env is None:
                    raise UsageError("--baseline needs --env FAMILY/TASK")
                result = evaluate_baseline(args.baseline, args.env, args.args, args.seed, args.episodes, args.video)
                title, extra = f"{result.episodes} episodes of the {args.baseline} baseline on {args.env}", {"baseline": args.baseline}
            else:
                if args.env is not None and not is_env_factory(args.env):
                    raise UsageError("--env goes with --baseline, or names the factory of a run's own env (--env MODULE:FUNCTION)")
                if len(args.args) != 1:
                    raise UsageError("give one checkpoint or run directory (or --baseline NAME --env FAMILY/TASK)")
                if args.opponent is not None:
                    match, saved = evaluate_against(Path(args.args[0]), args.opponent, args.episodes)
                    report_match(match, saved, args)
                    return
                result, saved = evaluate(Path(args.args[0]), args.episodes, args.deterministic, args.video)
                title = f"{result.episodes} episodes after {saved['frames']} training frames ({saved['iterations']} iterations)"
                extra = {"frames": saved["frames"]}
        except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not out_of_memory(exc):
                raise
            asked = f"--episodes {args.episodes}" if args.episodes is not None else "the run's eval.episodes"
            raise UsageError(f"out of memory ({type(exc).__name__}) with {asked}, one env world each: lower --episodes") from None
        report(result, title, extra, args)

    return run_command("ca12.evaluate", body)


def report_match(match, saved: dict, args) -> None:
    """Win, draw and loss rates against an opponent: one JSON line (`--json`) or a few lines."""
    if args.json:
        print(json.dumps({**match.metrics(), "games": match.games, "opponent": match.opponent, "frames": saved["frames"]}))
        return
    print(f"{match.games} games against {match.opponent} after {saved['frames']} training frames (half moving first)")
    for seat, (win, draw, loss) in match.outcomes.items():
        label = {"all": "all games", "first": "moving first", "second": "moving second"}[seat]
        print(f"{label:<14} win {100 * win:5.1f} %  draw {100 * draw:5.1f} %  loss {100 * loss:5.1f} %")


def report(result, title: str, extra: dict, args) -> None:
    """The evaluation on stdout: one JSON line (`--json`) or a few lines for a reader."""
    if args.json:
        print(json.dumps({**result.metrics(), "episodes": result.episodes, **extra}))
        return
    print(title)
    print(f"episode return: {result.episode_reward_mean:.4f} +- {result.episode_reward_std:.4f}")
    for i, value in enumerate(result.per_agent_reward_mean):
        print(f"  agent {i}: {value:.4f}")
    for stat, (mean, std) in result.stats.items():
        print(f"{stat}: {mean:.4f} +- {std:.4f}")
    if args.video is not None:
        print(f"video: {args.video}")


if __name__ == "__main__":
    sys.exit(main())
