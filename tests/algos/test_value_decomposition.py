"""Value decomposition on one-step matrix games: VDN's closed form, relative overgeneralisation
on the climbing game, and the optimum of a monotonic coordination game (VDN and QMIX)."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.evaluate import main as evaluate_main
from ca12.fit import main as fit_main
from ca12.run.config import load_config

CLIMBING = torch.tensor([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])


def _uniform_one_step_batch(env, payoff: torch.Tensor, copies: int) -> TensorDict:
    """Every joint action of a 2-player one-step game exactly `copies` times: uniform data."""
    first = env.reset()  # [1] world; observation [1, 2, obs]
    a0, a1 = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    actions = torch.stack([a0.flatten(), a1.flatten()], -1).repeat(copies, 1)  # [9 * copies, 2]
    n = actions.shape[0]
    obs = first["agents", "observation"].expand(n, *first["agents", "observation"].shape[1:])
    reward = payoff[actions[:, 0], actions[:, 1]].reshape(n, 1, 1).expand(n, 2, 1)
    done = torch.ones(n, 1, dtype=torch.bool)
    return TensorDict(
        {
            "agents": TensorDict({"observation": obs, "action": actions}, [n, 2]),
            "done": torch.zeros(n, 1, dtype=torch.bool),
            "terminated": torch.zeros(n, 1, dtype=torch.bool),
            "next": TensorDict({"agents": TensorDict({"observation": obs, "reward": reward}, [n, 2]), "done": done, "terminated": done}, [n]),
        },
        [n],
    )


def test_vdn_fits_row_mean_plus_column_mean_minus_grand_mean_on_uniform_data():
    cfg = load_config("vdn", "matrix/climbing", ["env.max_steps=1", "env.num_envs=1", "model.hidden_sizes=[64]", "critic_model.hidden_sizes=[64]"])
    env = make_env(cfg.env, 0)
    module = algo_class("vdn")(cfg, make_spec_env(cfg.env, 0))
    batch = _uniform_one_step_batch(env, CLIMBING, copies=4)
    optimiser = torch.optim.Adam(module.loss_module.parameters(), lr=3e-3)
    for _ in range(1500):  # full-batch least squares: the fit converges to the exact minimiser
        total, _ = module.loss(module.prepare(batch.clone()))
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    with torch.no_grad():
        q = module.qnet(env.reset())["agents", "action_value"][0]  # [2 agents, 3 actions]
    fitted = q[0][:, None] + q[1][None, :]  # Q_tot(u0, u1) = Q_0(u0) + Q_1(u1)
    closed_form = CLIMBING.mean(1, keepdim=True) + CLIMBING.mean(0, keepdim=True) - CLIMBING.mean()
    torch.testing.assert_close(fitted, closed_form, atol=0.05, rtol=0)


def _fit_and_evaluate(algo: str, game: str, tmp_path, *extra: str) -> float:
    run_dir = tmp_path / f"{algo}-{game}"
    args = [
        "--algo",
        algo,
        "--env",
        f"matrix/{game}",
        "--run-dir",
        str(run_dir),
        "logger=none",
        "env.max_steps=1",
        "env.num_envs=100",
        "collector.frames_per_batch=100",
        "collector.total_frames=2000",
        "model.hidden_sizes=[64]",
        "critic_model.hidden_sizes=[64]",
        "algo.lr=1e-3",
        "algo.minibatch_size=256",
        "algo.warmup_frames=200",
        "algo.updates_per_frame=0.15",
        "eval.every_n_iters=0",
        *extra,
    ]
    assert fit_main(args) == 0
    return run_dir


def _greedy_return(run_dir, capsys) -> float:
    capsys.readouterr()
    assert evaluate_main([str(run_dir), "--episodes", "4", "--deterministic", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval/episode_reward_mean"]


def test_vdn_on_climbing_with_uniform_exploration_settles_on_the_known_suboptimal_joint_action(tmp_path, capsys):
    # Row/column means of the climbing game make (2, 2) the additive fit's arg max: payoff 5, not 11.
    run_dir = _fit_and_evaluate("vdn", "climbing", tmp_path, "algo.eps_init=1.0", "algo.eps_end=1.0")
    assert _greedy_return(run_dir, capsys) == pytest.approx(5.0)


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_monotonic_coordination_game_is_solved(algo, tmp_path, capsys):
    run_dir = _fit_and_evaluate(algo, "coordination", tmp_path, "algo.annealing_frames=1500")
    assert _greedy_return(run_dir, capsys) == pytest.approx(8.0)  # the optimum (0, 0)
