"""Traffic signal control on a grid of intersections: a batched cell-transmission model in torch.

One agent per signalised intersection chooses which phase shows green; vehicles arrive at the
edges of the network, queue at the stop lines, turn, and leave at the far edges. The model is a
cell-transmission model (Daganzo 1994) with store-and-forward stop-line queues per movement, the
setting of max-pressure control (Varaiya 2013). SUMO is the real simulator, but no library offers
a traffic model that steps thousands of worlds at once in torch on any device, so this one is
written here by hand (a SUMO wrapper would be a separate piece). All worlds step together on
`device`; the only Python loops run over a link's (at most 3) feeders and the turn thresholds.

Network (`grid_network`): `nx.grid_2d_graph(rows, cols)` of intersections (tasks
`traffic/grid2x2`, `traffic/grid4x4`, `traffic/arterial1x4`). Every intersection has four sides
N, E, S, W (rows grow southwards) with one incoming and one outgoing directed link each: between
neighbours an internal link, at the grid's edge an entry link (from outside) and an exit link (to
outside). A link has `travel_time` cells (its free-flow travel time in steps): `travel_time - 1`
moving cells, then the stop-line cell, whose vehicles wait in one queue per movement (through,
right, left: the link leaves by the opposite side, the side on the driver's right, on the left;
no U-turns); an exit link's last cell discharges out of the network. Every cell holds at most
`cell_capacity` vehicles (so a link holds travel_time x cell_capacity), and at most
`saturation_flow` vehicles leave a cell, a movement's queue, or enter a link per step.

Units: a step is `STEP_SECONDS` = 5 s; vehicles are whole (integer counts in float tensors, exact).
With the defaults (4 cells of 10 vehicles, 2 vehicles/step) a link is a 20 s block of about 280 m
at 50 km/h, one lane of 1440 vehicles/h.

One step, every world, N = cell_capacity, Q = saturation_flow, n[l, c] the vehicles in moving cell
c of link l, q[l, m] the queue of movement m at its stop line, b[e] the buffer of entry e:
    1. Signals: intersection i asks for phase a[i] (0: N-S green, both approaches' three
       movements; 1: E-W green). It switches when a[i] differs from its phase and the phase has
       been green at least `min_green` steps; the switching step is all-red (no movement of that
       intersection moves: the yellow), then the new phase is green. (A minimum green, not a
       switch penalty: the cost of switching is the lost step, which the waiting reward sees.)
    2. Arrivals: A[e] ~ Poisson(arrival_rate[e]) vehicles join the entry buffer b[e], drawn from
       the env's own generator.
    3. Sending flows: a movement S[l, m] = green[l, m] min(q[l, m], Q) (exit links always green),
       an entry buffer S[e] = b[e], a moving cell S[l, c] = min(n[l, c], Q).
       Receiving flows: a link's first cell R[o] = min(Q, N - n[o, 0]), the next moving cell
       min(Q, N - n[l, c + 1]), the stop-line cell min(Q, N - sum_m q[l, m]); outside: unlimited.
    4. Flows: y = min(sending, receiving) from each cell to the next; into a link o, its feeders
       (the three movements that enter it: through before right before left; or its entry
       buffer) take the supply in that order: y[f_k] = min(S[f_k], R[o] - sum_{j<k} y[f_j]).
    5. Turns: each of the y[l, last] vehicles joining l's stop line picks movement m with
       probability turn_ratios[m], independently (the env's generator).
    6. Update: every cell, queue and buffer loses what it sent and gains what it received; what
       exit links send leaves the network (throughput). Every flow moves whole vehicles from one
       store to another, so arrived = in the network + in the buffers + exited, exactly.
Waiting: the vehicles that were on a link at the step's start and did not move during it,
w[l] = sum_c (n[l, c] - y[l, c]) + sum_m (q[l, m] - y[l, m]), plus the vehicles left in the entry
buffers (vehicles that could not enter the full network wait too).

Agents: one group "agents", agent i the intersection i (row-major); sides in order N, E, S, W.
Observation per agent, `("agents", "observation")` [B, I, 27] (counts / cell_capacity):
    [0:12)  the queues of its four incoming links, side-major (through, right, left)
    [12:16) the vehicles moving on its incoming links (not yet at the stop line)
    [16:20) the downstream load of its outgoing links, sum_p turn_ratios[p] x[o, p], where
            x[l, m] = q[l, m] + turn_ratios[m] sum_c n[l, c] counts the vehicles on l bound for m
            (the moving ones by expectation): Varaiya's downstream term, what a vehicle sent
            into o queues behind
    [20:24) the occupancy of its outgoing links / their capacity, in [0, 1] (spill-back ahead)
    [24:26) its phase, one-hot;  [26] the current phase's green steps / max_steps.
Action per agent, `("agents", "action")` [B, I] int64 in {0, 1}: the phase it asks for.
Reward per agent, `("agents", "reward")` [B, I, 1]: minus the vehicle-hours waited this step
on its incoming links and in its entry buffers, -w x STEP_SECONDS / 3600 (a 200-step return is
about -1 at the default demand, -10 to -30 when oversaturated); `shared_reward`: every agent gets
the intersections' mean.
The episode lasts `max_steps` steps (default 200, 1000 s) and is truncated there, from an empty
network with every signal N-S green.
Statistics `("stats", name)` [B, 1], running values of the episode (at its last step, its value):
    waiting_time: vehicle-steps waited so far (links and buffers) per vehicle arrived so far;
    queue: waiting vehicles per approach link (entry and internal links), mean over steps so far;
    throughput: vehicles that left the network so far per step.

Baselines (`BASELINES`): `fixed_time` (a fixed cycle, all intersections in step) and
`max_pressure` (Varaiya 2013), the classical controllers traffic engineers compare against.

Seeding: the env keeps its own generator (constructor `seed`, `set_seed`), registered under
`traffic/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import networkx as nx
import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, TransformedEnv

from ca12.envs.catalog import TRAFFIC_TASKS as TASKS  # the catalog lists tasks and documents their kwargs (start-up)
from ca12.envs.common import SeededTorchEnv, check_integers, group_output, make_discrete, reset_mask, set_group_specs
from ca12.errors import UsageError

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("rows", "cols", "arrival_rate", "turn_ratios", "travel_time", "cell_capacity", "saturation_flow", "min_green", "shared_reward")

STEP_SECONDS = 5.0  # one step of the model, in seconds (units of the reward only)
N_PHASES = 2  # 0: north-south green, 1: east-west green
THROUGH, RIGHT, LEFT = 0, 1, 2
# A step towards each side of an intersection, sides N, E, S, W (rows grow southwards).
_OFFSETS = ((-1, 0), (0, 1), (1, 0), (0, -1))
# EXIT_SIDE[s, m]: the side a vehicle entering from side s leaves by on movement m (through: the
# opposite side; right: a driver heading south turns west, the side before s; left: the side after).
EXIT_SIDE = torch.tensor([[(s + turn) % 4 for turn in (2, 3, 1)] for s in range(4)])
# The phase that gives an approach from side s green: N and S in phase 0, E and W in phase 1.
SIDE_PHASE = torch.arange(4) % N_PHASES
# Observation layout per agent (see the module docstring).
QUEUES, MOVING, DOWNSTREAM, OCCUPANCY, PHASE, GREEN_TIME = slice(0, 12), slice(12, 16), slice(16, 20), slice(20, 24), slice(24, 26), 26
OBS_DIM = 27


class Network(NamedTuple):
    """A grid of intersections as index tables (CPU long tensors). Links are numbered: each
    intersection's four outgoing links (internal or exit) in side order, intersections row-major,
    then the entry links in the same order."""

    incoming: torch.Tensor  # [I, 4]: the link entering intersection i from side s
    outgoing: torch.Tensor  # [I, 4]: the link leaving intersection i by side s
    destination: torch.Tensor  # [L, 3]: the link movement m of link l enters; -1 on exit links (they leave)
    entries: torch.Tensor  # [E]: the entry links, the order of a list `arrival_rate`


def grid_network(rows: int, cols: int) -> Network:
    """The links and movements of `nx.grid_2d_graph(rows, cols)`'s intersections, with entry and
    exit links on every side that has no neighbour."""
    graph = nx.grid_2d_graph(rows, cols)
    nodes = sorted(graph.nodes)  # (row, col), row-major
    index = {node: i for i, node in enumerate(nodes)}
    outgoing = torch.arange(4 * len(nodes)).view(-1, 4)
    incoming = torch.empty_like(outgoing)
    entries = []
    for i, (r, c) in enumerate(nodes):
        for s, (dr, dc) in enumerate(_OFFSETS):
            neighbour = (r + dr, c + dc)
            if graph.has_edge((r, c), neighbour):
                incoming[i, s] = outgoing[index[neighbour], (s + 2) % 4]  # the neighbour's link towards i
            else:
                incoming[i, s] = outgoing.numel() + len(entries)
                entries.append(int(incoming[i, s]))
    destination = torch.full((outgoing.numel() + len(entries), 3), -1)
    destination[incoming] = outgoing[:, EXIT_SIDE]  # [I, 4, 3]
    return Network(incoming, outgoing, destination, torch.tensor(entries, dtype=torch.long))


def _check_rates(name: str, value, size: int, low: float = 0.0) -> list[float]:
    """`value` (a number, or a list of `size` numbers) as `size` finite numbers >= `low`."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * size
    good = len(values) == size and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= low for v in values)
    if not good:
        raise UsageError(f"env.{name} must be a number >= {low} or a list of {size} such numbers, got {value!r}")
    return [float(v) for v in values]


