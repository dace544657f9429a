"""Recurrent off-policy learning: sequence replay with burn-in (ca12.data.replay.sequence_chunks)
and the value family's sequence TD loss (QMIX/VDN/IQL with model=gru|lstm)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import resume_pair
from tensordict import TensorDict

from ca12.algos import algo_class
from ca12.data.replay import replay_view, sequence_chunks
from ca12.envs import make_env, make_spec_env
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config


def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


def _module_and_chunks(algo: str, overrides: list[str], length: int, burn_in: int, steps: int = 16):
    """A fresh module on memory/cue and one rollout of its policy cut into prepared chunks."""
    cfg = load_config(algo, "memory/cue", ["logger=none", "env.num_envs=6", "collector.frames_per_batch=96", *overrides])
    module = algo_class(algo)(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, 0, "cpu", transforms=module.env_transforms())
    with torch.no_grad():  # as the collector samples
        rollout = replay_view(env.rollout(steps, module.policy, break_when_any_done=False))
    return module, module.prepare(sequence_chunks(rollout, length, burn_in))


@pytest.mark.parametrize(("length", "burn_in"), [(8, 4), (8, 0), (6, 2), (5, 2), (16, 3)])
def test_chunks_overlap_by_the_burn_in_and_learn_from_every_step_once(length, burn_in):
    batch = TensorDict({"t": torch.arange(16).expand(3, 16), "env": torch.arange(3)[:, None].expand(3, 16)}, [3, 16])
    chunks = sequence_chunks(batch, length, burn_in)
    assert chunks.shape[-1] == length
    assert (chunks["t"].diff(dim=-1) == 1).all() and (chunks["env"] == chunks["env"][:, :1]).all()  # one env, consecutive
    learnt = sorted(zip(chunks["env"][chunks["learn"]].tolist(), chunks["t"][chunks["learn"]].tolist()))
    assert learnt == sorted((e, t) for e in range(3) for t in range(16))  # each step exactly once
    later = chunks.reshape(3, -1, length)[:, 1:]
    assert not later["learn"][..., :burn_in].any()  # later chunks never learn in their burn-in


def test_chunks_that_do_not_fit_are_refused():
    batch = TensorDict({"t": torch.zeros(2, 6)}, [2, 6])
    for length, burn_in in [(7, 0), (4, 4), (4, 5)]:
        with pytest.raises(ValueError, match="do not fit"):
            sequence_chunks(batch, length, burn_in)


@pytest.mark.parametrize("algo", ["qmix", "vdn", "iql"])
def test_sequence_loss_equals_torchrls_loss_on_a_feed_forward_network(algo):
    """Without recurrence the sequence loss is TorchRL's QMixerLoss / DQNLoss on the same transitions."""
    module, chunks = _module_and_chunks(algo, [], length=8, burn_in=0)
    ours, _ = module.sequence_loss(chunks.clone())
    flat = chunks.reshape(-1).clone()  # the same transitions, one by one (prepared: team reward / per-agent flags)
    theirs = module.loss_module(flat)["loss"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_burn_in_steps_carry_no_loss_and_gradients_flow_back_through_time():
    module, chunks = _module_and_chunks("qmix", ["model=gru", "model.hidden_size=16", "model.hidden_sizes=[16]"], length=8, burn_in=4)
    later = chunks.reshape(6, -1, 8)[:, 1:].reshape(-1, 8)  # chunks whose first 4 steps are burn-in
    loss, _ = module.sequence_loss(later.clone())
    changed = later.clone()
    changed["next", "reward"][:, :4] += 100.0  # rewards of burn-in steps
    torch.testing.assert_close(module.sequence_loss(changed)[0], loss)
    # Episodes are 4 steps and these chunks start with one: the loss at step 3 reaches back to the
    # observation at step 0 through the hidden state; the loss at step 7 (next episode) does not.
    assert later["is_init"][:, [0, 4]].all() and not later["is_init"][:, [1, 2, 3, 5, 6, 7]].any()
    for step, reaches_back in [(3, True), (7, False)]:
        obs = later["agents", "observation"].clone().requires_grad_(True)
        probe = later.clone()
        probe.set(("agents", "observation"), obs)
        probe["learn"] = torch.zeros_like(probe["learn"])
        probe["learn"][:, step] = True
        module.sequence_loss(probe)[0].backward()
        assert (obs.grad[:, 0].abs().sum() > 0) == reaches_back


def test_sequences_longer_than_a_batch_are_refused_in_one_line():
    cfg = load_config("qmix", "memory/cue", ["logger=none", "model=gru", "collector.frames_per_batch=480", "algo.sequence_length=12"])
    with pytest.raises(UsageError, match=r"algo.sequence_length=12 must exceed algo.burn_in=4 and fit the 8 steps per env"):
        algo_class("qmix")(cfg, make_spec_env(cfg.env, 0))


MEMORY = ["--env", "memory/cue", "logger=csv", "eval.every_n_iters=0", "collector.frames_per_batch=960", "algo.annealing_frames=8000"]


@pytest.mark.slow
def test_qmix_with_a_gru_remembers_the_cue_and_the_mlp_cannot(tmp_path):
    gru = ["model=gru", "algo.sequence_length=8", "algo.burn_in=4", "collector.total_frames=13440"]
    assert main(["--algo", "qmix", "--run-dir", str(tmp_path / "gru"), *MEMORY, *gru]) == 0
    assert main(["--algo", "qmix", "--run-dir", str(tmp_path / "mlp"), *MEMORY, "collector.total_frames=7680"]) == 0
    gru_returns, mlp_returns = _returns(tmp_path / "gru"), _returns(tmp_path / "mlp")
    assert sum(gru_returns[-2:]) / 2 >= 0.9, gru_returns  # success rate (epsilon 0.05 still explores); chance is 1/3
    assert max(mlp_returns) <= 0.45, mlp_returns


def test_recurrent_qmix_resumes_bit_for_bit_with_its_sequence_buffer(tmp_path):
    args = [
        *MEMORY,
        "model=gru",
        "model.hidden_size=16",
        "model.hidden_sizes=[16]",
        "env.num_envs=12",
        "collector.frames_per_batch=192",
        "algo.sequence_length=8",
        "algo.burn_in=4",
        "algo.warmup_frames=200",
        "algo.prioritized=true",
        "checkpoint.every_n_iters=1",
    ]
    a, b, one_go, split = resume_pair(tmp_path, "qmix", args, 1152)
    assert any("w_hh" in key for key in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _returns(one_go) == _returns(split)
