"""Numba kernel of the language model's sampler (``grukit.apps.text.sampling.Sampler``): S steps
of token-by-token generation for N rows in one call, with no allocation.

Shapes: S steps, N rows, V vocabulary, E embedding size, H hidden, L layers. Arrays are
C-contiguous float32 or float64 (one dtype per call), token ids int64. Per step, for every row
(gate order r, z, n; ``LN`` and the two formulations as in ``docs/variants.md``)::

    i^0 = table[x_t]                      = LN_ih(E[x_t] W_ih0^T) + b_ih0, looked up
    i^l = LN_ih(h^{l-1}_t W_ih^T) + b_ih  layers l >= 1 (no LN: h W_ih^T + b_ih)
    reset_after=True:   g = LN_hh(h^l_{t-1} W_hh^T) + b_hh                      over 3H
                        r, z = sigmoid(i_r + g_r), sigmoid(i_z + g_z)
                        n = tanh(i_n + r * g_n)
    reset_after=False:  [g_r, g_z] = LN_hh[:2H](h^l_{t-1} W_h{r,z}^T) + b_h{r,z}   over 2H
                        r, z = sigmoid(i_r + g_r), sigmoid(i_z + g_z)
                        n = tanh(i_n + LN_hh[2H:]((r * h^l_{t-1}) W_hn^T) + b_hn)  over H
    h^l_t = (1 - z) * n + z * h^l_{t-1},  then zoneout p: p * h^l_{t-1} + (1 - p) * h^l_t
    logits_t = (h^{L-1}_t P^T) W_out^T + b_out     (P (E, H) only when present)
    x_{t+1} = sample(logits_t, u_t)               the rule of ``sampling.sample_reference``

Layer norm statistics are taken in float64 (as the ``cpu`` backend's kernels); the sampling
arithmetic is float64 whatever the dtype. Products are ``_cpu_kernels.mm_small`` (dot products for
a few rows, PyTorch's GEMM for more), or in float32, where the sampler packed the recurrent and
inner-layer weights once (``packed``), MKL's packed GEMM (``_cpu_kernels.mm_packed``);
activations are the ``cpu`` backend's.
"""

from __future__ import annotations

import math

from numba import njit

from grukit._layer_options import LAYER_NORM_EPS as _LN_EPS
from grukit.backends import _numba_cache
from grukit.backends._cpu_kernels import act_sigmoid, act_tanh, mm_packed, packed_view
from grukit.backends._cpu_kernels import mm_small as _mm
from grukit.backends._stream_kernel import _new_state

_numba_cache.refresh(
    __file__, "_cpu_kernels", "_small_mm", "_stream_kernel", "_sync", "_blas", "../_layer_options"
)

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_INLINE = dict(_JIT, inline="always")


# -- the GRU step -------------------------------------------------------------------------------


@njit(**_JIT)
def _fill_rows(g, b):
    """``g[n, :] = b`` for every row: (N, K) <- (K,)."""
    for n in range(g.shape[0]):
        for k in range(g.shape[1]):
            g[n, k] = b[k]


@njit(**_JIT)
def _norm_rows(v, gain, shift, bias):
    """Each row of ``v`` (N, K) becomes ``LN(v; gain, shift) + bias``, statistics in float64."""
    K = v.shape[1]
    for n in range(v.shape[0]):
        s = 0.0
        for k in range(K):
            s += v[n, k]
        mean = s / K
        q = 0.0
        for k in range(K):
            d = v[n, k] - mean
            q += d * d
        rstd = 1.0 / math.sqrt(q / K + _LN_EPS)
        for k in range(K):
            v[n, k] = (gain[k] * ((v[n, k] - mean) * rstd) + shift[k]) + bias[k]


@njit(**_JIT)
def _product(x, w, wp, out, beta):
    """``out = x w^T + beta out``; through ``wp``, ``w`` packed for x's rows, unless it is
    empty."""
    if wp.shape[0] > 0:
        mm_packed(x, packed_view(wp), w.shape[0], out, beta)
    else:
        _mm(x, w, out, beta)


