"""How the cpu backend spreads one layer over threads: the plan and the launch.

A plan splits the batch rows into blocks (independent: no synchronisation) or the hidden features
into blocks (which meet at a spin barrier once or twice per step, see ``_cpu_kernels``): each
thread then multiplies only its share of ``W_hh``, so each core streams half the weights, and a
share often fits in that core's own cache. A large batch with a ``W_hh`` that fits in cache splits
rows (no barriers, full-height products); everything else with enough work splits features; tiny
problems run on the calling thread. Blocks run on PyTorch's own OpenMP threads (``_cpu_omp``),
or, where that cannot load, on our worker threads; either way each thread's MKL calls run
sequentially, so exactly one thread per core is busy.

Why PyTorch's threads (measured, ``docs/performance.md``): PyTorch's OpenMP workers keep spinning
for a while after each parallel torch op. Our own threads, meeting at a barrier every step, then
shared the cores with a spinning thread and a feature split that ran 1.8x faster in isolation ran
2-4x *slower* right after a torch op. On PyTorch's pool the spinning threads are the ones that
take the work.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# below this many multiply-adds per layer call, threads cost more than they save
PARALLEL_MIN_MACS = 1_000_000
# rows are split only with at least this many rows per thread, and a W_hh below this size
ROWS_PER_THREAD_MIN = 32
ROW_SPLIT_MAX_BYTES = 2 * 1024 * 1024
# with MKL's packed products (``_cpu_kernels.mm_packed``) a product of a few rows costs little
# more than one of a single row, so a smaller batch is worth splitting by rows already: at least
# this many rows per thread and a W_hh up to this size (measured, docs/performance.md)
ROWS_PER_THREAD_MIN_PACKED = 2
ROW_SPLIT_MAX_BYTES_PACKED = 1024 * 1024
# features are split only from this width on (blocks of at least 64 features): at H = 64 a
# step takes about 2 us, which the split's barriers cost and more (N = 1, T = 1000, H = 64 on one
# thread against two feature blocks: inference 1.43 against 2.28 ms, training 5.22 against 5.68
# on the Intel Xeon, ``scripts/env_ab.py --var GRUKIT_CPU_SPLIT``; 1.8 / 5.6 against 2.5 / 8.6
# on the AMD EPYC; docs/performance.md)
FEATURE_SPLIT_MIN_H = 128
# a kernel on the calling thread with at most this many batch rows runs MKL's products
# sequentially: the backward's per-step sgemm (dh = dgates W_hh) then skips waking MKL's team
# at every step (N = 1, T = 1000, H = 64 training on 2 threads 5.0-6.0 -> 4.1-4.8 ms in
# `grukit bench --variants ...`, Intel Xeon; docs/performance.md)
SEQUENTIAL_STEP_ROWS = 4


@dataclass(frozen=True)
class Plan:
    rows: tuple[int, ...]  # batch block boundaries, (0, ..., N)
    features: tuple[int, ...]  # feature block boundaries, (0, ..., H)

    @property
    def parties(self) -> int:
        return len(self.features) - 1

    def gate_permutation(self, H: int) -> torch.Tensor | None:
        """Row order of the 3H gate rows: each feature block's r, z, n rows together (None with
        one feature block). ``H`` is the last feature bound."""
        assert H == self.features[-1], (H, self.features)
        order = gate_order(self.features)
        return None if order is None else order[0]

    def gate_blocks(self) -> list[tuple[slice, slice, slice]]:
        """Per feature block ``j0:j1``: where its r,z and its n gate rows sit in the permuted
        order, and its features (contiguous, so products over them take views)."""
        return [
            (slice(3 * j0, 3 * j0 + 2 * (j1 - j0)), slice(3 * j0 + 2 * (j1 - j0), 3 * j1), slice(j0, j1))
            for j0, j1 in zip(self.features, self.features[1:])
        ]

    def gate_rows(self, H: int) -> list[tuple[slice, slice, bool]]:
        """The 3H gate rows in pieces contiguous in both orders: each piece's rows in the
        permuted order (``gate_permutation``), its rows in the parameters' own order (r, z, n,
        each H), and whether it is n rows. Without a permutation two pieces (r and z together,
        n); with one, r, z and n of every feature block."""
        if self.parties == 1:
            return [(slice(0, 2 * H), slice(0, 2 * H), False), (slice(2 * H, 3 * H),) * 2 + (True,)]
        return [
            (
                slice(3 * j0 + g * (j1 - j0), 3 * j0 + (g + 1) * (j1 - j0)),
                slice(g * H + j0, g * H + j1),
                g == 2,
            )
            for j0, j1 in zip(self.features, self.features[1:])
            for g in range(3)
        ]


@functools.lru_cache(maxsize=64)
def gate_order(features: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For feature blocks ``features`` (bounds, last = H): the permutation that puts each
    block's r, z, n gate rows together, and its inverse; None with one block. Kept per split, so
    calls do not rebuild them."""
    if len(features) <= 2:
        return None
    H = features[-1]
    perm = torch.cat(
        [torch.arange(g * H + j0, g * H + j1) for j0, j1 in zip(features, features[1:]) for g in range(3)]
    )
    return perm, torch.argsort(perm)


