"""Applications with measured gains: each family's classical baseline against independent and
coordinated learners, over seeds, with 95 % intervals and the gain against the baseline.

    python benchmarks/applications.py                          # every application, seeds 0 1 2, 2 jobs at a time
    python benchmarks/applications.py --only traffic --seeds 0 1 2 3 --jobs 2
    python benchmarks/applications.py --report                 # tables and plots from the saved results only
    python benchmarks/applications.py --list                   # what each application runs

An application is an env (one task of a family, with its settings), the baseline practitioners
compare against (its family's `BASELINES`, run through `python -m ca12.evaluate --baseline`'s
`evaluate_baseline`), reference policies shown beside it (e.g. the optimal assignment, a
stronger controller), and two learners trained with `python -m ca12.fit` (`learning.Row`):
independent learners (IPPO, each agent on its own observation) and learners with coordination
(MAPPO with a communication module, or with the market's quotes). One job is one application
and one seed: it trains both learners, evaluates every policy on the same `--episodes`
evaluation episodes (`ca12.evaluate`: the run's seed + 1 000 003, deterministic actions, the
env's episode statistics), records world 0's first evaluation episode step by step, and writes
`<out>/<application>/seed<S>.json`. Jobs run as separate processes (`--jobs`, one thread each).

The report reads every saved seed: per application a table of each metric's mean over seeds with
its 95 % Student-t interval (mean +- t(0.975, n - 1) s / sqrt(n); with 3 to 5 seeds a bootstrap
has too few samples to resample), the change against the baseline in % (signed; the metric's
better direction is marked), and the range the course claims for the headline metric next to the
measured one, whatever it turns out to be. Plots, written to `--plots` (docs/applications by
default): `<application>_curves.png`, each learner's training return over frames (mean over
seeds, the band their range) with the baseline's evaluation return as a line, and
`<application>_episode.png`, world 0's evaluation episode for every policy, step by step (seed
0; the per-step reward and the headline statistic; a bar chart for one-step tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from learning import Row, fit_returns, interval

from ca12.run.score import evaluate, evaluate_baseline

HERE = Path(__file__).resolve().parent


@dataclass
class Metric:
    name: str  # "return" (the team's episode return) or one of the env's episode statistics
    higher_is_better: bool
    label: str


@dataclass
class Application:
    env: str
    env_overrides: list[str]
    baseline: str  # the practitioners' baseline: every gain is against it
    references: list[str]  # other baselines shown beside it
    learners: dict[str, Row]  # label -> learner; the first is the independent one
    metrics: list[Metric]  # the first is the headline metric
    claim: str  # what the course claims for the headline metric
    episodes: int = 64
    notes: list[str] = field(default_factory=list)


RETURN = Metric("return", True, "return")

# Market: 1000 one-round markets per batch, 4 epochs of 500, lr 3e-3 (benchmarks/market.py's settings).
MARKET_FAST = ["env.num_envs=1000", "collector.frames_per_batch=1000", "algo.minibatch_size=500", "algo.num_epochs=4", "algo.lr=3e-3"]
# Traffic at 0.8 vehicles per step and entry (the default 0.5 leaves little to control): 30 worlds x one 200-step episode per batch.
TRAFFIC_ENV = ["env.arrival_rate=0.8"]
# Swarm (dispersion, 8 agents): per-agent networks (they start stacked at the origin with the same observation, so a shared
# policy moves them as one), small networks, 4 epochs.
SWARM_FAST = ["model.share_params=false", "model.hidden_sizes=[64,64]", "critic_model.hidden_sizes=[64,64]", "algo.num_epochs=4"]
# Grid: small actors, 4 epochs of 2000, lr 1e-3, rewards (EUR) scaled by 0.1 for the critic (MAPPO about 3 100 frames/s
# alone on a core, IPPO, whose critics run per agent, about 1 250).
GRID_FAST = [
    "model.hidden_sizes=[64,64]",
    "critic_model.hidden_sizes=[128,128]",
    "algo.num_epochs=4",
    "algo.minibatch_size=2000",
    "algo.lr=1e-3",
    "env.reward_scale=0.1",
]


def independent_and_talking(env: str, frames: int, overrides: list[str]) -> dict[str, Row]:
    """The usual pair of learners: IPPO, and MAPPO whose actors talk through TarMAC."""
    return {
        "independent (IPPO)": Row("ippo", env, frames, 0.0, overrides),
        "coordinated (MAPPO, TarMAC)": Row("mappo", env, frames, 0.0, overrides + ["model=tarmac"]),
    }


APPLICATIONS: dict[str, Application] = {
    "market": Application(
        env="market/allocation",
        env_overrides=[],
        baseline="greedy",
        references=["quote_rule", "optimal"],
        learners={
            "independent (IPPO, no quotes)": Row("ippo", "market/allocation", 100_000, 0.0, MARKET_FAST + ["env.observe_quotes=false"]),
            "coordinated (MAPPO, market quotes)": Row("mappo", "market/allocation", 100_000, 0.0, MARKET_FAST),
        },
        metrics=[Metric("return", True, "efficiency (welfare / optimum)")],
        claim="+20 to +40 % efficiency",
        episodes=1000,
    ),
    "traffic": Application(
        env="traffic/grid2x2",
        env_overrides=TRAFFIC_ENV,
        baseline="fixed_time",
        references=["max_pressure"],
        learners=independent_and_talking("traffic/grid2x2", 240_000, TRAFFIC_ENV),
        metrics=[
            Metric("waiting_time", False, "waiting time (s per vehicle)"),
            Metric("queue", False, "queue (vehicles)"),
            Metric("throughput", True, "throughput (vehicles per step)"),
            RETURN,
        ],
        claim="-30 to -50 % congestion",
    ),
    "grid": Application(
        env="grid/cigre_lv",
        env_overrides=[],
        baseline="rule_based",
        references=["no_battery"],
        learners=independent_and_talking("grid/cigre_lv", 300_000, GRID_FAST),
        # The headline is the env's objective: the bill and the shared penalty for voltage and line violations.
        metrics=[
            Metric("return", True, "objective: minus (electricity cost + violation penalty), EUR a day per building"),
            Metric("cost", False, "electricity cost (EUR a day, 15 buildings)"),
            Metric("peak_load", False, "peak import (kW)"),
            Metric("ramping", False, "ramping (kW)"),
            Metric("violations", False, "steps with a voltage or line violation"),
        ],
        claim="+15 to +25 % energy efficiency",
    ),
    "swarm": Application(
        env="vmas/dispersion",
        env_overrides=[],
        baseline="nearest",
        references=["assignment"],
        learners=independent_and_talking("vmas/dispersion", 600_000, SWARM_FAST),
        metrics=[
            Metric("coverage", True, "coverage (fraction of the food eaten)"),
            Metric("collisions", False, "crowding (agents overlapped, per agent)"),
            RETURN,
        ],
        claim="emergent coordination (no figure)",
    ),
}


def _policy_result(result) -> dict:
    values = {"return": result.episode_reward_mean, **{name: mean for name, (mean, _) in result.stats.items()}}
    return {"metrics": values, "trace": result.trace}


def run_job(name: str, seed: int, out: Path, frames: int | None = None) -> Path:
    """Trains `name`'s learners with `seed` (for `frames` each if given), evaluates every policy,
    writes `out/name/seed<seed>.json`."""
    app = APPLICATIONS[name]
    results: dict[str, dict] = {}
    for baseline in [app.baseline, *app.references]:
        results[baseline] = {
            "kind": "baseline",
            **_policy_result(evaluate_baseline(baseline, app.env, app.env_overrides, seed, app.episodes, trace=True)),
        }
    for label, row in app.learners.items():
        row = Row(row.algo, row.env, frames or row.frames, row.threshold, row.overrides)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            returns, seconds = fit_returns(row, seed, run_dir)
            result, _ = evaluate(run_dir, app.episodes, trace=True)
        steps = [row.frames * (i + 1) / len(returns) for i in range(len(returns))]
        scale = float(next((o.split("=", 1)[1] for o in row.overrides if o.startswith("env.reward_scale=")), 1.0))
        returns = [r / scale for r in returns]  # training returns of scaled rewards, back in the env's units
        results[label] = {
            "kind": "learner",
            "algo": row.algo,
            "frames": row.frames,
            "seconds": seconds,
            "curve": {"frames": steps, "return": returns},
            **_policy_result(result),
        }
    path = out / name / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"application": name, "seed": seed, "env": app.env, "env_overrides": app.env_overrides, "episodes": app.episodes, "policies": results},
            indent=1,
        )
    )
    return path


def load(out: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / name).glob("seed*.json"))]


def report(name: str, runs: list[dict]) -> str:
    """The application's table: every policy's metrics over seeds, and the change against the baseline."""
    app = APPLICATIONS[name]
    policies = list(runs[0]["policies"])
    seeds = [run["seed"] for run in runs]
    lines = [
        f"\n## {name}: {app.env} {' '.join(app.env_overrides)}".rstrip(),
        f"seeds {seeds}, {app.episodes} evaluation episodes each; baseline {app.baseline}; the course claims {app.claim}",
    ]
    for metric in app.metrics:
        base = interval([run["policies"][app.baseline]["metrics"][metric.name] for run in runs])[0]
        lines.append(f"\n{metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better)")
        header = f"{'policy':<38}{'mean':>10}{'95 % interval':>22}{'vs baseline':>13}{'':<7}{'frames':>9}{'seconds':>9}  per seed"
        lines += [header, "-" * len(header)]
        for policy in policies:
            entries = [run["policies"][policy] for run in runs]
            mean, half = interval([e["metrics"][metric.name] for e in entries])
            change = 100 * (mean - base) / abs(base) if base else float("nan")
            better = change > 0 if metric.higher_is_better else change < 0
            mark = "" if policy == app.baseline else (" better" if better else " worse")
            budget = (
                f"{entries[0]['frames']:>9}{sum(e['seconds'] for e in entries) / len(entries):>9.0f}"
                if entries[0]["kind"] == "learner"
                else f"{'':>18}"
            )
            each = " ".join(f"{e['metrics'][metric.name]:.4g}" for e in entries)
            lines.append(f"{policy:<38}{mean:>10.4f}   [{mean - half:>8.4f}, {mean + half:>8.4f}]{change:>+12.1f}%{mark:<7}{budget}  {each}")
    return "\n".join(lines)


def plot(name: str, runs: list[dict], directory: Path) -> list[Path]:
    """`<name>_curves.png` (training returns over frames) and `<name>_episode.png` (seed 0's
    first evaluation episode, every policy); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    app = APPLICATIONS[name]
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label in app.learners:
        curves = [run["policies"][label]["curve"] for run in runs]
        steps = min(len(c["return"]) for c in curves)
        frames = np.asarray(curves[0]["frames"][:steps])
        returns = np.asarray([c["return"][:steps] for c in curves])
        ax.plot(frames, returns.mean(0), label=label)
        ax.fill_between(frames, returns.min(0), returns.max(0), alpha=0.2)
    for baseline in [app.baseline, *app.references]:
        value = np.mean([run["policies"][baseline]["metrics"]["return"] for run in runs])
        ax.axhline(value, linestyle="--", color="grey" if baseline != app.baseline else "black", linewidth=1)
        ax.annotate(baseline, (ax.get_xlim()[0], value), fontsize=7, va="bottom")
    ax.set(xlabel="frames", ylabel="training episode return", title=f"{app.env}: {len(runs)} seeds (band: their range)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(directory / f"{name}_curves.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    first = min(runs, key=lambda run: run["seed"])
    stat = next((m for m in app.metrics if m.name != "return"), None)  # the first of the env's statistics, if any
    shown = ["reward"] + ([stat.name] if stat else [])
    fig, axes = plt.subplots(1, len(shown), figsize=(6.4 * len(shown), 4), squeeze=False)
    for ax, series in zip(axes[0], shown):
        for policy, entry in first["policies"].items():
            values = entry["trace"].get(series, [])
            if len(values) == 1:
                ax.bar(policy, values[0])
            else:
                ax.plot(np.arange(1, len(values) + 1), values, label=policy)
        label = "mean reward per agent" if series == "reward" else stat.label + " so far"
        ax.set(xlabel="policy" if len(values) == 1 else "step", ylabel=label, title=f"{app.env}: one evaluation episode (seed {first['seed']})")
        if len(values) == 1:
            ax.tick_params(axis="x", labelsize=6, rotation=20)
        else:
            ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(directory / f"{name}_episode.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(APPLICATIONS), default=None, help="applications to run")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="jobs (application x seed) run at once, one process and thread each")
    parser.add_argument("--out", type=Path, default=HERE / "runs" / "applications", help="where each job's JSON goes")
    parser.add_argument("--plots", type=Path, default=HERE.parent / "docs" / "applications", help="where the plots go")
    parser.add_argument("--frames", type=int, default=None, help="every learner's frame budget (default: its own; for quick checks)")
    parser.add_argument("--report", action="store_true", help="only report the results already saved under --out")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # one application and seed, in this process
    parser.add_argument("--list", action="store_true", help="print what each application runs")
    args = parser.parse_args()
    names = args.only or list(APPLICATIONS)
    if args.list:
        for name in names:
            app = APPLICATIONS[name]
            print(f"{name}: {' '.join([app.env, *app.env_overrides])}; baseline {app.baseline}, references {', '.join(app.references)}")
            for label, row in app.learners.items():
                print(f"    {label}: {row.algo}, {row.frames} frames, {' '.join(row.overrides)}")
        return
    if args.job:
        for name in names:
            for seed in args.seeds:
                print(run_job(name, seed, args.out, args.frames))
        return
    if not args.report:
        jobs = [(name, seed) for name in names for seed in args.seeds]
        running: list[tuple[subprocess.Popen, str]] = []
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        while jobs or running:
            while jobs and len(running) < args.jobs:
                name, seed = jobs.pop(0)
                argv = [
                    sys.executable,
                    __file__,
                    "--job",
                    "--only",
                    name,
                    "--seeds",
                    str(seed),
                    "--out",
                    str(args.out),
                    *(["--frames", str(args.frames)] if args.frames else []),
                ]
                args.out.mkdir(parents=True, exist_ok=True)
                with open(args.out / f"{name}_seed{seed}.log", "w") as log:  # the child writes to its own copy of the file
                    running.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), f"{name} seed {seed}"))
            time.sleep(1)
            for process, label in [r for r in running if r[0].poll() is not None]:
                running.remove((process, label))
                print(
                    f"{label}: {'done' if process.returncode == 0 else f'FAILED ({process.returncode})'} after {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    for name in names:
        runs = load(args.out, name)
        if not runs:
            print(f"\n## {name}: no saved results under {args.out / name}")
            continue
        print(report(name, runs))
        for path in plot(name, runs, args.plots):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
