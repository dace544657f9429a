"""Hierarchical (feudal) networks: step mode vs sequence replay, goals held between decisions,
teams kept apart, gradients reaching the manager, uneven teams, config errors, and tiny MAPPO
(with resume) and QMIX runs through the builder."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, resume_pair
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker, TransformedEnv
from torchrl.modules import set_recurrent_mode

from ca12.algos import algo_class
from ca12.envs import make_spec_env
from ca12.envs.generic import MultiAgentEnvironment
from ca12.errors import UsageError
from ca12.fit import main
from ca12.nets.builder import is_recurrent
from ca12.nets.builder import mlp as build_mlp
from ca12.nets.hierarchy import MultiAgentHierarchy, make_hierarchy
from ca12.run.config import load_config

N, F, OUT, G, TEAM, PERIOD = 5, 6, 3, 4, 2, 3  # 5 agents in teams {0, 1}, {2, 3}, {4}
GOAL, CLOCK = ("agents", "net_goal"), ("agents", "net_clock")


def _net(share_params: bool = False, n_agents: int = N, team_size: int = TEAM) -> MultiAgentHierarchy:
    return make_hierarchy(
        n_in=F,
        n_out=OUT,
        n_agents=n_agents,
        share_params=share_params,
        hidden_sizes=[8],
        team_size=team_size,
        period=PERIOD,
        goal_size=G,
        manager_sizes=[16],
        activation=nn.Tanh,
        device="cpu",
        group="agents",
        in_key=("agents", "observation"),
        out_key=("agents", "logits"),
        name="net",
    )


def _batch(b: int = 3, t: int = 9, n: int = N, requires_grad: bool = False) -> TensorDict:
    """[b, t]: row 0 one episode from t=0; row 1 starts mid-episode with a stored goal due in one
    step and resets at t=4; row 2 starts with a decision due (clock = period)."""
    is_init = torch.zeros(b, t, 1, dtype=torch.bool)
    is_init[0, 0] = is_init[1, 4] = True
    clock = torch.tensor([0.0, PERIOD - 1.0, PERIOD])[:b].view(b, 1, 1, 1).expand(b, t, n, 1).clone()
    agents = {"observation": torch.randn(b, t, n, F, requires_grad=requires_grad), "net_goal": torch.randn(b, t, n, G), "net_clock": clock}
    return TensorDict({"agents": TensorDict(agents, [b, t, n]), "is_init": is_init}, [b, t])


def _step_by_step(net: MultiAgentHierarchy, data: TensorDict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a collector does: one step per call, the next state fed back as the input."""
    goal, clock = data[GOAL][:, 0], data[CLOCK][:, 0]
    outs, goals, clocks = [], [], []
    for t in range(data.shape[1]):
        td = data[:, t].select(("agents", "observation"), "is_init").clone()
        td[GOAL], td[CLOCK] = goal, clock
        net(td)
        goal, clock = td["next", *GOAL], td["next", *CLOCK]
        outs.append(td["agents", "logits"])
        goals.append(goal)
        clocks.append(clock)
    return torch.stack(outs, 1), torch.stack(goals, 1), torch.stack(clocks, 1)


@pytest.mark.parametrize("share_params", [True, False])
def test_sequence_replay_equals_the_step_by_step_rollout(share_params):
    net, data = _net(share_params), _batch()
    outs, goals, clocks = _step_by_step(net, data)
    with set_recurrent_mode(True):  # TorchRL's switch, entered by its losses' forward
        seq = net(data.clone())
    torch.testing.assert_close(seq["agents", "logits"], outs)
    torch.testing.assert_close(seq["next", *GOAL], goals)
    assert torch.equal(seq["next", *CLOCK], clocks)
    replayer = net.set_recurrent_mode(True)  # a copy sharing the weights; the original stays in step mode
    assert replayer.recurrent_mode and not net.recurrent_mode and replayer.manager is net.manager
    torch.testing.assert_close(replayer(data.clone())["agents", "logits"], outs)
    with set_recurrent_mode(False):  # the global context wins over the copy's default
        assert not replayer.recurrent_mode


