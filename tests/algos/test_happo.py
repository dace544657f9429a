"""HAPPO: sequential per-agent clipped updates against M-reweighted advantages, agents' own
parameters only, its own Adam per agent, exact resume, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_env
from test_trpo import FIT as TRPO_FIT

from ca12.algos import algo_class
from ca12.fit import main


def _module_and_frames(*overrides: str, continuous: bool = True):
    """HAPPO on tiny navigation (3 agents) and one rollout [4 envs x 25 steps] flattened to frames [100]."""
    cfg = tiny_config("happo", f"env.continuous_actions={str(continuous).lower()}", "algo.minibatch_size=50", *overrides)
    env = tiny_env(cfg)
    module = algo_class("happo")(cfg, env)
    optimisers = module.configure_optimizers()
    module.optimizers = lambda: optimisers  # outside a Trainer: plain backward() and step()
    module.stepper.lean = True
    with torch.no_grad():
        batch = env.rollout(25, module.policy, break_when_any_done=False)
    module.compute_advantage(batch)
    return module, batch.reshape(-1)


def _slices(module) -> list[dict[str, torch.Tensor]]:
    """Each agent's slice of every actor parameter (all are stacked along a leading agent dim)."""
    params = dict(module.actor.named_parameters())
    assert params and all(p.shape[0] == 3 for p in params.values()), {k: p.shape for k, p in params.items()}
    return [{k: p[i].detach().clone() for k, p in params.items()} for i in range(3)]


@pytest.mark.parametrize("continuous", [True, False])
def test_each_agent_moves_only_its_own_parameters_against_the_earlier_agents_ratios(continuous, monkeypatch):
    module, frames = _module_and_frames(continuous=continuous)
    expected_order = torch.randperm(3, generator=torch.Generator().manual_seed(module.run_config["seed"])).tolist()
    with torch.no_grad():
        old = module.policy_terms(frames)[1]
    start = _slices(module)
    seen, loss = [], module.agent_loss

    def spy(minibatch, agent, old_log_prob, advantage, weight):
        if not seen or seen[-1][0] != agent:  # the first minibatch of this agent: check M and who has moved
            now = _slices(module)
            moved = [any(not torch.equal(now[i][k], start[i][k]) for k in now[i]) for i in range(3)]
            with torch.no_grad():
                ratios = torch.exp(module.policy_terms(frames)[1] - old)  # [N, 3]
            seen.append((agent, moved, ratios.prod(-1), now))
        return loss(minibatch, agent, old_log_prob, advantage, weight)

    monkeypatch.setattr(module, "agent_loss", spy)
    metrics = module.policy_update(frames)
    assert module.last_order == expected_order and [s[0] for s in seen] == expected_order
    for m, (agent, moved, _, _) in enumerate(seen):
        assert moved == [a in expected_order[:m] for a in range(3)]  # only the agents already updated have moved
    assert torch.equal(seen[0][2], torch.ones_like(seen[0][2])) and not torch.allclose(seen[2][2], torch.ones_like(seen[2][2]))
    end = _slices(module)
    assert all(any(not torch.equal(end[i][k], start[i][k]) for k in end[i]) for i in range(3))
    # once its own update is over an agent never moves again: the later agents' Adams leave it bit-identical
    for m in range(2):
        agent, after_own_update = expected_order[m], seen[m + 1][3][expected_order[m]]
        assert all(torch.equal(end[agent][k], after_own_update[k]) for k in end[agent]), agent
    assert metrics["train/clip_fraction"] >= 0 and torch.isfinite(torch.as_tensor(metrics["train/loss_objective"]))


def test_the_weight_of_each_agents_surrogate_is_the_product_of_the_earlier_agents_ratios(monkeypatch):
    module, frames = _module_and_frames("algo.minibatch_size=100", continuous=False)  # one minibatch: the whole batch, shuffled
    with torch.no_grad():
        old = module.policy_terms(frames)[1]
    calls, loss = [], module.agent_loss

    def spy(minibatch, agent, old_log_prob, advantage, weight):
        if not calls or calls[-1][0] != agent:
            with torch.no_grad():
                ratios = torch.exp(module.policy_terms(frames)[1] - old)  # [N, 3], every frame
            calls.append((agent, weight.clone(), ratios))
        return loss(minibatch, agent, old_log_prob, advantage, weight)

    monkeypatch.setattr(module, "agent_loss", spy)
    module.policy_update(frames)
    order = module.last_order
    assert [agent for agent, _, _ in calls] == order
    for m, (agent, weight, ratios) in enumerate(calls):
        expected = ratios[:, order[:m]].prod(-1)  # M_m: the earlier agents' ratios (1 for the first)
        torch.testing.assert_close(weight.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(calls[-1][1], torch.ones(100))


FIT = [*TRPO_FIT, "algo.actor_epochs=2"]  # tiny navigation, 100-frame batches


def test_happo_resumes_bit_for_bit(tmp_path):
    def train(run_dir: Path, *budgets: int) -> dict:
        for i, frames in enumerate(budgets):
            start = ["--algo", "happo", "--run-dir", str(run_dir), *FIT] if i == 0 else ["--resume", str(run_dir)]
            assert main([*start, f"collector.total_frames={frames}"]) == 0
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)

    a, b = train(tmp_path / "one_go", 400), train(tmp_path / "split", 200, 400)
    assert a["ca12"]["frames"] == b["ca12"]["frames"] == 400
    assert [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])] == []
    assert len(a["optimizer_states"]) == 4  # the critic's and one per agent
    assert torch.equal(a["hatrpo"]["order_generator"], b["hatrpo"]["order_generator"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.share_params=true", "happo updates each agent's own policy: model.share_params=true is refused"),
        ("model=tarmac", "model=tarmac shares weights between agents"),
        ("algo.clip_epsilon=0", "algo.clip_epsilon must be positive, got 0"),
    ],
)
def test_a_bad_config_value_is_refused_in_one_line(override, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--algo", "happo", "--run-dir", str(run_dir), *FIT, override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not run_dir.exists()
