"""The robot-swarm applications on VMAS (ca12/envs/vmas/swarm.py): episode statistics on hand-arranged
worlds and across partial resets, specs, the boids and assignment baselines against random play,
mismatched baselines, 16 agents, and the statistics in a run's logs."""

from __future__ import annotations

import csv

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from ca12.data.evaluator import Evaluator
from ca12.envs import make_env
from ca12.envs.vmas.swarm import cohesion, contacts_per_agent
from ca12.errors import UsageError
from ca12.evaluate import main
from ca12.fit import main as fit
from ca12.run.config import load_config
from ca12.run.score import evaluate_baseline


def _env(task: str, *overrides: str, worlds: int = 2):
    return make_env(load_config("mappo", f"vmas/{task}", [f"env.num_envs={worlds}", *overrides]).env, 0)


def _world(env):
    return env.base_env._env.world


def _place(entity, *positions):
    """Put `entity` at one (x, y) per world."""
    entity.set_pos(torch.tensor(positions, dtype=torch.float32), batch_index=None)


def _still(env, td):
    """One step with every agent's force zero; the step's output."""
    return env.step(td.update(env.full_action_spec.zero()))["next"]


def _stats(td) -> dict[str, list[float]]:
    return {name: [round(v, 5) for v in value[:, 0].tolist()] for name, value in td["stats"].items()}


