"""Many agents: plain, hierarchical and talking MAPPO teams on one VMAS task with 8 agents.

    python benchmarks/many_agents.py                  # the three runs, 8 agents
    python benchmarks/many_agents.py --frames 60000   # a shorter budget
    python benchmarks/many_agents.py --only hierarchical

The task is `vmas/navigation` with `env.n_agents=8` (BenchMARL's settings otherwise: per-agent
reward, collisions on, one goal per agent): eight agents cross a shared arena to their own goals
and pay for every collision, so they must get out of each other's way. Three MAPPO actors, at
the same frame budget, seed, batch and actor width (`model.hidden_sizes`), with the same
centralised MLP critic:
* `mlp`: a plain per-agent MLP (ca12/nets/builder.py);
* `hierarchical`: team managers (teams of 4) set each member a goal every 5 steps, workers act on
  their own observation and goal (ca12/nets/hierarchy.py);
* `tarmac`: TarMAC attention messages between all 8 agents (ca12/nets/communication.py).
Each run is a real `python -m ca12.fit` (`learning.run`: final return = mean
`rollout/episode_reward_mean` of the last 3 iterations, per-agent return). Prints a table of
final returns and seconds, and each model's return minus the plain MLP's.
"""

from __future__ import annotations

import argparse

from learning import Row, run

TASK = "vmas/navigation"
AGENTS = 8
# ca12's MAPPO defaults (BenchMARL's: 60 envs x 100 steps per batch, 10 epochs of 1000 frames; the
# hierarchical actor replays whole trajectories, 10 per minibatch), actors 2 x 128 wide.
COMMON = [f"env.n_agents={AGENTS}", "model.hidden_sizes=[128,128]"]
MODELS = {
    "mlp": ["model=mlp"],
    "hierarchical": ["model=hierarchical", "model.team_size=4", "model.period=5"],
    "tarmac": ["model=tarmac"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000, help="frames (env steps x envs) per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=tuple(MODELS), default=None, help="models to run")
    args = parser.parse_args()
    results = {}
    for name in args.only or MODELS:
        row = Row("mappo", TASK, args.frames, float("nan"), MODELS[name] + COMMON)
        results[name] = run(row, args.seed)
        print(f"{name}: final return {results[name][0]:.3f} in {results[name][1]:.0f} s", flush=True)
    print(f"\nMAPPO on {TASK}, {AGENTS} agents, {args.frames} frames, seed {args.seed} ({' '.join(COMMON)})")
    print(f"{'model':<14}{'final return':>14}{'seconds':>10}{'vs mlp':>10}")
    for name, (final, seconds) in results.items():
        versus = f"{final - results['mlp'][0]:+.3f}" if "mlp" in results else ""
        print(f"{name:<14}{final:>14.3f}{seconds:>10.0f}{versus:>10}")


if __name__ == "__main__":
    main()
