"""The ``cpu`` backend: fused GRU sequence kernels, forward and backward, for CPU tensors.

Per layer and direction (see ``docs/performance.md`` for the measurements behind each choice):

1. one matrix product for the input projection of every step, ``gi = x W_ih^T + b_ih`` (torch);
2. a Numba time loop with no Python in it: per step one small GEMM from PyTorch's own BLAS
   (two for ``reset_after=False``, whose reset gate must be known before ``W_hn``) and one fused
   elementwise pass; under ``no_grad`` nothing is stored, in training only ``r, z, n, h_prev``
   (and ``W_hn h_prev + b_hn`` for ``reset_after=True``);
3. the backward loop produces per-step gate gradients and the state gradient; the weight
   gradients are then one large product each, after the loop.

Both passes are registered as ``torch.library`` custom ops (``grukit::gru_layer_forward`` /
``grukit::gru_layer_backward``) with fake implementations, so autograd, ``torch.compile`` and
``torch.export`` see one op; the module calls them through an ``autograd.Function`` with a
separate ``setup_context``, the form ``torch.func`` transforms need. Gradients are first-order
only: a second-order request raises. Under autocast the ops run in float32 (or float64), as
autocast's float32-policy ops do, and the module returns ``torch.nn.GRU``'s output dtype.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from grukit._modes import torch_modes_active
from grukit.backends import (
    Backend,
    Request,
    _bf16,
    _cpu_args,
    _cpu_launch,
    _cpu_pool,
    _cpu_variants,
    get,
    names,
    register,
)
from grukit.backends._cpu_base import (
    bf16_args,
    bf16_linear,
    functorch_active,
    kernels,
    lean_inference,
    lengths_or_full,
    needs_grad,
    no_double_backward,
    no_projection,
    no_zero_grads,
    np_float,
    packed_products,
    plain,
    probe,
    projection_chunk,
    saved_per_feature,
    warm_up,
)

__all__ = [
    "kernels_available",
    "thread_plan",
    "ThreadPlan",
    "gru_layer_forward",
    "gru_layer_backward",
    "empty_cache",
]

_DTYPES = (torch.float32, torch.float64)


_UNKNOWN = object()
_availability: object = _UNKNOWN  # None once the kernels loaded, else the reason they did not


# the builtins that torch.export's non-strict tracing replaces while it runs a model
_REAL_BUILTINS = (builtins.max, builtins.min, math.pow)


@contextlib.contextmanager
def _real_builtins():
    """Run with the real ``max``, ``min`` and ``math.pow``. ``torch.export`` (non-strict) swaps
    them for tensor-aware versions while it traces; Numba, loading its typing tables on its first
    compilation, registers whatever those names hold and fails on the stand-ins, so the first
    model exported before any eager call lost the fused backend for the whole process."""
    now = (builtins.max, builtins.min, math.pow)
    builtins.max, builtins.min, math.pow = _REAL_BUILTINS
    try:
        yield
    finally:
        builtins.max, builtins.min, math.pow = now


def assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` without its cost: dynamo runs ``fn`` at trace
    time and keeps the answer instead of tracing into it. The public decorator imports all of
    ``torch._dynamo`` (1.4 s, nearly half of ``import grukit`` on a 2-core AMD EPYC) just to set
    this attribute; ``tests/test_imports.py`` checks that it still sets exactly this one."""
    fn._dynamo_marked_constant = True
    return fn


# dynamo runs it at trace time and keeps the answer, instead of tracing into Numba
@assume_constant_result
def kernels_available() -> str | None:
    """None if the Numba kernels load (they compile lazily, cached on disk); else why not.
    (A plain module global rather than ``lru_cache``, so ``torch.compile`` traces it cleanly.)"""
    global _availability
    if _availability is _UNKNOWN:
        try:
            with _real_builtins():
                probe()  # compiles (or loads from Numba's cache) a small kernel, proves it works
            _availability = None
        except ImportError as exc:
            _availability = f"Numba is not installed ({exc}); pip install numba"
        except Exception as exc:  # a failed BLAS binding or compilation: reported, not raised
            _availability = f"the Numba kernels could not be loaded: {type(exc).__name__}: {exc}"
    return _availability  # type: ignore[return-value]


