"""How `env.num_envs` copies of a Gymnasium / PettingZoo env should step together: frames/s of
random actions through each `env.vectorization` of the gym/... and pettingzoo/... families.

    python benchmarks/gym_vectorisation.py [--num-envs 8 64] [--steps 200] [--no-processes]

Every env is built as ca12 builds it (`ca12.envs.make_env` on an env section with the task's
own episode length: the family's batching, the agent group, the return counters) and rolled out with random actions, resets included (CartPole's
random episodes last ~22 steps, MPE's 25). Rows, measured in the same run:
  * gym/CartPole-v1 (discrete) and gym/Pendulum-v1 (continuous): `gymnasium` (one in-process
    gymnasium.vector.SyncVectorEnv), `serial` (TorchRL SerialEnv, the baseline), and at the
    smallest size only, the process-based `gymnasium_async` and `parallel` (TorchRL ParallelEnv):
    one process per world, which on a 2-core machine only makes sense for few worlds;
  * pettingzoo/simple_spread and simple_speaker_listener: `batched` (ca12's BatchedParallelEnv,
    the default), `serial` (the baseline) and `parallel` (smallest size only).
Prints frames/s (best of `--repeats`), the build time, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from ca12.envs import make_env

# env -> (episode length, vectorisations in process, process-based ones, baseline)
ROWS = {
    "gym/CartPole-v1": (500, ("gymnasium", "serial"), ("gymnasium_async", "parallel"), "serial"),
    "gym/Pendulum-v1": (200, ("gymnasium", "serial"), ("gymnasium_async", "parallel"), "serial"),
    "pettingzoo/simple_spread": (25, ("batched", "serial"), ("parallel",), "serial"),
    "pettingzoo/simple_speaker_listener": (25, ("batched", "serial"), ("parallel",), "serial"),
}


def frames_per_second(env_name: str, max_steps: int, vectorization: str, num_envs: int, steps: int, repeats: int) -> tuple[float, float]:
    """(best frames/s of a random-action rollout of `steps` steps, seconds to build the env)."""
    family, _, task = env_name.partition("/")
    cfg = OmegaConf.create(
        {
            "family": family,
            "task": task,
            "num_envs": num_envs,
            "max_steps": max_steps,
            "device": "cpu",
            "continuous_actions": False,
            "vectorization": vectorization,
        }
    )
    start = time.perf_counter()
    env = make_env(cfg, seed=0)
    env.rollout(3, break_when_any_done=False)  # starts process-based envs
    build = time.perf_counter() - start
    env.rollout(10, break_when_any_done=False)  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        env.rollout(steps, break_when_any_done=False)
        best = max(best, num_envs * steps / (time.perf_counter() - start))
    env.close()
    return best, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-processes", action="store_true", help="skip the process-based vectorisations")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"{'env':26} {'envs':>4} {'vectorization':16} {'frames/s':>9} {'build s':>8} {'x baseline':>10}")
    for env_name, (max_steps, in_process, processes, baseline) in ROWS.items():
        for num_envs in args.num_envs:
            kinds = list(in_process) + ([] if args.no_processes or num_envs != min(args.num_envs) else list(processes))
            results = {kind: frames_per_second(env_name, max_steps, kind, num_envs, args.steps, args.repeats) for kind in kinds}
            for kind, (fps, build) in results.items():
                ratio = fps / results[baseline][0]
                print(f"{env_name:26} {num_envs:4d} {kind:16} {fps:9.0f} {build:8.2f} {ratio:9.2f}x" + ("  (baseline)" if kind == baseline else ""))


if __name__ == "__main__":  # the process-based envs spawn workers that re-import this file
    main()
