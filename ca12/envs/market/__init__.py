"""A resource-allocation market: agents choose which task to bid on, an auction allocates, in
batched torch.

`AllocationEnv` exists to show learned bidding against a market's two reference points: the
greedy bidder that does not coordinate (everyone bids on its favourite task, so the popular
tasks collide and the rest go unused) and the optimal assignment (the ceiling). The auction is
`ca12.game_theory.mechanisms.per_item_auctions` (a sealed-bid second-price auction per task,
Vickrey 1961), the same code as `second_price_auction`; this module implements no auction. The
env itself (value draws, quotes, baselines) is written here: no library offers such a task.

Task `market/allocation`, per world (all worlds step together on `device`); every round:
    * Values: `n_agents` agents, `n_tasks` tasks (default one per agent), and agent i's value
      for task j is v[i, j] = q[j] * s[i, j], with a public task quality q[j] ~ U(0, 1) that
      every agent shares (good tasks are good for everyone) and a private skill
      s[i, j] ~ U(1 - skill_spread, 1 + skill_spread). A new draw every round, from the env's
      own generator.
    * Quotes (`observe_quotes`, default on): before bidding the market runs an indicative,
      non-binding round in which every agent reports its whole value row to the same auction
      (truthful reports are dominant under Vickrey pricing) and tells each agent its quote per
      task: what it would pay for the task, the runner-up's value where it leads, the leader's
      value where it does not (`price_quotes`). This is what a market publishes (standing bids),
      not the allocation: an agent still sees neither the others' values nor their choices.
    * Bidding: each agent's action is the one task it bids on (unit demand), and it bids its true
      value there and nothing on the others (under second-price pricing a truthful bid is
      dominant, so the decision left to learn is where to bid). The auction gives each task to
      its highest bidder; a task nobody bid on stays unused. Since an agent bids on one task, it
      wins at most one: the result is always an assignment.
    * Reward: the round's efficiency, shared by all agents: the welfare of the allocation (sum of
      the winners' true values) divided by the optimal assignment's welfare
      (`scipy.optimize.linear_sum_assignment`), so it lies in [0, 1] and 1 is the ceiling. A
      shared welfare reward, not each agent's utility (value minus price): coordination means
      an agent sometimes gives way on a task it would win, which its own utility would punish.
    * The episode ends (terminated) after `max_steps` rounds, default 1; rounds are independent,
      so the return divided by `max_steps` is the mean efficiency.

With the default `skill_spread` 0.5 and 6 agents, the greedy bidder reaches about 0.63 of the
optimal welfare (`greedy_choice`), the rule "bid where my value minus my quote is largest"
(`surplus_choice`, a hand-written reference that reads the same observation) about 0.83.

Observation per agent, `("agents", "observation")` [B, n, 2 n_tasks] (n_tasks without quotes):
    `[own values v[i, :] | own quotes]`.
Action per agent, `("agents", "action")` [B, n] int64 in [0, n_tasks) (`Categorical`).
Reward per agent, `("agents", "reward")` [B, n, 1]: the shared efficiency.

Seeding: like `ca12.envs.comm`, each env keeps its own generator (seeded by the constructor's
`seed` and by `set_seed`), registered under `market/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from scipy.optimize import linear_sum_assignment
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical
from torchrl.envs import EnvBase

from ca12.envs.catalog import MARKET_TASKS as TASKS  # the catalog lists tasks (start-up)
from ca12.envs.common import SeededTorchEnv, check_integers, group_output, make_discrete, reset_mask, set_group_specs
from ca12.errors import UsageError
from ca12.game_theory.mechanisms import ItemSales, per_item_auctions

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("n_agents", "n_tasks", "skill_spread", "observe_quotes")
# The bid of an agent on a task it does not bid on: below the reserve 0, so it never wins, and
# a task with no real bid stays unsold.
NO_BID = -1.0


def draw_values(generator: torch.Generator, n_worlds: int, n_agents: int, n_tasks: int, skill_spread: float) -> torch.Tensor:
    """Values v[b, i, j] = q[b, j] * s[b, i, j], [B, n_agents, n_tasks] float32 on the
    generator's device: a common task quality q ~ U(0, 1) times a private skill
    s ~ U(1 - skill_spread, 1 + skill_spread)."""
    device = generator.device
    quality = torch.rand(n_worlds, 1, n_tasks, generator=generator, device=device)  # [B, 1, k]
    skill = 1.0 + skill_spread * (2.0 * torch.rand(n_worlds, n_agents, n_tasks, generator=generator, device=device) - 1.0)  # [B, n, k]
    return quality * skill


def _sales(bids: torch.Tensor) -> ItemSales:
    """The second-price auction of `ca12.game_theory` on every task of every world (reserve 0)."""
    return per_item_auctions(bids, reserve=0.0, rule="second")


def price_quotes(values: torch.Tensor) -> torch.Tensor:
    """Each agent's quote per task, [B, n, k]: what it would pay for the task in a second-price
    auction where every agent bids its value on every task (the market's indicative round): the
    runner-up's value where the agent leads, the leader's value elsewhere."""
    sales = _sales(values)
    leader = torch.as_tensor(sales.winner, device=values.device).unsqueeze(-2)  # [B, 1, k]
    agents = torch.arange(values.shape[-2], device=values.device).view(-1, 1)  # [n, 1]
    price = torch.as_tensor(sales.price, dtype=values.dtype, device=values.device).unsqueeze(-2)  # [B, 1, k]
    top = torch.as_tensor(sales.winning_bid, dtype=values.dtype, device=values.device).unsqueeze(-2)  # [B, 1, k]
    return torch.where(agents == leader, price, top)


def bids(values: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """[B, n, k]: each agent's true value on its chosen task (`choice` [B, n]), `NO_BID` elsewhere."""
    chosen = torch.nn.functional.one_hot(choice.long(), values.shape[-1]).bool()
    return torch.where(chosen, values, torch.full_like(values, NO_BID))


def welfare(values: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """[B] float64: the welfare of the auction's allocation when agents bid their true values on
    the tasks in `choice` [B, n]: the sum of the winners' values."""
    return torch.as_tensor(_sales(bids(values, choice)).winning_bid.sum(-1), device=values.device)


def optimal_welfare(values: torch.Tensor) -> torch.Tensor:
    """[B] float64: the welfare of the best assignment of tasks to agents (each agent at most one
    task, each task at most one agent: the assignment problem, Kuhn 1955), solved exactly by
    `scipy.optimize.linear_sum_assignment` per world."""
    best = [table[rows, tasks].sum() for table, (rows, tasks) in _optimal_assignments(values)]
    return torch.as_tensor(np.asarray(best, dtype=np.float64), device=values.device)


def _optimal_assignments(values: torch.Tensor):
    """Per world of `values` [B, n, k]: its value table (float64 numpy) and the optimal
    assignment's (agents, tasks) index arrays, from `scipy.optimize.linear_sum_assignment`."""
    for table in values.detach().cpu().double().numpy():
        yield table, linear_sum_assignment(table, maximize=True)


def efficiency(values: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """[B] float64 in [0, 1]: welfare of the choices over the optimal welfare."""
    return welfare(values, choice) / optimal_welfare(values).clamp_min(1e-12)


def greedy_choice(values: torch.Tensor) -> torch.Tensor:
    """The no-coordination baseline [B, n]: every agent bids on its favourite task."""
    return values.argmax(-1)


def surplus_choice(values: torch.Tensor) -> torch.Tensor:
    """A hand-written quote-aware rule [B, n]: every agent bids where its value minus its quote
    (its surplus at the quoted price) is largest. A reference for what the observation allows."""
    return (values - price_quotes(values)).argmax(-1)


def optimal_choice(values: torch.Tensor) -> torch.Tensor:
    """The ceiling [B, n]: every agent bids on the task the optimal assignment gives it
    (`linear_sum_assignment` per world; an agent left without a task, when there are fewer tasks
    than agents, bids on its favourite, where it loses or adds nothing). Centralised: it reads
    every agent's values."""
    choice = greedy_choice(values).cpu()
    for world, (_, (agents, tasks)) in enumerate(_optimal_assignments(values)):
        choice[world, torch.as_tensor(agents)] = torch.as_tensor(tasks)
    return choice.to(values.device)


class _ChoiceRule:
    """A baseline policy: `rule(values [B, n, k]) -> tasks [B, n]` applied to the agents'
    observed values (the first n_tasks features of each agent's observation)."""

    def __init__(self, env: EnvBase, rule):
        self.rule, self.n_tasks = rule, env.full_action_spec["agents", "action"].space.n

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        values = tensordict.get(("agents", "observation"))[..., : self.n_tasks]
        return tensordict.set(("agents", "action"), self.rule(values))


# `python -m ca12.evaluate --baseline NAME --env market/allocation`: name -> factory(env) -> policy.
BASELINES = {
    "greedy": lambda env: _ChoiceRule(env, greedy_choice),  # no coordination: everyone bids on its favourite
    "quote_rule": lambda env: _ChoiceRule(env, surplus_choice),  # the quotes' hand-written use
    "optimal": lambda env: _ChoiceRule(env, optimal_choice),  # the assignment problem's optimum: efficiency 1
}


class AllocationEnv(SeededTorchEnv):
    """Agents choose which task to bid on; a second-price auction per task allocates them.

    Args:
        num_envs: parallel worlds (the env's batch size).
        n_agents: bidders per world (one group, "agents"), at least 2.
        n_tasks: tasks per round, also the number of actions; None: one per agent.
        skill_spread: half-width of the private skill factor's range around 1, in [0, 1).
        observe_quotes: add the market's quotes to each agent's observation.
        max_steps: rounds per episode, each with new values.
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: a size or spread out of range.
    """

    def __init__(
        self,
        num_envs: int = 1,
        n_agents: int = 6,
        n_tasks: int | None = None,
        skill_spread: float = 0.5,
        observe_quotes: bool = True,
        max_steps: int = 1,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        n_tasks = n_agents if n_tasks is None else n_tasks
        check_integers(("num_envs", num_envs, 1), ("n_agents", n_agents, 2), ("n_tasks", n_tasks, 1), ("max_steps", max_steps, 1))
        if isinstance(skill_spread, bool) or not isinstance(skill_spread, (int, float)) or not 0.0 <= skill_spread < 1.0:
            raise UsageError(f"env.skill_spread must be a number in [0, 1) (skills stay positive), got {skill_spread!r}")
        if not isinstance(observe_quotes, bool):
            raise UsageError(f"env.observe_quotes must be true or false, got {observe_quotes!r}")
        super().__init__("market", num_envs, device, seed)
        self.n_agents, self.n_tasks, self.max_steps = n_agents, n_tasks, max_steps
        self.skill_spread, self.observe_quotes = float(skill_spread), observe_quotes
        self.obs_dim = n_tasks * (2 if observe_quotes else 1)
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}

        b, n = num_envs, n_agents
        self._values = torch.zeros(b, n, n_tasks, device=self.device)  # [B, n, k]
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)  # [B]
        # Values and quotes lie in [0, the largest skill]; an action names a task.
        high = 1.0 + self.skill_spread
        set_group_specs(
            self,
            {
                "agents": (
                    Bounded(0.0, high, shape=(b, n, self.obs_dim), dtype=torch.float32, device=self.device),
                    Categorical(n_tasks, shape=(b, n), dtype=torch.int64, device=self.device),
                )
            },
        )

    @property
    def values(self) -> torch.Tensor:
        """This round's values of every world [B, n, k], for baselines, tests and diagnostics."""
        return self._values.clone()

    def _observation(self) -> torch.Tensor:
        if not self.observe_quotes:
            return self._values.clone()
        return torch.cat([self._values, price_quotes(self._values)], dim=-1)  # [B, n, 2k]

    def _draw(self, mask: torch.Tensor) -> None:
        # Draw for every world whatever the mask, so the stream does not depend on which reset.
        values = draw_values(self._rng, *self._values.shape, self.skill_spread)
        self._values = torch.where(mask.view(-1, 1, 1), values, self._values)

    def _out(self, reward: torch.Tensor | None = None) -> TensorDictBase:
        """Observation, reward (none at reset) and done [B, 1]: the episode is over after
        `max_steps` rounds (never right after a reset: a world not reset was not done)."""
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        return group_output(self, {"agents": agents}, (self._t >= self.max_steps).unsqueeze(-1), ends_by="terminated")

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        self._draw(mask)
        self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        return self._out()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        choice = tensordict.get(("agents", "action"))  # [B, n]
        score = efficiency(self._values, choice).float()  # [B]
        reward = score.view(-1, 1, 1).expand(-1, self.n_agents, 1).clone()  # [B, n, 1]: shared
        self._t = self._t + 1
        self._draw(torch.ones_like(self._t, dtype=torch.bool))  # the next round's values
        return self._out(reward)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`AllocationEnv` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, continuous actions asked for, or a bad size.
    """
    return make_discrete(cfg, seed, AllocationEnv, TASKS, _KWARGS, "name the task to bid on")
