"""Shared fixtures: tiny configs and envs sized for 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per test process (and the CLI subprocesses it starts): the suite's nets are
# tiny, and on a shared 2-core machine torch's spinning worker threads made a 20x64 matmul take
# 10 ms instead of 30 us.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)

from ca12.envs import make_env  # noqa: E402  (after the thread count is set)
from ca12.run.config import load_config  # noqa: E402

# A run small enough to finish in seconds: `debug=tiny` (conf/debug/tiny.yaml: 4 envs x 25 steps
# per batch, 2 batches, 32-wide nets, a checkpoint every iteration; conf/debug_algo/tiny/<algo>.yaml:
# what the algorithm needs beside it, e.g. 2 epochs of 2 minibatches for the PPO family).
TINY = ["debug=tiny"]


def tiny_args(algo: str) -> list[str]:
    """`debug=tiny` on an env with actions `algo` can take (VMAS navigation made discrete for the
    value methods), a new list each call."""
    from ca12.algos import algo_class

    return TINY + ([] if "continuous" in algo_class(algo).action_spaces else ["env.continuous_actions=false"])


def resume_pair(tmp_path, algo: str, args: list[str], total: int) -> tuple[dict, dict, Path, Path]:
    """Train `total` frames in one go and as two halves with `--resume` between; returns both
    runs' final state_dicts and run directories (the caller asserts they agree)."""
    from ca12.fit import main

    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", algo, "--run-dir", str(one_go), *args, f"collector.total_frames={total}"]) == 0
    assert main(["--algo", algo, "--run-dir", str(split), *args, f"collector.total_frames={total // 2}"]) == 0
    assert main(["--resume", str(split), f"collector.total_frames={total}"]) == 0
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (one_go, split))
    return a, b, one_go, split


def nan_critic_from_iteration(monkeypatch, iteration: int):
    """MAPPO's critic loss (and so the total) turns NaN from `iteration` on."""
    from ca12.algos.mappo import MAPPO

    original = MAPPO.loss

    def loss(self, minibatch):
        total, terms = original(self, minibatch)
        if self.iterations + 1 >= iteration:
            terms["loss_critic"] = terms["loss_critic"] * float("nan")
            total = total + terms["loss_critic"]
        return total, terms

    monkeypatch.setattr(MAPPO, "loss", loss)


def tiny_config(algo: str = "mappo", *extra: str, env: str | None = None):
    from ca12.algos import default_env

    return load_config(algo, env or default_env(algo), tiny_args(algo) + list(extra))


@pytest.fixture
def no_wandb_credentials(monkeypatch, tmp_path):
    """A user with no W&B key: ca12 must fall back to an offline run by itself."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_env(cfg, seed: int = 0):
    return make_env(cfg.env, seed)
