"""Numba kernels of the ``cpu`` backend: the time loops of one GRU layer in one direction.

Shapes: T steps, N batch, H hidden. Every array is C-contiguous float32 or float64 (one dtype per
call), except views that the GEMM helpers take with their row stride. ``lengths`` (N,) int64:
row ``b`` is active at step ``t`` iff ``t < lengths[b]``; an inactive row keeps its state, gets a
zero output, and its gradients pass through untouched (see ``grukit.functional.gru_layer``).

Saved per step for the backward pass (``ws``: (T, N, K)), in blocks of H:
``r, z, n, h_prev`` and, for ``reset_after``, ``hn = W_hn h_prev + b_hn`` (K = 5H; else 4H).

Importing this module imports Numba and binds PyTorch's BLAS (``_blas.load``); compiled code is
cached on disk by Numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from grukit.backends import _blas

_blas.load()
_vp = types.voidptr
_sig = types.void(_vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp)
_sgemm = types.ExternalFunction("sgemm_", _sig)
_dgemm = types.ExternalFunction("dgemm_", _sig)

R, Z, N_, HP, HN = 0, 1, 2, 3, 4  # ws block indices

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _gemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc):
    """Column-major ``C = op(A) op(B) + beta C`` through the Fortran BLAS interface."""
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = m, n, k, lda, ldb, ldc
    chars = np.empty(2, np.uint8)
    chars[0], chars[1] = ta, tb
    scal = np.empty(2, C.dtype)
    scal[0], scal[1] = 1.0, beta
    if C.itemsize == 4:  # float32
        _sgemm(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
               ints[2:].ctypes, scal[0:].ctypes, A.ctypes, ints[3:].ctypes, B.ctypes,
               ints[4:].ctypes, scal[1:].ctypes, C.ctypes, ints[5:].ctypes)
    else:
        _dgemm(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
               ints[2:].ctypes, scal[0:].ctypes, A.ctypes, ints[3:].ctypes, B.ctypes,
               ints[4:].ctypes, scal[1:].ctypes, C.ctypes, ints[5:].ctypes)


@njit(**_JIT)
def mm_nt(A, B, C, beta):
    """Row-major ``C (M, P) = A (M, K) @ B (P, K)^T + beta C``; row strides taken from views."""
    M, K = A.shape
    P = B.shape[0]
    s = A.itemsize
    _gemm(84, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C,
          C.strides[0] // s)  # 84 = 'T', 78 = 'N'


@njit(**_JIT)
def mm_nn(A, B, C, beta):
    """Row-major ``C (M, P) = A (M, K) @ B (K, P) + beta C``."""
    M, K = A.shape
    P = B.shape[1]
    s = A.itemsize
    _gemm(78, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C,
          C.strides[0] // s)


# tanh as a rational function (odd degree-13 / even degree-6 polynomial, the form Eigen uses for
# float32), clamped where it reaches +-1: at most 2.6e-7 from tanh, about 2 float32 ulps. It is
# plain arithmetic, so LLVM vectorises the elementwise loops; libm's tanh/exp are scalar calls.
_TANH_CLAMP = 7.90531110763549805
_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_B = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


@njit(**_JIT)
def _tanh_approx(x):
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = _A[6]
    for c in (_A[5], _A[4], _A[3], _A[2], _A[1], _A[0]):
        p = p * x2 + c
    q = ((_B[3] * x2 + _B[2]) * x2 + _B[1]) * x2 + _B[0]
    return x * p / q


@njit(**_JIT)
def _tanh(x, exact):
    """``exact``: libm (float64 kernels); else the rational approximation (float32 kernels)."""
    return math.tanh(x) if exact else _tanh_approx(x)


@njit(**_JIT)
def _sigmoid(x, exact):
    return 1.0 / (1.0 + math.exp(-x)) if exact else 0.5 + 0.5 * _tanh_approx(0.5 * x)


@njit(**_JIT)
def forward(gi, h, w_hh, b_hh, lengths, reverse, reset_after, save, out, ws, gh, rh, ghn, b0, b1):
    """Run the recurrence. ``gi`` (T, N, 3H): input projections with ``b_ih``; ``h`` (N, H): the
    initial state, overwritten with the final one; ``out`` (T, N, H); ``ws`` (T, N, K) written only
    if ``save``. Scratch: ``gh`` (N, 3H), ``rh`` and ``ghn`` (N, H). Only rows ``b0:b1`` are read
    or written: batch rows never interact, so disjoint row ranges can run on separate threads."""
    T, _, H3 = gi.shape
    H = H3 // 3
    exact = gi.itemsize == 8
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    for s in range(T):
        t = T - 1 - s if reverse else s
        if reset_after:
            mm_nt(h[b0:b1], w_hh, gh[b0:b1], 0.0)  # (n, 3H) = h W_hh^T
        else:
            mm_nt(h[b0:b1], w_rz, gh[b0:b1, : 2 * H], 0.0)  # (n, 2H) = h [W_hr; W_hz]^T
        for b in range(b0, b1):
            if t >= lengths[b]:
                out[t, b, :] = 0.0
                continue
            for j in range(H):
                r = _sigmoid(gi[t, b, j] + gh[b, j] + b_hh[j], exact)
                z = _sigmoid(gi[t, b, H + j] + gh[b, H + j] + b_hh[H + j], exact)
                if reset_after:
                    hn = gh[b, 2 * H + j] + b_hh[2 * H + j]
                    n = _tanh(gi[t, b, 2 * H + j] + r * hn, exact)
                    hp = h[b, j]
                    hv = (1.0 - z) * n + z * hp
                    out[t, b, j] = hv
                    h[b, j] = hv
                    if save:
                        ws[t, b, R * H + j] = r
                        ws[t, b, Z * H + j] = z
                        ws[t, b, N_ * H + j] = n
                        ws[t, b, HP * H + j] = hp
                        ws[t, b, HN * H + j] = hn
                else:
                    gh[b, j] = r
                    gh[b, H + j] = z
                    rh[b, j] = r * h[b, j]
        if not reset_after:
            mm_nt(rh[b0:b1], w_n, ghn[b0:b1], 0.0)  # (n, H) = (r * h) W_hn^T
            for b in range(b0, b1):
                if t >= lengths[b]:
                    continue
                for j in range(H):
                    r = gh[b, j]
                    z = gh[b, H + j]
                    n = _tanh(gi[t, b, 2 * H + j] + ghn[b, j] + b_hh[2 * H + j], exact)
                    hp = h[b, j]
                    hv = (1.0 - z) * n + z * hp
                    out[t, b, j] = hv
                    h[b, j] = hv
                    if save:
                        ws[t, b, R * H + j] = r
                        ws[t, b, Z * H + j] = z
                        ws[t, b, N_ * H + j] = n
                        ws[t, b, HP * H + j] = hp


@njit(**_JIT)
def backward(dout, dh, w_hh, lengths, reverse, reset_after, ws, dgi, dgh, drh, dhd, b0, b1):
    """Walk the steps backwards. ``dout`` (T, N, H); ``dh`` (N, H): dL/dh_n in, dL/dh0 out.
    Writes ``dgi`` (T, N, 3H): dL/d(input projection) per gate (zero on inactive rows) and, for
    ``reset_after``, ``dgh`` (T, N, 3H): dL/d(W_hh h_prev + b_hh). Scratch ``drh``, ``dhd`` (N, H).
    Rows ``b0:b1`` only, as in :func:`forward`."""
    T, _, H3 = dgi.shape
    H = H3 // 3
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for b in range(b0, b1):
            if t >= lengths[b]:
                dgi[t, b, :] = 0.0
                if reset_after:
                    dgh[t, b, :] = 0.0
                dhd[b, :] = dh[b, :]
                continue
            for j in range(H):
                g = dh[b, j] + dout[t, b, j]
                r = ws[t, b, R * H + j]
                z = ws[t, b, Z * H + j]
                n = ws[t, b, N_ * H + j]
                hp = ws[t, b, HP * H + j]
                dnp = g * (1.0 - z) * (1.0 - n * n)  # dL/d(tanh argument)
                dzp = g * (hp - n) * z * (1.0 - z)  # dL/d(update-gate pre-activation)
                dgi[t, b, H + j] = dzp
                dgi[t, b, 2 * H + j] = dnp
                dhd[b, j] = g * z
                if reset_after:
                    hn = ws[t, b, HN * H + j]
                    drp = dnp * hn * r * (1.0 - r)
                    dgi[t, b, j] = drp
                    dgh[t, b, j] = drp
                    dgh[t, b, H + j] = dzp
                    dgh[t, b, 2 * H + j] = dnp * r
        if reset_after:
            mm_nn(dgh[t, b0:b1], w_hh, dhd[b0:b1], 1.0)  # (n, H) += dgh W_hh
        else:
            mm_nn(dgi[t, b0:b1, 2 * H :], w_n, drh[b0:b1], 0.0)  # (n, H) = dL/d(r * h_prev)
            for b in range(b0, b1):
                if t >= lengths[b]:
                    continue
                for j in range(H):
                    r = ws[t, b, R * H + j]
                    hp = ws[t, b, HP * H + j]
                    dgi[t, b, j] = drh[b, j] * hp * r * (1.0 - r)
                    dhd[b, j] += drh[b, j] * r
            mm_nn(dgi[t, b0:b1, : 2 * H], w_rz, dhd[b0:b1], 1.0)  # (n, H) += dgi_rz [W_hr; W_hz]
        dh[b0:b1] = dhd[b0:b1]
