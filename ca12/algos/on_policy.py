"""The on-policy update PPO, COMA, IMPALA and TRPO's critic share: epochs of shuffled
minibatches over a collected batch, one guarded optimiser step each (`module.stepper`)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.modules import set_recurrent_mode

from ca12.nets.builder import is_recurrent


def minibatch_epochs(
    module,
    batch: TensorDictBase,
    loss=None,
    num_epochs: int | None = None,
    suffix: str = "",
    target_kl: float | None = None,
    optimiser=None,
) -> dict:
    """`num_epochs` (default `algo.num_epochs`) passes over a collected batch [B, T] in
    shuffled minibatches of `algo.minibatch_size` frames, one guarded optimiser step on `loss`
    (default `module.loss`) each: the on-policy update of PPO and COMA. A recurrent actor or
    critic gets minibatches of whole trajectories ([b, T], b = minibatch_size // T)
    replayed in sequence mode; otherwise frames are shuffled singly. With `target_kl`, the
    epochs stop early once an epoch's mean `kl_approx` term exceeds it (one host sync per
    epoch). `optimiser` defaults to the module's only one. Returns the mean loss terms, the
    gradient norm and the epochs run (`train/epochs`) as `train/` metrics, each name followed
    by `suffix`.
    """
    optimiser, loss = optimiser or module.optimizers(), loss or module.loss
    sequences = is_recurrent(module.model_cfg) or (module.recurrent_critic and is_recurrent(module.critic_model_cfg))
    frames = batch if sequences else batch.reshape(-1)
    size = max(1, module.cfg.minibatch_size // batch.shape[-1]) if sequences else module.cfg.minibatch_size
    terms_sum, n_updates, epochs = None, 0, 0

    def step(minibatch: TensorDictBase) -> TensorDictBase:
        total, terms = loss(minibatch)
        terms = terms.detach()
        terms["grad_norm"] = module.stepper.step(optimiser, total, terms)
        return terms

    name = f"minibatch:{getattr(loss, '__name__', id(loss))}"
    # The fast path captures whole epochs of frames, minibatch by minibatch for sequences.
    fast_epoch = None if sequences else module.stepper.fast_epoch(name, step, frames, size)
    fast = module.stepper.fast_update(name, step) if sequences else None
    with set_recurrent_mode(sequences):
        for _ in range(module.cfg.num_epochs if num_epochs is None else num_epochs):
            epoch_kl, epoch_updates = 0.0, 0
            perm = torch.randperm(frames.shape[0], device=frames.device)
            if fast_epoch is not None:
                terms, count = fast_epoch(perm)
                terms_sum = terms if terms_sum is None else terms_sum + terms
                n_updates += count
                if target_kl is not None:
                    epoch_kl, epoch_updates = terms["kl_approx"], count
            else:
                for index in perm.split(size):
                    # the fast path replays its capture for full-size minibatches only
                    terms = step(frames[index]) if fast is None else fast(frames[index], captured=len(index) == size)
                    terms_sum = terms if terms_sum is None else terms_sum + terms
                    n_updates += 1
                    if target_kl is not None:
                        epoch_kl, epoch_updates = epoch_kl + terms["kl_approx"], epoch_updates + 1
            epochs += 1
            if target_kl is not None and float(epoch_kl / epoch_updates) > target_kl:
                break
    if terms_sum is None:
        return {}
    metrics = {f"train/{key}{suffix}": value.mean() / n_updates for key, value in terms_sum.items()}
    metrics[f"train/epochs{suffix}"] = float(epochs)
    return metrics
