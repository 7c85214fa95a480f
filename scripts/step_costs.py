"""Where a short call's time goes, on this machine, at one thread (docs/performance.md, issue 17).

Prints, as medians of interleaved rounds:

1. the machine's cost of Python and of one small torch op (an empty loop iteration, a
   one-element ``torch.add``): what every per-call overhead is made of;
2. a one-step call (T = 1, N = 1) of ``grukit.GRU`` (``backend="auto"``, which sends it through
   the streaming kernel, and ``backend="cpu"``, the fused op) and of ``torch.nn.GRU`` at H = 64
   and 256, under ``torch.inference_mode``, and the streaming kernel's step alone (called from a
   compiled loop: no Python, no dispatch), so that a call's overhead is its time minus that;
3. the recurrent product of one step at N = 1 (``h (1, H) @ W_hh^T (H, 3H)``) as the kernels
   compute it (``_small_mm.rows_nt``, dot products over the rows of ``W_hh``) and in the
   "axpy" form over a transposed copy of ``W_hh`` (each input times a contiguous row of
   ``W_hh^T``), both compiled with the kernels' flags.

    .venv/bin/python scripts/step_costs.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from numba import njit

import grukit
from grukit.backends import _stream_kernel
from grukit.backends._small_mm import rows_nt

_FLAGS = dict(cache=False, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@njit(**_FLAGS)
def _axpy(A, Bt, C):
    """C (M, P) = A (M, K) @ Bt (K, P)."""
    M, K = A.shape
    P = Bt.shape[1]
    for m in range(M):
        for p in range(P):
            C[m, p] = 0.0
        for k in range(K):
            a = A[m, k]
            for p in range(P):
                C[m, p] += a * Bt[k, p]


@njit(**_FLAGS)
def _repeat_axpy(A, Bt, C, n):
    for _ in range(n):
        _axpy(A, Bt, C)


@njit(**_FLAGS)
def _repeat_step(rec, x_addr, y, n):
    for _ in range(n):
        _stream_kernel.chunk(rec, x_addr, y, 1, 1, 0.0)


@njit(**_FLAGS)
def _repeat_rows(A, B, C, n):
    for _ in range(n):
        rows_nt(A, B, C, 0.0)


def _per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    fn(calls)
    return (time.perf_counter() - start) / calls * 1e6


def _loop(body):
    def run(calls):
        for _ in range(calls):
            body()

    return run


def measure(rounds: int) -> dict[str, float]:
    """name -> median microseconds per call over ``rounds`` interleaved rounds."""
    one = torch.ones(1)
    entries = {
        "python: empty loop iteration": (lambda calls: [None for _ in range(calls)], 200_000),
        "torch: one-element add": (_loop(lambda: one + one), 20_000),
    }
    for H in (64, 256):
        torch.manual_seed(0)
        ours, fused, theirs = grukit.GRU(H, H), grukit.GRU(H, H, backend="cpu"), torch.nn.GRU(H, H)
        x = torch.randn(1, 1, H)  # (T, N, I)
        entries[f"grukit.GRU one step, H={H}"] = (_loop(lambda m=ours, x=x: m(x)), 1000)
        entries[f"grukit.GRU backend='cpu' one step, H={H}"] = (_loop(lambda m=fused, x=x: m(x)), 1000)
        entries[f"torch.nn.GRU one step, H={H}"] = (_loop(lambda m=theirs, x=x: m(x)), 1000)
        ours.eval()  # (a stream keeps its fast lane only in evaluation mode)
        stream = ours.stream()
        stream(x)
        lane = stream._lane  # the one-thread kernel (1 thread: see main)
        assert lane is not None and lane.threads == 1
        y = np.empty((1, 1, H), np.float32)
        entries[f"its streaming kernel's step alone, H={H}"] = (
            lambda calls, lane=lane, x=x, y=y: _repeat_step(lane.rec, x.data_ptr(), y, calls),
            20_000,
        )
        rng = np.random.default_rng(0)
        h = rng.standard_normal((1, H), dtype=np.float32)  # (1, H)
        w = rng.standard_normal((3 * H, H), dtype=np.float32)  # (3H, H)
        wt = np.ascontiguousarray(w.T)  # (H, 3H)
        out = np.zeros((1, 3 * H), np.float32)
        for fn, B in ((_repeat_rows, w), (_repeat_axpy, wt)):
            fn(h, B, out, 10)  # compile
            np.testing.assert_allclose(out, h @ w.T, rtol=1e-4, atol=1e-3)
        entries[f"product 1x{H} @ {H}x{3 * H}: rows_nt (kernels)"] = (
            lambda calls, h=h, w=w, out=out: _repeat_rows(h, w, out, calls),
            20_000,
        )
        entries[f"product 1x{H} @ {H}x{3 * H}: axpy on W_hh^T"] = (
            lambda calls, h=h, wt=wt, out=out: _repeat_axpy(h, wt, out, calls),
            20_000,
        )
    times: dict[str, list[float]] = {name: [] for name in entries}
    with torch.inference_mode():
        for fn, calls in entries.values():
            fn(max(1, calls // 10))  # warm up
        for _ in range(rounds):
            for name, (fn, calls) in entries.items():
                times[name].append(_per_call_us(fn, calls))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from grukit.bench.report import cpu_features

    cpu, flags = cpu_features()
    print(f"{cpu} ({' '.join(flags)}), torch {torch.__version__}, 1 thread, medians of {args.rounds} rounds")
    for name, us in measure(args.rounds).items():
        print(f"{name:<48} {us:10.3f} us")


if __name__ == "__main__":
    main()