def test_goals_change_only_at_decision_steps_and_are_held_in_between():
    net, data = _net(), _batch()
    with set_recurrent_mode(True), torch.no_grad():
        seq = net(data.clone())
    clock = seq["next", *CLOCK][..., 0, 0]  # [b, t]: steps since the last decision, after each step
    assert clock.tolist() == [
        [1, 2, 3, 1, 2, 3, 1, 2, 3],  # decides at 0 (is_init), 3, 6
        [3, 1, 2, 3, 1, 2, 3, 1, 2],  # stored clock 2: decides at 1, at 4 (is_init), 7
        [1, 2, 3, 1, 2, 3, 1, 2, 3],
    ]  # decision due at 0
    decided = clock == 1
    goals = seq["next", *GOAL]  # [b, t, n, G]: the goal each step acted on
    before = torch.cat([data[GOAL][:, :1], goals[:, :-1]], 1)  # the goal held before each step
    changed = (goals != before).any(-1).any(-1)  # [b, t]
    assert torch.equal(changed, decided)
    torch.testing.assert_close(goals[1, 0], data[GOAL][1, 0])  # no decision yet: the stored goal acts
    # a decision's goal is what the managers propose from that step's observations
    proposed = net.propose(net.encoder(data["agents", "observation"]))
    torch.testing.assert_close(goals[decided], proposed[decided])


