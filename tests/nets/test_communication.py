"""Communication: the modules (shapes, equivariance, graph locality, DIAL's channel, channel
noise), talking policies through the builder (fit, checkpoint, resume), and the referential game
where talking is necessary (specs, chance without messages, learning with them)."""

from __future__ import annotations

import csv
from pathlib import Path

import networkx as nx
import pytest
import torch
from conftest import resume_pair
from omegaconf import OmegaConf

from ca12.algos import algo_class
from ca12.algos.signalling import positive_signalling
from ca12.envs import AgentLayout, make_env, make_spec_env
from ca12.envs.comm import ReferentialEnv
from ca12.errors import UsageError
from ca12.fit import main
from ca12.nets.builder import TalkingNet
from ca12.nets.builder import mlp as build_mlp
from ca12.nets.communication import (
    AttentionCommunication,
    CommNet,
    DIALChannel,
    DIALCommunication,
    GraphCommunication,
    geometric_adjacency,
    graph_adjacency,
)
from ca12.run.config import load_config
from ca12.sections import TarMACConfig, model_schema

F = 8
TALKING = ("commnet", "tarmac", "dial", "graph")


def modules() -> dict[str, torch.nn.Module]:
    return {
        "commnet": CommNet(F, rounds=2),
        "tarmac": AttentionCommunication(F, message_size=8, rounds=2, heads=2),
        "dial": DIALCommunication(F, message_size=4, rounds=2),
        "ring": GraphCommunication(F, "ring", message_size=4, rounds=2),
        "star": GraphCommunication(F, "star", message_size=4),
        "grid": GraphCommunication(F, "grid", message_size=4, top_k=2),
        "complete": GraphCommunication(F, "complete", message_size=4, rounds=2),
    }


# --- modules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_every_module_keeps_the_shape_for_any_batch_and_agent_count(n):
    h = torch.randn(2, 5, n, F)
    for name, module in modules().items():
        assert module(h).shape == h.shape, name
        assert module(h[0, 0]).shape == (n, F), name  # no batch dim at all


@pytest.mark.parametrize("name", ["commnet", "tarmac", "complete"])
def test_shared_modules_are_permutation_equivariant(name):
    module = modules()[name]
    h, perm = torch.randn(4, 6, F), torch.randperm(6)
    assert torch.allclose(module(h)[:, perm], module(h[:, perm]), atol=1e-6)


def _influence(module, n: int = 6) -> torch.Tensor:
    """[n, n]: True where agent i's output depends on agent j's input (a non-zero gradient)."""
    h = torch.randn(n, F, requires_grad=True)
    out = module(h)
    rows = []
    for i in range(n):
        (grad,) = torch.autograd.grad(out[i].sum(), h, retain_graph=True)
        rows.append(grad.abs().sum(-1) > 0)
    return torch.stack(rows)


def test_no_information_crosses_a_missing_edge():
    ring = nx.cycle_graph(6)
    hops = dict(nx.all_pairs_shortest_path_length(ring))
    for rounds in (1, 2):
        depends = _influence(GraphCommunication(F, "ring", message_size=4, rounds=rounds))
        for i in range(6):
            for j in range(6):
                assert bool(depends[i, j]) == (hops[i][j] <= rounds), (rounds, i, j)  # exactly zero beyond `rounds` hops


def test_a_given_adjacency_and_a_star_limit_who_hears_whom():
    adjacency = torch.zeros(4, 4)
    adjacency[0, 1] = adjacency[1, 0] = 1
    depends = _influence(GraphCommunication(F, adjacency, message_size=4), n=4)
    assert depends.tolist() == [[True, True, False, False], [True, True, False, False], [False, False, True, False], [False, False, False, True]]
    star = _influence(GraphCommunication(F, "star", message_size=4), n=5)
    assert star[0].all() and star[1:, 0].all() and not star[1, 2]  # leaves hear only the centre


