"""Traffic junction: MAPPO without communication against talking models, same frames, over seeds.

    python benchmarks/traffic_junction.py                       # every model; 300k frames; seeds 0 1 2
    python benchmarks/traffic_junction.py --frames 60000 --models mlp commnet --seed 0
    python benchmarks/traffic_junction.py --models ic3net commnet_lstm --curriculum 0.05 75000 375000
    python benchmarks/traffic_junction.py --difficulty easy --steps 20

Each row is a real `python -m ca12.fit --algo mappo --env comm/traffic_junction` run per seed
(logger=csv) with the shared settings below and the model's overrides (`MODELS`), every actor's
encoder 2 x 64 wide (critic: the default MLP). `ic3net` is IC3Net's gated LSTM controllers
(`model=ic3net`, ca12/nets/ic3net.py) and `commnet_lstm` the same controllers with every gate
open (IC3Net's recurrent CommNet); `commnet` and `tarmac` are the feed-forward talking kinds.
`--curriculum START FIRST LAST` ramps the training worlds' arrival probability from START to the
difficulty's value between those frames (`env.curriculum`), evaluation plays the difficulty's
own. IC3Net's reference code (github.com/IC3Net/IC3Net, README) ramps the medium junction's rate
from 0.05 to 0.2 between epochs 250 and 1 250 of 2 000 (12.5 % to 62.5 % of training), with
128-wide LSTMs and the talk/silent gate as an action (`--hard_attn`); `--curriculum 0.05 60000
300000` is that ramp's shape on 600 k frames. After training, each checkpoint acts greedily in `--episodes`
evaluation episodes on its seed's evaluation seed (the same episodes for every model of a seed):
the success rate is the share without a collision, as CommNet, IC3Net and TarMAC report it. The
table shows each model's mean success with its 95 % t-interval over seeds, each seed's, the mean
last rollout return (per car slot) and the papers' reported success rates.

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
import statistics
import sys
import tempfile
import time
from pathlib import Path

from learning import interval  # the sibling script

from ca12.fit import main as fit_main
from ca12.run.score import checkpoint_success_rate

# MAPPO on 150 worlds x 40 steps per batch: 4 epochs of 2000 frames (20 000 car slots) at lr 1e-3,
# a little entropy so the cars keep trying both actions.
SETTINGS = ["experiment=traffic_junction_medium", "eval.every_n_iters=0", "logger=csv"]  # conf/experiment/traffic_junction_medium.yaml
# Every actor has the talking models' encoder width (conf/model/mlp.yaml's default is [256, 256]).
SAME_WIDTH = ["model.hidden_sizes=[64,64]"]
MODELS = {
    "mlp": ["model=mlp"],
    "commnet": ["model=commnet"],
    "tarmac": ["model=tarmac"],
    "ic3net": ["model=ic3net"],
    "commnet_lstm": ["model=ic3net", "model.gated=false"],  # IC3Net's controllers, every gate open
}
# model -> (paper, difficulty, reported success %), printed beside the measured rows.
REPORTED = {
    "mlp": [("IC3Net T2, IC (memory)", "medium", "3.4 +- 0.5"), ("TarMAC T3, no comm", "easy/hard", "84.9 / 74.1")],
    "commnet": [("IC3Net T2, CommNet (memory)", "medium", "54.3 +- 14.2"), ("IC3Net T2, IC3Net = gated CommNet (memory)", "medium", "89.3 +- 2.5")],
    "tarmac": [("TarMAC T3, 2-round", "easy/hard", "99.9 / 97.1")],
    "ic3net": [("IC3Net T2, IC3Net (memory)", "medium", "89.3 +- 2.5")],
    "commnet_lstm": [("IC3Net T2, CommNet (memory)", "medium", "54.3 +- 14.2")],
}


def train(model: str, seed: int, args, run_dir: Path) -> tuple[float, float, float]:
    """(seconds, last rollout return, greedy success rate) of one MAPPO run with `model`."""
    curriculum = []
    if args.curriculum:
        start, first, last = args.curriculum
        curriculum = [f"env.curriculum={{arrival_prob:[{start},{int(first)},{int(last)}]}}"]
    argv = [
        "--algo",
        "mappo",
        "--env",
        "comm/traffic_junction",
        "--seed",
        str(seed),
        "--run-dir",
        str(run_dir),
        *SETTINGS,
        f"env.difficulty={args.difficulty}",
        f"env.max_steps={args.steps}",
        f"collector.total_frames={args.frames}",
        *SAME_WIDTH,
        *MODELS[model],
        *curriculum,
        *args.overrides,
    ]
    start = time.perf_counter()
    if fit_main(argv) != 0:
        raise SystemExit(f"mappo with {model} (seed {seed}) failed")
    seconds = time.perf_counter() - start
    with open(run_dir / "metrics.csv") as f:
        returns = [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]
    return seconds, returns[-1], checkpoint_success_rate(run_dir, args.episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=300_000, help="training frames (world steps) per run")
    parser.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"])
    parser.add_argument("--steps", type=int, default=40, help="episode length (the papers: 20 easy, 40 medium, 80 hard)")
    parser.add_argument("--episodes", type=int, default=1000, help="greedy evaluation episodes per run")
    parser.add_argument("--curriculum", type=float, nargs=3, default=None, metavar=("START", "FIRST", "LAST"), help="arrival-rate ramp")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    parser.add_argument("overrides", nargs="*", help="extra KEY=VALUE overrides for every run")
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for model in args.models:
            for seed in args.seed:
                runs[model, seed] = train(model, seed, args, root / f"{model}_{seed}")
                print(f"{model} seed {seed}: seconds, return, success = {runs[model, seed]}", file=sys.stderr, flush=True)
    ramp = f", arrival-rate curriculum {args.curriculum}" if args.curriculum else ""
    print(
        f"\ncomm/traffic_junction {args.difficulty}, MAPPO, {args.frames} frames a run{ramp}, seeds {' '.join(map(str, args.seed))}, "
        f"greedy success over {args.episodes} episodes"
    )
    header = f"{'model':<13}{'seconds':>9}{'return':>9}{'success %':>11}{'95% CI':>9}   {'per seed':<22}reported success % (paper, difficulty)"
    print(header + "\n" + "-" * len(header))
    for model in args.models:
        rows = [runs[model, seed] for seed in args.seed]
        success, half = interval([100 * success for _, _, success in rows])
        per_seed = " / ".join(f"{100 * success:.1f}" for _, _, success in rows)
        reported = "; ".join(f"{value} ({paper}, {level})" for paper, level, value in REPORTED.get(model, []))
        seconds, final = statistics.fmean(r[0] for r in rows), statistics.fmean(r[1] for r in rows)
        print(f"{model:<13}{seconds:>9.0f}{final:>9.2f}{success:>11.1f}{'+-' + format(half, '.1f'):>9}   {per_seed:<22}{reported}")


if __name__ == "__main__":
    main()
