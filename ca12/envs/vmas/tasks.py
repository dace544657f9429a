"""VMAS scenarios of ca12's own, built on VMAS's simulator and scenario classes.

`vmas/speaker_listener`: MPE's speaker-listener with its goal drawn per world. VMAS's port
(`vmas/simple_speaker_listener`) draws one goal landmark for all its worlds at each reset (a
Python attribute of the scenario, not a tensor), so every world of a batch shows the speaker the
same goal and communication can only be learnt across episodes, a handful of goals per batch.
MPE2 draws a goal per env. This subclass keeps VMAS's world (the listener's dynamics, landmarks,
observations of positions and messages) and draws the goal per world: an index tensor, the
speaker's observation (the goal landmark's colour) and the reward (minus the listener's distance
to its goal, counted once per agent, as VMAS's port counts it) read per world. Written here
because neither VMAS nor MPE2 offers a vectorised speaker-listener with per-world goals.
"""

from __future__ import annotations

import torch
from vmas.scenarios.mpe.simple_speaker_listener import Scenario as VmasSpeakerListener
from vmas.simulator.core import Agent, Landmark, Sphere, World
from vmas.simulator.dynamics.static import Static
from vmas.simulator.utils import ScenarioUtils

# MPE's landmark colours; the speaker sees its goal's.
LANDMARK_COLOURS = ((0.65, 0.15, 0.15), (0.15, 0.65, 0.15), (0.15, 0.15, 0.65))


class SpeakerListener(VmasSpeakerListener):
    """See the module docstring. `goal` [worlds] is each world's goal landmark.

    With discrete actions the speaker's only action is its message (3 choices, as in MPE): VMAS's
    port gives the unmovable speaker a 3 x 3 grid of movement actions too, so its flat action
    space has 27 actions, 9 of them for each message. (With continuous actions its two unused
    movement dims stay: VMAS reads the message after `dim_p` physical dims.)
    """

    def __init__(self, continuous_actions: bool = True):
        super().__init__()
        self.continuous_actions = continuous_actions

    def make_world(self, batch_dim: int, device: torch.device, **kwargs):
        # VMAS's world, agents and landmarks (its make_world), the speaker's action as above.
        ScenarioUtils.check_kwargs_consumed(kwargs)
        world = World(batch_dim=batch_dim, device=device, dim_c=3)
        message_only = {} if self.continuous_actions else {"dynamics": Static()}  # VMAS's no-action dynamics
        world.add_agent(Agent(name="speaker_0", collide=False, movable=False, silent=False, shape=Sphere(radius=0.075), **message_only))
        world.add_agent(Agent(name="listener_0", collide=False, movable=True, silent=True, shape=Sphere(radius=0.075)))
        for i in range(3):
            world.add_landmark(Landmark(name=f"landmark {i}", collide=False, shape=Sphere(radius=0.04)))
        self.goal = torch.zeros(batch_dim, dtype=torch.long, device=device)
        self.colours = torch.tensor(LANDMARK_COLOURS, device=device)
        return world

    def reset_world_at(self, env_index: int = None):
        super().reset_world_at(env_index)  # positions, and VMAS's shared goal (used for rendering only)
        worlds = self.world.batch_dim if env_index is None else 1
        goal = torch.randint(0, len(self.world.landmarks), (worlds,), device=self.world.device)
        if env_index is None:
            self.goal = goal
        else:
            self.goal[env_index] = goal[0]

    def _goal_positions(self) -> torch.Tensor:
        landmarks = torch.stack([landmark.state.pos for landmark in self.world.landmarks], dim=1)  # [B, 3, 2]
        return landmarks.gather(1, self.goal.view(-1, 1, 1).expand(-1, 1, landmarks.shape[-1])).squeeze(1)

    def reward(self, agent):
        if agent is self.world.agents[0]:  # once per step, shared by both agents
            listener = self.world.agents[1]
            distance = torch.linalg.vector_norm(listener.state.pos - self._goal_positions(), dim=-1)
            self.rew = -len(self.world.agents) * distance
        return self.rew

    def observation(self, agent):
        if not agent.movable:  # the speaker: its world's goal colour
            return self.colours[self.goal]
        return super().observation(agent)


SCENARIOS = {"speaker_listener": SpeakerListener}
