"""Collectors composed by config (conf/collector/): which TorchRL collector samples a run.

* `sync`: one `torchrl.collectors.Collector` in the training process (exact resume when batches
  hold whole episodes: the env's state between iterations is a function of the saved generators).
* `multisync`: `MultiSyncCollector`, `workers` processes each stepping its own env of
  `env.num_envs` worlds; each batch gathers all workers' frames (`[workers * num_envs, T]`).
* `multiasync`: `MultiAsyncCollector`, `workers` processes that collect without waiting for the
  learner; each batch is one worker's `frames_per_batch` frames, possibly sampled by weights a
  few updates old (what IMPALA-style learners correct for).
* `cudagraph`: VMAS on a GPU, in the training process, each rollout step replayed as one CUDA
  graph (ca12/data/cuda_graph_collector.py); batches as `sync` gives them.

Worker processes keep their envs' random state to themselves, so a run with several workers
resumes statistically equivalent, not bit for bit: a resumed run builds its worker envs with
seeds of its own (`worker_seed`), so it goes on with fresh episodes instead of replaying the
ones the run started with.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvBase

from ca12.sections import COLLECTOR_KINDS as KINDS
from ca12.sections import envs_per_batch  # the collector's keys and batch arithmetic (ca12/sections.py: start-up)

# In a fresh run, worker w of rank r seeds its env with seed + r + WORKER_SEED_STRIDE * w (`worker_seed`).
WORKER_SEED_STRIDE = 10_007


def episode_aligned(cfg: DictConfig) -> bool:
    """Every env runs whole episodes in each batch (what exact resume relies on)."""
    steps_per_env = cfg.collector.frames_per_batch // envs_per_batch(cfg)
    return steps_per_env % cfg.env.max_steps == 0


def worker_seed(seed: int, worker: int, resumed_frames: int = 0) -> int:
    """The seed worker `worker` builds its env with, in the process seeded `seed` (base + rank).

    A fresh run gives worker w `seed + WORKER_SEED_STRIDE * w`. A resumed run gets seeds drawn
    from (seed, worker, `resumed_frames`, the frames the run had trained on at its checkpoint):
    workers built with the fresh run's seeds would replay its env streams (and, with VMAS, which
    seeds a worker's global generators, the sampled actions' noise) from the start. The same
    checkpoint always resumes with the same seeds; they fit in 32 bits (NumPy's limit).
    """
    if resumed_frames == 0:
        return seed + WORKER_SEED_STRIDE * worker
    return int(np.random.SeedSequence([seed % 2**32, worker, resumed_frames]).generate_state(1)[0])


def seeded_worker_env(make_env: Callable[[int, torch.device], EnvBase], seed: int, device: torch.device) -> EnvBase:
    """A worker process's env, built after seeding the process's global generators with the
    worker's seed: its policy samples actions from torch's global generator, which a spawned
    process would otherwise seed at random (a run would not repeat from its --seed)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return make_env(seed, device)


def make_collector(
    kind: str,
    workers: int,
    make_env: Callable[[int, torch.device], EnvBase],
    env: EnvBase | None,
    policy: torch.nn.Module,
    frames_per_batch: int,
    seed: int,
    device: torch.device,
    reset_at_each_iter: bool,
    resumed_frames: int = 0,
):
    """The TorchRL collector `kind` names.

    Args:
        kind: one of `KINDS`.
        workers: processes for the multi-process kinds.
        make_env: `(seed, device) -> EnvBase`, picklable (worker processes build their own).
        env: the in-process env (`sync`); None for the others.
        policy: the module's acting policy; collectors keep their own copy on the env's device
            and pull fresh weights with `update_policy_weights_()`.
        frames_per_batch: frames per yielded batch (over all workers for multisync).
        seed: this process's seed (base seed + rank).
        device: where envs step and batches are stored (the env's device).
        reset_at_each_iter: reset the envs at the start of each batch (episode-aligned batches).
        resumed_frames: frames the run had trained on when the checkpoint it resumes from was
            written (0 for a fresh run); picks the workers' env seeds (`worker_seed`).
    """
    common = dict(
        frames_per_batch=frames_per_batch,
        total_frames=-1,
        env_device=device,
        policy_device=device,
        storing_device=device,
        reset_at_each_iter=reset_at_each_iter,
    )
    if kind == "sync":
        return Collector(env, policy, auto_register_policy_transforms=False, **common)
    if kind == "cudagraph":
        from ca12.data.cuda_graph_collector import CapturedCollector

        return CapturedCollector(env, policy, frames_per_batch, reset_at_each_iter, capture=env.device.type == "cuda")
    env_fns = [partial(seeded_worker_env, make_env, worker_seed(seed, w, resumed_frames), device) for w in range(workers)]
    if kind == "multisync":
        return MultiSyncCollector(env_fns, policy, cat_results=0, **common)
    if kind == "multiasync":
        return MultiAsyncCollector(env_fns, policy, **common)
    raise ValueError(f"unknown collector kind {kind!r}; choose one of: {', '.join(KINDS)}")
