"""Speaker-listener with and without its message channel: how much does talking help?

    python benchmarks/speaker_listener.py                          # VMAS's port, 3 M frames per run
    python benchmarks/speaker_listener.py --family pettingzoo --frames 2000000
    python benchmarks/speaker_listener.py --frames 1000000 --seed 1

In `simple_speaker_listener` the speaker sees which of three landmarks is the goal and cannot
move; the listener moves and sees the landmarks, its velocity and the speaker's last message
(its last three observation features, the speaker's action). Both are paid minus the listener's
distance to the goal (MPE2: squared, once; VMAS's port: the distance, counted once per agent, so
about twice MPE2's scale). MAPPO (critics reading both groups) trains both groups, once as the
game is and once with `env.hide_observation={listener:[-3,-2,-1]}`, which zeroes the message
features: the same game, frames and seed, without communication. Prints both final returns (per
agent per 25-step episode, the mean of the last 3 iterations) and the difference.

`--family vmas` (default): `vmas/simple_speaker_listener`, 100 worlds x 100 steps (4 episodes)
per 10 000-frame batch, 10 epochs of minibatch 2 000, lr 3e-4, entropy 0.01. VMAS draws one
goal landmark for all worlds at each reset, so a batch holds 4 goals; vectorised in torch, it
trains ~10x faster than MPE2 here. `--family pettingzoo`: MPE2's, with the simple_spread row's
settings (benchmarks/learning.py) and lr 3e-4. Measured results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

from learning import Row, ablation

SETTINGS = {
    "vmas": ["env.max_steps=25", "env.num_envs=100", "collector.frames_per_batch=10000", "algo.minibatch_size=2000",
             "algo.num_epochs=10", "algo.lr=3e-4", "algo.entropy_coeff=0.01"],
    # The simple_spread row's settings (benchmarks/learning.py), lr 3e-4.
    "pettingzoo": ["env.num_envs=20", "collector.frames_per_batch=2000", "algo.minibatch_size=400", "algo.lr=3e-4",
                   "algo.entropy_coeff=0.01", "algo.num_epochs=5"],
}
SILENCED = "env.hide_observation={listener:[-3,-2,-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(SETTINGS), default="vmas")
    parser.add_argument("--frames", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = f"{args.family}/simple_speaker_listener"
    rows = {label: Row("mappo", env, args.frames, float("-inf"), SETTINGS[args.family] + extra)
            for label, extra in (("with communication", []), ("without (message hidden)", [SILENCED]))}
    ablation(f"MAPPO on {env}, {args.frames} frames, seed {args.seed}", rows, args.seed, "communication gains (per agent per episode)")

if __name__ == "__main__":
    main()
