"""`python -m ca12.fit -m`: a sweep, one ordinary ca12 run for every combination of comma lists.

    python -m ca12.fit -m --algo mappo,ippo --env vmas/navigation,vmas/balance --seed 0,1,2
                       [--run-dir SWEEP_DIR] [--launcher local|ray|slurm] [--cpus-per-task N]
                       [--slurm KEY=VALUE ...] [KEY=VALUE ...] [KEY=a,b ...]

Lists are Hydra's sweep syntax, read by Hydra's own override parser: `a,b`, `range(3)`; a comma
inside brackets, braces or quotes belongs to one value, so `model.hidden_sizes=[32,32]` is one
value and `model.hidden_sizes=[32,32],[64,64]` two. `seed=0,1` is `--seed 0,1`.

Layout: `SWEEP_DIR` (default `runs/sweeps/<timestamp>`) holds `sweep.json` and a run directory per
combination, `<algo>/<family>-<task>/seed<N>`, with `<key>=<value>,...` of the swept overrides
(the keys given more than one value) before `seed<N>`, e.g.
`mappo/vmas-navigation/algo.lr=0.001/seed0`. Each is an ordinary run (config.yaml, metrics.csv,
checkpoints/) trained by `ca12.run.train.run` exactly as the single command would train it.

`sweep.json` (written atomically after every change):
`{"format": 1, "command": [...], "launcher": ..., "axes": {"algo": [...], "env": [...],
"seed": [...], KEY: [...]}, "overrides": [the fixed ones], "updated": ISO time, "runs": [RUN...]}`,
a RUN being `{"name", "dir" (relative to SWEEP_DIR), "algo", "env", "seed", "swept": {KEY: VALUE},
"overrides": [every override of the run], "status": "pending"|"running"|"done"|"failed"|
"interrupted", "action": "trained"|"resumed"|"skipped"|null (what the last invocation did),
"frames", "total_frames", "error"}`. Runs of an earlier invocation into the same directory that
this one does not list are kept.

Resuming: run the same command with `--run-dir SWEEP_DIR`. A run whose checkpoint holds its
`collector.total_frames` is skipped (`ca12.run.rundir.run_is_complete`), an unfinished one continues
from its `last.ckpt` (`--resume`), one that never wrote a checkpoint starts again.

Launchers: `local` (default) trains the runs one after another in this process; `ray` runs each
as a Ray task (`--cpus-per-task`, default 1) on the cluster of `RAY_ADDRESS` or a Ray started by
the caller, else a local one; `slurm` submits each as a Slurm job through submitit
(`pip install submitit`; `--slurm slurm_partition=gpu --slurm timeout_min=120` are
`AutoExecutor.update_parameters` arguments: give `timeout_min`, submitit's default is minutes;
a job cut by its time limit resumes from its checkpoint when the sweep is run again; without
Slurm, submitit runs the jobs as local processes). With `ray` and `slurm` the sweep directory
must be on a filesystem every node sees.
All call `run_one`. Every combination is composed and checked, and its algorithm built on a
one-world env, before anything runs or is written.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ca12.algos import algo_class, default_env
from ca12.cli import Interrupted, OneLineParser, check_writable, quiet_libraries
from ca12.envs import make_spec_env
from ca12.errors import NonFiniteError, UsageError
from ca12.multirun.pbt.members import trained_frames, write_atomic
from ca12.run.config import check_seed, load_config
from ca12.run.rundir import SWEEP_MANIFEST, holds_run, run_is_complete
from ca12.run.train import fit_args, resolve_run, run
from ca12.run.trainer import check_devices

MANIFEST = SWEEP_MANIFEST
LAUNCHERS = ("local", "ray", "slurm")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m ca12.fit -m", description="Train every combination of comma lists, one ca12 run each.")
    parser.add_argument("-m", "--multirun", action="store_true", help="a sweep (this command)")
    parser.add_argument("--algo", help="algorithms, comma separated")
    parser.add_argument("--env", default=None, help="FAMILY/TASK envs, comma separated (default: each algorithm's default env)")
    parser.add_argument("--seed", default=None, help="seeds, comma separated or range(N) (default 0)")
    parser.add_argument("--run-dir", type=Path, default=None, help="the sweep directory (default runs/sweeps/<timestamp>); pass it again to resume")
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, default="local", help="local: one run after another here; ray: Ray tasks; slurm: submitit jobs"
    )
    parser.add_argument("--cpus-per-task", type=int, default=1, help="CPUs each run gets from Ray or Slurm (default 1)")
    parser.add_argument(
        "--slurm", action="append", default=[], metavar="KEY=VALUE", help="a submitit AutoExecutor parameter, e.g. slurm_partition=gpu"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides; KEY=a,b sweeps over a and b")
    return parser


def sweep_values(name: str, text: str) -> list[str]:
    """The values of one command-line entry: Hydra's sweep grammar (`a,b`, `range(3)`, brackets
    and quotes kept whole), or the one value of a plain entry, as text."""
    if not text.strip():
        raise UsageError(f"{name}: empty list")
    try:
        override = OverridesParser.create().parse_override(f"key={text}")
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [text]
    except Exception as exc:  # Hydra's parse errors are multi-line
        raise UsageError(f"{name}: cannot read '{text}' as a value or comma list ({str(exc).strip().splitlines()[0]})") from None
    if not values:
        raise UsageError(f"{name}: empty list")
    return values


@dataclass(frozen=True)
class Combination:
    """One run of a sweep: its algorithm, env, seed and the swept overrides' values."""

    algo: str
    env: str
    seed: int
    swept: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The run's directory under the sweep's, e.g. `mappo/vmas-navigation/algo.lr=0.001/seed0`."""
        family, _, task = self.env.partition("/")
        parts = [self.algo, f"{family}-{task}"]
        if self.swept:
            parts.append(",".join(f"{key}={value}" for key, value in self.swept).replace("/", "-"))
        return "/".join([*parts, f"seed{self.seed}"])


@dataclass
class Sweep:
    """A parsed sweep command: its axes, the overrides every run gets, and where it goes."""

    algos: list[str]
    envs: list[str | None]  # None: each algorithm's default env
    seeds: list[int]
    swept: dict[str, list[str]]  # KEY -> values, for keys given two or more
    fixed: list[str]  # overrides every run gets
    sweep_dir: Path
    launcher: str = "local"
    cpus_per_task: int = 1
    slurm: dict = field(default_factory=dict)

    def combinations(self) -> list[Combination]:

        keys = list(self.swept)
        found = []
        for algo, env, seed, values in itertools.product(self.algos, self.envs, self.seeds, itertools.product(*self.swept.values())):
            found.append(Combination(algo, env or default_env(algo), seed, tuple(zip(keys, values))))
        return list(dict.fromkeys(found))  # `--env` left out twice over algorithms sharing a default: once each

    def overrides(self, combination: Combination) -> list[str]:
        return [*self.fixed, *(f"{key}={value}" for key, value in combination.swept)]


def parse_sweep(argv: list[str]) -> Sweep:
    """The sweep a command line describes, not yet checked against the configs."""
    args = build_parser().parse_intermixed_args(argv)
    if not args.algo:
        raise UsageError("--algo is required (see --list)")
    if args.cpus_per_task < 1:
        raise UsageError(f"--cpus-per-task must be at least 1, got {args.cpus_per_task}")
    seeds_text = args.seed
    swept, fixed = {}, []
    for text in args.overrides:
        key, sep, value = text.partition("=")
        if key == "seed" and sep:  # the seed axis, spelt as an override
            if seeds_text is not None:
                raise UsageError("give the seeds once: --seed or seed=, not both")
            seeds_text = value
            continue
        values = sweep_values(key, value) if sep and not key.startswith("~") else [text]
        if len(values) > 1:
            if key in swept:
                raise UsageError(f"'{key}' is swept twice; give its values in one list")
            swept[key] = values
        else:
            fixed.append(text)
    try:
        seeds = [int(s) for s in sweep_values("--seed", seeds_text)] if seeds_text is not None else [0]
    except ValueError:
        raise UsageError(f"--seed takes integers, e.g. 0,1,2 or range(3); got '{seeds_text}'") from None
    for seed in seeds:  # here, not in `plan`: it composes a config once for all seeds
        check_seed(seed, "--seed")
    return Sweep(
        algos=sweep_values("--algo", args.algo),
        envs=sweep_values("--env", args.env) if args.env is not None else [None],
        seeds=seeds,
        swept=swept,
        fixed=fixed,
        sweep_dir=args.run_dir or Path("runs") / "sweeps" / time.strftime("%Y%m%d-%H%M%S"),
        launcher=args.launcher,
        cpus_per_task=args.cpus_per_task,
        slurm=dict(_slurm_parameter(text) for text in args.slurm),
    )


def _slurm_parameter(text: str) -> tuple[str, int | str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--slurm '{text}': expected KEY=VALUE, e.g. slurm_partition=gpu")
    return key, int(value) if value.isdigit() else value


def plan(sweep: Sweep) -> list[dict]:
    """Every combination composed and checked as its run will be (fresh, or resumed with these
    overrides), before anything runs: one manifest entry each, finished ones already `done`.
    Raises the first combination's `UsageError`, prefixed with its name."""
    runs, composed = [], {}
    for combination in sweep.combinations():
        overrides = sweep.overrides(combination)
        run_dir = sweep.sweep_dir / combination.name
        try:
            if holds_run(run_dir):  # resumed (or skipped): the overrides must suit its checkpoint, as for --resume
                cfg, _, _, saved = resolve_run(fit_args(algo=combination.algo, seed=combination.seed, resume=run_dir, overrides=overrides))
            else:  # composed and built once for all seeds: the seed changes nothing else
                key = (combination.algo, combination.env, tuple(overrides))
                if key not in composed:
                    composed[key] = load_config(combination.algo, combination.env, overrides, seed=combination.seed)
                    _check_builds(composed[key])
                cfg, saved = composed[key], {}
            _check_one_process(cfg)
        except UsageError as exc:
            raise UsageError(f"{combination.name}: {exc}") from None
        done = run_is_complete(cfg, saved)
        runs.append(
            {
                "name": combination.name,
                "dir": combination.name,
                "algo": combination.algo,
                "env": combination.env,
                "seed": combination.seed,
                "swept": dict(combination.swept),
                "overrides": overrides,
                "status": "done" if done else "pending",
                "action": "skipped" if done else None,
                "frames": saved.get("frames", 0),
                "total_frames": int(cfg.collector.total_frames),
                "error": None,
            }
        )
    return runs


