"""Speaker-listener with and without its message channel: how much does talking help?

    python benchmarks/speaker_listener.py                          # VMAS, a goal per world, 3 M frames per run
    python benchmarks/speaker_listener.py --task simple_speaker_listener   # VMAS's port: one goal for all worlds
    python benchmarks/speaker_listener.py --family pettingzoo --frames 2000000
    python benchmarks/speaker_listener.py --frames 1000000 --seed 1
    python benchmarks/speaker_listener.py --algo ippo --only with      # one variant, IPPO's own-observation critics

In `simple_speaker_listener` the speaker sees which of three landmarks is the goal and cannot
move; the listener moves and sees the landmarks, its velocity and the speaker's last message
(its last three observation features, the speaker's action). Both are paid minus the listener's
distance to the goal (MPE2: squared, once; VMAS's port: the distance, counted once per agent, so
about twice MPE2's scale). MAPPO (critics reading both groups) trains both groups, once as the
game is and once with `env.hide_observation={listener:[-3,-2,-1]}`, which zeroes the message
features: the same game, frames and seed, without communication. Prints both final returns (per
agent per 25-step episode, the mean of the last 10 % of iterations), and each trained policy
evaluated on fresh episodes twice: as it is, and with the listener's message features zeroed. A
gap between the runs counts as communication only if zeroing the message costs the talking run
return (a listener that ignores the message loses nothing).

The speaker's messages are learnt with a positive-signalling bonus (`--signalling`, default 0.1:
`algo.signalling_coeff` for the speaker group in both runs; ca12/nets/communication.py): the
speaker is paid the mutual information between its message and its goal, so its messages mean
something before the listener reads them. Without it MAPPO stays at the no-message optimum (the
listener heads for the landmarks' centre): a message that means nothing is not worth reading,
and one nobody reads is not worth making mean something.

`--family vmas` (default): `vmas/speaker_listener` (ca12/envs/vmas/tasks.py: VMAS's port with
the goal drawn per world, as MPE draws it per env, and with discrete actions a speaker whose only
action is its message), discrete actions, rewards scaled by 0.1 for the learner (the critic fits
returns of order 1), 100 worlds x 100 steps (4 episodes) per 10 000-frame batch, 10 epochs of
minibatch 2 000, lr 3e-4, entropy 0.01 (`learning.SPEAKER_LISTENER`); vectorised in torch, it
trains ~10x faster than MPE2 here. `--task simple_speaker_listener` runs VMAS's own port, which
draws one goal for all worlds at each reset (a batch then holds 4 goals). `--family pettingzoo`:
MPE2's, with the simple_spread row's settings (benchmarks/learning.py) and lr 3e-4.

Measured (seed 0, 3 M frames a run, one thread each, about 20 min; scripted listeners score -52.1
at random, -39.6 heading for the landmarks' centre, -30.6 heading for the goal):
    | run (defaults unless said)      | final  | evaluated | message zeroed |
    | with the channel, seed 0        | -31.99 | -31.05    | -39.96         |
    | with the channel, seed 1        | -31.83 | -30.97    | -39.97         |
    | message hidden, seed 0          | -40.24 | -39.95    | -39.95         |
    | message hidden, seed 1          | -51.46 | -51.01    | -51.01         |
    | with, `--signalling 0`, seed 0  | -39.16 | -38.34    | -39.90         |
The talking team is within 1.4 of the scripted goal-seeker and 8.25 (seed 0) above the team
whose message is hidden (seed 1's hidden run stayed at random play); zeroing its message costs it
8.9: communication. Without the bias the team stays at the no-message optimum.
Earlier settings and results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from learning import SPEAKER_LISTENER, Row, fit_returns  # the sibling script's fit of one row, its settings

import ca12

SETTINGS = {
    "vmas": SPEAKER_LISTENER,
    # The simple_spread row's settings (benchmarks/learning.py), lr 3e-4.
    "pettingzoo": [
        "env.num_envs=20",
        "collector.frames_per_batch=2000",
        "algo.minibatch_size=400",
        "algo.lr=3e-4",
        "algo.entropy_coeff=0.01",
        "algo.num_epochs=5",
    ],
}
SILENCED = "env.hide_observation={listener:[-3,-2,-1]}"
MESSAGE = slice(-3, None)  # the listener's last three observation features


def evaluate(run: ca12.Run, zero_message: bool, episodes: int = 8, worlds: int = 100) -> float:
    """Mean return per listener per episode of the run's deterministic policy on fresh episodes,
    with the listener's message features zeroed or left as they are."""
    env = run.make_env(num_envs=worlds, seed=12345)
    steps = int(run.config.env.max_steps)

    def policy(td):
        if zero_message:
            td = td.clone()
            td["listener", "observation"][..., MESSAGE] = 0.0
        return run.policy(td)

    returns = [
        env.rollout(steps, policy=policy, break_when_any_done=False)["next", "listener", "reward"].sum(1).mean().item() for _ in range(episodes)
    ]
    return sum(returns) / len(returns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(SETTINGS), default="vmas")
    parser.add_argument("--task", default=None, help="vmas: speaker_listener (default, a goal per world) or simple_speaker_listener")
    parser.add_argument("--frames", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--signalling", type=float, default=0.1, help="the speaker's positive-signalling weight (algo.signalling_coeff) in both runs; 0: off"
    )
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for both runs, e.g. env.continuous_actions=true")
    parser.add_argument("--algo", choices=["mappo", "ippo"], default="mappo", help="ippo: each agent's critic sees only its own observation")
    parser.add_argument("--only", choices=["with", "hidden"], default=None, help="run one variant (two processes can run the two side by side)")
    args = parser.parse_args()
    if args.only:  # one of two processes side by side: torch's default threads would oversubscribe the cores (measured: 157 against 2 600 frames/s)
        torch.set_num_threads(1)
    env = f"{args.family}/{args.task or ('speaker_listener' if args.family == 'vmas' else 'simple_speaker_listener')}"
    signalling = [f"algo.signalling_coeff={args.signalling}", "algo.signalling_groups=[speaker]"] if args.signalling > 0 else []
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"with": ("with the channel", []), "hidden": ("message hidden", [SILENCED])}
        for label, extra in [variants[args.only]] if args.only else variants.values():
            run_dir = Path(tmp) / label.replace(" ", "_")
            returns, seconds = fit_returns(
                Row(args.algo, env, args.frames, float("-inf"), SETTINGS[args.family] + signalling + args.extra + extra), args.seed, run_dir
            )
            last = returns[-max(1, len(returns) // 10) :]  # the last 10 % of iterations
            final, run = sum(last) / len(last), ca12.load(run_dir)
            with torch.no_grad():
                rows[label] = (final, evaluate(run, False), evaluate(run, True), seconds)
    print(
        f"\n{args.algo.upper()} on {env} {' '.join(signalling + args.extra)}, {args.frames} frames, seed {args.seed} (returns per agent per episode)"
    )
    print(f"{'variant':<20}{'final':>9}{'evaluated':>11}{'message zeroed':>16}{'seconds':>9}")
    for label, (final, intact, zeroed, seconds) in rows.items():
        print(f"{label:<20}{final:>9.2f}{intact:>11.2f}{zeroed:>16.2f}{seconds:>9.0f}")
    if len(rows) < 2:
        return
    (final, intact, zeroed, _), (silent, *_) = rows.values()
    print(
        f"gap with the channel against without: {final - silent:+.2f}; of it, the policy's use of the message "
        f"(evaluated minus message zeroed): {intact - zeroed:+.2f}. Only the second is communication."
    )


if __name__ == "__main__":
    main()
