"""Population-based training: the paper's toy problem (PBT beats its ablations), exploit and
explore, resumed runs taking new hyperparameters, tiny real populations on both backends, an
interrupted population resumed exactly, and one-line errors before anything runs."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY

import ca12.multirun.pbt.local as local_backend
import ca12.multirun.pbt.members as runs
from ca12.errors import UsageError
from ca12.fit import main as fit_main
from ca12.multirun.pbt.core import Hyperparameter, SearchSpace, pbt_step, truncation_selection
from ca12.multirun.pbt.toy import run_toy
from ca12.pbt import main

# Two tiny members on generic/coop (4 envs x 25 steps: every batch holds whole episodes, so a
# resumed member is bit-identical), three rounds of two batches each, scored by the rollout return.
MEMBER_ARGS = [
    *TINY,
    "logger=csv",
    "eval.every_n_iters=0",
]
SEARCH = ["--search", "algo.lr=loguniform:1e-4:1e-2", "--search", "algo.entropy_coeff=uniform:0:0.02"]
POPULATION = ["--algo", "mappo", "--env", "generic/coop", "--population", "2", "--ready", "200", "--frames", "600", *SEARCH, *MEMBER_ARGS]


def _table(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the paper's toy problem ----------------------------------------------------------------------
def test_toy_problem_pbt_reaches_the_optimum_where_exploit_only_and_explore_only_do_not():
    seeds = range(10)
    final = {
        "pbt": [run_toy(seed=s).final_q for s in seeds],
        "exploit only": [run_toy(seed=s, explore=False).final_q for s in seeds],
        "explore only": [run_toy(seed=s, exploit=False).final_q for s in seeds],
    }
    median = {name: float(np.median(q)) for name, q in final.items()}
    shown = {name: [round(q, 3) for q in values] for name, values in final.items()}
    assert median["pbt"] >= 1.19, f"PBT's median final Q over seeds 0-9: {median}; all: {shown}"
    assert median["exploit only"] < 1.19 and median["explore only"] < 1.19, f"ablations' median final Q: {median}; all: {shown}"
    assert max(final["exploit only"]) < 1.19, f"exploit alone never changes h: {shown}"


def test_toy_exploit_copies_the_better_member():
    result = run_toy(steps=8, ready_every=4, explore=False)
    assert result.exploits == 2
    assert result.history[4][0] == result.history[4][1], "after the first ready step both members hold the same theta"


# --- exploit and explore --------------------------------------------------------------------------
def test_truncation_selection_copies_the_top_into_the_bottom_and_skips_nan():
    scores = [5.0, 1.0, 3.0, float("nan"), 4.0, 2.0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        pairs = truncation_selection(scores, 0.25, rng)
        assert sorted(m for m, _ in pairs) == [1, 5], pairs  # ceil(0.25 x 5 ranked) = 2 at the bottom
        assert all(donor in (0, 4) for _, donor in pairs), pairs
    assert truncation_selection([1.0, float("nan")], 0.25, rng) == []


def test_explore_perturbs_or_resamples_within_the_bounds():
    space = SearchSpace(
        tuple(
            Hyperparameter.parse(t)
            for t in (
                "algo.lr=loguniform:1e-4:1e-2",
                "algo.clip_epsilon=uniform:0.1:0.3",
                "algo.num_epochs=int:1:10",
                "model.activation=choice:relu,tanh,elu",
            )
        )
    )
    rng = np.random.default_rng(1)
    start = {"algo.lr": 1e-2, "algo.clip_epsilon": 0.1, "algo.num_epochs": 10, "model.activation": "tanh"}
    resampled = 0
    for _ in range(400):
        new, operations = space.explore(start, rng)
        assert all(p.contains(new[p.key]) for p in space.params), new
        assert isinstance(new["algo.num_epochs"], int)
        for p in space.params:
            op = operations[p.key]
            resampled += op == "resample"
            if op.startswith("* "):
                factor = float(op[2:])
                assert factor in (0.8, 1.2) and new[p.key] == p.clip(start[p.key] * factor), (p.key, op, new[p.key])
            elif op.startswith("shift"):
                assert new[p.key] == {"shift left": "relu", "shift right": "elu"}[op]
            else:
                assert op == "resample", op
    assert 0.2 < resampled / 1600 < 0.3, f"resample probability 0.25, observed {resampled / 1600:.3f}"
    assert space.explore(start, rng)[0]["algo.lr"] <= 1e-2, "1e-2 x 1.2 is clipped to the upper bound"


def test_pbt_step_ablations():
    space = SearchSpace((Hyperparameter.parse("algo.lr=uniform:0:1"),))
    hparams = [{"algo.lr": 0.1}, {"algo.lr": 0.9}]
    rng = np.random.default_rng(0)
    exploit_only = pbt_step([0.0, 1.0], hparams, rng, None, quantile=0.5)
    assert (exploit_only[0].donor, exploit_only[0].hparams, exploit_only[1].donor) == (1, {"algo.lr": 0.9}, None)
    explore_only = pbt_step([0.0, 1.0], hparams, rng, space.explore, exploit=False)
    assert all(d.donor is None and d.hparams != h for d, h in zip(explore_only, hparams))


@pytest.mark.parametrize(
    "text, message",
    [
        ("algo.lr", "expected KEY=uniform"),
        ("algo.lr=normal:0:1", "expected KEY=uniform"),
        ("algo.lr=uniform:1:0", "needs LOW < HIGH"),
        ("algo.lr=loguniform:0:1", "loguniform needs LOW > 0"),
        ("algo.num_epochs=int:1:2.5", "takes two integers"),
        ("model.activation=choice:relu", "at least two distinct values"),
    ],
)
def test_bad_search_specs_are_one_line_errors(text, message):
    with pytest.raises(UsageError, match=message):
        Hyperparameter.parse(text)


# --- a resumed run takes new hyperparameters ------------------------------------------------------
class OptimiserProbe(L.Callback):
    """Records, after the first batch a run trains, what its optimiser and loss used."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if os.path.exists(self.path):
            return
        group = trainer.optimizers[0].param_groups[0]
        state = trainer.optimizers[0].state[group["params"][0]]
        loss = pl_module.losses["agents"]
        Path(self.path).write_text(
            json.dumps(
                {
                    "lr": group["lr"],
                    "initial_lr": group.get("initial_lr"),
                    "adam_step": float(state["step"]) if state else 0.0,
                    "entropy_coeff": float(loss.entropy_coeff),
                    "gamma": float(loss.value_estimator.gamma),
                }
            )
        )