def _check_builds(cfg) -> None:
    """The run's devices checked and its algorithm built on a one-world env, as `ca12.run.train.run`
    does first: what only the env's specs can refuse (an algorithm that cannot act in the env's
    action space, a group the env lacks, a recurrent network the algorithm cannot replay) is
    refused before any run of the sweep trains. Nothing built is kept."""
    from ca12.seeding import isolated_rng

    check_devices(cfg)
    with isolated_rng():
        algo_class(cfg.algo.name)(cfg, make_spec_env(cfg.env, cfg.seed))


def _check_one_process(cfg) -> None:
    """A sweep's runs are one process each: Lightning's DDP launcher would re-run the whole sweep
    command for every extra rank."""
    trainer = cfg.trainer
    devices, accelerator = trainer.get("devices", 1), str(trainer.get("accelerator", "auto"))
    one = devices in (1, "1") or (OmegaConf.is_list(devices) and len(devices) == 1) or (devices == "auto" and accelerator == "cpu")
    if not one or "ddp" in str(trainer.get("strategy", "")) or trainer.get("num_nodes", 1) != 1:
        raise UsageError("a sweep trains each run in one process (trainer.devices=1, no DDP); train a DDP run with python -m ca12.fit")


def run_one(job: dict, cwd: str | None = None) -> dict:
    """Train one combination through `ca12.run.train.run`, the path of a single fit: fresh, or resumed
    from its last checkpoint when its directory holds an unfinished run; a finished one is
    skipped. `job` holds `run_dir` (absolute), `algo`, `env`, `seed`, `overrides`; `cwd` is the
    sweep command's directory (a Ray or Slurm worker starts elsewhere; the run index
    runs/index.txt is kept there). Returns the manifest fields `status`, `action`, `frames`,
    `total_frames`, `error`. A run stopped by a signal raises `ca12.cli.Interrupted`."""
    if cwd is not None:
        os.chdir(cwd)
    quiet_libraries()
    run_dir = Path(job["run_dir"])
    resumed = holds_run(run_dir)
    where = {"resume": run_dir} if resumed else {"env": job["env"], "run_dir": run_dir}
    args = fit_args(algo=job["algo"], seed=job["seed"], overrides=job["overrides"], **where)
    action = "resumed" if resumed else "trained"
    try:
        cfg, _, _, saved = resolve_run(args)
        if run_is_complete(cfg, saved):
            return {"status": "done", "action": "skipped", "frames": saved["frames"], "total_frames": int(cfg.collector.total_frames), "error": None}
        run(args)
    except (UsageError, NonFiniteError) as exc:
        return {"status": "failed", "action": action, "frames": trained_frames(run_dir), "error": str(exc)}
    frames, total = trained_frames(run_dir), int(cfg.collector.total_frames)
    return {
        "status": "done" if frames >= total else "failed",
        "action": action,
        "frames": frames,
        "total_frames": total,
        "error": None if frames >= total else f"stopped at {frames} of {total} frames",
    }


