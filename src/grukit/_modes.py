"""Whether torch is running anything that must see grukit's ops as ops.

grukit's eager fast paths call its kernels directly, skipping the custom op's dispatch (the
streaming kernel for short calls, ``GRU._short_call`` / ``GRU._lane_call``; the fused forward
without a gradient, ``backends.cpu._plain_layer``). They may only do so when nothing is watching
or transforming the call: no tracing or compiling, no dispatch or function mode (fake tensors,
``torch.export``, FLOP counters, ``torch.device`` contexts), no ``torch.func`` transform, no
forward-mode AD and no autocast, whose policy the ops register. Asked on every call, so it reads
torch's flags directly (``torch._C``: about half the cost of the public wrappers)."""

from __future__ import annotations

import torch

__all__ = ["torch_modes_active"]


def torch_modes_active() -> bool:
    C = torch._C
    return (
        torch.compiler.is_compiling()  # first: under dynamo it is a constant, and the rest untraceable
        or C._is_tracing()
        or C._len_torch_dispatch_stack() > 0
        or C._len_torch_function_stack() > 0
        or C._are_functorch_transforms_active()
        or torch.autograd.forward_ad._current_level >= 0
        or C._is_any_autocast_enabled()
    )
