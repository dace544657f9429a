"""Recurrent multi-agent nets: step mode vs sequence mode, resets, env/collector plumbing, TorchRL heads."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torch.distributions import Categorical as CategoricalDist
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker, TransformedEnv
from torchrl.modules import ProbabilisticActor, QValueModule, set_recurrent_mode
from torchrl.modules.utils import get_primers_from_module

from ca12.envs.generic import MultiAgentEnvironment
from ca12.nets.recurrent import MultiAgentRecurrent, make_recurrent

N, F, OUT, H, L = 2, 6, 5, 4, 2  # agents, obs size (generic env, state_dim=2), actions, hidden, layers
KINDS = ["gru", "lstm"]


def _net(kind: str, share_params: bool = False, mlp_sizes=(8,), out_key: str = "logits") -> MultiAgentRecurrent:
    return make_recurrent(
        kind,
        n_in=F,
        n_out=OUT,
        n_agents=N,
        share_params=share_params,
        hidden_size=H,
        num_layers=L,
        mlp_sizes=list(mlp_sizes),
        activation=nn.Tanh,
        device="cpu",
        group="agents",
        in_key=("agents", "observation"),
        out_key=("agents", out_key),
        name="rnn",
    )


def _batch(net: MultiAgentRecurrent, b: int = 3, t: int = 7) -> TensorDict:
    """[b, t] batch: row 0 one episode, row 1 resets mid-sequence twice, row 2 starts mid-episode
    from a stored nonzero hidden state."""
    is_init = torch.zeros(b, t, 1, dtype=torch.bool)
    is_init[0, 0] = is_init[1, 0] = is_init[1, 3] = is_init[1, 4] = True
    agents = {"observation": torch.randn(b, t, N, F)}
    for key in net.hidden_keys:
        agents[key[-1]] = torch.randn(b, t, N, L, H)  # only t=0 matters in sequence mode
    return TensorDict({"agents": TensorDict(agents, [b, t, N]), "is_init": is_init}, [b, t])


def _step_by_step(net: MultiAgentRecurrent, data: TensorDict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What a collector does: one step per call, next hidden state fed back as the input."""
    hidden = [data[key][:, 0] for key in net.hidden_keys]
    logits, states = [], []
    for t in range(data.shape[1]):
        td = data[:, t].select(("agents", "observation"), "is_init").clone()
        for key, value in zip(net.hidden_keys, hidden):
            td[key] = value
        net(td)
        hidden = [td["next", *key] for key in net.hidden_keys]
        logits.append(td["agents", "logits"])
        states.append(torch.stack(hidden))
    return torch.stack(logits, 1), list(torch.stack(states, 2))


@pytest.mark.parametrize("kind", KINDS)
def test_core_matches_torch_rnn(kind):
    """The masked loop computes exactly nn.GRU / nn.LSTM (PyTorch's gate conventions)."""
    net = _net(kind, share_params=True, mlp_sizes=())
    ref = (nn.GRU if kind == "gru" else nn.LSTM)(F, H, num_layers=L, batch_first=True)
    with torch.no_grad():
        for i in range(L):
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                getattr(ref, f"{theirs}_l{i}").copy_(getattr(net, ours)[i][0])
    data = _batch(net)
    data["is_init"][:, 0] = True
    data["is_init"][:, 1:] = False
    with set_recurrent_mode(True):
        net(data)
    x = data["agents", "observation"].transpose(1, 2).reshape(-1, data.shape[1], F)  # [b*N, T, F]
    y, state = ref(x)
    h_n = state[0] if kind == "lstm" else state  # [L, b*N, H]
    ours = data["next", "agents", "rnn_h"]  # [b, T, N, L, H]
    torch.testing.assert_close(ours[..., -1, :].transpose(1, 2).reshape(-1, data.shape[1], H), y)
    torch.testing.assert_close(ours[:, -1].reshape(-1, L, H).transpose(0, 1), h_n)


@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_mode_equals_step_mode(kind, share_params):
    net = _net(kind, share_params)
    data = _batch(net)
    logits, states = _step_by_step(net, data)
    with set_recurrent_mode(True):  # TorchRL's switch, entered by its losses' forward
        seq = net(data.clone())
    torch.testing.assert_close(seq["agents", "logits"], logits)
    for key, state in zip(net.hidden_keys, states):
        torch.testing.assert_close(seq["next", *key], state)  # the true state after every step
    recurrent = net.set_recurrent_mode(True)  # a copy sharing the weights; the original stays in step mode
    assert recurrent.recurrent_mode and not net.recurrent_mode and recurrent.w_hh[0] is net.w_hh[0]
    torch.testing.assert_close(recurrent(data.clone())["agents", "logits"], logits)
    with set_recurrent_mode(False):  # the global context wins over the module's default
        assert not recurrent.recurrent_mode
    # resets really cut the history: after a mid-sequence reset, outputs ignore the earlier inputs
    other = data.clone()
    other["agents", "observation"][1, :4] += 1.0
    with set_recurrent_mode(True):
        torch.testing.assert_close(net(other)["agents", "logits"][1, 4:], logits[1, 4:])


