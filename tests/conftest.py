"""Shared fixtures: tiny configs and envs sized for 2 CPU cores."""

from __future__ import annotations

import functools
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

# A run small enough to finish in seconds: 4 envs x 25 steps per batch, 2 batches, tiny nets.
TINY_RUN = [
    "env.num_envs=4",
    "env.max_steps=25",
    "collector.frames_per_batch=100",
    "collector.total_frames=200",
    "model.hidden_sizes=[32,32]",
    "critic_model.hidden_sizes=[32,32]",
    "checkpoint.every_n_iters=1",
]
# PPO family: 2 epochs of 2 minibatches per batch.
TINY = TINY_RUN + ["algo.minibatch_size=50", "algo.num_epochs=2"]
# Replay family: updates from the first batch on, 5 Adam steps of 32 transitions per batch.
TINY_REPLAY = TINY_RUN + ["algo.minibatch_size=32", "algo.warmup_frames=100", "algo.updates_per_frame=0.05"]


def tiny_args(algo: str) -> list[str]:
    """TINY overrides that fit `algo` (its config keys, an env with actions it can take), a new
    list each call."""
    return list(_tiny_args(algo))


@functools.cache
def _tiny_args(algo: str) -> list[str]:
    """`tiny_args`, worked out once per process (it composes a config, and the suite asks often);
    never handed out itself, so no caller can change it."""
    from ca12.algos import algo_class

    cls = algo_class(algo)
    if algo == "maml":  # an iteration is meta_batch x (inner_steps + 1) x num_envs x max_steps = 100 frames
        return [
            "env.num_envs=2",
            "env.max_steps=25",
            "algo.meta_batch=1",
            "collector.frames_per_batch=100",
            "collector.total_frames=200",
            "model.hidden_sizes=[32,32]",
            "checkpoint.every_n_iters=1",
        ]
    if algo == "es":  # a generation is population x num_envs x max_steps frames, evaluated in-process
        return [
            "env.num_envs=2",
            "env.max_steps=25",
            "collector.frames_per_batch=100",
            "collector.total_frames=200",
            "algo.population=2",
            "algo.workers=0",
            "model.hidden_sizes=[32,32]",
            "checkpoint.every_n_iters=1",
        ]
    args = TINY_REPLAY if "updates_per_frame" in load_config(algo, "vmas/navigation", ["env.continuous_actions=false"]).algo else TINY
    if algo == "a3c":  # one actor-learner in the training process, no epochs (Ray workers: tests/algos/test_a3c.py)
        args = TINY_RUN + ["algo.workers=0"]
    if algo == "impala":  # in-process actors: deterministic, exact resume (multiasync: tests/algos/test_impala.py)
        args = args + ["collector=sync", "algo.num_epochs=1"]
    return args + ([] if "continuous" in cls.action_spaces else ["env.continuous_actions=false"])


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
