"""What the cpu backend's two op families share: loading the kernels, their scratch conventions,
and the variant arguments.

``cpu`` (the plain GRU layer, input projection included) and ``_cpu_variants`` (the recurrence
with layer norm, zoneout or recurrent dropout, given the input projection) both call the kernels
of ``_cpu_kernels`` through ``_cpu_launch``; this module is what both import, so neither imports
the other. Shapes as in ``_cpu_kernels``: T steps, N batch, H hidden.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from grukit.backends import _cpu_args


@functools.lru_cache(maxsize=None)
def kernels():
    from grukit.backends import _cpu_kernels

    return _cpu_kernels


def np_float(dtype: torch.dtype):
    """The NumPy float type the kernels run in for a float32 or float64 tensor's ``dtype``."""
    return np.float32 if dtype == torch.float32 else np.float64


PACKED_ENV = "GRUKIT_CPU_PACKED"  # "0": the recurrent products through plain sgemm, for measuring


def packed_products(dtype, bf16: bool = False) -> bool:
    """Whether the kernels' recurrent products run through MKL's packed GEMM (``_blas``): float32
    calls where PyTorch's library exports it, unless ``GRUKIT_CPU_PACKED=0`` or the call asks for
    bfloat16 products (``bf16``), which take their own path."""
    if dtype != np.float32 or bf16 or os.environ.get(PACKED_ENV) == "0":
        return False
    from grukit.backends import _blas

    return _blas.has_packed_gemm()


LEAN_ENV = "GRUKIT_CPU_LEAN"  # "0": eager inference through the fused kernel too, for measuring


def lean_inference() -> bool:
    """Whether eager inference on one block runs ``_infer_kernel`` (unless ``GRUKIT_CPU_LEAN=0``)."""
    return os.environ.get(LEAN_ENV) != "0"


PROJECT_ENV = "GRUKIT_CPU_PROJECT"  # "0": the whole input projection first, for measuring
# The forward kernel projects its input in chunks of about this many rows (steps x batch), at
# least one step: enough rows for MKL's GEMM to run near its peak (in one-off measurements on an
# Intel core, from 128-256 rows up), few enough for the chunk to stay in cache. Measured against
# projecting every step first (docs/performance.md): a row block of fewer than
# PROJECT_BLOCK_ROWS rows (a step's product each) and a W_ih above PROJECT_MAX_WEIGHT_BYTES
# (read again by every chunk: H = 1024 ran 4-8% slower) project the whole input first.
PROJECT_ROWS = 256
PROJECT_BLOCK_ROWS = 64
PROJECT_MAX_WEIGHT_BYTES = 4 * 1024 * 1024


