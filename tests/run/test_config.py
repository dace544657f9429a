"""conf/ composes, every algorithm instantiates from it, and bad overrides are refused."""

from __future__ import annotations

import pytest
from conftest import tiny_config, tiny_env
from omegaconf import OmegaConf

from ca12.algos import algo_class
from ca12.envs import make_env
from ca12.errors import UsageError
from ca12.run.config import algo_names, apply_overrides, conf_dir, env_config_names, group_options, load_config


@pytest.mark.parametrize("algo", algo_names())
def test_every_algo_config_composes_and_instantiates(algo):
    cfg = tiny_config(algo)
    assert cfg.algo.name == algo, "conf/algo/<name>.yaml must declare name: <name>"
    module = algo_class(algo)(cfg, tiny_env(cfg))
    assert sum(p.numel() for p in module.parameters()) > 0
    assert module.policy is not None


@pytest.mark.parametrize("env", env_config_names())
def test_every_env_config_builds_its_env(env):
    cfg = load_config("mappo", env, ["env.num_envs=2"])
    built = make_env(cfg.env, 0)
    td = built.rollout(2, break_when_any_done=False)  # (comm/referential's episodes are one step)
    assert td.batch_size[:2] == (2, 2)


def test_public_override_keys_exist():
    cfg = load_config("mappo", "vmas/navigation")
    for key in (
        "collector.frames_per_batch",
        "collector.total_frames",
        "env.num_envs",
        "env.max_steps",
        "env.device",
        "algo.lr",
        "algo.num_epochs",
        "algo.minibatch_size",
        "trainer.devices",
        "checkpoint.every_n_iters",
    ):
        assert OmegaConf.select(cfg, key) is not None, key
    assert set(group_options("trainer")) >= {"cpu", "gpu", "ddp"}
    assert set(group_options("logger")) >= {"wandb", "csv", "none"}


def test_navigation_uses_benchmarl_task_settings():
    env = load_config("mappo", "vmas/navigation").env
    assert (env.n_agents, env.shared_rew, env.collisions, env.agents_with_same_goal) == (3, False, True, 1)
    assert (env.lidar_range, env.agent_radius, env.max_steps) == (0.35, 0.1, 100)


def test_overrides_apply_with_types():
    cfg = load_config(
        "ippo",
        "vmas/balance",
        ["algo.lr=1e-3", "env.num_envs=8", "collector.frames_per_batch=800", "algo.minibatch_size=400", "trainer=ddp", "logger=none"],
        seed=3,
    )
    assert cfg.algo.lr == 1e-3 and cfg.env.num_envs == 8 and cfg.seed == 3
    assert cfg.trainer.strategy == "ddp" and cfg.logger.wandb is None and cfg.logger.tensorboard is None


def test_any_vmas_scenario_by_name_with_scenario_kwargs():
    cfg = load_config("mappo", "vmas/dispersion", ["env.n_agents=2", "env.num_envs=2"])
    assert cfg.env.task == "dispersion" and cfg.env.n_agents == 2
    td = make_env(cfg.env, 0).rollout(2)
    assert td["agents", "observation"].shape[2] == 2


@pytest.mark.parametrize(
    "algo, env, overrides, fragment",
    [
        ("nope", "vmas/navigation", [], f"unknown algorithm 'nope'; choose one of: {', '.join(algo_names())}"),
        ("mappo", "vmas/nowhere", [], "unknown vmas task 'nowhere'"),
        ("mappo", "atari/pong", [], "unknown env 'atari/pong'"),
        ("mappo", "vmas/navigation", ["algo.lrr=1"], "unknown override key 'algo.lrr'"),
        ("mappo", "vmas/navigation", ["algo.lr=fast"], "algo.lr expects a number"),
        ("mappo", "vmas/navigation", ["env.num_envs=2.5"], "env.num_envs expects an integer"),
        ("mappo", "vmas/navigation", ["trainer=tpu"], "unknown trainer 'tpu'; choose one of: cpu, ddp, gpu"),
        ("mappo", "vmas/navigation", ["logger=comet"], "unknown logger 'comet'"),
        (
            "mappo",
            "vmas/navigation",
            ["model=transformer"],
            "unknown model 'transformer'; choose one of: cnn, commnet, dial, graph, gru, hierarchical, ic3net, lstm, mlp, tarmac",
        ),
        ("mappo", "vmas/navigation", ["model.activation=sigmoid"], "model.activation must be one of tanh, relu, elu, gelu, got 'sigmoid'"),
        ("mappo", "vmas/navigation", ["trainer.max_epochs=3"], "trainer.max_epochs is set by ca12 itself"),
        ("mappo", "vmas/navigation", ["collector=multisync", "collector.frames_per_batch=6060"], "x collector.workers (2)"),
        ("mappo", "vmas/navigation", ["collector.frames_per_batch=1001"], "must be a multiple of env.num_envs"),
        ("mappo", "vmas/navigation", ["algo.num_epochs=0"], "algo.num_epochs must be positive"),
        ("mappo", "vmas/navigation", ["lr"], "expected KEY=VALUE"),
        ("vdn", "vmas/navigation", ["algo.buffer_storage=disk"], "algo.buffer_storage must be one of memory, memmap, got 'disk'"),
        ("vdn", "vmas/navigation", ["algo.buffer_storage=memmap", "algo.buffer_device=cuda"], "set algo.buffer_device=cpu"),
        ("qmix", "vmas/navigation", ["algo.priority_alpha=-1"], "algo.priority_alpha must be >= 0.0, got -1"),
    ],
)
def test_bad_config_input_is_refused_with_one_line(algo, env, overrides, fragment):
    with pytest.raises(UsageError) as info:
        load_config(algo, env, overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_scenario_kwarg_is_refused_when_the_env_is_built():
    cfg = load_config("mappo", "vmas/navigation", ["env.no_such_kwarg=1", "env.num_envs=2"])
    with pytest.raises(UsageError, match="no_such_kwarg"):
        make_env(cfg.env, 0)


def test_conf_dir_is_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (conf_dir() / "config.yaml").is_file()


def test_tuned_settings_apply_to_their_algorithm_and_env_only_and_give_way_to_experiments_and_the_command_line():
    """conf/tuned/<algo>/<family>/<task>.yaml (RL Zoo's way): MAPPO on navigation, the default
    job, runs its tuned learning rate and budget; `tuned=none` the generic defaults; an
    experiment (a whole setup) ignores the tuned file; other envs never see it."""
    tuned = load_config("mappo", "vmas/navigation")
    generic = load_config("mappo", "vmas/navigation", ["tuned=none"])
    assert (tuned.algo.lr, tuned.algo.anneal_lr, tuned.collector.total_frames) == (1e-3, True, 72_000)
    assert (generic.algo.lr, generic.algo.anneal_lr, generic.collector.total_frames) == (3e-4, False, 240_000)
    assert load_config("mappo", "vmas/balance").algo.lr == 3e-4
    assert load_config("mappo", "vmas/navigation", ["algo.lr=2e-4"]).algo.lr == 2e-4
    benchmarl = load_config("mappo", "vmas/navigation", ["experiment=vmas_navigation_benchmarl"])
    assert benchmarl.algo.lr == 5e-5 and not benchmarl.algo.anneal_lr
    with pytest.raises(UsageError, match="the only choice is tuned=none"):
        load_config("mappo", "vmas/navigation", ["tuned=fast"])
    with pytest.raises(UsageError, match="'tuned' cannot change when resuming"):
        apply_overrides(tuned, ["tuned=none"])