@pytest.mark.parametrize("share_params", [True, False])
def test_agents_share_weights_or_not_and_missing_state_is_zero(share_params):
    net = _net("gru", share_params)
    obs = torch.randn(3, 1, F).expand(3, N, F)  # both agents see the same thing
    td = TensorDict({"agents": TensorDict({"observation": obs}, [3, N]), "is_init": torch.zeros(3, 1, dtype=torch.bool)}, [3])
    out = net(td.clone())["agents", "logits"]
    assert torch.allclose(out[:, 0], out[:, 1]) == share_params
    td["agents", "rnn_h"] = torch.zeros(3, N, L, H)
    torch.testing.assert_close(net(td)["agents", "logits"], out)
    with pytest.raises(KeyError, match="InitTracker"):
        net(td.exclude("is_init"))
    with pytest.raises(ValueError, match="unknown recurrent kind"):
        _net("rnn")


@pytest.mark.parametrize("kind", KINDS)
def test_collector_carries_state_and_sequence_replay_reproduces_it(kind):
    net = _net(kind, share_params=False)
    env = TransformedEnv(
        MultiAgentEnvironment(num_envs=3, n_agents=N, continuous_actions=False, max_steps=5),
        Compose(InitTracker(), net.make_tensordict_primer()),
    )
    argmax = TensorDictModule(lambda logits: logits.argmax(-1), in_keys=[("agents", "logits")], out_keys=[("agents", "action")])
    policy = TensorDictSequential(net, argmax)
    assert get_primers_from_module(policy) is not None  # TorchRL finds the primer by itself
    with torch.no_grad():
        rollout = env.rollout(12, policy, break_when_any_done=False)
    collector = Collector(env, policy, frames_per_batch=30, total_frames=30)
    batch = next(iter(collector)).clone()  # [3 envs, 10 steps]
    collector.shutdown()
    for data in (rollout, batch):
        is_init = data["is_init"].squeeze(-1)  # [B, T]
        assert is_init[:, ::5].all() and is_init.sum() == is_init[:, ::5].numel()  # episodes of 5 steps
        for key in net.hidden_keys:
            h = data[key]  # [B, T, N, L, H]: the state the policy read at each step
            assert (h[is_init] == 0).all() and (h[~is_init].abs().sum((-1, -2, -3)) > 0).all()
            torch.testing.assert_close(h[:, 1:][~is_init[:, 1:]], data["next", *key][:, :-1][~is_init[:, 1:]])
        seen = data["agents", "logits"].clone()
        with set_recurrent_mode(True), torch.no_grad():
            net(data)
        torch.testing.assert_close(data["agents", "logits"], seen)


@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_probabilistic_actor_and_qvalue_module_in_sequence_mode(kind, share_params):
    net = _net(kind, share_params)
    actor = ProbabilisticActor(
        net,
        in_keys=[("agents", "logits")],
        out_keys=[("agents", "action")],
        distribution_class=CategoricalDist,
        return_log_prob=True,
        log_prob_key=("agents", "action_log_prob"),
    )
    data = _batch(net)
    with set_recurrent_mode(True):
        dist = actor.get_dist(data.clone())
    action = torch.randint(OUT, (3, 7, N))
    log_prob = dist.log_prob(action)  # [B, T, N]
    assert log_prob.shape == (3, 7, N)
    log_prob.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

    qnet = _net(kind, share_params, out_key="action_value")  # QMIX's per-agent Q-network
    qvalue = TensorDictSequential(
        qnet,
        QValueModule(
            action_value_key=("agents", "action_value"),
            action_space="categorical",
            out_keys=[("agents", "action"), ("agents", "action_value"), ("agents", "chosen_action_value")],
        ),
    )
    with set_recurrent_mode(True):
        out = qvalue(data.clone())
    assert out["agents", "action"].shape == (3, 7, N) and out["agents", "chosen_action_value"].shape == (3, 7, N, 1)
    assert (out["agents", "action"] == out["agents", "action_value"].argmax(-1)).all()
