"""Numba kernels of the ``cpu`` backend: the time loops of one GRU layer in one direction.

Shapes: T steps, N batch, H hidden. Arrays are C-contiguous float32 or float64 (one dtype per
call). ``lengths`` (N,) int64: row ``b`` is active at step ``t`` iff ``t < lengths[b]``; an
inactive row keeps its state, gets a zero output, and passes its gradient through untouched (the
contract of ``grukit.functional.gru_layer``).

**Threads.** Each call handles a block of batch rows ``b0:b1`` and of hidden features ``j0:j1``.
Rows never interact, so row blocks run independently. Feature blocks of the same rows meet once
or twice per step at a spin barrier (``_sync.barrier``, ``parties`` threads): each computes the
gates of its own features from the whole previous state. Every thread then streams only its own
share of ``W_hh``, which on a small batch is what decides the speed (a share can stay in its
core's cache). For this, the 3H gate rows of ``W_ih``, ``W_hh``, the biases, and so ``gi``,
``gh``, ``dgi``, ``dgh`` are *permuted*: the block of features ``j0:j1`` owns the contiguous
gate rows ``3*j0 : 3*j1``, ordered r, z, n (identity when there is one block). States, outputs,
the saved workspace and the columns of ``W_hh`` keep the natural order, so a workspace written
with one partition is read back with any other. ``bounds`` (G+1,) lists the feature blocks.

Per active row and step the elementwise pass saves ``r, z, n, h_prev`` and, for ``reset_after``,
``hn = W_hn h_prev + b_hn`` (kw = 5 values per feature, else 4): into the workspace ``ws``
(T, N, kw, H) when training, into a per-row scratch (N, kw, H) otherwise, so the inner loops
have no branches and vectorise.

Activations: float64 kernels call libm (exact); float32 kernels use a rational tanh (clamped
odd/even polynomial ratio, the form Eigen uses, computed in float32: at most 4.1e-7 from tanh,
about 3.4 float32 epsilons, near |x| = 5.8; sigmoid within 2.3e-7) and ``sigmoid(x) = (1 +
tanh(x / 2)) / 2``: plain arithmetic that LLVM vectorises, where libm calls are scalar. (Until
2026-12-08 the ratio was computed in float64, 2.6e-7 from tanh, at half the vector width:
float32 took inference 4-11% faster on most of the standard grid, ``docs/performance.md``.)

The kernels' positional arguments (order, names, shapes) are defined once, in ``_cpu_args``;
every caller builds them from there.

Importing this module imports Numba and binds PyTorch's BLAS (``_blas.load``); compiled code is
cached on disk by Numba.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from grukit._layer_options import LAYER_NORM_EPS as _LN_EPS
from grukit.backends import _blas, _numba_cache
from grukit.backends._philox import mask_row
from grukit.backends._small_mm import FEW_ROWS, rows_nt
from grukit.backends._sync import barrier

_numba_cache.refresh(__file__, "_small_mm", "_sync", "_blas", "_philox", "../_layer_options")
_blas.load()
_vp = types.voidptr
_sig = types.void(_vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp)
_sgemm = types.ExternalFunction("sgemm_", _sig)
_dgemm = types.ExternalFunction("dgemm_", _sig)
_bgemm = types.ExternalFunction(_blas.BF16, _sig)  # bfloat16 operands, float32 result

# error_model="numpy": no ZeroDivisionError checks, which would stop vectorisation
_JIT = dict(cache=True, nogil=True, error_model="numpy")

_INLINE = dict(_JIT, inline="always")
# the layer norm's row reductions: reassociation lets LLVM vectorise the sums (in float64)
_REDUCE = dict(_JIT, fastmath={"reassoc"})


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
        _sgemm(
            chars[0:].ctypes,
            chars[1:].ctypes,
            ints[0:].ctypes,
            ints[1:].ctypes,
            ints[2:].ctypes,
            scal[0:].ctypes,
            A.ctypes,
            ints[3:].ctypes,
            B.ctypes,
            ints[4:].ctypes,
            scal[1:].ctypes,
            C.ctypes,
            ints[5:].ctypes,
        )
    else:
        _dgemm(
            chars[0:].ctypes,
            chars[1:].ctypes,
            ints[0:].ctypes,
            ints[1:].ctypes,
            ints[2:].ctypes,
            scal[0:].ctypes,
            A.ctypes,
            ints[3:].ctypes,
            B.ctypes,
            ints[4:].ctypes,
            scal[1:].ctypes,
            C.ctypes,
            ints[5:].ctypes,
        )


@njit(**_JIT)
def mm_nt(A, B, C, beta):
    """Row-major ``C (M, P) = A (M, K) @ B (P, K)^T + beta C``; row strides taken from views."""
    M, K = A.shape
    P = B.shape[0]
    s = A.itemsize
    if M == 0:
        return
    _gemm(
        84, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C, C.strides[0] // s
    )  # 84 = 'T', 78 = 'N'


@njit(**_JIT)
def mm_small(A, B, C, beta):
    """``mm_nt`` for many rows; dot products for a few (``_small_mm``: a matrix-vector product
    is bound by reading ``B``, which a general GEMM does at about half the memory rate)."""
    if A.shape[0] <= FEW_ROWS:
        rows_nt(A, B, C, beta)
    else:
        mm_nt(A, B, C, beta)


@njit(**_JIT)
def mm_nt16(A, B, C, beta):
    """``mm_nt`` with bfloat16 operands ``A``, ``B`` (uint16 bit patterns) and a float32 ``C``:
    MKL's ``gemm_bf16bf16f32``, float32 accumulation."""
    M, K = A.shape
    P = B.shape[0]
    if M == 0:
        return
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2] = P, M, K
    ints[3], ints[4], ints[5] = B.strides[0] // 2, A.strides[0] // 2, C.strides[0] // 4
    chars = np.empty(2, np.uint8)
    chars[0], chars[1] = 84, 78  # 'T', 'N'
    scal = np.empty(2, np.float32)
    scal[0], scal[1] = 1.0, beta
    _bgemm(
        chars[0:].ctypes,
        chars[1:].ctypes,
        ints[0:].ctypes,
        ints[1:].ctypes,
        ints[2:].ctypes,
        scal[0:].ctypes,
        B.ctypes,
        ints[3:].ctypes,
        A.ctypes,
        ints[4:].ctypes,
        scal[1:].ctypes,
        C.ctypes,
        ints[5:].ctypes,
    )


