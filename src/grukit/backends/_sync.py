"""A spin barrier for Numba kernels that run on several threads at once.

Numba has no atomics on the CPU, so three intrinsics emit LLVM's (sequentially consistent
``atomicrmw add``, ``load atomic``, ``store atomic``); :func:`barrier` builds a generation-counting
barrier on them. Waiting threads spin (a step of the GRU loop takes microseconds, far below a
futex wake-up) and yield the core after a while, so an oversubscribed machine still progresses.

``sync``: an int64 array of at least 16; element 0 counts arrivals, element 8 (another cache line)
is the generation.
"""

from __future__ import annotations

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_sched_yield = types.ExternalFunction("sched_yield", types.int32())


def _pointer(context, builder, aryty, ary_value, index):
    ary = context.make_array(aryty)(context, builder, ary_value)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [index])


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """``old = arr[index]; arr[index] += value`` atomically; returns ``old``."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, index):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx, arr, index, value):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def barrier(sync, parties):
    """Wait until ``parties`` threads have arrived. Everything a thread wrote before arriving is
    visible to every thread after it leaves (sequentially consistent atomics)."""
    if parties <= 1:
        return
    generation = atomic_load(sync, 8)
    if atomic_add(sync, 0, 1) == parties - 1:
        atomic_store(sync, 0, 0)
        atomic_store(sync, 8, generation + 1)
        return
    spins = 0
    while atomic_load(sync, 8) == generation:
        spins += 1
        if spins >= 512:
            _sched_yield()
            spins = 0