@pytest.mark.parametrize("anneal", [False, True])
def test_a_resumed_run_trains_with_its_new_hyperparameters_and_keeps_its_optimiser_state(tmp_path, monkeypatch, anneal):
    monkeypatch.chdir(tmp_path)
    run, probe = tmp_path / "run", tmp_path / "probe.json"
    args = [
        "--algo",
        "mappo",
        "--env",
        "generic/coop",
        "--run-dir",
        str(run),
        *MEMBER_ARGS,
        f"algo.anneal_lr={str(anneal).lower()}",
        "algo.lr=0.001",
        "algo.entropy_coeff=0.0",
        "algo.gamma=0.99",
        "collector.total_frames=200",
    ]
    assert fit_main(args) == 0
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]
    assert (
        fit_main(
            [
                "--resume",
                str(run),
                "algo.lr=0.005",
                "algo.entropy_coeff=0.01",
                "algo.gamma=0.9",
                "collector.total_frames=300",
                "+callbacks.probe._target_=test_pbt.OptimiserProbe",
                f"+callbacks.probe.path={probe}",
            ]
        )
        == 0
    )
    seen = json.loads(probe.read_text())
    # Lightning restored the checkpoint's param_groups (lr 0.001) and loss buffers; the new values won.
    expected_lr = 0.005 * (1 - 200 / 300) if anneal else 0.005
    assert seen["lr"] == pytest.approx(expected_lr), seen
    assert seen["initial_lr"] == (0.005 if anneal else None), seen
    assert seen["entropy_coeff"] == pytest.approx(0.01) and seen["gamma"] == pytest.approx(0.9), seen
    steps_before = float(next(iter(before["state"].values()))["step"])
    assert steps_before == 8.0 and seen["adam_step"] == 12.0, "Adam's state carried over: 8 steps before, 4 more in the iteration"
    after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["ca12"]["run_config"]["algo"]["lr"] == 0.005