class TrafficSignalEnv(SeededTorchEnv):
    """Signal control at a grid of intersections, a cell-transmission model (module docstring).

    Args:
        num_envs: parallel worlds (the env's batch size).
        rows, cols: the grid of intersections.
        arrival_rate: Poisson mean arrivals per step, one for every entry or a list (`entries`' order).
        turn_ratios: [through, right, left] probabilities, summing to 1.
        travel_time: cells per link (free-flow steps), at least 2.
        cell_capacity: vehicles per cell.
        saturation_flow: vehicles per step out of a cell or queue, or into a link.
        min_green: steps a phase stays green before it may switch, at least 1.
        shared_reward: every agent gets the mean reward of the intersections.
        max_steps: steps per episode (truncated there).
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: a size, rate or ratio out of range.
    """

    def __init__(
        self,
        num_envs: int = 1,
        rows: int = 2,
        cols: int = 2,
        arrival_rate: float | list[float] = 0.5,
        turn_ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
        travel_time: int = 4,
        cell_capacity: int = 10,
        saturation_flow: int = 2,
        min_green: int = 3,
        shared_reward: bool = False,
        max_steps: int = 200,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        check_integers(
            ("num_envs", num_envs, 1),
            ("rows", rows, 1),
            ("cols", cols, 1),
            ("max_steps", max_steps, 1),
            ("travel_time", travel_time, 2, " (moving cells, then the stop line)"),
            ("cell_capacity", cell_capacity, 1),
            ("saturation_flow", saturation_flow, 1),
            ("min_green", min_green, 1),
        )
        network = grid_network(rows, cols)
        rates = _check_rates("arrival_rate", arrival_rate, len(network.entries))
        ratios = _check_rates("turn_ratios", turn_ratios, 3)
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise UsageError(f"env.turn_ratios must sum to 1 (through, right, left), got {list(turn_ratios)!r}")
        if not isinstance(shared_reward, bool):
            raise UsageError(f"env.shared_reward must be true or false, got {shared_reward!r}")
        super().__init__("traffic", num_envs, device, seed)
        self.rows, self.cols, self.max_steps, self.min_green, self.shared_reward = rows, cols, max_steps, min_green, shared_reward
        self.travel_time, self.cell_capacity, self.saturation_flow = travel_time, float(cell_capacity), float(saturation_flow)
        self.n_agents, n_links, n_entries = network.incoming.shape[0], network.destination.shape[0], len(network.entries)
        self.group_map = {"agents": [f"intersection_{i}" for i in range(self.n_agents)]}

        dev = self.device
        self.incoming, self.outgoing, self.entries = network.incoming.to(dev), network.outgoing.to(dev), network.entries.to(dev)
        head = torch.full((n_links,), -1)  # the intersection each link enters, -1 for exit links
        head[network.incoming.flatten()] = torch.arange(self.n_agents).repeat_interleave(4)
        side = torch.zeros(n_links, dtype=torch.long)
        side[network.incoming.flatten()] = torch.arange(4).repeat(self.n_agents)
        exits = head < 0
        self._approach = (~exits).to(dev)  # [L]: links that end at a signal
        self._head = head.clamp(min=0).to(dev)
        self._link_phase = torch.where(exits, -1, SIDE_PHASE[side]).to(dev)  # [L]: the phase that gives it green; -1: always
        self._entry_node = head[network.entries].to(dev)  # [E]
        self._rates = torch.tensor(rates, device=dev)  # [E]
        self.turn_ratios = torch.tensor(ratios, device=dev)  # [3] through, right, left
        turn = torch.tensor(ratios).unsqueeze(-1).repeat(1, n_links)
        turn[:, exits] = torch.tensor([[1.0], [0.0], [0.0]])  # an exit link's one movement: out of the network
        self._turn = turn.to(dev)  # [3, L]
        self._turn_bounds = turn.cumsum(0)[:2].to(dev)  # [2, L]: a uniform draw past bound k picks movement k + 1
        # Flows are gathered from one row per world: [movements m*L+l (3L) | entry buffers (E) | a zero].
        # A link's feeders, in merge priority: through before right before left movements, or its buffer.
        pad = 3 * n_links + n_entries
        feeders = [[] for _ in range(n_links)]
        for m in range(3):
            for link in range(n_links):
                if network.destination[link, m] >= 0:
                    feeders[int(network.destination[link, m])].append(m * n_links + link)
        for k, link in enumerate(network.entries.tolist()):
            feeders[link].append(3 * n_links + k)
        self._feeders = torch.tensor([f + [pad] * (3 - len(f)) for f in feeders], device=dev).T.contiguous()  # [3, L]
        self._to_outside = (THROUGH * n_links + torch.nonzero(exits).flatten()).to(dev)  # exit links' movement: leaves

        # State, links last (reductions over cells or movements then add whole rows).
        b = num_envs
        zeros = functools.partial(torch.zeros, device=dev)
        self._cells = zeros(b, travel_time - 1, n_links)  # [B, C-1, L] vehicles in the moving cells
        self._queue = zeros(b, 3, n_links)  # [B, 3, L] stop-line queues per movement
        self._buffer = zeros(b, n_entries)  # [B, E] vehicles waiting to enter
        self._phase = zeros(b, self.n_agents, dtype=torch.long)  # [B, I]
        self._green = zeros(b, self.n_agents, dtype=torch.long)  # [B, I] steps the phase has been green
        self._t = zeros(b, dtype=torch.long)
        self._arrived, self._exited, self._waited, self._queued = zeros(b), zeros(b), zeros(b), zeros(b)  # episode sums [B]
        observation = Bounded(0.0, float(travel_time - 1), shape=(b, self.n_agents, OBS_DIM), device=dev)
        action = Categorical(N_PHASES, shape=(b, self.n_agents), dtype=torch.int64, device=dev)
        set_group_specs(self, {"agents": (observation, action)})
        self.full_observation_spec["stats"] = Composite(
            {name: Unbounded(shape=(b, 1), device=dev) for name in ("waiting_time", "queue", "throughput")}, shape=(b,)
        )

    # --- state, for baselines, tests and diagnostics -------------------------------------------------
    @property
    def steps(self) -> torch.Tensor:
        """Steps of each world's episode so far [B]."""
        return self._t.clone()

    @property
    def cells(self) -> torch.Tensor:
        """The vehicles in the moving cells [B, travel_time - 1, L]."""
        return self._cells.clone()

    @property
    def queues(self) -> torch.Tensor:
        """The stop-line queues [B, 3, L] (through, right, left)."""
        return self._queue.clone()

    @property
    def arrived(self) -> torch.Tensor:
        """Vehicles that arrived in the episode so far [B] (placed ones included)."""
        return self._arrived.clone()

    @property
    def exited(self) -> torch.Tensor:
        """Vehicles that left the network in the episode so far [B]."""
        return self._exited.clone()

    @property
    def in_network(self) -> torch.Tensor:
        """Vehicles on the links [B]."""
        return self._cells.sum((1, 2)) + self._queue.sum((1, 2))

    @property
    def in_buffers(self) -> torch.Tensor:
        """Vehicles waiting to enter [B]."""
        return self._buffer.sum(1)

    def place(self, world: int, link: int, count: int, movement: int = THROUGH) -> None:
        """Put `count` vehicles in `link`'s stop-line queue of `movement` in `world` (hand-built
        scenes in tests); they count as arrived."""
        self._queue[world, movement, link] += count
        self._arrived[world] += count

    # --- dynamics --------------------------------------------------------------------------------------
    def _observation(self) -> torch.Tensor:
        n = self.cell_capacity
        moving = self._cells.sum(1)  # [B, L]
        occupancy = (moving + self._queue.sum(1)) / (self.travel_time * n)
        bound_for = self._queue + moving.unsqueeze(1) * self._turn  # [B, 3, L]: x[l, m]
        downstream = (bound_for * self._turn).sum(1)  # [B, L]
        queues = self._queue[:, :, self.incoming].permute(0, 2, 3, 1).flatten(-2)  # [B, I, 4 sides x 3 movements]
        green_time = (self._green.float() / self.max_steps).clamp(max=1.0)
        return torch.cat(
            [
                queues / n,
                moving[:, self.incoming] / n,
                downstream[:, self.outgoing] / n,
                occupancy[:, self.outgoing],
                torch.nn.functional.one_hot(self._phase, N_PHASES).float(),
                green_time.unsqueeze(-1),
            ],
            -1,
        )  # [B, I, 27]

    def _out(self, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        out = group_output(self, {"agents": agents}, (self._t >= self.max_steps).unsqueeze(-1), ends_by="truncated")
        steps = self._t.clamp(min=1).float()
        stats = {"waiting_time": self._waited / self._arrived.clamp(min=1), "queue": self._queued / steps, "throughput": self._exited / steps}
        for name, value in stats.items():
            out.set(("stats", name), value.unsqueeze(-1))
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        for name in ("_cells", "_queue", "_buffer", "_phase", "_green", "_t", "_arrived", "_exited", "_waited", "_queued"):
            state = getattr(self, name)
            setattr(self, name, torch.where(mask.view(-1, *[1] * (state.dim() - 1)), torch.zeros_like(state), state))
        return self._out()

    def _signals(self, action: torch.Tensor) -> torch.Tensor:
        """Apply the phase requests [B, I]; returns which links' movements are green [B, L]."""
        switch = (action != self._phase) & (self._green >= self.min_green)
        self._phase = torch.where(switch, action, self._phase)
        self._green = torch.where(switch, 0, self._green + 1)
        shows = torch.where(switch, -1, self._phase)  # [B, I]: the green phase, -1 on the all-red step
        return (self._link_phase < 0) | (shows[:, self._head] == self._link_phase)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, capacity, saturation = self.batch_size[0], self.cell_capacity, self.saturation_flow
        n_links = self._queue.shape[-1]
        green = self._signals(tensordict.get(("agents", "action")).long())  # [B, L]
        arrivals = torch.poisson(self._rates.expand(b, -1), generator=self._rng)  # [B, E]
        turns = torch.rand(b, int(saturation), n_links, generator=self._rng, device=self.device)  # [B, Q, L]: a draw per joining vehicle
        self._buffer = self._buffer + arrivals
        self._arrived = self._arrived + arrivals.sum(1)

        # Into each link's first cell: its feeders in priority order share its receiving flow.
        supply = (capacity - self._cells[:, 0]).clamp(max=saturation)  # [B, L]
        sending = torch.cat(
            [(self._queue.clamp(max=saturation) * green.unsqueeze(1)).flatten(1), self._buffer, torch.zeros(b, 1, device=self.device)], 1
        )  # [B, 3L + E + 1]
        flow, room = torch.zeros_like(sending), supply
        for feeder in self._feeders:  # [L]: each link's k-th feeder
            moved = torch.minimum(sending[:, feeder], room)
            flow[:, feeder], room = moved, room - moved
        flow[:, self._to_outside] = sending[:, self._to_outside]
        crossed, entered = flow[:, : 3 * n_links].view(b, 3, n_links), flow[:, 3 * n_links : -1]  # [B, 3, L], [B, E]

        # Along each link, cell to cell and into the stop-line cell, where each vehicle picks its movement.
        ahead = torch.cat([self._cells[:, 1:], self._queue.sum(1, keepdim=True)], 1)  # [B, C-1, L]
        advance = torch.minimum(self._cells, (capacity - ahead).clamp(max=saturation))
        arriving = advance[:, -1:]  # [B, 1, L]
        present = torch.arange(int(saturation), device=self.device).unsqueeze(-1) < arriving  # [B, Q, L]: the k-th one exists
        up_to = torch.stack([(present & (turns < self._turn_bounds[k])).sum(1) for k in range(2)], 1)  # [B, 2, L]
        joined = torch.diff(up_to.float(), dim=1, prepend=torch.zeros_like(arriving), append=arriving)  # [B, 3, L]

        waiting = (self._cells - advance).sum(1) + (self._queue - crossed).sum(1)  # [B, L] did not move
        self._cells = self._cells - advance + torch.cat([(supply - room).unsqueeze(1), advance[:, :-1]], 1)
        self._queue = self._queue - crossed + joined
        self._buffer = self._buffer - entered
        self._exited = self._exited + flow[:, self._to_outside].sum(1)
        self._waited = self._waited + waiting.sum(1) + self._buffer.sum(1)
        self._queued = self._queued + waiting[:, self._approach].mean(1)
        self._t = self._t + 1

        per_agent = waiting[:, self.incoming].sum(-1).index_add(1, self._entry_node, self._buffer)  # [B, I]
        if self.shared_reward:
            per_agent = per_agent.mean(1, keepdim=True).expand(-1, self.n_agents)
        return self._out((-per_agent * STEP_SECONDS / 3600.0).unsqueeze(-1))


# --- baselines -----------------------------------------------------------------------------------------
def _traffic_env(env: EnvBase) -> TrafficSignalEnv:
    return env.base_env if isinstance(env, TransformedEnv) else env


class FixedTime:
    """Fixed-time control: every intersection asks for phase 0 for `cycle / 2` steps, then
    phase 1, all in step (no offsets). It reads the episode's step count from the env (the
    observation has none); the env turns each switch's first step all-red, so each phase gets one
    all-red step and `cycle / 2 - 1` green steps per cycle (the episode's first green has `cycle / 2`).

    Args:
        env: the traffic env (or a TransformedEnv of it) the policy acts in.
        cycle: steps per cycle, even; None: the shortest the env's min_green allows,
            2 (min_green + 1) (8 with the default min_green 3, the best cycle measured on grid2x2
            at arrival rates 0.5 to 1.0).

    Raises:
        UsageError: `cycle` odd, or too short for the env's `min_green`.
    """

    def __init__(self, env: EnvBase, cycle: int | None = None):
        self.env = _traffic_env(env)
        shortest = 2 * (self.env.min_green + 1)
        cycle = shortest if cycle is None else cycle
        if not isinstance(cycle, int) or isinstance(cycle, bool) or cycle % 2 or cycle < shortest:
            raise UsageError(
                f"fixed_time's cycle must be an even integer >= {shortest} (per phase one all-red step and "
                f"min_green = {self.env.min_green} green ones), got {cycle!r}"
            )
        self.half = cycle // 2

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        phase = (self.env.steps // self.half) % N_PHASES  # [B]
        return tensordict.set(("agents", "action"), phase.unsqueeze(-1).expand(-1, self.env.n_agents).clone())


def phase_pressures(observation: torch.Tensor, turn_ratios: torch.Tensor) -> torch.Tensor:
    """Each intersection's pressure per phase [..., I, 2] from its observation [..., I, 27] and
    the approaches' turn ratios [3], in units of cell_capacity: the sum over the phase's movements
    (l, m) of the weight w = x[l, m] - sum_p turn_ratios[p] x[o, p], o the link m enters (x: the
    vehicles bound for each movement, module docstring). This is the pressure of Varaiya 2013,
    "Max pressure control of a network of signalized intersections", with equal saturation flows."""
    queues = observation[..., QUEUES].unflatten(-1, (4, 3))  # [..., I, 4 sides, 3 movements]
    upstream = queues + observation[..., MOVING].unsqueeze(-1) * turn_ratios  # [..., I, 4, 3]: x[l, m]
    downstream = observation[..., DOWNSTREAM][..., EXIT_SIDE.to(observation.device)]  # [..., I, 4, 3]
    by_side = (upstream - downstream).sum(-1)  # [..., I, 4]
    return torch.stack([by_side[..., SIDE_PHASE == phase].sum(-1) for phase in range(N_PHASES)], -1)


class MaxPressure:
    """Max-pressure control: every intersection asks for the phase of largest pressure
    (`phase_pressures`), keeping its phase on a tie. It reads the observation and the env's turn
    ratios (a setting, not state); the env adds min_green and the all-red step."""

    def __init__(self, env: EnvBase):
        self.turn_ratios = _traffic_env(env).turn_ratios

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(("agents", "observation"))
        pressure = phase_pressures(observation, self.turn_ratios)  # [B, I, 2]
        current = observation[..., PHASE].argmax(-1, keepdim=True)  # [B, I, 1]
        best = pressure.argmax(-1, keepdim=True)
        keep = pressure.gather(-1, current) >= pressure.gather(-1, best)
        return tensordict.set(("agents", "action"), torch.where(keep, current, best).squeeze(-1))


# `python -m ca12.evaluate --baseline NAME --env traffic/...`: name -> factory(env) -> policy.
BASELINES: dict[str, Callable] = {"fixed_time": FixedTime, "max_pressure": MaxPressure}


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`TrafficSignalEnv` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, continuous actions asked for, or a bad value.
    """
    return make_discrete(cfg, seed, TrafficSignalEnv, TASKS, _KWARGS, "the phase each intersection asks for")
