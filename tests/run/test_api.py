"""The Python API: `ca12.train` trains the run `python -m ca12.fit` trains, fails with its one-line
messages, and `Run` gives the run's config, metrics, module, policy and evaluation."""

from __future__ import annotations

import subprocess
import sys

import pandas
import pytest
import torch
from conftest import tiny_args
from omegaconf import OmegaConf
from torchrl.envs.utils import ExplorationType, set_exploration_type

import ca12
from ca12.api import override_texts
from ca12.errors import UsageError
from ca12.fit import main
from ca12.run.config import load_config
from ca12.run.score import evaluate

# tiny_args("mappo") as keyword arguments.
TINY_KWARGS = {"debug": "tiny", "logger": "none", "eval.episodes": 2}
# What debug=tiny sets for mappo, as keyword arguments: sections nested, the rest dotted, values typed.
EXPLICIT_KWARGS = {
    "env": {"num_envs": 4, "max_steps": 25},
    "collector": {"frames_per_batch": 100, "total_frames": 200},
    "model": {"hidden_sizes": [32, 32]},
    "critic_model.hidden_sizes": [32, 32],
    "checkpoint.every_n_iters": 1,
    "algo": {"minibatch_size": 50, "num_epochs": 2},
    "logger": "none",
    "eval.episodes": 2,
}
TINY_ARGV = [*tiny_args("mappo"), "logger=none", "eval.episodes=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same run trained by the CLI and by `ca12.train` (both in this process, from runs/ of a
    scratch directory)."""
    root = tmp_path_factory.mktemp("api")
    cli, api = root / "cli", root / "api"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["--algo", "mappo", "--seed", "3", "--run-dir", str(cli), *TINY_ARGV]) == 0
        run = ca12.train("mappo", seed=3, run_dir=api, **TINY_KWARGS)
    return run, cli


def test_keyword_overrides_become_the_command_lines_texts():
    assert override_texts(EXPLICIT_KWARGS) == [
        "env.num_envs=4",
        "env.max_steps=25",
        "collector.frames_per_batch=100",
        "collector.total_frames=200",
        "model.hidden_sizes=[32,32]",
        "critic_model.hidden_sizes=[32,32]",
        "checkpoint.every_n_iters=1",
        "algo.minibatch_size=50",
        "algo.num_epochs=2",
        "logger=none",
        "eval.episodes=2",
    ]
    assert sorted(TINY_ARGV) == sorted(override_texts(TINY_KWARGS))
    # debug=tiny is those keys (conf/debug/tiny.yaml + conf/debug_algo/tiny/mappo.yaml)
    assert load_config("mappo", "vmas/navigation", override_texts(EXPLICIT_KWARGS)) == load_config("mappo", "vmas/navigation", TINY_ARGV)
    assert override_texts(
        {
            "algo": {"lr": 1e-4, "groups": None, "anneal_lr": True},
            "model": "gru",
            "logger": ["csv", "tensorboard"],
            "env.hide_observation": {"listener": [-3, -2]},
            "~callbacks.progress": None,
        }
    ) == [
        "algo.lr=0.0001",
        "algo.groups=null",
        "algo.anneal_lr=true",
        "model=gru",
        "logger=[csv,tensorboard]",
        "env.hide_observation={listener:[-3,-2]}",
        "~callbacks.progress",
    ]
    with pytest.raises(UsageError, match="algo.lr: cannot pass a object value"):
        override_texts({"algo.lr": object()})


def test_api_and_cli_train_the_same_run(trained):
    run, cli = trained
    cli_state = torch.load(cli / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    api_state = torch.load(run.checkpoint, weights_only=True)["state_dict"]
    assert cli_state.keys() == api_state.keys()
    for key in cli_state:
        assert torch.equal(cli_state[key], api_state[key]), key
    for key, value in run.module.state_dict().items():  # the Run's module: those weights, on the CPU
        assert torch.equal(value, cli_state[key]) and value.device.type == "cpu", key
    assert not run.module.training

    assert isinstance(run.metrics, pandas.DataFrame) and len(run.metrics) == 2
    timing = [c for c in run.metrics.columns if c.startswith("time/") and c not in ("time/frames", "time/iteration")]
    expected = pandas.read_csv(cli / "metrics.csv").drop(columns=timing)
    pandas.testing.assert_frame_equal(run.metrics.drop(columns=timing), expected)
    assert run.metrics["time/frames"].tolist() == [100, 200]

    assert run.config == OmegaConf.load(cli / "config.yaml")
    assert run.config.seed == 3 and run.config.algo.minibatch_size == 50 and run.frames == 200


def test_policy_acts_on_a_reset_observation_as_the_modules_deterministic_policy(trained):
    run, _ = trained
    env = run.make_env(num_envs=3, seed=7)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        expected = run.module.policy(td.clone())["agents", "action"]
    acted = run.policy(td)
    assert torch.equal(acted["agents", "action"], expected)
    assert ("agents", "action") not in td.keys(True), "the caller's TensorDict is left as it was"
    assert torch.equal(run.policy(td["agents", "observation"]), expected), "a single group's observation tensor"
    assert torch.equal(run.policy({"observation": td["agents", "observation"]}), expected)
    assert torch.allclose(run.policy(td["agents", "observation"][0])[None], expected[:1]), "one world, unbatched"
    assert env.step(acted)["next", "agents", "reward"].shape == (3, 3, 1)
    sampled = run.policy(td, deterministic=False)["agents", "action"]
    assert sampled.shape == expected.shape and not torch.equal(sampled, expected)
    with pytest.raises(UsageError, match=r"group 'agents' observes \[\*batch, 3, 18\]; got observation of shape \(3, 17\)"):
        run.policy(torch.zeros(3, 17))
    rollout = env.rollout(4, policy=run.policy, auto_reset=False, tensordict=td)  # TorchRL takes it as a module
    assert torch.equal(rollout[:, 0]["agents", "action"], expected)


def test_evaluate_is_ca12_evaluates_evaluation(trained):
    run, _ = trained
    assert run.evaluate(episodes=3) == evaluate(run.checkpoint, 3)[0]


def test_load_gives_the_run_of_a_directory_or_a_checkpoint_file(trained):
    run, _ = trained
    loaded = ca12.load(run.run_dir)
    assert loaded.checkpoint == run.run_dir / "checkpoints" / "last.ckpt" and loaded.frames == 200
    first = ca12.load(run.run_dir / "checkpoints" / "iter_00001.ckpt")
    assert first.run_dir == run.run_dir.resolve() and first.frames == 100
    key = next(iter(run.saved["state_dict"]))
    assert not torch.equal(first.module.state_dict()[key], run.module.state_dict()[key])


def test_load_of_a_missing_or_corrupt_path_raises_one_line(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint file at '.*nowhere'"):
        ca12.load(tmp_path / "nowhere")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(UsageError, match="no checkpoint file at '.*empty_run/checkpoints/last.ckpt'"):
        ca12.load(tmp_path / "empty_run")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="is not a readable checkpoint"):
        ca12.load(tmp_path / "bad.ckpt")


@pytest.mark.parametrize(
    "call, argv",
    [
        (lambda d: ca12.train("dqn9", run_dir=d), ["--algo", "dqn9"]),
        (lambda d: ca12.train("mappo", run_dir=d, **{"algo.lrr": 1}), ["--algo", "mappo", "algo.lrr=1"]),
        (lambda d: ca12.train("mappo", run_dir=d, env={"num_envs": "many"}), ["--algo", "mappo", "env.num_envs=many"]),
        (lambda d: ca12.train("mappo", "vmas/nowhere", run_dir=d), ["--algo", "mappo", "--env", "vmas/nowhere"]),
        (lambda d: ca12.train("mappo", run_dir=d, seed="x"), ["--algo", "mappo", "--seed", "x"]),
    ],
)
def test_api_errors_raise_the_clis_one_line_message_and_write_nothing(call, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as raised:
        call(tmp_path / "api")
    assert main([*argv, "--run-dir", str(tmp_path / "cli")]) == 2
    assert capsys.readouterr().err == f"ca12.fit: error: {raised.value}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no run directory, no run index"


def test_import_ca12_stays_light_and_exports_the_api_lazily():
    code = (
        "import sys, ca12; assert 'torch' not in sys.modules and 'lightning' not in sys.modules; "
        "assert ca12.train is ca12.api.train and ca12.load is ca12.api.load and ca12.Run is ca12.api.Run; "
        "assert 'lightning' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_make_env_builds_a_registered_env_as_the_cli_composes_it():
    env = ca12.make_env("vmas/navigation", seed=1, num_envs=3, n_agents=2)
    assert env.batch_size == (3,) and env.full_observation_spec_unbatched["agents", "observation"].shape[0] == 2
    first = env.reset()["agents", "observation"]
    again = ca12.make_env("vmas/navigation", seed=1, num_envs=3, n_agents=2)
    torch.testing.assert_close(again.reset()["agents", "observation"], first)  # seeded
    assert not torch.equal(ca12.make_env("vmas/navigation", seed=2, num_envs=3, n_agents=2).reset()["agents", "observation"], first)
    assert ca12.make_env("meta/navigation").batch_size  # a family only maml trains is composed with maml
    cartpole = ca12.make_env("gym/CartPole-v1", algo="ppo", num_envs=2)  # one agent, grouped as the learners see it
    assert cartpole.batch_size == (2,) and ("agent", "action") in cartpole.full_action_spec_unbatched.keys(True)
    with pytest.raises(UsageError, match="unknown vmas task 'nowhere'"):
        ca12.make_env("vmas/nowhere")
    with pytest.raises(UsageError, match="expects an integer"):
        ca12.make_env("vmas/navigation", num_envs="many")
