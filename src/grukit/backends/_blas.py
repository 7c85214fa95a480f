"""BLAS for the Numba kernels: the ``sgemm_``/``dgemm_`` that PyTorch itself links (MKL on x86).

Numba's own ``np.dot`` goes through SciPy's OpenBLAS, a second thread pool that fights PyTorch's
OpenMP pool on a small machine (measured: 10-100x slowdowns, ``shared/research/baselines.md``). The
kernels instead call the Fortran GEMM exported by ``libtorch_cpu``, so every matrix product, inside
the fused loop or out of it, runs on PyTorch's one pool. The symbols are bound by name
(``numba.types.ExternalFunction``), which keeps Numba's on-disk cache valid across processes.

MKL also exports ``gemm_bf16bf16f32_``: bfloat16 operands, float32 accumulation and result (on
AVX512-BF16 or AMX in hardware; elsewhere MKL converts and runs at about its float32 rate). The
kernels name it too, so a library without it gets a stand-in that is never called
(:func:`has_bf16_gemm` says False and nothing asks for bfloat16 products).

And MKL's packed float32 GEMM (``cblas_sgemm_pack_get_size``, ``cblas_sgemm_pack``,
``cblas_sgemm_compute``): a time loop multiplies by the same ``W_hh`` at every step, so the
kernels pack it once per call into MKL's internal layout and each step's product skips the
repacking a plain ``sgemm`` does (measured 1.3-2.2x faster per step, ``docs/performance.md``).
Missing symbols get stand-ins too, and :func:`has_packed_gemm` says False.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["load", "BlasUnavailable", "has_bf16_gemm", "has_packed_gemm"]

SYMBOLS = ("sgemm_", "dgemm_")
BF16 = "gemm_bf16bf16f32_"
PACKED = ("cblas_sgemm_pack_get_size", "cblas_sgemm_pack", "cblas_sgemm_compute")

# the stand-in for a missing BF16 symbol, kept alive for as long as LLVM may call it
_STAND_IN = ctypes.CFUNCTYPE(None)(lambda: None)


class BlasUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=None)
def load() -> str:
    """Make PyTorch's GEMM symbols visible to Numba's linker; returns the library's path."""
    import llvmlite.binding as llvm
    import torch

    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    candidates = [os.path.join(lib_dir, n) for n in ("libtorch_cpu.so", "libtorch_cpu.dylib")]
    for path in candidates:
        if not os.path.exists(path):
            continue
        lib = ctypes.CDLL(path)
        if all(hasattr(lib, s) for s in SYMBOLS):
            llvm.load_library_permanently(path)
            for name in (BF16, *PACKED):
                if not hasattr(lib, name):
                    llvm.add_symbol(name, ctypes.cast(_STAND_IN, ctypes.c_void_p).value)
            return path
    raise BlasUnavailable(
        f"PyTorch's libraries in {lib_dir} export no {'/'.join(SYMBOLS)} (a build without MKL "
        "or BLAS symbols)"
    )


@functools.lru_cache(maxsize=None)
def has_bf16_gemm() -> bool:
    """Whether PyTorch's library exports MKL's bfloat16 GEMM (``load`` must have succeeded)."""
    return hasattr(ctypes.CDLL(load()), BF16)


@functools.lru_cache(maxsize=None)
def has_packed_gemm() -> bool:
    """Whether PyTorch's library exports MKL's packed float32 GEMM (``load`` must have
    succeeded)."""
    lib = ctypes.CDLL(load())
    return all(hasattr(lib, name) for name in PACKED)
