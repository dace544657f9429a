"""The grid family's feeders: pandapower's standard networks (`FEEDERS`, the catalog's task ->
network function) read once per process into a `Feeder`, the radial network in per unit as the
linearised power flow needs it (`feeder_from_net`, `read_feeder`); `pandapower_net` builds a fresh
network, importing pandapower only then. The model of the feeder is documented in the package
docstring (ca12/envs/grid/__init__.py).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import torch

from ca12.envs.catalog import GRID_FEEDERS as FEEDERS  # task -> the pandapower.networks function that builds its feeder (catalog: start-up)
from ca12.errors import UsageError

S_BASE_MVA = 1.0  # per-unit power base


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
            edges.append(
                (
                    "line",
                    i,
                    line.from_bus,
                    line.to_bus,
                    line.r_ohm_per_km * line.length_km / line.parallel / z_base,
                    line.x_ohm_per_km * line.length_km / line.parallel / z_base,
                    rating,
                )
            )
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
        v0=v0,
        buses=[int(bus) for bus in buses],
        branches=[(edges[e][0], int(edges[e][1])) for e in rated],
        load_peak_kw=(p_mw * 1000).float(),
        load_tan_phi=(q_mvar / p_mw).float(),
        load_row=load_row,
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
