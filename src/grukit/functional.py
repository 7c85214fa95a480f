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
    W_hr, W_hz, W_hn = weight_hh.chunk(3, 0)  # 3 x (H, H)
    b_hr, b_hz, b_hn = bias_hh.chunk(3, 0) if bias_hh is not None else (None, None, None)
    i_r, i_z, i_n = F.linear(x, weight_ih, bias_ih).chunk(3, -1)  # 3 x (N, H)

    r = torch.sigmoid(i_r + F.linear(h_prev, W_hr, b_hr))  # (N, H)
    z = torch.sigmoid(i_z + F.linear(h_prev, W_hz, b_hz))  # (N, H)
    if reset_after:
        n = torch.tanh(i_n + r * F.linear(h_prev, W_hn, b_hn))  # (N, H)
    else:
        n = torch.tanh(i_n + F.linear(r * h_prev, W_hn, b_hn))  # (N, H)
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
    h = h0  # (N, H)
    outputs: list[Tensor] = [h0] * T
    for t in reversed(range(T)) if reverse else range(T):
        h_new = gru_cell(x[t], h, weight_ih, weight_hh, bias_ih, bias_hh, reset_after=reset_after)
        if lengths is not None:
            valid = (lengths > t).unsqueeze(1)  # (N, 1)
            h_new = torch.where(valid, h_new, h)  # (N, H)
            outputs[t] = h_new * valid  # (N, H), zero past the end
        else:
            outputs[t] = h_new
        h = h_new
    return torch.stack(outputs, 0), h  # (T, N, H), (N, H)
