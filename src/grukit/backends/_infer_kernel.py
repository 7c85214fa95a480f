"""Numba kernel for eager inference of one plain GRU layer on the calling thread.

Shapes: T steps, N batch, I input features, H hidden. The equations are ``grukit.GRU``'s (gate
order r, z, n; ``_cpu_kernels`` has the conventions this shares: ``lengths``, reverse, the
rational tanh in float32)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))      reset_after=True
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)      reset_after=False
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    h_t = p h_{t-1} + (1 - p) h_t                                  evaluation's zoneout p > 0

The fused ``forward`` of ``_cpu_kernels`` carries every variant, thread split and the values a
backward needs; a call that needs none of them (inference, one block on the calling thread, no
bfloat16) runs here instead: the input projection of a chunk of steps in one product, then per step the recurrent product (MKL's
packed GEMM in float32 where available, else ``_cpu_kernels.mm_small``) and the gates in short
loops over few arrays each (so each vectorises), saving nothing. Every value is computed as the
fused kernel computes it, in the same order, so the two give the same bits. A call passes a
dozen arguments instead of the fused kernel's forty, whose Numba dispatch alone cost about 80 us.

Importing this module imports Numba and binds PyTorch's BLAS (through ``_cpu_kernels``);
compiled code is cached on disk.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from grukit.backends import _numba_cache
from grukit.backends._cpu_kernels import _project, act_sigmoid, act_tanh, mm_packed, mm_small, pack_nt

_numba_cache.refresh(__file__, "_cpu_kernels", "_small_mm", "_sync", "_blas", "_philox", "../_layer_options")

__all__ = ["Args", "forward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


class Args(NamedTuple):
    """:func:`forward`'s arguments, in order (``forward(*args)``)."""

    x: np.ndarray  # (T, N, I)
    wih: np.ndarray  # (3H, I)
    bih: np.ndarray  # (3H,)
    w: np.ndarray  # (3H, H)
    b: np.ndarray  # (3H,)
    h: np.ndarray  # (N, H): the initial state in, the final one out
    out: np.ndarray  # (T, N, H)
    lengths: np.ndarray  # (N,) int64
    reverse: bool
    reset_after: bool
    packed: bool
    zp: float
    C: int


_INLINE = dict(_JIT, inline="always")


@njit(**_INLINE)
def _sigmoids(g, gh, b, s, K):
    """``s = sigmoid(g + gh + b)`` over ``K`` units (r and z together: they are contiguous)."""
    for j in range(K):
        s[j] = act_sigmoid(g[j] + gh[j] + b[j])


@njit(**_INLINE)
def _candidate_after(g, ghn, bhn, r, n, H):
    """``n = tanh(g + r * (ghn + b_hn))`` (``reset_after``)."""
    for j in range(H):
        n[j] = act_tanh(g[j] + r[j] * (ghn[j] + bhn[j]))


@njit(**_INLINE)
def _candidate_before(g, ghn, bhn, n, H):
    """``n = tanh(g + ghn + b_hn)``, ``ghn = W_hn (r * h)`` (``reset_after=False``)."""
    for j in range(H):
        n[j] = act_tanh(g[j] + ghn[j] + bhn[j])


@njit(**_INLINE)
def _reset_state(r, h, rh, H):
    """``rh = r * h``."""
    for j in range(H):
        rh[j] = r[j] * h[j]


@njit(**_INLINE)
def _new_state(z, n, h, out, zp, H):
    """``h = (1 - z) * n + z * h`` (then zoneout's ``p h_prev + (1 - p) h`` where ``zp`` > 0),
    into both the state and the output row."""
    if zp == 0.0:
        for j in range(H):
            v = (1.0 - z[j]) * n[j] + z[j] * h[j]
            h[j] = v
            out[j] = v
        return
    for j in range(H):
        out[j] = (1.0 - z[j]) * n[j] + z[j] * h[j]
    for j in range(H):
        out[j] = zp * h[j] + (1.0 - zp) * out[j]
    for j in range(H):
        h[j] = out[j]


@njit(**_JIT)
def forward(x, wih, bih, w, b, h, out, lengths, reverse, reset_after, packed, zp, C):
    """The layer over ``x`` (T, N, I) from the state ``h`` (N, H), which becomes the final state;
    ``out`` (T, N, H) receives every step's state (zero where ``t >= lengths[b]``, whose state
    carries over). ``wih`` (3H, I), ``bih`` (3H,), ``w`` (3H, H), ``b`` (3H,): the parameters in
    their own gate order. ``packed`` (float32 only): the recurrent products through MKL's packed
    GEMM. ``zp``: evaluation's zoneout (0: none). ``C``: steps per projected chunk (1 to T; the
    fused kernel's, ``_cpu_base.projection_chunk``). All arrays C-contiguous, one float dtype."""
    T, N = x.shape[0], x.shape[1]
    H = w.shape[1]
    dt = out.dtype
    gi = np.empty((C, N, 3 * H), dt)  # (C, N, 3H): the chunk's x W_ih^T + b_ih
    bhn = b[2 * H :]
    nrz = 3 * H if reset_after else 2 * H  # rows of the product on h_{t-1}
    gh = np.empty((N, nrz), dt)  # (N, nrz)
    s = np.empty((3, H), dt)  # r, z, n of one row (r, z contiguous)
    rh = np.empty((N, H), dt)  # r * h_{t-1}  (reset_after=False)
    ghn = np.empty((N, H), dt)  # W_hn (r * h_{t-1})
    pk = packed and N > 0
    wpa = pack_nt(w[:nrz], N) if pk else np.empty(0, np.float32)
    wpb = pack_nt(w[2 * H :], N) if pk and not reset_after else np.empty(0, np.float32)
    lo = 0  # first step of the projected chunk
    for q in range(T):
        t = T - 1 - q if reverse else q
        if q % C == 0:  # project the next chunk of steps (the fused kernel's one block of all rows)
            n_in = min(C, T - q)
            lo = T - q - n_in if reverse else q
            _project(x, wih, bih, gi, lo, n_in, 0, N, 0, 3 * H)
        g = gi[t - lo]  # (N, 3H)
        if pk:
            mm_packed(h, wpa, nrz, gh, 0.0)
        else:
            mm_small(h, w[:nrz], gh, 0.0)  # (N, nrz) = h W_h{r,z[,n]}^T
        if reset_after:
            for n in range(N):
                if t >= lengths[n]:
                    out[t, n] = 0.0
                    continue
                gn, ghr = g[n], gh[n]
                _sigmoids(gn, ghr, b, s.reshape(3 * H), 2 * H)
                _candidate_after(gn[2 * H :], ghr[2 * H :], bhn, s[0], s[2], H)
                _new_state(s[1], s[2], h[n], out[t, n], zp, H)
            continue
        for n in range(N):  # r, z, then r * h for every row before the n product
            if t < lengths[n]:
                gn = g[n]
                # r, z of row n into gh's own row (each row reads only its own)
                _sigmoids(gn, gh[n], b, gh[n], 2 * H)
                _reset_state(gh[n], h[n], rh[n], H)
            else:
                rh[n] = 0.0
        if pk:
            mm_packed(rh, wpb, H, ghn, 0.0)
        else:
            mm_small(rh, w[2 * H :], ghn, 0.0)  # (N, H) = (r * h) W_hn^T
        for n in range(N):
            if t >= lengths[n]:
                out[t, n] = 0.0
                continue
            _candidate_before(g[n, 2 * H :], ghn[n], bhn, s[2], H)
            _new_state(gh[n, H : 2 * H], s[2], h[n], out[t, n], zp, H)