@dataclass(frozen=True)
class ThreadPlan:
    """How the cpu backend spreads one layer over threads (see ``_cpu_launch``)."""

    row_blocks: int  # blocks of batch rows, independent of each other
    feature_blocks: int  # blocks of hidden features, meeting at a barrier every step
    launcher: str  # the threads of a multi-block launch: "openmp" (PyTorch's pool) or "python"

    @property
    def threads(self) -> int:
        return self.row_blocks * self.feature_blocks


def thread_plan(T: int, N: int, H: int, dtype: torch.dtype = torch.float32) -> ThreadPlan:
    """The plan the cpu backend uses for one layer of ``T`` steps, batch ``N`` and ``H`` hidden
    features at the current ``torch.get_num_threads()``. Loads the multi-threaded launcher, so a
    later launch pays nothing for it."""
    p = _cpu_launch.plan(
        T, N, H, torch.empty(0, dtype=dtype).element_size(), packed_products(np_float(dtype))
    )
    return ThreadPlan(len(p.rows) - 1, p.parties, _cpu_launch.launcher())


# the backward keeps per-step gate gradients for chunks of at most this many bytes, but at least
# _CHUNK_ROWS rows (steps x batch), so the weight-gradient products of a chunk stay large: each
# reads and writes the whole weight gradient. 16 MiB: since the workspace's zero gradient went
# and large arrays come from a pool, training peak memory stays below torch.nn.GRU's on the whole
# standard grid with it (40 / 43 MB at its closest), and it trains 1-7% faster than 4 MiB
# (scripts/backward_chunks.py; docs/performance.md, 2026-12-08)
_CHUNK_BYTES = 16 * 1024 * 1024
_CHUNK_ROWS = 256


