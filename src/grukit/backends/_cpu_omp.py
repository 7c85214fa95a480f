"""Launching the cpu kernels on PyTorch's own OpenMP threads.

``GOMP_parallel`` of the ``libgomp`` that PyTorch ships runs a C callback on a team of that
pool's threads, the calling thread included. The threads that spin after a torch op are then the
very ones that take the work, so nothing competes for the cores; our own worker threads did, and
lost 2-4x whenever PyTorch's workers were still spinning. Inside the parallel region MKL runs
sequentially on each thread.

The callbacks are Numba ``cfunc``s. Each reads an int64 record: the addresses of the kernel's
arrays, their dimensions and flags, then ``b0, b1, j0, j1, row_block`` per block; thread ``k``
of the team runs block ``k``.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import torch
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from grukit.backends import _cpu_kernels as K

_GOMP_PATH = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
if not os.path.exists(_GOMP_PATH):
    raise ImportError(f"no libgomp next to PyTorch ({_GOMP_PATH}): another OpenMP runtime")

import llvmlite.binding as _llvm  # noqa: E402

_llvm.load_library_permanently(_GOMP_PATH)
_GOMP_parallel = ctypes.CDLL(_GOMP_PATH).GOMP_parallel
_GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
_GOMP_parallel.restype = None
_thread_num = types.ExternalFunction("omp_get_thread_num", types.int32())
_team_size = types.ExternalFunction("omp_get_num_threads", types.int32())

_JIT = dict(cache=True, nogil=True, error_model="numpy")
HEAD = 28  # 12 addresses, 9 dimensions/flags, item size, status, backward's s0, s1, t_lo, C,
_ADDR, _T, _N, _H, _KW, _REV, _RA, _FLAG, _NBLK, _PARTIES, _ITEM, _STATUS = (  # the kernel;
    0, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)  # then 5 int64 per block
_S0, _S1, _TLO, _C, _KIND = 23, 24, 25, 26, 27


@intrinsic
def _ptr(typingctx, address, dtype):
    """An int64 address as a typed pointer, for ``numba.carray``."""
    target = dtype.instance_type if isinstance(dtype, types.NumberClass) else dtype.dtype
    pointer = types.CPointer(target)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64, dtype), codegen


@njit(**_JIT)
def _forward_block(m, k, dt):
    T, N, H, kw = m[_T], m[_N], m[_H], m[_KW]
    save = m[_FLAG] != 0
    o = HEAD + 5 * k
    sync = carray(_ptr(m[11], np.int64), (m[o + 4] + 1, 16))
    K.forward(
        carray(_ptr(m[0], dt), (T, N, 3 * H)), carray(_ptr(m[1], dt), (2, N, H)),
        carray(_ptr(m[2], dt), (3 * H, H)), carray(_ptr(m[3], dt), (3 * H,)),
        carray(_ptr(m[4], np.int64), (N,)), m[_REV] != 0, m[_RA] != 0, save,
        carray(_ptr(m[5], dt), (T, N, H)), carray(_ptr(m[6], dt), (T if save else 0, N, kw, H)),
        carray(_ptr(m[7], dt), (N, kw, H)), carray(_ptr(m[8], dt), (N, 3 * H)),
        carray(_ptr(m[9], dt), (N, H)), carray(_ptr(m[10], dt), (N, H)),
        m[o], m[o + 1], m[o + 2], m[o + 3], sync[m[o + 4]], m[_PARTIES],
    )


@njit(**_JIT)
def _backward_block(m, k, dt):
    T, N, H, kw = m[_T], m[_N], m[_H], m[_KW]
    reset_after = m[_RA] != 0
    o = HEAD + 5 * k
    sync = carray(_ptr(m[11], np.int64), (m[o + 4] + 1, 16))
    K.backward(
        carray(_ptr(m[0], dt), (T, N, H)), carray(_ptr(m[1], dt), (N, H)),
        carray(_ptr(m[2], dt), (3 * H, H)), carray(_ptr(m[3], np.int64), (N,)),
        m[_REV] != 0, reset_after, carray(_ptr(m[4], dt), (T, N, kw, H)),
        carray(_ptr(m[5], dt), (m[_C], N, 3 * H)),
        carray(_ptr(m[6], dt), (m[_C] if reset_after else 0, N if reset_after else 0, H if reset_after else 0)),
        carray(_ptr(m[7], dt), (2, N, 3 * H)), carray(_ptr(m[8], dt), (N, H)),
        carray(_ptr(m[9], dt), (N, H)), carray(_ptr(m[10], np.int64), (m[_FLAG],)),
        m[_S0], m[_S1], m[_TLO], m[o], m[o + 1], m[o + 2], m[o + 3], sync[m[o + 4]], m[_PARTIES],
    )


@cfunc(types.void(types.voidptr), **_JIT)
def _entry(record):
    """Run on every thread of the team: block ``omp_get_thread_num()`` of the record's kernel."""
    head = carray(record, HEAD, np.int64)
    if _team_size() != head[_NBLK]:  # a smaller team (nested region, thread limit): the blocks
        head[_STATUS] = 1  # would wait for each other forever; touch nothing, report
        return
    k = _thread_num()
    m = carray(record, HEAD + 5 * head[_NBLK], np.int64)
    if m[_KIND] == 0:
        if m[_ITEM] == 4:
            _forward_block(m, k, np.float32)
        else:
            _forward_block(m, k, np.float64)
    elif m[_ITEM] == 4:
        _backward_block(m, k, np.float32)
    else:
        _backward_block(m, k, np.float64)


