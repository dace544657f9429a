"""Value normalisation (`algo.value_norm`, ca12/algos/value_norm.py): the critic learns standardised
returns, GAE reads its outputs rescaled to returns, and the statistics resume with the run."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, resume_pair
from torchrl.objectives.value import MultiAgentGAE

from ca12.algos import algo_class
from ca12.envs import make_env, make_spec_env
from ca12.errors import UsageError
from ca12.run.config import load_config


def _module_and_batch(*overrides: str, steps: int = 20):
    cfg = load_config("mappo", "vmas/navigation", [*TINY, *overrides])
    torch.manual_seed(0)
    module = algo_class("mappo")(cfg, make_spec_env(cfg.env, 0))
    env = make_env(cfg.env, 0, "cpu", transforms=module.env_transforms())
    with torch.no_grad():
        batch = env.rollout(steps, module.policy, break_when_any_done=False)  # episodes of 5: resets inside
    return module, batch


@pytest.mark.parametrize("kind", ["popart", "running"])
@pytest.mark.parametrize("critic", ["mlp", "gru"])
def test_gae_reads_returns_and_the_critic_regresses_on_standardised_targets(kind, critic):
    module, batch = _module_and_batch(f"algo.value_norm={kind}", f"critic_model={critic}")
    norm = module.value_norms["agents"]
    for _ in range(3):  # statistics away from their start: mean about 2, std about 3
        norm.update(torch.randn(500, 1) * 3 + 2)
    before = {name: buffer.clone() for name, buffer in norm.named_buffers()}

    # The reference: the critic's outputs rescaled with the statistics before the batch, then TorchRL's GAE.
    reference = batch.clone()
    module.estimators.values("agents", module.critics["agents"], reference)
    outputs = reference["agents", "state_value"].clone()
    reference["agents", "state_value"] = norm.denormalize(outputs)
    reference["next", "agents", "state_value"] = norm.denormalize(reference["next", "agents", "state_value"])
    gae = MultiAgentGAE(gamma=module.cfg.gamma, lmbda=module.cfg.lmbda, value_network=None)
    gae.set_keys(**{k: getattr(module.loss_module.tensor_keys, k) for k in ("value", "reward", "done", "terminated", "advantage", "value_target")})
    gae(reference)
    returns = reference["agents", "value_target"]

    module.compute_advantage(batch)
    torch.testing.assert_close(batch["agents", "advantage"], reference["agents", "advantage"])
    assert any(not torch.equal(before[name], buffer) for name, buffer in norm.named_buffers())  # the batch's targets folded in
    torch.testing.assert_close(batch["agents", "value_target"], norm.normalize(returns))  # with the updated statistics
    torch.testing.assert_close(batch["agents", "state_value"], outputs)  # the critic's own outputs, for clip_value
    assert ("agents", "state_value_normalised") not in batch.keys(True)


def test_without_value_norm_nothing_changes():
    module, batch = _module_and_batch()
    assert not module.value_norms and not module.estimators
    assert not any("value_norms" in key for key in module.state_dict())


def test_value_norm_statistics_resume_bit_for_bit(tmp_path):
    args = [*TINY, "tuned=none", "logger=none", "algo.value_norm=popart"]
    a, b, _, _ = resume_pair(tmp_path, "ippo", args, 400)
    assert {"value_norms.agents.running_mean", "value_norms.agents.debiasing_term"} <= set(a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["value_norms.agents.debiasing_term"]) > 0


def test_an_unknown_value_norm_is_refused_in_one_line():
    with pytest.raises(UsageError, match="algo.value_norm"):
        load_config("mappo", "vmas/navigation", [*TINY, "algo.value_norm=popartt"])


def test_value_norm_cannot_change_on_resume_and_old_runs_resume_without_it():
    from omegaconf import OmegaConf

    from ca12.run.config import apply_overrides

    with pytest.raises(UsageError, match="algo.value_norm"):
        apply_overrides(load_config("mappo", "vmas/navigation", TINY), ["algo.value_norm=popart"])
    saved = OmegaConf.create(OmegaConf.to_container(load_config("mappo", "vmas/navigation", TINY)))
    del saved.algo["value_norm"]  # a run saved before the key existed
    assert apply_overrides(saved, []).algo.value_norm == "none"
