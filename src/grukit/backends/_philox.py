"""Zoneout masks from a counter-based generator: Philox4x32-10 (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC 2011; the generator behind PyTorch's and JAX's GPU dropout).

A training step's zoneout mask is (T, N, H) of 0/1. Drawing it with ``torch.bernoulli_`` took
about a quarter of a zoneout GRU's training call (one serial Mersenne Twister number per element,
about 6 ns each, and a (T, N, H) array written, read in the forward and again in the backward).
Instead the module draws a *key* from torch's generator (so ``torch.manual_seed`` still
reproduces a run) and the mask is a pure function of the key and the element's position:

    m[t, b, j] = 1  iff  philox4x32_10(counter=(j % Q, b, t, 0), key=(k0, k1))[j // Q] < thr

with ``Q = ceil(H / 4)`` and ``thr = round(p * 2**32)``, so P(m = 1) = thr / 2**32 (within 1.2e-10 of p). The fused
kernels compute each row where they need it, in the forward and again in the backward, by any
thread split, and never store it; :func:`mask` materialises it for the backends that take an
explicit mask (``reference``). Key records are int64 arrays ``(k0, k1, thr)``, drawn by
``grukit._layer_options.draw_zoneout_key``.

Each Philox round: ``(c0, c1, c2, c3) -> (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1,
lo(M0 c0))`` with 32x32 -> 64-bit products; the key grows by the Weyl constants between rounds.
``tests/test_philox.py`` checks it against Random123's published known-answer vectors.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from grukit.backends import _numba_cache

__all__ = ["mask", "philox4x32_10", "mask_row"]

_numba_cache.refresh(__file__)

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT, inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """The four 32-bit outputs (as uint64) of Philox4x32-10 for counter (c0..c3), key (k0, k1),
    every value a uint64 holding 32 bits."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LO, (p0 >> _S32) ^ c3 ^ k1, p0 & _LO
        k0 = (k0 + _W0) & _LO
        k1 = (k1 + _W1) & _LO
    return c0, c1, c2, c3


@njit(**_JIT, inline="always")
def mask_row(key, t, b, j0, j1, H, dst):
    """``dst[: j1 - j0]`` = the mask of step ``t``, row ``b``, features ``j0:j1`` of ``H`` (0.0
    or 1.0 in ``dst``'s dtype), for the key record ``key`` (k0, k1, thr). Output ``lane`` of
    counter ``i`` belongs to feature ``lane * Q + i`` (Q = ceil(H / 4)), so a whole row is four
    contiguous runs, which vectorise; a feature block takes the lanes it covers."""
    k0, k1, thr = np.uint64(key[0]), np.uint64(key[1]), np.uint64(key[2])
    ct, cb = np.uint64(t), np.uint64(b)
    zero = np.uint64(0)
    Q = (H + 3) >> 2
    if j0 == 0 and j1 == H and H == 4 * Q:  # a whole row: every output is used
        for i in range(Q):
            o0, o1, o2, o3 = philox4x32_10(np.uint64(i), cb, ct, zero, k0, k1)
            dst[i] = 1.0 if o0 < thr else 0.0
            dst[Q + i] = 1.0 if o1 < thr else 0.0
            dst[2 * Q + i] = 1.0 if o2 < thr else 0.0
            dst[3 * Q + i] = 1.0 if o3 < thr else 0.0
        return
    for lane in range(4):  # the runs this block covers, one lane at a time
        lo, hi = max(j0, lane * Q), min(j1, lane * Q + Q, H)
        for j in range(lo, hi):
            o = philox4x32_10(np.uint64(j - lane * Q), cb, ct, zero, k0, k1)
            dst[j - j0] = 1.0 if o[lane] < thr else 0.0


@njit(**_JIT)
def _fill(key, out):
    T, N, H = out.shape
    for t in range(T):
        for b in range(N):
            mask_row(key, t, b, 0, H, H, out[t, b])


def mask(key: np.ndarray, T: int, N: int, H: int, dtype=np.float64) -> np.ndarray:
    """The whole (T, N, H) mask of the key record ``key`` (int64 (3,): k0, k1, thr)."""
    out = np.empty((T, N, H), dtype)
    _fill(np.ascontiguousarray(key, dtype=np.int64), out)
    return out
