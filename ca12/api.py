"""The Python API: `ca12.train` trains exactly as `python -m ca12.fit` does, `ca12.load` opens a
finished run; both return a `Run`.

    import ca12
    run = ca12.train("mappo", "vmas/balance", seed=1, algo={"lr": 1e-4}, env={"num_envs": 32}, logger="csv")
    run.metrics                       # metrics.csv as a pandas DataFrame
    env = run.make_env()              # the run's env, with what its policy needs on it
    env = ca12.make_env("vmas/balance", seed=3, num_envs=8)   # any registered env, as ca12.fit builds it
    td = env.step(run.policy(env.reset()))
    run.evaluate(episodes=32).episode_reward_mean
    run = ca12.load("runs/mappo/vmas-balance/20260101-120000")   # a run directory or a .ckpt file

Overrides are keyword arguments: `**{"algo.lr": 1e-4}`, or nested, `algo={"lr": 1e-4}` (flattened
to the leaves: `algo.lr=0.0001`); `logger="csv"`, `model="gru"` switch groups; a string is
command-line text (`logger="[csv,tensorboard]"`), a list or dict becomes Hydra's `[a,b]` /
`{k:v}` (a dict *value*, such as `env.hide_observation`, goes under its dotted key).
`"~callbacks.progress": None` removes a callback. Bad input raises `ca12.errors.UsageError`
with the line `python -m ca12.fit` prints after `ca12.fit: error: `, before anything is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tensordict.nn import TensorDictModuleBase

from ca12.algos import OWN_ENVS
from ca12.cli import quiet_libraries
from ca12.envs import make_env as build_env
from ca12.errors import UsageError
from ca12.run.config import load_config, saved_config
from ca12.run.rundir import build_module, checkpoint_path, read_checkpoint, run_dir_of
from ca12.run.train import fit_args, run
from ca12.untrusted import is_env_factory, name_env_factory


def train(algo: str, env: Any = None, /, seed: int = 0, run_dir: str | Path | None = None, **overrides: Any) -> "Run":
    """Train `algo` on `env` as `python -m ca12.fit --algo ALGO --env ENV --seed SEED
    --run-dir DIR KEY=VALUE...` does (`ca12.run.train.run`: same composition, checks, run directory,
    console output) and return the finished run.

    `algo` and `env` are positional so that `algo={...}` and `env={...}` can be sections of
    overrides; `env="family/task"` by keyword names the env too. Your own env: `env=make_env` (a
    function or class that builds it, see ca12/envs/user.py) or its import path `"module:function"`.

    Raises:
        UsageError: bad input (unknown name, key or type; a directory that holds a run...).
        NonFiniteError: a loss became NaN/inf (the last good checkpoint is kept).
        ca12.cli.Interrupted: a signal stopped the run after saving its iteration.
    """
    if isinstance(overrides.get("env"), str) or callable(overrides.get("env")):
        if env is not None:
            raise UsageError(f"the env is given twice: '{env}' and env='{overrides['env']}'")
        env = overrides.pop("env")
    env = _named(env)
    args = fit_args(algo=algo, env=env, seed=seed, run_dir=run_dir, overrides=override_texts(overrides))
    quiet_libraries()
    return Run(run(args))


def _named(env: Any) -> str | None:
    """`env` as `--env` text: a function or class that builds your own env, or its import path
    `module:function`, is named as the user's own code (ca12/envs/user.py) and given by its path."""
    if env is None or (isinstance(env, str) and not is_env_factory(env)):
        return env
    return name_env_factory(env)


def make_env(env: Any, /, seed: int = 0, algo: str | None = None, **overrides: Any):
    """The registered env `env` ("family/task") as `python -m ca12.fit --env ENV` builds it for
    the learner to evaluate on (a TorchRL `EnvBase`, batched over `num_envs` worlds, seeded), for
    your own loops and notebooks. Keyword arguments are its `env` keys (`num_envs=8`,
    `n_agents=5`: conf/env/FAMILY/TASK.yaml, or any VMAS scenario kwarg), with the same types and
    checks as on the command line. `algo` composes the env as that algorithm's config does (e.g.
    `algo="qmix"` asks for discrete actions); by default the algorithm that trains the family
    (`maml` for meta/, else `mappo`).

    Raises:
        UsageError: an unknown env, key or value, in one line.
    """
    env = _named(env)
    family = env.split("/")[0]
    algo = algo or next((name for name, own in OWN_ENVS.items() if own.split("/")[0] == family), "mappo")
    cfg = load_config(algo, env, ["logger=none", *override_texts({"env": overrides})])
    return build_env(cfg.env, seed)