@intrinsic
def _f32_bits(typingctx, x):
    """The bit pattern of a float32 as an unsigned 32-bit integer."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(x), codegen


@njit(**_INLINE)
def _bf16(x):
    """float32 -> bfloat16 bits, rounded to nearest even (as ``Tensor.bfloat16()``); NaN stays
    NaN."""
    if x != x:
        return np.uint16(0x7FC0)
    u = np.int64(_f32_bits(np.float32(x)))  # (float64 kernels compile this too, never run it)
    return np.uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


@njit(**_JIT)
def to_bf16(src, dst):
    """``dst`` (uint16) = ``src`` (float32) in bfloat16, elementwise over 1-D or 2-D arrays."""
    if src.ndim == 1:
        for j in range(src.shape[0]):
            dst[j] = _bf16(src[j])
    else:
        for i in range(src.shape[0]):
            for j in range(src.shape[1]):
                dst[i, j] = _bf16(src[i, j])


@njit(**_JIT)
def mm_nn(A, B, C, beta):
    """Row-major ``C (M, P) = A (M, K) @ B (K, P) + beta C``."""
    M, K = A.shape
    P = B.shape[1]
    s = A.itemsize
    if M == 0:
        return
    _gemm(78, 78, P, M, K, B, B.strides[0] // s, A, A.strides[0] // s, beta, C, C.strides[0] // s)


# MKL's packed float32 GEMM (``_blas.PACKED``): ``W_hh`` is packed once per call, and each
# step's product reads the packed copy (no repacking per step, which a plain sgemm does)
_i32, _f32 = types.int32, types.float32
_pack_size = types.ExternalFunction(_blas.PACKED[0], types.uintp(_i32, _i32, _i32, _i32))
_pack = types.ExternalFunction(
    _blas.PACKED[1], types.void(_i32, _i32, _i32, _i32, _i32, _i32, _f32, _vp, _i32, _vp)
)
_compute = types.ExternalFunction(
    _blas.PACKED[2], types.void(_i32, _i32, _i32, _i32, _i32, _i32, _vp, _i32, _vp, _i32, _f32, _vp, _i32)
)
_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED_OP, _B_MATRIX = 101, 111, 112, 151, 162


@njit(**_JIT)
def packed_floats(M, P, K):
    """float32 elements a buffer needs to hold ``B`` (P, K) packed for products with ``M`` rows
    (:func:`pack_nt_into`), with room to align it to 64 bytes."""
    return _pack_size(_B_MATRIX, np.int32(M), np.int32(P), np.int32(K)) // 4 + 16


@njit(**_INLINE)
def packed_view(dest):
    """The part of a buffer ``dest`` that holds (or will hold) a packed matrix: from its first
    64-byte boundary (:func:`pack_nt_into`)."""
    return dest[((64 - dest.ctypes.data % 64) % 64) // 4 :]


@njit(**_JIT)
def pack_nt_into(B, M, dest):
    """``B`` (P, K), float32, packed in MKL's layout as the right operand ``B^T`` of products with
    ``M`` rows, into ``dest`` (1-D float32 of :func:`packed_floats` elements); returns the packed
    part of ``dest`` (from its first 64-byte boundary), which :func:`mm_packed` reads."""
    P, K = B.shape
    packed = packed_view(dest)
    if M > 0 and P > 0:
        _pack(
            _ROW_MAJOR,
            _B_MATRIX,
            _TRANS,
            np.int32(M),
            np.int32(P),
            np.int32(K),
            np.float32(1.0),
            B.ctypes,
            np.int32(B.strides[0] // 4),
            packed.ctypes,
        )
    return packed


@njit(**_JIT)
def pack_nt(B, M):
    """:func:`pack_nt_into` a new buffer."""
    return pack_nt_into(B, M, np.empty(packed_floats(M, B.shape[0], B.shape[1]), np.float32))


@njit(**_JIT)
def _project(x, wih, bih, gi, tlo, n, b0, b1, g0, gk):
    """Rows ``b0:b1`` and gate rows ``g0:g0+gk`` of steps ``tlo:tlo+n``'s input projections,
    ``x W_ih^T + b_ih``, into ``gi[0:n]``: one product over the chunk's steps when the block has
    every row (``x`` and ``gi`` are contiguous, so the steps' rows are too), else one a step."""
    N, K = x.shape[1], x.shape[2]
    for tl in range(n):
        for b in range(b0, b1):
            row = gi[tl, b]
            for k in range(g0, g0 + gk):  # (an explicit loop: slice assignment cost 3x as much)
                row[k] = bih[k]
    if K == 0:
        return
    wk = wih[g0 : g0 + gk]  # (gk, I)
    if b0 == 0 and b1 == N:
        x2 = x.reshape(x.shape[0] * N, K)[tlo * N : (tlo + n) * N]  # (n*N, I)
        g2 = gi.reshape(gi.shape[0] * N, gi.shape[2])[0 : n * N, g0 : g0 + gk]  # (n*N, gk)
        mm_nt(x2, wk, g2, 1.0)
    else:
        for tl in range(n):
            mm_nt(x[tlo + tl, b0:b1], wk, gi[tl, b0:b1, g0 : g0 + gk], 1.0)


@njit(**_JIT)
def mm_packed(A, Bp, P, C, beta):
    """``C (M, P) = A (M, K) @ B^T + beta C`` with ``Bp = pack_nt(B, M)``, float32; row strides
    taken from views."""
    M, K = A.shape
    if M == 0 or P == 0:
        return
    _compute(
        _ROW_MAJOR,
        _NO_TRANS,
        _PACKED_OP,
        np.int32(M),
        np.int32(P),
        np.int32(K),
        A.ctypes,
        np.int32(A.strides[0] // 4),
        Bp.ctypes,
        np.int32(0),
        np.float32(beta),
        C.ctypes,
        np.int32(C.strides[0] // 4),
    )


# -- activations --------------------------------------------------------------------------------

# The rational tanh's clamp and coefficients as published (float64), by the names
# ``_tanh_rational`` reads; the kernels read them as float32 (``scripts/activations.py`` compiles
# the same function with these float64 values, the form before 2026-12-08, to compare).
TANH_RATIONAL = {
    "_CLAMP": 7.90531110763549805,
    "_A1": 4.89352455891786e-03,
    "_A3": 6.37261928875436e-04,
    "_A5": 1.48572235717979e-05,
    "_A7": 5.12229709037114e-08,
    "_A9": -8.60467152213735e-11,
    "_A11": 2.00018790482477e-13,
    "_A13": -2.76076847742355e-16,
    "_B0": 4.89352518554385e-03,
    "_B2": 2.26843463243900e-03,
    "_B4": 1.18534705686654e-04,
    "_B6": 1.19825839466702e-06,
}
_F32 = np.float32
_CLAMP, _A1, _A3, _A5, _A7, _A9, _A11, _A13, _B0, _B2, _B4, _B6 = map(_F32, TANH_RATIONAL.values())
_HALF = _F32(0.5)


@njit(**_INLINE)
def _tanh_rational(x):
    """float32 ``tanh``: the clamped ratio, every operation in float32 (float32 constants)."""
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
        return lambda x: _HALF + _HALF * _tanh_rational(_HALF * x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))


# -- elementwise passes, one row of one feature block at a time (H = the block's width) ----------
# ``sv`` is the row's saved values, (kw, H) viewed as kw vectors: sr, sz, sn, shp[, shn].
# ``zrow`` is the row's zoneout keep mask (or p in evaluation), read only when ``zoned``.


@njit(**_INLINE)
def _row_gates(gi, gh, b_hh, h_prev, sr, sz, shp, H):
    """r and z of one row, and h_prev."""
    for j in range(H):
        sr[j] = act_sigmoid(gi[j] + gh[j] + b_hh[j])
        sz[j] = act_sigmoid(gi[H + j] + gh[H + j] + b_hh[H + j])
        shp[j] = h_prev[j]


@njit(**_INLINE)
def _row_state(sz, sn, shp, h_next, out, zrow, zmode, zp, H):
    """``h = (1 - z) * n + z * h_prev``; with zoneout then ``h = m * h_prev + (1 - m) * h``, ``m``
    the row's mask ``zrow`` (``zmode`` 1, training) or the constant ``zp`` (``zmode`` 2,
    evaluation). (Separate passes: a loop over six arrays would not vectorise.)"""
    if zmode == 0:
        for j in range(H):
            z = sz[j]
            hv = (1.0 - z) * sn[j] + z * shp[j]
            out[j] = hv
            h_next[j] = hv
        return
    for j in range(H):
        z = sz[j]
        out[j] = (1.0 - z) * sn[j] + z * shp[j]
    if zmode == 1:
        for j in range(H):
            m = zrow[j]
            out[j] = m * shp[j] + (1.0 - m) * out[j]
    else:
        for j in range(H):
            out[j] = zp * shp[j] + (1.0 - zp) * out[j]
    for j in range(H):
        h_next[j] = out[j]


@njit(**_INLINE)
def _row_after(gi, gh, b_hh, h_prev, h_next, out, sr, sz, sn, shp, shn, zrow, zmode, zp, H):
    """reset_after=True: gate values, then the new state, of one row. (Short loops touching few
    arrays each, so LLVM's runtime alias checks stay within its limits and all vectorise.)"""
    _row_gates(gi, gh, b_hh, h_prev, sr, sz, shp, H)
    for j in range(H):
        hn = gh[2 * H + j] + b_hh[2 * H + j]
        shn[j] = hn
        sn[j] = act_tanh(gi[2 * H + j] + sr[j] * hn)
    _row_state(sz, sn, shp, h_next, out, zrow, zmode, zp, H)


@njit(**_INLINE)
def _row_before_state(gi, ghn, b_hh, h_next, out, sz, sn, shp, zrow, zmode, zp, H):
    """reset_after=False, second half: n, then the new state."""
    for j in range(H):
        sn[j] = act_tanh(gi[2 * H + j] + ghn[j] + b_hh[2 * H + j])
    _row_state(sz, sn, shp, h_next, out, zrow, zmode, zp, H)


# The layer norm of the recurrent products, per row and step, over units that may be spread over
# feature blocks: each block reduces its own units into ``part[b, k]`` (block k), the blocks meet
# at a barrier, and each combines every block's partial results (the same numbers in every
# block). ``G`` is the number of gates normalised together (3, 2 or 1), ``hk`` the block's
# features; its G*hk units sit together in its permuted gate rows, its saved ``xhat`` in the
# natural-order slots ``(G, hk)``. Statistics in float64.


@njit(**_REDUCE)
def _norm_moments(v, K):
    """(mean, sum of squared deviations) of ``v[:K]``, two passes (Chan et al. combine them)."""
    s = 0.0
    for k in range(K):
        s += v[k]
    mean = s / K
    q = 0.0
    for k in range(K):
        d = v[k] - mean
        q += d * d
    return mean, q


@njit(**_INLINE)
def _norm_combine(part, bounds, G):
    """``(mean, 1/std)`` of a row from every block's ``(mean, squared deviations)``."""
    blocks = bounds.shape[0] - 1
    n = G * bounds[blocks]
    s = 0.0
    for k in range(blocks):
        s += G * (bounds[k + 1] - bounds[k]) * part[k, 0]
    mean = s / n
    q = 0.0
    for k in range(blocks):
        d = part[k, 0] - mean
        q += part[k, 1] + G * (bounds[k + 1] - bounds[k]) * d * d
    return mean, 1.0 / math.sqrt(q / n + _LN_EPS)


@njit(**_INLINE)
def _norm_apply(v, gain, shift, xhat, mean, rstd, hk):
    """One gate's ``hk`` units: ``v`` becomes ``gain * xhat + shift``, ``xhat = (v - mean) *
    rstd`` kept in ``xhat`` (all 1-D and contiguous, so the loop vectorises)."""
    for j in range(hk):
        x = (v[j] - mean) * rstd
        xhat[j] = x
        v[j] = gain[j] * x + shift[j]


@njit(**_INLINE)
def _norm_gates(v, gain, shift, sv, k0, j0, mean, rstd, G, hk):
    """``_norm_apply`` for the G gates of a block (``v``, ``gain``, ``shift``: (G*hk,)), their
    ``xhat`` into the saved slots ``sv[k0 + g, j0:j0+hk]``."""
    for g in range(G):
        _norm_apply(
            v[g * hk : (g + 1) * hk],
            gain[g * hk : (g + 1) * hk],
            shift[g * hk : (g + 1) * hk],
            sv[k0 + g, j0 : j0 + hk],
            mean,
            rstd,
            hk,
        )


@njit(**_JIT)
def forward(
    gi,
    xin,
    wih,
    bih,
    hbuf,
    w,
    b,
    lengths,
    reverse,
    reset_after,
    save,
    packed,
    out,
    ws,
    scratch,
    gh,
    rh,
    ghn,
    hin,
    rmask,
    zm,
    zkey,
    zbuf,
    lng,
    lnb,
    stat,
    bounds,
    part,
    w16,
    h16,
    rh16,
    b0,
    b1,
    j0,
    j1,
    sync,
    parties,
):
    """The recurrence for rows ``b0:b1`` and features ``j0:j1``. ``gi`` (T, N, 3H): input
    projections with ``b_ih`` (permuted gate rows); or, when ``xin`` (T, N, I) is given (not
    empty), a buffer (G, N, 3H) that the block fills with its own share of the projections
    ``xin W_ih^T + b_ih`` (``wih`` (3H, I), ``bih`` (3H,), permuted gate rows) G steps at a time
    (:func:`_project`), so that no (T, N, 3H) array is ever made and each chunk is read back
    from cache; ``hbuf`` (2, N, H): ``hbuf[0]`` the initial
    state; after T steps ``hbuf[T % 2]`` is the final one. ``w`` (3H, H), ``b`` (3H,): ``W_hh``
    and ``b_hh`` with permuted rows. ``out`` (T, N, H); ``ws`` (T, N, kw, H) written only if
    ``save``. Scratch: ``scratch`` (N, kw, H), ``gh`` (N, 3H), ``rh`` and ``ghn`` (N, H).

    Variants (each off when its array is empty): recurrent dropout ``rmask`` (N, H), with ``hin``
    (2, N, H) the masked state, double-buffered like ``hbuf`` (``hin[0]`` given); zoneout ``zm``
    (T, N, H), or (1, 1, 1) holding p (evaluation); layer norm of the recurrent products, ``lng``/``lnb`` (3H,), permuted
    gate rows, saving the normalised products in ``ws[..., kw-3:kw, :]`` and the rows' ``1/std``
    in ``stat`` (T, N, 2), with ``part`` (N, B, 2) the blocks' partial statistics and ``bounds``
    (B,) the feature blocks.

    bfloat16 products (off when ``w16`` is empty): ``w16`` (3H, H) is ``W_hh`` in bfloat16
    (permuted rows), ``h16`` (2, N, H) the state the products see in bfloat16, double-buffered
    like ``hin`` (``h16[0]`` given), ``rh16`` (N, H) ``r * h_prev`` (``reset_after=False``); each
    block converts its own features as it writes them, before the barrier that publishes them.

    ``packed`` (float32 only, ignored with bfloat16 products): the block packs its gate rows of
    ``w`` once (MKL's layout, :func:`pack_nt`) and every step's product reads the packed copy
    (:func:`mm_packed`); otherwise the products go through :func:`mm_small`."""
    own = xin.shape[0] > 0  # the block projects its input itself, a chunk at a time
    T = xin.shape[0] if own else gi.shape[0]
    hk = j1 - j0
    g0 = 3 * j0
    wk, bk = w[g0 : g0 + 3 * hk], b[g0 : g0 + 3 * hk]  # this block's gate rows
    wk16 = w16[g0 : g0 + 3 * hk]
    masked, normed, bf = rmask.shape[0] > 0, lng.shape[0] > 0, w16.shape[0] > 0
    # the products of this block's gate rows, packed once for all steps (float32, MKL); not for
    # one row in a feature split, where MKL's packed product ran 0.84-0.96x the dot products
    # (docs/performance.md)
    pk = packed and not bf and (b1 - b0 >= 2 or (parties == 1 and b1 > b0))
    nrz = 3 * hk if reset_after else 2 * hk  # rows of the product on h_prev
    wpa = pack_nt(wk[:nrz], b1 - b0) if pk else np.empty(0, np.float32)
    wpb = pack_nt(wk[2 * hk :], b1 - b0) if pk and not reset_after else np.empty(0, np.float32)
    zt, zb = zm.shape[0] > 1, zm.shape[1] > 1  # a mask per step and row
    # zoneout: 0 off, 1 a mask (T, N, H), 2 evaluation's constant p, given as (1, 1, 1), 3 a mask
    # from the Philox key ``zkey``, each row computed into ``zbuf`` when it is needed
    zmode = 0 if zm.shape[0] == 0 else (2 if zm.shape[0] * zm.shape[1] * zm.shape[2] == 1 else 1)
    if zkey.shape[0] > 0:
        zmode = 3
    zrm = 1 if zmode == 3 else zmode  # how the rows apply it: a mask either way
    H = w.shape[1]
    zp = zm[0, 0, 0] if zmode == 2 else 0.0
    kb = 5 if reset_after else 4  # the first layer-norm slot of the saved values
    blk = 0  # this feature block's index
    while bounds[blk] != j0:
        blk += 1
    G = 3 if reset_after else 2  # gates normalised together with W_hh h
    chunk, tlo = gi.shape[0], 0
    cur = 0
    for s in range(T):
        t = T - 1 - s if reverse else s
        if own and s % chunk == 0:
            n = min(chunk, T - s)
            tlo = T - s - n if reverse else s
            _project(xin, wih, bih, gi, tlo, n, b0, b1, g0, 3 * hk)
        tg = t - tlo  # the step's row of gi
        hp, hn, hi = hbuf[cur], hbuf[1 - cur], hin[cur]
        if bf:
            ng = 3 * hk if reset_after else 2 * hk
            mm_nt16(h16[cur, b0:b1], wk16[:ng], gh[b0:b1, g0 : g0 + ng], 0.0)
        elif pk:
            mm_packed(hi[b0:b1], wpa, nrz, gh[b0:b1, g0 : g0 + nrz], 0.0)  # (n, nrz)
        elif reset_after:
            mm_small(hi[b0:b1], wk, gh[b0:b1, g0 : g0 + 3 * hk], 0.0)  # (n, 3hk) = h W_hh^T
        else:
            mm_small(hi[b0:b1], wk[: 2 * hk], gh[b0:b1, g0 : g0 + 2 * hk], 0.0)  # (n, 2hk): r, z
        if normed:  # this block's share of each row's statistics, then everyone's
            for b in range(b0, b1):
                part[b, blk, 0], part[b, blk, 1] = _norm_moments(gh[b, g0 : g0 + G * hk], G * hk)
            barrier(sync, parties)
        for b in range(b0, b1):
            sv = ws[t, b] if save else scratch[b]  # (kw, H)
            zrow = zm[t if zt else 0, b if zb else 0, j0:j1] if zmode == 1 else out[t, b, j0:j1]
            if t >= lengths[b]:
                _inactive(out[t, b, j0:j1], hp[b, j0:j1], hn[b, j0:j1], rh[b, j0:j1], sv[:, j0:j1], save)
                if masked:
                    hin[1 - cur, b, j0:j1] = hi[b, j0:j1]
                continue
            if zmode == 3:
                zrow = zbuf[b, j0:j1]
                mask_row(zkey, t, b, j0, j1, H, zrow)
            if normed:
                mean, rstd = _norm_combine(part[b], bounds, G)
                _norm_gates(
                    gh[b, g0 : g0 + G * hk],
                    lng[g0 : g0 + G * hk],
                    lnb[g0 : g0 + G * hk],
                    sv,
                    kb,
                    j0,
                    mean,
                    rstd,
                    G,
                    hk,
                )
                stat[t, b, 0] = rstd
            if reset_after:
                _row_after(
                    gi[tg, b, g0 : g0 + 3 * hk],
                    gh[b, g0 : g0 + 3 * hk],
                    bk,
                    hp[b, j0:j1],
                    hn[b, j0:j1],
                    out[t, b, j0:j1],
                    sv[0, j0:j1],
                    sv[1, j0:j1],
                    sv[2, j0:j1],
                    sv[3, j0:j1],
                    sv[4, j0:j1],
                    zrow,
                    zrm,
                    zp,
                    hk,
                )
                if masked:
                    for j in range(j0, j1):
                        hin[1 - cur, b, j] = hn[b, j] * rmask[b, j]
            else:
                sr, hib, rhb = sv[0, j0:j1], hi[b, j0:j1], rh[b, j0:j1]
                _row_gates(
                    gi[tg, b, g0 : g0 + 3 * hk],
                    gh[b, g0 : g0 + 3 * hk],
                    bk,
                    hp[b, j0:j1],
                    sr,
                    sv[1, j0:j1],
                    sv[3, j0:j1],
                    hk,
                )
                for j in range(hk):
                    rhb[j] = sr[j] * hib[j]
        if not reset_after:
            if bf:
                to_bf16(rh[b0:b1, j0:j1], rh16[b0:b1, j0:j1])
            barrier(sync, parties)  # every block's r * h_prev is in place
            if bf:
                mm_nt16(rh16[b0:b1], wk16[2 * hk :], ghn[b0:b1, j0:j1], 0.0)
            elif pk:
                mm_packed(rh[b0:b1], wpb, hk, ghn[b0:b1, j0:j1], 0.0)
            else:
                mm_small(rh[b0:b1], wk[2 * hk :], ghn[b0:b1, j0:j1], 0.0)  # (n, hk) = (r*h) W_hn^T
            if normed:  # the n product's own statistics
                for b in range(b0, b1):
                    part[b, blk, 0], part[b, blk, 1] = _norm_moments(ghn[b, j0:j1], hk)
                barrier(sync, parties)
            for b in range(b0, b1):
                if t < lengths[b]:
                    sv = ws[t, b] if save else scratch[b]
                    zrow = zm[t if zt else 0, b if zb else 0, j0:j1] if zmode == 1 else out[t, b, j0:j1]
                    if zmode == 3:  # computed in the first half of the step
                        zrow = zbuf[b, j0:j1]
                    if normed:
                        mean, rstd = _norm_combine(part[b], bounds, 1)
                        n0 = g0 + 2 * hk  # this block's n rows
                        _norm_apply(
                            ghn[b, j0:j1],
                            lng[n0 : n0 + hk],
                            lnb[n0 : n0 + hk],
                            sv[kb + 2, j0:j1],
                            mean,
                            rstd,
                            hk,
                        )
                        stat[t, b, 1] = rstd
                    _row_before_state(
                        gi[tg, b, g0 : g0 + 3 * hk],
                        ghn[b, j0:j1],
                        bk,
                        hn[b, j0:j1],
                        out[t, b, j0:j1],
                        sv[1, j0:j1],
                        sv[2, j0:j1],
                        sv[3, j0:j1],
                        zrow,
                        zrm,
                        zp,
                        hk,
                    )
                    if masked:
                        for j in range(j0, j1):
                            hin[1 - cur, b, j] = hn[b, j] * rmask[b, j]
        if bf:
            to_bf16(hin[1 - cur, b0:b1, j0:j1], h16[1 - cur, b0:b1, j0:j1])
        barrier(sync, parties)  # the new state is complete before anyone reads it
        cur = 1 - cur


@njit(**_INLINE)
def _inactive(out, hp, hn, rh, sv, save):
    """A row past its length: its state carries over; its output, its r * h and its saved values
    are zero (the backward's weight-gradient products read every row, and 0 * uninitialised
    memory may be NaN)."""
    out[:] = 0.0
    hn[:] = hp
    rh[:] = 0.0
    if save:
        sv[:, :] = 0.0


# -- backward -----------------------------------------------------------------------------------
# ``g`` = dL/dh_t (from later steps and the output); with zoneout the cell's own h'_t gets
# ``g * (1 - m)`` and h_{t-1} gets ``g * m`` directly.


@njit(**_INLINE)
def _grad_row_after(dout, dh, sr, sz, sn, shp, shn, dgi, gb, dghn, dhd, zrow, zoned, H):
    for j in range(H):
        g = dh[j] + dout[j]
        r, z, n = sr[j], sz[j], sn[j]
        gc = g * (1.0 - zrow[j]) if zoned else g  # dL/dh'_t
        dnp = gc * (1.0 - z) * (1.0 - n * n)  # dL/d(tanh argument)
        dzp = gc * (shp[j] - n) * z * (1.0 - z)  # dL/d(update-gate pre-activation)
        drp = dnp * shn[j] * r * (1.0 - r)  # dL/d(reset-gate pre-activation)
        dgi[j] = drp
        dgi[H + j] = dzp
        dgi[2 * H + j] = dnp
        gb[j] = drp  # dL/d(W_hh h_prev + b_hh): r and z as dgi, n scaled by r
        gb[H + j] = dzp
        gb[2 * H + j] = dnp * r
        dghn[j] = dnp * r
        dhd[j] = gc * z + (g * zrow[j] if zoned else 0.0)


@njit(**_INLINE)
def _grad_row_before_state(dout, dh, sz, sn, shp, dgi, dhd, zrow, zoned, H):
    for j in range(H):
        g = dh[j] + dout[j]
        gc = g * (1.0 - zrow[j]) if zoned else g
        z, n = sz[j], sn[j]
        dgi[H + j] = gc * (shp[j] - n) * z * (1.0 - z)
        dgi[2 * H + j] = gc * (1.0 - z) * (1.0 - n * n)
        dhd[j] = gc * z + (g * zrow[j] if zoned else 0.0)


@njit(**_INLINE)
def _grad_row_before_gates(drh, sr, shp, dgi, dhd, H):
    for j in range(H):
        r = sr[j]
        dgi[j] = drh[j] * shp[j] * r * (1.0 - r)
        dhd[j] += drh[j] * r


@njit(**_INLINE)
def _grad_row_before_gates_masked(drh, sr, shp, mk, dgi, dhr, H):
    """As ``_grad_row_before_gates`` with recurrent dropout: the reset gate met ``h * mk``, and
    the gradient of ``h * mk`` goes to ``dhr`` (scaled by ``mk`` into dL/dh_prev later)."""
    for j in range(H):
        r = sr[j]
        dgi[j] = drh[j] * shp[j] * mk[j] * r * (1.0 - r)
        dhr[j] = drh[j] * r


@njit(**_REDUCE)
def _grad_norm_sums(dy, gain, xhat, acc_gain, acc_shift, hk):
    """One gate's share of a row's layer-norm backward: with ``d = gain * dy`` (``dy`` (hk,) =
    dL/d(gain * xhat + shift)), returns the sums of ``d`` and ``d * xhat``; adds ``dy * xhat``
    and ``dy`` to the row's gain and shift gradients ``acc_gain``, ``acc_shift`` (hk,)."""
    s1 = dy.dtype.type(0.0)  # in the rows' dtype: float32 sums run at twice float64's width
    s2 = dy.dtype.type(0.0)
    for j in range(hk):
        x = xhat[j]
        acc_gain[j] += dy[j] * x
        acc_shift[j] += dy[j]
        d = gain[j] * dy[j]
        s1 += d
        s2 += d * x
    return s1, s2


@njit(**_INLINE)
def _grad_norm_gate_sums(dy, gain, sv, k0, j0, acc_gain, acc_shift, G, hk):
    """``_grad_norm_sums`` over the G gates of a block (``dy`` etc. (G*hk,), ``xhat`` in the saved
    slots ``sv[k0 + g, j0:j0+hk]``): in one pass where those slots are contiguous (one block)."""
    if hk == sv.shape[1]:
        xhat = sv.reshape(sv.shape[0] * hk)[k0 * hk : (k0 + G) * hk]
        return _grad_norm_sums(dy, gain, xhat, acc_gain, acc_shift, G * hk)
    s1 = 0.0
    s2 = 0.0
    for g in range(G):
        a, e = g * hk, (g + 1) * hk
        u1, u2 = _grad_norm_sums(
            dy[a:e], gain[a:e], sv[k0 + g, j0 : j0 + hk], acc_gain[a:e], acc_shift[a:e], hk
        )
        s1 += u1
        s2 += u2
    return s1, s2


@njit(**_INLINE)
def _grad_norm_apply(dy, gain, sv, k0, j0, rstd, part, bounds, G, dx, hk):
    """``dx`` (G*hk,) = dL/d(the product before normalisation) =
    ``rstd * (d - mean(d) - xhat * mean(d * xhat))``, the means over the row's G*H units from
    every block's sums in ``part`` (blocks, 2)."""
    blocks = bounds.shape[0] - 1
    s1 = 0.0
    s2 = 0.0
    for k in range(blocks):
        s1 += part[k, 0]
        s2 += part[k, 1]
    n = G * bounds[blocks]
    m1, m2 = s1 / n, s2 / n
    for g in range(G):
        xhat = sv[k0 + g, j0 : j0 + hk]
        a = g * hk
        for j in range(hk):
            dx[a + j] = rstd * (gain[a + j] * dy[a + j] - m1 - xhat[j] * m2)


@njit(**_JIT)
def backward(
    dout,
    dh,
    w,
    lengths,
    reverse,
    reset_after,
    ws,
    dgi,
    dghn,
    ghbuf,
    drh,
    dhd,
    bounds,
    s0,
    s1,
    t_lo,
    rmask,
    zm,
    zkey,
    zbuf,
    lng,
    stat,
    dgr,
    dhr,
    lnacc,
    part,
    b0,
    b1,
    j0,
    j1,
    sync,
    parties,
):
    """Walk steps ``s0:s1`` of the backward order (the forward's, reversed) for rows ``b0:b1`` and
    features ``j0:j1`` (layouts as in :func:`forward`), so the caller can reduce the gradients of
    one chunk of steps before the next. ``dout`` (T, N, H); ``dh`` (N, H): dL/dh at the chunk's
    end in, at its start out. Writes, for step ``t`` at ``t - t_lo``, ``dgi`` (C, N, 3H):
    dL/d(input projection) with permuted gate rows, zero on inactive rows, and for
    ``reset_after`` ``dghn`` (C, N, H): dL/d(W_hn h_prev + b_hn) (the r and z parts of the
    recurrent gradient equal ``dgi``'s). Scratch: ``ghbuf`` (2, N, 3H), the step's full recurrent
    gradient, double-buffered by step parity so a block may start the next step while another
    still multiplies this one; ``drh``, ``dhd`` (N, H).

    Variants as in :func:`forward` (``rmask``, ``zm``, ``lng``, ``stat``, ``part``). With layer
    norm ``dgr`` (C, N, 3H) receives dL/d(the recurrent products before normalisation), permuted
    gate rows like ``dgi``, which the caller's weight gradient reads instead of ``dgi``/``dghn``,
    and ``lnacc`` (2, N, 3H) accumulates per row the gradients of the gain and the shift
    (permuted); with recurrent dropout ``dhr`` (N, H) holds dL/d(h * rmask) of a step."""
    T = ws.shape[0]
    hk = j1 - j0
    g0 = 3 * j0
    masked, normed = rmask.shape[0] > 0, lng.shape[0] > 0
    keyed = zkey.shape[0] > 0  # zoneout's mask from its Philox key, a row at a time into zbuf
    zoned = zm.shape[0] > 0 or keyed
    zt, zb = zm.shape[0] > 1, zm.shape[1] > 1
    H = w.shape[1]
    kb = 5 if reset_after else 4
    blk = 0  # this feature block's index
    while bounds[blk] != j0:
        blk += 1
    n0 = g0 + 2 * hk  # this block's n rows
    for s in range(s0, s1):
        t = s if reverse else T - 1 - s
        c = t - t_lo  # row of the chunk buffers
        for b in range(b0, b1):
            sv = ws[t, b]
            zrow = zm[t if zt else 0, b if zb else 0, j0:j1] if zoned and not keyed else dout[t, b, j0:j1]
            if keyed and t < lengths[b]:
                zrow = zbuf[b, j0:j1]
                mask_row(zkey, t, b, j0, j1, H, zrow)
            if t >= lengths[b]:
                dgi[c, b, g0 : g0 + 3 * hk] = 0.0
                if reset_after:
                    ghbuf[t % 2, b, g0 : g0 + 3 * hk] = 0.0
                    dghn[c, b, j0:j1] = 0.0
                if normed:
                    dgr[c, b, g0 : g0 + 3 * hk] = 0.0
                if masked:
                    dhr[b, j0:j1] = 0.0
                dhd[b, j0:j1] = dh[b, j0:j1]
            elif reset_after:
                gb = ghbuf[t % 2, b, g0 : g0 + 3 * hk]
                _grad_row_after(
                    dout[t, b, j0:j1],
                    dh[b, j0:j1],
                    sv[0, j0:j1],
                    sv[1, j0:j1],
                    sv[2, j0:j1],
                    sv[3, j0:j1],
                    sv[4, j0:j1],
                    dgi[c, b, g0 : g0 + 3 * hk],
                    gb,
                    dghn[c, b, j0:j1],
                    dhd[b, j0:j1],
                    zrow,
                    zoned,
                    hk,
                )
                if normed:  # the layer norm of W_hh h: this block's share of the sums
                    part[b, blk, 0], part[b, blk, 1] = _grad_norm_gate_sums(
                        gb,
                        lng[g0 : g0 + 3 * hk],
                        sv,
                        kb,
                        j0,
                        lnacc[0, b, g0 : g0 + 3 * hk],
                        lnacc[1, b, g0 : g0 + 3 * hk],
                        3,
                        hk,
                    )
            else:
                _grad_row_before_state(
                    dout[t, b, j0:j1],
                    dh[b, j0:j1],
                    sv[1, j0:j1],
                    sv[2, j0:j1],
                    sv[3, j0:j1],
                    dgi[c, b, g0 : g0 + 3 * hk],
                    dhd[b, j0:j1],
                    zrow,
                    zoned,
                    hk,
                )
                if normed:  # the n product's normalisation: this block's share of the sums
                    part[b, blk, 0], part[b, blk, 1] = _grad_norm_sums(
                        dgi[c, b, n0 : n0 + hk],
                        lng[n0 : n0 + hk],
                        sv[kb + 2, j0:j1],
                        lnacc[0, b, n0 : n0 + hk],
                        lnacc[1, b, n0 : n0 + hk],
                        hk,
                    )
        barrier(sync, parties)  # every block's gate gradients of step t are in place
        if normed:  # through the layer norm, with every block's sums
            for b in range(b0, b1):
                if t < lengths[b]:
                    sv = ws[t, b]
                    if reset_after:
                        gb = ghbuf[t % 2, b, g0 : g0 + 3 * hk]
                        _grad_norm_apply(
                            gb,
                            lng[g0 : g0 + 3 * hk],
                            sv,
                            kb,
                            j0,
                            stat[t, b, 0],
                            part[b],
                            bounds,
                            3,
                            dgr[c, b, g0 : g0 + 3 * hk],
                            hk,
                        )
                    else:
                        _grad_norm_apply(
                            dgi[c, b, n0 : n0 + hk],
                            lng[n0 : n0 + hk],
                            sv,
                            kb + 2,
                            j0,
                            stat[t, b, 1],
                            part[b],
                            bounds,
                            1,
                            dgr[c, b, n0 : n0 + hk],
                            hk,
                        )
            barrier(sync, parties)  # every block's share is in place
        if reset_after:
            # (n, hk) += dgh (n, 3H) @ W_hh[:, j0:j1] (3H, hk): all gate rows, own columns; with
            # layer norm dgh is the normalisation's input gradient, which dgr holds for the step
            gsrc = dgr[c] if normed else ghbuf[t % 2]
            if masked:
                mm_nn(gsrc[b0:b1], w[:, j0:j1], dhr[b0:b1, j0:j1], 0.0)
            else:
                mm_nn(gsrc[b0:b1], w[:, j0:j1], dhd[b0:b1, j0:j1], 1.0)
        else:
            src = dgr[c] if normed else dgi[c]  # (N, 3H): what multiplies W_hh
            for m in range(bounds.shape[0] - 1):  # dL/d(r * h_prev) = dgi_n @ W_hn, block by block
                m0, mk = 3 * bounds[m], bounds[m + 1] - bounds[m]
                mm_nn(
                    src[b0:b1, m0 + 2 * mk : m0 + 3 * mk],
                    w[m0 + 2 * mk : m0 + 3 * mk, j0:j1],
                    drh[b0:b1, j0:j1],
                    0.0 if m == 0 else 1.0,
                )
            for b in range(b0, b1):
                if t < lengths[b]:
                    sv = ws[t, b]
                    if masked:
                        _grad_row_before_gates_masked(
                            drh[b, j0:j1],
                            sv[0, j0:j1],
                            sv[3, j0:j1],
                            rmask[b, j0:j1],
                            dgi[c, b, g0 : g0 + 3 * hk],
                            dhr[b, j0:j1],
                            hk,
                        )
                    else:
                        _grad_row_before_gates(
                            drh[b, j0:j1],
                            sv[0, j0:j1],
                            sv[3, j0:j1],
                            dgi[c, b, g0 : g0 + 3 * hk],
                            dhd[b, j0:j1],
                            hk,
                        )
                    if normed:  # the r,z product's normalisation: this block's share
                        part[b, blk, 0], part[b, blk, 1] = _grad_norm_gate_sums(
                            dgi[c, b, g0 : g0 + 2 * hk],
                            lng[g0 : g0 + 2 * hk],
                            sv,
                            kb,
                            j0,
                            lnacc[0, b, g0 : g0 + 2 * hk],
                            lnacc[1, b, g0 : g0 + 2 * hk],
                            2,
                            hk,
                        )
            barrier(sync, parties)  # every block's r and z gradients are in place
            if normed:
                for b in range(b0, b1):
                    if t < lengths[b]:
                        _grad_norm_apply(
                            dgi[c, b, g0 : g0 + 2 * hk],
                            lng[g0 : g0 + 2 * hk],
                            ws[t, b],
                            kb,
                            j0,
                            stat[t, b, 0],
                            part[b],
                            bounds,
                            2,
                            dgr[c, b, g0 : g0 + 2 * hk],
                            hk,
                        )
                barrier(sync, parties)
            acc = dhr if masked else dhd
            for m in range(bounds.shape[0] - 1):  # += dgi_rz @ [W_hr; W_hz]
                m0, mk = 3 * bounds[m], bounds[m + 1] - bounds[m]
                mm_nn(src[b0:b1, m0 : m0 + 2 * mk], w[m0 : m0 + 2 * mk, j0:j1], acc[b0:b1, j0:j1], 1.0)
        if masked:  # dL/dh_prev += dL/d(h_prev * mask) * mask
            for b in range(b0, b1):
                for j in range(j0, j1):
                    dhd[b, j] += dhr[b, j] * rmask[b, j]
        dh[b0:b1, j0:j1] = dhd[b0:b1, j0:j1]
        # no closing barrier: step t-1 writes only this block's slices, while the other blocks'
        # products still in flight read step t's
