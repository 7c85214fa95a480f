"""The spec's GRU (``seed-gru.md``), written literally, in its own notation.

    z_t  = sigmoid(W_z . [h_{t-1}, x_t] + b_z)          update gate
    r_t  = sigmoid(W_r . [h_{t-1}, x_t] + b_r)          reset gate
    h~_t = tanh(W_h . [r_t * h_{t-1}, x_t] + b_h)       candidate
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t             new state

``W_z, W_r, W_h``: (H, H+I), acting on the concatenation ``[h_{t-1}, x_t]``; ``b_*``: (H,).
This is ``grukit.GRU(reset_after=False)`` with the update gate negated; the weights convert
exactly with :func:`grukit.convert.layout.to_spec` / ``from_spec``. Not a fast path: a statement
of the model that tests hold the library to. Shapes: T steps, N batch, I inputs, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["spec_step", "spec_sequence"]


def spec_step(x_t: Tensor, h_prev: Tensor, p: dict[str, Tensor]) -> Tensor:
    """One step of the spec's equations. ``x_t``: (N, I), ``h_prev``: (N, H) -> ``h_t``: (N, H)."""
    hx = torch.cat([h_prev, x_t], -1)  # (N, H+I)
    z_t = torch.sigmoid(hx @ p["W_z"].T + p["b_z"])  # (N, H)
    r_t = torch.sigmoid(hx @ p["W_r"].T + p["b_r"])  # (N, H)
    h_tilde = torch.tanh(torch.cat([r_t * h_prev, x_t], -1) @ p["W_h"].T + p["b_h"])  # (N, H)
    return (1 - z_t) * h_prev + z_t * h_tilde  # (N, H)


def spec_sequence(x: Tensor, h0: Tensor, p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The spec's GRU over a sequence. ``x``: (T, N, I), ``h0``: (N, H) -> (T, N, H), (N, H)."""
    h, hs = h0, []
    for x_t in x:
        h = spec_step(x_t, h, p)
        hs.append(h)
    return torch.stack(hs), h