def test_exploit_copies_weights_and_optimiser_state_but_keeps_the_members_wandb_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, lr in ((0, "0.001"), (1, "0.003")):
        assert (
            fit_main(
                [
                    "--algo",
                    "mappo",
                    "--env",
                    "generic/coop",
                    "--seed",
                    str(i),
                    "--run-dir",
                    str(tmp_path / f"m{i}"),
                    *MEMBER_ARGS,
                    f"algo.lr={lr}",
                    "collector.total_frames=200",
                ]
            )
            == 0
        )
    recipient = tmp_path / "m1" / "checkpoints" / "last.ckpt"
    marked = torch.load(recipient, weights_only=True)
    marked["ca12"]["wandb_id"] = "member-1-run"
    torch.save(marked, recipient)

    runs.install_checkpoint(tmp_path / "m0" / "checkpoints" / "last.ckpt", tmp_path / "m1")
    donor, copied = (torch.load(p, weights_only=True) for p in (tmp_path / "m0" / "checkpoints" / "last.ckpt", recipient))
    assert donor["state_dict"].keys() == copied["state_dict"].keys()
    assert all(torch.equal(donor["state_dict"][k], copied["state_dict"][k]) for k in donor["state_dict"])
    assert not all(torch.equal(donor["state_dict"][k], marked["state_dict"][k]) for k in donor["state_dict"]), "the members differed before"
    for sa, sb in zip(donor["optimizer_states"][0]["state"].values(), copied["optimizer_states"][0]["state"].values()):
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert copied["optimizer_states"][0]["param_groups"] == donor["optimizer_states"][0]["param_groups"]
    assert copied["RolloutDataModule"]["collector"]["frames"] == donor["RolloutDataModule"]["collector"]["frames"]
    assert copied["ca12"]["wandb_id"] == "member-1-run" and copied["ca12"]["frames"] == 200


# --- real populations -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A tiny real population (local backend), trained once for the tests that read it."""
    root = tmp_path_factory.mktemp("pbt")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main([*POPULATION, "--dir", str(root / "pop")]) == 0
    finally:
        os.chdir(cwd)
    return root / "pop"


def test_a_tiny_population_writes_member_runs_and_tables(population):
    rows, events = _table(population / "members.csv"), _table(population / "exploits.csv")
    assert [(int(r["round"]), int(r["member"])) for r in rows] == [(r, m) for r in (1, 2, 3) for m in (0, 1)]
    assert all(math.isfinite(float(r["score"])) for r in rows)
    assert len(events) == 2, "population 2: the worse member copies the better after rounds 1 and 2"
    for event in events:
        round_ = int(event["after_round"])
        scores = {int(r["member"]): float(r["score"]) for r in rows if int(r["round"]) == round_}
        assert float(event["member_score"]) < float(event["donor_score"]) and scores[int(event["donor"])] == max(scores.values())
        copied = next(r for r in rows if int(r["round"]) == round_ + 1 and r["member"] == event["member"])
        assert copied["started_from"] == event["donor"] and copied["algo.lr"] == event["algo.lr"]
        assert 1e-4 <= float(event["algo.lr"]) <= 1e-2 and 0 <= float(event["algo.entropy_coeff"]) <= 0.02
        assert event["algo.lr:op"] in ("* 0.8", "* 1.2", "resample")
    for member in (0, 1):
        run = population / f"member_{member}"
        last = next(r for r in rows if int(r["round"]) == 3 and int(r["member"]) == member)
        config = yaml.safe_load((run / "config.yaml").read_text())
        checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["ca12"]["frames"] == 600
        assert config["algo"]["lr"] == float(last["algo.lr"]) == checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]
        assert checkpoint["state_dict"]["losses.agents.entropy_coeff"].item() == pytest.approx(float(last["algo.entropy_coeff"]))


@pytest.mark.parametrize("where", ["training", "copying"])
def test_an_interrupted_population_resumes_without_redoing_rounds(population, tmp_path, monkeypatch, where):
    """Stopped in round 2 (after member 0 trained it) or half-way through the exploit after
    round 1: `--resume` trains only what is left and ends with the same tables."""
    import ca12.multirun.pbt.members

    monkeypatch.chdir(tmp_path)
    trained, install = [], local_backend.install_checkpoint
    fit_run = ca12.multirun.pbt.members.run  # a member's training run (ca12.run.train.run)

    def counted_run(args):
        trained.append(args)
        if where == "training" and len(trained) == 4:  # round 2, member 1
            raise KeyboardInterrupt
        return fit_run(args)

    def failing_install(*args):
        if where == "copying" and not getattr(failing_install, "failed", False):
            failing_install.failed = True
            raise KeyboardInterrupt
        return install(*args)

    monkeypatch.setattr(ca12.multirun.pbt.members, "run", counted_run)
    monkeypatch.setattr(local_backend, "install_checkpoint", failing_install)
    assert main([*POPULATION, "--dir", str(tmp_path / "pop")]) == 130
    state = json.loads((tmp_path / "pop" / "state.json").read_text())
    assert state["round"] == 1 and (state["pending"] != []) == (where == "copying")
    trained.clear()
    assert main(["--resume", str(tmp_path / "pop")]) == 0
    left = 3 if where == "training" else 4  # member 0 had trained round 2 before the interruption
    assert len(trained) == left, f"only what was left of rounds 2 and 3 is trained: {len(trained)} runs"
    assert _table(tmp_path / "pop" / "members.csv") == _table(population / "members.csv"), "the same population as without the interruption"
    assert _table(tmp_path / "pop" / "exploits.csv") == _table(population / "exploits.csv")


