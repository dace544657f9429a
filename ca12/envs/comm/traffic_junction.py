"""The traffic junction of CommNet, IC3Net and TarMAC, vectorised in plain torch.

Cars drive along fixed routes through one or four junctions and must not meet: a car sees only
its 3x3 neighbourhood, so avoiding collisions at a crowded junction pays for communication. The
task is defined by CommNet (Sukhbaatar et al. 2016, "Learning multiagent communication with
backpropagation", section 5.2), and its code by IC3Net (Singh et al. 2019, "Learning when to
communicate at scale", `ic3net-envs/ic3net_envs/traffic_junction_env.py` and `traffic_helper.py`
of github.com/IC3Net/IC3Net), which TarMAC (Das et al. 2019, section 5.2) reuses. No library
offers it batched in torch, so it is written here by hand; it follows IC3Net's code:

    * Grid `dim` x `dim`. easy: one two-way crossing of one-lane roads (row dim//2 eastwards,
      column dim//2 southwards), 2 entries, 1 route each; IC3Net's `--dim 6` is a 7 x 7 grid
      (it adds 1 for easy). medium: one two-lane road each way, right-hand traffic, a 2x2
      junction, 4 entries with 3 routes each (straight, right, left). hard: two two-lane roads
      each way (rows and columns dim//3-2, dim//3-1 and 2dim//3, 2dim//3+1), 4 junctions, 8
      entries with 7 routes each (every other exit; a route turns at most twice).
    * Presets (IC3Net's README and the papers): easy dim 7, n_max 5, arrival 0.3, 20 steps;
      medium dim 14, n_max 10, arrival 0.2, 40 steps; hard dim 18, n_max 20, arrival 0.05,
      80 steps (`env.max_steps` is the episode length; set it with the difficulty). IC3Net
      trains with a curriculum from `add_rate_min` up to these rates: `env.curriculum=
      {arrival_prob: [START, FIRST_FRAME, LAST_FRAME]}` (ca12/envs/curriculum.py) is that.
    * A step: every active car acts, gas (0: one cell along its route) or brake (1: stay); a car
      that gasses on the last cell of its route leaves, and its slot is free again. Then each
      entry, in order, admits a car with probability `arrival_prob` while fewer than `n_max`
      are in the system: a free slot drawn at random, a route of that entry drawn uniformly,
      placed on the route's first cell (on an occupied entry cell that is a collision, as in
      IC3Net).
    * Reward per active car and step (IC3Net `_get_reward`): -0.01 tau, tau the steps since it
      entered (0 on its arrival step), plus -10 when another car is in its cell (every car of
      a collision pays). A car that left, and an empty slot, gets 0.
    * The episode ends after `max_steps` steps (terminated: a fixed horizon, as in the papers);
      it is a success when no collision happened in it (IC3Net's `stat['success']`).

Observation per slot, `("agents", "observation")` [B, n_max, 4 + n_routes + 2 (2v+1)^2]:
    `[row, col (its cell / (dim - 1)) | active | last action (1: brake) | one-hot route |
      per cell of the (2v+1)^2 square around it: on a road, cars in it (itself included)]`,
    zeros for an empty slot. This is IC3Net's `vocab_type=scalar` observation (last action,
    route, location, vision of road and car counts) with two documented changes: the route is
    one-hot instead of IC3Net's scalar route_id / (npath - 1), and an active flag is added; the
    position comes first so `model=graph graph=random_geometric` (`position_features: 2`) can
    read it. IC3Net's `bool` vocabulary (a one-hot cell id per vision cell) and CommNet's car
    ids are not offered. IC3Net's default `--vision 0` is `vision=0` here; the default is 1.
Action per slot, `("agents", "action")` [B, n_max] int64: 0 gas, 1 brake (ignored when empty).
Reward per slot, `("agents", "reward")` [B, n_max, 1].
`("stats", "success")` [B, 1] float: 1 while the episode has had no collision, read at its
last step it is the episode's success (`episode_success`); `("stats", "collisions")` [B, 1]:
the collisions so far (cells holding two or more cars, summed over steps).

Empty slots still enter the policy and its messages: ca12's talking modules average or attend
over all n_max slots (IC3Net masks dead agents out of the communication), so an empty slot
sends the message of a zero observation.

Seeding: the env keeps its own generator (constructor `seed`, `set_seed`), registered under
`comm/traffic_junction/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import itertools

import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded

from ca12.envs.common import SeededTorchEnv, check_integers, group_output, mean_at_episode_ends, reset_mask, set_group_specs
from ca12.errors import UsageError

GAS, BRAKE = 0, 1
TIME_PENALTY, CRASH_PENALTY = -0.01, -10.0
# difficulty -> (dim, n_max, arrival_prob, episode steps of the papers)
PRESETS = {"easy": (7, 5, 0.3, 20), "medium": (14, 10, 0.2, 40), "hard": (18, 20, 0.05, 80)}
SOUTH, NORTH, EAST, WEST = (1, 0), (-1, 0), (0, 1), (0, -1)
STRAIGHT, RIGHT, LEFT = "straight", "right", "left"


def _lanes(difficulty: str, dim: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(entry cell, heading) of every entry, right-hand traffic (IC3Net's arrival points)."""
    if difficulty == "easy":
        return [((0, dim // 2), SOUTH), ((dim // 2, 0), EAST)]
    firsts = [dim // 2 - 1] if difficulty == "medium" else [dim // 3 - 2, 2 * dim // 3]
    lanes = []
    for a in firsts:  # a two-lane road on rows (a, a+1) and one on columns (a, a+1)
        lanes += [((0, a), SOUTH), ((dim - 1, a + 1), NORTH), ((a + 1, 0), EAST), ((a, dim - 1), WEST)]
    return lanes


def _drive(start: tuple[int, int], heading: tuple[int, int], turns: tuple[str, ...], junction: torch.Tensor) -> tuple:
    """The cells of one route: straight ahead from `start`, taking the next of `turns` on entering
    each junction (right: on its first cell; left: one cell further, across the oncoming lane),
    until the edge of the grid."""
    dim = junction.shape[0]
    (r, c), (dr, dc), turns = start, heading, list(turns)
    cells = [(r, c)]
    while 0 <= r + dr < dim and 0 <= c + dc < dim:
        entering = bool(junction[r + dr, c + dc]) and not bool(junction[r, c])
        r, c = r + dr, c + dc
        cells.append((r, c))
        if entering and turns:
            turn = turns.pop(0)
            if turn == RIGHT:
                dr, dc = dc, -dr
            elif turn == LEFT:
                r, c = r + dr, c + dc
                cells.append((r, c))
                dr, dc = -dc, dr
    return tuple(cells)


def junction_layout(difficulty: str, dim: int) -> tuple[torch.Tensor, list[list[tuple]]]:
    """The road cells [dim, dim] (bool) and, per entry, its routes (each a tuple of cells).

    Every entry gets one route per distinct turn sequence: none on easy, one turn of (straight,
    right, left) on medium, two on hard (a route that leaves after one junction is kept once).
    """
    road = torch.zeros(dim, dim, dtype=torch.bool)
    lanes = _lanes(difficulty, dim)
    for (r, c), (dr, dc) in lanes:
        if dr:
            road[:, c] = True
        else:
            road[r, :] = True
    rows, cols = road.all(1), road.all(0)
    junction = rows[:, None] & cols[None, :]
    n_turns = {"easy": 0, "medium": 1, "hard": 2}[difficulty]
    routes = []
    for start, heading in lanes:
        paths = [_drive(start, heading, turns, junction) for turns in itertools.product((STRAIGHT, RIGHT, LEFT), repeat=n_turns)]
        routes.append(list(dict.fromkeys(paths)))  # distinct, in order
    return road, routes


class TrafficJunctionEnv(SeededTorchEnv):
    """Cars on fixed routes through junctions; gas or brake, and do not collide.

    Args:
        num_envs: parallel worlds (the env's batch size).
        difficulty: easy, medium or hard (the grid, its routes and the presets).
        max_steps: steps per episode (the papers: 20, 40, 80).
        dim: grid side (None: the difficulty's); easy odd >= 3, medium even >= 4, hard a multiple of 3 >= 9.
        n_max: most cars at once, the agent slots (None: the difficulty's).
        arrival_prob: probability that an entry admits a car at a step (None: the difficulty's).
        vision: radius of the square a car sees (1: 3x3).
        device: where the worlds live.
        seed: seed of the env's own generator.

    Raises:
        UsageError: an unknown difficulty or a value out of range.
    """

    def __init__(
        self,
        num_envs: int = 1,
        difficulty: str = "medium",
        max_steps: int | None = None,
        dim: int | None = None,
        n_max: int | None = None,
        arrival_prob: float | None = None,
        vision: int = 1,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if difficulty not in PRESETS:
            raise UsageError(f"env.difficulty must be one of {', '.join(PRESETS)}, got {difficulty!r}")
        preset_dim, preset_n, preset_p, preset_steps = PRESETS[difficulty]
        dim, n_max = preset_dim if dim is None else dim, preset_n if n_max is None else n_max
        arrival_prob, max_steps = preset_p if arrival_prob is None else arrival_prob, preset_steps if max_steps is None else max_steps
        check_integers(("num_envs", num_envs, 1), ("max_steps", max_steps, 1), ("n_max", n_max, 1), ("vision", vision, 0))
        shape_ok = {"easy": dim % 2 == 1 and dim >= 3, "medium": dim % 2 == 0 and dim >= 4, "hard": dim % 3 == 0 and dim >= 9}
        if not isinstance(dim, int) or isinstance(dim, bool) or not shape_ok[difficulty]:
            rule = {"easy": "an odd integer >= 3", "medium": "an even integer >= 4", "hard": "a multiple of 3 >= 9"}[difficulty]
            raise UsageError(f"env.dim on {difficulty} must be {rule}, got {dim!r}")
        if isinstance(arrival_prob, bool) or not isinstance(arrival_prob, (int, float)) or not 0.0 <= arrival_prob <= 1.0:
            raise UsageError(f"env.arrival_prob must be a probability in [0, 1], got {arrival_prob!r}")
        super().__init__("comm/traffic_junction", num_envs, device, seed)
        self.difficulty, self.dim, self.n_max, self.vision = difficulty, dim, n_max, vision
        self.arrival_prob, self.max_steps = float(arrival_prob), max_steps
        self.group_map = {"agents": [f"car_{i}" for i in range(n_max)]}

        road, per_entry = junction_layout(difficulty, dim)
        routes = [route for entry in per_entry for route in entry]
        self.n_entries, self.routes_per_entry, self.n_routes = len(per_entry), len(per_entry[0]), len(routes)
        longest = max(len(route) for route in routes)
        cells = torch.zeros(self.n_routes, longest, 2, dtype=torch.long)
        for i, route in enumerate(routes):
            cells[i, : len(route)] = torch.tensor(route)
        self._route_cells = cells.to(self.device)  # [R, L, 2], padded
        self._route_length = torch.tensor([len(route) for route in routes], device=self.device)  # [R]
        self._road = torch.nn.functional.pad(road.float(), (vision,) * 4).to(self.device)  # [dim + 2v, dim + 2v]
        span = torch.arange(2 * vision + 1, device=self.device)
        self._window = torch.stack(torch.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2)  # [K, 2] offsets in the padded grid

        b, n = num_envs, n_max
        zeros = torch.zeros(b, n, dtype=torch.long, device=self.device)
        self._active = torch.zeros(b, n, dtype=torch.bool, device=self.device)
        self._route, self._progress, self._tau, self._last_action = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
        self._t = torch.zeros(b, dtype=torch.long, device=self.device)
        self._collisions = torch.zeros(b, dtype=torch.long, device=self.device)
        self.obs_dim = 4 + self.n_routes + 2 * self._window.shape[0]
        observation = Bounded(0.0, float(n_max), shape=(b, n, self.obs_dim), dtype=torch.float32, device=self.device)
        action = Categorical(2, shape=(b, n), dtype=torch.int64, device=self.device)
        set_group_specs(self, {"agents": (observation, action)})
        self.full_observation_spec["stats"] = Composite(
            success=Bounded(0.0, 1.0, shape=(b, 1), device=self.device), collisions=Unbounded(shape=(b, 1), device=self.device), shape=(b,)
        )

    # --- state, for tests and diagnostics ---------------------------------------------------------
    @property
    def positions(self) -> torch.Tensor:
        """Every slot's cell [B, n_max, 2] (row, col; meaningless for empty slots)."""
        index = self._progress.clamp(max=self._route_cells.shape[1] - 1)
        return self._route_cells[self._route, index]

    @property
    def active(self) -> torch.Tensor:
        """Which slots hold a car [B, n_max] (bool)."""
        return self._active.clone()

    def place(self, world: int, slot: int, route: int, progress: int = 0, tau: int = 0) -> None:
        """Put a car in `slot` of `world` at cell `progress` of `route` (hand-built scenes in tests)."""
        self._active[world, slot] = True
        self._route[world, slot], self._progress[world, slot], self._tau[world, slot] = route, progress, tau

    def route_cells(self, route: int) -> torch.Tensor:
        """The cells [L, 2] of route `route`, entry first."""
        return self._route_cells[route, : int(self._route_length[route])]

    # --- dynamics -----------------------------------------------------------------------------------
    def _cell_counts(self) -> torch.Tensor:
        """Active cars per cell [B, dim * dim]."""
        cell = self.positions[..., 0] * self.dim + self.positions[..., 1]  # [B, n]
        counts = torch.zeros(self._active.shape[0], self.dim * self.dim, device=self.device)
        return counts.scatter_add(1, cell, self._active.float())

    def _arrive(self) -> None:
        """Each entry admits a car with `arrival_prob`, in entry order while slots are free."""
        b, e, n = self._active.shape[0], self.n_entries, self.n_max
        want = torch.rand(b, e, generator=self._rng, device=self.device) < self.arrival_prob  # [B, E]
        pick = torch.rand(b, e, generator=self._rng, device=self.device)  # [B, E]: which route of the entry
        shuffle = torch.rand(b, n, generator=self._rng, device=self.device)  # [B, n]: which free slot
        free = (~self._active).sum(1, keepdim=True)  # [B, 1]
        rank = want.long().cumsum(1) - 1  # [B, E]: the k-th car admitted this step gets the k-th free slot
        admit = want & (rank < free)
        order = torch.argsort(shuffle + self._active.float() * 2, dim=1)  # free slots first, in random order
        slot = torch.where(admit, order.gather(1, rank.clamp(0, n - 1)), n)  # [B, E]; n: nobody
        route = torch.arange(e, device=self.device) * self.routes_per_entry + (pick * self.routes_per_entry).long().clamp(
            max=self.routes_per_entry - 1
        )

        def put(state: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
            grown = torch.cat([state, state[:, :1]], 1)  # a dummy column n for entries that admit nobody
            return grown.scatter(1, slot, value.to(state.dtype).expand(b, e))[:, :n]

        arrived = put(torch.zeros_like(self._active), torch.ones(1, 1, dtype=torch.bool, device=self.device))
        self._route = put(self._route, route)
        self._active = self._active | arrived
        self._progress = torch.where(arrived, 0, self._progress)
        self._tau = torch.where(arrived, 0, self._tau)
        self._last_action = torch.where(arrived, GAS, self._last_action)

    def _observation(self) -> torch.Tensor:
        b, n, v = self._active.shape[0], self.n_max, self.vision
        position = self.positions  # [B, n, 2]
        counts = torch.nn.functional.pad(self._cell_counts().view(b, self.dim, self.dim), (v,) * 4)  # [B, D, D], D = dim + 2v
        seen = position.unsqueeze(2) + self._window  # [B, n, K, 2] cells of the padded grid
        flat = (seen[..., 0] * (self.dim + 2 * v) + seen[..., 1]).view(b, -1)  # [B, n K]
        cars = counts.view(b, -1).gather(1, flat).view(b, n, -1)  # [B, n, K]
        road = self._road.view(-1)[flat].view(b, n, -1)  # [B, n, K]
        vision = torch.stack([road, cars], -1).flatten(2)  # [B, n, 2K]
        route = torch.nn.functional.one_hot(self._route, self.n_routes).float()  # [B, n, R]
        scalars = torch.stack(
            [position[..., 0] / (self.dim - 1), position[..., 1] / (self.dim - 1), torch.ones(b, n, device=self.device), self._last_action.float()],
            -1,
        )  # [B, n, 4]
        return torch.cat([scalars, route, vision], -1) * self._active.unsqueeze(-1)  # empty slots: zeros

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        agents = {"observation": self._observation()} | ({} if reward is None else {"reward": reward})
        out = group_output(self, {"agents": agents}, done, ends_by="terminated")
        out.set(("stats", "success"), (self._collisions == 0).float().unsqueeze(-1))
        out.set(("stats", "collisions"), self._collisions.float().unsqueeze(-1))
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        self._active = self._active & ~mask.unsqueeze(-1)  # an episode starts with an empty grid (IC3Net)
        self._t = torch.where(mask, 0, self._t)
        self._collisions = torch.where(mask, 0, self._collisions)
        return self._out(torch.zeros(mask.shape[0], 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action")).long()  # [B, n]
        gas = self._active & (action == GAS)
        self._tau = self._tau + self._active.long()
        self._last_action = torch.where(self._active, action, self._last_action)
        self._progress = self._progress + gas.long()
        left = gas & (self._progress >= self._route_length[self._route])  # gassed on the last cell
        self._active = self._active & ~left
        self._arrive()
        counts = self._cell_counts()  # [B, dim * dim]
        cell = self.positions[..., 0] * self.dim + self.positions[..., 1]
        crashed = self._active & (counts.gather(1, cell) > 1)  # [B, n]
        self._collisions = self._collisions + (counts > 1).sum(1)
        reward = (TIME_PENALTY * self._tau + CRASH_PENALTY * crashed) * self._active  # [B, n]
        self._t = self._t + 1
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward.unsqueeze(-1).float())


# --- success rate ---------------------------------------------------------------------------------
def episode_success(batch: TensorDictBase) -> torch.Tensor:
    """Success rate of the episodes that ended in a collected batch [..., T] (NaN when none did):
    the share of them without a collision (IC3Net's success), read at their last steps."""
    return mean_at_episode_ends(batch["next", "stats", "success"], batch["next", "done"])