def plan(T: int, N: int, H: int, itemsize: int, packed: bool = False) -> Plan:
    """How a layer call of T steps, N rows and H features is spread over PyTorch's threads;
    ``packed``: the forward's recurrent products go through MKL's packed GEMM."""
    override = os.environ.get("GRUKIT_CPU_SPLIT")  # "rows" | "features" | "none", for measuring
    threads = torch.get_num_threads()
    if override == "none" or threads == 1 or (override is None and T * N * 3 * H * H < PARALLEL_MIN_MACS):
        return Plan((0, N), (0, H))
    weights = 3 * H * H * itemsize
    rows_fit = (N >= ROWS_PER_THREAD_MIN * threads and weights < ROW_SPLIT_MAX_BYTES) or (
        packed and N >= ROWS_PER_THREAD_MIN_PACKED * threads and weights <= ROW_SPLIT_MAX_BYTES_PACKED
    )
    if override is None and not rows_fit and H < FEATURE_SPLIT_MIN_H:
        return Plan((0, N), (0, H))  # too narrow for a feature split to pay
    if override == "rows" or (override is None and rows_fit):
        k = max(1, min(threads, N))
        return Plan(tuple(i * N // k for i in range(k + 1)), (0, H))
    # blocks of at least 64 features (8 when a feature split is forced, for the tests' small H)
    k = max(1, min(threads, H // (8 if override == "features" else FEATURE_SPLIT_MIN_H // 2)))
    # feature blocks in multiples of 8, so every block's vector loops run full width
    cuts = [0] + [int(round(i * H / k / 8)) * 8 for i in range(1, k)] + [H]
    return Plan((0, N), tuple(cuts))


def plan_for(features, T: int, N: int, H: int, itemsize: int, packed: bool = False) -> Plan:
    """The plan for feature blocks ``features`` fixed earlier (data already in their gate order):
    :func:`plan`'s (for ``packed`` products, else for the other kind) when its blocks are the
    same (the usual case), else those blocks alone on every row (the thread count changed in
    between)."""
    for pk in (packed, not packed):
        p = plan(T, N, H, itemsize, pk)
        if p.features == tuple(features):
            return p
    return Plan((0, N), tuple(features))


def _mkl_threads_local(n: int) -> int:
    """Set this thread's MKL thread count (0: back to the global setting); returns the old one."""
    setter = _mkl_local_setter()
    if setter is None:
        return 0
    return setter(ctypes.byref(ctypes.c_int(n)))


@contextlib.contextmanager
def _mkl_sequential():
    """MKL on one thread for the calling thread inside the block, its old setting afterwards."""
    previous = _mkl_threads_local(1)
    try:
        yield
    finally:
        _mkl_threads_local(previous)


def sequential_products(rows: int):
    """For a kernel on the calling thread with ``rows`` batch rows: MKL on one thread inside
    (``_mkl_sequential``) where ``rows`` is at most ``SEQUENTIAL_STEP_ROWS``, else nothing."""
    return _mkl_sequential() if rows <= SEQUENTIAL_STEP_ROWS else contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def _mkl_local_setter():
    from grukit.backends import _blas

    setter = getattr(ctypes.CDLL(_blas.load()), "mkl_set_num_threads_local_", None)
    if setter is not None:
        setter.restype = ctypes.c_int
    return setter


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        workers, thread_name_prefix="grukit-cpu", initializer=_mkl_threads_local, initargs=(1,)
    )


# Blocks of one call wait for each other at barriers, so all of them must run at once: calls that
# use the pool take turns (two Python threads launching at once could otherwise deadlock).
_LAUNCH = threading.Lock()


@functools.lru_cache(maxsize=None)
def _omp():
    """The launcher on PyTorch's OpenMP pool, or None where it cannot load (then our own
    threads run the blocks, after one warning)."""
    try:
        return importlib.import_module("grukit.backends._cpu_omp")
    except Exception as exc:  # no libgomp beside torch, or the callbacks failed to compile
        warnings.warn(
            "grukit: the cpu backend cannot run on PyTorch's OpenMP threads, falling back to its "
            f"own Python threads (slower right after other torch work): {type(exc).__name__}: "
            f"{exc}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def launcher() -> str:
    """Which threads run a multi-threaded launch: ``"openmp"`` (PyTorch's pool) or ``"python"``
    (grukit's own; ``GRUKIT_CPU_THREADS=python`` or where OpenMP cannot load). Loads the OpenMP
    launcher on first use."""
    if os.environ.get("GRUKIT_CPU_THREADS") == "python" or _omp() is None:
        return "python"
    return "openmp"


def launch(kernel, p: Plan, args: tuple) -> None:
    """Run ``kernel(*args, b0, b1, j0, j1, sync, parties)`` for every block of plan ``p``;
    ``args`` is the kernel's ``_cpu_args.ForwardArgs`` or ``BackwardArgs``."""
    blocks = [
        (b0, b1, j0, j1, r)
        for r, (b0, b1) in enumerate(zip(p.rows, p.rows[1:]))
        for j0, j1 in zip(p.features, p.features[1:])
    ]
    sync = np.zeros((len(p.rows) - 1, 16), np.int64)  # one barrier per row block
    if len(blocks) == 1:  # on the calling thread
        with sequential_products(p.rows[-1]):
            kernel(*args, 0, p.rows[-1], 0, p.features[-1], sync[0], 1)
        return
    omp = _omp() if launcher() == "openmp" else None
    with _LAUNCH:
        if omp is not None and omp.run(kernel.__name__, args, blocks, sync, p.parties):
            return
        calls = [(*args, b0, b1, j0, j1, sync[r], p.parties) for b0, b1, j0, j1, r in blocks]
        futures = [_pool(len(calls) - 1).submit(kernel, *c) for c in calls[1:]]
        try:
            with _mkl_sequential():  # the calling thread runs the first block
                kernel(*calls[0])
        finally:
            for future in futures:
                future.result()
