"""IC3Net's gated communication between recurrent controllers (`model=ic3net`).

Singh, Jain, Sukhbaatar 2019, "Learning when to communicate at scale in multiagent cooperative and
competitive tasks" (ICLR), section 3: every agent j runs an LSTM controller, and at each step

    g_j^t     ~ f^g(h_j^t)                                    (a binary gate: does j speak?)
    c_i^t     = C * 1/(n-1) sum_{j != i} g_j^t h_j^t           (what i hears)
    h_i^{t+1} = LSTM(e(o_i^t) + c_i^t, h_i^t)                  (e: the encoder)
    a_i^t     ~ pi(h_i^{t+1})

`GatedMessages` is the f^g and C part; the controller is `ca12.nets.recurrent.MultiAgentRecurrent`
with an LSTM core, which adds the message to its encoder's output before each step (its `talk`
hook). With `gated=False` every gate is 1: the recurrent CommNet the IC3Net paper compares with.

**Difference from the paper, documented:** IC3Net trains the gate as a second action with
REINFORCE. Here the gate is trained through the messages by the straight-through estimator
(Bengio et al. 2013): the rollout samples g ~ Bernoulli(sigmoid(f^g(h))) and the forward value is
that 0/1 sample, while the gradient flows as if it were sigmoid(f^g(h)), so whatever loss trains
the controllers (PPO's, with its advantages) also trains when to speak, with no change to the
algorithm. The gates a rollout sampled are recorded in the tensordict (`(group, f"{name}_gate")`)
and replayed in sequence mode, so a loss recomputes exactly the messages the rollout sent. In eval
mode the gate is deterministic: open when sigmoid(f^g(h)) > 0.5.

Written by hand: no library offers IC3Net as a module (the authors' code is tied to its trainer).
"""

from __future__ import annotations

import torch
from torch import nn

from ca12.nets.communication import _record, mean_of_others, random_marker


class GatedMessages(nn.Module):
    """h [M, n, H] (the controllers' state before a step) -> (message [M, n, E], gate [M, n, 1]).

    Args:
        hidden_size: H, the controller's state width.
        input_size: E, the width of the encoder output the message is added to.
        gated: learn when to speak (IC3Net); False: always speak (recurrent CommNet).
    """

    def __init__(self, hidden_size: int, input_size: int, gated: bool = True):
        super().__init__()
        self.gate = nn.Linear(hidden_size, 1) if gated else None  # f^g: one logit, P(speak) = sigmoid
        self.transform = nn.Linear(hidden_size, input_size, bias=False)  # C
        self.marker = random_marker() if gated else None  # the gate samples: TorchRL's vmap must allow randomness

    def forward(self, h: torch.Tensor, replay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`replay`: the 0/1 gates a rollout took at this step [M, n, 1], reused as the forward value."""
        if self.gate is None:
            gate = hard = torch.ones_like(h[..., :1])
        else:
            p = torch.sigmoid(self.gate(h))
            if replay is not None:
                hard = replay.to(p.dtype)
            elif self.training:
                hard = torch.bernoulli(p.detach())
            else:
                hard = (p > 0.5).to(p.dtype)
            gate = hard + p - p.detach()  # straight-through: the value of `hard`, the gradient of p
        return self.transform(mean_of_others(gate * h)), hard

    def record(self, gates: torch.Tensor) -> None:
        """Keep the share of open gates over a forward pass (`comm/.../gate_open`)."""
        _record(self, gate_open=gates.mean())
