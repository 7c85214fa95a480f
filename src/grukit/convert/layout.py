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

Keras 3 and ONNX order the gate blocks **z, r, h** (``swap_rz`` exchanges the first two blocks)
and keep the input and recurrent matrices per layer and direction:

=============  ==================  ===================  ====================================
               grukit / PyTorch    Keras 3 ``GRU``      ONNX ``GRU`` (per direction)
=============  ==================  ===================  ====================================
input          weight_ih (3H, I)   kernel (I, 3H)       W (3H, I)
recurrent      weight_hh (3H, H)   recurrent_kernel     R (3H, H)
                                   (H, 3H)
biases         bias_ih, bias_hh    bias (2, 3H) if      B (6H,) = [Wb; Rb]
               (3H,) each          reset_after, else
                                   (3H,) input only
formulation    reset_after flag    reset_after flag     linear_before_reset = reset_after
=============  ==================  ===================  ====================================

Every conversion below is exact (a copy, a transpose, a block swap) except Keras
``reset_after=False`` export, which folds ``bias_hh`` into Keras's single bias: exact too, since
in that formulation the two biases only ever appear summed.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "GATES",
    "swap_rz",
    "to_spec",
    "from_spec",
    "to_onnx",
    "from_onnx",
    "to_keras",
    "from_keras",
]

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


def swap_rz(t: Tensor, dim: int = 0) -> Tensor:
    """Exchange the first two of the three gate blocks along ``dim`` (size 3H): grukit's
    r, z, n <-> Keras's and ONNX's z, r, h. Its own inverse."""
    H = t.shape[dim] // 3
    rows = torch.cat([torch.arange(H, 2 * H), torch.arange(H), torch.arange(2 * H, 3 * H)])  # z, r, n
    return t.index_select(dim, rows.to(t.device))  # one gather: exporters fold it into the weights


# -- ONNX ``GRU`` ------------------------------------------------------------------------------


def to_onnx(
    weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One grukit layer-direction -> ONNX ``W`` (3H, I), ``R`` (3H, H), ``B`` (6H,) or None.
    ``linear_before_reset`` must be set to the model's ``reset_after``. Leading axes are carried
    along: a layer's directions stacked, ``weight_ih`` (D, 3H, I) etc., give the node's whole
    ``W`` (D, 3H, I), ``R`` (D, 3H, H), ``B`` (D, 6H)."""
    W = swap_rz(weight_ih, -2)  # (..., 3H, I)
    R = swap_rz(weight_hh, -2)  # (..., 3H, H)
    if bias_ih is None:
        return W, R, None
    return W, R, torch.cat([swap_rz(bias_ih, -1), swap_rz(bias_hh, -1)], -1)  # (..., 6H)


def from_onnx(W: Tensor, R: Tensor, B: Tensor | None) -> dict[str, Tensor]:
    """ONNX ``W`` (3H, I), ``R`` (3H, H), ``B`` (6H,) or None -> grukit ``weight_ih``,
    ``weight_hh``, and ``bias_ih``, ``bias_hh`` (zeros when ``B`` is None, ONNX's default)."""
    out = {"weight_ih": swap_rz(W), "weight_hh": swap_rz(R)}
    if B is None:
        B = W.new_zeros(2 * W.shape[0])
    Wb, Rb = B.chunk(2)  # (3H,), (3H,)
    out.update(bias_ih=swap_rz(Wb), bias_hh=swap_rz(Rb))
    return out


# -- Keras 3 ``GRU`` ----------------------------------------------------------------------------


def to_keras(
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    *,
    reset_after: bool,
) -> list[Tensor]:
    """One grukit layer-direction -> Keras ``[kernel (I, 3H), recurrent_kernel (H, 3H)]`` plus
    ``bias``: (2, 3H) = [input; recurrent] with ``reset_after``, else (3H,) with ``bias_hh``
    folded in; no bias when the model has none (Keras ``use_bias=False``)."""
    out = [swap_rz(weight_ih).T, swap_rz(weight_hh).T]
    if bias_ih is None:
        return out
    if reset_after:
        out.append(torch.stack([swap_rz(bias_ih), swap_rz(bias_hh)]))  # (2, 3H)
    else:
        out.append(swap_rz(bias_ih + bias_hh))  # (3H,)
    return out


def from_keras(
    kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None, *, reset_after: bool
) -> dict[str, Tensor]:
    """Keras ``kernel`` (I, 3H), ``recurrent_kernel`` (H, 3H), ``bias`` ((2, 3H) with
    ``reset_after``, else (3H,)) -> grukit parameters (``bias_hh`` zero for a (3H,) bias)."""
    out = {"weight_ih": swap_rz(kernel.T), "weight_hh": swap_rz(recurrent_kernel.T)}
    if bias is None:
        return out
    if reset_after:
        out.update(bias_ih=swap_rz(bias[0]), bias_hh=swap_rz(bias[1]))
    else:
        out.update(bias_ih=swap_rz(bias), bias_hh=torch.zeros_like(bias))
    return out
