"""IC3Net (`model=ic3net`): gated messages between LSTM controllers, replayed exactly in sequence mode."""

from __future__ import annotations

import pytest
import torch
from conftest import resume_pair
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker, TransformedEnv
from torchrl.modules import set_recurrent_mode

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.envs.generic import MultiAgentEnvironment
from ca12.errors import UsageError
from ca12.nets.builder import agent_net
from ca12.nets.ic3net import GatedMessages
from ca12.nets.recurrent import make_recurrent
from ca12.run.config import load_config

N, F, OUT, H, E = 3, 6, 5, 4, 8  # agents, obs size (generic env), outputs, LSTM width, encoder width


def _net(gated: bool = True):
    torch.manual_seed(0)
    return make_recurrent(
        "lstm",
        n_in=F,
        n_out=OUT,
        n_agents=N,
        share_params=True,
        hidden_size=H,
        num_layers=1,
        mlp_sizes=[E],
        activation=nn.Tanh,
        device="cpu",
        group="agents",
        in_key=("agents", "observation"),
        out_key=("agents", "logits"),
        name="rnn",
        talk=GatedMessages(H, E, gated=gated),
    )


def _batch(b: int = 4, t: int = 6) -> TensorDict:
    is_init = torch.zeros(b, t, 1, dtype=torch.bool)
    is_init[:, 0] = is_init[1, 3] = True
    agents = TensorDict({"observation": torch.randn(b, t, N, F)}, [b, t, N])
    return TensorDict({"agents": agents, "is_init": is_init}, [b, t])


