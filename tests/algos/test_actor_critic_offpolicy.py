"""MADDPG, IDDPG, MASAC, ISAC: losses on a real VMAS batch, critics' information structure,
exact off-policy resume, and a short learning check.

(The tiny fits of every algorithm and action space live in test_fit.py.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import tiny_args
from torchrl.objectives import DDPGLoss

from ca12.algos import algo_class
from ca12.envs import make_env
from ca12.fit import main
from ca12.run.config import load_config

ALGOS = ("maddpg", "iddpg", "masac", "isac")
CASES = [(algo, actions) for algo in ALGOS for actions in ("continuous", "discrete")]


def _module_and_batch(algo: str, actions: str, steps: int = 4):
    """The algorithm built for vmas/navigation with 2 worlds, and `steps` steps collected with
    its own exploring policy, flattened to transitions and prepared as for a loss."""
    continuous = f"env.continuous_actions={str(actions == 'continuous').lower()}"
    cfg = load_config(algo, "vmas/navigation", tiny_args(algo) + ["env.num_envs=2", continuous])
    env = make_env(cfg.env, 0)
    module = algo_class(algo)(cfg, env)
    with torch.no_grad():
        batch = env.rollout(steps, policy=module.policy)
    return module, module.prepare(batch.reshape(-1))


def _loss_terms(module, sample) -> dict[str, torch.Tensor]:
    """The actor's and the critic's loss, by name, with their graphs."""
    loss = module.loss_module
    if isinstance(loss, DDPGLoss):
        return {"actor": loss.loss_actor(sample.clone())[0], "critic": loss.loss_value(sample.clone())[0]}
    out = loss(sample.clone())
    return {"actor": out["loss_actor"], "critic": out["loss_qvalue"], "alpha": out["loss_alpha"]}


def _params(module) -> dict[str, list[torch.Tensor]]:
    loss = module.loss_module
    critic = loss.value_network_params if isinstance(loss, DDPGLoss) else loss.qvalue_network_params
    return {"actor": list(loss.actor_network_params.values(True, True)), "critic": list(critic.values(True, True))}


def _has_grad(params: list[torch.Tensor]) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)


@pytest.mark.parametrize("algo, actions", CASES)
def test_losses_are_finite_scalars_and_train_only_their_own_network(algo, actions):
    module, sample = _module_and_batch(algo, actions)
    terms = _loss_terms(module, sample)
    for name, value in terms.items():
        assert value.shape == () and torch.isfinite(value), name
    params = _params(module)
    assert {id(p) for p in params["actor"]}.isdisjoint(id(p) for p in params["critic"])
    for trained, untouched in (("actor", "critic"), ("critic", "actor")):
        module.zero_grad(set_to_none=True)
        for p in params["actor"] + params["critic"]:
            p.grad = None
        _loss_terms(module, sample)[trained].backward()
        assert _has_grad(params[trained]), f"the {trained} loss does not reach the {trained}"
        assert not _has_grad(params[untouched]), f"the {trained} loss reaches the {untouched}"


def _q_values(module, sample) -> torch.Tensor:
    """Every agent's Q(s, a) for the stored actions, [B, n_agents]."""
    g = module.group
    td = sample.select((g, "observation"), *[k for k in module.critic.in_keys if k != (g, "observation")]).clone()
    with torch.no_grad():
        return module.critic(td)[g, "state_action_value"].squeeze(-1)


@pytest.mark.parametrize("algo, centralised", [("maddpg", True), ("iddpg", False), ("masac", True), ("isac", False)])
def test_only_a_centralised_critic_sees_the_other_agents_actions(algo, centralised):
    module, sample = _module_and_batch(algo, "continuous")
    g = module.group
    before = _q_values(module, sample)
    perturbed = sample.clone()
    perturbed[g, "action"][:, 1] = -perturbed[g, "action"][:, 1] + 0.5  # agent 1's action only
    after = _q_values(module, perturbed)
    assert not torch.equal(before[:, 1], after[:, 1]), "agent 1's own Q must see its action"
    changed = not torch.allclose(before[:, 0], after[:, 0])
    assert changed == centralised, f"{algo}: agent 0's Q {'should' if centralised else 'should not'} depend on agent 1's action"


