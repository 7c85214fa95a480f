"""Launching the cpu kernels on PyTorch's own OpenMP threads.

``GOMP_parallel`` of the ``libgomp`` that PyTorch ships runs a C callback on a team of that
pool's threads, the calling thread included. The threads that spin after a torch op are then the
very ones that take the work, so nothing competes for the cores; our own worker threads did, and
lost 2-4x whenever PyTorch's workers were still spinning. Inside the parallel region MKL runs
sequentially on each thread.

The callback is a Numba ``cfunc``. It reads an int64 record: a head, every kernel argument in
the order ``_cpu_args`` defines (an array as its address and dimensions, a flag or count as its
value), then ``b0, b1, j0, j1, row_block`` per block; thread ``k`` of the team runs block ``k``.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import torch
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from grukit.backends import _cpu_args as A
from grukit.backends import _cpu_kernels as K
from grukit.backends import _numba_cache
from grukit.backends._addr import ptr as _ptr

_numba_cache.refresh(
    __file__, "_addr", "_cpu_kernels", "_small_mm", "_cpu_args", "_sync", "_blas", "../_layer_options"
)

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
# the record: a head, then SLOTS int64 per kernel argument in ``_cpu_args`` order (an array's
# address and its dimensions, or a scalar's value), then 5 per block: b0, b1, j0, j1, row block
# (the kernel and its float type are not in it: each has its own callback, ``entry``)
_NBLK, _PARTIES, _STATUS, _SYNC = range(4)
HEAD = 4
SLOTS = 5
_FORWARD_BLOCKS = HEAD + SLOTS * len(A.FORWARD)
_BACKWARD_BLOCKS = HEAD + SLOTS * len(A.BACKWARD)


# Readers of one argument's slots at ``o`` (compiled into ``_unpacker``'s tuple, see there).
def _read_bool(m, o, dt):
    return m[o] != 0


def _read_int(m, o, dt):
    return m[o]


def _read_1(m, o, dt):
    return carray(_ptr(m[o], dt), (m[o + 1],))


def _read_2(m, o, dt):
    return carray(_ptr(m[o], dt), (m[o + 1], m[o + 2]))


def _read_3(m, o, dt):
    return carray(_ptr(m[o], dt), (m[o + 1], m[o + 2], m[o + 3]))


def _read_4(m, o, dt):
    return carray(_ptr(m[o], dt), (m[o + 1], m[o + 2], m[o + 3], m[o + 4]))


_ARRAY_READERS = {1: _read_1, 2: _read_2, 3: _read_3, 4: _read_4}
_ELEMENTS = {"int64": types.int64, "bf16": types.uint16}  # the fixed-dtype arrays' elements


def _unpacker(spec: tuple[A.Arg, ...]):
    """An intrinsic ``(m, dt) -> tuple``: the kernel arguments ``spec`` lists, read from record
    ``m`` (``dt``: the float dtype, ``np.float32`` or ``np.float64``). Built from the spec at
    compile time, so the record's readers follow ``_cpu_args`` with no list written here."""

    @intrinsic
    def unpack(typingctx, m, dt):
        calls = []  # (reader, its signature) per argument
        for a in spec:
            if a.kind == "bool":
                calls.append((_read_bool, types.boolean(m, types.int64, dt)))
            elif a.kind == "int":
                calls.append((_read_int, types.int64(m, types.int64, dt)))
            else:
                element = dt if a.kind == "float" else types.NumberClass(_ELEMENTS[a.kind])
                array = types.Array(element.instance_type, a.ndim, "C")
                calls.append((_ARRAY_READERS[a.ndim], array(m, types.int64, element)))
        result = types.Tuple([sig.return_type for _, sig in calls])

        def codegen(context, builder, signature, args):
            values = []
            for i, (reader, sig) in enumerate(calls):
                offset = context.get_constant(types.int64, HEAD + SLOTS * i)
                element = context.get_dummy_value()  # a NumberClass argument has no data
                values.append(context.compile_internal(builder, reader, sig, [args[0], offset, element]))
            return context.make_tuple(builder, result, values)

        return result(m, dt), codegen

    return unpack


_forward_args = _unpacker(A.FORWARD)
_backward_args = _unpacker(A.BACKWARD)


