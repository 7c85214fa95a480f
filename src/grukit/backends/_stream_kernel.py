"""Numba kernel of the stream's fast path (``grukit.streaming``): a short chunk of every layer of
a GRU, forward direction, evaluation, in one call with no allocation, on one thread or split by
hidden units over several (``_stream_omp``).

Shapes: T steps, N batch, I input features, H hidden, L layers; a block owns the hidden units
``j0 <= j < j1``. The equations are ``grukit.GRU``'s (gate order r, z, n)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)    reset_after=False
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))    reset_after=True
    h'_t = (1 - z_t) * n_t + z_t * h_{t-1}
    h_t = zoneout * h_{t-1} + (1 - zoneout) * h'_t               (zoneout in evaluation; 0: h'_t)

A block computes the rows of every product that belong to its units (``W_.r``, ``W_.z`` and
``W_.n`` rows ``j0..j1``), so each thread reads only its share of the weights: at H = 256 the
two float32 matrices (1.5 MiB) exceed one core's L2 cache of the 2-core AMD EPYC this was
measured on, and half of them does not. Every block reads the whole ``h_{t-1}`` (and, without
``reset_after``, the whole ``r_t * h_{t-1}``), so the blocks meet at a barrier after each step
(and before the ``W_hn`` product); ``h_{t-1}`` is read from the previous step's output, never
from the state being written. With one block the barriers are no-ops.

The products are ``_cpu_kernels.mm_small`` (dot products for a few rows, PyTorch's GEMM for
more); the activations are the fused ``cpu`` backend's (libm in float64; the rational tanh in
float32). The weights come from an int64 record of addresses built once per stream
(:func:`record`), so a call passes a few arrays and numbers: at batch 1 and H = 64 converting
tensors to NumPy arrays and Numba's dispatch on a dozen arrays cost more than the step itself.
Importing this module imports Numba; compiled code is cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from grukit.backends import _numba_cache
from grukit.backends._addr import ptr
from grukit.backends._cpu_kernels import act_sigmoid, act_tanh, mm_small
from grukit.backends._sync import barrier

_numba_cache.refresh(__file__, "_addr", "_cpu_kernels", "_small_mm", "_sync", "_blas", "../_layer_options")

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# The record (int64), built once per stream and batch size: the head, then per layer its input
# size and the addresses of weight_ih (3H, I), weight_hh (3H, H), bias_ih and bias_hh (3H,). The
# head holds what stays (the layers, the state's and scratch's addresses, the threads) and what
# each call writes (the chunk), so a call from Python passes one record and a few numbers.
(
    _L,
    _RESET_AFTER,
    _HID,
    _STATE,
    _N_STATE,
    _SCRATCH,
    _SCRATCH_LEN,
    _SYNC,
    THREADS,
    STATUS,
    _X,
    _Y,
    _T,
    _N,
    _ZONEOUT,
    _ITEM,
    ENTRY,
) = range(17)
_HEAD = 17
_PER_LAYER = 5


def weights_record(layers, reset_after: bool) -> np.ndarray:
    """The layers' part of a record. ``layers``: per layer ``(w_ih, w_hh, b_ih, b_hh)``,
    C-contiguous NumPy arrays of one float dtype, which the caller keeps alive while the record
    is in use."""
    rec = np.zeros(_HEAD + _PER_LAYER * len(layers), np.int64)
    rec[_L], rec[_RESET_AFTER], rec[_ITEM] = len(layers), int(reset_after), layers[0][0].itemsize
    rec[_HID] = layers[0][1].shape[1]
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        o = _HEAD + _PER_LAYER * layer
        rec[o] = w_ih.shape[1]
        rec[o + 1 : o + 5] = [a.ctypes.data for a in (w_ih, w_hh, b_ih, b_hh)]
    return rec


def record(
    weights: np.ndarray, h: np.ndarray, s: np.ndarray, sync: np.ndarray, threads: int, entry: int
) -> np.ndarray:
    """A record for :func:`chunk` (and ``_stream_omp.run``): ``weights`` (:func:`weights_record`)
    with the state ``h`` (L, N, H), the scratch ``s`` (:func:`scratch_size`), the barrier's
    ``sync`` (int64, 16), the number of threads and the OpenMP callback's address
    (``_stream_omp.entry_address``; 0 for one thread); the caller keeps them alive."""
    rec = weights.copy()
    rec[_STATE], rec[_N_STATE] = h.ctypes.data, h.shape[1]
    rec[_SCRATCH], rec[_SCRATCH_LEN] = s.ctypes.data, s.shape[0]
    rec[_SYNC], rec[THREADS], rec[ENTRY] = sync.ctypes.data, threads, entry
    return rec


def scratch_size(T: int, N: int, H: int, L: int) -> int:
    """Elements of the 1-D scratch array a chunk of ``T`` steps at batch ``N`` needs: ``gi``,
    ``gh`` (N, 3H), ``rh`` (N, H), and with more than one layer a (T, N, H) buffer for the
    layers' outputs that are not the last."""
    return 7 * N * H + (T * N * H if L > 1 else 0)