def test_graphs_match_networkx_and_top_k_limits_the_bandwidth():
    assert torch.equal(graph_adjacency("ring", 6), torch.as_tensor(nx.to_numpy_array(nx.cycle_graph(6)) > 0))
    assert torch.equal(graph_adjacency("grid", 6).sum(), torch.tensor(2 * 7))  # 2 x 3 lattice: 7 edges
    positions = torch.rand(7, 2)
    expected = nx.random_geometric_graph(7, 0.4, pos={i: positions[i].tolist() for i in range(7)})
    assert torch.equal(geometric_adjacency(positions, 0.4), torch.as_tensor(nx.to_numpy_array(expected, nodelist=range(7)) > 0))
    depends = _influence(GraphCommunication(F, "complete", message_size=4, top_k=2), n=6)
    assert (depends.sum(-1) == 3).all()  # itself and 2 neighbours


def test_random_geometric_edges_follow_the_positions_every_call():
    module = GraphCommunication(F, "random_geometric", message_size=4, radius=1.0)
    h = torch.randn(3, F, requires_grad=True)
    near, far = torch.tensor([[0.0, 0.0], [0.5, 0.0], [5.0, 0.0]]), torch.tensor([[0.0, 0.0], [5.0, 0.0], [9.0, 0.0]])
    for positions, hears in ((near, True), (far, False)):
        (grad,) = torch.autograd.grad(module(h, positions)[0].sum(), h)
        assert bool(grad[1].abs().sum() > 0) == hears
    with pytest.raises(ValueError, match="positions"):
        module(h)


def test_tarmac_teaching_api_masks_self_and_keeps_the_attention():
    module = AttentionCommunication(F, message_size=8, heads=2)
    h = torch.randn(5, 3, F)
    messages = module.generate_messages(h)
    assert messages.shape == (5, 3, 16)
    assert torch.equal(module.coordinate_actions(h, messages), module(h))
    weights = module.last_attention
    assert weights.shape == (5, 2, 3, 3) and not weights.requires_grad
    assert torch.all(weights.diagonal(dim1=-2, dim2=-1) == 0) and torch.allclose(weights.sum(-1), torch.ones(5, 2, 3))
    assert torch.isfinite(module(torch.randn(1, F))).all()  # a lone agent hears nothing, no NaN


def test_dial_is_binary_in_eval_and_differentiable_across_agents_in_training():
    channel = DIALChannel(sigma=2.0)
    m = torch.randn(1000)
    channel.eval()
    assert torch.equal(channel(m), (m > 0).float())
    channel.train()
    soft = channel(m)
    assert ((soft > 0) & (soft < 1)).all() and not torch.equal(soft, channel(m))  # noisy sigmoid
    dial = DIALCommunication(F, message_size=4)
    depends = _influence(dial, n=3)
    assert depends.all()  # listener outputs have gradients w.r.t. speaker inputs through the channel
    dial.eval()
    h = torch.randn(3, F, requires_grad=True)
    (grad,) = torch.autograd.grad(dial(h)[0].sum(), h)
    assert grad[1:].abs().sum() == 0  # the hard threshold passes no gradient


def test_dropout_and_noise_act_in_training_only_unless_asked():
    h = torch.randn(4, 6, F)
    lossy = GraphCommunication(F, "complete", message_size=4, dropout=0.5, noise=1.0)
    lossy.eval()
    assert torch.equal(lossy(h), lossy(h))
    lossy.train()
    assert not torch.equal(lossy(h), lossy(h))
    noisy_eval = GraphCommunication(F, "complete", message_size=4, noise=1.0, noisy_eval=True).eval()
    assert not torch.equal(noisy_eval(h), noisy_eval(h))


