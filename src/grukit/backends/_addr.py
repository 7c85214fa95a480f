"""Arrays from addresses inside Numba code: ``numba.carray(ptr(address, dtype), shape)``.

The kernels that are handed an int64 record of addresses (``_cpu_omp``'s OpenMP callbacks, the
stream's one call per chunk in ``_stream_kernel``) read their arrays through this; the caller
keeps the memory alive for the duration of the call.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

__all__ = ["ptr"]


@intrinsic
def ptr(typingctx, address, dtype):
    """An int64 address as a typed pointer. ``dtype``: a NumPy scalar type (``np.float32``) or an
    array's ``.dtype``."""
    target = dtype.instance_type if isinstance(dtype, types.NumberClass) else dtype.dtype
    pointer = types.CPointer(target)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64, dtype), codegen