@njit(**_JIT)
def _fill_bias(g, b):
    """``g[n, :] = b`` for every row: (N, K) <- (K,)."""
    for n in range(g.shape[0]):
        for k in range(g.shape[1]):
            g[n, k] = b[k]


@njit(**dict(_JIT, inline="always"))
def _new_state(hp, z, n, zoneout):
    """``h_t`` from ``h_{t-1}``, the update gate and the candidate, with zoneout's interpolation."""
    hv = (1.0 - z) * n + z * hp
    if zoneout != 0.0:
        hv = zoneout * hp + (1.0 - zoneout) * hv
    return hv


# Elementwise passes over one row's units of the block, on 1-D slices indexed from 0 (an index
# LLVM cannot prove non-negative keeps Numba's wraparound and the loop scalar), each a short loop
# over few arrays, so each vectorises (see ``_cpu_kernels._row_state``).


@njit(**dict(_JIT, inline="always"))
def _gate(g, gh):
    """``g = sigmoid(g + gh)``: r or z of the block's units, in place."""
    for j in range(g.shape[0]):
        g[j] = act_sigmoid(g[j] + gh[j])


@njit(**dict(_JIT, inline="always"))
def _candidate(g, r, ghn):
    """``g = tanh(g + r * ghn)``: n of the block's units (``reset_after``), in place."""
    for j in range(g.shape[0]):
        g[j] = act_tanh(g[j] + r[j] * ghn[j])


@njit(**dict(_JIT, inline="always"))
def _state(z, n, hp, out, zoneout):
    """``out = (1 - z) * n + z * hp``; with zoneout (evaluation) then ``out = zoneout * hp +
    (1 - zoneout) * out``."""
    for j in range(out.shape[0]):
        out[j] = (1.0 - z[j]) * n[j] + z[j] * hp[j]
    if zoneout != 0.0:
        for j in range(out.shape[0]):
            out[j] = zoneout * hp[j] + (1.0 - zoneout) * out[j]


@njit(**dict(_JIT, inline="always"))
def _rows(a, w, b, g, g0, g1, H, j0, j1):
    """``g[:, gate H + j] = a w[gate H + j]^T + b[gate H + j]`` for gates ``g0 <= gate < g1`` and
    the block's units j: its share of a product. ``a`` (N, K), ``w`` (3H, K), ``b`` (3H,), ``g``
    (N, 3H). A block of every unit takes the gates' rows in one product."""
    if j1 - j0 == H:
        lo, hi = g0 * H, g1 * H
        _fill_bias(g[:, lo:hi], b[lo:hi])
        mm_small(a, w[lo:hi], g[:, lo:hi], 1.0)
        return
    for gate in range(g0, g1):
        lo, hi = gate * H + j0, gate * H + j1
        gs = g[:, lo:hi]
        _fill_bias(gs, b[lo:hi])
        mm_small(a, w[lo:hi], gs, 1.0)