# --- talking policies through the builder ----------------------------------------------------------
def test_each_kind_has_its_schema_and_refuses_bad_options():
    assert model_schema("tarmac") is TarMACConfig
    cfg = load_config("mappo", "comm/referential", ["model=tarmac"])
    assert cfg.model.heads == 1 and cfg.model.message_size == 32
    with pytest.raises(UsageError, match="rounds"):
        load_config("mappo", "comm/referential", ["model=commnet", "model.rounds=0"])
    with pytest.raises(UsageError, match="model.graph"):
        load_config("mappo", "comm/referential", ["model=graph", "model.graph=torus"])
    bad = load_config("mappo", "comm/referential", ["model=tarmac", "model.heads=3"]).model
    with pytest.raises(UsageError, match="multiple of model.heads"):
        TalkingNet(bad, 7, 5, 2)


def test_a_talking_actor_hears_the_speaker_and_an_mlp_does_not():
    """The listener's logits depend on the speaker's observation only through the messages."""
    for kind in (*TALKING, "mlp"):
        model = load_config("mappo", "comm/referential", [f"model={kind}"]).model
        net = build_mlp(model, 7, 5, 2)  # training mode: DIAL's channel passes gradients
        obs = torch.randn(3, 2, 7, requires_grad=True)
        (grad,) = torch.autograd.grad(net(obs)[:, 1].sum(), obs)
        assert bool(grad[:, 0].abs().sum() > 0) == (kind != "mlp"), kind
        assert isinstance(net, TalkingNet) == (kind != "mlp")


SMALL = [
    "--env",
    "comm/referential",
    "logger=csv",
    "eval.every_n_iters=0",
    "env.num_envs=32",
    "collector.frames_per_batch=64",
    "algo.minibatch_size=32",
    "algo.num_epochs=1",
    "model.hidden_sizes=[16]",
    "critic_model.hidden_sizes=[16]",
]


@pytest.mark.parametrize("kind", TALKING)
def test_mappo_with_a_talking_model_checkpoints_and_resumes_bit_for_bit(tmp_path, kind):
    args = [*SMALL, f"model={kind}", f"critic_model={kind}"]
    a, b, one_go, split = resume_pair(tmp_path, "mappo", args, 128)
    assert any("communication" in k for k in a), list(a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _returns(one_go) == _returns(split)


# --- the referential game ---------------------------------------------------------------------------
def _env(**overrides):
    cfg = OmegaConf.merge(OmegaConf.load(Path(__file__).parents[2] / "conf/env/comm/referential.yaml"), overrides)
    return make_env(cfg, seed=0)


def test_referential_specs_show_the_target_to_the_speaker_only():
    env = _env(num_envs=8)
    group = AgentLayout.from_env(env).only("mappo", None)
    assert (group.name, group.n_agents, group.obs_dim, group.n_actions) == ("agents", 2, 7, 5)
    td = env.reset()
    obs, target = td["agents", "observation"], env.base_env.target
    assert torch.equal(obs[:, 0, :5].argmax(-1), target) and obs[:, 1, :5].sum() == 0
    assert torch.equal(obs[:, :, 5:], torch.eye(2).expand(8, 2, 2))
    action = torch.stack([torch.zeros_like(target), target], dim=-1)  # the listener names the target
    out = env.step(td.set(("agents", "action"), action))["next"]
    assert (out["agents", "reward"] == 1).all() and out["done"].all() and out["terminated"].all()
    with pytest.raises(UsageError, match="n_targets"):
        ReferentialEnv(n_targets=1)
    with pytest.raises(UsageError, match="does not take"):
        _env(n_cues=3)


def test_without_messages_the_team_scores_chance():
    env = _env(num_envs=4000)
    td = env.reset()
    random_play = env.rand_step(td)["next", "agents", "reward"][:, 0].mean()
    constant_guess = env.step(td.set(("agents", "action"), torch.full((4000, 2), 3)))["next", "agents", "reward"][:, 0].mean()
    for score in (random_play, constant_guess):
        assert abs(float(score) - 0.2) < 0.03, score


def _returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["rollout/episode_reward_mean"]) for row in csv.DictReader(f) if row.get("rollout/episode_reward_mean")]


