"""Recurrent (GRU / LSTM) multi-agent networks as TensorDict modules.

`make_recurrent` builds `MultiAgentRecurrent`: [MLP encoder] -> GRU/LSTM core -> linear head, per
agent, following TorchRL's multi-agent layout (`(group, key)` entries [*B, n_agents, F]) and
TorchRL's recurrent conventions (`GRUModule` / `LSTMModule`):

* the hidden state lives in the tensordict, read from `(group, f"{name}_h")` (and `_c` for the
  LSTM) and written to `("next", group, f"{name}_h")`, so the collector's `step_mdp` carries it
  from step to step; `make_tensordict_primer()` registers it with the env;
* `"is_init"` (root, [*B, 1], from `torchrl.envs.InitTracker`) zeroes the hidden state where an
  episode starts;
* step mode (one step per call, the collector) by default; sequence mode (a [*B, T] batch, time
  last) inside `torchrl.modules.set_recurrent_mode(True)` — which TorchRL losses enter by
  themselves in `forward` — or on the copy returned by `module.set_recurrent_mode(True)`.

Why not TorchRL's GRUModule/LSTMModule: they wrap one `nn.GRU`, i.e. one weight set, so
per-agent weights (share_params=False) would need one module per agent plus a tensordict rebuilt
per agent and call; their primer has no agent dim; and in sequence mode they write placeholder
zeros as the hidden output of every step but the last. This thin module keeps a leading agent
axis on its weights (size 1 when shared) and returns the true hidden state at every step.

Core implementation: a loop over T with masking, in PyTorch's GRU/LSTM gate conventions (same
results as `nn.GRU`/`nn.LSTM` given the same weights). Per layer, the input projection of all T
steps is one matmul; only `W_hh h` and the gates run in the Python loop. Step mode is the same
code with T=1, so a sequence replay equals the step-by-step rollout by construction (tested).
A cuDNN `nn.GRU` with sequences split at resets was not used: it cannot hold per-agent weights,
needs data-dependent padding at every mid-sequence reset, and only returns the final state.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.modules import MultiAgentMLP, set_recurrent_mode
from torchrl.modules import recurrent_mode as global_recurrent_mode

_GATES = {"gru": 3, "lstm": 4}


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., n, F] @ weight [A, O, F] (+ bias [A, O]) -> [..., n, O]; A is 1 (shared) or n."""
    if weight.shape[0] == 1:
        return F.linear(x, weight[0], None if bias is None else bias[0])
    y = torch.einsum("...nf,nof->...no", x, weight)
    return y if bias is None else y + bias


def time_major_inputs(tensordict: TensorDictBase, in_key: NestedKey, n_agents: int, sequence: bool) -> tuple[torch.Size, torch.Tensor, torch.Tensor]:
    """A stateful group net's inputs, time first: (batch size, `in_key` [T, M, n, F], is_init [T, M]).

    Step mode reads a [*B] tensordict as T=1; sequence mode reads [*B, T] (time last), M being
    the flattened *B. Raises (ValueError, KeyError) on a batch without a time dim in sequence
    mode, a missing `is_init` (no InitTracker) or an input that is not [*batch, n_agents, F].
    """
    batch = tensordict.batch_size
    if "is_init" not in tensordict.keys():
        raise KeyError("'is_init' missing: add torchrl.envs.InitTracker() to the env's transforms")
    x, steps = tensordict.get(in_key), 1
    if sequence:
        if not batch:
            raise ValueError("sequence mode needs a tensordict with a time dim (the last batch dim)")
        steps = batch[-1]
    if tuple(x.shape[:-1]) != (*batch, n_agents):
        raise ValueError(f"{in_key} has shape {tuple(x.shape)}, expected [{', '.join(map(str, batch))}, {n_agents}, F]")
    time_first = x.reshape(-1, steps, n_agents, x.shape[-1]).transpose(0, 1)
    return batch, time_first, tensordict.get("is_init").reshape(-1, steps).transpose(0, 1)


