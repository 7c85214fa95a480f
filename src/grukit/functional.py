"""The GRU as plain tensor functions: the readable oracle every backend is tested against.

Both formulations, with ``W_i*``/``b_i*`` the row blocks of ``weight_ih``/``bias_ih`` and
``W_h*``/``b_h*`` those of ``weight_hh``/``bias_hh`` (gate order r, z, n, as ``torch.nn.GRU``)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     reset_after=False (the spec)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     reset_after=True  (PyTorch / cuDNN)
    h' = (1 - z) * n + z * h

The variants (``options``, a :class:`grukit.backends.LayerOptions`; equations in
``docs/variants.md``), with ``LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + 1e-5) + b`` over the
units of one sample and step::

    layer norm, reset_after=True (haste's LayerNormGRU):
        [i_r, i_z, i_n] = LN(W_ih x; g_ih, c_ih) + b_ih
        [h_r, h_z, h_n] = LN(W_hh h; g_hh, c_hh) + b_hh
        r = sigmoid(i_r + h_r), z = sigmoid(i_z + h_z), n = tanh(i_n + r * h_n)
    layer norm, reset_after=False (the r,z product and the n product normalised separately):
        [h_r, h_z] = LN(W_h{r,z} h; g_hh[:2H], c_hh[:2H]) + b_h{r,z}
        n = tanh(i_n + LN(W_hn (r * h); g_hh[2H:], c_hh[2H:]) + b_hn)
    recurrent dropout: h in the recurrent products above is h * mask (mask (N, H), fixed over time);
        the update h' = (1 - z) * n + z * h uses the unmasked h
    zoneout: h_t = m * h_{t-1} + (1 - m) * h'_t (training, m (N, H) per step), or
             h_t = p * h_{t-1} + (1 - p) * h'_t (evaluation)

:func:`gru_layer_gates` runs the same loop and also returns every step's ``r``, ``z``, ``n`` (the
gate inspection of :mod:`grukit.inspect`); with zoneout they are the GRU step's own gates, before
the zoneout interpolation.

Shapes: T time steps, N batch, I input features, H hidden features.
Nothing here validates its arguments: the modules do that once, at the public boundary.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from grukit._layer_options import LAYER_NORM_EPS, LayerOptions

__all__ = ["gru_cell", "gru_layer", "gru_layer_gates"]


def gru_cell(
    x: Tensor,
    h_prev: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    reset_after: bool = False,
    options: LayerOptions | None = None,
) -> Tensor:
    """One GRU step. ``x``: (N, I), ``h_prev``: (N, H); returns ``h``: (N, H).

    ``weight_ih``: (3H, I), ``weight_hh``: (3H, H), biases (3H,) or None; see the module docstring
    for the equations of each formulation. ``options`` as for :func:`gru_layer`, with a
    ``zoneout_mask`` of shape (N, H) for this one step.
    """
    o = options or LayerOptions()
    gi = _project(x, weight_ih, bias_ih, o.norm_ih)  # (N, 3H): W_i* x + b_i*
    h = _step(gi, h_prev, weight_hh, bias_hh, reset_after, o.norm_hh, o.recurrent_mask)
    return _zoneout(h_prev, h, o.zoneout_mask, o.zoneout)  # (N, H)


def _zoneout(h_prev: Tensor, h: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """Zoneout's mix of the previous state into the step's: ``m * h_prev + (1 - m) * h`` with the
    training mask ``mask`` (N, H), else (evaluation) ``p * h_prev + (1 - p) * h``; ``h`` itself
    without zoneout."""
    if mask is not None:  # training: unit kept where m = 1
        return mask * h_prev + (1 - mask) * h
    if p:  # evaluation: the expectation over masks
        return p * h_prev + (1 - p) * h
    return h


def _project(v: Tensor, weight: Tensor, bias: Tensor | None, norm: tuple[Tensor, Tensor] | None) -> Tensor:
    """``weight v + bias``; with ``norm`` = (gain, shift), ``LN(weight v) + bias`` (the layer
    normalisation over the output units, per sample and step, before the bias)."""
    if norm is None:
        return F.linear(v, weight, bias)  # (..., K)
    gain, shift = norm
    y = F.layer_norm(F.linear(v, weight), (weight.shape[0],), gain, shift, LAYER_NORM_EPS)
    return y if bias is None else y + bias  # (..., K)


def _step(
    gi: Tensor,
    h_prev: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    reset_after: bool,
    norm_hh: tuple[Tensor, Tensor] | None = None,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """The recurrent half of a step, given the (normalised and biased) input projection ``gi``
    (N, 3H). ``norm_hh``: the recurrent layer norm's (gain, shift), each (3H,); ``recurrent_mask``:
    (N, H), applied to the ``h`` entering the recurrent products only."""
    _, z, n = _gates(gi, h_prev, weight_hh, bias_hh, reset_after, norm_hh, recurrent_mask)
    return (1 - z) * n + z * h_prev  # (N, H)


def _gates(
    gi: Tensor,
    h_prev: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    reset_after: bool,
    norm_hh: tuple[Tensor, Tensor] | None,
    recurrent_mask: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``r``, ``z``, ``n`` of one step, each (N, H); arguments as for :func:`_step`."""
    H = h_prev.shape[-1]
    i_r, i_z, i_n = gi.split(H, -1)  # 3 x (N, H)
    h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask  # (N, H)
    if reset_after:
        h_r, h_z, h_n = _project(h_in, weight_hh, bias_hh, norm_hh).split(H, -1)  # 3 x (N, H)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
    else:
        b_rz, b_hn = (bias_hh[: 2 * H], bias_hh[2 * H :]) if bias_hh is not None else (None, None)
        norm_rz = norm_n = None
        if norm_hh is not None:
            gain, shift = norm_hh
            norm_rz, norm_n = (gain[: 2 * H], shift[: 2 * H]), (gain[2 * H :], shift[2 * H :])
        h_r, h_z = _project(h_in, weight_hh[: 2 * H], b_rz, norm_rz).split(H, -1)  # 2 x (N, H)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + _project(r * h_in, weight_hh[2 * H :], b_hn, norm_n))  # W_hn (r*h)
    return r, z, n


