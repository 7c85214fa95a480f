"""``grukit.GRUCell``: one GRU step with ``torch.nn.GRUCell``'s interface.

Shapes: N batch, I input features, H hidden features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from grukit._layer_options import LayerOptions
from grukit._validate import InputError, check_flag, check_probability, check_size, check_tensor
from grukit.functional import gru_cell

__all__ = ["GRUCell"]


class GRUCell(nn.Module):
    r"""A gated recurrent unit cell, a drop-in for ``torch.nn.GRUCell``::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n  = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     reset_after=False (default, the spec)
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     reset_after=True  (PyTorch)
        h' = (1 - z) * n + z * h

    Inputs: ``input`` (N, I) or (I,), ``hx`` (N, H) or (H,), zeros if omitted. Output: ``h'``,
    shaped like ``hx``. Parameters ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``,
    ``bias_hh`` (3H,), gate blocks r, z, n, initialised U(-1/sqrt(H), 1/sqrt(H)).

    The variants of :class:`grukit.GRU` that apply to one step, keyword-only, default off (their
    equations in ``docs/variants.md``):

    * ``layer_norm=True``: ``W_ih x`` and ``W_hh h`` (for ``reset_after=False`` its r,z rows and
      ``W_hn (r * h)`` separately) layer-normalised before their biases; parameters
      ``layer_norm_{ih,hh}_{weight,bias}`` (3H,), initialised to 1 and 0.
    * ``zoneout=p``: in training each unit keeps ``h`` with probability p (a fresh mask per call
      and sample), in evaluation ``h' = p h + (1 - p) h'``.

    ``recurrent_dropout`` and ``weight_dropout`` are per sequence or per forward pass of a whole
    sequence, which a cell does not see: use them on :class:`grukit.GRU`.
    """

    # registered in __init__ (setattr) when layer_norm is on; declared here for type checkers
    layer_norm_ih_weight: Tensor  # (3H,)
    layer_norm_ih_bias: Tensor  # (3H,)
    layer_norm_hh_weight: Tensor  # (3H,)
    layer_norm_hh_bias: Tensor  # (3H,)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        reset_after: bool = False,
        layer_norm: bool = False,
        zoneout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = check_flag("bias", bias)
        self.reset_after = check_flag("reset_after", reset_after)
        self.layer_norm = check_flag("layer_norm", layer_norm)
        self.zoneout = check_probability("zoneout", zoneout)
        factory = {"device": device, "dtype": dtype}
        H = self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, self.input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H, **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * H, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * H, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        # after the standard parameters, so those draw torch.nn.GRUCell's numbers for a seed
        self._layer_norm_names = (
            [
                "layer_norm_ih_weight",
                "layer_norm_ih_bias",
                "layer_norm_hh_weight",
                "layer_norm_hh_bias",
            ]
            if self.layer_norm
            else []
        )
        for name in self._layer_norm_names:
            setattr(self, name, nn.Parameter(torch.empty(3 * H, **factory)))  # (3H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)), drawn in ``torch.nn.GRUCell``'s order; layer-norm gains 1,
        shifts 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if name not in self._layer_norm_names:
                nn.init.uniform_(weight, -bound, bound)
        for name in self._layer_norm_names:
            param = getattr(self, name)
            nn.init.ones_(param) if "_weight" in name else nn.init.zeros_(param)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        s += f", reset_after={self.reset_after}"
        if self.layer_norm:
            s += ", layer_norm=True"
        return s + (f", zoneout={self.zoneout}" if self.zoneout else "")

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        has_norm = any(k.startswith(prefix + "layer_norm_") for k in state_dict)
        if has_norm != self.layer_norm:
            error_msgs.append(
                f"GRUCell: expected a state dict {'with' if self.layer_norm else 'without'} "
                f"layer-norm parameters (this cell has layer_norm={self.layer_norm}), got one "
                f"{'with' if has_norm else 'without'} them; build the cell with "
                f"layer_norm={has_norm} to load it"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x = check_tensor("input", input, self.weight_ih)
        if x.dim() not in (1, 2):
            raise InputError(f"GRUCell: Expected input to be 1D or 2D, got {x.dim()}D instead")
        if x.shape[-1] != self.input_size:
            raise InputError(
                f"GRUCell: input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {x.shape[-1]}"
            )
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)  # (1, I)
        N, H = x.shape[0], self.hidden_size
        if hx is None:
            h = x.new_zeros(N, H)  # (N, H)
        else:
            check_tensor("hx", hx, self.weight_ih)
            expected = (N, H) if batched else (H,)
            if tuple(hx.shape) != expected:
                raise InputError(
                    f"GRUCell: expected hx of shape {expected} for input of shape "
                    f"{tuple(input.shape)}, got {tuple(hx.shape)}"
                )
            h = hx if batched else hx.unsqueeze(0)  # (N, H)
        options = None
        if self.layer_norm or self.zoneout:
            options = LayerOptions(
                norm_ih=(self.layer_norm_ih_weight, self.layer_norm_ih_bias) if self.layer_norm else None,
                norm_hh=(self.layer_norm_hh_weight, self.layer_norm_hh_bias) if self.layer_norm else None,
                zoneout=self.zoneout,
                # (N, H), 1 keeps h; torch's global generator, as grukit.GRU's masks
                zoneout_mask=torch.empty_like(h).bernoulli_(self.zoneout)
                if self.zoneout and self.training
                else None,
            )
        h_new = gru_cell(
            x,
            h,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            reset_after=self.reset_after,
            options=options,
        )  # (N, H)
        return h_new if batched else h_new.squeeze(0)
