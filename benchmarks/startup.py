"""Start-up time of the commands that answer without training: listing, help, `--show-config` and
the refusals decided from the command line and conf/, each against the 2 s goal and against
`python -c "import torch"` timed in the same run (what any of them paid before it was made light).

    python benchmarks/startup.py [--repeat 5] [--source DIR]

Each command runs `--repeat` times in a fresh interpreter (a subprocess, so nothing is cached in
memory between runs; the OS file cache is warm after the first) and the table shows the median
wall-clock seconds, whether it meets the goal, and its ratio to the torch import. `--source DIR`
times the commands of another ca12 checkout (e.g. `git worktree add /tmp/before HEAD~1`) with
this environment's packages: run it on the code before a change and after, on the same machine.
Which modules may load at start-up: docs/ARCHITECTURE.md; tests/run/test_startup.py checks that
these commands import none of torch, TorchRL and Lightning.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 2.0
# (what it shows, module, arguments): every path that must answer without torch.
COMMANDS = [
    ("list", "ca12.fit", ["--list"]),
    ("help", "ca12.fit", ["--help"]),
    ("help -h", "ca12.fit", ["-h"]),
    ("evaluate -h", "ca12.evaluate", ["-h"]),
    ("compare -h", "ca12.compare", ["-h"]),
    ("pbt -h", "ca12.pbt", ["-h"]),
    ("show-config", "ca12.fit", ["--algo", "mappo", "--show-config"]),
    ("show-config (gym)", "ca12.fit", ["--algo", "mappo", "--env", "gym/CartPole-v1", "--show-config"]),
    ("unknown algorithm", "ca12.fit", ["--algo", "nope"]),
    ("unknown env family", "ca12.fit", ["--algo", "mappo", "--env", "nope/x"]),
    ("unknown env task", "ca12.fit", ["--algo", "mappo", "--env", "vmas/nope"]),
    ("unknown group option", "ca12.fit", ["--algo", "mappo", "model=nope"]),
    ("unknown key", "ca12.fit", ["--algo", "mappo", "algo.nope=1"]),
    ("unknown trainer key", "ca12.fit", ["--algo", "mappo", "trainer.nope=1"]),
    ("wrong type", "ca12.fit", ["--algo", "mappo", "algo.lr=abc"]),
    ("bad override syntax", "ca12.fit", ["--algo", "mappo", "algo.lr"]),
    ("missing --algo", "ca12.fit", ["--seed", "3"]),
]


def seconds(argv: list[str], source: Path) -> float:
    """Wall-clock seconds of `python argv` run in `source` (its ca12 first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def median_seconds(argv: list[str], source: Path, repeat: int) -> float:
    return statistics.median(seconds(argv, source) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is shown)")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1], help="the ca12 checkout to time (default: this one)")
    args = parser.parse_args()
    source = args.source.resolve()
    torch_s = median_seconds(["-c", "import torch"], source, args.repeat)
    print(f"ca12 at {source}; median of {args.repeat} runs each; `import torch` alone: {torch_s:.2f} s")
    print(f"{'command':<22}{'median s':>10}{'goal 2 s':>10}{'x torch':>9}  arguments")
    for name, module, argv in COMMANDS:
        median = median_seconds(["-m", module, *argv], source, args.repeat)
        verdict = "ok" if median < GOAL_S else "OVER"
        print(f"{name:<22}{median:>10.2f}{verdict:>10}{median / torch_s:>9.2f}  python -m {module} {' '.join(argv)}")


if __name__ == "__main__":
    main()
