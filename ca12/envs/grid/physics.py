"""The grid family's physics in pure torch: the batched LinDistFlow power flow of a `Feeder`
(`LinearPowerFlow`), the daily load and PV profiles (`load_shape`, `sun`), the time-of-use price
(`price`) and one step of the batteries and of the flexible loads (`battery_step`,
`flexible_step`); the equations are in the package docstring (ca12/envs/grid/__init__.py).
"""

from __future__ import annotations

import math

import torch

from ca12.envs.grid.feeders import S_BASE_MVA, Feeder

OFFPEAK, PEAK = (23.0, 7.0), (17.0, 21.0)  # tariff periods (hour of day, from, to)


class LinearPowerFlow:
    """The batched LinDistFlow of a `Feeder` (see the package docstring) on `device`.

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


def battery_step(
    soc: torch.Tensor, request_kw: torch.Tensor, capacity_kwh: torch.Tensor, max_kw: torch.Tensor, efficiency: float, dt: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def flexible_step(
    remaining_kwh: torch.Tensor, request_kwh: torch.Tensor, max_kwh: torch.Tensor, steps_after: torch.Tensor, available: torch.Tensor
) -> torch.Tensor:
    """The energy the flexible loads take in one step (kWh), at most what remains.

    Outside the window (`available` false) nothing runs. Inside, the load runs at least what
    cannot wait: the remainder that the `steps_after` window steps still to come could not take
    at full power (`max_kwh` a step), so the last window step takes all that is left and the day's
    requirement is served exactly, without ever exceeding the power limit when it fits the window:
        e = min(max(request, remaining - max_kwh steps_after), remaining).
    """
    forced = (remaining_kwh - max_kwh * steps_after).clamp_min(0)
    return torch.where(available, torch.minimum(torch.maximum(request_kwh, forced), remaining_kwh), 0.0)