def _influence(out: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """[n, n]: True where agent i's output depends on agent j's input."""
    rows = []
    for i in range(out.shape[-2]):
        (grad,) = torch.autograd.grad(out[..., i, :].sum(), inputs, retain_graph=True)
        rows.append(grad.abs().flatten(0, -3).sum(0).sum(-1) > 0)
    return torch.stack(rows)


@pytest.mark.parametrize("n_agents, team_size", [(5, 2), (7, 3), (4, 4), (3, 5)])
def test_information_stays_within_teams_for_any_agent_count(n_agents, team_size):
    net, data = _net(n_agents=n_agents, team_size=team_size), _batch(n=n_agents, requires_grad=True)
    with set_recurrent_mode(True):
        out = net(data)["agents", "logits"]
    assert out.shape == (3, 9, n_agents, OUT) and data["next", *GOAL].shape == (3, 9, n_agents, G)
    team = torch.arange(n_agents) // team_size
    same_team = team[:, None] == team[None, :]
    assert torch.equal(_influence(out, data["agents", "observation"]), same_team)  # exactly zero across teams


def test_workers_loss_reaches_the_manager_through_held_goals():
    net, data = _net(), _batch(requires_grad=True)
    obs = data["agents", "observation"]
    with set_recurrent_mode(True):
        out = net(data)["agents", "logits"]
    # row 0 decided at t=3 and held the goal at t=5: agent 0's output at t=5 depends on its
    # teammate's observation at t=3 (through the manager) and not at t=4 (no decision there)
    (grad,) = torch.autograd.grad(out[0, 5, 0].sum(), obs, retain_graph=True)
    assert grad[0, 3, 1].abs().sum() > 0 and grad[0, 4, 1].abs().sum() == 0
    manager = list(net.manager.parameters())
    held = torch.autograd.grad(out[0, 5].sum(), manager, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in held)
    # row 1 acts on its stored goal at t=0 (decided before the sequence): data, no gradient
    stored = torch.autograd.grad(out[1, 0].sum(), manager, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in stored)


def test_the_collector_carries_goals_and_the_replay_reproduces_them():
    net = _net()
    env = TransformedEnv(
        MultiAgentEnvironment(num_envs=3, n_agents=N, continuous_actions=False, max_steps=7), Compose(InitTracker(), net.make_tensordict_primer())
    )
    assert env.observation_spec["agents", "observation"].shape[-1] == F
    net = TensorDictSequential(
        net, TensorDictModule(lambda logits: logits.argmax(-1), in_keys=[("agents", "logits")], out_keys=[("agents", "action")])
    )
    collector = Collector(env, net, frames_per_batch=42, total_frames=42)
    batch = next(iter(collector)).clone()  # [3 envs, 14 steps]: two episodes of 7 each
    collector.shutdown()
    clock = batch["next", *CLOCK][..., 0, 0]
    assert clock[0].tolist() == [1, 2, 3, 1, 2, 3, 1] * 2  # an episode start decides whatever the clock says
    seen = batch["agents", "logits"].clone()
    with set_recurrent_mode(True), torch.no_grad():
        net(batch)
    torch.testing.assert_close(batch["agents", "logits"], seen)


def test_a_missing_init_flag_state_or_time_dim_is_handled():
    net, data = _net(), _batch()
    with pytest.raises(KeyError, match="InitTracker"):
        net(data[:, 0].exclude("is_init"))
    with pytest.raises(ValueError, match="sequence mode needs"), set_recurrent_mode(True):
        net(data[0, 0])
    with pytest.raises(ValueError, match="expected \\[3, 5, F\\]"):
        net(TensorDict({"agents": TensorDict({"observation": torch.randn(3, 4, F)}, [3, 4]), "is_init": data["is_init"][:, 0]}, [3]))
    fresh = data[:, 0].exclude(GOAL, CLOCK)  # no state yet: every team decides
    assert (net(fresh)["next", *CLOCK] == 1).all()


def test_bad_configs_are_refused_in_one_line():
    for bad, message in (("model.team_size=0", "team_size"), ("model.period=-1", "period"), ("model.goal_size=0", "goal_size")):
        with pytest.raises(UsageError, match=message):
            load_config("mappo", "vmas/navigation", ["model=hierarchical", bad])
    for bad, message in (("model.hidden_sizes=[]", "needs hidden_sizes"), ("model.manager_sizes=[0]", "positive widths")):
        cfg = load_config("mappo", "vmas/navigation", ["model=hierarchical", bad])
        with pytest.raises(UsageError, match=message) as error:
            algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
        assert "\n" not in str(error.value)
    cfg = load_config("maddpg", "vmas/navigation", ["model=hierarchical"])
    assert is_recurrent(cfg.model)
    with pytest.raises(UsageError, match="maddpg has no recurrent version yet: model=hierarchical keeps a state between steps and is refused"):
        algo_class("maddpg")(cfg, make_spec_env(cfg.env, 0))
    with pytest.raises(UsageError, match="model=hierarchical keeps its goals"):
        build_mlp(cfg.model, F, 1, N)


HIERARCHICAL = ["model=hierarchical", "model.team_size=2", "model.period=3", "model.goal_size=4", "model.manager_sizes=[16]"]


def test_mappo_with_a_hierarchical_actor_and_critic_resumes_bit_for_bit(tmp_path):
    args = [
        "--env",
        "vmas/navigation",
        "logger=csv",
        "eval.every_n_iters=0",
        *TINY,
        *HIERARCHICAL,
        "critic_model=hierarchical",
        "critic_model.team_size=2",
        "critic_model.goal_size=4",
    ]
    a, b, one_go, _ = resume_pair(tmp_path, "mappo", args, 200)
    assert a.keys() == b.keys() and any("manager" in key for key in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (one_go / "metrics.csv").read_text().count("\n") >= 2


def test_qmix_replays_hierarchical_sequences(tmp_path):
    args = [
        "--algo",
        "qmix",
        "--env",
        "vmas/navigation",
        "--run-dir",
        str(tmp_path),
        "logger=csv",
        "eval.every_n_iters=0",
        *TINY,
        "env.continuous_actions=false",
        "algo.sequence_length=8",
        "algo.burn_in=2",
        *HIERARCHICAL,
    ]
    assert main(args) == 0
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any("manager" in key for key in state)