def test_exploration_noise_anneals_and_is_off_in_deterministic_evaluation():
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    module, sample = _module_and_batch("maddpg", "continuous")
    g = module.group
    obs = sample.select((g, "observation"))
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        a, b = module.policy(obs.clone())[g, "action"], module.policy(obs.clone())[g, "action"]
    assert torch.equal(a, b)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        assert not torch.equal(module.policy(obs.clone())[g, "action"], a)
    sigma0 = float(module.exploration.sigma)
    module.exploration.step(module.cfg.annealing_frames // 2)
    assert float(module.exploration.sigma) == pytest.approx((sigma0 + module.cfg.sigma_end) / 2, rel=1e-3)


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def _column(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def _assert_same_storage(a: dict, b: dict, length: int, prefix: str = "") -> int:
    """Compare the filled part of two buffers' storages (nested dicts of tensors); returns how
    many tensors were compared."""
    compared = 0
    assert a.keys() == b.keys(), prefix
    for name, value in a.items():
        if torch.is_tensor(value):
            assert torch.equal(value[:length], b[name][:length]), prefix + name
            compared += 1
        elif isinstance(value, dict):
            compared += _assert_same_storage(value, b[name], length, f"{prefix}{name}/")
    assert compared or prefix, "no replayed tensors compared"
    return compared


@pytest.mark.parametrize("algo, actions", CASES)
def test_a_fresh_module_loads_the_state_of_a_trained_one(algo, actions):
    """What resume needs of the module: running the losses adds no state (TorchRL's SACLoss
    registers its target-entropy buffer lazily), so a fresh module loads a checkpoint strictly."""
    module, sample = _module_and_batch(algo, actions)
    fresh, _ = _module_and_batch(algo, actions, steps=1)
    _loss_terms(module, sample)
    fresh.load_state_dict(module.state_dict(), strict=True)
    assert fresh.state_dict().keys() == module.state_dict().keys()


def test_off_policy_actor_critic_resume_is_bit_for_bit(tmp_path):
    algo = "maddpg"
    args = [*tiny_args(algo), "logger=csv", "eval.every_n_iters=1", "eval.episodes=2", "collector.total_frames=200"]
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", algo, "--run-dir", str(one_go), *args]) == 0
    assert main(["--algo", algo, "--run-dir", str(split), *args, "collector.total_frames=100"]) == 0
    assert main(["--resume", str(split), "collector.total_frames=200"]) == 0

    a, b = _ckpt(one_go), _ckpt(split)
    assert a["ca12"]["frames"] == b["ca12"]["frames"] == 200
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert len(a["optimizer_states"]) == len(b["optimizer_states"]) == 2  # actor, critic
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        assert oa["state"].keys() == ob["state"].keys() and oa["state"]
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            for key in sa:
                assert torch.equal(sa[key], sb[key]), key
    (key,) = [k for k in a if k.endswith("ReplayDataModule")]
    storage_a, storage_b = a[key]["buffer"]["_storage"], b[key]["buffer"]["_storage"]
    assert storage_a["_len"] == storage_b["_len"] == 200
    _assert_same_storage(storage_a["_storage"], storage_b["_storage"], 200)
    for column in ("train/loss", "train/loss_actor", "eval/episode_reward_mean"):
        assert _column(one_go, column) and _column(one_go, column) == _column(split, column), column


def test_maddpg_learns_generic_coop(tmp_path):
    """MADDPG on the generic cooperative goal-reaching task (3 agents, 2-D): a short run with
    small nets and 25 updates of each network per 250-frame batch.

    Measured (seed 0, 2 shared CPU cores, ~20 s): returns go from about -28 / -21 in the first
    two batches to about -18 / -15 / -16 in batches 10-12 (and -10 by batch 20); the test asks
    for half of that improvement.
    """
    run_dir = tmp_path / "maddpg"
    args = [
        "--algo",
        "maddpg",
        "--env",
        "generic/coop",
        "--run-dir",
        str(run_dir),
        "logger=csv",
        "eval.every_n_iters=0",
        "env.num_envs=10",
        "env.max_steps=25",
        "collector.frames_per_batch=250",
        "collector.total_frames=3000",
        "model.hidden_sizes=[64,64]",
        "critic_model.hidden_sizes=[64,64]",
        "algo.warmup_frames=250",
        "algo.actor_lr=1e-3",
        "algo.critic_lr=1e-3",
    ]
    assert main(args) == 0
    returns = _column(run_dir, "rollout/episode_reward_mean")
    assert len(returns) == 12
    assert sum(returns[-3:]) / 3 - sum(returns[:2]) / 2 >= 4.0, returns


def test_masac_learns_generic_coop(tmp_path):
    """MASAC on the same generic cooperative task as MADDPG above, with a smaller initial
    temperature (alpha 0.1: at alpha 1 the entropy term outweighs this task's rewards for the
    first thousands of frames).

    Measured (seed 0, 2 shared CPU cores, ~25 s): returns -28.5 / -19.3 in the first two
    batches, -13.7 / -13.4 / -13.7 in batches 18-20; the test asks for about half of that.
    """
    run_dir = tmp_path / "masac"
    args = [
        "--algo",
        "masac",
        "--env",
        "generic/coop",
        "--run-dir",
        str(run_dir),
        "logger=csv",
        "eval.every_n_iters=0",
        "env.num_envs=10",
        "env.max_steps=25",
        "collector.frames_per_batch=250",
        "collector.total_frames=5000",
        "model.hidden_sizes=[64,64]",
        "critic_model.hidden_sizes=[64,64]",
        "algo.warmup_frames=250",
        "algo.actor_lr=1e-3",
        "algo.critic_lr=1e-3",
        "algo.alpha_init=0.1",
    ]
    assert main(args) == 0
    returns = _column(run_dir, "rollout/episode_reward_mean")
    assert len(returns) == 20
    assert sum(returns[-3:]) / 3 - sum(returns[:2]) / 2 >= 5.0, returns


def test_the_exploration_noise_is_gaussian_with_the_annealed_scale_and_never_calls_torch_normal(monkeypatch):
    from tensordict import TensorDict
    from torchrl.data import Bounded

    from ca12.envs.layout import Group
    from ca12.nets.actor_critic import make_exploration

    spec = Bounded(-100.0, 100.0, shape=(4096, 2, 3))
    group = Group(name="agents", n_agents=2, obs_dim=1, observation_spec=None, action_spec=spec, discrete=False, n_actions=None, action_dim=3)
    noise = make_exploration(group, sigma_init=0.5, sigma_end=0.1, annealing_frames=10)
    # torch.normal(mean, std) checks std >= 0 on the host: a sync a CUDA graph capture cannot hold (collector=cudagraph)
    monkeypatch.setattr(torch, "normal", lambda *a, **k: pytest.fail("torch.normal called"))
    torch.manual_seed(0)
    action = torch.full((4096, 2, 3), 1.0)
    out = noise(TensorDict({("agents", "action"): action.clone()}, [4096]))["agents", "action"] - action
    assert abs(float(out.mean())) < 0.02 and float(out.std()) == pytest.approx(0.5, rel=0.03)
    noise.step(10)  # annealed to sigma_end
    out = noise(TensorDict({("agents", "action"): action.clone()}, [4096]))["agents", "action"] - action
    assert float(out.std()) == pytest.approx(0.1, rel=0.03)


def _own_by_hand(module, sample, action: torch.Tensor) -> torch.Tensor:
    """[B, n]: Q_i with agent i's action `action[:, i]` and the others' as stored, one agent at a time."""
    g, n = module.group, action.shape[-2]
    key = (g, "action_onehot") if (g, "action_onehot") in sample.keys(True) else (g, "action")
    values = []
    for i in range(n):
        td = sample.clone()
        td[key][:, i] = action[:, i]
        q = module.critic(td)[g, "state_action_value"]
        values.append(q.squeeze(-1)[..., i])
    return torch.stack(values, -1)


@pytest.mark.parametrize("actions", ["continuous", "discrete"])
def test_maddpg_own_objective_is_each_agents_q_with_the_others_actions_from_the_buffer(actions):
    """The paper's eq. 6: actor i ascends Q_i(x, mu_i(o_i), a_-i stored); TorchRL's team form differs."""
    module, sample = _module_and_batch("maddpg", actions)
    assert module.cfg.actor_objective == "own", "the paper's form is MADDPG's default"
    g = module.group
    key = (g, "action_onehot") if actions == "discrete" else (g, "action")
    torch.manual_seed(0)
    loss, _ = module.loss_module.loss_actor(sample.clone())
    torch.manual_seed(0)
    with torch.no_grad():
        action = module.actor(sample.clone())[key]
        expected = -_own_by_hand(module, sample, action).mean()
        team = -module.critic(sample.clone().update({key: action}))[g, "state_action_value"].mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert not torch.allclose(loss, team, atol=1e-4), "with stored actions differing from the actors', own is not team"


def test_masac_own_objective_reads_each_agents_q_with_the_others_actions_from_the_buffer():
    from torchrl.envs.utils import ExplorationType, set_exploration_type
    from torchrl.objectives.sac import compute_rsample_log_prob

    cfg_args = ["algo.actor_objective=own", "critic_model.share_params=false"]
    cfg = load_config("masac", "vmas/navigation", tiny_args("masac") + ["env.num_envs=2", *cfg_args])
    env = make_env(cfg.env, 0)
    module = algo_class("masac")(cfg, env)
    with torch.no_grad():
        sample = module.prepare(env.rollout(4, policy=module.policy).reshape(-1))
    loss_module = module.loss_module
    torch.manual_seed(0)
    loss, _ = loss_module.actor_loss(sample.clone())
    torch.manual_seed(0)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        action, log_prob = compute_rsample_log_prob(module.actor.get_dist(sample.clone()))
        by_net = []
        for params in loss_module.qvalue_network_params.unbind(0):  # each of the twin critics
            with params.to_module(module.critic):
                by_net.append(_own_by_hand(module, sample, action))
        expected = (loss_module._alpha * log_prob - torch.stack(by_net).min(0)[0]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("algo", ["maddpg", "masac"])
def test_the_own_objective_refuses_one_shared_centralised_critic(algo):
    from ca12.errors import UsageError

    cfg = load_config(algo, "vmas/navigation", tiny_args(algo) + ["algo.actor_objective=own", "critic_model.share_params=true"])
    with pytest.raises(UsageError, match="share_params=false"):
        algo_class(algo)(cfg, make_env(cfg.env, 0))
    # Independent critics may share parameters: own is their objective too.
    independent = {"maddpg": "iddpg", "masac": "isac"}[algo]
    cfg = load_config(independent, "vmas/navigation", tiny_args(independent) + ["algo.actor_objective=own", "critic_model.share_params=true"])
    algo_class(independent)(cfg, make_env(cfg.env, 0))
