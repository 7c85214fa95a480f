"""Per-step latency of streaming inference: one-step calls at batch 1 (issue 14, part 3).

Providers, each carrying its state from call to call, same weights, float32, inference:
  grukit stream   ``s = gru.stream(); y = s(x_t)``          x_t (1, 1, H)
  torch.nn.GRU    ``y, h = gru(x_t, h)``                     x_t (1, 1, H)
  torch GRUCell   ``h = cell(x_t, h)``                       x_t (1, H)
Input size = hidden size = H. Rounds interleave the providers (so a slow spell of the machine hits
them alike); each call is timed on its own and the table gives the median over all calls, in
microseconds, with the speedup of the stream over each torch provider.

The last column is a floor for any implementation that calls a BLAS per step: the two
matrix-vector products of one step (``x W_ih^T`` and ``h W_hh^T`` at batch 1, through the same
GEMM binding the kernels use), timed in a compiled loop of ``--calls`` steps, per step.

    python scripts/stream_latency.py                  # H = 64, 256, 1024
    python scripts/stream_latency.py --quick          # a smoke run, seconds, numbers meaningless
    python scripts/stream_latency.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import grukit
from grukit.bench.report import cpu_features


def providers(H: int):
    """The three one-step callables, each closing over its carried state."""
    ref = torch.nn.GRU(H, H).eval()
    gru = grukit.GRU(H, H, reset_after=True).eval()
    gru.load_state_dict(ref.state_dict())
    cell = torch.nn.GRUCell(H, H).eval()
    with torch.no_grad():
        for a, b in zip(cell.parameters(), ref.parameters()):
            a.copy_(b)
    stream = gru.stream()
    state = {"h": torch.zeros(1, 1, H), "c": torch.zeros(1, H)}

    def run_stream(x):
        return stream(x)

    def run_gru(x):
        y, state["h"] = ref(x, state["h"])
        return y

    def run_cell(x):
        state["c"] = cell(x[0], state["c"])
        return state["c"]

    # the three compute the same thing: check before timing anything
    xs = torch.randn(5, 1, 1, H)
    with torch.no_grad():
        outs = [torch.cat([f(x).reshape(1, H) for x in xs]) for f in (run_stream, run_gru, run_cell)]
    for name, out in zip(("torch.nn.GRU", "GRUCell"), outs[1:]):
        torch.testing.assert_close(outs[0], out, rtol=1e-4, atol=1e-5, msg=f"stream vs {name}")
    assert stream.path_used == "fast", f"the stream took the {stream.path_used} path"
    run_stream.stream = stream
    return {"grukit stream": run_stream, "torch.nn.GRU": run_gru, "torch GRUCell": run_cell}


def measure(H: int, rounds: int, calls: int, thread_counts: list[int]) -> dict:
    """Median microseconds per call of each provider at each thread count, all interleaved:
    ``{(name, threads): us}``, and the stream's split ``{threads: threads it used}``."""
    fns = providers(H)
    x = torch.randn(1, 1, H)
    keys = [(name, n) for n in thread_counts for name in fns]
    times: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
    used = {}
    with torch.no_grad():
        for _ in range(rounds):
            for name, n in keys:
                torch.set_num_threads(n)
                f, per = fns[name], times[(name, n)]
                for _ in range(max(3, calls // 10)):  # warm-up after the switch
                    f(x)
                for _ in range(calls):
                    t0 = time.perf_counter_ns()
                    f(x)
                    per.append(time.perf_counter_ns() - t0)
                if name == "grukit stream":
                    used[n] = f.stream._lane.threads
    return {k: statistics.median(v) / 1e3 for k, v in times.items()}, used


def products_floor(H: int, rounds: int, calls: int) -> float:
    """Microseconds per step of the two (1, H) x (H, 3H) products alone (median of rounds)."""
    import numpy as np
    from numba import njit

    from grukit.backends._cpu_kernels import mm_nt

    @njit(nogil=True)
    def steps(x, h, w_ih, w_hh, gi, gh, n):
        for _ in range(n):
            mm_nt(x, w_ih, gi, 1.0)
            mm_nt(h, w_hh, gh, 1.0)

    rng = np.random.default_rng(0)
    x, h = (rng.standard_normal((1, H), dtype=np.float32) for _ in range(2))
    w_ih, w_hh = (rng.standard_normal((3 * H, H), dtype=np.float32) for _ in range(2))
    gi, gh = np.zeros((1, 3 * H), np.float32), np.zeros((1, 3 * H), np.float32)
    steps(x, h, w_ih, w_hh, gi, gh, 3)  # compile, warm the caches
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        steps(x, h, w_ih, w_hh, gi, gh, calls)
        per.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(per) / 1e3


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="hidden sizes H")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    p.add_argument("--calls", type=int, default=200, help="one-step calls per provider per round")
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="thread counts to measure every provider at (default: 1 and torch's)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 20 calls")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 20
    counts = args.threads or sorted({1, torch.get_num_threads()})
    cpu, flags = cpu_features()

    print(
        f"CPU: {cpu} ({', '.join(flags)}); torch {torch.__version__}; thread counts {counts}; "
        f"grukit {grukit.__version__}; float32, batch 1, input size = H; "
        f"{args.rounds} interleaved rounds x {args.calls} calls per provider and thread count, "
        "median per call; each provider at its best thread count"
        + ("; QUICK SMOKE RUN, not a measurement" if args.quick else "")
    )
    print()
    print(
        "| H | grukit stream (us) | torch.nn.GRU (us) | torch GRUCell (us) "
        "| vs nn.GRU | vs GRUCell | two products alone (us) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    raw = []
    for H in args.sizes:
        m, used = measure(H, args.rounds, args.calls, counts)
        best = {}
        for name in ("grukit stream", "torch.nn.GRU", "torch GRUCell"):
            n = min(counts, key=lambda c: m[(name, c)])
            best[name] = (m[(name, n)], n)
        (s, ns), (g, ng), (c, nc) = best["grukit stream"], best["torch.nn.GRU"], best["torch GRUCell"]
        floor = products_floor(H, args.rounds, args.calls)
        split = f", split over {used[ns]}" if used[ns] > 1 else ""
        print(
            f"| {H} | {s:.1f} ({ns} thr{split}) | {g:.1f} ({ng} thr) | {c:.1f} ({nc} thr) "
            f"| {g / s:.1f}x | {c / s:.1f}x | {floor:.1f} |"
        )
        raw.append((H, m))
    print()
    print("Every provider and thread count (us):")
    for H, m in raw:
        print(f"  H = {H}: " + "; ".join(f"{name} {n} thr {v:.1f}" for (name, n), v in m.items()))


if __name__ == "__main__":
    main()