def gru_layer(
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    reset_after: bool = False,
    reverse: bool = False,
    lengths: Tensor | None = None,
    options: LayerOptions | None = None,
) -> tuple[Tensor, Tensor]:
    """One layer, one direction, over a whole sequence.

    ``x``: (T, N, I) time-major, ``h0``: (N, H). ``reverse`` walks from the last step to the first.
    ``lengths`` (N,) int64, optional: sequence ``b`` owns steps ``0 .. lengths[b]-1``; outside them
    its output is zero and its state is carried unchanged, so ``h_n`` is the state after its own last
    step (forward) or first step (reverse), exactly as a packed sequence in ``torch.nn.GRU``.

    ``options`` (a :class:`grukit.backends.LayerOptions`, None for the plain GRU): the variants in
    the module docstring; zoneout acts before the packed-sequence masking, so a sequence's state
    is still carried unchanged past its end.

    Returns ``output``: (T, N, H) and ``h_n``: (N, H).
    """
    output, h_n, _ = _layer(
        x,
        h0,
        weight_ih,
        weight_hh,
        bias_ih,
        bias_hh,
        reset_after=reset_after,
        reverse=reverse,
        lengths=lengths,
        options=options,
        keep_gates=False,
    )
    return output, h_n  # (T, N, H), (N, H)


def gru_layer_gates(
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    reset_after: bool = False,
    reverse: bool = False,
    lengths: Tensor | None = None,
    options: LayerOptions | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`gru_layer` that also returns its gates: ``output`` (T, N, H), ``h_n`` (N, H) and
    ``gates`` (T, N, 3, H), ``gates[t, :, k]`` being ``r_t``, ``z_t``, ``n_t`` for k = 0, 1, 2 (time
    index ``t`` whatever the direction; zero past a sequence's length). The same loop computes
    both, so every option of ``options`` applies; the gates are those of the GRU step, before
    zoneout mixes in the previous state."""
    output, h_n, gates = _layer(
        x,
        h0,
        weight_ih,
        weight_hh,
        bias_ih,
        bias_hh,
        reset_after=reset_after,
        reverse=reverse,
        lengths=lengths,
        options=options,
        keep_gates=True,
    )
    return output, h_n, cast(Tensor, gates)  # (T, N, H), (N, H), (T, N, 3, H): keep_gates


def _layer(
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    *,
    reset_after: bool,
    reverse: bool,
    lengths: Tensor | None,
    options: LayerOptions | None,
    keep_gates: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The time loop of :func:`gru_layer`; with ``keep_gates`` also the (T, N, 3, H) gates."""
    T = x.shape[0]
    o = options or LayerOptions()
    gi = _project(x, weight_ih, bias_ih, o.norm_ih)  # (T, N, 3H), every step's at once
    zoneout_mask = o.resolved_zoneout_mask(T, h0.shape[0], h0.shape[1], h0)  # (T, N, H) or None
    h = h0  # (N, H)
    outputs: list[Tensor] = [h0] * T
    kept: list[Tensor] = [h0] * T
    for t in reversed(range(T)) if reverse else range(T):
        r, z, n = _gates(gi[t], h, weight_hh, bias_hh, reset_after, o.norm_hh, o.recurrent_mask)
        mask = zoneout_mask[t] if zoneout_mask is not None else None  # (N, H)
        h_new = _zoneout(h, (1 - z) * n + z * h, mask, o.zoneout)  # (N, H)
        if keep_gates:
            kept[t] = torch.stack([r, z, n], 1)  # (N, 3, H)
        if lengths is not None:
            valid = (lengths > t).unsqueeze(1)  # (N, 1)
            h_new = torch.where(valid, h_new, h)  # (N, H)
            outputs[t] = h_new * valid  # (N, H), zero past the end
            if keep_gates:
                kept[t] = kept[t] * valid.unsqueeze(1)  # (N, 3, H), zero past the end
        else:
            outputs[t] = h_new
        h = h_new
    gates = torch.stack(kept, 0) if keep_gates else None  # (T, N, 3, H)
    return torch.stack(outputs, 0), h, gates  # (T, N, H), (N, H)
