"""The grid family's classical baselines (`BASELINES`, factories env -> policy): `no_battery`,
the uncontrolled household, and `rule_based`, batteries by the tariff and flexible loads in the
cheapest window steps; what they do and how they compare is in the package docstring
(ca12/envs/grid/__init__.py).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase

from ca12.envs.grid.env import FLEXIBLE_LEVELS, GridEnv
from ca12.envs.grid.physics import price


# --- baselines -------------------------------------------------------------------------------------------
def _grid(env: EnvBase) -> GridEnv:
    """The `GridEnv` inside `env` (a `make_env` result carries transforms around it)."""
    return env.base_env if hasattr(env, "base_env") else env


def _policy(
    env: EnvBase, battery: Callable[[torch.Tensor], torch.Tensor], flexible: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[TensorDictBase], TensorDictBase]:
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
