"""The grid family's env, `GridEnv`: buildings with batteries, PV and flexible loads on a
pandapower feeder, batched in torch, with its kwarg checks (`_number`); the feeder comes from
`feeders`, the power flow, profiles and steps from `physics`, and the model is documented in the
package docstring (ca12/envs/grid/__init__.py).
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded

from ca12.envs.common import SeededTorchEnv, check_integers, group_output, reset_mask, set_group_specs
from ca12.envs.grid.feeders import FEEDERS, read_feeder
from ca12.envs.grid.physics import LinearPowerFlow, battery_step, flexible_step, load_shape, price, sun
from ca12.errors import UsageError

TASKS = tuple(FEEDERS)
ACTION_LEVELS = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])  # discrete actions: fractions of the power limit
FLEXIBLE_LEVELS = torch.tensor([0.0, 0.5, 1.0])  # discrete flexible-load actions: fractions of its power limit


def _number(name: str, value, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """`value` as a float after a one-line check that it is a number in its range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if high < math.inf else ')'}"
        raise UsageError(f"env.{name} must be a number in {bounds}, got {value!r}")
    return float(value)


# --- the env ---------------------------------------------------------------------------------------------
class GridEnv(SeededTorchEnv):
    """Buildings with batteries, PV and flexible loads on a pandapower feeder, trading at time-of-use prices.

    Args:
        task: the feeder (`FEEDERS`).
        num_envs: parallel worlds (the env's batch size).
        max_steps: steps per day (dt = 24 / max_steps hours).
        continuous_actions: `Bounded` power fractions (true) or levels (false): the 5 `ACTION_LEVELS`
            x the 3 `FLEXIBLE_LEVELS` (the 5 alone when `flexible_share` is 0).
        device: where the worlds live.
        seed: seed of the env's own generator.
        Other kwargs: `GRID_KEY_DOCS` (ca12/envs/catalog.py).

    Attributes:
        last_step: the last step's flows, for tests and diagnostics: per building `load_kw`
            (inflexible), `pv_kw`, `battery_kw`, `flexible_kw` (0 without flexible loads),
            `import_kw` [B, n], and the feeder's `voltage` [B, n_bus] (pu) and `loading`
            [B, n_branch] (fractions of the ratings).
        flexible: whether the buildings have flexible loads (`flexible_share` > 0).
        flexible_kwh, flexible_max_kw: each building's daily flexible energy F_i and power limit [n].
        in_window: whether step t (0..T, T = max_steps: past the day) may run flexible load [T + 1].
        window_steps_after: the window steps after step t [T + 1].

    Raises:
        UsageError: a value out of range, or pandapower missing.
    """

    def __init__(
        self,
        task: str = "cigre_lv",
        num_envs: int = 1,
        max_steps: int = 24,
        continuous_actions: bool = True,
        n_buildings: int | None = None,
        battery_hours: float = 2.0,
        battery_power: float = 0.5,
        efficiency: float = 0.9,
        initial_soc: float = 0.5,
        pv_size: float = 1.0,
        max_cloud_cover: float = 0.8,
        load_noise: float = 0.1,
        flexible_share: float = 0.2,
        flexible_window: list[float] = (7.0, 24.0),
        flexible_power: float = 0.5,
        tariff: list[float] = (0.10, 0.20, 0.35),
        feed_in_price: float = 0.05,
        voltage_band: float = 0.05,
        voltage_penalty: float = 1.0,
        overload_penalty: float = 1.0,
        shared_reward: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if task not in FEEDERS:
            raise UsageError(f"unknown grid task '{task}'; choose one of: {', '.join(TASKS)}")
        check_integers(("num_envs", num_envs, 1), ("max_steps", max_steps, 1))
        if not isinstance(tariff, (list, tuple)) or len(tariff) != 3:
            raise UsageError(f"env.tariff must be [off-peak, day, peak] prices, got {tariff!r}")
        tariff = [_number(f"tariff[{k}]", value, 0.0) for k, value in enumerate(tariff)]
        if sorted(tariff) != tariff:
            raise UsageError(f"env.tariff must be non-decreasing (off-peak <= day <= peak), got {tariff}")
        for name, value in (("continuous_actions", continuous_actions), ("shared_reward", shared_reward)):
            if not isinstance(value, bool):
                raise UsageError(f"env.{name} must be true or false, got {value!r}")
        self.battery_hours = _number("battery_hours", battery_hours, 0.0, low_open=True)
        self.battery_power = _number("battery_power", battery_power, 0.0, low_open=True)
        self.efficiency = _number("efficiency", efficiency, 0.0, 1.0, low_open=True)
        self.initial_soc = _number("initial_soc", initial_soc, 0.0, 1.0)
        self.pv_size = _number("pv_size", pv_size, 0.0)
        self.max_cloud_cover = _number("max_cloud_cover", max_cloud_cover, 0.0, 1.0)
        self.load_noise = _number("load_noise", load_noise, 0.0)
        self.flexible_share = _number("flexible_share", flexible_share, 0.0, 1.0)
        self.flexible_power = _number("flexible_power", flexible_power, 0.0, low_open=True)
        if not isinstance(flexible_window, (list, tuple)) or len(flexible_window) != 2:
            raise UsageError(f"env.flexible_window must be [start, end] hours, got {flexible_window!r}")
        self.flexible_window = (
            _number("flexible_window[0]", flexible_window[0], 0.0, 24.0),
            _number("flexible_window[1]", flexible_window[1], 0.0, 24.0),
        )
        self.feed_in_price = _number("feed_in_price", feed_in_price, 0.0)
        self.voltage_band = _number("voltage_band", voltage_band, 0.0, 1.0, low_open=True)
        self.voltage_penalty = _number("voltage_penalty", voltage_penalty, 0.0)
        self.overload_penalty = _number("overload_penalty", overload_penalty, 0.0)
        feeder = read_feeder(task)
        n_loads = len(feeder.load_row)
        n = n_loads if n_buildings is None else n_buildings
        check_integers(("n_buildings", n, 1))
        if n > n_loads:
            raise UsageError(f"env.n_buildings must be at most the {n_loads} loads of grid/{task}, got {n}")
        dt = 24.0 / max_steps
        middles = (torch.arange(max_steps, dtype=torch.float64) + 0.5) * dt
        start, end = self.flexible_window
        in_window = (middles >= start) & (middles < end)
        if not bool(in_window.any()):
            raise UsageError(f"env.flexible_window {[start, end]} holds no step's middle (steps of {dt:g} h)")
        self.flexible = self.flexible_share > 0  # off: the env of batteries and PV only (8 features, 1-D actions)
        daily_shape = dt * float(load_shape(middles.float()).double().sum())  # expected daily load energy / L_i (kWh per kW)
        window_hours = dt * int(in_window.sum())
        if self.flexible and self.flexible_share * daily_shape > self.flexible_power * window_hours * (1 + 1e-6):
            raise UsageError(
                f"env.flexible_power x the window's {window_hours:g} h must cover the flexible energy (flexible_share x "
                f"{daily_shape:.3f} h of peak load): at least {self.flexible_share * daily_shape / window_hours:.3f}, "
                f"got {self.flexible_power}"
            )
        super().__init__(f"grid/{task}", num_envs, device, seed)
        self.task, self.n_agents, self.max_steps, self.dt = task, n, max_steps, dt
        self.continuous_actions, self.shared_reward = continuous_actions, shared_reward
        self.group_map = {"agents": [f"building_{i}" for i in range(n)]}

        dev = self.device
        self.power_flow = LinearPowerFlow(feeder, dev)
        self.tariff = torch.tensor(tariff, device=dev)
        self.peak_kw = feeder.load_peak_kw.to(dev)  # [n_load], the agents first
        self.tan_phi = feeder.load_tan_phi.to(dev)
        self.agent_bus = feeder.load_row[:n].to(dev)  # [n]
        self.capacity_kwh = self.battery_hours * self.peak_kw[:n]  # [n]
        self.max_kw = self.battery_power * self.peak_kw[:n]
        self.pv_kw = self.pv_size * self.peak_kw[:n]
        self.levels = ACTION_LEVELS.to(dev)
        # The agents' inflexible load is (1 - flexible_share) of their load; the passive loads keep theirs.
        self.base_kw = self.peak_kw if not self.flexible else torch.cat([(1 - self.flexible_share) * self.peak_kw[:n], self.peak_kw[n:]])
        self.flexible_kwh = self.flexible_share * daily_shape * self.peak_kw[:n]  # [n] the day's flexible energy
        self.flexible_max_kw = self.flexible_power * self.peak_kw[:n]  # [n]
        self.flexible_levels = FLEXIBLE_LEVELS.to(dev)
        # Per step (and one past the day's end): in the window, and the window steps after it.
        self.in_window = torch.cat([in_window, torch.tensor([False])]).to(dev)  # [T + 1]
        self.window_steps_after = (int(in_window.sum()) - torch.cumsum(self.in_window.long(), 0)).to(dev)  # [T + 1]

        b = num_envs
        self._t = torch.zeros(b, dtype=torch.long, device=dev)
        self._soc = torch.full((b, n), self.initial_soc, device=dev)
        self._flexible_left = self.flexible_kwh.expand(b, n).clone()  # the flexible energy still to serve today (kWh)
        self._clear = torch.ones(b, device=dev)  # 1 - cloud cover of the day
        self._load = torch.zeros(b, n_loads, device=dev)  # this step's load of every load (kW)
        self._voltage = torch.ones(b, n, device=dev)  # at each agent's bus, batteries idle
        self._last_total = torch.zeros(b, device=dev)
        self._stats = {name: torch.zeros(b, device=dev) for name in ("cost", "peak_load", "ramping", "violations")}
        self.last_step: dict[str, torch.Tensor] = {}
        observation = Unbounded(shape=(b, n, 10 if self.flexible else 8), device=dev)
        if not self.flexible:
            action = (
                Bounded(-1.0, 1.0, shape=(b, n, 1), device=dev)
                if continuous_actions
                else Categorical(len(ACTION_LEVELS), shape=(b, n), dtype=torch.int64, device=dev)
            )
        elif continuous_actions:  # [battery in [-1, 1], flexible load in [0, 1]]
            low = torch.tensor([-1.0, 0.0], device=dev).expand(b, n, 2)
            action = Bounded(low, torch.ones_like(low), shape=(b, n, 2), device=dev)
        else:  # battery level x flexible level
            action = Categorical(len(ACTION_LEVELS) * len(FLEXIBLE_LEVELS), shape=(b, n), dtype=torch.int64, device=dev)
        set_group_specs(self, {"agents": (observation, action)})
        self.full_observation_spec["stats"] = Composite({name: Unbounded(shape=(b, 1), device=dev) for name in self._stats}, shape=(b,))

    # --- state, for baselines, tests and diagnostics --------------------------------------------------
    @property
    def soc(self) -> torch.Tensor:
        """Every battery's state of charge [B, n]."""
        return self._soc.clone()

    @property
    def flexible_left(self) -> torch.Tensor:
        """The flexible energy every building still has to serve today [B, n] (kWh)."""
        return self._flexible_left.clone()

    @property
    def loads(self) -> torch.Tensor:
        """This step's (inflexible) load of every load of the feeder, the agents' first [B, n_load] (kW)."""
        return self._load.clone()

    def _hour(self) -> torch.Tensor:
        """The middle of the current step, hours since the day's midnight [B]."""
        return (self._t + 0.5) * self.dt

    def _pv(self) -> torch.Tensor:
        """This step's PV output of every agent (kW) [B, n]."""
        return self.pv_kw * (sun(self._hour()) * self._clear).unsqueeze(-1)

    def _flow(self, import_kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Voltages and loadings with the agents importing `import_kw` [B, n], the passive loads their load."""
        p = torch.cat([import_kw, self._load[:, self.n_agents :]], 1)  # [B, n_load]
        return self.power_flow(p, self._load * self.tan_phi)

    def _draw(self, mask: torch.Tensor) -> None:
        """This step's loads for the worlds in `mask` [B]; drawn for every world, so the stream
        does not depend on which worlds step or reset."""
        noise = 1 + self.load_noise * torch.randn(self._load.shape, generator=self._rng, device=self.device)
        load = self.base_kw * load_shape(self._hour()).unsqueeze(-1) * noise.clamp_min(0)
        self._load = torch.where(mask.unsqueeze(-1), load, self._load)
        voltage, _ = self._flow(self._load[:, : self.n_agents] - self._pv())
        self._voltage = torch.where(mask.unsqueeze(-1), voltage[:, self.agent_bus], self._voltage)

    def _out(self, done: torch.Tensor, reward: torch.Tensor | None = None) -> TensorDictBase:
        n, hour = self.n_agents, self._hour()
        clock = torch.stack(
            [torch.sin(2 * math.pi * hour / 24), torch.cos(2 * math.pi * hour / 24), price(hour, self.tariff), price(hour + 1, self.tariff)], -1
        )  # [B, 4]
        own = torch.stack(
            [self._load[:, :n] / self.peak_kw[:n], self._pv() / self.peak_kw[:n], self._soc, (self._voltage - 1) / self.voltage_band], -1
        )  # [B, n, 4]
        observation = torch.cat([clock.unsqueeze(1).expand(-1, n, -1), own], -1)
        if self.flexible:
            start, end = self.flexible_window
            time_left = ((end - self._t * self.dt) / (end - start)).clamp_min(0)  # [B]
            flexible = torch.stack([self._flexible_left / self.flexible_kwh, time_left.unsqueeze(-1).expand(-1, n)], -1)
            observation = torch.cat([observation, flexible], -1)
        agents = {"observation": observation} | ({} if reward is None else {"reward": reward})
        out = group_output(self, {"agents": agents}, done, ends_by="terminated")
        for name, value in self._stats.items():
            out.set(("stats", name), value.unsqueeze(-1).clone())
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        mask = reset_mask(self, tensordict)  # [B]
        self._t = torch.where(mask, 0, self._t)
        self._soc = torch.where(mask.unsqueeze(-1), self.initial_soc, self._soc)
        self._flexible_left = torch.where(mask.unsqueeze(-1), self.flexible_kwh, self._flexible_left)
        clear = 1 - self.max_cloud_cover * torch.rand(mask.shape, generator=self._rng, device=self.device)
        self._clear = torch.where(mask, clear, self._clear)
        for name, value in self._stats.items():
            self._stats[name] = torch.where(mask, 0.0, value)
        self._draw(mask)
        return self._out(torch.zeros_like(mask).unsqueeze(-1))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        k = len(FLEXIBLE_LEVELS)
        if self.continuous_actions:
            fraction = action[..., 0].clamp(-1, 1)  # [B, n]
        else:
            fraction = self.levels[action // k] if self.flexible else self.levels[action]
        n, pv = self.n_agents, self._pv()
        power, self._soc = battery_step(self._soc, fraction * self.max_kw, self.capacity_kwh, self.max_kw, self.efficiency, self.dt)
        load = self._load[:, :n]
        import_kw = load - pv + power  # [B, n]
        flexible_kw = torch.zeros_like(load)
        if self.flexible:
            run = action[..., 1].clamp(0, 1) if self.continuous_actions else self.flexible_levels[action % k]  # [B, n]
            t = self._t.clamp(max=self.max_steps)
            served = flexible_step(
                self._flexible_left,
                run * self.flexible_max_kw * self.dt,
                self.flexible_max_kw * self.dt,
                self.window_steps_after[t].unsqueeze(-1),
                self.in_window[t].unsqueeze(-1),
            )
            self._flexible_left = self._flexible_left - served
            flexible_kw = served / self.dt
            import_kw = import_kw + flexible_kw
        voltage, loading = self._flow(import_kw)
        now = price(self._hour(), self.tariff).unsqueeze(-1)  # [B, 1]
        cost = self.dt * torch.where(import_kw > 0, now * import_kw, self.feed_in_price * import_kw)  # [B, n] EUR
        voltage_excess = 100 * ((voltage - 1).abs() - self.voltage_band).clamp_min(0).sum(1)  # [B], percentage points
        overload = 100 * (loading - 1).clamp_min(0).sum(1)
        penalty = self.voltage_penalty * voltage_excess + self.overload_penalty * overload  # [B]
        charged = cost.mean(1, keepdim=True).expand(-1, n) if self.shared_reward else cost
        reward = (-charged - penalty.unsqueeze(-1)).unsqueeze(-1)  # [B, n, 1]

        total = import_kw.sum(1) + self._load[:, n:].sum(1)  # [B] the feeder's import
        first = self._t == 0
        stats = self._stats
        stats["cost"] = stats["cost"] + cost.sum(1)
        stats["peak_load"] = torch.where(first, total, torch.maximum(stats["peak_load"], total))
        stats["ramping"] = stats["ramping"] + torch.where(first, 0.0, (total - self._last_total).abs())
        stats["violations"] = stats["violations"] + ((voltage_excess > 0) | (overload > 0)).float()
        self._last_total = total
        self.last_step = {
            "load_kw": load,
            "pv_kw": pv,
            "battery_kw": power,
            "flexible_kw": flexible_kw,
            "import_kw": import_kw,
            "voltage": voltage,
            "loading": loading,
        }

        self._t = self._t + 1
        self._draw(torch.ones_like(first))  # the next step's loads
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)
