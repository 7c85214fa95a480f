"""Numba kernels of the ``cpu`` backend: the time loops of one GRU layer in one direction.

Shapes: T steps, N batch, H hidden. Arrays are C-contiguous float32 or float64 (one dtype per
call). ``lengths`` (N,) int64: row ``b`` is active at step ``t`` iff ``t < lengths[b]``; an
inactive row keeps its state, gets a zero output, and passes its gradient through untouched (the
contract of ``grukit.functional.gru_layer``). Batch rows never interact, so each kernel takes a
row range ``b0:b1`` and disjoint ranges run on separate threads (``cpu._run_rows``).

Per active row and step the elementwise pass writes ``r, z, n, h_prev`` and, for
``reset_after``, ``hn = W_hn h_prev + b_hn`` into ``dst`` (K = 5H, else 4H): the step's slice of
the workspace ``ws`` (T, N, K) when training, a per-row scratch otherwise, so the inner loops have
no branches and vectorise.

Activations: float64 kernels call libm (exact); float32 kernels use a rational tanh (clamped
odd/even polynomial ratio, the form Eigen uses; at most 2.6e-7 from tanh, ~2 float32 ulps, computed
in float64) and ``sigmoid(x) = (1 + tanh(x / 2)) / 2``: plain arithmetic that LLVM vectorises,
where libm calls are scalar.

Importing this module imports Numba and binds PyTorch's BLAS (``_blas.load``); compiled code is
cached on disk by Numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from grukit.backends import _blas

_blas.load()
_vp = types.voidptr
_sig = types.void(_vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp)
_sgemm = types.ExternalFunction("sgemm_", _sig)
_dgemm = types.ExternalFunction("dgemm_", _sig)

# error_model="numpy": no ZeroDivisionError checks, which would stop vectorisation
_JIT = dict(cache=True, nogil=True, error_model="numpy")
_INLINE = dict(_JIT, inline="always")


# -- BLAS ---------------------------------------------------------------------------------------


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
    if M == 0:
        return
    _gemm(84, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C,
          C.strides[0] // s)  # 84 = 'T', 78 = 'N'


@njit(**_JIT)
def mm_nn(A, B, C, beta):
    """Row-major ``C (M, P) = A (M, K) @ B (K, P) + beta C``."""
    M, K = A.shape
    P = B.shape[1]
    s = A.itemsize
    if M == 0:
        return
    _gemm(78, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C,
          C.strides[0] // s)


# -- activations --------------------------------------------------------------------------------

_CLAMP = 7.90531110763549805
_A1, _A3, _A5, _A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08
_A9, _A11, _A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_B0, _B2, _B4, _B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06


@njit(**_INLINE)
def _tanh_rational(x):
    xc = min(max(x, -_CLAMP), _CLAMP)
    x2 = xc * xc
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * xc
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


def act_tanh(x):  # typed by the overload below
    raise NotImplementedError


def act_sigmoid(x):
    raise NotImplementedError


@overload(act_tanh, inline="always")
def _act_tanh(x):
    if x == types.float32:
        return lambda x: _tanh_rational(x)
    return lambda x: math.tanh(x)


@overload(act_sigmoid, inline="always")
def _act_sigmoid(x):
    if x == types.float32:
        return lambda x: 0.5 + 0.5 * _tanh_rational(0.5 * x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))


# -- elementwise passes, one row (H features) at a time -----------------------------------------


@njit(**_INLINE)
def _row_gates(gi, gh, b_hh, h, dst, H):
    """r and z of one row, and h_prev, into ``dst``."""
    for j in range(H):
        dst[j] = act_sigmoid(gi[j] + gh[j] + b_hh[j])
        dst[H + j] = act_sigmoid(gi[H + j] + gh[H + j] + b_hh[H + j])
        dst[3 * H + j] = h[j]


@njit(**_INLINE)
def _row_after(gi, gh, b_hh, h, out, dst, H):
    """reset_after=True: gate values, then the new state, of one row. (Short loops touching few
    arrays each, so LLVM's runtime alias checks stay within its limits and all vectorise.)"""
    _row_gates(gi, gh, b_hh, h, dst, H)
    for j in range(H):
        hn = gh[2 * H + j] + b_hh[2 * H + j]
        dst[4 * H + j] = hn
        dst[2 * H + j] = act_tanh(gi[2 * H + j] + dst[j] * hn)
    _row_state(dst, h, out, H)


@njit(**_INLINE)
def _row_state(dst, h, out, H):
    """``h = (1 - z) * n + z * h_prev`` from the row's saved gate values."""
    for j in range(H):
        z, n, hp = dst[H + j], dst[2 * H + j], dst[3 * H + j]
        hv = (1.0 - z) * n + z * hp
        out[j] = hv
        h[j] = hv


@njit(**_INLINE)
def _row_before_gates(gi, gh, b_hh, h, rh, dst, H):
    """reset_after=False, first half: r, z, and r * h_prev for the W_hn product."""
    _row_gates(gi, gh, b_hh, h, dst, H)
    for j in range(H):
        rh[j] = dst[j] * h[j]


@njit(**_INLINE)
def _row_before_state(gi, ghn, b_hh, h, out, dst, H):
    """reset_after=False, second half: n, then the new state."""
    for j in range(H):
        dst[2 * H + j] = act_tanh(gi[2 * H + j] + ghn[j] + b_hh[2 * H + j])
    _row_state(dst, h, out, H)


@njit(**_INLINE)
def _inactive(out, ws, t, b, save):
    """A row past its length: zero output, and zero saved values (the backward's weight-gradient
    products read every row, and 0 * uninitialised memory could be NaN)."""
    out[t, b, :] = 0.0
    if save:
        ws[t, b, :] = 0.0


@njit(**_JIT)
def forward(gi, h, w_hh, b_hh, lengths, reverse, reset_after, save, out, ws, scratch, gh, rh, ghn,
            b0, b1):
    """Run the recurrence over rows ``b0:b1``. ``gi`` (T, N, 3H): input projections including
    ``b_ih``; ``h`` (N, H): initial state, overwritten with the final one; ``out`` (T, N, H);
    ``ws`` (T, N, K) written only if ``save``. Scratch: ``scratch`` (N, K), ``gh`` (N, 3H),
    ``rh`` and ``ghn`` (N, H)."""
    T = gi.shape[0]
    H = h.shape[1]
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    for s in range(T):
        t = T - 1 - s if reverse else s
        if reset_after:
            mm_nt(h[b0:b1], w_hh, gh[b0:b1], 0.0)  # (n, 3H) = h W_hh^T
            for b in range(b0, b1):
                if t >= lengths[b]:
                    _inactive(out, ws, t, b, save)
                    continue
                dst = ws[t, b] if save else scratch[b]
                _row_after(gi[t, b], gh[b], b_hh, h[b], out[t, b], dst, H)
        else:
            mm_nt(h[b0:b1], w_rz, gh[b0:b1, : 2 * H], 0.0)  # (n, 2H) = h [W_hr; W_hz]^T
            for b in range(b0, b1):
                if t < lengths[b]:
                    dst = ws[t, b] if save else scratch[b]
                    _row_before_gates(gi[t, b], gh[b], b_hh, h[b], rh[b], dst, H)
            mm_nt(rh[b0:b1], w_n, ghn[b0:b1], 0.0)  # (n, H) = (r * h) W_hn^T
            for b in range(b0, b1):
                if t >= lengths[b]:
                    _inactive(out, ws, t, b, save)
                    continue
                dst = ws[t, b] if save else scratch[b]
                _row_before_state(gi[t, b], ghn[b], b_hh, h[b], out[t, b], dst, H)


# -- backward -----------------------------------------------------------------------------------


@njit(**_INLINE)
def _grad_row_after(dout, dh, w, dgi, dgh, dhd, H):
    for j in range(H):
        g = dh[j] + dout[j]
        r, z, n, hp, hn = w[j], w[H + j], w[2 * H + j], w[3 * H + j], w[4 * H + j]
        dnp = g * (1.0 - z) * (1.0 - n * n)  # dL/d(tanh argument)
        dzp = g * (hp - n) * z * (1.0 - z)  # dL/d(update-gate pre-activation)
        drp = dnp * hn * r * (1.0 - r)  # dL/d(reset-gate pre-activation)
        dgi[j] = drp
        dgi[H + j] = dzp
        dgi[2 * H + j] = dnp
        dgh[j] = drp
        dgh[H + j] = dzp
        dgh[2 * H + j] = dnp * r
        dhd[j] = g * z


@njit(**_INLINE)
def _grad_row_before_state(dout, dh, w, dgi, dhd, H):
    for j in range(H):
        g = dh[j] + dout[j]
        z, n, hp = w[H + j], w[2 * H + j], w[3 * H + j]
        dgi[H + j] = g * (hp - n) * z * (1.0 - z)
        dgi[2 * H + j] = g * (1.0 - z) * (1.0 - n * n)
        dhd[j] = g * z


@njit(**_INLINE)
def _grad_row_before_gates(drh, w, dgi, dhd, H):
    for j in range(H):
        r, hp = w[j], w[3 * H + j]
        dgi[j] = drh[j] * hp * r * (1.0 - r)
        dhd[j] += drh[j] * r


@njit(**_JIT)
def backward(dout, dh, w_hh, lengths, reverse, reset_after, ws, dgi, dgh, drh, dhd, b0, b1):
    """Walk the steps backwards over rows ``b0:b1``. ``dout`` (T, N, H); ``dh`` (N, H): dL/dh_n
    in, dL/dh0 out. Writes ``dgi`` (T, N, 3H): dL/d(input projection) per gate, zero on inactive
    rows, and for ``reset_after`` ``dgh`` (T, N, 3H): dL/d(W_hh h_prev + b_hh). Scratch ``drh``,
    ``dhd`` (N, H)."""
    T = dgi.shape[0]
    H = dh.shape[1]
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for b in range(b0, b1):
            if t >= lengths[b]:
                dgi[t, b, :] = 0.0
                if reset_after:
                    dgh[t, b, :] = 0.0
                dhd[b, :] = dh[b, :]
            elif reset_after:
                _grad_row_after(dout[t, b], dh[b], ws[t, b], dgi[t, b], dgh[t, b], dhd[b], H)
            else:
                _grad_row_before_state(dout[t, b], dh[b], ws[t, b], dgi[t, b], dhd[b], H)
        if reset_after:
            mm_nn(dgh[t, b0:b1], w_hh, dhd[b0:b1], 1.0)  # (n, H) += dgh W_hh
        else:
            mm_nn(dgi[t, b0:b1, 2 * H :], w_n, drh[b0:b1], 0.0)  # (n, H) = dL/d(r * h_prev)
            for b in range(b0, b1):
                if t < lengths[b]:
                    _grad_row_before_gates(drh[b], ws[t, b], dgi[t, b], dhd[b], H)
            mm_nn(dgi[t, b0:b1, : 2 * H], w_rz, dhd[b0:b1], 1.0)  # (n, H) += dgi_rz [W_hr; W_hz]
        dh[b0:b1] = dhd[b0:b1]