@torch.library.custom_op("grukit::gru_layer_forward", mutates_args=(), device_types="cpu")
def gru_layer_forward(
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    lengths: Tensor | None,
    reset_after: bool,
    reverse: bool,
    save: bool,
    matmul_bf16: bool = False,
    zoneout: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(output (T, N, H), h_n (N, H), workspace (T, N, K) or empty)``. ``matmul_bf16``
    (float32 only): the input projection and the recurrent products take bfloat16 operands,
    accumulating in float32 (``_bf16``). ``zoneout``: evaluation's zoneout,
    ``h_t = p h_{t-1} + (1 - p) h'_t``, for calls that save nothing (this op's backward has no
    zoneout; training and gradients take ``_cpu_variants``)."""
    layer = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reset_after, reverse, save)
    return _forward_impl(*layer, matmul_bf16, zoneout)


def _forward_impl(
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reset_after, reverse, save, matmul_bf16, zoneout
):
    """:func:`gru_layer_forward`'s body, which eager inference calls directly (``_plain_layer``:
    the op's dispatch cost about 25 us a call in a one-off measurement, 2% of a 1000-step call
    at N = 1, H = 64)."""
    if zoneout and save:
        raise RuntimeError("grukit bug: gru_layer_forward's zoneout is for calls without a gradient")
    T, N, I = x.shape
    H = weight_hh.shape[1]
    dt = np_float(x.dtype)
    bf = matmul_bf16 and x.dtype == torch.float32
    packed = packed_products(dt, bf)
    p = _cpu_launch.plan(T, N, H, x.element_size(), packed)
    # (before warm_up: an inference that only ever takes the lean kernel never loads the fused one)
    if not save and not bf and len(p.rows) == 2 and p.parties == 1 and lean_inference():
        weights = (weight_ih, weight_hh, bias_ih, bias_hh)
        return _lean_forward(
            x,
            h0,
            weights,
            lengths=lengths,
            reset_after=reset_after,
            reverse=reverse,
            packed=packed,
            zoneout=zoneout,
        )
    warm_up(dt)
    perm = p.gate_permutation(H)  # each feature block's gate rows together
    if perm is not None:
        weight_ih, weight_hh = weight_ih.index_select(0, perm), weight_hh.index_select(0, perm)
        bias_ih = bias_ih.index_select(0, perm) if bias_ih is not None else None
        bias_hh = bias_hh.index_select(0, perm) if bias_hh is not None else None
    rows = min(b - a for a, b in zip(p.rows, p.rows[1:]))  # the smallest row block
    chunk = projection_chunk(T, N, rows, weight_ih.numel() * x.element_size(), bf)
    if chunk:  # the kernel projects the input itself, chunk by chunk, into this buffer
        gi = x.new_empty(chunk, N, 3 * H)  # (chunk, N, 3H)
        b_ih = bias_ih.detach().contiguous() if bias_ih is not None else x.new_zeros(3 * H)  # (3H,)
        projection = dict(
            xin=x.detach().contiguous().numpy(),
            wih=weight_ih.detach().contiguous().numpy(),
            bih=b_ih.numpy(),
        )
    else:
        x2 = x.reshape(T * N, I)  # (T*N, I)
        if bf:
            gi = bf16_linear(x2, weight_ih, bias_ih)  # (T*N, 3H)
        elif bias_ih is None:
            gi = torch.mm(x2, weight_ih.t())  # (T*N, 3H)
        else:
            gi = torch.addmm(bias_ih, x2, weight_ih.t())  # (T*N, 3H)
        gi = gi.view(T, N, 3 * H)
        projection = no_projection(dt)
    b_hh = bias_hh.contiguous() if bias_hh is not None else x.new_zeros(3 * H)  # (3H,)
    hbuf = x.new_empty(2, N, H)  # (2, N, H): the state, double-buffered
    hbuf[0] = h0
    out = x.new_empty(T, N, H)  # (T, N, H)
    kw = saved_per_feature(reset_after)
    ws = _cpu_pool.empty((T, N, kw, H), x.dtype) if save else x.new_empty(0, 0, 0, 0)
    # the kernel's own scratch never becomes a tensor: NumPy allocates it for a fraction of what
    # a tensor and its .numpy() view cost, which a one-step call pays five times
    scratch = np.empty((N, kw, H), dt)  # per-row gate values when nothing is saved
    gh, rh, ghn = np.zeros((N, 3 * H), dt), np.zeros((N, H), dt), np.zeros((N, H), dt)
    hb = hbuf.numpy()
    args = _cpu_args.ForwardArgs(
        gi=gi.numpy(),
        **projection,
        hbuf=hb,
        w=weight_hh.detach().contiguous().numpy(),
        b=b_hh.detach().numpy(),
        lengths=lengths_or_full(lengths, T, N),
        reverse=reverse,
        reset_after=reset_after,
        save=save,
        packed=packed,
        out=out.numpy(),
        ws=ws.numpy(),
        scratch=scratch,
        gh=gh,
        rh=rh,
        ghn=ghn,
        hin=hb,
        bounds=np.asarray(p.features, dtype=np.int64),
        **_with_zoneout(plain(dt), zoneout)._asdict(),
        **bf16_args(weight_hh, h0, bf),
    )
    _cpu_launch.launch(kernels().forward, p, args)
    return out, hbuf[T % 2].clone(), ws.view(T, N, kw * H) if save else x.new_empty(0, 0, 0)


def _lean_forward(x, h0, weights, *, lengths, reset_after, reverse, packed, zoneout):
    """:func:`_forward_impl` for a call that saves nothing, on one block of the calling thread
    without bfloat16: ``_infer_kernel.forward``, whose lean loop and short argument list cost
    less than the fused kernel's (docs/performance.md). Returns the same triple (an empty
    workspace). ``weights``: ``(weight_ih, weight_hh, bias_ih, bias_hh)``, biases possibly None."""
    from grukit.backends import _infer_kernel

    weight_ih, weight_hh, bias_ih, bias_hh = weights
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    h = h0.detach().clone(memory_format=torch.contiguous_format)  # (N, H), becomes h_n
    out = x.new_empty(T, N, H)  # (T, N, H)

    def arr(t: Tensor | None, size: int) -> np.ndarray:  # a bias, zeros where absent
        return np.zeros(size, np_float(x.dtype)) if t is None else t.detach().contiguous().numpy()

    args = _infer_kernel.Args(
        x=x.detach().contiguous().numpy(),
        wih=weight_ih.detach().contiguous().numpy(),
        bih=arr(bias_ih, 3 * H),
        w=weight_hh.detach().contiguous().numpy(),
        b=arr(bias_hh, 3 * H),
        h=h.numpy(),
        out=out.numpy(),
        lengths=lengths_or_full(lengths, T, N),
        reverse=bool(reverse),
        reset_after=bool(reset_after),
        packed=bool(packed),
        zp=float(zoneout),
        # the fused kernel's chunks (the same products, so the same bits), or all T steps at once
        C=projection_chunk(T, N, N, weight_ih.numel() * x.element_size()) or T,
    )
    with _cpu_launch.sequential_products(N):
        _infer_kernel.forward(*args)
    return out, h, x.new_empty(0, 0, 0)


def _with_zoneout(v, zoneout: float):
    """The variant arguments ``v`` with evaluation's zoneout p, (1, 1, 1), when p > 0."""
    return v if not zoneout else v._replace(zm=np.full((1, 1, 1), zoneout, v.zm.dtype))


