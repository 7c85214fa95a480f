"""The GRU as plain tensor functions: the readable oracle every backend is tested against.

Both formulations, with ``W_i*``/``b_i*`` the row blocks of ``weight_ih``/``bias_ih`` and
``W_h*``/``b_h*`` those of ``weight_hh``/``bias_hh`` (gate order r, z, n, as ``torch.nn.GRU``)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     reset_after=False (the spec)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     reset_after=True  (PyTorch / cuDNN)
    h' = (1 - z) * n + z * h

Shapes: T time steps, N batch, I input features, H hidden features.
Nothing here validates its arguments: the modules do that once, at the public boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gru_cell", "gru_layer"]


def gru_cell(
    x: Tensor,
    h_prev: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    reset_after: bool = False,
) -> Tensor:
    """One GRU step. ``x``: (N, I), ``h_prev``: (N, H); returns ``h``: (N, H).

    ``weight_ih``: (3H, I), ``weight_hh``: (3H, H), biases (3H,) or None; see the module docstring
    for the equations of each formulation.
    """
    gi = F.linear(x, weight_ih, bias_ih)  # (N, 3H): W_i* x + b_i*
    return _step(gi, h_prev, weight_hh, bias_hh, reset_after)


def _step(
    gi: Tensor, h_prev: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, reset_after: bool
) -> Tensor:
    """The recurrent half of a step, given the input projection ``gi`` (N, 3H)."""
    H = h_prev.shape[-1]
    i_r, i_z, i_n = gi.split(H, -1)  # 3 x (N, H)
    if reset_after:
        h_r, h_z, h_n = F.linear(h_prev, weight_hh, bias_hh).split(H, -1)  # 3 x (N, H)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
    else:
        b_rz, b_hn = (bias_hh[: 2 * H], bias_hh[2 * H :]) if bias_hh is not None else (None, None)
        h_r, h_z = F.linear(h_prev, weight_hh[: 2 * H], b_rz).split(H, -1)  # 2 x (N, H)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + F.linear(r * h_prev, weight_hh[2 * H :], b_hn))  # W_hn (r*h) + b_hn
    return (1 - z) * n + z * h_prev  # (N, H)


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
) -> tuple[Tensor, Tensor]:
    """One layer, one direction, over a whole sequence.

    ``x``: (T, N, I) time-major, ``h0``: (N, H). ``reverse`` walks from the last step to the first.
    ``lengths`` (N,) int64, optional: sequence ``b`` owns steps ``0 .. lengths[b]-1``; outside them
    its output is zero and its state is carried unchanged, so ``h_n`` is the state after its own last
    step (forward) or first step (reverse), exactly as a packed sequence in ``torch.nn.GRU``.

    Returns ``output``: (T, N, H) and ``h_n``: (N, H).
    """
    T = x.shape[0]
    gi = F.linear(x, weight_ih, bias_ih)  # (T, N, 3H), every step's input projection at once
    h = h0  # (N, H)
    outputs: list[Tensor] = [h0] * T
    for t in reversed(range(T)) if reverse else range(T):
        h_new = _step(gi[t], h, weight_hh, bias_hh, reset_after)  # (N, H)
        if lengths is not None:
            valid = (lengths > t).unsqueeze(1)  # (N, 1)
            h_new = torch.where(valid, h_new, h)  # (N, H)
            outputs[t] = h_new * valid  # (N, H), zero past the end
        else:
            outputs[t] = h_new
        h = h_new
    return torch.stack(outputs, 0), h  # (T, N, H), (N, H)
