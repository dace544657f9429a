"""Resume with worker processes (`collector=multisync`, `collector=multiasync`).

Workers keep their envs' random state to themselves, so such a run resumes statistically
equivalent, not bit for bit (tests/resume/test_resume.py checks the exact `sync` case). What must hold
all the same: the resumed run goes on from the checkpoint's counters, weights and replay buffer,
samples fresh episodes (not the ones the run started with again), and finishes with finite
metrics. Every run starts two worker processes, so there are two runs per test: 2 iterations,
then a resume for 3 more (a multiasync run that hung at its third iteration hangs no more).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchrl.collectors._multi_async
from conftest import tiny_args
from test_resume import _ckpt, _column, _tensors

from ca12.data.rollout import RolloutDataModule
from ca12.fit import main

# Two worlds per worker: a multisync batch (100 frames) is one 25-step episode of 2 x 2 worlds, a
# multiasync batch is two episodes of one worker's 2 worlds. Every batch starts from a reset.
WITH_WORKERS = ["collector.workers=2", "env.num_envs=2", "logger=none", "eval.every_n_iters=0"]


@pytest.fixture
def batches(monkeypatch) -> list[dict]:
    """What the training process holds at each collected batch, in order, over all runs."""
    seen: list[dict] = []
    collect = RolloutDataModule.next_batch

    def next_batch(self):
        batch = collect(self)
        module = self.trainer.lightning_module
        first = not any(entry["datamodule"] == id(self) for entry in seen)
        seen.append(
            {
                "datamodule": id(self),
                "frames": module.frames,
                "iterations": module.iterations,
                "weights": {k: v.clone() for k, v in module.state_dict().items()},
                # The policy weights the worker processes act with (asked once per run; not of multiasync
                # workers, which collect ahead and would drop their batch for the question).
                "workers": self.collector.state_dict() if first and self.collector_kind == "multisync" else None,
                "policy": {k: v.clone() for k, v in module.policy.state_dict().items()},
                "starts": batch["agents", "observation"][:, 0].clone(),  # [worlds, agents, obs]: reset states
            }
        )
        return batch

    monkeypatch.setattr(RolloutDataModule, "next_batch", next_batch)
    return seen


@pytest.mark.parametrize(
    "algo, collector, losses",
    [("mappo", "multisync", ("train/loss_objective", "train/loss_critic")), ("iql", "multiasync", ("train/loss",))],
)
def test_a_run_with_worker_processes_resumes_from_its_checkpoint(algo, collector, losses, batches, tmp_path, monkeypatch):
    # A collector that waits for a batch no worker will send fails after 60 s instead of hanging.
    monkeypatch.setattr(torchrl.collectors._multi_async, "_MAX_IDLE_COUNT", 60)
    run_dir = tmp_path / "run"
    args = ["--algo", algo, "--run-dir", str(run_dir), *tiny_args(algo), f"collector={collector}", *WITH_WORKERS]
    assert main([*args, "collector.total_frames=200"]) == 0
    saved = _ckpt(run_dir)
    assert (saved["ca12"]["frames"], saved["ca12"]["iterations"]) == (200, 2)
    assert main(["--resume", str(run_dir), "collector.total_frames=500"]) == 0
    done = _ckpt(run_dir)

    before, after = batches[:2], batches[2:]
    assert len(after) == 3 and after[0]["datamodule"] != before[-1]["datamodule"]
    # The first batch after the resume is collected with the saved counters and weights, by workers
    # that act with those weights.
    resumed = after[0]
    assert (resumed["frames"], resumed["iterations"]) == (200, 2)
    assert resumed["weights"].keys() == saved["state_dict"].keys()
    for key, value in saved["state_dict"].items():
        assert torch.equal(resumed["weights"][key], value), key
    for worker in ("worker0", "worker1") if collector == "multisync" else ():
        acting = resumed["workers"][worker]["policy_state_dict"]
        assert acting and acting.keys() <= resumed["policy"].keys()
        for key, value in acting.items():
            assert torch.equal(value, resumed["policy"][key]), (worker, key)
    # ... and on fresh episodes: no world starts where a world of the first run started (workers
    # rebuilt with the seeds the run began with would replay those episodes).
    first_run = torch.cat([entry["starts"] for entry in before])
    for entry in after:
        for start in entry["starts"]:
            assert not (first_run == start).flatten(1).all(1).any(), "the resumed run replays the first run's episodes"

    # Counters go on from the checkpoint: no iteration is done twice.
    assert (done["ca12"]["frames"], done["ca12"]["iterations"]) == (500, 5)
    assert _column(run_dir, "time/iteration") == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert _column(run_dir, "time/frames") == [100.0, 200.0, 300.0, 400.0, 500.0]
    (data,) = [k for k in done if k.endswith("DataModule")]
    if collector == "multisync":  # TorchRL's own counters too (multiasync checkpoints leave its workers alone)
        assert saved[data]["collector"]["frames"] == 200 and done[data]["collector"]["frames"] == 500

    if algo == "iql":  # the replay buffer holds the first run's 200 transitions, then 300 new ones
        buffer_saved, buffer_done = saved[data]["buffer"]["_storage"], done[data]["buffer"]["_storage"]
        assert buffer_saved["_len"] == 200 and buffer_done["_len"] == 500
        storage_saved, storage_done = _tensors(buffer_saved["_storage"]), _tensors(buffer_done["_storage"])
        assert storage_saved.keys() == storage_done.keys() and "next.agents.reward" in storage_saved
        for name, value in storage_saved.items():
            assert torch.equal(value[:200], storage_done[name][:200]), name

    for key in ("rollout/episode_reward_mean", *losses):
        values = _column(run_dir, key)
        assert len(values) == 5 and all(math.isfinite(v) for v in values), key
    assert all(torch.isfinite(v).all() for v in done["state_dict"].values() if v.is_floating_point())


def test_a_fresh_run_with_worker_processes_repeats_from_its_seed(tmp_path):
    """Worker processes seed their global generators (their policies sample from torch's) from
    the run's seed: two runs with the same seed collect the same episodes and learn the same."""
    args = ["--algo", "mappo", "--env", "generic/coop", *tiny_args("mappo"), "collector=multisync", *WITH_WORKERS, "eval.every_n_iters=0"]
    for name in ("a", "b"):
        assert main([*args, "--run-dir", str(tmp_path / name)]) == 0
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
