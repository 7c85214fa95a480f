"""Products with a few rows (batch-1 inference, streaming, token-by-token sampling), in Numba.

``C (M, P) = A (M, K) @ B (P, K)^T + beta C`` for small M: each row of ``B`` is read once and
dotted with the M rows of ``A``. A matrix-vector product is bound by reading ``B``; through a
general GEMM (``_cpu_kernels.mm_nt``, PyTorch's own) one row ran at about half the memory rate
on a 2-core AMD EPYC (``grukit bench --generate``). The sums may be reassociated so LLVM
vectorises them; NaN and infinity keep their meaning. ``_cpu_kernels.mm_small`` picks this
for at most ``FEW_ROWS`` rows and ``mm_nt`` for more.

Two rows of ``B`` go through one pass over ``k`` (two independent sums sharing each load of
``A``) when ``B`` spans at most ``PAIRS_MAX_BYTES``: for a matrix in the core's L2 cache this ran
1.1-1.8x faster than one row at a time on the same machine (``scripts/stream_latency.py``'s step
at H = 64 and 256). Larger matrices come from L3 or memory, where two streams ran up to 30%
slower than one (``grukit bench --generate``, 2 layers of H = 512, interleaved A/B runs); so did
rows a multiple of 4 KiB apart (H = 1024 in float32), whose two streams map onto the same L1
sets. Those go one row at a time.
"""

from __future__ import annotations

from numba import njit

from grukit.backends import _numba_cache

_numba_cache.refresh(__file__)

__all__ = ["FEW_ROWS", "rows_nt"]

FEW_ROWS = 4
PAIRS_MAX_BYTES = 1024 * 1024


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def rows_nt(A, B, C, beta):
    """``C = A B^T + beta C`` by dot products (``beta`` 0 or 1; with 0, ``C`` is not read)."""
    M, K = A.shape
    P = B.shape[0]
    zero = A.dtype.type(0.0)
    p = 0
    if B.strides[0] % 4096 != 0 and P * B.strides[0] <= PAIRS_MAX_BYTES:
        while p + 2 <= P:  # rows p and p + 1 in one pass
            for m in range(M):
                a0 = zero
                a1 = zero
                for k in range(K):
                    a = A[m, k]
                    a0 += a * B[p, k]
                    a1 += a * B[p + 1, k]
                if beta != 0.0:
                    a0 += C[m, p]
                    a1 += C[m, p + 1]
                C[m, p] = a0
                C[m, p + 1] = a1
            p += 2
    for q in range(p, P):  # the rest one at a time
        for m in range(M):
            acc = zero
            for k in range(K):
                acc += A[m, k] * B[q, k]
            C[m, q] = acc + C[m, q] if beta != 0.0 else acc
