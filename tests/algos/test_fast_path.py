"""The update fast path (ca12/algos/cuda_graphs.py) and the device-side NaN guard.

CUDA graphs need a GPU (measured on one: docs/benchmarks.md, `benchmarks/gpu_session.sh`);
here the function the graph would capture runs uncaptured, so it must give the Lightning path's
numbers exactly and refuse or skip NaN updates the same way.
"""

from __future__ import annotations

import pytest
import torch
from conftest import nan_critic_from_iteration, tiny_args

import ca12.algos.optim as optim
from ca12.algos.optim import NonFiniteGuard
from ca12.errors import NonFiniteError
from ca12.fit import main

RUN = ["logger=none", "eval.every_n_iters=100", "collector.total_frames=300"]


def _state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


@pytest.fixture
def uncaptured(monkeypatch):
    """`algo.cudagraphs=true` on this CPU machine: the fast path's function, not captured."""
    import ca12.algos.cuda_graphs

    monkeypatch.setattr(ca12.algos.cuda_graphs, "check_fast_path", lambda cfg: None)  # ca12.run.trainer.check_devices imports it when called
    monkeypatch.setattr(optim, "capture_update", lambda fn: fn)


@pytest.mark.parametrize("algo", ["mappo", "maddpg", "masac", "qmix"])
def test_the_fast_path_steps_as_lightning_does(tmp_path, uncaptured, algo):
    runs = {}
    for name, extra in (("lightning", []), ("fast", ["algo.cudagraphs=true"])):
        runs[name] = tmp_path / name
        assert main(["--algo", algo, "--run-dir", str(runs[name]), *tiny_args(algo), *RUN, *extra]) == 0
    # The same steps; a capturable Adam computes its bias correction on the device in float32
    # (the Lightning path's in Python floats), hence a rounding-level tolerance.
    a, b = _state(runs["lightning"]), _state(runs["fast"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values()):
            for k in sa:
                torch.testing.assert_close(sb[k].float(), sa[k].float(), rtol=1e-5, atol=1e-6, msg=k)


def test_a_nan_on_the_fast_path_stops_before_the_checkpoint_and_names_the_term(tmp_path, uncaptured, monkeypatch, capsys):
    nan_critic_from_iteration(monkeypatch, 2)
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *tiny_args("mappo"), *RUN, "algo.cudagraphs=true"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ca12.fit: iteration 2: loss term 'loss_critic' is nan")
    saved = _state(run_dir)
    assert saved["ca12"]["iterations"] == 1
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_skipped_nan_updates_leave_weights_and_adam_state_untouched(tmp_path, uncaptured, monkeypatch):
    nan_critic_from_iteration(monkeypatch, 3)
    good, skipped = tmp_path / "good", tmp_path / "skipped"
    args = [*tiny_args("mappo"), "tuned=none", "logger=none", "eval.every_n_iters=100"]
    assert main(["--algo", "mappo", "--run-dir", str(good), *args, "collector.total_frames=200", "algo.cudagraphs=true"]) == 0
    assert (
        main(["--algo", "mappo", "--run-dir", str(skipped), *args, "collector.total_frames=300", "algo.cudagraphs=true", "algo.skip_nonfinite=true"])
        == 0
    )
    a, b = _state(good), _state(skipped)
    assert b["ca12"]["skipped_updates"] == 2 * 2  # iteration 3: 2 epochs x 2 minibatches, all skipped
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)  # Adam's moments and step count too


@pytest.mark.parametrize(
    "extra, message",
    [
        (["algo.cudagraphs=true"], "algo.cudagraphs=true needs a CUDA GPU"),
        (["algo.cudagraphs=true", "trainer=ddp"], "cannot run under DDP"),
        (["collector=cudagraph"], "collector=cudagraph needs a CUDA GPU"),
        (["collector=cudagraph", "--env", "gym/Pendulum-v1"], "collector=cudagraph steps VMAS envs only (this run's env is gym/Pendulum-v1)"),
    ],
)
def test_fast_path_options_a_run_cannot_use_are_refused_in_one_line(tmp_path, capsys, extra, message):
    run_dir = tmp_path / "run"
    assert main(["--algo", "mappo", "--run-dir", str(run_dir), *tiny_args("mappo"), *RUN, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not run_dir.exists()


def test_the_guard_counts_on_the_device_and_names_the_broken_term():
    guard = NonFiniteGuard()
    ok, bad = torch.tensor(True), torch.tensor(False)
    guard.record(ok, {"loss_actor": torch.tensor(1.0), "loss_critic": torch.tensor(2.0), "grad_norm": torch.tensor(float("nan"))})
    assert guard.check(1, stop=True) == 0
    guard.record(bad, {"loss_actor": torch.tensor(1.0), "loss_critic": torch.tensor(float("inf"))})
    guard.record(ok, {"loss_actor": torch.tensor(1.0), "loss_critic": torch.tensor(2.0)})
    with pytest.raises(NonFiniteError, match=r"iteration 7: loss term 'loss_critic' is inf \(1 update\(s\) skipped\)"):
        guard.check(7, stop=True)
    guard.record(bad, {"loss_actor": torch.tensor(1.0)})
    assert guard.check(8, stop=False) == 1  # skipping: counted, not raised
    guard.record(bad, {"loss_actor": torch.tensor(1.0)})
    with pytest.raises(NonFiniteError, match="the gradient is not finite"):
        guard.check(9, stop=True)


@pytest.mark.parametrize(
    "env, overrides, switched",
    [
        ("vmas/navigation", [], True),
        ("vmas/navigation", ["trainer=cpu"], False),
        ("vmas/navigation", ["env.device=cpu"], False),
        ("gym/CartPole-v1", [], False),
    ],
)
def test_a_new_vmas_run_trains_on_the_gpu_when_one_is_present(monkeypatch, env, overrides, switched):
    import ca12.run.trainer
    from ca12.run.config import load_config

    monkeypatch.setattr(ca12.run.trainer, "cuda_available", lambda: True)  # torch.cuda.is_available(), read lazily
    extra = ca12.run.trainer.gpu_overrides(env, overrides)
    assert bool(extra) is switched
    cfg = load_config("mappo" if env.startswith("vmas") else "ppo", env, [*overrides, *extra])
    assert (cfg.trainer.accelerator, cfg.env.device) == (("gpu", "cuda") if switched else (cfg.trainer.accelerator, cfg.env.device))
    if not switched and env.startswith("vmas"):
        assert "cpu" in (cfg.trainer.accelerator, cfg.env.device)
