"""The Ray backend: Ray Tune's `PopulationBasedTraining` scheduler drives the same member runs.

A Tune trial is a member: its trainable (`member_trainable`) trains `<pbt_dir>/member_<i>` round
by round with `ca12.multirun.pbt.members.train_member` and reports the round's score with a Tune
checkpoint holding a copy of the run's `last.ckpt`. Tune's synchronous PBT (`synch=True`,
`perturbation_interval` one round) pauses every trial after each report; when it exploits, the
trial restarts from the donor's Tune checkpoint with explored hyperparameters, and the trainable
installs that checkpoint in its own run directory before resuming the run. Selection and
perturbation are Tune's (`quantile_fraction`, `perturbation_factors`, `resample_probability`
from the same spec), plus `ClipToSpace`, which keeps perturbed values within the searched
bounds as the local backend does. Tune numbers trials 0..n-1 in creation order (the suffix of
the trial id): that number is the member, because a trial's config is replaced by its donor's
on exploit and so cannot carry it.

Needs Ray Tune (`pip install -e ".[distributed]"`); Tune's own experiment state lives in
`<pbt_dir>/tune`, from which an interrupted population is restored (`Tuner.restore`).
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ca12.cli import quiet_libraries
from ca12.errors import UsageError
from ca12.multirun.pbt.core import Hyperparameter, SearchSpace
from ca12.multirun.pbt.members import (
    PopulationSpec,
    copy_checkpoint,
    install_checkpoint,
    member_dir,
    member_score,
    summary,
    train_member,
    write_tables,
)

EXPERIMENT = "tune"
SCORE = "score"
ROUNDS_FILE = "pbt_rounds.jsonl"  # in each member's run directory: a line per round it reported


def require_tune():
    """The `ray.tune` module, or a one-line `UsageError` saying how to install it."""
    try:
        from ray import tune
    except ImportError:
        raise UsageError('--backend ray needs Ray Tune, an extra: pip install -e ".[distributed]"') from None
    return tune


def tune_domain(p: Hyperparameter):
    """A searched key's prior as Tune's search space (a list: Tune's categorical perturbation,
    a neighbour in the list, as `Hyperparameter.perturb`)."""
    from ray import tune

    if p.prior == "choice":
        return list(p.choices)
    if p.prior == "int":
        return tune.randint(p.low, p.high + 1)  # upper bound exclusive
    return tune.loguniform(p.low, p.high) if p.prior == "loguniform" else tune.uniform(p.low, p.high)


class ClipToSpace:
    """Tune's `custom_explore_fn`: perturbed values back within the searched bounds."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, config: dict) -> dict:
        for p in self.space.params:
            config[p.key] = p.clip(config[p.key])
        return config


def member_index(trial_id: str) -> int:
    """Tune's trial ids are `<prefix>_<5-digit creation number>`."""
    return int(trial_id.rsplit("_", 1)[1])


def member_trainable(config: dict, spec: dict, pbt_dir: str) -> None:
    """One member as a Tune function trainable: rounds from the trial's checkpoint (its own or,
    after an exploit, its donor's) to the last, a `tune.report` with a checkpoint after each."""
    from ray import tune

    quiet_libraries()
    spec, pbt_dir = PopulationSpec(**spec), Path(pbt_dir)
    index = member_index(tune.get_context().get_trial_id())
    run_dir = member_dir(pbt_dir, index)
    start, started_from = 0, index
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            meta = json.loads((Path(folder) / "member.json").read_text())
            install_checkpoint(Path(folder) / "last.ckpt", run_dir)
        start, started_from = meta["round"], meta["member"]
    hparams = {key: config[key] for key in spec.space.keys}
    for round_ in range(start + 1, spec.rounds + 1):
        after, until = (round_ - 1) * spec.ready, round_ * spec.ready
        ok = train_member(spec, run_dir, spec.seed + index, hparams, until)
        score = member_score(run_dir, after, until, spec.score) if ok else float("-inf")
        row = {"round": round_, "member": index, "frames": until, "score": score, "started_from": started_from, **hparams}
        with open(run_dir / ROUNDS_FILE, "a") as f:  # Tune's own result files lose rows across pauses
            f.write(json.dumps(row) + "\n")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():  # a first round stopped by a non-finite loss: nothing to copy yet
            tune.report(row)
            continue
        with tempfile.TemporaryDirectory() as folder:
            copy_checkpoint(last, Path(folder) / "last.ckpt")  # with the buffer segments it refers to
            (Path(folder) / "member.json").write_text(json.dumps({"member": index, "round": round_}))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))
        started_from = index


def run_ray(spec: PopulationSpec, pbt_dir: Path) -> list[dict]:
    """Train the population with Tune's PBT scheduler (restoring Tune's experiment in `pbt_dir`
    when there is one); returns the members table's rows."""
    tune = require_tune()
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ca12.distributed.pool import init_ray

    init_ray()
    space = spec.space
    # Tune's PBT draws donors and perturbations from Python's and NumPy's global generators.
    random.seed(spec.seed)
    np.random.seed(spec.seed)
    trainable = tune.with_resources(tune.with_parameters(member_trainable, spec=asdict(spec), pbt_dir=str(pbt_dir.resolve())), {"cpu": 1})
    experiment = pbt_dir.resolve() / EXPERIMENT
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=1,
            hyperparam_mutations={p.key: tune_domain(p) for p in space.params},
            quantile_fraction=spec.quantile,
            resample_probability=spec.resample_probability,
            perturbation_factors=tuple(spec.perturbation_factors),
            custom_explore_fn=ClipToSpace(space),
            synch=True,
        )
        tuner = tune.Tuner(
            trainable,
            param_space={p.key: tune_domain(p) for p in space.params},
            tune_config=tune.TuneConfig(
                metric=SCORE,
                mode="max",
                scheduler=scheduler,
                num_samples=spec.population,
                reuse_actors=True,
                search_alg=BasicVariantGenerator(points_to_evaluate=spec.initial_hparams()),
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(pbt_dir.resolve()),
                stop={"training_iteration": spec.rounds},
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            ),
        )
    results = tuner.fit()
    if results.errors:
        first = str(results.errors[0]).strip().splitlines()
        raise RuntimeError(f"a member's Tune trial failed: {first[-1] if first else results.errors[0]!r}")
    rows = {}
    for index in range(spec.population):
        path = member_dir(pbt_dir, index) / ROUNDS_FILE
        for line in path.read_text().splitlines() if path.is_file() else []:
            row = json.loads(line)
            rows[row["round"], row["member"]] = row  # a round redone after a restore: its last report
    rows = [rows[k] for k in sorted(rows)]
    write_tables(pbt_dir, space.keys, rows)
    print(summary(rows, space.keys))
    return rows
