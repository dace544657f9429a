"""`ca12.advantages.compute_gae` equals TorchRL's GAE module and a hand computation; `vtrace`
equals n-step returns on-policy, the IMPALA paper's explicit sum off-policy, and TorchRL's V-trace."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.value import GAE
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from ca12.advantages import compute_gae, vtrace

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
        {
            "state_value": x["values"],
            "next": {
                "state_value": x["next_values"],
                "reward": x["rewards"],
                "done": x["terminated"] | x["truncated"],
                "terminated": x["terminated"],
            },
        },
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


@pytest.mark.parametrize("shape, time_dim", [((4, 12), -2), ((4, 12, 3), -3)])
def test_compute_gae_at_lambda_0_is_the_one_step_td_error(shape, time_dim):
    x = _trajectories(*shape)
    advantages, targets = compute_gae(**x, gamma=GAMMA, lmbda=0.0, time_dim=time_dim)
    delta = x["rewards"] + GAMMA * (~x["terminated"]) * x["next_values"] - x["values"]
    torch.testing.assert_close(advantages, delta, atol=1e-6, rtol=0)
    torch.testing.assert_close(targets, delta + x["values"], atol=1e-6, rtol=0)


# --- V-trace ---------------------------------------------------------------------------------------
def _off_policy(b: int = 3, t: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random batch [b, t, 1]: log-ratios, discounts 0.9 with terminations, rewards, values."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(b, t, 1, generator=g) < 0.15
    return {
        "log_rhos": torch.randn(b, t, 1, generator=g),
        "discounts": GAMMA * (~terminated).float(),
        "rewards": torch.randn(b, t, 1, generator=g),
        "values": torch.randn(b, t, 1, generator=g),
        "bootstrap_value": torch.randn(b, 1, generator=g),
        "terminated": terminated,
    }


def test_vtrace_on_policy_is_the_n_step_bootstrapped_return():
    x = _off_policy()
    x["log_rhos"] = torch.zeros_like(x["log_rhos"])  # pi = mu: every rho and c is 1
    vs, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"])
    t = x["rewards"].shape[1]
    for s in range(t):  # G_s = sum_{k>=s} (prod_{i<k} gamma_i) r_k + (prod_i gamma_i) V(x_T)
        ret, scale = torch.zeros(3, 1), torch.ones(3, 1)
        for k in range(s, t):
            ret, scale = ret + scale * x["rewards"][:, k], scale * x["discounts"][:, k]
        torch.testing.assert_close(vs[:, s], ret + scale * x["bootstrap_value"])
    vs_next = torch.cat([vs[:, 1:], x["bootstrap_value"][:, None]], 1)
    torch.testing.assert_close(adv, x["rewards"] + x["discounts"] * vs_next - x["values"])


def test_vtrace_on_policy_with_lambda_is_gae_targets_and_advantages():
    """On-policy (rho = c = 1) V-trace(lambda) is GAE(lambda): its targets the lambda-returns and
    its policy-gradient advantages GAE's advantages (rlax's lambda * v_{s+1} + (1 - lambda) V(x_{s+1})
    bootstrap), with per-step discounts that cut at terminations."""
    x = _off_policy(seed=4)
    x["log_rhos"] = torch.zeros_like(x["log_rhos"])
    vs, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"], lmbda=LMBDA)
    next_values = torch.cat([x["values"][:, 1:], x["bootstrap_value"][:, None]], 1)
    advantages, targets = compute_gae(x["rewards"], x["values"], next_values, x["terminated"], torch.zeros_like(x["terminated"]), GAMMA, LMBDA)
    torch.testing.assert_close(vs, targets)
    torch.testing.assert_close(adv, advantages)
    one, _ = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"])
    assert not torch.allclose(vs, one), "lambda < 1 cuts the traces"
    # By hand, with discounts that differ from step to step: A_s = sum_k (prod_{s<=i<k} gamma_i lambda) delta_k.
    x["discounts"] = torch.rand(x["discounts"].shape, generator=torch.Generator().manual_seed(5)) * (~x["terminated"])
    _, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"], lmbda=LMBDA)
    delta = x["rewards"] + x["discounts"] * next_values - x["values"]
    for s in range(delta.shape[1]):
        total, trace = torch.zeros(3, 1), torch.ones(3, 1)
        for k in range(s, delta.shape[1]):
            total, trace = total + trace * delta[:, k], trace * x["discounts"][:, k] * LMBDA
        torch.testing.assert_close(adv[:, s], total)


@pytest.mark.parametrize("clips", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.9), (None, None, None)])
def test_vtrace_off_policy_equals_the_papers_explicit_sum(clips):
    x = _off_policy(seed=1)
    clip_rho, clip_pg, clip_c = clips
    vs, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"], clip_rho, clip_pg, clip_c)
    rho = x["log_rhos"].exp()

    def clip(w, c):
        return w if c is None else w.clamp(max=c)

    v_next = torch.cat([x["values"][:, 1:], x["bootstrap_value"][:, None]], 1)
    delta = clip(rho, clip_rho) * (x["rewards"] + x["discounts"] * v_next - x["values"])
    t = delta.shape[1]
    for s in range(t):  # v_s = V(x_s) + sum_{k>=s} (prod_{s<=i<k} gamma_i c_i) delta_k  (IMPALA eq. 1)
        total, trace = x["values"][:, s].clone(), torch.ones(3, 1)
        for k in range(s, t):
            total += trace * delta[:, k]
            trace = trace * x["discounts"][:, k] * clip(rho[:, k], clip_c)
        torch.testing.assert_close(vs[:, s], total)
    vs_next = torch.cat([vs[:, 1:], x["bootstrap_value"][:, None]], 1)
    torch.testing.assert_close(adv, clip(rho, clip_pg) * (x["rewards"] + x["discounts"] * vs_next - x["values"]))


def test_vtrace_equals_torchrls_when_the_policy_gradient_clip_is_the_target_clip():
    x = _off_policy(seed=2)
    vs, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"], 1.5, 1.5, 0.8)
    next_values = torch.cat([x["values"][:, 1:], x["bootstrap_value"][:, None]], 1)
    # TorchRL: rho = exp(log_pi - log_mu) with log_pi the target policy's (see NOTES).
    adv_torchrl, vs_torchrl = vtrace_advantage_estimate(
        GAMMA,
        x["log_rhos"],
        torch.zeros_like(x["log_rhos"]),
        x["values"],
        next_values,
        x["rewards"],
        done=x["terminated"],
        terminated=x["terminated"],
        rho_thresh=1.5,
        c_thresh=0.8,
    )
    torch.testing.assert_close(vs, vs_torchrl)
    torch.testing.assert_close(adv, adv_torchrl)


def test_vtrace_takes_any_time_dim_and_refuses_mismatched_shapes():
    x = _off_policy(seed=3)
    vs, adv = vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"])
    moved = {k: x[k].transpose(0, 1) for k in ("log_rhos", "discounts", "rewards", "values")}  # [T, B, 1]
    vs_t, adv_t = vtrace(moved["log_rhos"], moved["discounts"], moved["rewards"], moved["values"], x["bootstrap_value"], time_dim=0)
    torch.testing.assert_close(vs_t.transpose(0, 1), vs)
    torch.testing.assert_close(adv_t.transpose(0, 1), adv)
    with pytest.raises(ValueError, match="bootstrap_value must have the shape of one time step"):
        vtrace(x["log_rhos"], x["discounts"], x["rewards"], x["values"], x["values"])
    with pytest.raises(ValueError, match="must share one shape"):
        vtrace(x["log_rhos"][:, :-1], x["discounts"], x["rewards"], x["values"], x["bootstrap_value"])