class MultiAgentRecurrent(TensorDictModuleBase):
    """[MLP encoder] -> GRU/LSTM -> linear head for every agent of a group; see `make_recurrent`.

    Reads `in_key` [*B, n, n_in], `"is_init"` [*B, 1] and the hidden state(s) `hidden_keys`
    [*B, n, num_layers, hidden_size] (missing = zeros); writes `out_key` [*B, n, n_out] and the
    next hidden state(s) under `("next", *hidden_key)`. In sequence mode the batch is [*B, T]:
    the run starts from the stored hidden state at t=0, resets wherever `is_init` is True, and
    writes the output and the true hidden state of every step.
    """

    def __init__(
        self,
        kind: str,
        *,
        n_in: int,
        n_out: int,
        n_agents: int,
        share_params: bool,
        hidden_size: int,
        num_layers: int,
        mlp_sizes: Sequence[int],
        activation: type[nn.Module],
        device,
        group: str,
        in_key: NestedKey,
        out_key: NestedKey,
        name: str,
        talk: nn.Module | None = None,
    ):
        super().__init__()
        if kind not in _GATES:
            raise ValueError(f"unknown recurrent kind '{kind}'; choose one of: {', '.join(_GATES)}")
        if min(n_in, n_out, n_agents, hidden_size, num_layers) <= 0:
            raise ValueError("n_in, n_out, n_agents, hidden_size and num_layers must be positive")
        self.kind, self.n_agents, self.hidden_size, self.num_layers = kind, n_agents, hidden_size, num_layers
        self.group = group
        self.hidden_keys: list[tuple[str, ...]] = [(group, f"{name}_{s}") for s in (("h", "c") if kind == "lstm" else ("h",))]
        self.in_keys = [unravel_key(in_key), "is_init", *self.hidden_keys]
        self.out_keys = [unravel_key(out_key), *(("next", *key) for key in self.hidden_keys)]
        self._recurrent_mode = False
        # Talking controllers (IC3Net, ca12/nets/ic3net.py): `talk(h, replayed gates)` turns the state
        # before a step into a message added to the core's input, and the gates it took are written.
        self.talk = talk
        self.gate_key = (group, f"{name}_gate")
        if talk is not None:
            if num_layers != 1:
                raise ValueError("a talking controller has one recurrent layer (its message joins the layer's input)")
            self.out_keys.append(self.gate_key)

        mlp_sizes = list(mlp_sizes)
        agent_net = dict(n_agents=n_agents, centralized=False, share_params=share_params, device=device)
        self.encoder = (
            MultiAgentMLP(n_in, mlp_sizes[-1], num_cells=mlp_sizes[:-1], activation_class=activation, activate_last_layer=True, **agent_net)
            if mlp_sizes
            else None
        )
        self.head = MultiAgentMLP(hidden_size, n_out, num_cells=[], **agent_net)
        # Core weights in nn.GRU/nn.LSTM layout with a leading agent axis: [A, gates*H, in], A = 1 if shared.
        a, g, bound = 1 if share_params else n_agents, _GATES[kind] * hidden_size, 1 / math.sqrt(hidden_size)

        def param(*shape: int) -> nn.Parameter:  # nn.GRU's init: U(-1/sqrt(H), 1/sqrt(H))
            return nn.Parameter(torch.empty(*shape, device=device).uniform_(-bound, bound))

        core_in = mlp_sizes[-1] if mlp_sizes else n_in
        self.w_ih = nn.ParameterList([param(a, g, core_in if i == 0 else hidden_size) for i in range(num_layers)])
        self.w_hh = nn.ParameterList([param(a, g, hidden_size) for _ in range(num_layers)])
        self.b_ih = nn.ParameterList([param(a, g) for _ in range(num_layers)])
        self.b_hh = nn.ParameterList([param(a, g) for _ in range(num_layers)])

    @property
    def recurrent_mode(self) -> bool:
        """TorchRL's global `set_recurrent_mode` context wins; else this module's own default."""
        mode = global_recurrent_mode()
        return bool(self._recurrent_mode) if mode is None else bool(mode)

    def set_recurrent_mode(self, mode: bool = True) -> MultiAgentRecurrent:
        """A copy sharing all parameters, whose default mode is `mode` (TorchRL's pre-0.8 API).

        The collector keeps the step-mode original while a loss uses the sequence-mode copy.
        """
        out = copy.copy(self)  # shallow: same parameter and submodule objects
        out._recurrent_mode = mode
        return out

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """Zero hidden state(s) [n_agents, num_layers, hidden_size] per env, at every reset.

        The group is given its agent dim: with plain `{(group, key): spec}` the primer would
        build a `group` Composite of the env's batch shape, clashing with the env's own
        [*B, n_agents] group (the Collector then fails to stack its buffers).
        """
        shape = (self.n_agents, self.num_layers, self.hidden_size)
        entries = {key[-1]: Unbounded(shape=shape) for key in self.hidden_keys}
        return TensorDictPrimer(Composite({self.group: Composite(entries, shape=(self.n_agents,))}), expand_specs=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        n, shape = self.n_agents, (self.num_layers, self.hidden_size)
        batch, x, reset = time_major_inputs(tensordict, self.in_keys[0], n, self.recurrent_mode)  # [T, M, n, n_in], [T, M]
        steps = x.shape[0]
        state = []
        for key in self.hidden_keys:
            stored = tensordict.get(key, None)  # [*B(, T), n, L, H]
            if stored is None:
                state.append(x.new_zeros(x.shape[1], n, *shape))  # [M, n, L, H]
            else:
                state.append(stored.reshape(-1, steps, n, *shape)[:, 0])  # state at t=0: [M, n, L, H]
        if self.encoder is not None:
            x = self.encoder(x)  # [T, M, n, E]
        # Sequence mode replays the gates the rollout took; step mode draws its own (in step mode a
        # gate left in the tensordict is the previous step's, kept by step_mdp).
        replay = tensordict.get(self.gate_key, None) if self.talk is not None and self.recurrent_mode else None
        if replay is not None:
            replay = replay.reshape(-1, steps, n, 1).transpose(0, 1)  # [T, M, n, 1]
        y, states, gates = self._unroll(x, reset, state, replay)  # [T, M, n, H], each [T, M, n, L, H], [T, M, n, 1]

        def to_batch(value: torch.Tensor) -> torch.Tensor:  # [T, M, ...] -> [*batch, ...]
            return value.transpose(0, 1).reshape(*batch, *value.shape[2:])

        for prefix in {key[:-1] for key in self.out_keys if isinstance(key, tuple) and key[-2] == self.group}:
            if prefix not in tensordict.keys(include_nested=True):  # a group's entries carry the agent dim
                tensordict.set(prefix, TensorDict(batch_size=(*batch, n), device=tensordict.device, names=[*tensordict.names, None]))
        tensordict.set(self.out_keys[0], to_batch(self.head(y)))  # [*batch, n, n_out]
        for key, value in zip(self.out_keys[1 : 1 + len(states)], states):
            tensordict.set(key, to_batch(value))  # [*batch, n, L, H]
        if gates is not None:
            tensordict.set(self.gate_key, to_batch(gates))  # [*batch, n, 1]
            self.talk.record(gates)
        return tensordict

    def _unroll(
        self, x: torch.Tensor, reset: torch.Tensor, state: list[torch.Tensor], replay: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Runs the stacked core over T steps, layer by layer.

        Args:
            x: inputs [T, M, n, F].
            reset: [T, M], True where the hidden state is zeroed before the step.
            state: hidden state(s) before step 0, each [M, n, L, H] (h, or h and c).
            replay: with `talk`, the gates to reuse [T, M, n, 1] (None: `talk` draws them).

        Returns:
            Top-layer outputs [T, M, n, H], the state(s) after every step, each [T, M, n, L, H],
            and with `talk` the gates of every step [T, M, n, 1] (else None).
        """
        keep = ~reset[..., None, None]  # [T, M, 1, 1]
        per_layer, gates = [], []
        for layer in range(self.num_layers):
            gi = _linear(x, self.w_ih[layer], self.b_ih[layer])  # [T, M, n, G*H]: all steps in one matmul
            s = [v[:, :, layer] for v in state]  # [M, n, H] each
            trace: list[list[torch.Tensor]] = [[] for _ in s]
            for t in range(x.shape[0]):
                s = [torch.where(keep[t], v, 0.0) for v in s]  # episode start: zero state
                step_in = gi[t]
                if self.talk is not None:  # the message heard before this step joins its input: W_ih (e + c)
                    message, gate = self.talk(s[0], None if replay is None else replay[t])
                    step_in = step_in + _linear(message, self.w_ih[layer])
                    gates.append(gate)
                s = self._cell(step_in, _linear(s[0], self.w_hh[layer], self.b_hh[layer]), s)
                for acc, v in zip(trace, s):
                    acc.append(v)
            per_layer.append([torch.stack(acc) for acc in trace])  # [T, M, n, H] each
            x = per_layer[-1][0]  # this layer's h feeds the next layer
        states = [torch.stack([states[i] for states in per_layer], dim=-2) for i in range(len(state))]
        return x, states, torch.stack(gates) if gates else None

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor, s: list[torch.Tensor]) -> list[torch.Tensor]:
        """One step of PyTorch's GRU (gates r, z, n) or LSTM (gates i, f, g, o); gi, gh [M, n, G*H]."""
        if self.kind == "gru":
            (ir, iz, i_n), (hr, hz, h_n) = gi.chunk(3, -1), gh.chunk(3, -1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            candidate = torch.tanh(i_n + r * h_n)
            return [candidate + z * (s[0] - candidate)]  # (1 - z) * n + z * h
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
        return [torch.sigmoid(o) * torch.tanh(c), c]


def step_on_next(module: TensorDictModuleBase, td: TensorDictBase) -> TensorDictBase:
    """`module` for each step's next observation of a sequence batch `td` [*B, T], to bootstrap from.

    Run after `module`'s sequence pass over `td`, which wrote its true state after every step
    under `("next", group, f"{name}_h")`: one step mode call on `td["next"]` (`is_init` False)
    starts each o_{t+1} from the state after step t, so the state is carried over the step and
    never across an episode end (TorchRL's losses replay the next observations as a second
    sequence instead: from a stale state, and across episode ends). Returns the stepped shallow
    copy of `td["next"]` (its outputs, e.g. V(o_{t+1}) or Q(o_{t+1}, .)).
    """
    following = td["next"].clone(False)
    following.set("is_init", torch.zeros(*td.shape, 1, dtype=torch.bool, device=td.device))
    with set_recurrent_mode(False):
        return module(following)


def make_recurrent(
    kind: str,
    *,
    n_in: int,
    n_out: int,
    n_agents: int,
    share_params: bool,
    hidden_size: int,
    num_layers: int,
    mlp_sizes: Sequence[int],
    activation: type[nn.Module],
    device,
    group: str,
    in_key: NestedKey,
    out_key: NestedKey,
    name: str,
    talk: nn.Module | None = None,
) -> MultiAgentRecurrent:
    """A GRU ("gru") or LSTM ("lstm") multi-agent network as a TensorDict module.

    Args:
        kind: "gru" or "lstm".
        n_in: per-agent input size of `in_key`.
        n_out: per-agent output size of `out_key`.
        n_agents: agents in `group`.
        share_params: one weight set for all agents (agents folded into the batch) if True,
            per-agent weights otherwise.
        hidden_size: recurrent state size.
        num_layers: stacked recurrent layers.
        mlp_sizes: encoder layer sizes before the core (empty: no encoder); each followed by
            `activation`.
        activation: encoder activation class.
        device: where the weights live.
        group: the agents' group, holding the hidden state entries.
        in_key: input entry, e.g. `(group, "observation")`.
        out_key: output entry, e.g. `(group, "logits")` or `(group, "action_value")`.
        name: hidden state entries are `(group, f"{name}_h")` (and `_c` for "lstm").
        talk: talking controllers (IC3Net's `GatedMessages`, ca12/nets/ic3net.py): before each
            step the message it makes of the state joins the core's input; the gates it took
            are written to `(group, f"{name}_gate")` and replayed in sequence mode.

    Raises:
        ValueError: unknown kind or a non-positive size.
    """
    return MultiAgentRecurrent(
        kind,
        n_in=n_in,
        n_out=n_out,
        n_agents=n_agents,
        share_params=share_params,
        hidden_size=hidden_size,
        num_layers=num_layers,
        mlp_sizes=mlp_sizes,
        activation=activation,
        device=device,
        group=group,
        in_key=in_key,
        out_key=out_key,
        name=name,
        talk=talk,
    )