@njit(**_JIT)
def _project(x, w, wp, b, gain, shift, normed, out):
    """``out (N, K) = LN(x W^T) + b`` (``gain``, ``shift``, ``b`` (K,)), or ``x W^T + b``; ``wp``:
    ``W`` packed, or empty."""
    if normed:
        _product(x, w, wp, out, 0.0)
        _norm_rows(out, gain, shift, b)
    else:
        _fill_rows(out, b)
        _product(x, w, wp, out, 1.0)


@njit(**_JIT)
def _layer_step(gi, h, w_hh, wp, b_hh, g_hh, c_hh, normed, reset_after, zoneout, gh, rh):
    """One step of one layer, ``h`` (N, H) overwritten with ``h_t``. ``gi`` (N, 3H): the input
    side, biases and norm included; ``w_hh`` (3H, H); ``b_hh``, ``g_hh``, ``c_hh`` (3H,); ``wp``
    (3, S): ``w_hh`` packed (``reset_after``; else its r,z rows) in ``wp[1]``, its n rows
    (``reset_after=False``) in ``wp[2]``, or (3, 0). Scratch ``gh`` (N, 3H), ``rh`` (N, H)."""
    N, H = h.shape
    if reset_after:
        _project(h, w_hh, wp[1], b_hh, g_hh, c_hh, normed, gh)  # (N, 3H)
        for b in range(N):
            for j in range(H):
                r = act_sigmoid(gi[b, j] + gh[b, j])
                z = act_sigmoid(gi[b, H + j] + gh[b, H + j])
                n = act_tanh(gi[b, 2 * H + j] + r * gh[b, 2 * H + j])
                h[b, j] = _new_state(h[b, j], z, n, zoneout)
        return
    ghrz, ghn = gh[:, : 2 * H], gh[:, 2 * H :]  # (N, 2H), (N, H)
    _project(h, w_hh[: 2 * H], wp[1], b_hh[: 2 * H], g_hh[: 2 * H], c_hh[: 2 * H], normed, ghrz)
    for b in range(N):
        for j in range(H):
            r = act_sigmoid(gi[b, j] + gh[b, j])
            gh[b, H + j] = act_sigmoid(gi[b, H + j] + gh[b, H + j])  # z, kept for later
            rh[b, j] = r * h[b, j]
    _project(rh, w_hh[2 * H :], wp[2], b_hh[2 * H :], g_hh[2 * H :], c_hh[2 * H :], normed, ghn)
    for b in range(N):
        for j in range(H):
            n = act_tanh(gi[b, 2 * H + j] + gh[b, 2 * H + j])
            h[b, j] = _new_state(h[b, j], gh[b, H + j], n, zoneout)


# -- sampling -----------------------------------------------------------------------------------


@njit(**_INLINE)
def _before(logits, a, b):
    """Token ``a`` ranks before ``b``: a larger logit, or the same and a lower id."""
    return logits[a] > logits[b] or (logits[a] == logits[b] and a < b)


@njit(**_JIT)
def _sift(logits, order, i, end):
    """Move ``order[i]`` down the heap ``order[:end]``, whose root ranks last."""
    while True:
        c = 2 * i + 1
        if c >= end:
            return
        if c + 1 < end and _before(logits, order[c], order[c + 1]):
            c += 1
        if not _before(logits, order[i], order[c]):
            return
        order[i], order[c] = order[c], order[i]
        i = c


