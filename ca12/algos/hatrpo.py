"""HATRPO (Kuba et al. 2022, "Trust Region Policy Optimisation in Multi-Agent Reinforcement
Learning", ICLR), written here on TRPO's pieces (ca12/algos/trpo.py).

Each agent has its own policy parameters. Per batch the agents are updated one after another,
in a random order i_1..i_n drawn afresh from a generator seeded with the run's seed (its state
is in the checkpoint, so a resumed run draws the same orders). Agent i_m takes a TRPO step on

    L_m(theta) = E[ M_m * pi^{i_m}_theta / pi^{i_m}_old * A ],   M_m = prod_{j<m} pi^{i_j}_new / pi^{i_j}_old

(the probability ratios of the agents already updated in this iteration, fixed during the step:
the paper's sequential update scheme, from its multi-agent advantage decomposition lemma),
subject to its own mean KL <= max_kl. The advantage is each agent's GAE advantage from MAPPO's
centralised critic (TRPO's); with a team reward (e.g. `env.shared_rew=true` on VMAS) and that
critic's shared weights (`critic_model.share_params=true`, the default) every agent's is the
team's, the paper's setting.

Parameters are per agent (TorchRL's `MultiAgentMLP` with `share_params=false`, stacked along an
agent dimension): agent i's surrogate and KL depend only on its slice, so the natural-gradient
step computed over all the actor's parameters moves that slice alone. `model.share_params=true`
is refused, and so are the networks whose weights agents share by design (the communication
modules' channels, the hierarchical managers): one agent's step would move the others' policies,
so the next agent's M factor would be wrong and their KL unbounded. Updating a shared channel in
a constrained step of its own (what HARL would need) is not written.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.envs import EnvBase

from ca12.algos.trpo import TRPO
from ca12.errors import UsageError
from ca12.sections import COMMUNICATION, HIERARCHICAL, IC3NET


class HATRPO(TRPO):
    """HATRPO as a LightningModule: TRPO's critic and advantages, sequential per-agent steps."""

    def __init__(self, cfg: DictConfig, env: EnvBase):
        name = cfg.algo.name
        if cfg.model.kind in (*COMMUNICATION, HIERARCHICAL, IC3NET):
            raise UsageError(
                f"{name} steps each agent's own parameters in turn: model={cfg.model.kind} shares weights between agents "
                f"({'the team managers' if cfg.model.kind == HIERARCHICAL else 'the message channel'}), so one agent's step "
                "would move the others' policies outside their trust regions; use mappo or trpo with it"
            )
        super().__init__(cfg, env)
        if self.model_cfg.share_params:
            raise UsageError(f"{name} updates each agent's own policy: model.share_params=true is refused ({name}'s default is false)")
        self.order_generator = torch.Generator().manual_seed(cfg.seed)
        self.last_order: list[int] = []

    def agent_order(self) -> list[int]:
        """The next random order in which to update the agents (one draw per batch)."""
        return torch.randperm(self.groups[0].n_agents, generator=self.order_generator).tolist()

    def policy_update(self, frames: TensorDictBase) -> dict:
        """One TRPO step per agent, in a random order, each against the advantage reweighted by
        the ratios of the agents updated before it. Metrics: means over agents, and the
        largest agent KL."""
        advantage = frames[self.group, "advantage"].squeeze(-1)  # [N, n_agents]
        with torch.no_grad():
            old = self.policy_terms(frames)
        fisher_kl = self.fisher_kl(frames)
        params = list(self.actor.parameters())
        weight = torch.ones_like(advantage[:, 0])  # M_m [N]: ratios of the agents already updated
        self.last_order, stats = self.agent_order(), []
        for agent in self.last_order:

            def evaluate(agent: int = agent, weight: torch.Tensor = weight):
                ratio, kl = self.ratio_and_kl(frames, old)
                return (weight * ratio[:, agent] * advantage[:, agent]).mean(), kl[:, agent].mean()

            stats.append(self.natural_gradient_step(params, evaluate, lambda agent=agent: fisher_kl()[:, agent].mean()))
            with torch.no_grad():
                weight = weight * self.ratio_and_kl(frames, old)[0][:, agent]
        metrics = {f"train/{name}": sum(s[name] for s in stats) / len(stats) for name in stats[0]}
        metrics["train/kl_max"] = max(s["kl"] for s in stats)
        return metrics

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["hatrpo"] = {"order_generator": self.order_generator.get_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "hatrpo" in checkpoint:
            self.order_generator.set_state(checkpoint["hatrpo"]["order_generator"])


ALGORITHM = HATRPO
