"""``grukit.GRUCell``: one GRU step with ``torch.nn.GRUCell``'s interface.

Shapes: N batch, I input features, H hidden features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from grukit._validate import InputError, check_flag, check_size, check_tensor
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
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        reset_after: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = check_flag("bias", bias)
        self.reset_after = check_flag("reset_after", reset_after)
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)), drawn in ``torch.nn.GRUCell``'s order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s + f", reset_after={self.reset_after}"

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
        h_new = gru_cell(
            x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
            reset_after=self.reset_after,
        )  # (N, H)
        return h_new if batched else h_new.squeeze(0)
