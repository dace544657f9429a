"""A training curriculum on an env's own parameters (`env.curriculum`), e.g. IC3Net's arrival-rate
curriculum on the traffic junction:

    env.curriculum={arrival_prob: [0.05, 0, 300000]}

moves the env's `arrival_prob` linearly from 0.05 at frame 0 to its configured value (the task's,
or `env.arrival_prob`) at frame 300 000, and keeps it there; before the first frame of the ramp it
is the start value. Each entry is `parameter: [start value, first frame, last frame]`, the
parameter a real number (a float; sizes are not schedulable) the env reads from its own attribute
of that name at every step (the traffic
junction's `arrival_prob`, ...). Written here: TorchRL has no transform that schedules an env's
parameters.

Only the envs a learner collects from get it (`make_env(..., training=True)`): evaluation and the
Python API's envs play the configured value, the task the curriculum leads to. The frames are
those the env itself has stepped (steps x worlds; with several collector workers, each counts its
own), and checkpoints capture the count (`ca12.seeding`, as the env generators), so a resumed run
continues the ramp where it stopped.
"""

from __future__ import annotations

import weakref

from tensordict import TensorDictBase
from torchrl.envs import EnvBase, Transform, TransformedEnv

from ca12.envs.common import register_rng
from ca12.errors import UsageError


class Curriculum(Transform):
    """Sets `env.<parameter>` from its schedule after every step (module docstring).

    Args:
        env: the base env whose attributes it sets.
        schedule: parameter -> (start value, first frame, last frame).
        name: what checkpoints file its frame count under.
    """

    def __init__(self, env: EnvBase, schedule: dict[str, tuple[float, int, int]], name: str):
        super().__init__(in_keys=[], out_keys=[])
        self._env = weakref.ref(env)  # not a submodule: the env holds this transform
        self.schedule = schedule
        self.finals = {key: float(getattr(env, key)) for key in schedule}
        self.frames, self.frames_per_step = 0, env.batch_size.numel()
        register_rng(self, name, lambda c: c.frames, Curriculum.resume_at)
        self.apply()

    def value(self, key: str) -> float:
        """`key`'s value at the current frame count."""
        start, first, last = self.schedule[key]
        done = min(max((self.frames - first) / max(last - first, 1), 0.0), 1.0)
        return start + done * (self.finals[key] - start)

    def apply(self) -> None:
        env = self._env()
        for key in self.schedule:
            setattr(env, key, self.value(key))

    def resume_at(self, frames: int) -> None:
        self.frames = int(frames)
        self.apply()

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        self.frames += self.frames_per_step
        self.apply()
        return next_tensordict


def add_curriculum(env: EnvBase, schedule, name: str) -> TransformedEnv:
    """`env` with a `Curriculum` appended, after one-line checks of every entry (a float the base
    env has as an attribute; a start value and two frame counts, the first not after the last)."""
    base = env.base_env if isinstance(env, TransformedEnv) else env
    checked = {}
    for key, entry in dict(schedule).items():
        if not isinstance(getattr(base, key, None), float):  # a size (an int) fixes the env's shapes: not schedulable
            raise UsageError(f"env.curriculum.{key}: {type(base).__name__} has no real-valued parameter '{key}' to schedule")
        entry = list(entry) if hasattr(entry, "__len__") and not isinstance(entry, str) else []
        numbers = len(entry) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in entry)
        if not numbers or not all(float(f).is_integer() and f >= 0 for f in entry[1:]) or entry[1] > entry[2]:
            raise UsageError(f"env.curriculum.{key} must be [start value, first frame, last frame] with 0 <= first <= last, got {entry}")
        checked[key] = (float(entry[0]), int(entry[1]), int(entry[2]))
    env = env if isinstance(env, TransformedEnv) else TransformedEnv(env)
    env.append_transform(Curriculum(base, checked, name))
    return env