def test_contacts_count_each_overlapping_pair_for_both_agents_and_cohesion_is_the_mean_distance_to_the_centroid():
    radius = torch.tensor([0.1, 0.1, 0.1, 0.2])
    pos = torch.tensor(
        [
            [[0.0, 0.0], [0.15, 0.0], [1.0, 1.0], [1.25, 1.0]],  # two pairs overlap (0.15 < 0.2, 0.25 < 0.3)
            [[0.0, 0.0], [0.25, 0.0], [1.0, 1.0], [0.0, 1.0]],
        ]
    )  # none (0.25 > 0.2)
    torch.testing.assert_close(contacts_per_agent(pos, radius), torch.tensor([2 * 2 / 4, 0.0]))
    square = torch.tensor([[[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]])
    torch.testing.assert_close(cohesion(square + 3.0), torch.tensor([2**0.5]))


def test_dispersion_stats_on_a_hand_arranged_world_and_their_reset_with_their_world_only():
    env = _env("dispersion", "env.n_agents=4")
    td = env.reset()
    agents, food = _world(env).agents, _world(env).landmarks
    # World 0: agents 0 and 1 overlap (0.05 apart, radii 0.035), agent 2 stands on food 0. World 1: no contact, no food.
    for agent, w0, w1 in zip(agents, [(0.0, 0.0), (0.05, 0.0), (0.5, 0.5), (-0.5, -0.5)], [(0.0, 0.0), (0.3, 0.0), (0.6, 0.0), (0.9, 0.0)]):
        _place(agent, w0, w1)
    for i, piece in enumerate(food):
        _place(piece, (0.5, 0.5) if i == 0 else (-0.9, 0.3 * i), (-0.9, 0.3 * i))
    for _ in range(3):  # nobody moves: every step has the same contacts
        td = _still(env, td)
        assert _stats(td) == {"collisions": [0.5, 0.0], "coverage": [0.25, 0.0]}
    td["_reset"] = torch.tensor([[True], [False]])
    td = env.reset(td)
    assert _stats(td) == {"collisions": [0.0, 0.0], "coverage": [0.0, 0.0]}
    # World 0 starts over with its agents stacked at the origin (every one touches the 3 others); world 1 goes on.
    td = _still(env, td)
    assert _stats(td)["collisions"] == [3.0, 0.0]


def test_flocking_stats_follow_the_flock_and_the_target():
    env = _env("flocking", "env.n_agents=3", worlds=1)
    td = env.reset()
    world = _world(env)
    for agent, position in zip(world.policy_agents, [(0.0, 0.5), (0.3, 0.5), (0.6, 0.5)]):  # 0.3 apart: no contact
        _place(agent, position)
    for obstacle in env.base_env._env.scenario.obstacles:
        _place(obstacle, (-5.0, -5.0))
    target = env.base_env._env.scenario._target
    distances = []
    for _ in range(2):
        td = _still(env, td)
        distances.append(float((torch.tensor([0.3, 0.5]) - target.state.pos[0]).norm()))
    stats = _stats(td)
    assert stats["collisions"] == [0.0]
    assert stats["cohesion"] == [0.2]  # distances 0.3, 0 and 0.3 to the centroid (0.3, 0.5)
    assert stats["target_distance"] == [round(sum(distances) / 2, 5)]  # the mean over the two steps; the target moves


def test_discovery_coverage_counts_the_targets_found_once():
    env = _env("discovery", "env.n_agents=4", worlds=1)
    td = env.reset()
    world = _world(env)
    targets = [e for e in world.landmarks if e.name.startswith("target")]
    for i, target in enumerate(targets):
        _place(target, (-0.75 + 0.25 * i, -0.8))
    # Agents 0 and 1 cover target 0 (0.15 from it); agents 2 and 3 sit far from every target.
    for agent, position in zip(world.agents, [(-0.9, -0.8), (-0.75, -0.65), (0.8, 0.8), (0.8, 0.5)]):
        _place(agent, position)
    td = _still(env, td)
    assert _stats(td)["coverage"] == [round(1 / 7, 5)]
    assert float(targets[0].state.pos.abs().max()) > 5  # found: moved out of the arena
    td = _still(env, td)
    assert _stats(td)["coverage"] == [round(1 / 7, 5)]


@pytest.mark.parametrize("task", ["flocking", "dispersion", "discovery"])
def test_specs_hold_with_the_statistics(task):
    check_env_specs(_env(task))


@pytest.mark.parametrize(
    "task, baseline, steps, better",
    [
        ("flocking", "boids", 40, ["cohesion", "target_distance"]),
        ("dispersion", "assignment", 60, ["coverage"]),
        ("discovery", "assignment", 60, ["coverage"]),
        ("dispersion", "nearest", 100, ["coverage"]),
    ],
)
def test_each_baseline_beats_random_play_on_return_and_its_task_metric(task, baseline, steps, better):
    overrides = [f"env.max_steps={steps}"]
    rule = evaluate_baseline(baseline, f"vmas/{task}", overrides, seed=0, episodes=4)
    evaluator = Evaluator(load_config("mappo", f"vmas/{task}", overrides).env, 4, 0, deterministic=True)
    spec = evaluator.env.full_action_spec
    random = evaluator.run(lambda td: td.update(spec.rand()))
    assert rule.episode_reward_mean > random.episode_reward_mean + 0.5
    for name in better:
        lower_is_better = name in ("cohesion", "target_distance")
        assert (rule.stats[name][0] < random.stats[name][0]) if lower_is_better else (rule.stats[name][0] > random.stats[name][0] + 0.5)


def test_a_baseline_refuses_a_task_it_does_not_apply_to_and_discrete_actions_in_one_line(capsys):
    with pytest.raises(UsageError, match="baseline boids applies to vmas/flocking, not vmas/dispersion"):
        evaluate_baseline("boids", "vmas/dispersion", ["env.num_envs=2"], episodes=2)
    with pytest.raises(UsageError, match="continuous forces: set env.continuous_actions=true"):
        evaluate_baseline("assignment", "vmas/dispersion", ["env.continuous_actions=false"], episodes=2)
    assert main(["--baseline", "assignment", "--env", "vmas/navigation", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "ca12.evaluate: error: baseline assignment applies to vmas/dispersion, vmas/discovery, not vmas/navigation\n"


def test_sixteen_agents_disperse_over_sixteen_pieces_of_food():
    result = evaluate_baseline("assignment", "vmas/dispersion", ["env.n_agents=16", "env.max_steps=50"], seed=0, episodes=4)
    assert result.stats["coverage"][0] == 1.0
    assert result.episode_reward_mean == pytest.approx(1.0)  # one piece each: nobody shares


def test_the_statistics_reach_the_training_and_evaluation_logs(tmp_path):
    run = tmp_path / "run"
    args = [
        "--algo",
        "mappo",
        "--env",
        "vmas/dispersion",
        "--run-dir",
        str(run),
        "logger=csv",
        "env.n_agents=4",
        "env.num_envs=4",
        "env.max_steps=25",
        "collector.frames_per_batch=100",
        "collector.total_frames=200",
        "model.hidden_sizes=[16]",
        "critic_model.hidden_sizes=[16]",
        "algo.minibatch_size=50",
        "algo.num_epochs=1",
        "eval.every_n_iters=2",
        "eval.episodes=2",
    ]
    assert fit(args) == 0
    with open(run / "metrics.csv") as f:
        columns = next(csv.reader(f))
    for name in ("collisions", "coverage"):
        assert f"rollout/{name}_mean" in columns and f"eval/{name}_mean" in columns


def test_sharing_the_food_out_beats_every_agent_heading_for_its_own_nearest():
    overrides = ["env.max_steps=60"]
    planner = evaluate_baseline("assignment", "vmas/dispersion", overrides, seed=0, episodes=4)
    nearest = evaluate_baseline("nearest", "vmas/dispersion", overrides, seed=0, episodes=4)
    assert planner.stats["coverage"][0] > nearest.stats["coverage"][0] + 0.1
    # uncoordinated, the agents run as one pack from food to food: each overlaps all 7 others
    assert nearest.stats["collisions"][0] == pytest.approx(7.0) and planner.stats["collisions"][0] < 3.0
