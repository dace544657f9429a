"""Turn-based games by self-play: MAPPO's one network playing both seats of tic-tac-toe and connect
four, then measured against classical players from both seats.

    python benchmarks/turn_based.py                             # both games, seeds 0 1 2
    python benchmarks/turn_based.py --game tictactoe --frames 300000 --seed 0
    python benchmarks/turn_based.py --game connect_four --set algo.entropy_coeff=0.01

Each run is a real `python -m ca12.fit --algo mappo --env pettingzoo/<game>` in this process
(`collector.total_frames` from `--frames`, then any `--set`); its policy then plays
`python -m ca12.evaluate RUN --opponent NAME` matches (ca12/selfplay/opponents.py: half the games
moving first, acting with the policy's mode) against `random`, `minimax:2` and, for tic-tac-toe,
`perfect` (searched to the end). Prints each run's win / draw / loss rates per opponent and,
per game, each claim (#35) next to its threshold over the seeds:
- tic-tac-toe: never loses to the perfect player (loss rate 0 from either seat);
- connect four: beats a random player in at least 95 % of the games and the depth-2 minimax
  player in most (win rate above 50 %).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ca12.fit import main as fit_main
from ca12.run.score import evaluate_against

GAMES = {
    "tictactoe": {"frames": 300_000, "opponents": ("random", "minimax:2", "perfect"), "games": 200},
    "connect_four": {"frames": 1_000_000, "opponents": ("random", "minimax:2"), "games": 200},
}


def run(game: str, seed: int, frames: int, extra: list[str]) -> tuple[dict, float]:
    """(opponent -> match result, seconds of training) of one seed's self-play run."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = ["--algo", "mappo", "--env", f"pettingzoo/{game}", "--seed", str(seed), "--run-dir", str(run_dir)]
        start = time.perf_counter()
        if fit_main([*argv, "logger=csv", "eval.every_n_iters=0", f"collector.total_frames={frames}", *extra]) != 0:
            raise SystemExit(f"mappo on pettingzoo/{game} failed")
        seconds = time.perf_counter() - start
        results = {name: evaluate_against(run_dir, name, GAMES[game]["games"])[0] for name in GAMES[game]["opponents"]}
    return results, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", nargs="+", choices=list(GAMES), default=list(GAMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=None, help="training frames (default: the game's own)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    args = parser.parse_args()
    for game in args.game:
        frames = args.frames or GAMES[game]["frames"]
        runs = {}
        for seed in args.seed:
            runs[seed], seconds = run(game, seed, frames, args.set)
            for name, match in runs[seed].items():
                rates = "  ".join(f"{seat} {100 * w:5.1f}/{100 * d:5.1f}/{100 * loss:5.1f}" for seat, (w, d, loss) in match.outcomes.items())
                print(f"{game} seed {seed} ({frames} frames, {seconds:.0f} s) vs {name:<10} win/draw/loss %: {rates}", flush=True)
        print(f"\n{game}, seeds {' '.join(map(str, args.seed))}:")
        if game == "tictactoe":
            losses = [runs[s]["perfect"].outcomes["all"][2] for s in args.seed]
            print(f"  loss rate against perfect play, both seats: {' / '.join(f'{100 * x:.1f} %' for x in losses)}  (claim: 0)  ", end="")
            print("met" if max(losses) == 0 else "NOT met")
        else:
            random_wins = [runs[s]["random"].outcomes["all"][0] for s in args.seed]
            minimax_wins = [runs[s]["minimax:2"].outcomes["all"][0] for s in args.seed]
            print(f"  win rate against random: {' / '.join(f'{100 * x:.1f} %' for x in random_wins)}  (claim: >= 95 %)  ", end="")
            print("met" if min(random_wins) >= 0.95 else "NOT met")
            print(f"  win rate against minimax:2: {' / '.join(f'{100 * x:.1f} %' for x in minimax_wins)}  (claim: > 50 %)  ", end="")
            print("met" if min(minimax_wins) > 0.5 else "NOT met")


if __name__ == "__main__":
    main()