@njit(**_JIT)
def _rank(logits, order):
    """``order`` (V,) <- the ids by decreasing logit, ties by increasing id (in-place heapsort;
    the ranking is a total order, so any correct sort gives the same one)."""
    V = order.shape[0]
    for i in range(V):
        order[i] = i
    for i in range(V // 2 - 1, -1, -1):
        _sift(logits, order, i, V)
    for end in range(V - 1, 0, -1):
        order[0], order[end] = order[end], order[0]  # the last-ranked of order[:end + 1]
        _sift(logits, order, 0, end)


@njit(**_JIT)
def sample_row(logits, u, temperature, top_k, top_p, order, w):
    """One draw from ``logits`` (V,) with the uniform ``u`` (see ``sampling.sample_reference``).
    Scratch ``order`` (V,) int64 and ``w`` (V,) float64; ``w[i] = 0`` marks a dropped token."""
    V = logits.shape[0]
    best = 0
    for i in range(1, V):
        if logits[i] > logits[best]:
            best = i
    if temperature == 0.0:
        return best
    top = float(logits[best])
    for i in range(V):
        w[i] = math.exp((float(logits[i]) - top) / temperature)
    k = top_k if 0 < top_k < V else V
    if k < V or top_p < 1.0:
        _rank(logits, order)
        if top_p < 1.0:
            total = 0.0
            for m in range(k):
                total += w[order[m]]
            c = 0.0
            for m in range(k):
                c += w[order[m]]
                if c >= top_p * total:
                    k = m + 1
                    break
        for m in range(k, V):
            w[order[m]] = 0.0
    total = 0.0
    for i in range(V):
        total += w[i]
    c, target, last = 0.0, u * total, 0
    for i in range(V):
        if w[i] > 0.0:
            c += w[i]
            last = i
            if c > target:
                return i
    return last  # only when rounding leaves u * total at the total


# -- the driver ---------------------------------------------------------------------------------


@njit(**_JIT)
def run_steps(
    table,
    w_ih,
    w_hh,
    b_ih,
    b_hh,
    g_ih,
    c_ih,
    g_hh,
    c_hh,
    proj,
    head,
    head_b,
    packed,
    reset_after,
    zoneout,
    temperature,
    top_k,
    top_p,
    tokens,
    uniforms,
    h,
    out,
    gi,
    gh,
    rh,
    pj,
    logits,
    order,
    w,
):
    """S steps for N rows. Weights: ``table`` (V, 3H); ``w_ih`` (L-1, 3H, H); ``w_hh`` (L, 3H, H);
    ``b_ih``, ``b_hh`` (L, 3H); layer-norm gains and shifts ``g_ih``, ``c_ih``, ``g_hh``, ``c_hh``
    (L, 3H), or (L, 0) without layer norm; ``proj`` (E, H) or (0, 0); ``head`` (V, E) or (V, H);
    ``head_b`` (V,); ``packed`` (L, 3, S) float32: per layer ``w_ih[layer - 1]`` and ``w_hh``'s
    product rows packed for N rows (``_layer_step``; ``sampling.packed_weights``), or (L, 3, 0).
    ``tokens`` (N,) int64: the inputs of the first step, overwritten with the
    last sampled ids; ``uniforms`` (S, N) float64 in [0, 1); ``h`` (L, N, H): the state, read and
    overwritten; ``out`` (S, N) int64 receives the sampled ids. Scratch: ``gi``, ``gh`` (N, 3H),
    ``rh`` (N, H), ``pj`` (N, E), ``logits`` (N, V), ``order`` (V,) int64, ``w`` (V,) float64."""
    S, N = uniforms.shape
    L = h.shape[0]
    normed = g_hh.shape[1] > 0
    projected = proj.shape[0] > 0
    for s in range(S):
        for b in range(N):
            gi[b, :] = table[tokens[b]]  # (3H,)
        for layer in range(L):
            if layer > 0:
                _project(
                    h[layer - 1],
                    w_ih[layer - 1],
                    packed[layer, 0],
                    b_ih[layer],
                    g_ih[layer],
                    c_ih[layer],
                    normed,
                    gi,
                )  # (N, 3H)
            _layer_step(
                gi,
                h[layer],
                w_hh[layer],
                packed[layer],
                b_hh[layer],
                g_hh[layer],
                c_hh[layer],
                normed,
                reset_after,
                zoneout,
                gh,
                rh,
            )
        y = h[L - 1]  # (N, H)
        if projected:
            _mm(y, proj, pj, 0.0)  # (N, E)
            _fill_rows(logits, head_b)
            _mm(pj, head, logits, 1.0)  # (N, V)
        else:
            _fill_rows(logits, head_b)
            _mm(y, head, logits, 1.0)  # (N, V)
        for b in range(N):
            tokens[b] = out[s, b] = sample_row(logits[b], uniforms[s, b], temperature, top_k, top_p, order, w)
