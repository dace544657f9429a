"""What capturing the env step would buy: one VMAS step eager, through TorchRL, and as a CUDA graph.

    python benchmarks/vmas_step_capture.py [--task navigation] [--num-envs 600] [--steps 100]

MAPPO's GPU iteration is bounded below by the env: 100 `VmasEnv` steps at 600 envs cost ~0.8 s on
an H200, ~8 ms a step whatever the batch (kernel launches from Python). This script measures, in one
process on one device:
  * `VmasEnv.step` (TorchRL's wrapper, what the collector calls);
  * the raw `vmas` `Environment.step` under it;
  * the raw step captured once with `torch.cuda.graph` and replayed (CUDA only), and whether the
    replay gives the eager step's observations and rewards from the same state.
The capture is a probe, not a training path: a replayed step writes its new state into the
tensors it allocated during capture, so a rollout from replays would have to copy that state back
before each next replay (and do resets outside the graph).
"""

from __future__ import annotations

import argparse
import copy
import gc
import time

import torch

from ca12.envs import make_env
from ca12.run.config import load_config


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, steps: int, device: str) -> float:
    """Milliseconds per call of `fn`, best of 3 rounds of `steps` calls."""
    best = float("inf")
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - start) / steps * 1e3)
    return best


def _raw_env(env):
    base = getattr(env, "base_env", env)
    return base._env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="navigation")
    parser.add_argument("--num-envs", type=int, default=600)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = args.device

    cfg = load_config("mappo", f"vmas/{args.task}", [f"env.num_envs={args.num_envs}", "env.max_steps=1000000", f"env.device={device}"])
    env = make_env(cfg.env, seed=0)
    td = env.reset()
    td = env.rand_action(td)
    torchrl_ms = _timed(lambda: env.step(td), args.steps, device)
    print(f"VmasEnv.step (TorchRL):       {torchrl_ms:7.3f} ms per step at {args.num_envs} envs", flush=True)

    raw = _raw_env(env)
    actions = [torch.rand(args.num_envs, raw.get_agent_action_size(a), device=device) * 2 - 1 for a in raw.agents]
    raw_ms = _timed(lambda: raw.step(actions), args.steps, device)
    print(f"vmas Environment.step (raw):  {raw_ms:7.3f} ms per step ({raw_ms / torchrl_ms:.0%} of the wrapper's)", flush=True)
    if device != "cuda":
        print("no CUDA: the captured step is not measured")
        return

    # The undecorated step: VMAS wraps it in local_seed, which touches the RNG states (host work).
    step = getattr(type(raw).step, "__wrapped__", type(raw).step)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream):
            for _ in range(3):
                step(raw, actions)
        torch.cuda.current_stream().wait_stream(stream)
        before = copy.deepcopy(raw)
        # The graph holds no references to the state tensors it reads; keep them all alive.
        keep = [o for o in gc.get_objects() if torch.is_tensor(o) and o.is_cuda]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = step(raw, actions)
    except Exception as exc:  # the probe reports why capture failed, in one line
        print(f"capture failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return
    replay_ms = _timed(graph.replay, args.steps, device)
    print(
        f"raw step as a CUDA graph:     {replay_ms:7.3f} ms per replay ({raw_ms / replay_ms:.1f}x the raw step, "
        f"{torchrl_ms / replay_ms:.1f}x the wrapper's)",
        flush=True,
    )
    # Correctness: the graph reads the pre-capture state tensors, which still hold `before`'s state.
    graph.replay()
    expected = step(before, actions)
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(captured[0], expected[0])) and all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(captured[1], expected[1])
    )
    print(f"replay == eager step from the same state (observations, rewards): {same}")
    del keep, graph


if __name__ == "__main__":
    main()
