"""MAPPO / IPPO units on small real batches (B=2 envs, T=5 steps, 3 agents)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config, tiny_env
from torchrl.objectives.value.functional import generalized_advantage_estimate

from ca12.algos import algo_class


def _module_and_batch(algo: str, *extra: str, steps: int = 5):
    cfg = tiny_config(algo, "env.num_envs=2", "env.max_steps=3", *extra)
    env = tiny_env(cfg)
    module = algo_class(algo)(cfg, env)
    with torch.no_grad():
        # max_steps=3 < steps: episodes end and reset inside the batch.
        batch = env.rollout(steps, policy=module.policy, break_when_any_done=False)
    return module, batch  # batch: [B=2, T=5]


def _grads(module, loss):
    module.zero_grad(set_to_none=True)
    loss.backward()
    actor = [p.grad is not None and p.grad.abs().sum() > 0 for p in module.actor.parameters()]
    critic = [p.grad is not None and p.grad.abs().sum() > 0 for p in module.critic.parameters()]
    return actor, critic


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
@pytest.mark.parametrize("continuous", [True, False])
def test_loss_terms_are_scalars_and_reach_the_right_parameters(algo, continuous):
    module, batch = _module_and_batch(algo, f"env.continuous_actions={str(continuous).lower()}", "algo.entropy_coeff=0.01")
    module.compute_advantage(batch)
    total, terms = module.loss(batch.reshape(-1))
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        assert terms[key].shape == torch.Size([]), key
        assert torch.isfinite(terms[key])
    assert total.shape == torch.Size([])

    actor, critic = _grads(module, terms["loss_objective"])
    assert all(actor) and not any(critic), "the surrogate trains the actor only"
    actor, critic = _grads(module, module.loss(batch.reshape(-1))[1]["loss_critic"])
    assert all(critic) and not any(actor), "the value loss trains the critic only"
    actor, critic = _grads(module, module.loss(batch.reshape(-1))[1]["loss_entropy"])
    assert all(actor) and not any(critic), "the entropy bonus trains the actor only"


def test_mappo_critic_is_centralised_and_ippo_critic_is_not():
    for algo, centralised in (("mappo", True), ("ippo", False)):
        module, batch = _module_and_batch(algo)
        td = batch[:, 0].clone()
        module.critic(td)
        before = td["agents", "state_value"].clone()
        td["agents", "observation"][:, 1] += 1.0  # perturb agent 1 only
        module.critic(td)
        changed_agent0 = not torch.allclose(before[:, 0], td["agents", "state_value"][:, 0])
        assert changed_agent0 == centralised, algo


def _hand_gae(reward, value, next_value, done, terminated, gamma, lmbda):
    """Plain-Python GAE (Schulman et al. 2016, eq. 16) over [B, T, n, 1] tensors."""
    B, T, n, _ = value.shape
    adv = torch.zeros_like(value)
    for b in range(B):
        for a in range(n):
            running = 0.0
            for t in reversed(range(T)):
                not_term = 1.0 - float(terminated[b, t, 0])
                not_done = 1.0 - float(done[b, t, 0])
                delta = reward[b, t, a, 0] + gamma * not_term * next_value[b, t, a, 0] - value[b, t, a, 0]
                running = delta + gamma * lmbda * not_done * running
                adv[b, t, a, 0] = running
    return adv


def test_advantage_matches_torchrl_gae_and_a_hand_computation():
    module, batch = _module_and_batch("mappo", "algo.gamma=0.9", "algo.lmbda=0.8", steps=7)
    assert batch["next", "done"].any(), "the batch must contain episode ends"
    module.compute_advantage(batch)
    with torch.no_grad():
        value = module.critic(batch.clone())["agents", "state_value"]
        next_value = module.critic(batch["next"].clone())["agents", "state_value"]
    reward = batch["next", "agents", "reward"]
    n = reward.shape[-2]
    done = batch["next", "done"]
    terminated = batch["next", "terminated"]

    def expand(x):
        return x.unsqueeze(-2).expand(*x.shape[:-1], n, 1)  # [B, T, 1] -> [B, T, n, 1]

    reference, target = generalized_advantage_estimate(0.9, 0.8, value, next_value, reward, expand(done), expand(terminated), time_dim=-3)
    torch.testing.assert_close(batch["agents", "advantage"], reference)
    torch.testing.assert_close(batch["agents", "value_target"], target)
    torch.testing.assert_close(batch["agents", "advantage"], _hand_gae(reward, value, next_value, done, terminated, 0.9, 0.8))
