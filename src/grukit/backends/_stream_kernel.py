"""Numba kernel of the stream's fast path (``grukit.streaming``): a short chunk of one GRU layer,
forward direction, evaluation, in one call with no allocation.

Shapes: T steps, N batch, I input features, H hidden. Arrays are C-contiguous float32 or float64
(one dtype per call), except the gate slices the kernel takes itself. The equations are
``grukit.GRU``'s (gate order r, z, n)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)    reset_after=False
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))    reset_after=True
    h'_t = (1 - z_t) * n_t + z_t * h_{t-1}
    h_t = zoneout * h_{t-1} + (1 - zoneout) * h'_t               (zoneout in evaluation; 0: h'_t)

The products are ``_cpu_kernels.mm_small`` (dot products for a few rows, PyTorch's GEMM for
more); the activations are the fused ``cpu`` backend's (libm in float64; the rational tanh in
float32). Importing this module imports Numba; compiled code is cached on disk.
"""

from __future__ import annotations

from numba import njit

from grukit.backends import _numba_cache
from grukit.backends._cpu_kernels import act_sigmoid, act_tanh, mm_small

_numba_cache.refresh(__file__, "_cpu_kernels", "_small_mm", "_sync", "_blas", "../_layer_options")

_JIT = dict(cache=True, nogil=True, error_model="numpy")


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


@njit(**_JIT)
def chunk_layer(x, h, w_ih, w_hh, b_ih, b_hh, reset_after, zoneout, y, gi, gh, rh):
    """T steps of one layer. ``x`` (T, N, I); ``h`` (N, H): the state, read and overwritten with
    the state after the chunk; ``w_ih`` (3H, I), ``w_hh`` (3H, H), ``b_ih`` and ``b_hh`` (3H,)
    (zeros without bias); ``y`` (T, N, H) receives ``h_t``. Scratch: ``gi`` and ``gh`` (N, 3H),
    ``rh`` (N, H)."""
    T, N = x.shape[0], x.shape[1]
    H = h.shape[1]
    for t in range(T):
        _fill_bias(gi, b_ih)
        mm_small(x[t], w_ih, gi, 1.0)  # (N, 3H) = x_t W_ih^T + b_ih
        if reset_after:
            _fill_bias(gh, b_hh)
            mm_small(h, w_hh, gh, 1.0)  # (N, 3H) = h W_hh^T + b_hh
            for b in range(N):
                for j in range(H):
                    r = act_sigmoid(gi[b, j] + gh[b, j])
                    z = act_sigmoid(gi[b, H + j] + gh[b, H + j])
                    n = act_tanh(gi[b, 2 * H + j] + r * gh[b, 2 * H + j])
                    h[b, j] = y[t, b, j] = _new_state(h[b, j], z, n, zoneout)
        else:
            ghrz = gh[:, : 2 * H]  # (N, 2H)
            _fill_bias(ghrz, b_hh[: 2 * H])
            mm_small(h, w_hh[: 2 * H], ghrz, 1.0)  # (N, 2H) = h W_h{r,z}^T + b_h{r,z}
            for b in range(N):
                for j in range(H):
                    r = act_sigmoid(gi[b, j] + gh[b, j])
                    gh[b, H + j] = act_sigmoid(gi[b, H + j] + gh[b, H + j])  # z, kept for later
                    rh[b, j] = r * h[b, j]
            ghn = gh[:, 2 * H :]  # (N, H)
            _fill_bias(ghn, b_hh[2 * H :])
            mm_small(rh, w_hh[2 * H :], ghn, 1.0)  # (N, H) = (r * h) W_hn^T + b_hn
            for b in range(N):
                for j in range(H):
                    z = gh[b, H + j]
                    n = act_tanh(gi[b, 2 * H + j] + gh[b, 2 * H + j])
                    h[b, j] = y[t, b, j] = _new_state(h[b, j], z, n, zoneout)
