"""Robot-swarm applications on VMAS (`vmas/flocking`, `vmas/dispersion`, `vmas/discovery`): their
episode statistics and classical baselines.

Statistics (`SwarmStats`, attached by `ca12.envs.vmas.make`): `("stats", name)` [B, 1], running
values of the episode, reset with their world (at an episode's last step, the episode's value);
`ca12.data.evaluator` reports them as `eval/<name>_mean`, the trainer as `rollout/<name>_mean`.
    collisions (every task): agent-agent contacts, a pair of agents whose discs overlap (centre
        distance < the sum of their radii), counted for both agents of the pair: the mean over
        agents of the number of others each overlaps, averaged over the episode's steps so far.
        k overlapping pairs among n agents in every step give 2k / n. Dispersion's agents pass
        through each other (VMAS builds them with collide=False), so there it measures crowding.
    cohesion (flocking): the agents' mean distance to their centroid, averaged over the steps so far.
    target_distance (flocking): the distance of the agents' centroid to the scripted target the
        flock follows, averaged over the steps so far.
    coverage (dispersion): the fraction of the food eaten so far (the episode ends at 1).
    coverage (discovery): targets found so far (covered by `agents_per_target` agents at once) per
        target on the map; without respawns (`targets_respawn: false`) the fraction of the targets
        found, the episode ending at 1; with respawns each respawned target can be found again.

Baselines (`BASELINES`, exposed by ca12/envs/vmas/): `boids` (flocking), `assignment`
(dispersion, discovery: targets shared out by a central planner) and `nearest` (the same tasks,
every agent for its own nearest target: no coordination). Both read the world state (the agents' positions and velocities, the
target's, the food's or the targets' positions), not the agents' observations: centralised rules
with full information, the reference a learned policy that sees less is measured against (on
discovery, an upper one: its agents see the hidden targets only by lidar). They act with
continuous forces.

Written here because neither VMAS nor TorchRL keeps these statistics or offers these rules
(VMAS's own heuristics for flocking and discovery circle the origin and read the lidar).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, Transform, TransformedEnv

from ca12.errors import UsageError

# task -> its statistics, each with how it accumulates over an episode's steps: "mean" (running
# mean of a per-step value), "sum" (running sum), "last" (the value after the latest step).
STATS: dict[str, dict[str, str]] = {
    "flocking": {"collisions": "mean", "cohesion": "mean", "target_distance": "mean"},
    "dispersion": {"collisions": "mean", "coverage": "last"},
    "discovery": {"collisions": "mean", "coverage": "sum"},
}


def _simulator(env: EnvBase):
    """The VMAS `Environment` under `env` (TorchRL's `VmasEnv`, transformed or not)."""
    return getattr(env, "base_env", env)._env


def _task(env: EnvBase) -> str:
    """The name of the VMAS scenario `env` runs (TorchRL's `VmasEnv.scenario_name`)."""
    return str(getattr(env, "base_env", env).scenario_name)


def _positions(entities) -> torch.Tensor:
    return torch.stack([e.state.pos for e in entities], 1)  # [B, n, 2]


def _radii(entities, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([e.shape.radius for e in entities], dtype=like.dtype, device=like.device)  # [n]


# --- statistics ----------------------------------------------------------------------------------------
def contacts_per_agent(pos: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """The mean over agents of the number of other agents whose disc overlaps its own [B], from
    positions [B, n, 2] and radii [n]: twice the overlapping pairs, over n."""
    distance = (pos.unsqueeze(2) - pos.unsqueeze(1)).norm(dim=-1)  # [B, n, n]
    overlap = distance < radius.unsqueeze(-1) + radius  # [B, n, n], the diagonal included
    n = pos.shape[1]
    return (overlap.sum((1, 2)) - n).to(pos.dtype) / n


def cohesion(pos: torch.Tensor) -> torch.Tensor:
    """The agents' mean distance to their centroid [B], from positions [B, n, 2]."""
    return (pos - pos.mean(1, keepdim=True)).norm(dim=-1).mean(1)


def _measure(simulator, task: str) -> dict[str, torch.Tensor]:
    """Each statistic's value for the step just taken, [B] per name (see the module docstring)."""
    agents = simulator.world.policy_agents
    pos = _positions(agents)
    scenario = simulator.scenario
    values = {"collisions": contacts_per_agent(pos, _radii(agents, pos))}
    if task == "flocking":
        values["cohesion"] = cohesion(pos)
        values["target_distance"] = (pos.mean(1) - scenario._target.state.pos).norm(dim=-1)
    elif task == "dispersion":
        values["coverage"] = torch.stack([food.eaten for food in simulator.world.landmarks], 1).to(pos.dtype).mean(1)
    elif task == "discovery":  # the targets covered in this step; each is then moved (respawned or out of the arena)
        values["coverage"] = scenario.covered_targets.to(pos.dtype).sum(1) / scenario.n_targets
    return values


class SwarmStats(Transform):
    """Writes a swarm task's episode statistics (`STATS`, module docstring) under `("stats", name)`
    [B, 1] at every reset and step.

    The running sums are this transform's per-world state, zeroed with their world at a reset
    (partial resets included) and updated in place with no host read, as a CUDA graph of the step
    would need (VMAS's three scenarios themselves read the device on the host, so
    `collector.kind=cudagraph` cannot capture them today).

    Args:
        task: flocking, dispersion or discovery.
    """

    def __init__(self, task: str):
        self.kinds = STATS[task]
        super().__init__(in_keys=[], out_keys=[("stats", name) for name in self.kinds])
        self.task = task
        self._sums: torch.Tensor | None = None  # [B, n_stats]
        self._steps: torch.Tensor | None = None  # [B, 1]

    def _write(self, tensordict: TensorDictBase) -> TensorDictBase:
        means = self._sums / self._steps.clamp(min=1)
        for i, (name, kind) in enumerate(self.kinds.items()):
            tensordict.set(("stats", name), (means if kind == "mean" else self._sums)[:, i : i + 1].clone())
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        b, device = self.parent.batch_size[0], self.parent.device
        if self._sums is None or self._sums.shape[0] != b or self._sums.device != device:
            self._sums = torch.zeros(b, len(self.kinds), device=device)
            self._steps = torch.zeros(b, 1, device=device)
        mask = None if tensordict is None else tensordict.get("_reset", None)
        keep = torch.zeros(b, 1, device=device) if mask is None else (~mask.reshape(b, 1)).to(self._sums.dtype)
        self._sums.mul_(keep)
        self._steps.mul_(keep)
        return self._write(tensordict_reset)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        values = _measure(_simulator(self.parent), self.task)
        self._steps.add_(1)
        for i, (name, kind) in enumerate(self.kinds.items()):
            if kind == "last":
                self._sums[:, i].copy_(values[name])
            else:
                self._sums[:, i].add_(values[name])
        return self._write(next_tensordict)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        b, device = observation_spec.shape[0], observation_spec.device
        observation_spec["stats"] = Composite({name: Unbounded(shape=(b, 1), device=device) for name in self.kinds}, shape=(b,))
        return observation_spec


def with_stats(env: EnvBase, task: str) -> TransformedEnv:
    """`env` (a VMAS env of `task`, with its return counters) with `SwarmStats(task)` appended."""
    env = env if isinstance(env, TransformedEnv) else TransformedEnv(env)
    env.append_transform(SwarmStats(task))
    return env


# --- baselines -----------------------------------------------------------------------------------------
class _Rule:
    """What every swarm baseline shares: the simulator, the task check, and turning a force per
    agent into the group's action (clamped to the action bounds).

    Args:
        env: the VMAS env the rule acts in.
        name: the baseline's name (for errors).
        tasks: the tasks it applies to.
    """

    def __init__(self, env: EnvBase, name: str, tasks: tuple[str, ...]):
        self.sim, self.task = _simulator(env), _task(env)
        if self.task not in tasks:
            raise UsageError(f"baseline {name} applies to {', '.join('vmas/' + t for t in tasks)}, not vmas/{self.task}")
        if not self.sim.continuous_actions:
            raise UsageError(f"baseline {name} acts with continuous forces: set env.continuous_actions=true")
        (self.group,) = env.group_map
        spec = env.full_action_spec[self.group, "action"]
        self.low, self.high = spec.space.low, spec.space.high  # [B, n, 2]
        self.agents = self.sim.world.policy_agents

    def act(self, tensordict: TensorDictBase, force: torch.Tensor) -> TensorDictBase:
        force = force.to(self.low.device)
        return tensordict.set((self.group, "action"), torch.maximum(torch.minimum(force, self.high), self.low))


class Boids(_Rule):
    """Reynolds' boids ("Flocks, herds and schools", SIGGRAPH 1987) following flocking's target:
    each agent's force is the weighted sum of
        separation: away from agents within `separation` (centre distance), growing as they close in;
        alignment: towards the mean velocity of the agents within `view`;
        cohesion: towards the centroid of the agents within `view`;
        seek: towards the target's position and velocity (the flock's purpose in VMAS's flocking:
            every agent is rewarded for being 0.1 from every other agent and from the target);
        avoidance: away from an obstacle closer than `margin` to the agent's disc.
    The world's drag damps the motion. Weights were tuned on vmas/flocking with 8 agents.
    """

    def __init__(self, env: EnvBase, separation: float = 0.25, view: float = 0.5, margin: float = 0.1, weights: dict[str, float] | None = None):
        super().__init__(env, "boids", ("flocking",))
        self.separation, self.view, self.margin = separation, view, margin
        self.weights = {"separation": 6.0, "alignment": 0.5, "cohesion": 0.5, "seek": 2.0, "match": 0.5, "avoidance": 4.0} | (weights or {})
        self.target = self.sim.scenario._target
        self.obstacles = self.sim.scenario.obstacles

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        w = self.weights
        pos, vel = _positions(self.agents), torch.stack([a.state.vel for a in self.agents], 1)  # [B, n, 2]
        offset = pos.unsqueeze(1) - pos.unsqueeze(2)  # [B, i, j, 2]: p_j - p_i
        distance = offset.norm(dim=-1)  # [B, n, n]
        others = ~torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
        direction = offset / distance.clamp(min=1e-6).unsqueeze(-1)
        push = ((self.separation - distance) / self.separation).clamp(min=0) * others  # [B, n, n]
        force = -w["separation"] * (push.unsqueeze(-1) * direction).sum(2)
        near = ((distance < self.view) & others).to(pos.dtype)  # [B, n, n]
        count = near.sum(2, keepdim=True).clamp(min=1)
        force = force + w["cohesion"] * (near.unsqueeze(-1) * offset).sum(2) / count
        force = force + w["alignment"] * ((near @ vel) / count - vel * (near.sum(2, keepdim=True) > 0))
        force = force + w["seek"] * (self.target.state.pos.unsqueeze(1) - pos) + w["match"] * (self.target.state.vel.unsqueeze(1) - vel)
        if self.obstacles:
            centres = _positions(self.obstacles)  # [B, m, 2]
            away = pos.unsqueeze(2) - centres.unsqueeze(1)  # [B, n, m, 2]
            gap = away.norm(dim=-1) - _radii(self.obstacles, pos) - _radii(self.agents, pos).unsqueeze(-1)  # [B, n, m]
            strength = ((self.margin - gap) / self.margin).clamp(min=0)
            force = force + w["avoidance"] * (strength.unsqueeze(-1) * away / away.norm(dim=-1, keepdim=True).clamp(min=1e-6)).sum(2)
        return self.act(tensordict, force)


def assign(cost: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """The column each row takes [rows], by `scipy.optimize.linear_sum_assignment` over the open columns
    (min total cost; rows left over when fewer columns are open take their cheapest open column),
    -1 for every row when no column is open."""
    choice = np.full(cost.shape[0], -1)
    columns = np.flatnonzero(open_)
    if columns.size == 0:
        return choice
    rows, picked = linear_sum_assignment(cost[:, columns])
    choice[rows] = columns[picked]
    left = choice < 0
    choice[left] = columns[cost[left][:, columns].argmin(1)]
    return choice


class Assignment(_Rule):
    """Head for an assigned target, re-assigned every step by minimum total distance
    (`assign`, one `linear_sum_assignment` per world):
        dispersion: each agent takes an uneaten food;
        discovery: agents in fixed teams of `agents_per_target` (by index; the last team takes the
            remainder) take a target still in the arena, a team's cost the sum of its members'
            distances; a team's members take seats around it, `seat` from its centre and spread
            evenly in angle from the team's side, within the covering range of it.
    An agent's force is `gain` x (its goal - its position), clamped to the action bounds; the
    world's drag damps it. The assignment runs on the host (one device read per step).

    `greedy=True` (the `nearest` baseline) coordinates nothing: every agent heads for its own
    nearest open target, as an agent that knows where the targets are but not what the others do
    would (agents collide on the same food; on discovery a target is covered only when enough
    agents happen to share it). No host read.
    """

    def __init__(self, env: EnvBase, gain: float = 10.0, seat: float = 0.15, greedy: bool = False):
        super().__init__(env, "nearest" if greedy else "assignment", ("dispersion", "discovery"))
        self.greedy = greedy
        self.gain, self.seat = gain, seat
        n, dispersion = len(self.agents), self.task == "dispersion"
        self.targets = self.sim.world.landmarks if dispersion else self.sim.scenario._targets
        size = 1 if dispersion else self.sim.scenario._agents_per_target
        self.team = (torch.arange(n) // size).clamp(max=max(n // size - 1, 0))  # [n] each agent's team
        self.member = torch.arange(n) - self.team * size  # [n] its index within the team
        self.n_teams = int(self.team.max()) + 1

    def _open(self, targets: torch.Tensor) -> torch.Tensor:
        """Which targets can still be reached [B, m]: uneaten food, or a target in the arena."""
        if self.task == "dispersion":
            return ~torch.stack([food.eaten for food in self.targets], 1)
        bound = max(self.sim.world.x_semidim, self.sim.world.y_semidim) + 1.0
        return targets.abs().amax(-1) < bound

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        pos, targets = _positions(self.agents), _positions(self.targets)  # [B, n, 2], [B, m, 2]
        team = self.team.to(pos.device)
        distance = (pos.unsqueeze(2) - targets.unsqueeze(1)).norm(dim=-1)  # [B, n, m]
        if self.greedy:
            open_ = self._open(targets).unsqueeze(1)  # [B, 1, m]
            chosen = torch.where(open_, distance, torch.inf).argmin(-1)  # [B, n]
            chosen = torch.where(open_.any(-1), chosen, -1)
            goal = targets.gather(1, chosen.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2))
            return self.act(tensordict, self.gain * (goal - pos) * (chosen >= 0).unsqueeze(-1))
        cost = torch.zeros(pos.shape[0], self.n_teams, targets.shape[1], device=pos.device).index_add_(1, team, distance)  # [B, teams, m]
        cost, open_ = cost.cpu().numpy(), self._open(targets).cpu().numpy()
        choice = torch.as_tensor(np.stack([assign(c, o) for c, o in zip(cost, open_)]), device=pos.device)  # [B, teams]
        chosen = choice[:, team]  # [B, n]
        goal = targets.gather(1, chosen.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2))  # [B, n, 2]
        if self.task == "discovery":  # seats around the target, the first on the side of the team's centre
            size = torch.bincount(team)[team].to(pos.dtype)  # [n] each agent's team size
            centre = torch.zeros(pos.shape[0], self.n_teams, 2, device=pos.device).index_add_(1, team, pos)[:, team] / size.unsqueeze(-1)
            side = centre - goal  # [B, n, 2]
            angle = torch.atan2(side[..., 1], side[..., 0]) + 2 * torch.pi * self.member.to(pos.device) / size
            goal = goal + self.seat * torch.stack([angle.cos(), angle.sin()], -1)
        force = self.gain * (goal - pos) * (chosen >= 0).unsqueeze(-1)
        return self.act(tensordict, force)


# `python -m ca12.evaluate --baseline NAME --env vmas/<task>`: name -> factory(env) -> policy.
BASELINES: dict[str, Callable] = {"boids": Boids, "assignment": Assignment, "nearest": partial(Assignment, greedy=True)}