@gru_layer_forward.register_fake
def _(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reset_after, reverse, save, *_products_zoneout):
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    ws = x.new_empty(T, N, saved_per_feature(reset_after) * H) if save else x.new_empty(0, 0, 0)
    return x.new_empty(T, N, H), h0.new_empty(N, H), ws


@torch.library.custom_op("grukit::gru_layer_backward", mutates_args=(), device_types="cpu")
def gru_layer_backward(
    grad_out: Tensor,
    grad_hn: Tensor,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    lengths: Tensor | None,
    ws: Tensor,
    reset_after: bool,
    reverse: bool,
    input_grad: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dh0, dW_ih, dW_hh, db_ih, db_hh)``; ``dx`` empty (0, 0, 0) without ``input_grad``
    (the layer's input needs none: a network's data), which saves its product and memory."""
    T, N, I = x.shape
    H = weight_hh.shape[1]
    # the forward's plan (the same rows-or-features choice; its products need not be packed)
    p = _cpu_launch.plan(T, N, H, x.element_size(), packed_products(np_float(x.dtype)))
    perm = p.gate_permutation(H)
    w_hh = weight_hh.index_select(0, perm) if perm is not None else weight_hh
    dh = grad_hn.clone(memory_format=torch.contiguous_format)  # (N, H), becomes dh0
    kw = saved_per_feature(reset_after)
    # the loop runs in chunks of C steps; after each, the chunk's gradients are reduced into the
    # weight gradients, so the per-step gate gradients never exist for all T steps at once
    C = max(1, min(T, max(_CHUNK_BYTES // max(1, N * 4 * H * x.element_size()), -(-_CHUNK_ROWS // N))))
    dgi = x.new_empty(C, N, 3 * H)  # (C, N, 3H), permuted gate rows
    dghn = x.new_empty(C, N, H) if reset_after else x.new_empty(0, 0, 0)  # (C, N, H)
    dx = x.new_empty(T, N, I) if input_grad else x.new_empty(0, 0, 0)
    # The weight gradients accumulate in the parameters' own row order: each feature block's
    # gate columns of ``dgi`` go straight to their rows, so no permuted copy of W_ih and no
    # permuted accumulators (each 3H x I or 3H x H) exist beside the results (``Plan.gate_rows``)
    rows = p.gate_rows(H)
    dw_ih, db_ih = x.new_zeros(3 * H, I), x.new_zeros(3 * H)
    dw_hh = x.new_zeros(3 * H, H)
    db_hn = x.new_zeros(H)  # reset_after: b_hn's gradient, which differs from b_in's
    saved = ws.view(T, N, kw, H)
    args = _cpu_args.BackwardArgs(
        dout=grad_out.contiguous().numpy(),
        dh=dh.numpy(),
        w=w_hh.detach().contiguous().numpy(),
        lengths=lengths_or_full(lengths, T, N),
        reverse=reverse,
        reset_after=reset_after,
        ws=saved.numpy(),
        dgi=dgi.numpy(),
        dghn=dghn.numpy(),
        ghbuf=x.new_zeros(2, N, 3 * H).numpy(),
        drh=x.new_zeros(N, H).numpy(),
        dhd=x.new_zeros(N, H).numpy(),
        bounds=np.asarray(p.features, dtype=np.int64),
        s0=0,
        s1=0,
        t_lo=0,
        **_plain_backward(x),
    )
    warm_up(np_float(x.dtype), "backward")
    for s0 in range(0, T, C):
        s1 = min(T, s0 + C)
        t_lo, t_hi = (s0, s1) if reverse else (T - s1, T - s0)
        _cpu_launch.launch(kernels().backward, p, args._replace(s0=s0, s1=s1, t_lo=t_lo))
        n = (t_hi - t_lo) * N
        g = dgi[: t_hi - t_lo].view(n, 3 * H)  # (n, 3H), permuted gate columns
        chunk = saved[t_lo:t_hi].view(n, kw, H)
        h_prev = chunk[:, 3]  # (n, H), a strided view of the workspace
        x_c = x[t_lo:t_hi].reshape(n, I)  # (n, I)
        rh = None if reset_after else chunk[:, 0] * h_prev  # (n, H) = r * h_prev
        for k, (cols, nat, n_rows) in enumerate(rows):
            g_k = g[:, cols]  # (n, rows of this piece)
            if input_grad:
                dx_c = dx[t_lo:t_hi].view(n, I)
                if k == 0:
                    torch.mm(g_k, weight_ih[nat], out=dx_c)
                else:
                    dx_c.addmm_(g_k, weight_ih[nat])
            dw_ih[nat].addmm_(g_k.t(), x_c)
            db_ih[nat] += g_k.sum(0)
            if not n_rows:
                dw_hh[nat].addmm_(g_k.t(), h_prev)  # W_hr, W_hz act on h_prev
            elif rh is not None:
                dw_hh[nat].addmm_(g_k.t(), rh)  # W_hn acts on r * h_prev
        if reset_after:
            gn = dghn[: t_hi - t_lo].view(n, H)
            dw_hh[2 * H :].addmm_(gn.t(), h_prev)  # W_hn acts on h_prev (scaled by r after)
            db_hn += gn.sum(0)
    db_hh = db_ih.clone()  # b_h* enter exactly where b_i* do, except b_hn after the reset
    if reset_after:
        db_hh[2 * H :] = db_hn
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def _plain_backward(x: Tensor) -> dict:
    v = plain(np_float(x.dtype))
    return dict(
        rmask=v.rmask,
        zm=v.zm,
        zkey=v.zkey,
        zbuf=v.zbuf,
        lng=v.lng,
        stat=v.stat,
        dgr=v.zm,
        dhr=v.rmask,
        lnacc=v.zm,
        part=v.part,
    )


@gru_layer_backward.register_fake
def _(grad_out, grad_hn, x, weight_ih, weight_hh, lengths, ws, reset_after, reverse, input_grad=True):
    H3 = weight_hh.shape[0]
    return (
        torch.empty_like(x) if input_grad else x.new_empty(0, 0, 0),
        torch.empty_like(grad_hn),
        torch.empty_like(weight_ih),
        torch.empty_like(weight_hh),
        x.new_empty(H3),
        x.new_empty(H3),
    )


def _setup_context(ctx, inputs, output):
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reset_after, reverse, *_ = inputs
    ctx.reset_after, ctx.reverse, ctx.has_bias = reset_after, reverse, bias_ih is not None
    ctx.save_for_backward(x, weight_ih, weight_hh, lengths, output[2])
    no_zero_grads(ctx, output[2])


def _backward(ctx, grad_out, grad_hn, _grad_ws):
    x, weight_ih, weight_hh, lengths, ws = ctx.saved_tensors
    if ws.numel() == 0:
        raise RuntimeError("grukit cpu backend: the forward pass ran without saving for backward")
    if grad_out is None:
        grad_out = x.new_zeros(x.shape[0], x.shape[1], weight_hh.shape[1])
    if grad_hn is None:
        grad_hn = x.new_zeros(x.shape[1], weight_hh.shape[1])
    input_grad = ctx.needs_input_grad[0]
    args = (grad_out, grad_hn, x, weight_ih, weight_hh, lengths, ws, ctx.reset_after, ctx.reverse, input_grad)
    # as in the forward (``_layer``): the autograd.Function only where torch.func needs it
    backward = _LayerBackward.apply if functorch_active() else gru_layer_backward
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward(*args)
    if not ctx.has_bias:
        db_ih = db_hh = None
    if not input_grad:
        dx = None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None, None


# for direct calls of torch.ops.grukit.gru_layer_forward
gru_layer_forward.register_autograd(_backward, setup_context=_setup_context)


gru_layer_backward.register_autograd(no_double_backward, setup_context=lambda ctx, inputs, output: None)


# Under autocast the ops run as autocast's float32-policy ops: floating inputs other than float64
# are cast to float32 and the body (whose torch products would otherwise be cast to bfloat16)
# runs with autocast off.
for _op in (gru_layer_forward, gru_layer_backward):
    torch.library.register_autocast(_op, "cpu", torch.float32)


class _Layer(torch.autograd.Function):
    """The same op and backward, as an ``autograd.Function`` with a separate ``setup_context``.

    What ``register_autograd`` generates has a ``forward(ctx, ...)`` only, which ``torch.func``
    transforms refuse ("must override the setup_context staticmethod", PyTorch issues 168393
    and 179652); this form works under ``torch.func.grad`` as under ordinary autograd, and
    ``torch.compile`` and ``torch.export`` still see the custom ops."""

    @staticmethod
    def forward(*args):  # gru_layer_forward's arguments
        return gru_layer_forward(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


class _LayerBackward(torch.autograd.Function):
    """``gru_layer_backward`` whose own backward (a second-order gradient) raises clearly, in the
    form ``torch.func`` accepts (see ``_Layer``)."""

    @staticmethod
    def forward(
        grad_out, grad_hn, x, weight_ih, weight_hh, lengths, ws, reset_after, reverse, input_grad=True
    ):
        return gru_layer_backward(
            grad_out, grad_hn, x, weight_ih, weight_hh, lengths, ws, reset_after, reverse, input_grad
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(no_double_backward)


def _plain_layer(
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after, reverse, lengths, bf16=False, zoneout=0.0
):
    save = needs_grad((x, h0, weight_ih, weight_hh, bias_ih, bias_hh))
    args = (
        x.contiguous(),
        h0.contiguous(),
        weight_ih.contiguous(),
        weight_hh.contiguous(),
        bias_ih,
        bias_hh,
        lengths,
        reset_after,
        reverse,
        save,
        bf16,
        zoneout,
    )
    # The op itself (its autograd is registered with it) except under torch.func's transforms,
    # which refuse that autograd and need the autograd.Function: its apply binds the arguments
    # through inspect.signature on every call, about 80 us, more than a small layer's whole run.
    if save and functorch_active():
        out, h_n, _ = _Layer.apply(*args)
    elif not save and not torch_modes_active():  # eager inference: no op dispatch
        out, h_n, _ = _forward_impl(*args)
    else:
        out, h_n, _ = gru_layer_forward(*args)
    return out, h_n


def _evaluation_zoneout(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, options) -> float:
    """Evaluation's zoneout p where it is the call's only variant and nothing needs a gradient:
    the plain op runs it (with its input projection in the kernel) instead of the variants'
    op; else 0."""
    if options is None or not options.zoneout:
        return 0.0
    if options.zoneout_mask is not None or options.zoneout_key is not None:
        return 0.0
    if options.norm_ih is not None or options.norm_hh is not None or options.recurrent_mask is not None:
        return 0.0
    if needs_grad((x, h0, weight_ih, weight_hh, bias_ih, bias_hh)):
        return 0.0
    return float(options.zoneout)


def _autocast_inputs(x, h0, weight_ih):
    """Under autocast the kernels, which have no bfloat16 or float16 variant, run in the
    parameters' dtype; the outputs take the dtype torch.nn.GRU's take there (its state update
    promotes the state's dtype with autocast's), so code around a grukit.GRU sees no difference.
    Returns ``x`` and ``h0`` in the parameters' dtype and that output dtype (None: unchanged)."""
    if torch.is_autocast_enabled("cpu") and (x.dtype, h0.dtype) != (weight_ih.dtype,) * 2:
        out_dtype = torch.promote_types(h0.dtype, torch.get_autocast_dtype("cpu"))
        return x.to(weight_ih.dtype), h0.to(weight_ih.dtype), out_dtype
    return x, h0, None