@njit(**_JIT)
def _layer(x, h, out, w_ih, w_hh, b_ih, b_hh, reset_after, zoneout, gi, gh, rh, j0, j1, sync, parties, last):
    """T steps of one layer for units ``j0..j1``. ``x`` (T, N, I); ``h`` (N, H): the state before
    the chunk, overwritten (the block's units) with the state after it, except in the ``last``
    layer, where the caller copies it once every block is done (which saves the final barrier);
    ``out`` (T, N, H) receives ``h_t``."""
    T, N = x.shape[0], x.shape[1]
    H = h.shape[1]
    for t in range(T):
        hp = h if t == 0 else out[t - 1]  # (N, H), h_{t-1}: complete since the last barrier
        _rows(x[t], w_ih, b_ih, gi, 0, 3, H, j0, j1)  # (N, 3H) = x_t W_ih^T + b_ih
        if reset_after:
            _rows(hp, w_hh, b_hh, gh, 0, 3, H, j0, j1)  # (N, 3H) = h W_hh^T + b_hh
            for b in range(N):
                gib, ghb = gi[b], gh[b]  # (3H,)
                r, z, n = gib[j0:j1], gib[H + j0 : H + j1], gib[2 * H + j0 : 2 * H + j1]
                _gate(r, ghb[j0:j1])  # r into gi
                _gate(z, ghb[H + j0 : H + j1])  # z into gi
                _candidate(n, r, ghb[2 * H + j0 : 2 * H + j1])  # n into gi
                _state(z, n, hp[b, j0:j1], out[t, b, j0:j1], zoneout)
        else:
            _rows(hp, w_hh, b_hh, gh, 0, 2, H, j0, j1)  # (N, 2H) = h W_h{r,z}^T + b_h{r,z}
            for b in range(N):
                gib, ghb, hpb, rhb = gi[b], gh[b], hp[b, j0:j1], rh[b, j0:j1]
                r, z = gib[j0:j1], gib[H + j0 : H + j1]
                _gate(r, ghb[j0:j1])  # r into gi
                _gate(z, ghb[H + j0 : H + j1])  # z into gi
                for j in range(j1 - j0):
                    rhb[j] = r[j] * hpb[j]
            barrier(sync, parties)  # every unit of r * h is written
            _rows(rh, w_hh, b_hh, gh, 2, 3, H, j0, j1)  # (N, H) = (r * h) W_hn^T + b_hn
            for b in range(N):
                n = gi[b, 2 * H + j0 : 2 * H + j1]
                ghn = gh[b, 2 * H + j0 : 2 * H + j1]
                for j in range(j1 - j0):
                    n[j] = act_tanh(n[j] + ghn[j])  # n into gi
                _state(gi[b, H + j0 : H + j1], n, hp[b, j0:j1], out[t, b, j0:j1], zoneout)
        if t < T - 1 or not last:
            barrier(sync, parties)  # h_t complete: the next step (or layer) reads all of it
    if not last:
        for b in range(N):  # every block has read h (step 0) before the last barrier
            for j in range(j0, j1):
                h[b, j] = out[T - 1, b, j]


@njit(**_JIT)
def chunk_block(rec, y, j0, j1, parties):
    """The chunk in the record ``rec`` (:func:`record`, with the call's ``_X``, ``_T``, ``_N``
    and ``_ZONEOUT`` filled in) for the hidden units ``j0..j1``, on ``parties`` threads that each
    run a block (one block: ``j0, j1 = 0, H`` and ``parties = 1``), except the last layer's new
    state (:func:`finish`). The input at ``_X``: C-contiguous (T, N, I) of ``y``'s dtype; ``y``:
    the output, (T, N, H) flattened to one dimension (the callers pass a flat view of whatever
    shape they return, so one compiled version serves every shape). The state (L, N, H) is overwritten; the scratch is shared by the blocks
    (each writes only its units)."""
    L, H, T, N = rec[_L], rec[_HID], rec[_T], rec[_N]
    dt = y.dtype
    h = carray(ptr(rec[_STATE], dt), (L, N, H))
    s = carray(ptr(rec[_SCRATCH], dt), (rec[_SCRATCH_LEN],))
    sync = carray(ptr(rec[_SYNC], np.int64), (16,))
    zoneout = rec[_ZONEOUT : _ZONEOUT + 1].view(np.float64)[0]
    gi = s[: 3 * N * H].reshape((N, 3 * H))
    gh = s[3 * N * H : 6 * N * H].reshape((N, 3 * H))
    rh = s[6 * N * H : 7 * N * H].reshape((N, H))
    y = y.reshape((T, N, H))
    buf = s[7 * N * H : 7 * N * H + T * N * H].reshape((T, N, H)) if L > 1 else y
    reset_after = rec[_RESET_AFTER] != 0
    inp = carray(ptr(rec[_X], dt), (T, N, rec[_HEAD]))
    for layer in range(L):
        o = _HEAD + _PER_LAYER * layer
        out = y if (L - 1 - layer) % 2 == 0 else buf  # the last layer writes y
        w_ih = carray(ptr(rec[o + 1], dt), (3 * H, rec[o]))
        w_hh = carray(ptr(rec[o + 2], dt), (3 * H, H))
        b_ih = carray(ptr(rec[o + 3], dt), (3 * H,))
        b_hh = carray(ptr(rec[o + 4], dt), (3 * H,))
        _layer(
            inp,
            h[layer],
            out,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            reset_after,
            zoneout,
            gi,
            gh,
            rh,
            j0,
            j1,
            sync,
            parties,
            layer == L - 1,
        )
        inp = out


