"""Communication between the agents of a group: plain `nn.Module`s over agent features.

Every module here maps features `h` [*B, n_agents, F] to features [*B, n_agents, F], batched
over any leading dims and for any agent count at call time (nothing is sized by n_agents), and
never names a device. The network builder (ca12/nets/builder.py, `model=commnet|tarmac|dial|graph`)
puts one between a per-agent encoder and a per-agent head, so every actor, critic and Q-network
of ca12 can talk; acting stays decentralised except for the messages.

Written by hand because no library offers these as reusable modules: TorchRL has MultiAgentMLP
(centralised or not) but no message passing, and the papers' reference code is tied to their
training loops. Each class cites the equations it implements.

* `CommNet` (Sukhbaatar et al. 2016): mean of the other agents' features.
* `AttentionCommunication` (TarMAC, Das et al. 2019): signature/value messages, query attention.
* `DIALChannel` (Foerster et al. 2016): the discretise/regularise unit; `DIALCommunication`
  sends its messages.
* `GraphCommunication`: messages along a graph's edges (networkx), with dropout, noise and a
  bandwidth limit.

Where the env's own actions are the messages, the positive-signalling loss bias
(`positive_signalling`, Eccles et al. 2019) lives with the algorithms (ca12/algos/signalling.py).

Rounds: `rounds` message exchanges happen within one env step (the papers' "communication
steps"); information travels at most `rounds` hops.

Statistics: every module keeps `last_stats`, detached scalars of its last forward pass (message
size, attention entropy, bits on, neighbours heard), still on the device; an algorithm logs them
as `comm/...` metrics once per iteration (`message_stats`), and `plot_attention`
(ca12/analysis/attention.py) draws TarMAC's attention weights.
"""

from __future__ import annotations

import math

import networkx as nx
import torch
from torch import nn

from ca12.sections import GRAPHS  # `model=graph`'s choices, declared with the model schemas


def _record(module: nn.Module, **stats: torch.Tensor) -> None:
    """Keep detached scalar statistics of a forward pass in `module.last_stats` (not inside
    `torch.vmap`, e.g. TorchRL's GAE over a talking critic: its values cannot leave the map)."""
    if any(torch._C._functorch.is_functorch_wrapped_tensor(v) for v in stats.values()):
        return
    module.last_stats = {name: value.detach().float() for name, value in stats.items()}


def message_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    """`{"comm/<submodule path>/<stat>": scalar}` for every communication module inside
    `module` that ran since it was built (device tensors: reading them is the caller's sync)."""
    out = {}
    for name, sub in module.named_modules():
        for stat, value in (getattr(sub, "last_stats", None) or {}).items():
            out[f"comm/{name}/{stat}"] = value
    return out


def random_marker() -> nn.Module:
    """An identity `nn.Dropout(0.0)` that tells TorchRL a module draws random numbers: its value
    estimators (GAE) `vmap` the value network with randomness "error" unless they find a dropout
    module in it (`torchrl.objectives.utils.RANDOM_MODULE_LIST`); then they use "different"."""
    return nn.Dropout(0.0)


def mean_of_others(h: torch.Tensor) -> torch.Tensor:
    """c_i = 1/(n-1) sum_{j != i} h_j over the agent dim (-2) of h [*B, n, F]; zeros when n = 1."""
    n = h.shape[-2]
    if n == 1:
        return torch.zeros_like(h)
    return (h.sum(-2, keepdim=True) - h) / (n - 1)