def _bf16_products(weight_ih: Tensor, options) -> bool:
    """Whether this float32 layer's products run in bfloat16: asked for by the module's
    ``matmul_dtype`` or by bfloat16 autocast, and honoured here (``_bf16.enabled``)."""
    if weight_ih.dtype != torch.float32:
        return False
    asked = (options is not None and options.matmul_dtype == torch.bfloat16) or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )
    return asked and _bf16.enabled()


def _layer(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after, reverse, lengths, options=None):
    bf16 = _bf16_products(weight_ih, options)
    x, h0, out_dtype = _autocast_inputs(x, h0, weight_ih)
    # evaluation's zoneout alone, with no gradient to compute, runs in the plain op
    zoneout = _evaluation_zoneout(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, options)
    if not zoneout and options is not None and options.any_variant:  # layer norm, zoneout, dropout
        out, h_n = _cpu_variants.layer(
            x,
            h0,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            reset_after=reset_after,
            reverse=reverse,
            lengths=lengths,
            options=options,
            bf16=bf16,
        )
    else:
        out, h_n = _plain_layer(
            x,
            h0,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            reset_after=reset_after,
            reverse=reverse,
            lengths=lengths,
            bf16=bf16,
            zoneout=zoneout,
        )
    if out_dtype is not None:
        out, h_n = out.to(out_dtype), h_n.to(out_dtype)
    return out, h_n


