"""Demand response on a low-voltage distribution feeder: buildings with batteries, rooftop PV and
flexible loads under a time-of-use tariff and the feeder's voltage and line limits, in batched torch.

The env is written here by hand: no library offers a batched torch feeder (CityLearn, the usual
building-energy env, is excluded by the project). The network data (buses, lines, transformers,
loads) and the reference AC power flow the tests compare against (`pandapower.runpp`) come from
pandapower, read once when an env is built (`pip install -e ".[grid]"`); stepping uses torch only.

Tasks (pandapower's standard networks):
    * `grid/cigre_lv`: `create_cigre_network_lv()`, the CIGRE task force C6.04 European LV
      benchmark: one 20 kV slack feeding three 0.4 kV feeders (residential R, industrial I,
      commercial C) through their transformers; 44 buses, 15 loads. Every load is a building
      (agent); `n_buildings=6` keeps the residential feeder's six (pandapower's load order).
    * `grid/kerber_landnetz`: `create_kerber_landnetz_kabel_2()`, a German rural cable feeder
      (Kerber 2011): one 160 kVA transformer, 14 houses of 8 kW peak each. pandapower draws each
      house connection's cable (NAYY 4x50 or 4x50 SE) from Python's `random`; `pandapower_net`
      seeds it, so every process builds the same feeder.

Time: an episode is one day from midnight, `max_steps` steps of dt = 24 / max_steps hours (24:
hourly, 96: 15 minutes). Step t covers [t dt, (t + 1) dt); its profiles and price are taken at
its middle, hour m_t = (t + 1/2) dt.

Buildings (agent i, peak load L_i kW = its pandapower load's `p_mw` x `scaling`, power factor
that of the load: q = p tan(phi_i)):
    * inflexible load l_i,t = (1 - flexible_share) L_i s(m_t) max(0, 1 + load_noise e_i,t),
      e ~ N(0, 1) per building and step, with the daily shape
      s(h) = 0.4 + 0.35 exp(-(h - 8)^2 / 4.5) + 0.6 exp(-(h - 19)^2 / 8) (a night base, a morning
      and an evening peak; s(19) ~ 1, so at 19:00 the feeder carries its pandapower loads);
    * PV g_i,t = pv_size L_i sun(m_t) c, sun(h) = max(0, sin(pi (h - 6) / 14)) (sunrise 6:00,
      sunset 20:00), c = 1 - U(0, max_cloud_cover) one draw per world and episode (one sky);
    * battery of capacity E_i = battery_hours L_i kWh and power limit P_i = battery_power L_i kW,
      round-trip efficiency eta (sqrt(eta) each way), state of charge SoC_0 = initial_soc.
      The action a in [-1, 1] asks for a P_i (> 0 charges); the power p at the building's meter
      is that request clipped to the SoC limits (`battery_step`):
          p = clip(a P_i, -SoC E sqrt(eta) / dt, (1 - SoC) E / (sqrt(eta) dt)),
          SoC' = SoC + dt (sqrt(eta) max(p, 0) - max(-p, 0) / sqrt(eta)) / E,
      so SoC' stays in [0, 1].
    * flexible load (washing machines, dishwashers, an EV, a heat pump's buffer): `flexible_share`
      of the building's expected daily load energy, F_i = flexible_share L_i dt sum_t s(m_t) kWh a
      day (13.9 flexible_share L_i; the inflexible load keeps the rest, so a day's expected energy
      is the building's without flexibility, only its timing moves), to be served in the window `flexible_window` = [h_0, h_1] hours (the
      steps t whose middle h_0 <= m_t < h_1, W of them), at most F^max_i = flexible_power L_i kW.
      The action b in [0, 1] asks for b F^max_i; with R_t the energy still to serve (R_0 = F_i)
      and k_t the window steps after t, the energy served (`flexible_step`) is
          e_t = min(max(b F^max_i dt, R_t - k_t F^max_i dt), R_t)   in the window, 0 outside,
          R_t+1 = R_t - e_t,   f_i,t = e_t / dt kW,
      so what cannot wait runs forced: the remainder the later window steps could not take at full
      power, i.e. at the end of the window at full power and the last window step takes all that
      is left. The day's flexible energy is always served, sum_t e_t = F_i (R = 0 at h_1), and
      never faster than F^max_i (`flexible_power` dt W must cover F_i; checked when built). Its
      power factor is 1. `flexible_share = 0` turns it off: then the env is the battery-only one,
      draw for draw (8 features, 1-D actions).
    * net import (kW, negative: export) u_i,t = l_i,t - g_i,t + p_i,t + f_i,t, exactly.
    Loads past `n_buildings` stay on the feeder as passive consumers (their full load, no PV,
    battery or flexible load).

Prices (EUR/kWh): `tariff` = [off-peak, day, peak], off-peak 23:00-7:00, peak 17:00-21:00, day
otherwise; exports earn `feed_in_price`. Cost of building i in step t (EUR):
    C_i,t = dt (price(m_t) max(u, 0) - feed_in_price max(-u, 0)).

Power flow: LinDistFlow (Baran & Wu 1989: the DistFlow branch equations of a radial feeder with
the losses dropped, linear in the squared voltage magnitudes; `LinearPowerFlow`). In per unit on
S_base = 1 MVA and each bus's nominal voltage, a branch e (line: r, x in ohm / Z_base;
transformer: vkr %, vk % on its rating; magnetising current and line capacitance neglected)
carries the net imports downstream of it, P_e = sum_{b below e} u_b, Q_e likewise from the
reactive imports q = l tan(phi) (PV, batteries and flexible loads run at unity power factor), and
    v_b^2 = v_0^2 - 2 sum_{e on the path slack -> b} (r_e P_e + x_e Q_e) = v_0^2 - 2 (R u + X q)_b,
    loading_e = |(P_e, Q_e)| / (v_to(e) rating_e),
with v_0 the slack's voltage, R_bk the resistance of the common part of the paths to b and k
(X likewise), rating_e = sqrt(3) max_i_ka df parallel vn_kv (lines) or sn_mva parallel
(transformers), and v_to the branch's downstream bus (the current at the receiving end). One
matrix product [B, 2 n_load] @ [2 n_load, n_bus + 2 n_branch] gives every world's (R u + X q) and
branch flows; v^2 is clamped at 0.01 where a far overloaded feeder would have no solution.
Against pandapower's AC power flow on random injections (loads 20-100 % of peak, PV, batteries;
tests/test_grid.py) the voltages are within 0.0034 pu and the loadings within 5.1 % of
pandapower's (CIGRE LV's industrial transformer near its rating: the losses of the line behind
it are what the flows miss). Bus-bus switches are zero-impedance ties; the feeder's own static generators
are ignored.

Reward per agent (EUR): -C_i,t - penalty_t, the penalty shared:
    penalty = voltage_penalty sum_b 100 max(|v_b - 1| - voltage_band, 0)
            + overload_penalty sum_e 100 max(loading_e - 1, 0)
(EUR per percentage point of voltage outside the band, per bus, and of overload, per branch;
branches are lines and transformers). `shared_reward=true` replaces C_i by the mean over buildings.

Observation per agent, `("agents", "observation")` [B, n, 10]:
    `[sin, cos of 2 pi m_t / 24 | price now | price an hour later (EUR/kWh) | inflexible load / L_i |
      PV / L_i | SoC | (v - 1) / voltage_band at its bus with the batteries and flexible loads idle |
      R_t / F_i, the share of the flexible energy still to serve | (h_1 - t dt) / (h_1 - h_0),
      clipped at 0: the time left to the deadline over the window's length (> 1 before the window
      opens, 0 once it has closed)]`; the first 8 only when `flexible_share = 0`.
Action per agent, `("agents", "action")`: [B, n, 2] `Bounded`, [a in [-1, 1] (battery), b in
[0, 1] (flexible load)] (continuous), or with `env.continuous_actions=false` [B, n] `Categorical`
over 15 = 5 x 3: action k is battery level k // 3 of -1, -0.5, 0, 0.5, 1 and flexible level k % 3
of 0, 0.5, 1 (`ACTION_LEVELS`, `FLEXIBLE_LEVELS`). With `flexible_share = 0`: [B, n, 1] in [-1, 1],
or 5 levels.
Reward per agent, `("agents", "reward")` [B, n, 1].
Episode statistics, [B, 1] each (0 before the first step; read at an episode's last step, each is
the episode's value; ca12 logs them as `rollout/<name>_mean`):
    `("stats", "cost")`: the agents' electricity cost so far, summed over buildings (EUR);
    `("stats", "peak_load")`: the largest total import of all loads so far (kW, losses aside);
    `("stats", "ramping")`: the sum of |change of the total import| between steps (kW);
    `("stats", "violations")`: steps with a voltage outside the band or a branch over 100 %.

Baselines (`BASELINES`, factories `env -> policy`): `no_battery`, the uncontrolled household
(batteries idle, flexible loads at full power as soon as their window opens, until done), and
`rule_based` (batteries: charge fully at off-peak prices, charge the PV surplus, discharge the
building's own net load at peak prices; flexible loads: the cheapest window steps at full power,
the earliest of equal price first, each step running what the cheaper steps still to come could
not take). Measured over 1000 days on `grid/cigre_lv` (defaults; `python -m ca12.evaluate
--baseline NAME --env grid/cigre_lv --episodes 1000`): rule_based costs 26 % less than no_battery
(967 vs 1303 EUR a day over the 15 buildings, as many violation steps: 5.3 vs 5.2), yet its return
is lower (-168.5 vs -126.0 per agent): the price herds every battery and the flexible loads' last
hour onto 23:00, the window's one off-peak hour, where the import peaks (933 vs 609 kW, two
transformers over their ratings, voltages down to 0.91 pu; ramping 3024 vs 2142 kW), the rebound peak
of time-of-use tariffs. Room for a learned, coordinated policy. With `flexible_share=0` (batteries
and PV only): 1006 vs 1352 EUR, peak 651 vs 630 kW, ramping 2231 vs 1759 kW, 5.4 violation steps.

Seeding: the env keeps its own generator (constructor `seed`, `set_seed`), registered under
`grid/<task>/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Callable

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from ca12.envs.catalog import GRID_FEEDERS as FEEDERS  # task -> the pandapower.networks function that builds its feeder (catalog: start-up)
from ca12.envs.common import (SeededTorchEnv, check_integers, family_kwargs, group_output, reset_mask, set_group_specs,
                              with_return_counters)
from ca12.errors import UsageError

TASKS = tuple(FEEDERS)
# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = ("n_buildings", "battery_hours", "battery_power", "efficiency", "initial_soc", "pv_size", "max_cloud_cover", "load_noise",
           "flexible_share", "flexible_window", "flexible_power", "tariff", "feed_in_price", "voltage_band", "voltage_penalty",
           "overload_penalty", "shared_reward")
S_BASE_MVA = 1.0  # per-unit power base
OFFPEAK, PEAK = (23.0, 7.0), (17.0, 21.0)  # tariff periods (hour of day, from, to)
ACTION_LEVELS = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])  # discrete actions: fractions of the power limit
FLEXIBLE_LEVELS = torch.tensor([0.0, 0.5, 1.0])  # discrete flexible-load actions: fractions of its power limit


# --- the feeder --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feeder:
    """A radial feeder as the linearised power flow needs it (CPU tensors, per unit on S_BASE_MVA).

    Attributes:
        v0: the slack's voltage (pu), the no-load voltage of every bus.
        buses: pandapower bus index of each bus row.
        branches: ("line" | "trafo", pandapower index) of each rated branch.
        load_peak_kw, load_tan_phi: per load (pandapower's load order) [n_load].
        load_row: each load's bus row [n_load].
        sensitivity: [2 n_load, n_bus + 2 n_branch]: [p | q] (pu) @ it gives every bus's
            (R p + X q), then every branch's flows P and Q (see `LinearPowerFlow`).
        branch_to: each branch's downstream bus row [n_branch].
        branch_rating: each branch's rating (pu of S_BASE_MVA at nominal voltage) [n_branch].
    """

    v0: float
    buses: list[int]
    branches: list[tuple[str, int]]
    load_peak_kw: torch.Tensor
    load_tan_phi: torch.Tensor
    load_row: torch.Tensor
    sensitivity: torch.Tensor
    branch_to: torch.Tensor
    branch_rating: torch.Tensor


def feeder_from_net(net) -> Feeder:
    """Read a radial pandapower network into a `Feeder` (its only use of pandapower's tables).

    Raises:
        ValueError: a feeder this model does not cover: not one slack, not radial, or a transformer
            off its nominal ratio.
    """
    if len(net.ext_grid) != 1:
        raise ValueError(f"a feeder needs one slack (ext_grid), this net has {len(net.ext_grid)}")
    vn = net.bus.vn_kv
    cut = set(net.switch.element[(net.switch.et == "l") & ~net.switch.closed])  # lines an open switch disconnects
    edges = []  # (kind, index, bus a, bus b, r pu, x pu, rating pu or None)
    for i, line in net.line[net.line.in_service].iterrows():
        if i not in cut:
            z_base = vn[line.from_bus] ** 2 / S_BASE_MVA
            rating = math.sqrt(3) * line.max_i_ka * line.df * line.parallel * vn[line.from_bus] / S_BASE_MVA
            edges.append(("line", i, line.from_bus, line.to_bus, line.r_ohm_per_km * line.length_km / line.parallel / z_base,
                          line.x_ohm_per_km * line.length_km / line.parallel / z_base, rating))
    for i, trafo in net.trafo[net.trafo.in_service].iterrows():
        off_tap = not math.isnan(trafo.tap_step_percent) and trafo.tap_pos != trafo.tap_neutral
        if trafo.vn_hv_kv != vn[trafo.hv_bus] or trafo.vn_lv_kv != vn[trafo.lv_bus] or off_tap:
            raise ValueError(f"transformer {i} is off its nominal ratio, which the linearised power flow does not model")
        size = trafo.sn_mva * trafo.parallel / S_BASE_MVA
        r, z = trafo.vkr_percent / 100 / size, trafo.vk_percent / 100 / size
        edges.append(("trafo", i, trafo.hv_bus, trafo.lv_bus, r, math.sqrt(z * z - r * r), size))
    for i, switch in net.switch[(net.switch.et == "b") & net.switch.closed].iterrows():
        edges.append(("switch", i, switch.bus, switch.element, 0.0, 0.0, None))

    # Walk the tree from the slack: each bus's parent edge.
    buses = list(net.bus.index[net.bus.in_service])
    row = {bus: k for k, bus in enumerate(buses)}
    root = int(net.ext_grid.bus.iloc[0])
    neighbours = {bus: [] for bus in buses}
    for e, (_, _, a, b, *_) in enumerate(edges):
        neighbours[a].append((e, b))
        neighbours[b].append((e, a))
    parent = {root: None}  # bus -> (edge, parent bus)
    frontier = [root]
    while frontier:
        bus = frontier.pop()
        for e, other in neighbours[bus]:
            if parent[bus] is not None and e == parent[bus][0]:
                continue
            if other in parent:
                raise ValueError(f"the network is not radial: bus {other} is reached twice")
            parent[other] = (e, bus)
            frontier.append(other)
    if len(parent) != len(buses):
        raise ValueError(f"buses {sorted(set(buses) - set(parent))} are not connected to the slack")

    # path[e, k] = 1 when edge e lies on the path from the slack to bus row k.
    path = torch.zeros(len(edges), len(buses), dtype=torch.float64)
    for bus in buses:
        step = parent[bus]
        while step is not None:
            path[step[0], row[bus]] = 1.0
            step = parent[step[1]]
    r = torch.tensor([edge[4] for edge in edges], dtype=torch.float64)
    x = torch.tensor([edge[5] for edge in edges], dtype=torch.float64)
    rated = [e for e, edge in enumerate(edges) if edge[6] is not None]
    child = {step[0]: bus for bus, step in parent.items() if step is not None}  # edge -> its downstream bus
    v0 = float(net.ext_grid.vm_pu.iloc[0])

    loads = net.load[net.load.in_service]
    load_row = torch.tensor([row[bus] for bus in loads.bus])
    below = path[rated][:, load_row].T  # [n_load, n_branch]: branch carries the load
    drop_r = (path.T @ (r[:, None] * path))[load_row]  # [n_load, n_bus]: R's rows at the loads
    drop_x = (path.T @ (x[:, None] * path))[load_row]
    zeros = torch.zeros_like(below)
    sensitivity = torch.cat([torch.cat([drop_r, below, zeros], 1), torch.cat([drop_x, zeros, below], 1)], 0)
    p_mw = torch.tensor((loads.p_mw * loads.scaling).to_numpy(), dtype=torch.float64)
    q_mvar = torch.tensor((loads.q_mvar * loads.scaling).to_numpy(), dtype=torch.float64)
    return Feeder(
        v0=v0, buses=[int(bus) for bus in buses], branches=[(edges[e][0], int(edges[e][1])) for e in rated],
        load_peak_kw=(p_mw * 1000).float(), load_tan_phi=(q_mvar / p_mw).float(), load_row=load_row,
        sensitivity=sensitivity.float(),
        branch_to=torch.tensor([row[child[e]] for e in rated]),
        branch_rating=torch.tensor([edges[e][6] for e in rated], dtype=torch.float32),
    )


def pandapower_net(task: str):
    """A fresh pandapower network of `task` (pandapower imported here, not at module import).

    Raises:
        UsageError: pandapower is not installed.
    """
    try:
        import pandapower.networks as networks
    except ImportError:
        raise UsageError(f'grid/{task} needs pandapower: pip install -e ".[grid]"') from None
    # Kerber's networks draw each house connection's cable type (NAYY 4x50 or 4x50 SE) from Python's
    # global `random`: seeded here, so every process builds the same feeder; the caller's stream is kept.
    state = random.getstate()
    random.seed(0)
    try:
        return getattr(networks, FEEDERS[task])()
    finally:
        random.setstate(state)


@functools.lru_cache(maxsize=None)
def read_feeder(task: str) -> Feeder:
    """The `Feeder` of a task, read once per process."""
    return feeder_from_net(pandapower_net(task))


class LinearPowerFlow:
    """The batched LinDistFlow of a `Feeder` (see the module docstring) on `device`.

    Call it with the net active and reactive import of every load, `p_kw`, `q_kvar` [B, n_load]
    (pandapower's load order, kW and kvar); it returns the bus voltages [B, n_bus] (pu, the
    feeder's bus order) and the branch loadings [B, n_branch] (fractions of the ratings).
    """

    def __init__(self, feeder: Feeder, device: torch.device | str):
        self.v0 = feeder.v0
        self.n_bus, self.n_branch = len(feeder.buses), len(feeder.branches)
        self.sensitivity = feeder.sensitivity.to(device)
        self.branch_to = feeder.branch_to.to(device)
        self.branch_rating = feeder.branch_rating.to(device)

    def __call__(self, p_kw: torch.Tensor, q_kvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.cat([p_kw, q_kvar], -1) @ self.sensitivity / (1000 * S_BASE_MVA)  # [B, n_bus + 2 n_branch]
        n, m = self.n_bus, self.n_branch
        voltage = (self.v0**2 - 2 * out[:, :n]).clamp_min(0.01).sqrt()  # [B, n_bus]
        flow = torch.hypot(out[:, n : n + m], out[:, n + m :])  # [B, n_branch] apparent power (pu)
        return voltage, flow / (voltage[:, self.branch_to] * self.branch_rating)


# --- profiles, prices, battery ------------------------------------------------------------------------
def load_shape(hour: torch.Tensor) -> torch.Tensor:
    """The daily load shape s(h) (fraction of the peak load) at `hour` (hours since midnight)."""
    h = hour % 24
    return 0.4 + 0.35 * torch.exp(-((h - 8) ** 2) / 4.5) + 0.6 * torch.exp(-((h - 19) ** 2) / 8)


def sun(hour: torch.Tensor) -> torch.Tensor:
    """Clear-sky PV output (fraction of its peak) at `hour`: a sine bell from 6:00 to 20:00."""
    return torch.sin(math.pi * (hour % 24 - 6) / 14).clamp_min(0)


def price(hour: torch.Tensor, tariff: torch.Tensor) -> torch.Tensor:
    """The time-of-use price at `hour`: `tariff` [off-peak, day, peak] by the periods `OFFPEAK`, `PEAK`."""
    h = hour % 24
    offpeak = (h >= OFFPEAK[0]) | (h < OFFPEAK[1])
    peak = (h >= PEAK[0]) & (h < PEAK[1])
    return torch.where(offpeak, tariff[0], torch.where(peak, tariff[2], tariff[1]))


def battery_step(soc: torch.Tensor, request_kw: torch.Tensor, capacity_kwh: torch.Tensor, max_kw: torch.Tensor,
                 efficiency: float, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the batteries: (power at the meter [kW, > 0 charges], the next SoC).

    The request is clipped to +-`max_kw`, then to what the SoC allows in `dt` hours, so the SoC
    stays in [0, 1]; sqrt(`efficiency`) is lost on the way in and on the way out.
    """
    eta = efficiency**0.5
    fill = (1 - soc) * capacity_kwh / (eta * dt)  # the charging power that fills the battery in dt
    empty = soc * capacity_kwh * eta / dt  # the discharging power that empties it
    power = torch.clamp(request_kw, -torch.minimum(max_kw, empty), torch.minimum(max_kw, fill))
    stored = torch.where(power > 0, eta * power, power / eta) * dt  # kWh into the cells
    return power, (soc + stored / capacity_kwh).clamp(0, 1)


def flexible_step(remaining_kwh: torch.Tensor, request_kwh: torch.Tensor, max_kwh: torch.Tensor, steps_after: torch.Tensor,
                  available: torch.Tensor) -> torch.Tensor:
    """The energy the flexible loads take in one step (kWh), at most what remains.

    Outside the window (`available` false) nothing runs. Inside, the load runs at least what
    cannot wait: the remainder that the `steps_after` window steps still to come could not take
    at full power (`max_kwh` a step), so the last window step takes all that is left and the day's
    requirement is served exactly, without ever exceeding the power limit when it fits the window:
        e = min(max(request, remaining - max_kwh steps_after), remaining).
    """
    forced = (remaining_kwh - max_kwh * steps_after).clamp_min(0)
    return torch.where(available, torch.minimum(torch.maximum(request_kwh, forced), remaining_kwh), 0.0)


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

    def __init__(self, task: str = "cigre_lv", num_envs: int = 1, max_steps: int = 24, continuous_actions: bool = True,
                 n_buildings: int | None = None, battery_hours: float = 2.0, battery_power: float = 0.5, efficiency: float = 0.9,
                 initial_soc: float = 0.5, pv_size: float = 1.0, max_cloud_cover: float = 0.8, load_noise: float = 0.1,
                 flexible_share: float = 0.2, flexible_window: list[float] = (7.0, 24.0), flexible_power: float = 0.5,
                 tariff: list[float] = (0.10, 0.20, 0.35), feed_in_price: float = 0.05, voltage_band: float = 0.05,
                 voltage_penalty: float = 1.0, overload_penalty: float = 1.0, shared_reward: bool = False,
                 device: torch.device | str = "cpu", seed: int = 0):
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
        self.flexible_window = (_number("flexible_window[0]", flexible_window[0], 0.0, 24.0),
                                _number("flexible_window[1]", flexible_window[1], 0.0, 24.0))
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
            raise UsageError(f"env.flexible_power x the window's {window_hours:g} h must cover the flexible energy (flexible_share x "
                             f"{daily_shape:.3f} h of peak load): at least {self.flexible_share * daily_shape / window_hours:.3f}, "
                             f"got {self.flexible_power}")
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
            action = (Bounded(-1.0, 1.0, shape=(b, n, 1), device=dev) if continuous_actions
                      else Categorical(len(ACTION_LEVELS), shape=(b, n), dtype=torch.int64, device=dev))
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
        clock = torch.stack([torch.sin(2 * math.pi * hour / 24), torch.cos(2 * math.pi * hour / 24),
                             price(hour, self.tariff), price(hour + 1, self.tariff)], -1)  # [B, 4]
        own = torch.stack([self._load[:, :n] / self.peak_kw[:n], self._pv() / self.peak_kw[:n], self._soc,
                           (self._voltage - 1) / self.voltage_band], -1)  # [B, n, 4]
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
            served = flexible_step(self._flexible_left, run * self.flexible_max_kw * self.dt, self.flexible_max_kw * self.dt,
                                   self.window_steps_after[t].unsqueeze(-1), self.in_window[t].unsqueeze(-1))
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
        self.last_step = {"load_kw": load, "pv_kw": pv, "battery_kw": power, "flexible_kw": flexible_kw, "import_kw": import_kw,
                          "voltage": voltage, "loading": loading}

        self._t = self._t + 1
        self._draw(torch.ones_like(first))  # the next step's loads
        return self._out((self._t >= self.max_steps).unsqueeze(-1), reward)


# --- baselines -------------------------------------------------------------------------------------------
def _grid(env: EnvBase) -> GridEnv:
    """The `GridEnv` inside `env` (a `make_env` result carries transforms around it)."""
    return env.base_env if hasattr(env, "base_env") else env


def _policy(env: EnvBase, battery: Callable[[torch.Tensor], torch.Tensor],
            flexible: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[TensorDictBase], TensorDictBase]:
    """A policy writing `("agents", "action")` from `battery(observation)` [B, n] in [-1, 1] and,
    with flexible loads, `flexible(observation)` [B, n] in [0, 1] (the nearest of `ACTION_LEVELS`,
    `FLEXIBLE_LEVELS` when the env's actions are discrete)."""
    grid = _grid(env)

    def policy(tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(("agents", "observation"))
        wanted = battery(observation)
        if grid.flexible:
            run = flexible(observation)
            if grid.continuous_actions:
                return tensordict.set(("agents", "action"), torch.stack([wanted, run], -1))
            level = (run.unsqueeze(-1) - grid.flexible_levels).abs().argmin(-1)
            battery_level = (wanted.unsqueeze(-1) - grid.levels).abs().argmin(-1)
            return tensordict.set(("agents", "action"), battery_level * len(FLEXIBLE_LEVELS) + level)
        if grid.continuous_actions:
            return tensordict.set(("agents", "action"), wanted.unsqueeze(-1))
        return tensordict.set(("agents", "action"), (wanted.unsqueeze(-1) - grid.levels).abs().argmin(-1))

    return policy


def _step_index(grid: GridEnv, observation: torch.Tensor) -> torch.Tensor:
    """The step of the day [B, n] an observation was made at, read from its clock (sin, cos)."""
    hour = torch.atan2(observation[..., 0], observation[..., 1]) * 12 / math.pi % 24
    return (hour / grid.dt).floor().long().clamp(0, grid.max_steps - 1)


def no_battery(env: EnvBase) -> Callable[[TensorDictBase], TensorDictBase]:
    """The uncontrolled household: the batteries stay idle and the flexible loads run at full
    power as soon as their window opens, until they are done."""
    return _policy(env, lambda observation: torch.zeros_like(observation[..., 0]), lambda observation: torch.ones_like(observation[..., 0]))


def rule_based(env: EnvBase) -> Callable[[TensorDictBase], TensorDictBase]:
    """Batteries: charge at full power at off-peak prices, charge the PV surplus otherwise, and at
    peak prices discharge what the building itself draws (selling at the feed-in price does not pay).
    Flexible loads: the cheapest window steps at full power, the earliest of equal price first:
    each step runs what the strictly cheaper window steps still to come could not serve at full
    power, (remaining / (P dt) - cheaper steps after t) clipped to [0, 1] of the power limit."""
    grid = _grid(env)
    steps = grid.max_steps
    prices = price((torch.arange(steps, device=grid.device) + 0.5) * grid.dt, grid.tariff)  # [T]
    window = grid.in_window[:steps]
    later = torch.ones(steps, steps, dtype=torch.bool, device=grid.device).triu(1)  # [t, t']: t' after t
    cheaper_after = (later & window & (prices < prices.unsqueeze(-1))).sum(1)  # [T] window steps after t at a lower price

    def battery(observation: torch.Tensor) -> torch.Tensor:
        now, net = observation[..., 2], observation[..., 4] - observation[..., 5]  # price; load - PV, in peak loads
        surplus = (-net / grid.battery_power).clamp(0, 1)
        drawn = (net / grid.battery_power).clamp(0, 1)
        return torch.where(now >= grid.tariff[2], -drawn, torch.where(now <= grid.tariff[0], 1.0, surplus))

    def flexible(observation: torch.Tensor) -> torch.Tensor:
        t = _step_index(grid, observation)  # [B, n]
        full_steps = observation[..., 8] * grid.flexible_kwh / (grid.flexible_max_kw * grid.dt)  # what remains, in steps at full power
        return torch.where(window[t], (full_steps - cheaper_after[t]).clamp(0, 1), 0.0)

    return _policy(env, battery, flexible)


BASELINES = {"rule_based": rule_based, "no_battery": no_battery}


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`GridEnv` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, a value out of range, or pandapower missing.
    """
    kwargs = family_kwargs(cfg, TASKS, _KWARGS)
    return with_return_counters(GridEnv(cfg.task, num_envs=cfg.num_envs, max_steps=cfg.max_steps, continuous_actions=cfg.continuous_actions,
                                        device=cfg.device, seed=seed, **kwargs))