def _address(a: np.ndarray) -> int:
    assert a.flags.c_contiguous  # the record carries no strides
    return a.ctypes.data


def run(kind: str, args: tuple, blocks: list[tuple[int, int, int, int, int]], sync: np.ndarray,
        parties: int) -> bool:
    """Run ``_cpu_kernels.<kind>`` (``"forward"`` or ``"backward"``) with the kernel's positional
    ``args`` on a team of ``len(blocks)`` OpenMP threads, block ``k`` on thread ``k``. Returns
    False, having run nothing, when OpenMP gave a smaller team."""
    chunk = [0, 0, 0, 0]  # s0, s1, t_lo, C: backward only
    if kind == "forward":
        gi, hbuf, w, b, lengths, reverse, reset_after, save, out, ws, scratch, gh, rh, ghn = args
        arrays = (gi, hbuf, w, b, lengths, out, ws, scratch, gh, rh, ghn, sync)
        T, N, H, kw = gi.shape[0], hbuf.shape[1], hbuf.shape[2], scratch.shape[1]
        flag, item = int(save), gi.itemsize
    else:
        (dout, dh, w, lengths, reverse, reset_after, ws, dgi, dghn, ghbuf, drh, dhd, bounds,
         s0, s1, t_lo) = args
        arrays = (dout, dh, w, lengths, ws, dgi, dghn, ghbuf, drh, dhd, bounds, sync)
        T, N, H, kw = ws.shape[0], dh.shape[0], dh.shape[1], ws.shape[2]
        flag, item = bounds.shape[0], dgi.itemsize
        chunk = [s0, s1, t_lo, dgi.shape[0]]
    record = np.zeros(HEAD + 5 * len(blocks), np.int64)
    record[:12] = [_address(a) for a in arrays]
    record[12:HEAD] = [T, N, H, kw, int(reverse), int(reset_after), flag, len(blocks), parties,
                       item, 0, *chunk, 0 if kind == "forward" else 1]
    record[HEAD:] = np.asarray(blocks, np.int64).reshape(-1)
    _GOMP_parallel(_entry.address, record.ctypes.data, len(blocks), 0)
    return record[_STATUS] == 0
