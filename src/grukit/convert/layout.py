"""The one module that knows how each convention lays out a GRU's weights.

grukit (like ``torch.nn.GRU``) stores, per layer and direction, ``weight_ih`` (3H, I),
``weight_hh`` (3H, H), ``bias_ih`` (3H,), ``bias_hh`` (3H,), row blocks in gate order **r, z, n**.

The spec (``docs/spec.md``) writes one matrix per gate acting on the concatenation
``[h_{t-1}, x_t]``, one bias per gate, and the update ``h_t = (1 - z) h_{t-1} + z h~_t``. Its
``z`` is grukit's ``1 - z``; since ``1 - sigmoid(a) = sigmoid(-a)`` the update gate's weights and
bias change sign between the two::

    W_r = [ W_hr |  W_ir]      b_r =   b_ir + b_hr
    W_z = [-W_hz | -W_iz]      b_z = -(b_iz + b_hz)
    W_h = [ W_hn |  W_in]      b_h =   b_in + b_hn

Exact for ``reset_after=False`` (there ``b_i*`` and ``b_h*`` only ever appear summed); the spec
has no reset-after form.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GATES", "to_spec", "from_spec"]

GATES = ("r", "z", "n")  # grukit / PyTorch row-block order


def to_spec(
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> dict[str, Tensor]:
    """grukit ``reset_after=False`` parameters -> the spec's ``W_z, W_r, W_h`` (H, H+I) and
    ``b_z, b_r, b_h`` (H,)."""
    H = weight_hh.shape[1]
    W_ir, W_iz, W_in = weight_ih.split(H, 0)  # 3 x (H, I)
    W_hr, W_hz, W_hn = weight_hh.split(H, 0)  # 3 x (H, H)
    b = torch.zeros(3 * H, dtype=weight_ih.dtype, device=weight_ih.device)  # (3H,)
    if bias_ih is not None:
        b = b + bias_ih
    if bias_hh is not None:
        b = b + bias_hh
    b_r, b_z, b_n = b.split(H, 0)  # 3 x (H,)
    return {
        "W_z": -torch.cat([W_hz, W_iz], 1),  # (H, H+I), negated: spec z = 1 - grukit z
        "W_r": torch.cat([W_hr, W_ir], 1),  # (H, H+I)
        "W_h": torch.cat([W_hn, W_in], 1),  # (H, H+I)
        "b_z": -b_z,
        "b_r": b_r,
        "b_h": b_n,
    }


def from_spec(spec: dict[str, Tensor]) -> dict[str, Tensor]:
    """The spec's ``W_z, W_r, W_h, b_z, b_r, b_h`` -> grukit ``reset_after=False``
    ``weight_ih, weight_hh, bias_ih, bias_hh`` (the whole bias goes into ``bias_ih``;
    ``bias_hh`` is zero)."""
    H = spec["W_r"].shape[0]
    W_hr, W_ir = spec["W_r"].split([H, spec["W_r"].shape[1] - H], 1)  # (H, H), (H, I)
    W_hz, W_iz = (-spec["W_z"]).split([H, spec["W_z"].shape[1] - H], 1)
    W_hn, W_in = spec["W_h"].split([H, spec["W_h"].shape[1] - H], 1)
    bias_ih = torch.cat([spec["b_r"], -spec["b_z"], spec["b_h"]])  # (3H,)
    return {
        "weight_ih": torch.cat([W_ir, W_iz, W_in], 0),  # (3H, I)
        "weight_hh": torch.cat([W_hr, W_hz, W_hn], 0),  # (3H, H)
        "bias_ih": bias_ih,
        "bias_hh": torch.zeros_like(bias_ih),
    }
