"""ca12 against Stable-Baselines3 on the same task with the same hyperparameters, in one run.

    python benchmarks/vs_sb3.py                 # PPO on CartPole-v1 and SAC on Pendulum-v1, seeds 0 1 2
    python benchmarks/vs_sb3.py --only ppo --seed 0

Settings are RL Zoo's tuned ones for PPO on CartPole-v1 (8 envs x 32 steps, minibatches of 256,
20 epochs, gamma 0.98, lambda 0.8, learning rate 1e-3, clip 0.2, [64, 64] tanh networks) with the
learning rate and clip range held constant (RL Zoo decays both linearly; ca12 has no schedules),
and the SAC paper's for Pendulum-v1 (one env, [256, 256] relu networks, Adam 3e-4, minibatches
of 256, one update per collected frame after the first 1 000 frames, gamma 0.99, tau
0.005, automatic entropy). Both libraries run on the CPU with one intra-op thread.

For each library the script records every finished episode's return and the frame at which it
finished, and cuts the run into windows of `window` frames (PPO: one 256-frame batch; SAC: 400
frames); a run reaches the threshold at the first window whose episodes' mean return is at or
above it (PPO 475, SAC -250). Printed: frames and training wall-clock seconds to the threshold
for each library and their ratios (ca12 / SB3: below 1 means ca12 needed fewer). Wall-clock
counts collection and updates only (ca12: `time/collect_s + time/update_s` per iteration, which
includes its per-iteration checkpoint; SB3: time since `learn` started).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ca12.fit import main as fit_main


@dataclass
class Task:
    algo: str
    env: str
    threshold: float
    frames: int
    window: int
    ca12: list[str]


TASKS = {
    "ppo": Task(
        "ppo",
        "CartPole-v1",
        475.0,
        100_096,
        256,
        [
            "env.num_envs=8",
            "collector.frames_per_batch=256",
            "algo.minibatch_size=256",
            "algo.num_epochs=20",
            "algo.gamma=0.98",
            "algo.lmbda=0.8",
            "algo.lr=1e-3",
            "algo.clip_epsilon=0.2",
            "algo.entropy_coeff=0.0",
            "algo.max_grad_norm=0.5",
        ],
    ),
    "sac": Task(
        "sac",
        "Pendulum-v1",
        -250.0,
        12_000,
        400,
        [
            "env.num_envs=1",
            "env.max_steps=200",
            "collector.frames_per_batch=400",
            "algo.warmup_frames=1000",
        ],
    ),
}


def first_crossing(ends: list[tuple[int, float]], window: int, threshold: float) -> int | None:
    """The end frame of the first `window`-frame window whose finished episodes average >= threshold."""
    by_window: dict[int, list[float]] = {}
    for frame, ret in ends:
        by_window.setdefault((frame - 1) // window, []).append(ret)
    for index in sorted(by_window):
        if sum(by_window[index]) / len(by_window[index]) >= threshold:
            return (index + 1) * window
    return None


def run_ca12(task: Task, seed: int) -> tuple[int | None, float | None]:
    """(frames, seconds) to the threshold; episodes are read from the per-iteration metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = [
            "--algo",
            task.algo,
            "--env",
            f"gym/{task.env}",
            "--seed",
            str(seed),
            "--run-dir",
            str(run_dir),
            "logger=csv",
            "eval.every_n_iters=0",
            f"collector.total_frames={task.frames}",
            *task.ca12,
        ]
        if fit_main(argv) != 0:
            raise SystemExit(f"ca12 {task.algo} failed")
        with open(run_dir / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("rollout/episode_reward_mean")]
    seconds = 0.0
    for row in rows:  # one row per iteration = one window (frames_per_batch == window)
        seconds += float(row["time/collect_s"]) + float(row["time/update_s"])
        if float(row["rollout/episode_reward_mean"]) >= task.threshold:
            return int(float(row["time/frames"])), seconds
    return None, None


def run_sb3(task: Task, seed: int) -> tuple[int | None, float | None]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    ends: list[tuple[int, float]] = []
    times: dict[int, float] = {}

    class Record(BaseCallback):
        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            frames = self.num_timesteps
            times[(frames - 1) // task.window] = time.perf_counter() - self.start
            for info in self.locals["infos"]:
                if "episode" in info:
                    ends.append((frames, float(info["episode"]["r"])))
            return True

    if task.algo == "ppo":
        env = make_vec_env(task.env, n_envs=8, seed=seed)
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=32,
            batch_size=256,
            n_epochs=20,
            gamma=0.98,
            gae_lambda=0.8,
            learning_rate=1e-3,
            clip_range=0.2,
            ent_coef=0.0,
            max_grad_norm=0.5,
            seed=seed,
            device="cpu",
        )
    else:
        env = make_vec_env(task.env, n_envs=1, seed=seed)
        model = SAC(
            "MlpPolicy",
            env,
            learning_rate=3e-4,
            buffer_size=1_000_000,
            learning_starts=1000,
            batch_size=256,
            tau=0.005,
            gamma=0.99,
            train_freq=1,
            gradient_steps=1,
            seed=seed,
            device="cpu",
        )
    model.learn(task.frames, callback=Record())
    frames = first_crossing(ends, task.window, task.threshold)
    return (frames, times[(frames - 1) // task.window]) if frames is not None else (None, None)


def fmt(value, spec: str) -> str:
    return "not reached" if value is None else format(value, spec)


def ratio(a, b) -> float | None:
    return a / b if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2], help="seeds (each library runs once per seed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.only:
        task = TASKS[name]
        for seed in args.seed:  # the libraries alternate, so machine noise hits both
            rows.append((task, seed, run_ca12(task, seed), run_sb3(task, seed)))
    header = f"{'algo':<6}{'env':<14}{'seed':>5}{'threshold':>10}{'ca12 frames':>13}{'SB3 frames':>12}{'ratio':>7}"
    header += f"{'ca12 s':>9}{'SB3 s':>8}{'ratio':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for task, seed, (f1, s1), (f2, s2) in rows:
        print(
            f"{task.algo:<6}{task.env:<14}{seed:>5}{task.threshold:>10.0f}{fmt(f1, 'd'):>13}{fmt(f2, 'd'):>12}{fmt(ratio(f1, f2), '.2f'):>7}"
            f"{fmt(s1, '.1f'):>9}{fmt(s2, '.1f'):>8}{fmt(ratio(s1, s2), '.2f'):>7}"
        )
    for name in args.only:
        mine = [(ratio(f1, f2), ratio(s1, s2)) for task, _, (f1, s1), (f2, s2) in rows if task.algo == name]
        frames, seconds = ([r[i] for r in mine if r[i] is not None] for i in (0, 1))
        print(
            f"{name}: median ratio over {len(mine)} seeds (ca12 / SB3; a seed where either missed the threshold counts in neither): "
            f"frames {fmt(statistics.median(frames) if frames else None, '.2f')}, "
            f"wall-clock {fmt(statistics.median(seconds) if seconds else None, '.2f')}"
        )


if __name__ == "__main__":
    main()