def load(path: str | Path, env: Any = None) -> "Run":
    """The run in a run directory (its `checkpoints/last.ckpt`) or of a checkpoint file;
    a missing or unreadable checkpoint, or one whose run config is not plain data, is a
    one-line `UsageError` (ca12.run.rundir, ca12.run.config.saved_config). A run of your own
    env loads when `env` names its factory (the function, or `module:function`): building the
    env runs that code, which a saved run may not choose."""
    _named(env)
    path = Path(path)
    checkpoint = checkpoint_path(path)
    run = Run(run_dir_of(checkpoint) if checkpoint.is_file() else path, checkpoint)
    run._saved = _kept(read_checkpoint(checkpoint))
    run.config  # checked now: a run whose config is not plain data is refused at load, not later
    return run


def override_texts(overrides: Mapping[str, Any]) -> list[str]:
    """Keyword overrides as `KEY=VALUE` texts (see the module docstring): a dict under a name
    without dots is a section, flattened to its leaves; anything else is one value."""
    texts = []
    for name, value in overrides.items():
        if name.startswith("~"):
            texts.append(name)
        elif isinstance(value, Mapping) and "." not in name and not name.startswith("+"):
            texts += override_texts({f"{name}.{key}": v for key, v in _leaves(value)})
        else:
            texts.append(f"{name}={hydra_value(value, name)}")
    return texts