class CommNet(nn.Module):
    """CommNet (Sukhbaatar, Szlam, Fergus 2016, "Learning Multiagent Communication with
    Backpropagation"), eq. (2)-(3): for k = 1..rounds,

        c_i^k = 1/(n-1) sum_{j != i} h_j^k,    h_i^{k+1} = act(H^k h_i^k + C^k c_i^k).

    The skip connection of the paper's eq. (4) (h^0 fed to every round) is left out: the
    builder's encoder output is h^0 and a single round is the common use. Weights are shared by
    the agents (the paper's module is too), so it is permutation equivariant and takes any n.

    Args:
        features: F, the width of h.
        rounds: communication steps K.
        activation: the non-linearity (the paper: tanh).
    """

    def __init__(self, features: int, rounds: int = 1, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.own = nn.ModuleList([nn.Linear(features, features) for _ in range(rounds)])  # H^k
        self.others = nn.ModuleList([nn.Linear(features, features, bias=False) for _ in range(rounds)])  # C^k
        self.act = activation()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for own, others in zip(self.own, self.others):
            received = mean_of_others(h)
            h = self.act(own(h) + others(received))  # [*B, n, F]
        _record(self, message_norm=received.norm(dim=-1).mean())
        return h


class AttentionCommunication(nn.Module):
    """TarMAC (Das et al. 2019, "TarMAC: Targeted Multi-Agent Communication"), section 4.

    Each agent sends a message m_j = [k_j | v_j] (signature k_j = W_k h_j, value v_j = W_v h_j)
    and reads with a query q_i = W_q h_i: eq. (1)-(2),

        a_ij = softmax_j(q_i . k_j / sqrt(d_k)),    c_i = sum_j a_ij v_j,

    then updates h_i <- act(W_h [h_i | c_i]) (the paper feeds c_i to the next step's GRU; within
    a step, `rounds` exchanges use this update). With `heads` > 1 the signature/value/query are
    split into heads that attend separately (multi-head, as in the paper's multi-round variant).

    Self-attention is masked by default (`attend_to_self=False`): a message is about what the
    *others* know, and a lone agent then receives c_i = 0. With `attend_to_self=True` an agent
    may also weight its own message (the paper's formulation sums over all j).

    The last attention weights [*B, heads, n, n] are kept, detached, in `last_attention` for
    logging and plotting (row i: who agent i listened to).

    Args:
        features: F, the width of h.
        message_size: d, the width of a signature, value and query (split over the heads).
        rounds: communication steps.
        heads: attention heads; must divide message_size.
        attend_to_self: let an agent attend to its own message.
        activation: the update's non-linearity.
    """

    def __init__(
        self,
        features: int,
        message_size: int = 32,
        rounds: int = 1,
        heads: int = 1,
        attend_to_self: bool = False,
        activation: type[nn.Module] = nn.Tanh,
    ):
        super().__init__()
        if message_size % heads:
            raise ValueError(f"message_size ({message_size}) must be a multiple of heads ({heads})")
        self.message_size, self.rounds, self.heads, self.attend_to_self = message_size, rounds, heads, attend_to_self
        self.signature = nn.Linear(features, message_size)  # W_k
        self.value = nn.Linear(features, message_size)  # W_v
        self.query = nn.Linear(features, message_size)  # W_q
        self.update = nn.Linear(features + message_size, features)  # W_h
        self.act = activation()
        self.last_attention: torch.Tensor | None = None

    def generate_messages(self, observations: torch.Tensor, hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """What every agent broadcasts: m_j = [k_j | v_j] [*B, n, 2 d].

        The paper computes messages from the agent's recurrent state; here `hidden_states` is
        used when given (same width F as `observations`), else the (encoded) observations.
        """
        source = observations if hidden_states is None else hidden_states
        return torch.cat([self.signature(source), self.value(source)], dim=-1)

    def coordinate_actions(self, action_features: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        """Each agent attends over the messages with its query and updates its features [*B, n, F]."""
        *batch, n, _ = action_features.shape
        d = self.message_size // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # [*B, n, heads*d] -> [*B, heads, n, d]
            return x.reshape(*batch, n, self.heads, d).transpose(-3, -2)

        keys, values = messages.split(self.message_size, dim=-1)
        q, k, v = split(self.query(action_features)), split(keys), split(values)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # [*B, heads, n, n]
        if not self.attend_to_self:
            scores = scores.masked_fill(torch.eye(n, dtype=torch.bool, device=scores.device), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a lone agent (n = 1, self masked) hears nothing
        self.last_attention = weights.detach()
        entropy = -(weights * weights.clamp(min=1e-12).log()).sum(-1).mean()  # nats; log(n-1) is uniform
        _record(self, attention_entropy=entropy, attention_max=weights.amax(-1).mean(), message_norm=values.norm(dim=-1).mean())
        received = (weights @ v).transpose(-3, -2).reshape(*batch, n, self.message_size)  # c_i [*B, n, d]
        return self.act(self.update(torch.cat([action_features, received], dim=-1)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for _ in range(self.rounds):
            h = self.coordinate_actions(h, self.generate_messages(h))
        return h


class DIALChannel(nn.Module):
    """DIAL's discretise/regularise unit (Foerster et al. 2016, "Learning to Communicate with
    Deep Multi-Agent Reinforcement Learning", section 5, DRU):

        training:  DRU(m) = sigmoid(m + N(0, sigma^2))   (differentiable: gradients flow from
                   the listener back into the speaker through the channel);
        execution: DRU(m) = 1[m > 0]                      (one bit per message unit).

    The noise pushes the speaker to saturate the sigmoid, so the hard threshold at execution
    loses little. Train/eval follow `module.train()` / `module.eval()`.

    Args:
        sigma: standard deviation of the channel noise while training (the paper: 2).
    """

    def __init__(self, sigma: float = 2.0):
        super().__init__()
        self.sigma = sigma
        self.random_marker = random_marker()

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return (m > 0).to(m.dtype)
        return torch.sigmoid(m + self.sigma * torch.randn_like(m))


class DIALCommunication(nn.Module):
    """Agents exchange DIAL messages within a step: m_j = DRU(W_m h_j) [*B, n, message_size],
    agent i receives the mean of the others' messages and updates h_i <- act(W [h_i | c_i]).

    The paper passes a message from one time step to the next; here, as in CommNet/TarMAC, it
    is exchanged within the step (`rounds` times), so it also serves feed-forward policies.
    Averaging (rather than concatenating) the messages keeps the module usable for any n.

    Args:
        features: F, the width of h.
        message_size: bits per message.
        rounds: communication steps.
        sigma: channel noise while training.
        activation: the update's non-linearity.
    """

    def __init__(self, features: int, message_size: int = 8, rounds: int = 1, sigma: float = 2.0, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.speak = nn.ModuleList([nn.Linear(features, message_size) for _ in range(rounds)])
        self.update = nn.ModuleList([nn.Linear(features + message_size, features) for _ in range(rounds)])
        self.channel = DIALChannel(sigma)
        self.act = activation()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for speak, update in zip(self.speak, self.update):
            sent = self.channel(speak(h))  # [*B, n, message_size]
            received = mean_of_others(sent)
            h = self.act(update(torch.cat([h, received], dim=-1)))
        _record(self, bits_on=(sent > 0.5).float().mean(), message_mean=sent.mean())
        return h


def graph_adjacency(graph: str, n: int) -> torch.Tensor:
    """The adjacency [n, n] (bool, no self loops) of a networkx graph on n agents.

    `ring` (cycle), `star` (agent 0 at the centre), `grid` (rows = floor(sqrt n), the first n
    nodes of the rows x cols lattice in row-major order), `complete`.
    """
    if graph == "ring":
        g = nx.cycle_graph(n) if n > 2 else nx.path_graph(n)
    elif graph == "star":
        g = nx.star_graph(n - 1) if n > 1 else nx.empty_graph(1)
    elif graph == "grid":
        rows = max(1, math.isqrt(n))
        cols = math.ceil(n / rows)
        lattice = nx.grid_2d_graph(rows, cols)
        nodes = sorted(lattice.nodes)[:n]  # row-major
        g = nx.convert_node_labels_to_integers(lattice.subgraph(nodes), ordering="sorted")
    elif graph == "complete":
        g = nx.complete_graph(n)
    else:
        raise ValueError(f"unknown graph '{graph}'; choose one of: {', '.join(GRAPHS)} (or pass an adjacency)")
    a = torch.as_tensor(nx.to_numpy_array(g, nodelist=range(n)) > 0)
    return a & ~torch.eye(n, dtype=torch.bool)


def geometric_adjacency(positions: torch.Tensor, radius: float) -> torch.Tensor:
    """[*B, n, n] bool: i, j adjacent when ||p_i - p_j|| <= radius (i != j), the edges of
    `networkx.random_geometric_graph(n, radius, pos=...)` with the agents' positions [*B, n, D],
    computed in torch for the whole batch."""
    n = positions.shape[-2]
    close = torch.cdist(positions, positions) <= radius
    return close & ~torch.eye(n, dtype=torch.bool, device=positions.device)


class GraphCommunication(nn.Module):
    """Messages only along the edges of a graph: for each round,

        m_j = W_m h_j (+ N(0, noise^2)),   c_i = mean_{j in N(i), kept} m_j,   h_i <- act(W [h_i | c_i]),

    where N(i) is agent i's neighbourhood, at most `top_k` of its neighbours (bandwidth: the
    first k in index order, or the k nearest for `random_geometric`), and each received message
    is dropped with probability `dropout` (the mean renormalises over the kept ones; an agent
    that keeps none receives zeros). An agent hears nothing from a non-neighbour: after r rounds
    agent i's output does not depend on an agent more than r hops away (exactly: zero gradient).

    Messages are gathered per neighbour slot ([*B, n, k, message_size], k = max degree or top_k),
    so the cost is O(n k), not O(n^2) as for CommNet/TarMAC; only `random_geometric` computes the
    n x n distances (cheap, no parameters) to find the edges every call.

    Dropout and noise act in training mode only, unless `noisy_eval=True` (to evaluate a policy
    under an unreliable channel).

    Args:
        features: F, the width of h.
        graph: "ring", "star", "grid", "complete", "random_geometric", or an adjacency [n, n]
            (bool or 0/1; fixes n).
        message_size: width of a message (bandwidth).
        rounds: communication steps.
        radius: `random_geometric` only: agents within this distance are adjacent.
        top_k: keep at most this many neighbours per agent (None: all).
        dropout: probability of dropping each received message.
        noise: standard deviation of Gaussian noise added to each sent message.
        noisy_eval: keep dropout and noise in eval mode too.
        activation: the update's non-linearity.
    """

    def __init__(
        self,
        features: int,
        graph: str | torch.Tensor = "complete",
        message_size: int = 16,
        rounds: int = 1,
        radius: float = 1.0,
        top_k: int | None = None,
        dropout: float = 0.0,
        noise: float = 0.0,
        noisy_eval: bool = False,
        activation: type[nn.Module] = nn.Tanh,
    ):
        super().__init__()
        if isinstance(graph, str) and graph not in GRAPHS:
            raise ValueError(f"unknown graph '{graph}'; choose one of: {', '.join(GRAPHS)} (or pass an adjacency)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        self.graph = graph if isinstance(graph, str) else "adjacency"
        if not isinstance(graph, str):
            adjacency = torch.as_tensor(graph).bool()
            self.register_buffer("adjacency", adjacency & ~torch.eye(adjacency.shape[0], dtype=torch.bool, device=adjacency.device), persistent=False)
        self.radius, self.top_k, self.dropout, self.noise, self.noisy_eval = radius, top_k, dropout, noise, noisy_eval
        self.speak = nn.ModuleList([nn.Linear(features, message_size) for _ in range(rounds)])
        self.update = nn.ModuleList([nn.Linear(features + message_size, features) for _ in range(rounds)])
        self.act = activation()
        self.random_marker = random_marker()
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _static_neighbours(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(index [n, k], mask [n, k]) of each agent's neighbours in a fixed graph, cached per n."""
        if n not in self._tables:
            if self.graph == "adjacency":
                if self.adjacency.shape[0] != n:
                    raise ValueError(f"the adjacency is for {self.adjacency.shape[0]} agents, got {n}")
                adjacency = self.adjacency.cpu()
            else:
                adjacency = graph_adjacency(self.graph, n)
            self._tables[n] = _slots(adjacency, self.top_k, None)
        index, mask = self._tables[n]
        return index.to(device), mask.to(device)

    def neighbours(self, n: int, positions: torch.Tensor | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, mask), [n, k] for a fixed graph or [*B, n, k] for `random_geometric`: slot s
        of agent i holds neighbour index[i, s] where mask[i, s]."""
        if self.graph != "random_geometric":
            return self._static_neighbours(n, device)
        if positions is None:
            raise ValueError("graph 'random_geometric' needs the agents' positions [*B, n, D] every call")
        distance = torch.cdist(positions, positions)  # [*B, n, n]
        adjacency = geometric_adjacency(positions, self.radius)
        return _slots(adjacency, self.top_k, distance)

    def forward(self, h: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        *batch, n, _ = h.shape
        index, mask = self.neighbours(n, positions, h.device)  # [n, k] (fixed graph) or [*B, n, k]
        mask = mask.expand(*batch, *mask.shape[-2:])
        noisy = self.training or self.noisy_eval
        if noisy and self.dropout > 0:
            mask = mask & (torch.rand(mask.shape, device=h.device) >= self.dropout)
        weight = mask.to(h.dtype)
        weight = weight / weight.sum(-1, keepdim=True).clamp(min=1.0)  # masked mean [*B, n, k]
        for speak, update in zip(self.speak, self.update):
            m = speak(h)  # [*B, n, M]
            if noisy and self.noise > 0:
                m = m + self.noise * torch.randn_like(m)
            received = (weight.unsqueeze(-1) * _gather_agents(m, index)).sum(-2)  # c_i [*B, n, M]
            h = self.act(update(torch.cat([h, received], dim=-1)))
        _record(self, neighbours_heard=mask.float().sum(-1).mean(), message_norm=m.norm(dim=-1).mean())
        return h


def _gather_agents(m: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """m [*B, n, M] at neighbour slots index [n, k] or [*B, n, k] -> [*B, n, k, M], by indexing
    (its backward adds into [*B, n, M]: no n x n tensor in either direction)."""
    if index.dim() == 2:
        return m[..., index, :]
    *batch, n, size = m.shape
    flat = m.reshape(-1, n, size)  # [Bf, n, M]
    rows = torch.arange(flat.shape[0], device=m.device).view(-1, 1, 1)
    return flat[rows, index.reshape(-1, *index.shape[-2:])].reshape(*batch, *index.shape[-2:], size)


def _slots(adjacency: torch.Tensor, top_k: int | None, distance: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour slots of an adjacency [*, n, n]: (index [*, n, k], mask [*, n, k]), k = the
    largest degree, capped at top_k; neighbours come first in index order, or nearest first
    when `distance` is given."""
    n = adjacency.shape[-1]
    rank = torch.arange(n, device=adjacency.device, dtype=torch.float32) if distance is None else distance
    key = torch.where(adjacency, rank.expand(adjacency.shape), torch.full_like(adjacency, float("inf"), dtype=torch.float32))
    degree = int(adjacency.sum(-1).max()) if adjacency.numel() else 0
    k = max(1, min(degree, top_k) if top_k is not None else degree)
    order = key.topk(min(k, n), dim=-1, largest=False)
    return order.indices, torch.isfinite(order.values)
