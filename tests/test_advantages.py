"""`ca12.advantages.compute_gae` equals TorchRL's GAE module and a hand computation."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.value import GAE

from ca12.advantages import compute_gae

GAMMA, LMBDA = 0.9, 0.8


def _trajectories(*shape: int) -> dict[str, torch.Tensor]:
    """Random rewards and values [B, T, *agents, 1] with terminations and truncations mid-batch."""
    generator = torch.Generator().manual_seed(sum(shape))
    rewards, values, next_values = torch.randn(3, *shape, 1, generator=generator)
    terminated = torch.rand(*shape, 1, generator=generator) < 0.1
    truncated = (torch.rand(*shape, 1, generator=generator) < 0.1) & ~terminated
    terminated[0, 3], truncated[0, 3], truncated[1, 5] = True, False, True  # at least one of each, mid-batch
    return {"rewards": rewards, "values": values, "next_values": next_values, "terminated": terminated, "truncated": truncated}


def _torchrl_gae(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """TorchRL's GAE module, values given (no value network), on a TensorDict [B, T]."""
    batch = x["rewards"].shape[:2]
    td = TensorDict(
        {"state_value": x["values"], "next": {"state_value": x["next_values"], "reward": x["rewards"],
                                              "done": x["terminated"] | x["truncated"], "terminated": x["terminated"]}},
        batch,
    )
    GAE(gamma=GAMMA, lmbda=LMBDA, value_network=None)(td)
    return td["advantage"], td["value_target"]


@pytest.mark.parametrize("shape, time_dim", [((4, 12), -2), ((4, 12, 3), -3)])
def test_compute_gae_equals_torchrls_gae_module(shape, time_dim):
    x = _trajectories(*shape)
    advantages, targets = compute_gae(**x, gamma=GAMMA, lmbda=LMBDA, time_dim=time_dim)
    expected_advantages, expected_targets = _torchrl_gae(x)
    torch.testing.assert_close(advantages, expected_advantages, atol=1e-6, rtol=0)
    torch.testing.assert_close(targets, expected_targets, atol=1e-6, rtol=0)


def test_compute_gae_by_hand_termination_does_not_bootstrap_truncation_does_not_carry():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).view(5, 1)
    values = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1]).view(5, 1)
    next_values = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0]).view(5, 1)
    terminated = torch.tensor([False, True, False, False, False]).view(5, 1)
    truncated = torch.tensor([False, False, False, True, False]).view(5, 1)
    advantages, targets = compute_gae(rewards, values, next_values, terminated, truncated, GAMMA, LMBDA)
    delta = rewards + GAMMA * (~terminated) * next_values - values
    a4 = delta[4]  # the batch ends: bootstrap, nothing to carry
    a3 = delta[3]  # truncated: bootstraps from V(s_4') = 40, no carry from step 4
    a2 = delta[2] + GAMMA * LMBDA * a3
    a1 = delta[1]  # terminated: r_1 - V(s_1), no bootstrap
    a0 = delta[0] + GAMMA * LMBDA * a1
    assert delta[1].item() == pytest.approx(2.0 - 0.4) and delta[3].item() == pytest.approx(4.0 + GAMMA * 40.0 - 0.2)
    torch.testing.assert_close(advantages, torch.stack([a0, a1, a2, a3, a4]), atol=1e-6, rtol=0)
    torch.testing.assert_close(targets, advantages + values)
