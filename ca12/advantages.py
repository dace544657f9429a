"""Generalised advantage estimation with explicit names: the teaching API of TorchRL's GAE.

TorchRL's `GAE` / `MultiAgentGAE` modules read their inputs from TensorDict keys and its
functional form takes a `done` flag that folds terminations and truncations together; this
function names every input and says what each end of a trajectory does. The arithmetic is
TorchRL's own (`vec_generalized_advantage_estimate`), so the two agree to float precision.
"""

from __future__ import annotations

import torch
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lmbda: float,
    *,
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and value targets (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16), computed by TorchRL.

    With d_t = terminated_t and e_t = terminated_t or truncated_t (the trajectory ends after
    step t), along time:

        delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma lambda (1 - e_t) A_{t+1}        (A_T = 0 past the batch)
        G_t     = A_t + V(s_t)                                     (the value target)

    A termination does not bootstrap (the next state has no value); a truncation (time limit,
    or the end of the batch) still bootstraps from `next_values`, but the lambda-return is not
    carried across it: the next step belongs to another episode.

    Args:
        rewards: r_t, shaped [..., T, 1] with time at `time_dim` (TorchRL's layout, e.g.
            [B, T, 1], or [B, T, n_agents, 1] with `time_dim=-3`).
        values: V(s_t), same shape.
        next_values: V(s_{t+1}), the value of the step's next observation, same shape.
        terminated: bool, the episode ended at step t for good (no bootstrap).
        truncated: bool, the episode was cut at step t (bootstrap, but no carry).
        gamma: discount factor.
        lmbda: GAE lambda (0: one-step TD advantages, 1: Monte-Carlo returns minus V).
        time_dim: the dimension of time (-2 by default).

    Returns:
        (advantages, value_targets), both shaped like `rewards`.
    """
    terminated, truncated = terminated.bool(), truncated.bool()
    return vec_generalized_advantage_estimate(
        gamma, lmbda, values, next_values, rewards, done=terminated | truncated, terminated=terminated, time_dim=time_dim
    )