# Settings found for speed: 1024 one-step games per batch, 4 epochs of 256, lr 1e-3.
REFERENTIAL = [
    "--env",
    "comm/referential",
    "logger=csv",
    "eval.every_n_iters=0",
    "env.num_envs=1024",
    "collector.frames_per_batch=1024",
    "algo.minibatch_size=256",
    "algo.lr=1e-3",
    "algo.num_epochs=4",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "extra", "frames"),
    [
        ("tarmac", [], 12288),
        ("commnet", [], 12288),
        ("graph", [], 16384),
        ("dial", ["model.noise=0.5"], 24576),
    ],
)
def test_mappo_learns_to_talk_and_the_mlp_cannot(tmp_path, kind, extra, frames):
    assert (
        main(["--algo", "mappo", "--run-dir", str(tmp_path / kind), *REFERENTIAL, f"model={kind}", *extra, f"collector.total_frames={frames}"]) == 0
    )
    talking = _returns(tmp_path / kind)
    assert sum(talking[-2:]) / 2 >= 0.9, talking  # success rate; chance is 1/5
    if kind == "tarmac":
        assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "mlp"), *REFERENTIAL, "collector.total_frames=8192"]) == 0
        assert max(_returns(tmp_path / "mlp")) <= 0.3


def test_message_statistics_are_logged_and_attention_can_be_plotted(tmp_path):
    from ca12.analysis.attention import plot_attention

    assert main(["--algo", "mappo", "--run-dir", str(tmp_path / "run"), *SMALL, "model=tarmac", "collector.total_frames=128"]) == 0
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    entropy = [key for key in rows[-1] if key.startswith("comm/") and key.endswith("attention_entropy")]
    assert entropy and all(0.0 <= float(row[entropy[0]]) <= 1e-6 + torch.log(torch.tensor(2.0)).item() for row in rows if row[entropy[0]])
    module = AttentionCommunication(8, message_size=8, heads=2)
    module(torch.randn(5, 4, 8))
    assert module.last_attention.shape == (5, 2, 4, 4)
    plot_attention(module.last_attention, tmp_path / "attention.png")
    assert (tmp_path / "attention.png").stat().st_size > 0


# ---- positive signalling (a loss bias for agents whose actions are messages) --------------------
def test_signalling_information_is_zero_for_a_policy_that_ignores_its_observation():
    logits = torch.randn(1, 3, 5).expand(64, 3, 5)  # the same distribution for every sample
    assert torch.allclose(positive_signalling(logits), torch.zeros(3), atol=1e-6)


def test_signalling_information_is_log_k_for_distinct_deterministic_messages():
    k = 4
    logits = 50.0 * torch.eye(k).repeat(8, 1).unsqueeze(-2)  # [32, 1, k]: each observation its own message, a uniform batch of them
    assert torch.allclose(positive_signalling(logits), torch.tensor([torch.log(torch.tensor(float(k)))]), atol=1e-4)


def test_signalling_information_is_the_mutual_information_of_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 3, 4)  # two leading batch dims, 3 agents, 4 actions
    p = logits.softmax(-1).reshape(12, 3, 4)
    joint = p / 12  # P(sample, action) per agent
    marginal = joint.sum(0)
    expected = (joint * (joint / (marginal / 12).unsqueeze(0)).log()).sum((0, 2))  # sum P(s,a) log P(s,a) / (P(s) P(a))
    assert torch.allclose(positive_signalling(logits), expected, atol=1e-5)


def _speaker_listener(*extra: str, worlds: int = 4):
    cfg = load_config(
        "mappo",
        "vmas/speaker_listener",
        [
            f"env.num_envs={worlds}",
            "env.max_steps=5",
            "env.continuous_actions=false",
            "collector.frames_per_batch=640",
            "algo.minibatch_size=640",
            "model.hidden_sizes=[16]",
            "critic_model.hidden_sizes=[16]",
            *extra,
        ],
    )
    return algo_class("mappo")(cfg, make_spec_env(cfg.env, 0)), make_env(cfg.env, 0)


