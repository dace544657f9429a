"""Traffic junction (medium): MAPPO without communication against talking models, same frames.

    python benchmarks/traffic_junction.py                       # mlp, commnet, tarmac, 300k frames each
    python benchmarks/traffic_junction.py --frames 60000 --models mlp commnet
    python benchmarks/traffic_junction.py --difficulty easy --steps 20

Each row is a real `python -m ca12.fit --algo mappo --env comm/traffic_junction` run (seed 0,
logger=csv) with the shared settings below and `model=<row>`, every actor 2 x 64 wide (critic:
the default MLP). After
training, the checkpoint acts greedily in `--episodes` evaluation episodes (one per world, on
the evaluation seed): the success rate is the share without a collision, as CommNet, IC3Net and
TarMAC report it. The table shows it next to the last rollout return (per car slot) and the
papers' reported success rates; the last column is each row's success over the MLP row's.

Reported success rates (%), mean +- std over their runs:
    * IC3Net (Singh et al. 2019, Table 2; recurrent REINFORCE controllers, 2000 epochs x 5000
      steps, curriculum on the arrival rate), medium: no communication (IC) 3.4 +- 0.5,
      CommNet 54.3 +- 14.2, IC3Net 89.3 +- 2.5. These were written down from memory of the
      paper: the table itself could not be opened from this machine, so check them before quoting.
    * TarMAC (Das et al. 2019, Table 3) has no medium column: easy no communication 84.9 +- 4.3,
      TarMAC 2-round 99.9 +- 0.1; hard no communication 74.1 +- 3.9, TarMAC 2-round 97.1 +- 1.6
      (cross-checked against a secondary quotation of the table).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from ca12.fit import main as fit_main
from ca12.run.score import checkpoint_success_rate

# MAPPO on 150 worlds x 40 steps per batch: 4 epochs of 2000 frames (20 000 car slots) at lr 1e-3,
# a little entropy so the cars keep trying both actions.
SETTINGS = ["experiment=traffic_junction_medium", "eval.every_n_iters=0", "logger=csv"]  # conf/experiment/traffic_junction_medium.yaml
# Every actor has the talking models' encoder width (conf/model/mlp.yaml's default is [256, 256]).
SAME_WIDTH = ["model.hidden_sizes=[64,64]"]
# model -> (paper, difficulty, reported success %), printed beside the measured rows.
REPORTED = {
    "mlp": [("IC3Net T2, IC (memory)", "medium", "3.4 +- 0.5"), ("TarMAC T3, no comm", "easy/hard", "84.9 / 74.1")],
    "commnet": [("IC3Net T2, CommNet (memory)", "medium", "54.3 +- 14.2"), ("IC3Net T2, IC3Net = gated CommNet (memory)", "medium", "89.3 +- 2.5")],
    "tarmac": [("TarMAC T3, 2-round", "easy/hard", "99.9 / 97.1")],
}


def train(model: str, frames: int, difficulty: str, steps: int, episodes: int, run_dir: Path, extra: list[str]) -> tuple[float, float, float]:
    """(seconds, last rollout return, greedy success rate) of one MAPPO run with `model`."""
    argv = [
        "--algo",
        "mappo",
        "--env",
        "comm/traffic_junction",
        "--seed",
        "0",
        "--run-dir",
        str(run_dir),
        *SETTINGS,
        f"env.difficulty={difficulty}",
        f"env.max_steps={steps}",
        f"collector.total_frames={frames}",
        f"model={model}",
        *SAME_WIDTH,
        *extra,
    ]
    start = time.perf_counter()
    if fit_main(argv) != 0:
        raise SystemExit(f"mappo with model={model} failed")
    seconds = time.perf_counter() - start
    with open(run_dir / "metrics.csv") as f:
        returns = [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]
    return seconds, returns[-1], checkpoint_success_rate(run_dir, episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["mlp", "commnet", "tarmac"], help="model kinds (mlp: no communication)")
    parser.add_argument("--frames", type=int, default=300_000, help="training frames (world steps) per model")
    parser.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"])
    parser.add_argument("--steps", type=int, default=40, help="episode length (the papers: 20 easy, 40 medium, 80 hard)")
    parser.add_argument("--episodes", type=int, default=1000, help="greedy evaluation episodes per model")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    parser.add_argument("overrides", nargs="*", help="extra KEY=VALUE overrides for every run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for model in args.models:
            rows.append((model, *train(model, args.frames, args.difficulty, args.steps, args.episodes, root / model, args.overrides)))
            print(f"{model}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    baseline = {model: success for model, _, _, success in rows}.get("mlp")
    header = f"{'model':<9}{'frames':>9}{'seconds':>9}{'return':>9}{'success %':>11}{'vs mlp':>8}   reported success % (paper, difficulty)"
    print(f"\ncomm/traffic_junction {args.difficulty}, MAPPO, {args.frames} frames each, greedy success over {args.episodes} episodes")
    print(header + "\n" + "-" * len(header))
    for model, seconds, final, success in rows:
        ratio = f"{success / baseline:.2f}" if baseline else "-"
        reported = "; ".join(f"{value} ({paper}, {level})" for paper, level, value in REPORTED.get(model, []))
        print(f"{model:<9}{args.frames:>9}{seconds:>9.0f}{final:>9.2f}{100 * success:>11.1f}{ratio:>8}   {reported}")


if __name__ == "__main__":
    main()
