"""Run Python simulator code with no host reads of device values, so that a CUDA graph can capture it.

A CUDA graph records kernels; it cannot contain a moment where the host waits for a device value
(`if t.any():`, `assert not t.isnan().any()`, `t.item()`), a boolean-mask index (`x[mask] = v`
needs the mask's true positions on the host), or a copy from pageable host memory
(`torch.tensor(0.0, device="cuda")`). VMAS's step does all three, a few dozen times per step.
No library offers a way around them short of rewriting the simulator, so this mode is written
here; it changes none of the simulator's code, only how these few operations run while it is on:

* a host read of a device value by the simulator is answered from a table keyed by the simulator function that
  asks (`answers`): `True`/`False` for reads whose answer is known to be safe (a guard that only
  skips work that would compute exact zeros, an assert that the caller guarantees), `STATIC` for
  reads of configuration that never changes (read once, outside capture, and remembered). A read
  from a function not in the table raises `HostReadError` naming the function and line: the
  code cannot be captured until someone decides what the answer is. Reads outside the
  simulator (the policy, TorchRL) run as they are, except during the capture itself, where
  they get an answer from `OUTSIDE_ANSWERS` or are named instead of breaking the graph.
* `x[mask] = v` (v a number or a 0-dim tensor) becomes `x.copy_(torch.where(mask, v, x))`, and
  `x[mask] += v` (also `-=`, `*=`) the same with `x + v`: the same values, no host read.
* `torch.tensor(number, device=...)` (or `torch.as_tensor`) becomes `torch.full((), number, ...)`: a fill kernel instead
  of a copy from the host.

The same mode runs on the CPU, where nothing needs it, so that tests can check that a simulator
stepped under it gives exactly what it gives without it.
"""

from __future__ import annotations

import sys
from numbers import Number
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

STATIC = object()  # an answer: read the value once, outside capture, and keep it

# Reads outside the simulator, during a capture, by the file and function that read:
# * TorchRL's `TensorSpec.project` asks `is_in` ("is every value within the bounds?") before it
#   clamps; answering "no" clamps always, which leaves values already within the bounds as they are;
# * TorchRL's `TanhNormal` asks whether its bounds are other than +-1 (an affine map after the
#   tanh), and itself assumes "yes" while a capture is on: the map is then exact either way.
OUTSIDE_ANSWERS = {"tensor_specs.py:is_in": False, "tensor_specs.py:project": False, "continuous.py:__init__": True}

_READS = {torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.tolist}


class HostReadError(RuntimeError):
    """Code run under `NoHostReads` read a device value the mode has no answer for."""


def _is_mask(key) -> bool:
    return isinstance(key, torch.Tensor) and key.dtype == torch.bool