@torch.no_grad()
def _gates(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after, reverse, lengths, options=None):
    """The layer as ``_layer`` computes it, with its gate values ``(T, N, 3, H)`` (r, z, n; zero
    past a sequence's end): the values the kernels save for the backward."""
    bf16 = _bf16_products(weight_ih, options)
    x, h0, out_dtype = _autocast_inputs(x, h0, weight_ih)
    if options is not None and options.any_variant:
        out, h_n, gates = _cpu_variants.layer(
            x,
            h0,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            reset_after=reset_after,
            reverse=reverse,
            lengths=lengths,
            options=options,
            gates=True,
            bf16=bf16,
        )
    else:
        T, N, _ = x.shape
        H = weight_hh.shape[1]
        out, h_n, ws = gru_layer_forward(
            x.contiguous(),
            h0.contiguous(),
            weight_ih.contiguous(),
            weight_hh.contiguous(),
            bias_ih,
            bias_hh,
            lengths,
            reset_after,
            reverse,
            True,
            bf16,
        )
        gates = ws.view(T, N, saved_per_feature(reset_after), H)[:, :, :3]
    if out_dtype is not None:
        out, h_n = out.to(out_dtype), h_n.to(out_dtype)
    return out, h_n, gates.clone()  # (T, N, 3, H), not a view of the workspace