class Manifest:
    """`sweep.json`: the sweep's command, axes and runs, rewritten atomically on every change."""

    def __init__(self, sweep: Sweep, argv: list[str], runs: list[dict]):
        self.path = sweep.sweep_dir / MANIFEST
        earlier = json.loads(self.path.read_text()).get("runs", []) if self.path.is_file() else []
        names = {run["name"] for run in runs}
        self.runs = runs + [run for run in earlier if run["name"] not in names]
        self.head = {
            "format": 1,
            "command": ["python", "-m", "ca12.fit", *argv],
            "launcher": sweep.launcher,
            "axes": {"algo": sweep.algos, "env": list(dict.fromkeys(run["env"] for run in runs)), "seed": sweep.seeds, **sweep.swept},
            "overrides": sweep.fixed,
        }

    def update(self, run: dict, **fields) -> None:
        run.update(fields)
        self.save()

    def save(self) -> None:

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({**self.head, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": self.runs}, indent=1))


def run_sweep(sweep: Sweep, argv: list[str]) -> dict[str, int]:
    """Check every combination, then train those not finished with the sweep's launcher; returns
    how many runs were trained, resumed, skipped and failed."""
    if sweep.launcher == "ray":
        from ca12.distributed.pool import require_ray

        require_ray()
    elif sweep.launcher == "slurm":
        _require_submitit()
    check_writable(sweep.sweep_dir, "--run-dir")
    runs = plan(sweep)
    manifest = Manifest(sweep, argv, runs)
    manifest.save()
    todo = [run for run in runs if run["status"] != "done"]
    print(f"ca12.fit: sweep of {len(runs)} runs in {sweep.sweep_dir} ({len(runs) - len(todo)} already complete), launcher {sweep.launcher}")
    root = sweep.sweep_dir.resolve()
    jobs = [{**{k: run[k] for k in ("name", "algo", "env", "seed", "overrides")}, "run_dir": str(root / run["dir"])} for run in todo]
    by_name = {run["name"]: run for run in todo}
    finished = 0

    def record(job: dict, result: dict) -> None:
        nonlocal finished
        finished += 1
        manifest.update(by_name[job["name"]], **result)
        note = f": {result['error']}" if result.get("error") else ""
        print(
            f"ca12.fit: sweep [{finished}/{len(todo)}] {job['name']}: {result['action'] or 'not run'}, "
            f"{result['status']} ({result.get('frames', 0)} frames){note}"
        )

    launch = {"local": _launch_local, "ray": _launch_ray, "slurm": _launch_slurm}[sweep.launcher]
    launch(jobs, sweep, manifest, by_name, record)
    counts = {action: sum(run["action"] == action and run["status"] == "done" for run in runs) for action in ("trained", "resumed", "skipped")}
    counts["failed"] = sum(run["status"] == "failed" for run in runs)
    print(
        f"ca12.fit: sweep done: {counts['trained']} trained, {counts['resumed']} resumed, {counts['skipped']} skipped (complete), "
        f"{counts['failed']} failed | manifest: {manifest.path}"
    )
    return counts


def _launch_local(jobs: list[dict], sweep: Sweep, manifest: Manifest, by_name: dict, record) -> None:

    for job in jobs:
        run = by_name[job["name"]]
        manifest.update(run, status="running")
        try:
            result = run_one(job)
        except (Interrupted, KeyboardInterrupt):  # a signal or Ctrl-C: the run saved its last iteration; stop
            manifest.update(run, status="interrupted", action=None)
            raise
        except Exception as exc:  # a crash of this run (bad input was refused before anything ran): record it, go on
            traceback.print_exc()
            result = {"status": "failed", "action": None, "error": _first_line(exc)}
        record(job, result)


def _launch_ray(jobs: list[dict], sweep: Sweep, manifest: Manifest, by_name: dict, record) -> None:
    """Each run a Ray task of `--cpus-per-task` CPUs; Ray retries a task whose worker died, and
    the retry resumes the run from its last checkpoint."""
    from ca12.distributed.pool import init_ray, require_ray

    ray = require_ray()
    started = not ray.is_initialized()
    init_ray()
    try:
        task = ray.remote(num_cpus=sweep.cpus_per_task)(run_one)
        pending = {task.remote(job, os.getcwd()): job for job in jobs}
        for job in jobs:
            by_name[job["name"]]["status"] = "running"
        manifest.save()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                result = {"status": "failed", "action": None, "error": _first_line(exc)}
            record(job, result)
    finally:
        if started:
            ray.shutdown()


def _require_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher slurm needs submitit: pip install submitit") from None
    return submitit


def _launch_slurm(jobs: list[dict], sweep: Sweep, manifest: Manifest, by_name: dict, record) -> None:
    """Each run a Slurm job (submitit's AutoExecutor; its pickles and logs in
    SWEEP_DIR/.submitit/<job id>); the command waits for them and records each as it ends."""
    submitit = _require_submitit()
    executor = submitit.AutoExecutor(folder=str(sweep.sweep_dir.resolve() / ".submitit" / "%j"))
    executor.update_parameters(**{"name": "ca12-sweep", "cpus_per_task": sweep.cpus_per_task, **sweep.slurm})
    handles, job_of = [], {}
    for job in jobs:
        handle = executor.submit(run_one, job, os.getcwd())
        handles.append(handle)
        job_of[handle.job_id] = job
        manifest.update(by_name[job["name"]], status="running", slurm_job=handle.job_id)
    for handle in submitit.helpers.as_completed(handles):
        try:
            result = handle.result()
        except Exception as exc:  # submitit's FailedJobError / UncompletedJobError: the job's traceback or log
            result = {"status": "failed", "action": None, "error": _first_line(exc)}
        record(job_of[handle.job_id], result)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def sweep_main(argv: list[str]) -> int:
    """`python -m ca12.fit -m ...` (called by `ca12.fit.main`, which prints a `UsageError` in one
    line): 0 when every run is complete, 1 when one failed."""
    sweep = parse_sweep(argv)
    quiet_libraries()
    counts = run_sweep(sweep, argv)
    if counts["failed"]:
        print(f"ca12.fit: {counts['failed']} run(s) of the sweep failed; see {sweep.sweep_dir / MANIFEST}", file=sys.stderr)
        return 1
    return 0
