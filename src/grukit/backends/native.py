"""The ``torch`` backend: PyTorch's own GRU kernel (ATen on CPU, cuDNN on CUDA).

Eligible only for ``reset_after=True``, the one formulation PyTorch implements. Chosen by
``backend="auto"`` on CUDA, where cuDNN's fused kernel is the fast path. On CPU ``auto`` chooses it
only where the fused ``cpu`` backend cannot run (no Numba, no BLAS symbols): PyTorch runs about
eleven small kernels per step there, slower than ``cpu`` but far faster than the Python loop of
``reference``.

It has no ``gates`` function (``_VF.gru`` returns only the outputs), so gate inspection of a model
on this backend runs ``reference`` for that pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from grukit.backends import Backend, Request, get, register
from grukit.packing import flip_within


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
    options=None,  # always None: no variants here (Backend.variants is empty)
) -> tuple[Tensor, Tensor]:
    has_bias = bias_ih is not None
    params = [weight_ih, weight_hh] + ([bias_ih, bias_hh] if has_bias else [])
    # ``train``: whether autograd will call the backward. cuDNN's backward refuses a forward run
    # with train=False, and with dropout 0 the flag changes nothing else.
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, h0, *params))
    T = x.shape[0]
    if reverse:
        x = flip_within(x, lengths)  # (T, N, I)
    if lengths is None:
        out, h_n = torch._VF.gru(  # (T, N, H), (1, N, H)
            x, h0.unsqueeze(0), params, has_bias, 1, 0.0, train, False, False
        )
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        hx = h0.index_select(0, packed.sorted_indices).unsqueeze(0)  # (1, N, H) sorted
        data, h_n = torch._VF.gru(packed.data, packed.batch_sizes, hx, params, has_bias, 1, 0.0, train, False)
        out_packed = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        out, _ = pad_packed_sequence(out_packed, total_length=T)  # (T, N, H)
        h_n = h_n.index_select(1, packed.unsorted_indices)  # (1, N, H) caller's order
    if reverse:
        out = flip_within(out, lengths)
    return out, h_n[0]


def _check(request: Request) -> str | None:
    if not request.reset_after:
        return "PyTorch implements only reset_after=True (reset applied after the recurrent product)"
    if request.device.type == "cpu" and request.dtype not in (torch.float32, torch.float64):
        return f"PyTorch's CPU GRU supports float32 and float64, got {request.dtype}"
    return None


def _check_auto(request: Request) -> str | None:
    reason = _check(request)
    if reason is None and request.device.type == "cpu" and get("cpu").check(request) is None:
        return "on CPU chosen automatically only where the fused 'cpu' backend cannot run"
    if reason is None and request.device.type not in ("cpu", "cuda"):
        return f"chosen automatically only on CUDA and CPU, got device {request.device}"
    return reason


BACKEND = register(
    Backend(
        name="torch",
        layer=_layer,
        check=_check,
        priority=10,
        auto_check=_check_auto,
        doc="PyTorch's own GRU kernel (cuDNN on CUDA); reset_after=True only",
    )
)
