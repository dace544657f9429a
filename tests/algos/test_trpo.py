"""TRPO and HATRPO: conjugate gradient, the trust region, rejected steps, HATRPO's sequential
per-agent updates, fits with exact resume, config errors, and learning."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_env

import ca12.algos.trpo as trpo
from ca12.algos import algo_class
from ca12.fit import main


def _module(algo: str, *overrides: str, continuous: bool = True):
    """A module on tiny navigation (3 agents) and its env."""
    cfg = tiny_config(algo, f"env.continuous_actions={str(continuous).lower()}", *overrides)
    env = tiny_env(cfg)
    return algo_class(algo)(cfg, env), env


def _module_and_frames(algo: str, *overrides: str, continuous: bool = True):
    """A module and one rollout [4 envs x 25 steps] of its policy, flattened to frames [100]
    with advantages."""
    module, env = _module(algo, *overrides, continuous=continuous)
    with torch.no_grad():
        batch = env.rollout(25, module.policy, break_when_any_done=False)
    module.compute_advantage(batch)
    return module, batch.reshape(-1)


def _kl_by_hand(module, frames, before: dict) -> torch.Tensor:
    """KL(before || now) per frame and agent [N, n_agents], from the distribution parameters."""
    g = module.group
    now = module.actor.get_dist_params(frames.select((g, "observation")).clone())[g]
    if "logits" in before:
        p_old, log_p_old, log_p_new = before["logits"].softmax(-1), before["logits"].log_softmax(-1), now["logits"].log_softmax(-1)
        return (p_old * (log_p_old - log_p_new)).sum(-1)
    mu1, s1, mu2, s2 = before["loc"], before["scale"], now["loc"], now["scale"]
    return (torch.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5).sum(-1)


def _dist_params(module, frames) -> dict:
    with torch.no_grad():
        return module.actor.get_dist_params(frames.select((module.group, "observation")).clone())[module.group].to_dict()


def _bits(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().view(torch.int32) for k, v in module.state_dict().items() if v.dtype == torch.float32}


# --- conjugate gradient -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 20, 60])
def test_conjugate_gradient_solves_random_spd_systems(n):
    generator = torch.Generator().manual_seed(n)
    m = torch.randn(n, n, generator=generator, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)  # symmetric positive definite
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, iters=3 * n)
    assert torch.linalg.norm(a @ x - b) < 1e-6
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-6, rtol=0)


def test_conjugate_gradient_stops_at_tolerance_and_after_iters():
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    b = torch.ones(4, dtype=torch.float64)
    calls = []
    x = trpo.conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=50, tol=1e-8)
    assert len(calls) == 4  # exact after dim(b) iterations: then the residual is below tol
    torch.testing.assert_close(x, b / torch.diag(a))
    calls.clear()
    trpo.conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=2)
    assert len(calls) == 2


# --- one TRPO step ------------------------------------------------------------------------------------
@pytest.mark.parametrize("continuous", [True, False])
def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate(continuous):
    module, frames = _module_and_frames("trpo", continuous=continuous)
    advantage = frames[module.group, "advantage"].squeeze(-1)
    with torch.no_grad():
        old = module.policy_terms(frames)
    before = _dist_params(module, frames)
    stats = module.policy_update(frames)
    assert stats["train/step_accepted"] == 1.0
    with torch.no_grad():
        kl = _kl_by_hand(module, frames, before).sum(-1).mean()  # joint KL: summed over agents
        ratio = torch.exp(module.policy_terms(frames)[1] - old[1])
    assert 0 < kl <= module.cfg.max_kl * (1 + 1e-5)
    assert kl.item() == pytest.approx(stats["train/kl"], rel=1e-4)
    improvement = (ratio * advantage).mean() - advantage.mean()  # the surrogate at the old policy is mean(A)
    assert improvement > 0 and improvement.item() == pytest.approx(stats["train/surrogate_improvement"], rel=1e-3)


def test_a_step_over_the_kl_bound_is_rejected_and_leaves_every_parameter_bit_identical(monkeypatch):
    module, frames = _module_and_frames("trpo")
    exact_kl = trpo.policy_kl
    monkeypatch.setattr(trpo, "policy_kl", lambda old, new: exact_kl(old, new) + 1.0)  # same Fisher, every KL > max_kl
    before = _bits(module)
    stats = module.policy_update(frames)
    assert stats["train/step_accepted"] == 0.0 and stats["train/line_search_steps"] == module.cfg.line_search_steps
    after = _bits(module)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_step_that_does_not_improve_the_surrogate_is_rejected_bit_identically():
    module, frames = _module_and_frames("trpo")
    advantage = frames[module.group, "advantage"].squeeze(-1)
    with torch.no_grad():
        old = module.policy_terms(frames)
    fisher_kl = module.fisher_kl(frames)

    def evaluate():
        # The surrogate minus a penalty whose gradient vanishes at the old policy: the same
        # direction, but every step tried makes the objective worse.
        ratio, kl = module.ratio_and_kl(frames, old)
        return (ratio * advantage).mean() - 1e6 * ((ratio - 1) ** 2).mean(), kl.sum(-1).mean()

    before = _bits(module)
    stats = module.natural_gradient_step(list(module.actor.parameters()), evaluate, lambda: fisher_kl().sum(-1).mean())
    assert stats["step_accepted"] == 0.0 and stats["grad_norm"] > 0
    assert stats["line_search_steps"] == module.cfg.line_search_steps
    after = _bits(module)
    assert all(torch.equal(before[k], after[k]) for k in before)


# --- HATRPO -------------------------------------------------------------------------------------------
def test_hatrpo_orders_are_seeded_and_change_across_iterations():
    first, again, other = _module("hatrpo")[0], _module("hatrpo")[0], _module("hatrpo", "seed=1")[0]
    orders = [first.agent_order() for _ in range(8)]
    assert orders == [again.agent_order() for _ in range(8)]
    assert all(sorted(order) == [0, 1, 2] for order in orders) and len({tuple(o) for o in orders}) > 1
    assert orders != [other.agent_order() for _ in range(8)]


@pytest.mark.parametrize("continuous", [True, False])
def test_hatrpo_updates_agents_in_its_order_against_reweighted_advantages_each_within_max_kl(continuous, monkeypatch):
    module, frames = _module_and_frames("hatrpo", continuous=continuous)
    expected_order = torch.randperm(3, generator=torch.Generator().manual_seed(module.run_config["seed"])).tolist()
    advantage = frames[module.group, "advantage"].squeeze(-1)  # [N, 3]
    with torch.no_grad():
        old = module.policy_terms(frames)
    before = _dist_params(module, frames)
    seen = []
    step = module.natural_gradient_step

    def spy(params, evaluate, fisher_kl):
        # At the start of agent i_m's step its own ratio is 1 and the agents not yet updated have
        # ratio 1: the product over all agents is M_m, the earlier agents' ratios.
        agent = expected_order[len(seen)]
        with torch.no_grad():
            ratios = torch.exp(module.policy_terms(frames)[1] - old[1])
            seen.append((float(evaluate()[0]), float((ratios.prod(-1) * advantage[:, agent]).mean()), float(ratios.prod(-1).sub(1).abs().max())))
        return step(params, evaluate, fisher_kl)

    monkeypatch.setattr(module, "natural_gradient_step", spy)
    metrics = module.policy_update(frames)
    assert module.last_order == expected_order and len(seen) == 3
    for surrogate, expected, _ in seen:
        assert surrogate == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert seen[0][2] == 0.0 and seen[2][2] > 0  # the first agent sees M = 1, the last the others' ratios
    with torch.no_grad():
        kl = _kl_by_hand(module, frames, before).mean(0)  # [3]: each agent's mean KL
    assert metrics["train/step_accepted"] > 0 and (kl > 0).any()
    assert (kl <= module.cfg.max_kl * (1 + 1e-5)).all(), kl
    assert kl.max().item() == pytest.approx(metrics["train/kl_max"], rel=1e-4)


# --- fits, exact resume, config errors ------------------------------------------------------------
FIT = [
    "logger=none",
    "env.num_envs=4",
    "env.max_steps=25",
    "collector.frames_per_batch=100",
    "model.hidden_sizes=[16,16]",
    "critic_model.hidden_sizes=[16,16]",
    "algo.minibatch_size=50",
    "algo.num_epochs=2",
    "eval.every_n_iters=0",
]


def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


@pytest.mark.parametrize("algo, actions", [("trpo", "true"), ("hatrpo", "false")])
def test_fit_writes_checkpoints_and_resumes_bit_for_bit(algo, actions, tmp_path):
    def train(run_dir: Path, *budgets: int) -> dict:
        """Train to each frame budget in turn (the first starts the run, the others resume it)."""
        for i, frames in enumerate(budgets):
            start = ["--algo", algo, "--run-dir", str(run_dir), *FIT, f"env.continuous_actions={actions}"] if i == 0 else ["--resume", str(run_dir)]
            assert main([*start, f"collector.total_frames={frames}"]) == 0
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)

    one_go, split = tmp_path / "one_go", tmp_path / "split"
    a, b = train(one_go, 400), train(split, 200, 400)
    assert a["ca12"]["frames"] == b["ca12"]["frames"] == 400 and a["state_dict"].keys() == b["state_dict"].keys()
    assert [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])] == []
    if algo == "hatrpo":
        assert torch.equal(a["hatrpo"]["order_generator"], b["hatrpo"]["order_generator"])
    assert _returns(one_go) == _returns(split) and len(_returns(one_go)) == 4
    with open(one_go / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    for key in (
        "train/kl",
        "train/surrogate_improvement",
        "train/step_accepted",
        "train/line_search_steps",
        "train/loss_critic",
        "train/grad_norm",
        "train/grad_norm_critic",
    ):
        assert row[key] != "", key


@pytest.mark.parametrize(
    "algo, override, message",
    [
        ("trpo", "algo.backtrack_coeff=1.5", "algo.backtrack_coeff must be below 1.0, got 1.5"),
        ("trpo", "algo.max_kl=0", "algo.max_kl must be positive, got 0"),
        ("trpo", "algo.fisher_fraction=2", "algo.fisher_fraction must be <= 1.0, got 2"),
        ("hatrpo", "model.share_params=true", "hatrpo updates each agent's own policy: model.share_params=true is refused"),
        *[
            ("hatrpo", f"model={kind}", f"model={kind} shares weights between agents")
            for kind in ("commnet", "tarmac", "dial", "graph", "hierarchical")
        ],
    ],
)
def test_a_bad_config_value_is_refused_in_one_line(algo, override, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--algo", algo, "--run-dir", str(run_dir), *FIT, override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not run_dir.exists()


# --- learning -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trpo_learns_navigation(tmp_path):
    # Default hyperparameters, half-size batches (more policy steps per frame). A random policy
    # scores about -0.6; measured: 0.46 after 42 k frames (~30 s on 2 busy cores).
    run_dir = tmp_path / "trpo"
    assert (
        main(
            [
                "--algo",
                "trpo",
                "--run-dir",
                str(run_dir),
                "logger=none",
                "eval.every_n_iters=0",
                "collector.frames_per_batch=3000",
                "collector.total_frames=42000",
            ]
        )
        == 0
    )
    returns = _returns(run_dir)
    assert sum(returns[-2:]) / 2 >= 0.2, returns


@pytest.mark.slow
def test_trpo_learns_cartpole(tmp_path):
    # Random play lasts ~22 steps; measured: 358 and 294 in the last two iterations (~25 s).
    run_dir = tmp_path / "cartpole"
    assert (
        main(
            [
                "--algo",
                "trpo",
                "--env",
                "gym/CartPole-v1",
                "--run-dir",
                str(run_dir),
                "logger=none",
                "eval.every_n_iters=0",
                "collector.frames_per_batch=2000",
                "collector.total_frames=20000",
            ]
        )
        == 0
    )
    returns = _returns(run_dir)
    assert returns[0] < 40 and max(returns[-2:]) > 150, returns
