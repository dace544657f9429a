"""Task families for meta-RL, as batched torch simulators (written here: no library offers them).

A task family is a distribution over tasks that share dynamics and differ in a hidden parameter
the agent must find out by acting: a goal, an opponent's strategy, the number of teammates.
Every family steps any batch of worlds at once, each world with its own task, so one call
advances [n_tasks, worlds] (MAML's rollouts) or [num_envs] (the TorchRL env of
ca12/envs/meta/, one task per world) without a Python loop over worlds; `rollout` loops over
time steps only.

A family offers:
    * `counts`: the agent counts its tasks have; `sample(n, generator)` draws n tasks and
      returns them grouped by agent count (a list of TensorDicts [n_c], one per count drawn),
      because tasks of one count batch together and tasks of different counts do not;
      `sample_count(n, count, generator)` draws n tasks of one count.
    * `reset(task) -> state`, `observe(state, task) -> [*B, n, obs_dim]`,
      `step(state, task, action, generator) -> (state, reward [*B, n, 1])` for any batch
      shape *B of `task`; `obs_dim`, `discrete`, `action_dim` (choices, or the continuous
      action size), `horizon` and `ends_by` ("truncated": a time limit cuts the episode,
      "terminated": the task ends it) describe the specs.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
from tensordict import TensorDict

from ca12.errors import UsageError
from ca12.game_theory import classic

# Discrete navigation moves: stay, -x, +x, -y, +y (VMAS's order).
MOVES = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


class TaskFamily(Protocol):
    counts: tuple[int, ...]
    obs_dim: int
    discrete: bool
    action_dim: int
    horizon: int
    ends_by: str

    def sample(self, n: int, generator: torch.Generator) -> list[TensorDict]: ...

    def sample_count(self, n: int, count: int, generator: torch.Generator) -> TensorDict: ...

    def reset(self, task: TensorDict) -> TensorDict: ...

    def observe(self, state: TensorDict, task: TensorDict) -> torch.Tensor: ...

    def step(self, state: TensorDict, task: TensorDict, action: torch.Tensor, generator: torch.Generator) -> tuple[TensorDict, torch.Tensor]: ...


def _uniform(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=generator.device)


def group_by_count(counts: Sequence[int], n: int, generator: torch.Generator, sample_count) -> list[TensorDict]:
    """n tasks, each with an agent count drawn uniformly from `counts`, grouped by count: one
    TensorDict per count that some task drew, in the order of `counts`."""
    drawn = torch.randint(len(counts), (n,), generator=generator, device=generator.device).tolist()
    return [sample_count(drawn.count(i), count, generator) for i, count in enumerate(counts) if i in drawn]


class Navigation:
    """2-D point navigation to a per-task goal (Finn et al. 2017, "Model-Agnostic Meta-Learning",
    section 5.3), for one agent or a team sharing one policy.

    A task is a goal g drawn uniformly in [-goal_range, goal_range]^2, and (with several
    `agent_counts`) a number of agents n drawn uniformly from them. The agents start on a circle
    of radius `start_radius` about the origin (the origin itself when it is 0: the paper's
    single agent), move by `max_speed` x a (a in [-1, 1]^2, clipped; or one of `MOVES`), and
    each gets r_i = -||p_i - g|| - crowd_penalty x #{j != i: ||p_i - p_j|| < crowd_radius}
    per step, so a team must spread around a goal that only the rewards reveal. Episodes last
    `horizon` steps (a time limit: truncated). Observation per agent: its position, and with
    more than one agent in some task also the offset to its nearest teammate (zeros alone).
    """

    ends_by = "truncated"

    def __init__(
        self,
        horizon: int,
        continuous: bool,
        goal_range: float,
        max_speed: float,
        agent_counts: Sequence[int],
        start_radius: float,
        crowd_radius: float,
        crowd_penalty: float,
    ):
        self.horizon, self.discrete = horizon, not continuous
        self.goal_range, self.max_speed, self.start_radius = goal_range, max_speed, start_radius
        self.crowd_radius, self.crowd_penalty = crowd_radius, crowd_penalty
        self.counts = tuple(agent_counts)
        self.obs_dim = 2 if max(self.counts) == 1 else 4
        self.action_dim = len(MOVES) if self.discrete else 2

    def sample(self, n: int, generator: torch.Generator) -> list[TensorDict]:
        return group_by_count(self.counts, n, generator, self.sample_count)

    def sample_count(self, n: int, count: int, generator: torch.Generator) -> TensorDict:
        """n tasks of `count` agents: goal [n, 2], start positions [n, count, 2]."""
        goal = (2 * _uniform((n, 2), generator) - 1) * self.goal_range
        angle = 2 * torch.pi * torch.arange(count, device=generator.device) / count
        start = self.start_radius * torch.stack([angle.cos(), angle.sin()], -1).expand(n, count, 2)
        return TensorDict(goal=goal, start=start, batch_size=[n])

    def reset(self, task: TensorDict) -> TensorDict:
        steps = torch.zeros(task.batch_size, dtype=torch.long, device=task.device)
        return TensorDict(position=task["start"].clone(), t=steps, batch_size=task.batch_size)

    def _pairwise(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets p_j - p_i [*B, n, n, 2] and distances [*B, n, n] with inf on the diagonal."""
        offset = position.unsqueeze(-3) - position.unsqueeze(-2)
        n = position.shape[-2]
        distance = offset.norm(dim=-1) + torch.diag(torch.full((n,), float("inf"), device=position.device))
        return offset, distance

    def observe(self, state: TensorDict, task: TensorDict) -> torch.Tensor:
        position = state["position"]  # [*B, n, 2]
        if self.obs_dim == 2:
            return position
        offset, distance = self._pairwise(position)
        if position.shape[-2] == 1:
            return torch.cat([position, torch.zeros_like(position)], -1)
        nearest = distance.argmin(-1, keepdim=True).unsqueeze(-1).expand(*offset.shape[:-2], 1, 2)  # [*B, n, 1, 2]
        return torch.cat([position, offset.gather(-2, nearest).squeeze(-2)], -1)  # [*B, n, 4]

    def step(self, state: TensorDict, task: TensorDict, action: torch.Tensor, generator: torch.Generator) -> tuple[TensorDict, torch.Tensor]:
        velocity = MOVES.to(action.device)[action.long()] if self.discrete else action.clamp(-1.0, 1.0)  # [*B, n, 2]
        position = state["position"] + self.max_speed * velocity
        reward = -(position - task["goal"].unsqueeze(-2)).norm(dim=-1)  # [*B, n]
        if self.crowd_penalty and position.shape[-2] > 1:
            reward = reward - self.crowd_penalty * (self._pairwise(position)[1] < self.crowd_radius).sum(-1)
        return TensorDict(position=position, t=state["t"] + 1, batch_size=state.batch_size), reward.unsqueeze(-1)


