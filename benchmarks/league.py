"""Self-play with a league on VMAS football, one player a team: does the learner get better
than where it started?

    python benchmarks/league.py                       # 640 000 frames, seed 0 (about 9 min on 2 CPU cores)
    python benchmarks/league.py --frames 64000        # the short version (about 2 min)
    python benchmarks/league.py --seed 1 --opponents uniform

VMAS `football` with both teams learnt (`env.ai_red_agents=false`), one agent each: the scenario
mirrors the red team's observations and actions, so one policy can play either side, and the
learner (blue) plays past snapshots of itself (red), drawn per env world by `--opponents`
(ca12/selfplay/league.py). An episode ends at a goal or after 100 steps; its winner is the team with the
higher return (goals are worth 100, moving the ball towards the other goal is paid on the way).

After training, the latest snapshot plays the first (the initial weights) in `--episodes`
episodes from each side (latest as blue and as red, so a side's advantage cancels) with the
policies' modes; prints the win rate of the latest over both, the Elo of the first and latest
snapshots and the learner's Elo curve (`league/elo_learner` per iteration), with frames, seed
and seconds.

Measured (short version, 64 000 frames = 20 iterations, pfsp, OMP_NUM_THREADS=1, 2 shared CPU
cores, 45-130 s a run depending on the machine's load): the latest snapshot (iteration 20) beat
the first in 98.5 % / 68.8 % / 78.0 % of 200 episodes for seeds 0 / 1 / 2 (as blue 0.990 / 0.685
/ 0.800, as red 0.980 / 0.690 / 0.760); Elo first 947 / 978 / 963, latest 1055 / 1042 / 1044.
The learner's rating (1000 at the start) rose to 1041 by iteration 9 with seed 0, dipped to 1028
at 15 (it lost to its own recent snapshots for a while) and ended at 1055; with seeds 1 / 2 it
rose steadily to 1042 / 1044. The full version (640 000 frames = 200 iterations, seed 0, pfsp,
545 s on 2 shared cores, 2026-11-26): the latest snapshot (iteration 200) beat the first in
77.5 % of 200 episodes (as blue 0.730, as red 0.820); Elo first 938, latest 1074. The learner's
rating rose to 1135 by iteration 81 and then eased to 1074 as the league filled with stronger
snapshots (Elo here is zero-sum between the learner and the snapshots it met). At 16 000 frames (the fast version
in tests/algos/test_league.py) the win rates were 0.69 / 0.52 / 0.72: too small a budget for every seed.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ca12.data.evaluator import EVAL_SEED_OFFSET
from ca12.envs import make_env
from ca12.fit import main as fit_main
from ca12.run.rundir import load_module
from ca12.seeding import isolated_rng

# One-a-side football with both teams learnt; the learner is blue.
FOOTBALL = [
    "--env",
    "vmas/football",
    "env.ai_red_agents=false",
    "env.n_blue_agents=1",
    "env.n_red_agents=1",
    "env.observe_teammates=false",
    "env.max_steps=100",
    "algo.groups=[agent_blue]",
]
# 32 worlds x 100 steps a batch, a snapshot every 5 batches; the league keeps them all, so the
# first snapshot is still there to play at the end.
SETTINGS = [
    "env.num_envs=32",
    "collector.frames_per_batch=3200",
    "algo.minibatch_size=800",
    "algo.league.snapshot_every=5",
    "algo.league.max_size=1000",
    "eval.every_n_iters=0",
    "logger=csv",
]


def train(run_dir: Path, frames: int, seed: int, opponents: str, extra: list[str] | None = None) -> None:
    """A `ca12.fit` MAPPO run of `frames` frames with the league into `run_dir`."""
    args = [
        "--algo",
        "mappo",
        *FOOTBALL,
        "--run-dir",
        str(run_dir),
        "--seed",
        str(seed),
        f"collector.total_frames={frames}",
        f"algo.league.opponents={opponents}",
        *SETTINGS,
        *(extra or []),
    ]
    if fit_main(args) != 0:
        raise SystemExit(f"training failed: python -m ca12.fit {' '.join(args)}")


def latest_against_first(run_dir: Path, episodes: int) -> dict:
    """Load the run's last checkpoint and play its latest snapshot against its first, `episodes`
    episodes from each side. Returns the latest's win rate (draws count half) over both sides
    and from each, the episodes played, and the Elo ratings of both snapshots and the learner."""
    module, cfg, _ = load_module(run_dir)
    with isolated_rng():
        env = make_env(OmegaConf.merge(cfg.env, {"num_envs": episodes}), cfg.seed + EVAL_SEED_OFFSET)
    league, actor = module.league, module.actors[module.group]
    if league.born[0] != 0:
        raise SystemExit(f"the first snapshot left the league (max_size {cfg.algo.league.max_size}): raise algo.league.max_size")
    latest, steps, seed = league.size - 1, cfg.env.max_steps, cfg.seed + EVAL_SEED_OFFSET
    as_blue = league.match(env, actor, latest, 0, steps, seed)
    as_red = 1.0 - league.match(env, actor, 0, latest, steps, seed)  # the first plays blue: the latest's result is the complement
    both = torch.cat([as_blue, as_red])
    return {
        "win_rate": float(both.mean()),
        "win_rate_blue": float(as_blue.mean()),
        "win_rate_red": float(as_red.mean()),
        "episodes": int(both.numel()),
        "elo_first": league.elo[0],
        "elo_latest": league.elo[latest],
        "born_latest": league.born[latest],
        "elo_learner": league.learner_elo,
        "size": league.size,
    }


def elo_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(iteration, league/elo_learner) of every iteration in the run's metrics.csv."""
    with open(run_dir / "metrics.csv") as f:
        return [(int(float(r["time/iteration"])), float(r["league/elo_learner"])) for r in csv.DictReader(f) if r.get("league/elo_learner")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=640_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opponents", default="pfsp", choices=("uniform", "latest", "pfsp"))
    parser.add_argument("--episodes", type=int, default=100, help="head-to-head episodes from each side")
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the run here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "league"
        start = time.perf_counter()
        train(run_dir, args.frames, args.seed, args.opponents)
        seconds = time.perf_counter() - start
        result = latest_against_first(run_dir, args.episodes)
        curve = elo_curve(run_dir)
    print(f"\nMAPPO self-play league ({args.opponents}) on vmas/football 1 v 1, {args.frames} frames, seed {args.seed}, {seconds:.0f} s")
    print(f"latest snapshot (iteration {result['born_latest']}) vs first (iteration 0), {result['episodes']} episodes:")
    print(f"  win rate of the latest {result['win_rate']:.3f} (as blue {result['win_rate_blue']:.3f}, as red {result['win_rate_red']:.3f})")
    print(
        f"  Elo: first {result['elo_first']:.1f}, latest {result['elo_latest']:.1f}, learner {result['elo_learner']:.1f} ({result['size']} snapshots)"
    )
    step = max(1, len(curve) // 10)
    print("learner Elo by iteration: " + ", ".join(f"{i}: {elo:.0f}" for i, elo in curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])))


if __name__ == "__main__":
    main()
