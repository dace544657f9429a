"""`python -m ca12.fit`: train one algorithm on one env from the command line.

    python -m ca12.fit --algo ALGO [--env FAMILY/TASK] [--seed N] [--run-dir DIR]
                       [--resume last|PATH] [--show-config] [KEY=VALUE ...]
    python -m ca12.fit --list
    python -m ca12.fit -m --algo A,B [--env E,F] [--seed 0,1,2] [--run-dir SWEEP_DIR] [KEY=a,b ...]

Composes conf/ with the overrides, builds the env, the algorithm's LightningModule and its data
module, and hands them to a Lightning Trainer that writes everything to the run directory:
config.yaml, metrics.csv, checkpoints/ and wandb/. Bad input exits with code 2 and one line.
`-m` (`--multirun`) runs every combination of comma lists, each such a run (ca12/multirun/sweep.py);
`ca12.train` (ca12/api.py) runs `run` from Python.
"""

from __future__ import annotations

import sys

from ca12.cli import run_command
from ca12.envs import env_families, family_tasks
from ca12.multirun.sweep import sweep_main
from ca12.run.config import algo_names, env_config_names
from ca12.run.train import fit_parser as build_parser
from ca12.run.train import run
from ca12.untrusted import name_env_factories_in


def list_choices() -> list[str]:

    lines = [f"algo {name}" for name in algo_names()]
    envs = set(env_config_names())
    for family in env_families():
        envs.update(f"{family}/{task}" for task in family_tasks(family))
    lines += [f"env {name}" for name in sorted(envs)]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        name_env_factories_in(argv)  # `--env module:function`: the user's own code, named by their command
        if "-m" in argv or "--multirun" in argv:  # its own parser: --algo, --env and --seed take lists
            return sweep_main(argv)
        # Intermixed: overrides may stand between flags, as Hydra users write them.
        args = build_parser().parse_intermixed_args(argv)
        if args.list:
            print("\n".join(list_choices()))
            return 0
        run(args)
        return 0

    return run_command("ca12.fit", body)


if __name__ == "__main__":
    sys.exit(main())
