"""conf/experiment/ (tuned setups of one algorithm on one env, `experiment=NAME`) and conf/debug/
(`debug=tiny`, the tests' runs): composed, checked, and refused in one line when they do not fit."""

from __future__ import annotations

import pytest

from ca12.algos import default_env
from ca12.fit import main
from ca12.paths import conf_dir, group_options
from ca12.run.config import algo_names, load_config
from ca12.run.experiments import experiment_target


@pytest.mark.parametrize("name", group_options("experiment"))
def test_every_experiment_composes_for_its_algorithm_and_env(name):
    algo, env = experiment_target(name)
    cfg = load_config(algo, env, [f"experiment={name}"])
    assert cfg.algo.name == algo and f"{cfg.env.family}/{cfg.env.task}" == env
    assert load_config(algo, env, [f"experiment={name}", "seed=3"]).seed == 3  # the command line still wins


def test_an_experiment_sets_its_values_and_the_command_line_wins():
    cfg = load_config("mappo", "comm/traffic_junction", ["experiment=traffic_junction_medium", "algo.lr=3e-4"])
    assert (cfg.model.kind, cfg.env.num_envs, cfg.collector.frames_per_batch, cfg.algo.num_epochs) == ("commnet", 150, 6000, 4)
    assert cfg.algo.lr == 3e-4
    benchmarl = load_config("mappo", "vmas/navigation", ["experiment=vmas_navigation_benchmarl"])
    assert (benchmarl.model.activation, benchmarl.algo.num_epochs, benchmarl.collector.frames_per_batch) == ("tanh", 45, 60000)


def test_an_experiment_names_its_algorithm_and_env_on_the_command_line(capsys):
    assert main(["experiment=cartpole_ppo_rlzoo", "--show-config"]) == 0
    shown = capsys.readouterr().out
    assert "name: ppo" in shown and "CartPole-v1" in shown and "frames_per_batch: 256" in shown


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--algo", "ippo", "experiment=vmas_navigation_benchmarl"], "is tuned for --algo mappo --env vmas/navigation, not --algo ippo"),
        (["--env", "vmas/balance", "experiment=vmas_navigation_benchmarl"], "not --algo mappo --env vmas/balance"),
        (["--algo", "mappo", "experiment=no_such_setup"], "unknown experiment 'no_such_setup'; choose one of:"),
        (["--algo", "mappo", "debug=huge"], "unknown debug 'huge'; choose one of: tiny"),
    ],
)
def test_an_experiment_or_debug_that_does_not_fit_is_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_debug_tiny_fits_every_algorithm():
    """Every algorithm has its part of `debug=tiny` (a new one cannot be forgotten) and composes
    with it to a 100-frame batch, 2 batches, 32-wide networks."""
    assert sorted(p.stem for p in (conf_dir() / "debug_algo" / "tiny").glob("*.yaml")) == sorted(algo_names())
    for algo in algo_names():
        env = default_env(algo)
        extra = ["env.continuous_actions=false"] if env.startswith("vmas") else []
        cfg = load_config(algo, env, ["debug=tiny", *extra])
        assert (cfg.collector.frames_per_batch, cfg.collector.total_frames, list(cfg.model.hidden_sizes)) == (100, 200, [32, 32]), algo