def _leaves(section: Mapping, prefix: str = ""):
    for key, value in section.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def hydra_value(value: Any, name: str = "value") -> str:
    """`value` as Hydra's override grammar writes it: true/false, null, repr of a float (exact),
    [a,b], {k:v}; a string as it is (command-line text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v, name) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v, name)}" for k, v in value.items()) + "}"
    raise UsageError(f"override {name}: cannot pass a {type(value).__name__} value; give numbers, strings, booleans, None, lists or dicts")


def _kept(checkpoint: dict) -> dict:
    """What a `Run` keeps of a checkpoint: the module's weights and the ca12 section (not the
    optimiser or a replay buffer)."""
    return {"state_dict": checkpoint["state_dict"], "ca12": checkpoint["ca12"]}


class Run:
    """A ca12 run: its directory, config, metrics, trained module and policy.

    Attributes:
        run_dir: the run directory (config.yaml, metrics.csv, checkpoints/).
        checkpoint: the checkpoint the module's weights come from (`checkpoints/last.ckpt`
            unless `ca12.load` was given another).
    """

    def __init__(self, run_dir: str | Path, checkpoint: str | Path | None = None):
        self.run_dir = Path(run_dir)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else self.run_dir / "checkpoints" / "last.ckpt"
        self._saved: dict | None = None

    def __repr__(self) -> str:
        return f"Run('{self.run_dir}')"

    @property
    def saved(self) -> dict:
        """The checkpoint's weights (`state_dict`) and ca12 state (`ca12`: run config, frames,
        iterations), read once."""
        if self._saved is None:
            self._saved = _kept(read_checkpoint(self.checkpoint))
        return self._saved

    @cached_property
    def config(self):
        """The run's resolved config (an OmegaConf DictConfig), as its checkpoint holds it, read as
        data (`ca12.run.config.saved_config`: no interpolation resolved, no class imported, not even
        the `callbacks` section's)."""
        return saved_config(self.saved["ca12"]["run_config"], str(self.checkpoint), callbacks=False)

    @property
    def frames(self) -> int:
        """Frames the checkpoint has trained."""
        return int(self.saved["ca12"]["frames"])

    @property
    def metrics(self):
        """metrics.csv (a row per iteration, a column per metric) as a pandas DataFrame, read
        anew on each access."""
        try:
            import pandas
        except ImportError:
            raise UsageError("Run.metrics needs pandas: pip install pandas") from None
        from ca12.run.tracking import complete_metrics_text

        path = self.run_dir / "metrics.csv"
        if not path.is_file():
            raise UsageError(f"no metrics.csv in '{self.run_dir}'")
        return pandas.read_csv(io.StringIO(complete_metrics_text(path)))

    @cached_property
    def module(self):
        """The trained LightningModule: rebuilt from the config, weights from `checkpoint`, on
        the CPU in eval mode."""
        return build_module(self.config, self.saved["state_dict"], self.checkpoint).cpu().eval()

    @cached_property
    def policy(self) -> "Policy":
        """The acting policy as a function of one env step's observations (`Policy.__call__`)."""
        return Policy(self.module)

    def make_env(self, num_envs: int | None = None, seed: int | None = None):
        """The run's env (`num_envs` worlds, default the run's) with the transforms its policy
        needs (a recurrent policy's state), seeded with `seed` (default the run's)."""
        env_cfg = self.config.env if num_envs is None else OmegaConf.merge(self.config.env, {"num_envs": num_envs})
        return build_env(env_cfg, self.config.seed if seed is None else seed, transforms=self.module.env_transforms())

    def evaluate(self, episodes: int | None = None, deterministic: bool = True):
        """`python -m ca12.evaluate`'s evaluation of `checkpoint` (`ca12.run.score.evaluate`):
        `episodes` (default the run's `eval.episodes`) with the run's evaluation seed; returns its
        `EvalResult` (`episode_reward_mean`, `episode_reward_std`, `per_agent_reward_mean`)."""
        from ca12.run.score import evaluate

        return evaluate(self.checkpoint, episodes, deterministic)[0]


class Policy(TensorDictModuleBase):
    """A trained module's acting policy (`module.policy`) as a plain function: deterministic
    (the distribution's mode) by default, without gradients. A `TensorDictModuleBase` with the
    policy's keys, so TorchRL takes it as it is (`env.rollout(n, policy=run.policy)`)."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.in_keys = list(module.policy.in_keys)
        self.out_keys = list(module.policy.out_keys)

    def forward(self, obs, deterministic: bool = True):
        """Actions for one env step.

        Args:
            obs: a TensorDict as the env gives it (`env.reset()`, or the `"next"` of a step);
                for an env of one agent group also a tensor of that group's observations
                `[*batch, n_agents, obs_dim]`, or a dict of its entries (`{"observation": x}`).
            deterministic: act with the mode (True) or sample.

        Returns:
            for a TensorDict, a copy with the actions written where the env reads them (pass it
            to `env.step`); otherwise the group's action tensor.
        """
        import torch
        from tensordict import TensorDictBase
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        group = None
        if isinstance(obs, TensorDictBase):
            td = obs.copy()
        else:
            group, td = self._group_tensordict(obs)
        device = td.device
        exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
        with torch.no_grad(), set_exploration_type(exploration):
            out = self.module.policy(td.to("cpu"))
        if group is not None:
            return out[group, "action"]
        return out if device is None else out.to(device)

    def _group_tensordict(self, obs):
        """(group, TensorDict) for a single-group env's observation tensor or entries dict."""
        from tensordict import TensorDict

        groups = self.module.layout.groups
        if len(groups) != 1:
            raise UsageError(f"policy(tensor or dict) is for an env of one agent group; this one has {list(groups)}: pass the env's TensorDict")
        if self.module.env_transforms():
            raise UsageError("this policy keeps a state between steps: pass the TensorDict of an env from run.make_env()")
        ((name, group),) = groups.items()
        entries = dict(obs) if isinstance(obs, Mapping) else {"observation": obs}
        entries = entries.get(name, entries)
        observation = entries.get("observation")
        shape = tuple(group.observation_spec.shape)  # [n_agents, obs_dim]
        if observation is None or tuple(observation.shape[-2:]) != shape:
            found = "none" if observation is None else tuple(observation.shape)
            raise UsageError(f"group '{name}' observes [*batch, {shape[0]}, {shape[1]}]; got observation of shape {found}")
        batch = tuple(observation.shape[:-2])
        return name, TensorDict({name: TensorDict(entries, batch_size=[*batch, shape[0]])}, batch_size=batch)
