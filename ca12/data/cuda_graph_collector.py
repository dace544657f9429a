"""`collector.kind=cudagraph`: on-policy batches from VMAS with each rollout step (policy, env step,
storing) replayed as one CUDA graph.

TorchRL's `Collector` steps a VMAS env from Python: on a GPU a step costs about the same whatever
the number of worlds, almost all of it kernel launches and host reads of device values (the
profile in docs/benchmarks.md). This collector keeps TorchRL's env and policy and its
`step` / `step_mdp` / `maybe_reset`, and runs the part of a step that has no host read as one
captured graph:

    policy(td) -> env.step(td) -> batch[:, t] = td -> td <- step_mdp(td); t += 1

VMAS's own host reads are answered by `NoHostReads` (ca12/envs/vmas/host_reads.py) and its state is
kept in the tensors the graph reads (`CapturedState`, ca12/envs/vmas/). What stays eager is
`maybe_reset` after each step: one host read (is any world done?) and, when one is, VMAS's reset
(its rejection sampling cannot be captured).

The batch is laid out as TorchRL's collector lays it out (`[num_envs, steps]`, the same keys
but `collector`); `capture=False` runs the same step function without a graph (CPU tests).
Exact resume holds as with `sync`: the batches' randomness is a function of the generators a
checkpoint saves, and with episode-aligned batches each batch starts from a reset.
Written here because neither TorchRL nor VMAS offers a captured env step.
"""

from __future__ import annotations

import traceback

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from ca12.errors import UsageError
from ca12.nets.policies import bounds_on_device


def captured_state(env: EnvBase):
    """The `CapturedState` of `env`'s VMAS simulator, or a one-line UsageError for another env."""
    base = getattr(env, "base_env", env)
    if not hasattr(base, "captured_state"):
        raise UsageError(f"collector.kind=cudagraph steps VMAS envs only (this env is {type(base).__name__})")
    return base.captured_state()


class CapturedCollector:
    """See the module docstring. Iterating yields batches `[num_envs, frames_per_batch // num_envs]`.

    Args:
        env: a VMAS env built by ca12 (TorchRL's `VmasEnv` under ca12's transforms).
        policy: the acting policy; read in place (same device), so updated weights reach the
            graph without a copy.
        frames_per_batch: frames per batch, a multiple of the env's worlds.
        reset_at_each_iter: reset every world before each batch (episode-aligned batches).
        capture: capture the step as a CUDA graph (the env on a CUDA device) or run it eagerly.
        warmup: eager steps before the capture (the capture needs every lazily built buffer
            allocated; the warm-up's steps are discarded by a reset).
        rehearse: without `capture`, run the step that would be captured once as if it were
            (every host read of the simulator, policy and TorchRL answered or refused as during
            a capture, CPU tensors too): what checks on a machine without a GPU that the
            rollout of a policy can be captured.
    """

    def __init__(
        self,
        env: EnvBase,
        policy: torch.nn.Module,
        frames_per_batch: int,
        reset_at_each_iter: bool,
        capture: bool = True,
        warmup: int = 3,
        rehearse: bool = False,
    ):
        self.env, self.policy = env, policy
        self.state = captured_state(env)
        self.steps = frames_per_batch // env.batch_size.numel()
        self.reset_at_each_iter, self.warmup = reset_at_each_iter, warmup
        self.capture, self.rehearse = capture, rehearse
        if capture and env.device.type != "cuda":
            raise UsageError(f"collector.kind=cudagraph captures the rollout on a GPU: set env.device=cuda (it is {env.device})")
        self._carrier: TensorDictBase | None = None  # the step's input, in tensors the graph reads
        self._batch: TensorDictBase | None = None
        self._t = torch.zeros(1, dtype=torch.long, device=env.device)
        self._graph = None

    # --- the step ------------------------------------------------------------------------------------
    def _step(self) -> None:
        """One rollout step into the batch and the carrier: the function the graph captures."""
        with self.state.mode:
            td = self.policy(self._carrier.copy())
            td = self.env.step(td)
            for key in self._batch_keys:
                self._batch.get(key).index_copy_(1, self._t, td.get(key).unsqueeze(1))
            self._carrier.update_(self.env._step_mdp(td).select(*self._carrier_keys))
            self._t += 1
            self.state.anchor()

    def _reset(self, done_only: bool) -> None:
        """Reset the done worlds (all with `done_only=False`) eagerly and put their first
        observation into the carrier."""
        if done_only:
            carried = self._carrier.copy()
            if not self.env.any_done(carried):  # the step's one host read
                return
            fresh = self.env.reset(carried, select_reset_only=True)  # what `maybe_reset` does
        else:
            fresh = self.env.reset()
        self._carrier.update_(fresh.select(*self._carrier_keys))
        self.state.anchor()

    def _build(self) -> None:
        """Allocate the carrier and the batch from one eager step, warm up, and capture."""
        self._carrier = self.env.reset()
        td = self.env.step(self.policy(self._carrier.copy()))
        # What one step hands the next: what the env wrote under "next" (observations, done
        # flags, return counters, a recurrent policy's state), as `step_mdp` moves it to the root.
        self._carrier_keys = [
            k for k in self.env._step_mdp(td).keys(True, True) if ("next", *((k,) if isinstance(k, str) else k)) in td.keys(True, True)
        ]
        self._carrier = self._carrier.select(*self._carrier_keys).clone()
        self._batch_keys = [k for k in td.keys(True, True) if not (isinstance(k, tuple) and k[0] == "collector")]
        self._batch = td.select(*self._batch_keys).unsqueeze(1).expand(td.batch_size[0], self.steps).clone()
        self.state.anchor()
        for _ in range(self.warmup):
            self._step()
            self._reset(done_only=True)
        if self.capture:
            bounds_on_device(self.policy, self.env.device)  # a number's copy to the device cannot be captured
            self._graph = self._captured()
        elif self.rehearse:
            self.state.mode.rehearse = True
            try:
                self._step()
            finally:
                self.state.mode.rehearse = False
        self._reset(done_only=False)

    def _captured(self):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graph asks
            self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        first: BaseException | None = None  # what broke the capture (CUDA then reports its own error on leaving it)
        try:
            with torch.cuda.graph(graph):
                try:
                    self._step()
                except Exception as error:
                    first = error
                    raise
        except Exception as error:
            cause = first or error
            frames = traceback.extract_tb(cause.__traceback__)
            where = ([f for f in frames if "/torch/" not in f.filename] or frames)[-1]  # the caller of the failing op
            raise RuntimeError(
                f"capturing the VMAS rollout step failed: {type(cause).__name__}: {str(cause).splitlines()[0]} "
                f"(in {where.name}, {where.filename.rsplit('/', 2)[-1]}:{where.lineno}); collector=sync steps it uncaptured"
            ) from cause
        return graph

    # --- the collector interface -------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> TensorDictBase:
        with set_exploration_type(ExplorationType.RANDOM):
            if self._carrier is None:
                self._build()
            elif self.reset_at_each_iter:
                self._reset(done_only=False)
            self._t.zero_()
            for _ in range(self.steps):
                self._graph.replay() if self._graph is not None else self._step()
                self._reset(done_only=True)
        return self._batch.clone()

    def __iter__(self):
        while True:
            yield self.collect()

    def update_policy_weights_(self) -> None:
        """The graph reads the policy's own parameters, updated in place by the optimiser."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        pass

    def shutdown(self) -> None:
        self._graph = None
