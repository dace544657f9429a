"""Where a ca12 run's time goes: `torch.profiler` around a short `ca12.fit`, summarised.

    python benchmarks/profile_fit.py --algo mappo [--rows 25] [--trace OUT.json] -- KEY=VALUE ...

Runs `ca12.fit` in this process under the profiler (CPU, and CUDA when present) and prints the
operators with the most self time on the host and on the device, then the host-device
synchronisations (`aten::item` / `aten::_local_scalar_dense`, `cudaStreamSynchronize`,
`cudaDeviceSynchronize`) and kernel launches per iteration: the per-step costs the GPU fast path
removes. Keep the run short (2-3 iterations): every operator is recorded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ca12.fit import main as fit_main

SYNCS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="mappo")
    parser.add_argument("--env", default=None)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--trace", default=None, help="also write a Chrome trace here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--algo", args.algo, "--run-dir", str(Path(tmp) / "run"), "logger=csv", *args.overrides]
        if args.env:
            argv += ["--env", args.env]
        with profile(activities=activities) as prof:
            if fit_main(argv) != 0:
                raise SystemExit("the profiled fit failed")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if torch.cuda.is_available():
        print(averages.table(sort_by="self_cuda_time_total", row_limit=args.rows))
        launches = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
        print(f"kernel launches: {launches}")
    for event in averages:
        if any(event.key.startswith(name) for name in SYNCS):
            print(f"sync {event.key}: {event.count} calls, {event.cpu_time_total / 1e3:.1f} ms host time")
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
