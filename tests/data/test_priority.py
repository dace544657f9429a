"""Prioritised replay: the sampler's distribution and weights, and every replay algorithm
training with it (TorchRL's multi-agent losses need the weights shaped per agent)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_args
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from ca12.data.priority import TensorPrioritizedSampler
from ca12.fit import main


def _buffer(alpha: float, beta: float, n: int = 4) -> TensorDictReplayBuffer:
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(8), sampler=TensorPrioritizedSampler(8, alpha, beta), batch_size=200_000, priority_key="td_error"
    )
    buffer.extend(TensorDict({"x": torch.arange(n)}, [n]))
    return buffer


def test_new_transitions_get_the_largest_priority_and_sampling_follows_priorities():
    buffer = _buffer(alpha=0.5, beta=1.0)
    sampler = buffer.sampler
    assert torch.equal(sampler._priority[:4], torch.ones(4)) and sampler._priority[4:].eq(0).all()
    buffer.update_priority(torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 4.0, 9.0, -16.0]))  # |delta|^0.5 = 1, 2, 3, 4
    torch.testing.assert_close(sampler._priority[:4], torch.tensor([1.0, 2.0, 3.0, 4.0]), atol=1e-5, rtol=0)
    buffer.extend(TensorDict({"x": torch.tensor([4])}, [1]))  # a newcomer gets the largest priority so far
    assert sampler._priority[4] == pytest.approx(4.0, abs=1e-5)

    torch.manual_seed(0)
    sample = buffer.sample()
    frequency = torch.bincount(sample["index"], minlength=5).float() / sample.shape[0]
    torch.testing.assert_close(frequency, torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0]) / 14, atol=0.005, rtol=0)
    # importance weights (N P(i))^-beta / max_j (N P(j))^-beta = p_min / p_i at beta = 1
    expected = 1.0 / sampler._priority[sample["index"]]
    torch.testing.assert_close(sample["priority_weight"], expected, atol=1e-5, rtol=0)


def test_alpha_zero_is_uniform_and_state_round_trips():
    buffer = _buffer(alpha=0.0, beta=0.4)
    buffer.update_priority(torch.tensor([0, 1]), torch.tensor([100.0, 0.0]))
    torch.manual_seed(0)
    sample = buffer.sample()
    frequency = torch.bincount(sample["index"], minlength=4).float() / sample.shape[0]
    torch.testing.assert_close(frequency, torch.full((4,), 0.25), atol=0.005, rtol=0)
    assert sample["priority_weight"].eq(1.0).all()

    other = TensorPrioritizedSampler(8, 0.0, 0.4)
    other.load_state_dict(buffer.sampler.state_dict())
    assert torch.equal(other._priority, buffer.sampler._priority)


def test_empty_buffer_is_refused():
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        TensorPrioritizedSampler(4, 0.6, 0.4).sample(LazyTensorStorage(4), 2)


@pytest.mark.parametrize(
    "algo, actions",
    [
        ("iql", "discrete"),
        ("vdn", "discrete"),
        ("qmix", "discrete"),
        ("maddpg", "continuous"),
        ("iddpg", "discrete"),
        ("masac", "continuous"),
        ("isac", "discrete"),
    ],
)
def test_every_replay_algorithm_trains_with_prioritised_replay(algo, actions, tmp_path):
    run_dir = tmp_path / algo
    continuous = f"env.continuous_actions={str(actions == 'continuous').lower()}"
    assert main(["--algo", algo, "--run-dir", str(run_dir), *tiny_args(algo), continuous, "logger=none", "algo.prioritized=true"]) == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    (key,) = [k for k in state if k.endswith("ReplayDataModule")]
    sampler = state[key]["buffer"]["_sampler"]
    stored = state[key]["buffer"]["_storage"]["_len"]
    priority = sampler["priority"][:stored]
    assert torch.isfinite(priority).all() and priority.gt(0).all()
    assert priority.ne(priority[0]).any(), "the TD errors of sampled transitions were written back"