def _rollout(net, data: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
    """Step mode, one step per call as a collector runs it: (logits [B, T, N, OUT], gates [B, T, N, 1])."""
    state = [torch.zeros(data.shape[0], N, 1, H) for _ in net.hidden_keys]
    logits, gates = [], []
    for t in range(data.shape[1]):
        td = data[:, t].select(("agents", "observation"), "is_init").clone()
        for key, value in zip(net.hidden_keys, state):
            td[key] = value
        net(td)
        state = [td["next", *key] for key in net.hidden_keys]
        logits.append(td["agents", "logits"])
        gates.append(td[net.gate_key])
    return torch.stack(logits, 1), torch.stack(gates, 1)


def test_sequence_replay_reuses_the_rollouts_gates_and_reproduces_its_outputs():
    net = _net()
    data = _batch()
    with torch.no_grad():
        logits, gates = _rollout(net, data)
    assert set(gates.unique().tolist()) == {0.0, 1.0}  # sampled gates, some open and some shut
    replay = data.clone()
    replay[net.gate_key] = gates
    with set_recurrent_mode(True):
        out = net(replay)
    torch.testing.assert_close(out["agents", "logits"], logits)
    torch.testing.assert_close(out[net.gate_key], gates)
    # without the recorded gates a replay draws new ones, so what the agents heard differs
    with set_recurrent_mode(True), torch.no_grad():
        assert not torch.allclose(net(data.clone())["agents", "logits"], logits)


def test_a_shut_gate_silences_its_sender_and_the_gate_learns_through_the_messages():
    talk = GatedMessages(H, E)
    h = torch.randn(2, N, H)
    shut = torch.tensor([0.0, 1.0, 1.0]).expand(2, N).unsqueeze(-1)
    message, gate = talk(h, shut)
    expected = talk.transform(torch.stack([(h[:, 1] + h[:, 2]) / 2, h[:, 2] / 2, h[:, 1] / 2], dim=1))
    torch.testing.assert_close(message, expected)  # agent 0 spoke to nobody; the others heard each other
    torch.testing.assert_close(gate, shut)
    message.sum().backward()
    assert talk.gate.weight.grad.abs().sum() > 0  # straight-through: the gate gets a gradient from what was heard
    talk.eval()
    with torch.no_grad():
        talk.gate.bias.fill_(-50.0)  # P(speak) ~ 0: in eval mode the gate is the deterministic threshold
    silent, gate = talk(h)
    assert (gate == 0).all() and (silent == 0).all()
    always = GatedMessages(H, E, gated=False)  # the recurrent CommNet: every gate open
    message, gate = always(h)
    assert (gate == 1).all()
    torch.testing.assert_close(message[:, 0], always.transform((h[:, 1] + h[:, 2]) / 2))


def test_collector_records_the_gates_and_the_loss_replay_matches_them():
    net = _net()
    env = TransformedEnv(
        MultiAgentEnvironment(num_envs=3, n_agents=N, continuous_actions=False, max_steps=5), Compose(InitTracker(), net.make_tensordict_primer())
    )

    def act(td):
        td["agents", "action"] = td["agents", "logits"].argmax(-1)
        return td

    policy = lambda td: act(net(td))  # noqa: E731
    collector = Collector(env, policy, frames_per_batch=30, total_frames=30)
    batch = next(iter(collector)).clone()
    collector.shutdown()
    assert batch[net.gate_key].shape == (3, 10, N, 1)
    seen = batch["agents", "logits"].clone()
    with set_recurrent_mode(True), torch.no_grad():
        torch.testing.assert_close(net(batch)["agents", "logits"], seen)
    assert 0.0 <= net.talk.last_stats["gate_open"] <= 1.0


def test_model_ic3net_builds_from_its_config_and_refuses_stacked_layers():
    sizes = {"hidden_sizes": [E], "hidden_size": H, "num_layers": 1}
    model = OmegaConf.create({"kind": "ic3net", **sizes, "gated": True, "activation": "tanh", "share_params": True})
    group = type("G", (), {"name": "agents", "n_agents": N, "obs_dim": F, "image": None, "key": staticmethod(lambda k: ("agents", k))})()
    net = agent_net(model, group, OUT, ("agents", "logits"), name="actor")
    td = _batch()[:, 0]
    net(td)
    assert td["agents", "logits"].shape == (4, N, OUT) and td["agents", "actor_gate"].shape == (4, N, 1)
    with pytest.raises(UsageError, match="one LSTM layer"):
        agent_net(OmegaConf.merge(model, {"num_layers": 2}), group, OUT, ("agents", "logits"), name="actor")


def test_mappo_with_ic3net_actors_replays_its_rollout_exactly():
    """The PPO ratio of an unchanged policy is 1 on every sample: the loss heard what the rollout heard."""
    small = ["model.hidden_size=8", "model.hidden_sizes=[8]", "env.n_agents=4", "env.dim=5", "env.num_envs=6"]
    cfg = load_config("mappo", "comm/predator_prey", ["logger=none", "model=ic3net", *small])
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, 0, "cpu", transforms=module.env_transforms())
    with torch.no_grad():
        batch = env.rollout(12, module.policy, break_when_any_done=False)
    gates = batch["agents", "actor_gate"]
    assert 0 < gates.mean() < 1  # some open, some shut
    module.compute_advantage(batch)
    _, terms = module.loss(batch)
    assert terms["kl_approx"].abs() < 1e-6 and terms["clip_fraction"] == 0
    torch.testing.assert_close(batch["agents", "actor_gate"], gates)


def test_mappo_with_ic3net_resumes_bit_for_bit(tmp_path):
    """The gates are drawn from torch's generator, which a checkpoint carries: a resumed run draws the same ones
    (batches of whole episodes, the condition of an exact resume: ca12/data/rollout.py)."""
    args = ["--env", "comm/predator_prey", "logger=csv", "eval.every_n_iters=0", "model=ic3net", "model.hidden_size=8", "model.hidden_sizes=[8]"]
    args += ["env.n_agents=3", "env.dim=5", "env.num_envs=6", "env.max_steps=20", "collector.frames_per_batch=120"]
    args += ["algo.minibatch_size=60", "algo.num_epochs=2"]
    a, b, one_go, split = resume_pair(tmp_path, "mappo", args, 480)
    assert any("talk.gate" in key for key in a)
    assert [key for key in a if not torch.equal(a[key], b[key])] == []
