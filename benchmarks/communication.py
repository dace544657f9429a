"""Cost of the communication modules against the number of agents.

    python benchmarks/communication.py                    # 2 to 256 agents
    python benchmarks/communication.py --agents 2 16 64   # some counts

For each module (ca12/nets/communication.py) and agent count n, one forward + backward pass on
features [batch, n, F] (CPU, one thread): the median wall-clock time over `--repeats` and the peak
memory that Python's `tracemalloc` sees during the pass. PyTorch's CPU allocator goes through
malloc, which tracemalloc does not trace, so the memory is measured instead with
`torch.profiler`'s memory profiling (`profile_memory=True`): the peak of the running sum of the
CPU allocations and frees it records. CommNet's mean is O(n F) but TarMAC's attention and a
complete graph's messages cost O(n^2); a graph with `top_k` neighbours costs O(n k). The table
ends with ratios measured in the same run: each module's time over the top_k graph's time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ca12.nets.communication import AttentionCommunication, CommNet, DIALCommunication, GraphCommunication

F, MESSAGE, TOP_K = 64, 32, 4


def modules() -> dict[str, torch.nn.Module]:
    return {
        "commnet": CommNet(F),
        "tarmac": AttentionCommunication(F, message_size=MESSAGE),
        "dial": DIALCommunication(F, message_size=8),
        "graph complete": GraphCommunication(F, "complete", message_size=MESSAGE),
        "graph ring": GraphCommunication(F, "ring", message_size=MESSAGE),
        f"graph top_k={TOP_K}": GraphCommunication(F, "complete", message_size=MESSAGE, top_k=TOP_K),
    }


def step(module: torch.nn.Module, h: torch.Tensor) -> None:
    module(h).square().mean().backward()


def seconds(module: torch.nn.Module, h: torch.Tensor, repeats: int) -> float:
    step(module, h)  # warm-up (graph neighbour tables are cached per n)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(module, h)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(module: torch.nn.Module, h: torch.Tensor) -> int:
    """Peak of the running sum of CPU allocations during one pass (torch.profiler memory events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(module, h)
    events = sorted((e for e in prof.profiler.function_events if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        running += event.cpu_memory_usage
        peak = max(peak, running)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 8, 32, 128, 256])
    parser.add_argument("--batch", type=int, default=32, help="leading batch size")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    nets = modules()
    baseline = f"graph top_k={TOP_K}"
    rows = []
    for n in args.agents:
        h = torch.randn(args.batch, n, F, requires_grad=True)
        for name, module in nets.items():
            rows.append((n, name, seconds(module, h, args.repeats), peak_bytes(module, h)))
    base = {n: t for n, name, t, _ in rows if name == baseline}
    print(f"forward+backward, batch {args.batch}, F={F}, message {MESSAGE}; CPU, 1 thread; memory: torch.profiler peak")
    print(f"{'agents':>6} | {'module':<16} | {'ms':>8} | {'peak MiB':>8} | {'x ' + baseline:>16}")
    print("-" * 68)
    for n, name, t, peak in rows:
        print(f"{n:>6} | {name:<16} | {1e3 * t:>8.2f} | {peak / 2**20:>8.2f} | {t / base[n]:>16.2f}")


if __name__ == "__main__":
    main()