@njit(**_JIT)
def start(rec, x_addr, y, T, N, zoneout):
    """Write a call's chunk into the record."""
    if T * N * rec[_HID] > y.size or N != rec[_N_STATE] or y.itemsize != rec[_ITEM]:
        raise ValueError("stream kernel: the output, batch size or dtype does not fit the record")
    rec[_X], rec[_T], rec[_N], rec[STATUS] = x_addr, T, N, 0
    rec[_ZONEOUT : _ZONEOUT + 1].view(np.float64)[0] = zoneout


KEEP = -1  # ``chunk_from``'s h0_addr: start from the state the record holds


@njit(**_JIT)
def _load_state(rec, h0_addr, dt):
    """The state (L, N, H) from the array at ``h0_addr`` (C-contiguous, dtype ``dt``, L * N * H
    values), zeros where ``h0_addr`` is 0, unchanged where it is ``KEEP``."""
    L, H, N = rec[_L], rec[_HID], rec[_N_STATE]
    h = carray(ptr(rec[_STATE], dt), (L * N * H,))
    if h0_addr == 0:
        h[:] = 0.0
    elif h0_addr != KEEP:
        h[:] = carray(ptr(h0_addr, dt), (L * N * H,))


@njit(**_JIT)
def get_state(rec, hn):
    """The state (L, N, H) copied into ``hn`` (L * N * H values, any shape); nothing where ``hn``
    is empty."""
    L, H, N = rec[_L], rec[_HID], rec[_N_STATE]
    if hn.size != 0:
        hn.reshape(L * N * H)[:] = carray(ptr(rec[_STATE], hn.dtype), (L * N * H,))


@njit(**_JIT)
def finish(rec, y):
    """The last layer's new state: the chunk's last output."""
    L, H, T, N = rec[_L], rec[_HID], rec[_T], rec[_N]
    h = carray(ptr(rec[_STATE], y.dtype), (L, N, H))
    h[L - 1] = y.reshape((T, N, H))[T - 1]


@njit(**_JIT)
def chunk(rec, x_addr, y, T, N, zoneout):
    """T steps of every layer on the calling thread: ``rec`` (:func:`record`), the input at
    ``x_addr`` ((T, N, I) in memory), the output ``y`` (see :func:`chunk_block`)."""
    start(rec, x_addr, y, T, N, zoneout)
    # np.int64: literal 0 and 1 would compile a second specialisation beside the threads' one
    chunk_block(rec, y, np.int64(0), rec[_HID], np.int64(1))
    finish(rec, y)


@njit(**_JIT)
def chunk_from(rec, x_addr, h0_addr, y, hn, T, N, zoneout):
    """A whole forward call in one dispatch: the state from ``h0_addr`` (zeros where 0, the
    record's own where ``KEEP``), then :func:`chunk`, then the state copied into ``hn`` (the
    call's ``h_n``, of the state's size; empty: not copied). The callers use this entry only, so
    a process compiles one specialisation per dtype (each entry links and optimises the whole
    kernel again: seconds on a first run)."""
    _load_state(rec, h0_addr, y.dtype)
    chunk(rec, x_addr, y, T, N, zoneout)
    get_state(rec, hn)
