"""The GPU fast path of an update: the minibatch (or replay) update run as one function that a
CUDA graph (`tensordict.nn.CudaGraphModule`) captures whole, so that the hundreds or thousands
of optimiser steps of an iteration cost a graph replay each and no host synchronisation.

`algo.cudagraphs=true` (CUDA only) chooses it. `torch.compile` is not offered: measured, it did
not pay (slower than capture alone on the GPU and than eager on the CPU; docs/benchmarks.md), and
TorchRL's losses with functional parameters (DDPG, SAC, QMIX) break its tracing in torch 2.13.
Inside that function `Stepper.step` (ca12/algos/optim.py) steps directly (`backward()`, one gradient norm that also
clips, a fused Adam step that skips itself on a NaN/inf update through its `found_inf` input)
instead of through Lightning's manual-optimisation wrappers, and returns the finite flag in the
terms for the module's `NonFiniteGuard`. Off, every step goes through Lightning as before.
Since the function calls `backward()` itself it needs one process on one device: under DDP
(where Lightning's `manual_backward` averages gradients) it is refused.
"""

from __future__ import annotations

from typing import Callable

import torch

from ca12.errors import UsageError


def check_fast_path(cfg) -> None:
    """Refuse, in one line, a fast-path option this run cannot use (`algo.cudagraphs`, and
    `collector=cudagraph`, ca12/data/cuda_graph_collector.py)."""
    if cfg.collector.kind == "cudagraph":
        if cfg.env.family != "vmas":
            raise UsageError(f"collector=cudagraph steps VMAS envs only (this run's env is {cfg.env.family}/{cfg.env.task})")
        _check_one_gpu(cfg, "collector=cudagraph", "the rollout step")
        if not str(cfg.env.device).startswith("cuda"):
            raise UsageError(f"collector=cudagraph captures the rollout on a GPU: set env.device=cuda (it is {cfg.env.device})")
    if not cfg.algo.get("cudagraphs"):
        return
    _check_one_gpu(cfg, "algo.cudagraphs=true", "the whole update")


def _check_one_gpu(cfg, option: str, captured: str) -> None:
    """Refuse `option` (which captures `captured` as a CUDA graph) off one CUDA device."""
    devices = cfg.trainer.get("devices", 1)
    if str(cfg.trainer.get("strategy", "auto")).startswith("ddp") or (isinstance(devices, int) and devices > 1):
        raise UsageError(f"{option} captures {captured} on one device; it cannot run under DDP (trainer.devices > 1)")
    if not torch.cuda.is_available():
        raise UsageError(f"{option} needs a CUDA GPU (torch.cuda.is_available() is False)")
    if str(cfg.trainer.get("accelerator", "auto")) not in ("gpu", "cuda", "auto"):
        raise UsageError(f"{option} captures {captured} on the GPU: use trainer=gpu")


def make_capturable(optimiser: torch.optim.Optimizer) -> None:
    """Let a CUDA graph replay the optimiser's step: its step counters stay on the device and
    the learning rate becomes a device tensor, so that annealing it (`fill_`) reaches the
    replayed kernel instead of a constant baked in at capture."""
    if not optimiser.defaults.get("fused"):
        raise UsageError("algo.cudagraphs needs fused optimisers (ca12.algos.optim.fused_adam)")
    device = optimiser.param_groups[0]["params"][0].device
    for group in optimiser.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
    for state in optimiser.state.values():
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = state["step"].to(device)


def capture_update(fn: Callable, warmup: int = 3) -> Callable:
    """`fn` (minibatch -> detached terms) captured as a CUDA graph after `warmup` eager calls,
    then replayed for every minibatch of the same shape."""
    from tensordict.nn import CudaGraphModule

    return CudaGraphModule(fn, in_keys=[], out_keys=[], warmup=warmup)
