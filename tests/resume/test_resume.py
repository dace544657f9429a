"""Runs you can trust: exact resume, determinism, killed runs, NaN guard, evaluation."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, nan_critic_from_iteration, tiny_args, tiny_config
from torchrl.data import LazyMemmapStorage, LazyTensorStorage

from ca12.algos import algo_class
from ca12.fit import main

FOUR_ITERS = TINY + ["tuned=none", "collector.total_frames=400", "logger=none", "eval.every_n_iters=1", "eval.episodes=2"]


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert a["ca12"]["frames"] == b["ca12"]["frames"]


def _column(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_n_iterations_equal_half_resume_half_bit_for_bit(tmp_path):
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", "mappo", "--run-dir", str(one_go), *FOUR_ITERS]) == 0
    assert main(["--algo", "mappo", "--run-dir", str(split), *FOUR_ITERS, "collector.total_frames=200"]) == 0
    assert _ckpt(split)["ca12"]["frames"] == 200
    assert main(["--resume", str(split), "collector.total_frames=400"]) == 0

    _assert_same_training_state(_ckpt(one_go), _ckpt(split))
    assert _column(one_go, "rollout/episode_reward_mean") == _column(split, "rollout/episode_reward_mean")
    assert _column(one_go, "eval/episode_reward_mean") == _column(split, "eval/episode_reward_mean")
    assert len(_column(split, "time/frames")) == 4, "metrics.csv continues across the resume"


def _tensors(state: dict, prefix: str = "") -> dict:
    """The tensors of a (nested) state dict, keyed by their dotted path."""
    out = {}
    for name, value in state.items():
        if torch.is_tensor(value):
            out[prefix + name] = value
        elif isinstance(value, dict):
            out.update(_tensors(value, f"{prefix}{name}."))
    return out


@pytest.mark.parametrize("algo, extra", [("vdn", []), ("iql", ["algo.buffer_storage=memmap"]), ("qmix", ["algo.prioritized=true"])])
def test_off_policy_resume_is_bit_for_bit_replay_buffer_included(algo, extra, tmp_path):
    args = [*tiny_args(algo), *extra, "logger=none", "eval.every_n_iters=1", "eval.episodes=2", "collector.total_frames=400"]
    one_go, split = tmp_path / "one_go", tmp_path / "split"
    assert main(["--algo", algo, "--run-dir", str(one_go), *args]) == 0
    assert main(["--algo", algo, "--run-dir", str(split), *args, "collector.total_frames=200"]) == 0
    assert main(["--resume", str(split), "collector.total_frames=400"]) == 0

    a, b = _ckpt(one_go), _ckpt(split)
    _assert_same_training_state(a, b)
    (key,) = [k for k in a if k.endswith("ReplayDataModule")]
    buffer_a, buffer_b = a[key]["buffer"]["_storage"], b[key]["buffer"]["_storage"]
    assert buffer_a["_len"] == buffer_b["_len"] == 400
    storage_a, storage_b = _tensors(buffer_a["_storage"]), _tensors(buffer_b["_storage"])
    assert storage_a.keys() == storage_b.keys() and "next.agents.reward" in storage_a
    for name, value in storage_a.items():  # the filled part (the rest is uninitialised memory)
        assert torch.equal(value[:400], storage_b[name][:400]), name
    if "algo.prioritized=true" in extra:  # the priorities are part of the buffer's state
        sampler_a, sampler_b = a[key]["buffer"]["_sampler"], b[key]["buffer"]["_sampler"]
        assert torch.equal(sampler_a["priority"], sampler_b["priority"]) and bool(sampler_a["priority"][:400].ne(sampler_a["max_priority"]).any())
    assert _column(one_go, "train/loss") == _column(split, "train/loss")
    assert _column(one_go, "eval/episode_reward_mean") == _column(split, "eval/episode_reward_mean")


def test_buffer_storage_picks_memory_or_memory_mapped_files():
    for storage, kind in (("memory", LazyTensorStorage), ("memmap", LazyMemmapStorage)):
        cfg = tiny_config("iql", f"algo.buffer_storage={storage}")
        buffer = algo_class("iql").make_datamodule(cfg, make_env=None).buffer
        assert type(buffer.storage) is kind


def test_same_seed_same_result_other_seed_other_result(tmp_path):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["--algo", "ippo", "--seed", seed, "--run-dir", str(tmp_path / name), *TINY, "logger=none"]) == 0
        runs[name] = _ckpt(tmp_path / name)
    _assert_same_training_state(runs["a"], runs["b"])
    key = next(iter(runs["a"]["state_dict"]))
    assert not torch.equal(runs["a"]["state_dict"][key], runs["c"]["state_dict"][key])


def _start_fit(run_dir: Path, *extra: str) -> subprocess.Popen:
    args = ["--algo", "mappo", "--run-dir", str(run_dir), *TINY, "logger=none", "collector.total_frames=100000", *extra]
    return subprocess.Popen([sys.executable, "-m", "ca12.fit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, name: str = "iter_00002.ckpt") -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        path = run_dir / "checkpoints" / name
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise TimeoutError("no checkpoint written")


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start_fit(run_dir)
    _wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = _ckpt(run_dir)["ca12"]["iterations"]
    assert saved >= 2
    assert main(["--resume", str(run_dir), f"collector.total_frames={(saved + 2) * 100}"]) == 0
    assert _ckpt(run_dir)["ca12"]["iterations"] == saved + 2
    assert _ckpt(run_dir)["ca12"]["frames"] == (saved + 2) * 100


HOURLY = ["checkpoint.every_s=3600", "checkpoint.every_n_iters=100000"]  # last.ckpt after iteration 1, then only on a stop


@pytest.mark.parametrize("signum, extra", [(signal.SIGTERM, []), (signal.SIGINT, []), (signal.SIGTERM, HOURLY)])
def test_a_signal_finishes_the_iteration_saves_and_exits_with_128_plus_its_number(signum, extra, tmp_path):
    """Also with last.ckpt written at most hourly: the iteration a signal ends is saved all the same."""
    run_dir = tmp_path / "run"
    proc = _start_fit(run_dir, *extra)
    _wait_for_checkpoint(run_dir, proc, "last.ckpt" if extra else "iter_00002.ckpt")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err  # 130 for Ctrl-C, 143 for SIGTERM: interrupted, not done
    state = _ckpt(run_dir)["ca12"]
    assert f"after iteration {state['iterations']}, checkpoint saved" in out
    assert state["frames"] == state["iterations"] * 100 < 100000


def test_checkpoint_every_s_writes_last_ckpt_at_the_first_and_last_iteration_and_each_iter_ckpt(tmp_path, monkeypatch):
    from ca12.callbacks.checkpoint import IterationCheckpoint

    written, save = [], IterationCheckpoint.save
    monkeypatch.setattr(IterationCheckpoint, "save", staticmethod(lambda trainer, path: (written.append(path.name), save(trainer, path))))
    args = ["--algo", "mappo", "--run-dir", str(tmp_path / "run"), *TINY, "logger=none", "collector.total_frames=600"]
    assert main([*args, "checkpoint.every_s=3600", "checkpoint.every_n_iters=3"]) == 0
    assert written == ["last.ckpt", "last.ckpt", "iter_00003.ckpt", "last.ckpt", "iter_00006.ckpt"]  # iterations 1, 3, 6 of 6
    assert _ckpt(tmp_path / "run")["ca12"]["iterations"] == 6
    written.clear()
    assert main([*args[:3], str(tmp_path / "every"), *args[4:], "checkpoint.every_n_iters=3"]) == 0  # the default: every iteration
    assert written.count("last.ckpt") == 6


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    nan_critic_from_iteration(monkeypatch, 3)
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *FOUR_ITERS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ca12.fit: iteration 3: loss term 'loss_critic' is nan")
    saved = _ckpt(run_dir)
    assert saved["ca12"]["iterations"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_skip_nonfinite_skips_the_bad_updates_and_goes_on(tmp_path, monkeypatch):
    nan_critic_from_iteration(monkeypatch, 4)
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *FOUR_ITERS, "algo.skip_nonfinite=true"]) == 0
    saved = _ckpt(run_dir)
    assert saved["ca12"]["iterations"] == 4
    assert saved["ca12"]["skipped_updates"] == 2 * 2  # iteration 4: 2 epochs x 2 minibatches
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_an_algorithm_refuses_an_env_it_cannot_act_in(tmp_path, monkeypatch, capsys):
    from ca12.algos.mappo import MAPPO

    monkeypatch.setattr(MAPPO, "action_spaces", ("discrete",))
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ca12.fit: error: mappo cannot train on this env: its actions are continuous, mappo handles discrete actions")
    assert not run_dir.exists()


def test_the_ppo_familys_optional_parts_keep_the_checkpoint_keys_mappo_wrote_when_it_held_them_inline():
    """Opponent models and recurrent-critic estimators are composed objects now; a checkpoint of
    the version that built them inside MAPPO (keys `opponent_models.<g>.*`, `estimators.<g>.*`)
    must still load."""
    from ca12.envs import make_spec_env
    from ca12.run.config import load_config

    def keys(algo, env, overrides):
        cfg = load_config(algo, env, [*TINY, *overrides])
        return set(algo_class(algo)(cfg, make_spec_env(cfg.env, 0)).state_dict())

    opponent = keys("ppo", "matrix/rock_paper_scissors", ["algo.opponent_model=true"])
    assert {k.split(".")[0] for k in opponent} == {"_policy", "actors", "critics", "losses", "opponent_models"}
    assert {f"opponent_models.agents.net.module.params.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")} <= opponent
    recurrent = keys("mappo", "vmas/navigation", ["critic_model=gru"])
    assert {"estimators.agents.gamma", "estimators.agents.lmbda"} <= recurrent


def test_a_checkpoint_from_when_the_ppo_losses_were_functional_loads_and_resumes_bit_for_bit(tmp_path):
    """Until 2026-12-08 MAPPO's losses swapped the networks' parameters in on each call and named
    them `losses.<g>.actor_network_params.*`; now they call the networks as they are
    (`losses.<g>.actor_network.*`). A run saved under the old names evaluates and resumes."""
    import ca12

    one_go, old = tmp_path / "one_go", tmp_path / "old"
    assert main(["--algo", "mappo", "--run-dir", str(one_go), *FOUR_ITERS]) == 0
    assert main(["--algo", "mappo", "--run-dir", str(old), *FOUR_ITERS, "collector.total_frames=200"]) == 0
    checkpoint = _ckpt(old)
    renamed = {k.replace("_network.", "_network_params.", 1) if k.startswith("losses.") else k: v for k, v in checkpoint["state_dict"].items()}
    assert any(k.startswith("losses.agents.actor_network_params.") for k in renamed)
    assert any(k.startswith("losses.agents.critic_network_params.") for k in renamed)
    torch.save({**checkpoint, "state_dict": renamed}, old / "checkpoints" / "last.ckpt")

    loaded = ca12.load(old).module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in checkpoint["state_dict"].items())
    assert main(["--resume", str(old), "collector.total_frames=400"]) == 0
    _assert_same_training_state(_ckpt(one_go), _ckpt(old))
