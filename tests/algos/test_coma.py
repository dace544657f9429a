"""COMA: counterfactual and central-V advantages, TD(lambda) targets, the centralised critic, and learning."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import tiny_config, tiny_env
from tensordict import TensorDict

from ca12.algos import algo_class
from ca12.algos.coma import coma_advantages, lambda_returns
from ca12.evaluate import main as evaluate_main
from ca12.fit import main as fit_main


def test_counterfactual_advantages_have_zero_mean_under_each_agents_policy():
    torch.manual_seed(0)
    q_all = torch.randn(2, 5, 3, 4)  # [B, T, n_agents, n_actions]
    probs = torch.softmax(torch.randn(2, 5, 3, 4), -1)
    actions = torch.randint(0, 4, (2, 5, 3))
    taken, all_advantages = coma_advantages(q_all, probs, actions)
    torch.testing.assert_close((probs * all_advantages).sum(-1), torch.zeros(2, 5, 3), atol=1e-6, rtol=0)
    baseline = (probs * q_all).sum(-1)
    torch.testing.assert_close(taken, q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - baseline)


def test_lambda_returns_match_td0_monte_carlo_and_a_hand_computation():
    reward = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # [T, 1]
    next_q = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    terminated = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    continues = torch.tensor([[1.0], [1.0], [1.0], [0.0]])
    gamma = 0.5
    td0 = lambda_returns(reward, next_q, terminated, continues, gamma, 0.0)
    torch.testing.assert_close(td0, reward + gamma * (1 - terminated) * next_q)
    monte_carlo = lambda_returns(reward, next_q, terminated, continues, gamma, 1.0)
    torch.testing.assert_close(monte_carlo.flatten(), torch.tensor([1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4.0]))
    lam = 0.5
    g3 = 4.0
    g2 = 3 + gamma * (30 + lam * (g3 - 30))
    g1 = 2 + gamma * (20 + lam * (g2 - 20))
    g0 = 1 + gamma * (10 + lam * (g1 - 10))
    torch.testing.assert_close(lambda_returns(reward, next_q, terminated, continues, gamma, lam).flatten(), torch.tensor([g0, g1, g2, g3]))


def test_critic_sees_the_other_agents_actions_but_not_its_own():
    cfg = tiny_config("coma", "env.num_envs=2")
    env = tiny_env(cfg)
    module = algo_class("coma")(cfg, env)
    obs = torch.randn(4, *env.full_observation_spec_unbatched["agents", "observation"].shape)  # [4, 3 agents, obs]
    actions = torch.randint(0, module.critic.n_actions, (4, 3))
    q = module.critic(obs, actions)
    changed = actions.clone()
    changed[:, 0] = (changed[:, 0] + 1) % module.critic.n_actions  # agent 0 acts differently
    q_changed = module.critic(obs, changed)
    torch.testing.assert_close(q_changed[:, 0], q[:, 0])  # its own action is what the head ranges over
    assert not torch.allclose(q_changed[:, 1], q[:, 1])  # agent 1's critic sees agent 0's action


def test_coma_reaches_the_optimal_team_return_on_a_repeated_coordination_game(tmp_path, capsys):
    run_dir = tmp_path / "coma"
    args = [
        "--algo",
        "coma",
        "--env",
        "matrix/coordination",
        "--run-dir",
        str(run_dir),
        "logger=none",
        "env.num_envs=50",
        "collector.frames_per_batch=500",
        "collector.total_frames=6000",
        "eval.every_n_iters=0",
        "algo.num_epochs=10",
        "algo.minibatch_size=100",
    ]
    assert fit_main(args) == 0
    with open(run_dir / "metrics.csv") as f:
        returns = [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f)]
    assert returns[0] < 60  # a uniform random policy earns 4 per play on average: ~40 over 10 plays
    capsys.readouterr()
    assert evaluate_main([str(run_dir), "--episodes", "4", "--deterministic", "--json"]) == 0
    greedy = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval/episode_reward_mean"]
    assert greedy == 80.0  # 10 plays of the optimum (0, 0), payoff 8


# Two players, 10 plays an episode: 2 batches of 20 frames, tiny nets.
TINY_MATRIX = [
    "--env",
    "matrix/coordination",
    "env.num_envs=2",
    "collector.frames_per_batch=20",
    "collector.total_frames=40",
    "model.hidden_sizes=[16]",
    "critic_model.hidden_sizes=[16]",
    "algo.minibatch_size=10",
    "algo.num_epochs=2",
    "algo.actor_epochs=1",
]


def test_central_v_advantage_is_every_agents_lambda_return_minus_v():
    cfg = tiny_config("coma", "algo.baseline=central_v", "env.num_envs=2")
    module = algo_class("coma")(cfg, tiny_env(cfg))
    g, gamma, lmbda = module.group, cfg.algo.gamma, cfg.algo.lmbda
    n, obs_dim, n_actions = module.groups[0].n_agents, module.groups[0].obs_dim, module.groups[0].n_actions
    b, t = 2, 5
    obs = torch.rand(b, t + 1, n, obs_dim)  # [B, T+1, n, obs]: step t's next observation is step t+1's
    reward = torch.randn(b, t, n, 1)  # the agents' own rewards; the team's is their mean
    done = torch.zeros(b, t, 1, dtype=torch.bool)
    done[0, 2] = True  # world 0's episode ends at step 2 (terminated: no bootstrap), the next starts at 3
    batch = TensorDict(
        {
            g: {"observation": obs[:, :-1], "action": torch.randint(0, n_actions, (b, t, n))},
            "next": {g: {"observation": obs[:, 1:], "reward": reward}, "done": done, "terminated": done},
        },
        [b, t],
    )
    batch.set("coma_target", module.critic_targets(batch))
    with torch.no_grad():
        v = module.critic.net(obs.flatten(-2))[..., 0]  # [B, T+1], V(s) by hand on the flattened state
    team = reward.mean((-2, -1))  # [B, T]
    returns = torch.zeros(b, t)
    for world in range(b):
        following = None  # G of the next step inside the batch and the episode
        for step in reversed(range(t)):
            if done[world, step]:
                following = team[world, step]
            elif following is None:  # the batch ends: bootstrap from V of the next state alone
                following = team[world, step] + gamma * v[world, step + 1]
            else:
                following = team[world, step] + gamma * (v[world, step + 1] + lmbda * (following - v[world, step + 1]))
            returns[world, step] = following
    advantages = module.advantages(batch, torch.full((b, t, n, n_actions), 1 / n_actions), batch[g, "action"])
    assert advantages.shape == (b, t, n)
    torch.testing.assert_close(advantages, (returns - v[:, :-1]).unsqueeze(-1).expand(b, t, n))


def test_an_unknown_baseline_is_refused_in_one_line(tmp_path, capsys):
    assert fit_main(["--algo", "coma", *TINY_MATRIX, "--run-dir", str(tmp_path / "run"), "algo.baseline=central_q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ca12.fit: error: algo.baseline must be one of counterfactual, central_v, got 'central_q'"


@pytest.mark.parametrize("baseline, critic_inputs", [("counterfactual", 9 + 2 * 9 + 2 * 3 + 2), ("central_v", 2 * 9)])
def test_both_baselines_fit_and_train_their_own_critic(tmp_path, baseline, critic_inputs):
    run_dir = tmp_path / baseline
    assert fit_main(["--algo", "coma", *TINY_MATRIX, "--run-dir", str(run_dir), "logger=none", f"algo.baseline={baseline}"]) == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["critic.net.0.weight"].shape == (16, critic_inputs)  # Q(own obs, state, others' actions, id) or V(state)
    with open(run_dir / "metrics.csv") as f:
        losses = [float(row["train/loss_critic"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)
