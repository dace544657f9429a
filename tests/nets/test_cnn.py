"""Image observations and `model=cnn` (#35 item 2): generic/pixels' egocentric images, the
convolutional actor and critic, the MLP on flattened images, and one line for what does not fit."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

import ca12
from ca12.algos import algo_class
from ca12.envs import make_env
from ca12.envs.layout import AgentLayout
from ca12.nets.builder import ImageNet
from ca12.run.config import load_config


def test_pixels_shows_each_agent_its_window_of_the_grid():
    env = ca12.make_env("generic/pixels", num_envs=4, size=5, view=2)
    group = AgentLayout.from_env(env).groups["agents"]
    assert group.image == (3, 5, 5) and group.obs_dim == 75
    td = env.reset()
    image = td["agents", "observation"]  # [4, 2, 3, 5, 5]
    base = env.base_env
    # the goal's pixel sits at goal - position + view, when inside the window
    offset = base._goal.unsqueeze(1) - base._pos + 2  # [4, 2, 2]
    inside = ((offset >= 0) & (offset <= 4)).all(-1)
    for w, a in inside.nonzero().tolist():
        assert image[w, a, 0, offset[w, a, 0], offset[w, a, 1]] == 1
    assert image[:, :, 0].sum((-1, -2))[~inside].eq(0).all()
    assert image[:, :, 2, 2, 2].eq(0).all()  # an agent stands inside the grid


@pytest.mark.parametrize("critic", ["cnn", "mlp"])
def test_mappo_acts_and_learns_from_images_with_a_cnn(critic):
    cfg = load_config("mappo", "generic/pixels", ["model=cnn", f"critic_model={critic}", "env.num_envs=4", "logger=none"])
    env = make_env(cfg.env, seed=0)
    module = algo_class("mappo")(cfg, env)
    assert isinstance(module.actor.module[0].module, ImageNet)
    with torch.no_grad():
        batch = env.rollout(5, policy=module.policy)
    module.compute_advantage(batch)
    total, _ = module.loss(batch.reshape(-1))
    total.backward()
    conv = module.actor.module[0].module.conv
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


def test_the_centralised_cnn_critic_sees_every_agents_image():
    cfg = load_config("mappo", "generic/pixels", ["model=cnn", "critic_model=cnn", "env.num_envs=2", "logger=none"])
    env = make_env(cfg.env, seed=0)
    module = algo_class("mappo")(cfg, env)
    td = env.reset()
    values = module.critic(td.clone())["agents", "state_value"]
    changed = td.clone()
    changed["agents", "observation"][:, 1] = torch.rand_like(changed["agents", "observation"][:, 1])
    moved = module.critic(changed)["agents", "state_value"]
    assert not torch.allclose(values[:, 0], moved[:, 0])  # agent 0's value reads agent 1's image


@pytest.mark.parametrize(
    "algo, env, overrides, says",
    [
        ("mappo", "vmas/navigation", ["model=cnn"], "model=cnn reads image observations"),
        ("iql", "generic/pixels", [], "iql reads flat observations; image observations train with mappo"),
        ("mappo", "generic/pixels", ["model=gru"], "model=gru reads flat observations; use model=cnn"),
        ("mappo", "generic/pixels", ["model=cnn", "model.channels=[8,8]", "model.strides=[1]"], "one entry per convolution"),
    ],
)
def test_what_does_not_fit_images_is_one_line(tmp_path, capsys, algo, env, overrides, says):
    from ca12.fit import main as fit

    assert fit(["--algo", algo, "--env", env, "--run-dir", str(tmp_path / "run"), *TINY, *overrides]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoints").exists()
