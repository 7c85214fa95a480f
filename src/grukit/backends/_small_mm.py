"""Products with a few rows (batch-1 inference, streaming, token-by-token sampling), in Numba.

``C (M, P) = A (M, K) @ B (P, K)^T + beta C`` for small M: each row of ``B`` is read once and
dotted with the M rows of ``A``. A matrix-vector product is bound by reading ``B``; through a
general GEMM (``_cpu_kernels.mm_nt``, PyTorch's own) one row ran at about half the memory rate
on a 2-core AMD EPYC (``grukit bench --generate``). The sums may be reassociated so LLVM
vectorises them; NaN and infinity keep their meaning. ``_cpu_kernels.mm_small`` picks this
for at most ``FEW_ROWS`` rows and ``mm_nt`` for more.
"""

from __future__ import annotations

from numba import njit

from grukit.backends import _numba_cache

_numba_cache.refresh(__file__)

__all__ = ["FEW_ROWS", "rows_nt"]

FEW_ROWS = 4


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def rows_nt(A, B, C, beta):
    """``C = A B^T + beta C`` by dot products (``beta`` 0 or 1; with 0, ``C`` is not read)."""
    M, K = A.shape
    for p in range(B.shape[0]):
        for m in range(M):
            acc = A.dtype.type(0.0)
            for k in range(K):
                acc += A[m, k] * B[p, k]
            C[m, p] = acc + C[m, p] if beta != 0.0 else acc