def projection_chunk(T: int, N: int, rows: int, weight_bytes: int, bf16: bool = False) -> int:
    """Steps per chunk of the input projection that the forward kernel computes itself, for a
    plan whose smallest row block has ``rows`` rows (0: the caller projects all T steps first):
    float32 and float64 calls without bfloat16 products, unless ``GRUKIT_CPU_PROJECT=0``. A
    block with only some of the rows projects them a step at a time, which pays only with at
    least ``PROJECT_BLOCK_ROWS`` rows; and a ``W_ih`` of ``weight_bytes`` above
    ``PROJECT_MAX_WEIGHT_BYTES``, which each chunk would read again, is projected whole."""
    if bf16 or os.environ.get(PROJECT_ENV) == "0" or T == 0 or N == 0:
        return 0
    if weight_bytes > PROJECT_MAX_WEIGHT_BYTES:
        return 0
    if rows < N and rows < PROJECT_BLOCK_ROWS:
        return 0
    return min(T, max(1, -(-PROJECT_ROWS // N)))


@functools.lru_cache(maxsize=None)
def no_projection(dtype) -> dict[str, np.ndarray]:
    """The forward kernel's projection arguments when ``gi`` holds every step's projection."""
    return dict(xin=np.empty((0, 0, 0), dtype), wih=np.empty((0, 0), dtype), bih=np.empty(0, dtype))


def needs_grad(tensors) -> bool:
    """Whether autograd will want a gradient through a call on ``tensors`` (``None`` skipped):
    then the forward saves for the backward."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def saved_per_feature(reset_after: bool, normed: bool = False) -> int:
    """Values the forward saves per step and feature: r, z, n, h_prev (+ W_hn h + b_hn for
    ``reset_after``), then with layer norm the normalised recurrent products of r, z, n."""
    return (5 if reset_after else 4) + (3 if normed else 0)


def lengths_or_full(lengths: Tensor | None, T: int, N: int) -> np.ndarray:
    """Each row's length as the kernels read it, (N,) int64; every row T long without ``lengths``."""
    if lengths is None:
        return np.full(N, T, dtype=np.int64)
    return lengths.to(torch.int64).contiguous().numpy()


class Variants(NamedTuple):
    """The variant arguments the kernels share (``_cpu_args``), each empty when off."""

    rmask: np.ndarray  # (N, H) or (0, 0)
    zm: np.ndarray  # (T, N, H), (1, 1, H) or (0, 0, 0)
    zkey: np.ndarray  # int64 (3,) (k0, k1, thr: zoneout's Philox key, ``_philox``) or (0,)
    zbuf: np.ndarray  # (N, H) with ``zkey``, else (0, 0)
    lng: np.ndarray  # (3H,) or (0,)
    lnb: np.ndarray  # (3H,) or (0,)
    stat: np.ndarray  # (T, N, 2) or (0, 0, 0)
    part: np.ndarray  # (N, B, 2) or (0, 0, 0)


@functools.lru_cache(maxsize=None)
def plain(dtype) -> Variants:
    """Every variant off: empty arrays, which no kernel writes, so one set per dtype serves all."""
    return Variants(
        np.empty((0, 0), dtype),
        np.empty((0, 0, 0), dtype),
        np.empty(0, np.int64),
        np.empty((0, 0), dtype),
        np.empty(0, dtype),
        np.empty(0, dtype),
        np.empty((0, 0, 0), dtype),
        np.empty((0, 0, 0), dtype),
    )


def bf16_bits(t: Tensor) -> np.ndarray:
    """``t`` rounded to bfloat16 (nearest even), as the uint16 bit patterns the kernels read."""
    return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)


@functools.lru_cache(maxsize=None)
def _bf16_off() -> dict[str, np.ndarray]:
    return dict(
        w16=np.empty((0, 0), np.uint16), h16=np.empty((0, 0, 0), np.uint16), rh16=np.empty((0, 0), np.uint16)
    )


def bf16_args(weight_hh: Tensor, hin0: Tensor, on: bool) -> dict[str, np.ndarray]:
    """The forward kernel's bfloat16 arguments (``_cpu_args``): ``W_hh`` (3H, H) in the kernels'
    gate order and the state the first product sees, ``hin0`` (N, H), in bfloat16; every array
    empty (the products in the call's dtype) when not ``on``."""
    if not on:
        return _bf16_off()
    N, H = hin0.shape
    h16 = np.empty((2, N, H), np.uint16)
    h16[0] = bf16_bits(hin0)
    return dict(w16=bf16_bits(weight_hh), h16=h16, rh16=np.zeros((N, H), np.uint16))


def bf16_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x (M, I) @ weight (P, I)^T + bias`` with bfloat16 operands and float32 accumulation and
    result (MKL's ``gemm_bf16bf16f32``), for float32 tensors; (M, P)."""
    M, P = x.shape[0], weight.shape[0]
    out = bias.detach().expand(M, P).contiguous() if bias is not None else x.new_empty(M, P)
    kernels().mm_nt16(bf16_bits(x), bf16_bits(weight), out.numpy(), 0.0 if bias is None else 1.0)
    return out


def probe() -> None:
    """Compile (or load from Numba's cache) one small kernel that calls the BLAS binding, and
    check its result: proves Numba and the binding work without compiling the large kernels,
    which :func:`warm_up` compiles for the dtype and pass that needs them."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.zeros((2, 2), np.float32)
    kernels().mm_nt(a, a, c, 0.0)
    if not np.allclose(c, a @ a.T):
        raise RuntimeError(f"the BLAS binding computed {c.tolist()} for {(a @ a.T).tolist()}")


@functools.lru_cache(maxsize=None)
def warm_up(dtype, kind: str = "forward") -> None:
    """Compile (or load from Numba's cache) the ``kind`` kernel (``"forward"``/``"backward"``)
    for ``dtype`` on one thread, before any multi-threaded launch needs it; each is compiled the
    first time a call needs it (a float32 inference compiles neither a backward pass nor a
    float64 kernel). The variants are arguments of the same specialisation: compiling with
    them on compiles them off too."""
    k = kernels()
    sync = np.zeros(16, np.int64)
    for reset_after in (False, True):
        dims = dict(T=1, N=1, H=1, C=1, B=2, I=1, G=1, kw=saved_per_feature(reset_after, True))
        if kind == "forward":
            fwd = _cpu_args.dummy(
                "forward", dtype, dims, reverse=False, reset_after=reset_after, save=True, packed=False
            )
            fwd.lengths[:] = 1
            fwd.bounds[:] = (0, 1)
            k.forward(*fwd, 0, 1, 0, 1, sync, 1)
        else:
            bwd = _cpu_args.dummy(
                "backward", dtype, dims, reverse=False, reset_after=reset_after, s0=0, s1=1, t_lo=0
            )
            bwd.lengths[:] = 1
            bwd.bounds[:] = (0, 1)
            k.backward(*bwd, 0, 1, 0, 1, sync, 1)


def functorch_active() -> bool:
    """Whether a torch.func transform (grad, vjp, vmap, ...) is running."""
    return torch._C._are_functorch_transforms_active()


def no_zero_grads(ctx, *internal: Tensor) -> None:
    """The saved workspace is an output only so that autograd keeps it; it has no gradient. By
    default autograd would hand the backward a zero tensor of its size (T, N, kw*H) for it, and
    for an unused output or state: filling those took about a tenth of a training call."""
    ctx.mark_non_differentiable(*internal)
    ctx.set_materialize_grads(False)


def no_double_backward(ctx, *grads):
    raise RuntimeError(
        "grukit's cpu backend computes first-order gradients only; for higher-order gradients "
        "use grukit.GRU(..., backend='reference')"
    )