def test_a_finished_population_trains_longer_with_resume_frames(population, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*POPULATION, "--frames", "400", "--dir", str(tmp_path / "pop")]) == 0
    assert len(_table(tmp_path / "pop" / "exploits.csv")) == 1, "no exploit after the last round"
    assert main(["--resume", str(tmp_path / "pop"), "--frames", "600"]) == 0
    assert _table(tmp_path / "pop" / "members.csv") == _table(population / "members.csv"), "the same as a population of 600 frames"
    assert _table(tmp_path / "pop" / "exploits.csv") == _table(population / "exploits.csv")


# --- errors before anything runs ------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (["--search", "algo.nope=uniform:0:1"], "unknown key 'algo.nope'"),
        (["--search", "algo.clip_epsilon=uniform:-1:1"], "algo.clip_epsilon must be >= 0"),
        (["--search", "eval.episodes=uniform:1:4"], "is an integer: search it with int:LOW:HIGH"),
        (["--search", "env.n_agents=int:2:4"], "cannot change when a member resumes"),
        (["--search", "algo.normalize_advantage=uniform:0:1"], "search it with choice:A,B"),
        (["--search", "algo.critic_loss=choice:l2,huber"], "algo.critic_loss must be one of"),
        (["--search", "algo.gamma=uniform:1:0"], "needs LOW < HIGH"),
        (["--search", "algo.lr=uniform:0.1:1"], "names 'algo.lr' twice"),
        (["algo.lr=0.1"], "'algo.lr' is searched"),
        (["collector.total_frames=1000"], "set by PBT"),
        (["--ready", "150"], "multiple of collector.frames_per_batch"),
        (["--frames", "500"], "multiple of --ready"),
        (["--population", "1"], "at least 2"),
        (["--quantile", "0.7"], "--quantile must be in"),
    ],
)
def test_bad_populations_are_refused_in_one_line_before_anything_runs(tmp_path, capsys, change, message):
    assert main([*POPULATION, "--dir", str(tmp_path / "pop"), *change]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ca12.pbt: error:") and message in err and "\n" not in err, err
    assert not (tmp_path / "pop").exists()


def test_backend_ray_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main([*POPULATION, "--dir", str(tmp_path / "pop"), "--backend", "ray"]) == 2
    assert 'pip install -e ".[distributed]"' in capsys.readouterr().err
    assert not (tmp_path / "pop").exists()


def test_an_existing_population_is_not_overwritten(population, capsys):
    assert main([*POPULATION, "--dir", str(population)]) == 2
    assert f"--resume {population}" in capsys.readouterr().err
    assert main(["--resume", str(population), "--population", "3"]) == 2


# --- Ray Tune's PBT scheduler over the same member runs --------------------------------------------
@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_backend_trains_the_same_member_runs(population, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is part of the test extra")
    pytest.importorskip("ray.tune", reason="Ray Tune is part of the distributed extra")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert main([*POPULATION, "--frames", "400", "--dir", str(tmp_path / "pop"), "--backend", "ray"]) == 0
    finally:
        if started:
            ray.shutdown()
    rows, events = _table(tmp_path / "pop" / "members.csv"), _table(tmp_path / "pop" / "exploits.csv")
    assert [(int(r["round"]), int(r["member"])) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    local_first = [r for r in _table(population / "members.csv") if r["round"] == "1"]
    assert rows[:2] == local_first, "round 1: the same members, hyperparameters and scores as the local backend"
    assert len(events) == 1 and float(events[0]["member_score"]) < float(events[0]["donor_score"])
    member = int(events[0]["member"])
    checkpoint = torch.load(tmp_path / "pop" / f"member_{member}" / "checkpoints" / "last.ckpt", weights_only=True)
    explored = next(r for r in rows if r["round"] == "2" and int(r["member"]) == member)
    assert checkpoint["ca12"]["frames"] == 400
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == float(explored["algo.lr"])