def _check(request: Request) -> str | None:
    if request.device.type != "cpu":
        return f"runs on CPU tensors only, got device {request.device}"
    if request.dtype not in _DTYPES:
        return f"supports float32 and float64, got {request.dtype}"
    return kernels_available()


_warned = False


def _check_auto(request: Request) -> str | None:
    global _warned
    reason = _check(request)
    if reason is not None and reason == kernels_available() and not _warned:
        _warned = True
        fallback = next(
            (name for name in names() if name != "cpu" and get(name).auto_reason(request) is None),
            None,
        )
        warnings.warn(
            f"grukit: the fused cpu backend is unavailable, falling back to {fallback!r}: "
            f"{reason} (CPU fallbacks: 'torch', PyTorch's own GRU, for reset_after=True; "
            "'reference', a Python loop, for reset_after=False)",
            RuntimeWarning,
            stacklevel=4,
        )
    return reason


BACKEND = register(
    Backend(
        name="cpu",
        layer=_layer,
        check=_check,
        priority=20,
        auto_check=_check_auto,
        doc="fused Numba sequence kernels on PyTorch's BLAS; CPU, float32/float64, both formulations",
        variants=frozenset({"layer_norm", "zoneout", "recurrent_dropout", "matmul_dtype"}),
        gates=_gates,
    )
)


def empty_cache() -> None:
    """Free the training workspaces' memory this backend keeps for reuse (``_cpu_pool``: arrays
    over 32 MiB, which glibc would otherwise map and page-fault in afresh at every call); blocks
    still in use come back to the pool when their tensors go."""
    _cpu_pool.release()
