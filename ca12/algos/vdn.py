"""VDN (Sunehag et al. 2018, "Value-Decomposition Networks For Cooperative Multi-Agent
Learning"): QMIX's training with Q_tot = sum over agents of Q_a(o_a, u_a) (TorchRL's
`VDNMixer`), the simplest decomposition whose greedy joint action is every agent's own arg max.
"""

from __future__ import annotations

from tensordict.nn import TensorDictModule
from torchrl.envs import EnvBase
from torchrl.modules import VDNMixer

from ca12.algos.qmix import QMIX


class VDN(QMIX):
    def make_mixer(self, env: EnvBase) -> TensorDictModule:
        n_agents = env.full_observation_spec_unbatched[self.group, "observation"].shape[0]
        mixer = VDNMixer(n_agents=n_agents, device=env.device)
        return TensorDictModule(mixer, in_keys=[(self.group, "chosen_action_value")], out_keys=["chosen_action_value"])


ALGORITHM = VDN