class Opponent:
    """A repeated two-player matrix game against a per-task fixed mixed strategy.

    The agent is the row player of `game` (a `ca12.game_theory` classic: rock_paper_scissors,
    matching_pennies, ...); a task is the column player's mixed strategy q, drawn uniformly on
    the simplex (a flat Dirichlet: most draws are biased), which it plays i.i.d. each round.
    The agent's best response earns max_a (A q)_a a round where an unadapted uniform policy
    earns mean(A q) (0 in a zero-sum symmetric game): only play reveals q. Observation: the
    one-hot actions of the previous round (own, opponent's; zeros at the start) and t / horizon.
    The game really ends after `horizon` rounds (terminated).
    """

    counts = (1,)
    discrete = True
    ends_by = "terminated"

    def __init__(self, horizon: int, game: str):
        try:
            payoffs = classic(game).payoffs
        except ValueError as exc:
            raise UsageError(f"env.game: {exc}") from None
        if payoffs.shape[0] != 2:
            raise UsageError(f"env.game must be a two-player game, '{game}' has {payoffs.shape[0]} players")
        self.horizon = horizon
        self.payoff = torch.as_tensor(payoffs[0], dtype=torch.float32)  # [A, B]: the row player's payoff
        self.action_dim, self.opponent_actions = self.payoff.shape
        self.obs_dim = self.action_dim + self.opponent_actions + 1

    def sample(self, n: int, generator: torch.Generator) -> list[TensorDict]:
        return [self.sample_count(n, 1, generator)]

    def sample_count(self, n: int, count: int, generator: torch.Generator) -> TensorDict:
        """n opponent strategies [n, B], uniform on the simplex (normalised exponentials)."""
        weights = -torch.log1p(-_uniform((n, self.opponent_actions), generator))
        return TensorDict(strategy=weights / weights.sum(-1, keepdim=True), batch_size=[n])

    def best_response_value(self, task: TensorDict) -> torch.Tensor:
        """max_a (A q)_a per task [n]: a round's expected payoff of the best response to q."""
        return (task["strategy"] @ self.payoff.to(task.device).T).max(-1).values

    def reset(self, task: TensorDict) -> TensorDict:
        previous = torch.zeros(*task.batch_size, self.action_dim + self.opponent_actions, device=task.device)
        steps = torch.zeros(task.batch_size, dtype=torch.long, device=task.device)
        return TensorDict(previous=previous, t=steps, batch_size=task.batch_size)

    def observe(self, state: TensorDict, task: TensorDict) -> torch.Tensor:
        time = (state["t"].float() / self.horizon).unsqueeze(-1)
        return torch.cat([state["previous"], time], -1).unsqueeze(-2)  # [*B, 1, obs_dim]

    def step(self, state: TensorDict, task: TensorDict, action: torch.Tensor, generator: torch.Generator) -> tuple[TensorDict, torch.Tensor]:
        mine = action.long().squeeze(-1)  # [*B]
        strategy = task["strategy"].reshape(-1, self.opponent_actions)
        theirs = torch.multinomial(strategy, 1, generator=generator).view(mine.shape)  # [*B]
        reward = self.payoff.to(mine.device)[mine, theirs]
        previous = torch.cat([torch.nn.functional.one_hot(mine, self.action_dim), torch.nn.functional.one_hot(theirs, self.opponent_actions)], -1)
        next_state = TensorDict(previous=previous.float(), t=state["t"] + 1, batch_size=state.batch_size)
        return next_state, reward.view(*mine.shape, 1, 1)


def rollout(
    family: TaskFamily, tasks: TensorDict, worlds: int, act: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator
) -> TensorDict:
    """`worlds` episodes of every task in `tasks` [N] (tasks of one agent count), all stepped at
    once for `family.horizon` steps.

    Args:
        act: observations [N, worlds, n, obs_dim] -> actions [N, worlds, n] (discrete) or
            [N, worlds, n, action_dim]; it samples from the policy (the rollout is not
            differentiated).

    Returns:
        [N, worlds, T] TensorDict: observation [..., n, obs_dim], action, reward [..., n, 1].
    """
    task = tasks.unsqueeze(1).expand(tasks.shape[0], worlds)  # [N, W]
    state = family.reset(task)
    steps = []
    for _ in range(family.horizon):
        observation = family.observe(state, task)
        action = act(observation)
        state, reward = family.step(state, task, action, generator)
        steps.append(TensorDict(observation=observation, action=action, reward=reward, batch_size=task.batch_size))
    return torch.stack(steps, dim=2)


def episode_returns(trajectories: TensorDict) -> torch.Tensor:
    """Each episode's return [N, W], summed over time and averaged over its agents."""
    return trajectories["reward"].sum(2).mean((-2, -1))
