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
tests/envs/test_grid.py) the voltages are within 0.0034 pu and the loadings within 5.1 % of
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
not take). The rule pays the lowest bill but herds every battery onto the tariff's one off-peak
hour of the flexible window, the rebound peak of time-of-use tariffs; docs/applications.md has
their measured costs beside the learners' (`python -m ca12.evaluate --baseline NAME --env
grid/cigre_lv` measures them).

Seeding: the env keeps its own generator (constructor `seed`, `set_seed`), registered under
`grid/<task>/<device>/<seed>` so checkpoints capture it.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torchrl.envs import EnvBase

from ca12.envs.common import family_kwargs, with_return_counters
from ca12.envs.grid.baselines import BASELINES
from ca12.envs.grid.env import TASKS, GridEnv
from ca12.envs.grid.feeders import FEEDERS

# The family's interface (ca12/envs/__init__.py reads `make` and `BASELINES`); the feeder, the
# physics and the baselines' helpers live in the submodules.
__all__ = ["BASELINES", "FEEDERS", "TASKS", "GridEnv", "make"]

# Task kwargs this family takes (everything else in the env section is refused).
_KWARGS = (
    "n_buildings",
    "battery_hours",
    "battery_power",
    "efficiency",
    "initial_soc",
    "pv_size",
    "max_cloud_cover",
    "load_noise",
    "flexible_share",
    "flexible_window",
    "flexible_power",
    "tariff",
    "feed_in_price",
    "voltage_band",
    "voltage_penalty",
    "overload_penalty",
    "shared_reward",
)


def make(cfg: DictConfig, seed: int) -> EnvBase:
    """`GridEnv` as the config says, seeded, with a per-agent return counter.

    Raises:
        UsageError: unknown task or kwarg, a value out of range, or pandapower missing.
    """
    kwargs = family_kwargs(cfg, TASKS, _KWARGS)
    return with_return_counters(
        GridEnv(
            cfg.task,
            num_envs=cfg.num_envs,
            max_steps=cfg.max_steps,
            continuous_actions=cfg.continuous_actions,
            device=cfg.device,
            seed=seed,
            **kwargs,
        )
    )
