"""The stream's kernel (``_stream_kernel.chunk_block``) split by hidden units over PyTorch's
OpenMP threads, as ``_cpu_omp`` does for the fused kernels: ``GOMP_parallel`` runs a Numba
``cfunc`` on every thread of a team, the calling thread included, and thread ``k`` runs block
``k``. Here the launch itself is compiled too (``run`` calls ``GOMP_parallel`` from Numba), so
a one-step call pays one Numba dispatch and one parallel region.

The callback reads an int64 record (the slots below). If OpenMP grants a smaller team than asked
(a nested region, ``OMP_THREAD_LIMIT``), every callback returns at once having touched nothing,
and ``run`` computes the chunk on the calling thread instead.
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc, njit, types

from grukit.backends import (
    _cpu_omp,  # loads PyTorch's libgomp into LLVM's symbol table
    _numba_cache,
)
from grukit.backends import _stream_kernel as S
from grukit.backends._addr import ptr

_numba_cache.refresh(
    __file__,
    "_addr",
    "_cpu_omp",
    "_stream_kernel",
    "_cpu_kernels",
    "_small_mm",
    "_sync",
    "_blas",
    "../_layer_options",
)

__all__ = ["run", "run_from", "entry_address"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_gomp_parallel = types.ExternalFunction(
    "GOMP_parallel", types.void(types.int64, types.int64, types.uint32, types.uint32)
)
_thread_num, _team_size = _cpu_omp._thread_num, _cpu_omp._team_size

# blocks start at multiples of this many hidden units (whole cache lines of float32 h)
_ALIGN = 16


@njit(**_JIT)
def _block(m, y_addr, k, dt):
    """Block ``k`` of the chunk the record ``m`` describes, in dtype ``dt``."""
    H, T, N = m[S._HID], m[S._T], m[S._N]
    y = carray(ptr(y_addr, dt), (T * N * H,))
    nb = m[S.THREADS]
    j0 = 0 if k == 0 else (H * k // nb) // _ALIGN * _ALIGN
    j1 = H if k == nb - 1 else (H * (k + 1) // nb) // _ALIGN * _ALIGN
    S.chunk_block(m, y, j0, j1, nb)


@njit(**_JIT)
def _rank(record):
    """This thread's block and the record; -1 (the status set, nothing else touched) when the
    team is smaller than the record's blocks, which would wait for each other forever."""
    m = carray(record, S._HEAD, np.int64)
    if _team_size() != m[S.THREADS]:
        m[S.STATUS] = 1
        return -1, m
    return _thread_num(), carray(record, S._HEAD + S._PER_LAYER * m[S._L], np.int64)


# One callback per float type, compiled (or read from Numba's cache) the first time it runs.
def _entry_f32(record):
    k, m = _rank(record)
    if k >= 0:
        _block(m, m[S._Y], k, np.float32)


def _entry_f64(record):
    k, m = _rank(record)
    if k >= 0:
        _block(m, m[S._Y], k, np.float64)


_CALLBACKS = {4: _entry_f32, 8: _entry_f64}
_COMPILED: dict = {}  # item size -> the compiled cfunc (kept alive: GOMP calls it)


def entry_address(item: int) -> int:
    """The callback's address for floats of ``item`` bytes (4 or 8), for
    ``_stream_kernel.record``."""
    f = _COMPILED.get(item)
    if f is None:
        f = _COMPILED[item] = cfunc(types.void(types.voidptr), **_JIT)(_CALLBACKS[item])
    return f.address


@njit(**_JIT)
def run(rec, x_addr, y, T, N, zoneout):
    """``_stream_kernel.chunk`` with the same arguments on ``rec``'s ``THREADS`` (>= 2, at most
    H / 16) OpenMP threads, each computing a block of hidden units (the record's ``ENTRY`` must
    be :func:`entry_address`). Returns the number of threads that ran it (1 when OpenMP granted a
    smaller team and the calling thread did it all)."""
    S.start(rec, x_addr, y, T, N, zoneout)
    rec[S._Y] = y.ctypes.data
    threads = rec[S.THREADS]
    if threads > 1 and rec[S.ENTRY] != 0:
        _gomp_parallel(rec[S.ENTRY], rec.ctypes.data, np.uint32(threads), np.uint32(0))
    else:
        rec[S.STATUS] = 1
    if rec[S.STATUS] != 0:
        S.chunk_block(rec, y, np.int64(0), rec[S._HID], np.int64(1))  # (not literals: see chunk)
        threads = 1
    S.finish(rec, y)
    return threads


@njit(**_JIT)
def run_from(rec, x_addr, h0_addr, y, hn, T, N, zoneout):
    """:func:`run` as a whole forward call (``_stream_kernel.chunk_from``, the same arguments):
    the state from ``h0_addr`` (zeros where 0, kept where ``KEEP``) before, copied into ``hn``
    (unless empty) after."""
    S._load_state(rec, h0_addr, y.dtype)
    threads = run(rec, x_addr, y, T, N, zoneout)
    S.get_state(rec, hn)
    return threads
