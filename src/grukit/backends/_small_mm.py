"""Products with a few rows (batch-1 streaming, token-by-token sampling), in Numba.

``C (M, P) = A (M, K) @ B (P, K)^T + beta C``. For M <= ``FEW_ROWS`` each row of ``B`` is read
once and dotted with the M rows of ``A``: a matrix-vector product is bound by reading ``B``, and
going through a general GEMM (``_cpu_kernels.mm_nt``, PyTorch's own) for one row ran at about
half the memory rate on a 2-core AMD EPYC (measured by ``grukit bench --generate``). The sums
may be reassociated so LLVM vectorises them; NaN and infinity keep their meaning. More rows go
to ``mm_nt``.
"""

from __future__ import annotations

from numba import njit

from grukit.backends import _numba_cache
from grukit.backends._cpu_kernels import mm_nt

_numba_cache.refresh(__file__, "_cpu_kernels", "_sync", "_blas", "../_layer_options")

__all__ = ["FEW_ROWS", "mm_small"]

FEW_ROWS = 4


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _rows_nt(A, B, C, beta):
    """``C = A B^T + beta C`` by dot products (``beta`` 0 or 1; with 0, ``C`` is not read)."""
    M, K = A.shape
    for p in range(B.shape[0]):
        for m in range(M):
            acc = A.dtype.type(0.0)
            for k in range(K):
                acc += A[m, k] * B[p, k]
            C[m, p] = acc + C[m, p] if beta != 0.0 else acc


@njit(cache=True, nogil=True, error_model="numpy")
def mm_small(A, B, C, beta):
    """``C (M, P) = A (M, K) @ B (P, K)^T + beta C``: dot products for a few rows, else ``mm_nt``."""
    if A.shape[0] <= FEW_ROWS:
        _rows_nt(A, B, C, beta)
    else:
        mm_nt(A, B, C, beta)