@njit(**_JIT)
def _forward_block(m, k, dt):
    o = _FORWARD_BLOCKS + 5 * k
    sync = carray(_ptr(m[_SYNC], np.int64), (m[o + 4] + 1, 16))
    block = (m[o], m[o + 1], m[o + 2], m[o + 3], sync[m[o + 4]], m[_PARTIES])
    K.forward(*(_forward_args(m, dt) + block))


@njit(**_JIT)
def _backward_block(m, k, dt):
    o = _BACKWARD_BLOCKS + 5 * k
    sync = carray(_ptr(m[_SYNC], np.int64), (m[o + 4] + 1, 16))
    block = (m[o], m[o + 1], m[o + 2], m[o + 3], sync[m[o + 4]], m[_PARTIES])
    K.backward(*(_backward_args(m, dt) + block))


@njit(**_JIT)
def _rank(record, blocks_at):
    """This thread's block of the record's kernel, and the record as int64 (``blocks_at``: where
    its blocks start); -1 (the status set, nothing else touched) when OpenMP gave a team of
    another size than the record's blocks, which would wait for each other forever (a nested
    region, a thread limit)."""
    head = carray(record, HEAD, np.int64)
    m = carray(record, blocks_at + 5 * head[_NBLK], np.int64)
    if _team_size() != head[_NBLK]:
        head[_STATUS] = 1
        return -1, m
    return _thread_num(), m


# One callback per kernel and float type, each compiled (or read from Numba's cache) the first
# time it runs: a float32 inference never compiles a backward pass or a float64 kernel. Written
# out rather than made by a factory: Numba caches a module-level function by its name and line,
# and a closure per (kind, dtype) would share one cache entry or none.
def _forward_f32(record):
    k, m = _rank(record, _FORWARD_BLOCKS)
    if k >= 0:
        _forward_block(m, k, np.float32)


def _forward_f64(record):
    k, m = _rank(record, _FORWARD_BLOCKS)
    if k >= 0:
        _forward_block(m, k, np.float64)


def _backward_f32(record):
    k, m = _rank(record, _BACKWARD_BLOCKS)
    if k >= 0:
        _backward_block(m, k, np.float32)


def _backward_f64(record):
    k, m = _rank(record, _BACKWARD_BLOCKS)
    if k >= 0:
        _backward_block(m, k, np.float64)


_CALLBACKS = {
    ("forward", 4): _forward_f32,
    ("forward", 8): _forward_f64,
    ("backward", 4): _backward_f32,
    ("backward", 8): _backward_f64,
}
_COMPILED: dict = {}  # (kind, item size) -> the compiled cfunc (kept alive: GOMP calls it)


def entry(kind: str, item: int):
    """The compiled callback for ``kind`` (``"forward"``/``"backward"``) on floats of ``item``
    bytes (4 or 8)."""
    f = _COMPILED.get((kind, item))
    if f is None:
        f = _COMPILED[kind, item] = cfunc(types.void(types.voidptr), **_JIT)(_CALLBACKS[kind, item])
    return f


def _slots(value) -> list[int]:
    """One argument's SLOTS record entries: an array's address and dimensions, or a scalar."""
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:  # the record carries no strides
            raise ValueError(f"the OpenMP launch needs C-contiguous arrays, got strides {value.strides}")
        return [value.ctypes.data, *value.shape, *[0] * (SLOTS - 1 - value.ndim)]
    return [int(value)] + [0] * (SLOTS - 1)


def run(
    kind: str, args: tuple, blocks: list[tuple[int, int, int, int, int]], sync: np.ndarray, parties: int
) -> bool:
    """Run ``_cpu_kernels.<kind>`` (``"forward"`` or ``"backward"``) with ``args`` (its
    ``_cpu_args.ForwardArgs`` / ``BackwardArgs``) on a team of ``len(blocks)`` OpenMP threads,
    block ``k`` on thread ``k``. Returns False, having run nothing, when OpenMP gave a smaller
    team."""
    spec, _ = A.SPECS[kind]
    item = next(getattr(args, a.name).itemsize for a in spec if a.kind == "float")
    head = [len(blocks), parties, 0, sync.ctypes.data]
    record = np.array(
        head
        + [v for a in spec for v in _slots(getattr(args, a.name))]
        + [v for block in blocks for v in block],
        np.int64,
    )
    _GOMP_parallel(entry(kind, item).address, record.ctypes.data, len(blocks), 0)
    return record[_STATUS] == 0
