"""MKL's packed float32 GEMM against what the kernels used before it (docs/performance.md).

Two parts, both float32, medians of interleaved rounds:

``product``: one step's recurrent product ``h (N, H) @ W_hh^T (H, 3H)`` on one thread, called
from a compiled loop as the kernels call it: through ``_cpu_kernels.mm_packed`` (``W_hh`` packed
once, ``_cpu_kernels.pack_nt``), through MKL's plain ``sgemm_`` (``mm_nt``), and through
``mm_small`` (dot products for at most ``_small_mm.FEW_ROWS`` rows, else ``sgemm_``); also the
backward's product ``dgh (N, 3H) @ W_hh (3H, H)`` through ``sgemm_`` and packed, with the one-off
cost of packing.

``grid``: whole ``grukit.GRU`` calls (``backend="cpu"``, inference under ``no_grad`` and
training = forward + backward) at 1 and 2 threads with the packed products on and off
(``GRUKIT_CPU_PACKED=0``, read at every call, so both run in one process, alternating), each
with the plan the backend picks for it.

    .venv/bin/python scripts/packed_gemm.py                   # both parts (~4 min on 2 cores)
    .venv/bin/python scripts/packed_gemm.py --parts product --rounds 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from numba import njit

import grukit
from grukit.backends import _blas, _cpu_base
from grukit.backends._cpu_kernels import mm_nn, mm_nt, mm_packed, mm_small, pack_nt
from grukit.bench.cases import STANDARD
from grukit.bench.report import cpu_features

PRODUCTS = [(1, 64), (1, 256), (4, 128), (8, 128), (8, 256), (32, 256), (64, 512), (16, 1024)]


@njit(nogil=True)
def _loop_packed(a, wp, P, c, beta, n):
    for _ in range(n):
        mm_packed(a, wp, P, c, beta)


@njit(nogil=True)
def _loop_nt(a, w, c, n):
    for _ in range(n):
        mm_nt(a, w, c, 0.0)


@njit(nogil=True)
def _loop_small(a, w, c, n):
    for _ in range(n):
        mm_small(a, w, c, 0.0)


@njit(nogil=True)
def _loop_nn(a, w, c, n):
    for _ in range(n):
        mm_nn(a, w, c, 1.0)


def _median_us(fns: dict, n: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f(2)
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f(n)
            times[k].append((time.perf_counter() - t0) / n * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def products(rounds: int) -> None:
    torch.set_num_threads(1)
    print("\n## One step's product, 1 thread (µs per product; x = plain sgemm / packed)\n")
    print("| N, H | forward: packed | sgemm | mm_small | x | backward: packed | sgemm | x | packing once |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for N, H in PRODUCTS:
        h = rng.standard_normal((N, H), dtype=np.float32)
        w = rng.standard_normal((3 * H, H), dtype=np.float32)
        g = np.empty((N, 3 * H), np.float32)
        wp = pack_nt(w, N)
        _loop_packed(h, wp, 3 * H, g, 0.0, 1)
        if not np.allclose(g, h @ w.T, rtol=1e-3, atol=1e-3):
            raise SystemExit("the packed product disagrees with NumPy")
        # the backward's product: dgh (N, 3H) @ W_hh (3H, H), W_hh packed untransposed
        dgh = rng.standard_normal((N, 3 * H), dtype=np.float32)
        dh = np.zeros((N, H), np.float32)
        wt_p = pack_nt(np.ascontiguousarray(w.T), N)  # B^T with B = W_hh^T: packs W_hh's columns
        t0 = time.perf_counter()
        pack_nt(w, N)
        pack_us = (time.perf_counter() - t0) * 1e6
        n = max(10, int(2e7 / (N * H * 3 * H)))
        fwd = _median_us(
            {
                "packed": lambda k: _loop_packed(h, wp, 3 * H, g, 0.0, k),
                "sgemm": lambda k: _loop_nt(h, w, g, k),
                "small": lambda k: _loop_small(h, w, g, k),
            },
            n,
            rounds,
        )
        bwd = _median_us(
            {
                "packed": lambda k: _loop_packed(dgh, wt_p, H, dh, 1.0, k),
                "sgemm": lambda k: _loop_nn(dgh, w, dh, k),
            },
            n,
            rounds,
        )
        print(
            f"| {N}, {H} | {fwd['packed']:.2f} | {fwd['sgemm']:.2f} | {fwd['small']:.2f} | "
            f"{fwd['sgemm'] / fwd['packed']:.2f}x | {bwd['packed']:.2f} | {bwd['sgemm']:.2f} | "
            f"{bwd['sgemm'] / bwd['packed']:.2f}x | {pack_us:.0f} |"
        )


def grid(rounds: int) -> None:
    print("\n## Whole calls, packed products on and off (ms per call; x = off / on)\n")
    print("| case (N, T, I, H) | threads | inference on | off | x | training on | off | x |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in STANDARD:  # the standard grid of `grukit bench`
        N, T, I, H = case.N, case.T, case.I, case.H
        gru = grukit.GRU(I, H, backend="cpu")
        x = torch.randn(T, N, I)

        def infer(k: int) -> None:
            with torch.no_grad():
                for _ in range(k):
                    gru(x)

        def train(k: int) -> None:
            for _ in range(k):
                y, _ = gru(x)
                y.sum().backward()

        for threads in (1, 2):
            torch.set_num_threads(threads)
            row = []
            for fn in (infer, train):
                times: dict[str, list[float]] = {"1": [], "0": []}
                for flag in "10":
                    os.environ[_cpu_base.PACKED_ENV] = flag
                    fn(2)
                for _ in range(rounds):
                    for flag in "10":
                        os.environ[_cpu_base.PACKED_ENV] = flag
                        t0, k = time.perf_counter(), 0
                        while time.perf_counter() - t0 < 0.1:
                            fn(1)
                            k += 1
                        times[flag].append((time.perf_counter() - t0) / k * 1e3)
                on, off = statistics.median(times["1"]), statistics.median(times["0"])
                row.append(f"{on:.2f} | {off:.2f} | {off / on:.2f}x")
            print(f"| {N}, {T}, {I}, {H} | {threads} | {row[0]} | {row[1]} |", flush=True)
    os.environ.pop(_cpu_base.PACKED_ENV, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", choices=["product", "grid"], default=["product", "grid"])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if not _blas.has_packed_gemm():
        raise SystemExit(
            "PyTorch's library exports no MKL packed GEMM (cblas_sgemm_pack): nothing to measure"
        )
    cpu, flags = cpu_features()
    print(f"CPU: {cpu} ({', '.join(flags)}); {os.cpu_count()} cores; torch {torch.__version__}")
    print(f"float32, median of {args.rounds} interleaved rounds")
    if "product" in args.parts:
        products(args.rounds)
    if "grid" in args.parts:
        grid(args.rounds)


if __name__ == "__main__":
    main()
