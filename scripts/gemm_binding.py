"""One step's recurrent product through the kernels' GEMM binding and through ``torch.mm``.

Why the kernels call MKL's ``sgemm_`` from Numba (``docs/performance.md``, "Numba, not a compiled
extension"): the per-step product ``h (N, H) @ W_hh^T (H, 3H)`` of a time loop,

  Numba -> MKL   ``_cpu_kernels.mm_nt`` (PyTorch's own MKL ``sgemm_``, bound by name) called
                 ``--steps`` times in one compiled loop, per call
  torch.mm       ``torch.mm(h, w_t, out=g)`` called from a Python loop, per call

at N = 1, H = 64 (1 thread), N = 8, H = 128 and N = 64, H = 512 (1 and 2 threads), float32.
Rounds interleave the two; the table gives the median over rounds of the time per product.

    .venv/bin/python scripts/gemm_binding.py [--rounds 15] [--steps 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from numba import njit

from grukit.backends._cpu_kernels import mm_nt
from grukit.bench.report import cpu_features

CASES = [(1, 64, (1,)), (8, 128, (1, 2)), (64, 512, (1, 2))]  # (N, H, thread counts)


@njit(nogil=True)
def _numba_loop(h, w, g, steps):
    for _ in range(steps):
        mm_nt(h, w, g, 0.0)  # g (N, 3H) = h (N, H) @ w (3H, H)^T


def _torch_loop(h, w_t, g, steps):
    for _ in range(steps):
        torch.mm(h, w_t, out=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=2000, help="products per sample (fewer for N = 64)")
    args = ap.parse_args()
    cpu, flags = cpu_features()
    print(f"CPU: {cpu} ({', '.join(flags)}); torch {torch.__version__}")
    print(f"float32, median of {args.rounds} interleaved rounds, time per product\n")
    print("| per-step product | threads | Numba -> MKL `sgemm_` | `torch.mm` from Python |")
    print("|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for N, H, thread_counts in CASES:
        h = rng.standard_normal((N, H), dtype=np.float32)
        w = rng.standard_normal((3 * H, H), dtype=np.float32)
        g = np.empty((N, 3 * H), np.float32)
        th, tw_t, tg = torch.from_numpy(h), torch.from_numpy(w).t(), torch.from_numpy(g)
        steps = max(20, args.steps * 64 // max(64, N * H // 8))
        for threads in thread_counts:
            torch.set_num_threads(threads)
            _numba_loop(h, w, g, 2)
            _torch_loop(th, tw_t, tg, 2)
            times: dict[str, list[float]] = {"numba": [], "torch": []}
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                _numba_loop(h, w, g, steps)
                times["numba"].append((time.perf_counter() - t0) / steps)
                t0 = time.perf_counter()
                _torch_loop(th, tw_t, tg, steps)
                times["torch"].append((time.perf_counter() - t0) / steps)
            a, b = (statistics.median(times[k]) * 1e6 for k in ("numba", "torch"))
            print(f"| N={N}, H={H} ({N}x{H} @ {H}x{3 * H}) | {threads} | {a:.1f} µs | {b:.1f} µs |")


if __name__ == "__main__":
    main()