def test_the_signalling_bonus_trains_only_the_named_groups_actor():
    module, env = _speaker_listener("algo.signalling_coeff=0.5", "algo.signalling_groups=[speaker]")
    with torch.no_grad():
        batch = module.compute_advantage(env.rollout(5, policy=module.policy))
    total, terms = module.loss(batch.reshape(-1))
    assert torch.isclose(terms["loss_signalling"], -0.5 * terms["signalling"]) and terms["signalling"] >= 0
    terms["loss_signalling"].backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.actors["speaker"].parameters())
    assert all(p.grad is None for p in module.actors["listener"].parameters()) and all(p.grad is None for p in module.critics.parameters())
    optimised = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert {id(p) for p in module.actors["speaker"].parameters()} <= optimised
    off, _ = _speaker_listener()
    assert "signalling" not in off.loss(batch.reshape(-1))[1].keys()


def test_a_signalling_bonus_pushes_the_speaker_towards_distinct_messages():
    module, env = _speaker_listener("algo.signalling_coeff=1.0", "algo.signalling_groups=[speaker]", worlds=32)
    with torch.no_grad():
        frames = env.rollout(5, policy=module.policy).reshape(-1)
    # The most its messages can say: the entropy of the goals in the batch (the speaker sees its goal's colour).
    _, counts = frames["speaker", "observation"].flatten(1).unique(dim=0, return_counts=True)
    goals = counts / counts.sum()
    ceiling = float(-(goals * goals.log()).sum())
    optimiser = torch.optim.Adam(module.actors["speaker"].parameters(), lr=3e-2)
    with torch.no_grad():
        before = float(module.signalling.information("speaker", frames))
    for _ in range(300):
        optimiser.zero_grad()
        (-module.signalling.information("speaker", frames)).backward()
        optimiser.step()
    with torch.no_grad():
        after = float(module.signalling.information("speaker", frames))
    # From 0 to at least half the ceiling: gradient ascent alone may stop at a partition (two goals sharing one message).
    assert len(counts) == 3 and before < 0.01 * ceiling and 0.5 * ceiling < after <= ceiling + 1e-4, (before, after, ceiling)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["algo.signalling_groups=[listener]", "algo.groups=[speaker]"], "'listener', which is not a trained group"),
        (["algo.signalling_groups=[speaker]", "env.continuous_actions=true"], "group 'speaker' acts continuously"),
    ],
)
def test_signalling_settings_it_cannot_serve_are_refused_in_one_line(extra, message):
    with pytest.raises(UsageError, match=message) as info:
        _speaker_listener("algo.signalling_coeff=0.1", *extra)
    assert "\n" not in str(info.value)


def test_evaluation_runs_a_dial_policy_in_eval_mode_and_restores_training():
    """Every evaluation (in training, `python -m ca12.evaluate`, `Run.evaluate`: one `Evaluator.run`)
    acts as the deployed policy: DIAL's messages are bits, and the module trains on afterwards."""
    from ca12.data.evaluator import Evaluator

    cfg = load_config("mappo", "comm/referential", ["model=dial", "env.num_envs=4", "collector.frames_per_batch=100", "algo.minibatch_size=50"])
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
    channels = [m for m in module.modules() if isinstance(m, DIALChannel)]
    assert channels, "model=dial has a DIAL channel"
    sent = []
    hooks = [c.register_forward_hook(lambda mod, args, out: sent.append(out.detach().clone())) for c in channels]
    module.train()
    evaluator = Evaluator(cfg.env, 3, 0, True, cfg.algo.groups, module.env_transforms())
    evaluator.run(module.policy)
    for hook in hooks:
        hook.remove()
    messages = torch.cat([m.flatten() for m in sent])
    assert messages.numel() and ((messages == 0) | (messages == 1)).all(), "messages are exactly 0/1 in evaluation"
    assert module.training and all(m.training for m in module.modules()), "training mode is put back"
