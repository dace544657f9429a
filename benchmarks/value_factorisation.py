"""QMIX against VDN on the QMIX paper's two-step game (Rashid et al. 2018, section 6.1 and
appendix B): does QMIX learn the optimal return 8 while VDN settles at 7, as in the paper's figure?

    python benchmarks/value_factorisation.py                  # seeds 0 1 2, the paper's 10k steps
    python benchmarks/value_factorisation.py --seed 0 --frames 4000

Each run is a real `python -m ca12.fit` (in-process, logger=csv) of `--algo qmix|vdn --env
matrix/two_step` with the paper's settings as far as ca12 exposes them (`PAPER`, `MIXER`). The figure
that counts is the greedy policy's return: `python -m ca12.evaluate`'s evaluation of the final
checkpoint (`Run.evaluate`, deterministic actions, the run's evaluation seed, so both methods
of a seed play the same evaluation episodes; the game is deterministic anyway). Prints each
run, then a table: method, mean greedy return over seeds with its 95 % t-interval, the paper's
figure and the ratio to it, each seed's value; then the learned Q_tot of the four joint actions
in each state, averaged over seeds (the paper's table of learned values).

The paper's optimiser is RMSprop and its target network is copied every 100 episodes; ca12's
value methods use Adam and a soft target update, so `algo.tau=0.01` (a time constant of 100
updates, one update per episode) stands in for the copy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from learning import Row, fit_returns, interval  # the sibling script
from tensordict import TensorDict

from ca12.api import Run, load
from ca12.envs.matrix.two_step import STATE_NAMES

ENV = "matrix/two_step"
METHODS = ("qmix", "vdn")
PAPER_RETURN = {"qmix": 8.0, "vdn": 7.0}  # the paper's figure: greedy return after training
# The paper's appendix B settings, as ca12 overrides.
PAPER = [
    "algo.eps_init=1.0",
    "algo.eps_end=1.0",  # uniform exploration over the whole of training
    "algo.gamma=0.99",
    "model.hidden_sizes=[64]",
    "model.activation=relu",  # one hidden layer of 64 ReLU units, shared by the agents
    "algo.buffer_size=1000",  # the last 500 episodes of 2 steps
    "algo.minibatch_size=64",  # 32 episodes of 2 steps
    "algo.updates_per_frame=0.5",  # one update per episode
    "algo.warmup_frames=64",  # learning starts once a minibatch is stored
    "algo.lr=5e-4",
    "algo.tau=0.01",  # soft stand-in for the target copy every 100 updates
    # 25 worlds play one episode each per batch: 25 updates per batch.
    "env.num_envs=25",
    "collector.frames_per_batch=50",
]
MIXER = {"qmix": ["algo.mixing_embed_dim=8"], "vdn": []}  # QMIX's mixing network: 8 units (VDN's is a sum)
EVAL_EPISODES = 8
JOINT_ACTIONS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (agent 0, agent 1), A = 0, B = 1


def fit(algo: str, seed: int, frames: int, run_dir: Path) -> tuple[Run, float]:
    """(the finished run, seconds) of `algo` on the two-step game with `PAPER`'s settings
    (learning.py's `fit_returns`: the same in-process fit as every learning row)."""
    _, seconds = fit_returns(Row(algo, ENV, frames, PAPER_RETURN[algo], [*PAPER, *MIXER[algo]]), seed, run_dir)
    return load(run_dir), seconds


@torch.no_grad()
def joint_values(run: Run) -> torch.Tensor:
    """The learned Q_tot [3 states, 2, 2] of every joint action (rows: agent 0's action) in
    states 1, 2A and 2B (`STATE_NAMES`): the agents' Q-values of those actions through the run's
    mixer."""
    module, env = run.module, run.make_env(num_envs=1).base_env
    group = module.group
    states = torch.arange(env.n_states).repeat_interleave(len(JOINT_ACTIONS))  # [3 * 4]
    actions = torch.tensor(JOINT_ACTIONS).repeat(env.n_states, 1)  # [3 * 4, 2]
    td = TensorDict({group: TensorDict({"observation": env.observations(states)}, [len(states), env.n_agents])}, [len(states)])
    values = module.qnet(td)[group, "action_value"]  # [12, n_agents, n_actions]
    td[group, "chosen_action_value"] = values.gather(-1, actions.unsqueeze(-1))  # [12, n_agents, 1]
    return module.mix(td, target=False).view(env.n_states, 2, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2], help="seeds (each method runs once per seed)")
    parser.add_argument("--frames", type=int, default=10_000, help="training frames (env steps) per run; the paper's 10k")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks: extra threads only spin on a shared machine
    greedy: dict[str, list[float]] = {algo: [] for algo in METHODS}
    tables: dict[str, list[torch.Tensor]] = {algo: [] for algo in METHODS}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seed:
            for algo in METHODS:
                run, seconds = fit(algo, seed, args.frames, Path(tmp) / f"{algo}-{seed}")
                greedy[algo].append(run.evaluate(episodes=EVAL_EPISODES).episode_reward_mean)
                tables[algo].append(joint_values(run))
                lines.append(f"{algo:<6}{seed:>5}{run.frames:>8}{seconds:>9.0f}{greedy[algo][-1]:>15.2f}")
    print(f"\nQMIX vs VDN on {ENV} (Rashid et al. 2018, section 6.1), greedy return of the final policy, {EVAL_EPISODES} episodes")
    print(f"{'method':<6}{'seed':>5}{'frames':>8}{'seconds':>9}{'greedy return':>15}")
    print("\n".join(lines))
    header = f"{'method':<8}{'mean':>7}{'95% t-interval':>18}{'paper':>7}{'ratio':>7}  per seed"
    print(f"\n{header}\n{'-' * len(header)}")
    for algo in METHODS:
        mean, half = interval(greedy[algo])
        low, high = mean - half, mean + half
        seeds = " ".join(f"{v:.2f}" for v in greedy[algo])
        print(f"{algo:<8}{mean:>7.2f}{f'[{low:.2f}, {high:.2f}]':>18}{PAPER_RETURN[algo]:>7.1f}{mean / PAPER_RETURN[algo]:>7.3f}  {seeds}")
    print("\nLearned Q_tot, mean over seeds (rows: agent 0 plays A, B; columns: agent 1 plays A, B)")
    for algo in METHODS:
        mean = torch.stack(tables[algo]).mean(0)  # [3, 2, 2]
        cells = [f"state {name}: [[{q[0, 0]:.2f}, {q[0, 1]:.2f}], [{q[1, 0]:.2f}, {q[1, 1]:.2f}]]" for name, q in zip(STATE_NAMES, mean, strict=True)]
        print(f"{algo:<6}" + "   ".join(cells))


if __name__ == "__main__":
    main()