def _broadcast_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A mask over the leading dims of `like`, shaped to broadcast against all of them."""
    return mask.reshape(*mask.shape, *[1] * (like.dim() - mask.dim()))


class _Selection:
    """`x[mask]` while `NoHostReads` is on: only good for an in-place update written back
    (`x[mask] += v`), which Python runs as get, in-place op, set."""

    def __init__(self, tensor: torch.Tensor, mask: torch.Tensor):
        self.tensor, self.mask, self.updated = tensor, mask, None

    def _update(self, op, value) -> "_Selection":
        if isinstance(value, _Selection) or (isinstance(value, torch.Tensor) and value.dim() > 0):
            raise HostReadError("x[mask] updated with a tensor of selected values cannot run without a host read")
        self.updated = op(self.tensor if self.updated is None else self.updated, value)
        return self

    def __iadd__(self, value):
        return self._update(torch.add, value)

    def __isub__(self, value):
        return self._update(torch.sub, value)

    def __imul__(self, value):
        return self._update(torch.mul, value)

    def __getattr__(self, name):
        raise HostReadError(f"x[mask] (a boolean-mask selection) used as '.{name}' cannot run without a host read")


class NoHostReads(TorchFunctionMode):
    """See the module docstring.

    Args:
        answers: simulator function name (`co_name`) -> `True`, `False` or `STATIC`.
        package: path prefix of the simulator's source files (its package folder): a read is
            attributed to the innermost calling function from those files.
    """

    def __init__(self, answers: dict[str, Any], package: str, outside: dict[str, bool] | None = None):
        super().__init__()
        self.answers, self.package = answers, package
        self.outside = dict(OUTSIDE_ANSWERS if outside is None else outside)
        self.remembered: dict[tuple, Any] = {}
        # Treat every read as if a capture were on, CPU tensors too (tests and diagnostics on a
        # machine without a GPU: what would break a capture raises instead).
        self.rehearse = False

    def capturing(self) -> bool:
        return self.rehearse or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())

    def _site(self):
        frame = sys._getframe(2)
        while frame is not None and not frame.f_code.co_filename.startswith(self.package):
            frame = frame.f_back
        return frame

    def _answer(self, func, args, kwargs):
        frame = self._site()
        name = frame.f_code.co_name if frame is not None else "<outside the simulator>"
        where = f"{name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})" if frame is not None else name
        if name not in self.answers:
            raise HostReadError(
                f"{where} reads a device value on the host, which a CUDA graph cannot capture; "
                f"ca12 has no safe answer for it (ca12/envs/vmas/host_reads.py)"
            )
        answer = self.answers[name]
        if answer is not STATIC:
            return answer
        site = (frame.f_code, frame.f_lineno)
        if site not in self.remembered:
            if self.capturing():
                raise HostReadError(f"{where} reads a fixed setting first during capture: step once before capturing")
            self.remembered[site] = func(*args, **kwargs)
        return self.remembered[site]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reads = func in _READS and args and isinstance(args[0], torch.Tensor)
        masked = func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and _is_mask(args[1])
        if (reads or masked) and self._site() is None:
            # Outside the simulator: a CPU tensor, or any read before the capture, runs as it is;
            # during the capture it gets its answer from `outside` or is named here (it would
            # break the graph).
            if not self.capturing() or (args[0].device.type == "cpu" and not self.rehearse):
                return func(*args, **kwargs)
            caller = sys._getframe(1)
            site = f"{caller.f_code.co_filename.rsplit('/', 1)[-1]}:{caller.f_code.co_name}"
            if reads and site in self.outside:
                return self.outside[site]
            raise HostReadError(
                f"{caller.f_code.co_name} ({caller.f_code.co_filename.rsplit('/', 2)[-1]}:{caller.f_lineno}) "
                "reads a device value on the host during a CUDA graph capture"
            )
        if reads:
            return self._answer(func, args, kwargs)
        if masked and func is torch.Tensor.__getitem__:
            return _Selection(args[0], args[1])
        if masked:
            tensor, mask, value = args
            if isinstance(value, _Selection):
                if value.tensor is not tensor or value.mask is not mask or value.updated is None:
                    raise HostReadError("x[mask] = y[mask] cannot run without a host read")
                value = value.updated
            elif isinstance(value, torch.Tensor) and value.dim() > 0:
                raise HostReadError("x[mask] = tensor of selected values cannot run without a host read")
            tensor.copy_(torch.where(_broadcast_mask(mask, tensor), value, tensor))
            return None
        if func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], Number) and kwargs.get("device") is not None:
            dtype = kwargs.get("dtype") or (
                torch.get_default_dtype() if isinstance(args[0], float) else torch.bool if isinstance(args[0], bool) else torch.int64
            )
            return torch.full((), args[0], dtype=dtype, device=kwargs["device"])
        try:
            return func(*args, **kwargs)
        except RuntimeError as error:  # CUDA names only itself; say which call, from where, broke the capture
            if not self.capturing():
                raise
            caller = sys._getframe(1)
            while caller.f_back is not None and "/torch/" in caller.f_code.co_filename:
                caller = caller.f_back
            raise HostReadError(
                f"{getattr(func, '__qualname__', func)} from {caller.f_code.co_filename.rsplit('/', 2)[-1]}:"
                f"{caller.f_lineno} ({caller.f_code.co_name}) cannot run during a CUDA graph capture: "
                f"{str(error).splitlines()[0]}"
            ) from error
