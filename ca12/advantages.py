"""Generalised advantage estimation with explicit names: the teaching API of TorchRL's GAE.

TorchRL's `GAE` / `MultiAgentGAE` modules read their inputs from TensorDict keys and its
functional form takes a `done` flag that folds terminations and truncations together; this
function names every input and says what each end of a trajectory does. The arithmetic is
TorchRL's own (`vec_generalized_advantage_estimate`), so the two agree to float precision.
"""

from __future__ import annotations

import torch
from torchrl.objectives.value.functional import td0_advantage_estimate, vec_generalized_advantage_estimate


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
    if lmbda == 0:  # one-step TD advantages; TorchRL's vectorised GAE indexes out of range at lambda 0
        advantage = td0_advantage_estimate(gamma, values, next_values, rewards, done=terminated | truncated, terminated=terminated)
        return advantage, advantage + values
    return vec_generalized_advantage_estimate(
        gamma, lmbda, values, next_values, rewards, done=terminated | truncated, terminated=terminated, time_dim=time_dim
    )


def vtrace(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho: float | None = 1.0,
    clip_pg_rho: float | None = 1.0,
    clip_c: float | None = 1.0,
    *,
    lmbda: float = 1.0,
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, "IMPALA", eq. 1 and
    section 4.2), in the argument order of DeepMind's reference (`from_importance_weights`).

    With rho_t = exp(log_rhos_t) = pi(a_t|x_t) / mu(a_t|x_t) (target over behaviour policy),
    clipped as rho_t' = min(clip_rho, rho_t), c_t = lmbda min(clip_c, rho_t) and
    rho_t'' = min(clip_pg_rho, rho_t), and V(x_T) = `bootstrap_value`:

        delta_t = rho_t' (r_t + gamma_t V(x_{t+1}) - V(x_t))
        v_s     = V(x_s) + sum_{t>=s} (prod_{s<=i<t} gamma_i c_i) delta_t      (the V-trace target)
                = V(x_s) + delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1}))         (computed backwards)
        A_s     = rho_s'' (r_s + gamma_s (lmbda v_{s+1} + (1 - lmbda) V(x_{s+1})) - V(x_s))   (v_T = V(x_T))

    The advantage's bootstrap mixes the target and the value as rlax's
    `vtrace_td_error_and_advantage` does: at lmbda = 1 it is the paper's v_{s+1}; below 1,
    on-policy (rho = c = 1), A_s is then exactly GAE(lmbda)'s advantage (tested), where
    bootstrapping with v_{s+1} alone would count the trace twice.

    `discounts` gamma_t is the discount times "the episode goes on after step t" (0 where it
    terminated), so nothing crosses an episode end that terminates. A clip of None leaves that
    weight unclipped. Written out here (not TorchRL's `vtrace_advantage_estimate`) because
    TorchRL's takes one threshold for both rho' and rho'' and no per-step discounts; the two agree
    when clip_pg_rho equals clip_rho (tested). Gradients are not stopped: call it under
    `torch.no_grad()` or on detached values, as the IMPALA learner does.

    Args:
        log_rhos: log pi(a_t|x_t) - log mu(a_t|x_t), shaped [..., T, 1] with time at `time_dim`.
        discounts: gamma_t, same shape.
        rewards: r_t, same shape.
        values: V(x_t) under the current value function, same shape.
        bootstrap_value: V(x_T), the value after the last step, shaped like one time step ([..., 1]).
        clip_rho: rho-bar, the clip of the importance weights in the targets (None: no clip).
        clip_pg_rho: the clip of the weights in the policy-gradient advantages (None: no clip).
        clip_c: c-bar, the clip of the trace-cutting weights (None: no clip).
        lmbda: lambda, a further cut of every trace (the paper's remark in section 4.1, rlax's
            `lambda_`): on-policy the targets are then TD(lambda)'s lambda-returns, GAE's value
            targets; 1 is the paper's V-trace.
        time_dim: the dimension of time.

    Returns:
        (vs, pg_advantages), both shaped like `rewards`.
    """
    if not log_rhos.shape == discounts.shape == rewards.shape == values.shape:
        raise ValueError(
            f"log_rhos, discounts, rewards and values must share one shape, got {[tuple(t.shape) for t in (log_rhos, discounts, rewards, values)]}"
        )
    time_dim = time_dim % values.dim()
    expected = values.shape[:time_dim] + values.shape[time_dim + 1 :]
    if bootstrap_value.shape != expected:
        raise ValueError(f"bootstrap_value must have the shape of one time step {tuple(expected)}, got {tuple(bootstrap_value.shape)}")
    rhos = log_rhos.exp()

    def clipped(threshold: float | None) -> torch.Tensor:
        return rhos if threshold is None else rhos.clamp(max=threshold)

    bootstrap = bootstrap_value.unsqueeze(time_dim)
    values_next = torch.cat([values.narrow(time_dim, 1, values.shape[time_dim] - 1), bootstrap], dim=time_dim)
    deltas = clipped(clip_rho) * (rewards + discounts * values_next - values)
    traces = discounts * lmbda * clipped(clip_c)
    acc = torch.zeros_like(bootstrap_value)
    corrections = []
    for t in reversed(range(values.shape[time_dim])):
        acc = deltas.select(time_dim, t) + traces.select(time_dim, t) * acc
        corrections.append(acc)
    vs = torch.stack(corrections[::-1], dim=time_dim) + values
    vs_next = torch.cat([vs.narrow(time_dim, 1, vs.shape[time_dim] - 1), bootstrap], dim=time_dim)
    q_next = lmbda * vs_next + (1 - lmbda) * values_next if lmbda != 1 else vs_next
    pg_advantages = clipped(clip_pg_rho) * (rewards + discounts * q_next - values)
    return vs, pg_advantages
