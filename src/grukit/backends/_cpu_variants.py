"""The ``cpu`` backend's GRU variants: layer norm, zoneout and recurrent dropout in the fused
kernels (equations: ``grukit.functional`` and ``docs/variants.md``).

Per layer and direction:

1. the input projection in torch, ``gi = W_ih x + b_ih`` or, with layer norm,
   ``LN(W_ih x; g_ih, c_ih) + b_ih`` (one large product and one normalisation over all steps;
   autograd differentiates it);
2. the recurrence in the same Numba kernels as the plain GRU, with the variants as arguments
   (``_cpu_args``): the recurrent product sees ``h * mask`` under recurrent dropout, the new state
   is mixed with the old one by the zoneout mask (or ``p`` in evaluation), and the recurrent
   products are layer-normalised per row and step before ``b_hh``;
3. its backward in the same kernels; the weight gradients, the layer norm's gain and shift
   gradients are products and sums after the loop.

The recurrence is a ``torch.library`` custom op pair (``grukit::gru_recurrence_forward`` /
``_backward``), like the plain layer's, so autograd, ``torch.compile`` and ``torch.export`` see
one op. Masks are inputs (drawn by the module), never drawn here.
Shapes: T steps, N batch, I input features, H hidden.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from grukit._layer_options import LAYER_NORM_EPS, LayerOptions
from grukit._modes import torch_modes_active
from grukit.backends import _cpu_args, _cpu_launch, _cpu_pool
from grukit.backends._cpu_base import (
    Variants,
    bf16_args,
    bf16_linear,
    functorch_active,
    kernels,
    lengths_or_full,
    needs_grad,
    no_double_backward,
    no_projection,
    no_zero_grads,
    np_float,
    packed_products,
    saved_per_feature,
    warm_up,
)

__all__ = ["layer", "gru_recurrence_forward", "gru_recurrence_backward"]


def _variants(
    like: Tensor,
    T: int,
    H: int,
    *,
    norm: tuple[Tensor | None, Tensor | None],
    recurrent_mask: Tensor | None,
    zoneout_mask: Tensor | None,
    zoneout_key: Tensor | None,
    zoneout: float,
    stat: bool,
    blocks: int,
    forward: bool,
) -> tuple[Variants, list[Tensor]]:
    """The kernels' variant arrays (and the tensors that own their memory, kept alive); the
    layer norm's gain and shift already in the plan's gate order. ``stat``: allocate the layer
    norm's per-row statistics (the forward's output); ``blocks``: the plan's feature blocks;
    ``forward``: for the forward kernel (evaluation zoneout as p alone) or the backward."""
    N = like.shape[1] if like.dim() == 3 else like.shape[0]
    keep: list[Tensor] = []

    def arr(t: Tensor) -> np.ndarray:
        t = t.detach().to(like.dtype).contiguous()
        keep.append(t)
        return t.numpy()

    empty = {k: like.new_empty((0,) * d) for k, d in (("rmask", 2), ("zm", 3), ("ln", 1), ("stat", 3))}
    keyed = zoneout_key is not None
    if zoneout_mask is not None:
        zm = zoneout_mask  # (T, N, H)
    elif zoneout and not keyed:  # evaluation: the forward takes p alone, the backward one p per feature
        zm = like.new_full((1, 1, 1 if forward else H), zoneout)
    else:
        zm = empty["zm"]
    g, c = norm
    v = Variants(
        rmask=arr(recurrent_mask if recurrent_mask is not None else empty["rmask"]),
        zm=arr(zm),
        zkey=zoneout_key.numpy() if keyed else np.empty(0, np.int64),
        zbuf=arr(like.new_empty(N, H) if keyed else empty["rmask"]),
        lng=arr(g if g is not None else empty["ln"]),
        lnb=arr(c if c is not None else empty["ln"]),
        stat=arr(like.new_zeros(T, N, 2) if stat else empty["stat"]),  # defined everywhere
        part=arr(like.new_zeros(N, blocks + 1, 2) if g is not None else empty["stat"]),
    )
    return v, keep


@torch.library.custom_op("grukit::gru_recurrence_forward", mutates_args=(), device_types="cpu")
def gru_recurrence_forward(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    lengths: Tensor | None,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    recurrent_mask: Tensor | None,
    zoneout_mask: Tensor | None,
    zoneout_key: Tensor | None,
    zoneout: float,
    reset_after: bool,
    reverse: bool,
    save: bool,
    features: list[int],
    matmul_bf16: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``gi`` (T, N, 3H): the input projections, biases included. Every 3H dimension (``gi``,
    ``weight_hh``'s rows, ``bias_hh``, the layer norm's) is in the gate order of the feature
    blocks ``features`` (``_cpu_launch.Plan.gate_permutation``): the caller permutes its small
    parameters so that nothing of size T*N*3H is ever permuted. Returns ``(output (T, N, H),
    h_n (N, H), workspace (T, N, kw*H) or empty, layer-norm 1/std (T, N, 2) or empty)``, states
    in the natural order. Zoneout in training: ``zoneout_mask`` (T, N, H), or the
    ``zoneout_key`` int64 (3,) from which the kernels compute it (``_philox``). ``matmul_bf16`` (float32 only): the recurrent products take bfloat16
    operands, accumulating in float32."""
    T, N, _ = gi.shape
    H = weight_hh.shape[1]
    normed = norm_weight is not None
    warm_up(np_float(gi.dtype))
    packed = packed_products(np_float(gi.dtype), matmul_bf16)
    p = _cpu_launch.plan_for(features, T, N, H, gi.element_size(), packed)
    gi = gi.contiguous()  # (T, N, 3H), block gate order
    b_hh = bias_hh.contiguous() if bias_hh is not None else gi.new_zeros(3 * H)  # (3H,)
    hbuf = gi.new_empty(2, N, H)  # (2, N, H): the state, double-buffered
    hbuf[0] = h0
    if recurrent_mask is not None:
        hin = gi.new_empty(2, N, H)  # (2, N, H): the state as the recurrent products see it
        hin[0] = h0 * recurrent_mask
    else:
        hin = hbuf
    v, keep = _variants(
        gi,
        T,
        H,
        norm=(norm_weight, norm_bias),
        recurrent_mask=recurrent_mask,
        zoneout_mask=zoneout_mask,
        zoneout_key=zoneout_key,
        zoneout=zoneout,
        stat=normed,
        blocks=p.parties,
        forward=True,
    )
    out = gi.new_empty(T, N, H)  # (T, N, H)
    kw = saved_per_feature(reset_after, normed)
    ws = _cpu_pool.empty((T, N, kw, H), gi.dtype) if save else gi.new_empty(0, 0, 0, 0)
    args = _cpu_args.ForwardArgs(
        gi=gi.numpy(),
        **no_projection(np_float(gi.dtype)),
        hbuf=hbuf.numpy(),
        w=weight_hh.detach().contiguous().numpy(),
        b=b_hh.detach().numpy(),
        lengths=lengths_or_full(lengths, T, N),
        reverse=reverse,
        reset_after=reset_after,
        save=save,
        packed=packed,
        out=out.numpy(),
        ws=ws.numpy(),
        scratch=gi.new_empty(N, kw, H).numpy(),
        gh=gi.new_zeros(N, 3 * H).numpy(),
        rh=gi.new_zeros(N, H).numpy(),
        ghn=gi.new_zeros(N, H).numpy(),
        hin=hin.numpy(),
        bounds=np.asarray(p.features, dtype=np.int64),
        **v._asdict(),
        **bf16_args(weight_hh, hin[0], matmul_bf16 and gi.dtype == torch.float32),
    )
    _cpu_launch.launch(kernels().forward, p, args)
    stat = torch.from_numpy(v.stat) if normed else gi.new_empty(0, 0, 0)
    ws = ws.view(T, N, kw * H) if save else gi.new_empty(0, 0, 0)
    del keep
    return out, hbuf[T % 2].clone(), ws, stat


@gru_recurrence_forward.register_fake
def _(
    gi,
    h0,
    weight_hh,
    bias_hh,
    lengths,
    norm_weight,
    norm_bias,
    recurrent_mask,
    zoneout_mask,
    zoneout_key,
    zoneout,
    reset_after,
    reverse,
    save,
    features,
    matmul_bf16=False,
):
    T, N, _ = gi.shape
    H = weight_hh.shape[1]
    normed = norm_weight is not None
    kw = saved_per_feature(reset_after, normed)
    ws = gi.new_empty(T, N, kw * H) if save else gi.new_empty(0, 0, 0)
    stat = gi.new_empty(T, N, 2) if normed else gi.new_empty(0, 0, 0)
    return gi.new_empty(T, N, H), h0.new_empty(N, H), ws, stat


@torch.library.custom_op("grukit::gru_recurrence_backward", mutates_args=(), device_types="cpu")
def gru_recurrence_backward(
    grad_out: Tensor,
    grad_hn: Tensor,
    weight_hh: Tensor,
    lengths: Tensor | None,
    norm_weight: Tensor | None,
    recurrent_mask: Tensor | None,
    zoneout_mask: Tensor | None,
    zoneout_key: Tensor | None,
    zoneout: float,
    ws: Tensor,
    stat: Tensor,
    reset_after: bool,
    reverse: bool,
    features: list[int],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dgi (T, N, 3H), dh0, dW_hh, db_hh, d norm_weight, d norm_bias)`` (the last two empty
    without layer norm), every 3H dimension in the forward's block gate order."""
    T, N, H = grad_out.shape
    normed = norm_weight is not None
    masked = recurrent_mask is not None
    p = _cpu_launch.plan_for(
        features, T, N, H, grad_out.element_size(), packed_products(np_float(grad_out.dtype))
    )
    x = grad_out  # (T, N, H), whose dtype the buffers take
    dh = grad_hn.clone(memory_format=torch.contiguous_format)  # (N, H), becomes dh0
    kw = saved_per_feature(reset_after, normed)
    saved = ws.view(T, N, kw, H)
    v, keep = _variants(
        x,
        T,
        H,
        norm=(norm_weight, None),
        recurrent_mask=recurrent_mask,
        zoneout_mask=zoneout_mask,
        zoneout_key=zoneout_key,
        zoneout=zoneout,
        stat=False,
        blocks=p.parties,
        forward=False,
    )
    dgi = _cpu_pool.empty((T, N, 3 * H), x.dtype)  # (T, N, 3H), block gate order
    dghn = x.new_empty(T, N, H) if reset_after else x.new_empty(0, 0, 0)  # (T, N, H)
    dgr = _cpu_pool.empty((T, N, 3 * H), x.dtype) if normed else x.new_empty(0, 0, 0)  # (T, N, 3H), the same
    dhr = x.new_zeros(N, H) if masked else x.new_empty(0, 0)
    lnacc = x.new_zeros(2, N, 3 * H) if normed else x.new_empty(0, 0, 0)  # (2, N, 3H)
    args = _cpu_args.BackwardArgs(
        dout=grad_out.contiguous().numpy(),
        dh=dh.numpy(),
        w=weight_hh.detach().contiguous().numpy(),
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
        s1=T,
        t_lo=0,
        rmask=v.rmask,
        zm=v.zm,
        zkey=v.zkey,
        zbuf=v.zbuf,
        lng=v.lng,
        stat=stat.contiguous().numpy() if normed else v.stat,
        dgr=dgr.numpy(),
        dhr=dhr.numpy(),
        lnacc=lnacc.numpy(),
        part=v.part,
    )
    warm_up(np_float(x.dtype), "backward")
    _cpu_launch.launch(kernels().backward, p, args)
    del keep
    n = T * N
    g = dgi.view(n, 3 * H)  # (n, 3H)
    rows = saved.view(n, kw, H)
    h_in = rows[:, 3]  # (n, H): h_prev, or h_prev * mask, as the recurrent products saw it
    if masked:
        h_in = (saved[:, :, 3] * recurrent_mask).view(n, H)
    rh = None if reset_after else rows[:, 0] * h_in  # (n, H): r * h, what W_hn multiplies
    dw_hh = x.new_empty(3 * H, H)  # block gate order, like weight_hh
    # the layer norm's gain and shift gradients were summed per row by the kernel; b_hh enters
    # where the shift does, so its gradient is the shift's
    d_gain, d_shift = (lnacc[0].sum(0), lnacc[1].sum(0)) if normed else (x.new_empty(0), x.new_empty(0))
    gr = dgr.view(n, 3 * H) if normed else g  # dL/d(the recurrent products)
    db_hh = d_shift.clone() if normed else x.new_empty(3 * H)
    for rz, nn, feats in p.gate_blocks():  # per feature block: its r,z rows, then its n rows
        torch.mm(gr[:, rz].t(), h_in, out=dw_hh[rz])  # W_hr, W_hz act on h
        if reset_after and not normed:  # dL/d(W_hn h + b_hn), kept apart by the kernel
            gn = dghn.view(n, H)[:, feats]
            torch.mm(gn.t(), h_in, out=dw_hh[nn])
            db_hh[rz], db_hh[nn] = g[:, rz].sum(0), gn.sum(0)
        else:
            torch.mm(gr[:, nn].t(), h_in if reset_after else rh, out=dw_hh[nn])  # W_hn on r * h
            if not normed:
                db_hh[rz], db_hh[nn] = g[:, rz].sum(0), g[:, nn].sum(0)
    return dgi, dh, dw_hh, db_hh, d_gain, d_shift


@gru_recurrence_backward.register_fake
def _(
    grad_out,
    grad_hn,
    weight_hh,
    lengths,
    norm_weight,
    recurrent_mask,
    zoneout_mask,
    zoneout_key,
    zoneout,
    ws,
    stat,
    reset_after,
    reverse,
    features,
):
    T, N, H = grad_out.shape
    ln = 3 * H if norm_weight is not None else 0
    return (
        grad_out.new_empty(T, N, 3 * H),
        torch.empty_like(grad_hn),
        torch.empty_like(weight_hh),
        grad_out.new_empty(3 * H),
        grad_out.new_empty(ln),
        grad_out.new_empty(ln),
    )


def _setup_context(ctx, inputs, output):
    (
        gi,
        h0,
        weight_hh,
        bias_hh,
        lengths,
        norm_weight,
        norm_bias,
        recurrent_mask,
        zoneout_mask,
        zoneout_key,
        zoneout,
        reset_after,
        reverse,
        save,
        features,
        *_,
    ) = inputs
    ctx.zoneout, ctx.reset_after, ctx.reverse, ctx.features = zoneout, reset_after, reverse, features
    ctx.has_bias, ctx.normed = bias_hh is not None, norm_weight is not None
    saved = (weight_hh, lengths, norm_weight, recurrent_mask, zoneout_mask, zoneout_key)
    ctx.save_for_backward(*saved, output[2], output[3])
    no_zero_grads(ctx, output[2], output[3])


def _backward(ctx, grad_out, grad_hn, _grad_ws, _grad_stat):
    weight_hh, lengths, norm_weight, recurrent_mask, zoneout_mask, zoneout_key, ws, stat = ctx.saved_tensors
    if ws.numel() == 0:
        raise RuntimeError("grukit cpu backend: the forward pass ran without saving for backward")
    T, N = ws.shape[0], ws.shape[1]
    H = weight_hh.shape[1]
    if grad_out is None:
        grad_out = ws.new_zeros(T, N, H)
    if grad_hn is None:
        grad_hn = ws.new_zeros(N, H)
    args = (
        grad_out,
        grad_hn,
        weight_hh,
        lengths,
        norm_weight,
        recurrent_mask,
        zoneout_mask,
        zoneout_key,
        ctx.zoneout,
        ws,
        stat,
        ctx.reset_after,
        ctx.reverse,
        ctx.features,
    )
    backward = _RecurrenceBackward.apply if functorch_active() else gru_recurrence_backward
    dgi, dh0, dw_hh, db_hh, d_gain, d_shift = backward(*args)
    if not ctx.has_bias:
        db_hh = None
    if not ctx.normed:
        d_gain = d_shift = None
    return (dgi, dh0, dw_hh, db_hh, None, d_gain, d_shift, *([None] * 9))


gru_recurrence_forward.register_autograd(_backward, setup_context=_setup_context)
gru_recurrence_backward.register_autograd(no_double_backward, setup_context=lambda ctx, i, o: None)
for _op in (gru_recurrence_forward, gru_recurrence_backward):
    torch.library.register_autocast(_op, "cpu", torch.float32)


class _BF16Linear(torch.autograd.Function):
    """``F.linear`` of float32 ``x`` (T, N, I) with bfloat16 operands and float32 accumulation
    (``_cpu_base.bf16_linear``); the gradients treat the rounding as the identity and are
    computed in float32, as the recurrence's are."""

    @staticmethod
    def forward(x, weight, bias):
        T, N, I = x.shape
        return bf16_linear(x.reshape(T * N, I), weight, bias).view(T, N, weight.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, g):  # g (T, N, P)
        x, weight = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])  # (T*N, P)
        dx = (g2 @ weight).view_as(x) if ctx.needs_input_grad[0] else None
        dw = g2.t() @ x.reshape(g2.shape[0], -1) if ctx.needs_input_grad[1] else None
        db = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


class _PooledInputSide(torch.autograd.Function):
    """The input side of eager training calls, ``gi = x W_ih^T + b_ih`` or ``LN(x W_ih^T; g, c)``
    (``c`` with ``b_ih`` already added), with its (T*N, 3H) arrays (the product, the normalised
    output, in the backward the product's gradient) from ``_cpu_pool``: at N=64, T=200, H=512
    each is 79 MB, which torch would map and page-fault in afresh at every call. The same ATen
    kernels as ``F.linear`` and ``F.layer_norm``, through their ``out=`` forms. (Eager only:
    ``layer`` uses it outside tracing, compiling and ``torch.func``.)"""

    @staticmethod
    def forward(ctx, x, weight, bias, gain, shift):
        T, N, I = x.shape
        P = weight.shape[0]
        x2 = x.reshape(T * N, I)  # (T*N, I)
        v = _cpu_pool.empty((T * N, P), x.dtype)  # (T*N, 3H)
        if bias is None:
            torch.mm(x2, weight.t(), out=v)
        else:
            torch.addmm(bias, x2, weight.t(), out=v)
        ctx.normed, ctx.has_bias = gain is not None, bias is not None
        if gain is None:
            ctx.save_for_backward(x, weight)
            return v.view(T, N, P)
        gi = _cpu_pool.empty((T * N, P), x.dtype)  # (T*N, 3H)
        mean, rstd = x.new_empty(T * N, 1), x.new_empty(T * N, 1)
        torch.ops.aten.native_layer_norm.out(
            v, [P], gain, shift, LAYER_NORM_EPS, out0=gi, out1=mean, out2=rstd
        )
        ctx.save_for_backward(x, weight, gain, shift, mean, rstd, v)
        return gi.view(T, N, P)

    @staticmethod
    def backward(ctx, dgi):  # (T, N, 3H)
        x, weight, *norm = ctx.saved_tensors
        T, N, I = x.shape
        P = weight.shape[0]
        g2 = dgi.reshape(T * N, P)  # (T*N, 3H)
        dgain = dshift = None
        if ctx.normed:
            gain, shift, mean, rstd, v = norm
            dv = _cpu_pool.empty((T * N, P), x.dtype)  # dL/d(x W^T), (T*N, 3H)
            dgain, dshift = gain.new_empty(P), gain.new_empty(P)
            torch.ops.aten.native_layer_norm_backward.out(
                g2.contiguous(),
                v,
                [P],
                mean,
                rstd,
                gain,
                shift,
                [True, True, True],
                out0=dv,
                out1=dgain,
                out2=dshift,
            )
        else:
            dv = g2
        dx = (dv @ weight).view(T, N, I) if ctx.needs_input_grad[0] else None
        dw = dv.t() @ x.reshape(T * N, I) if ctx.needs_input_grad[1] else None
        db = dv.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, dgain, dshift


class _GateOrder(torch.autograd.Function):
    """A 3H parameter's rows in the feature blocks' gate order, and its gradient gathered back
    into the parameter's own order by the inverse permutation. ``t[perm]`` did the same, but its
    backward, an accumulating ``index_put_``, took 0.3-0.8 ms per weight matrix at H = 256, and
    ``torch.cat`` of the blocks' slices 67 us against 22 for ``index_select`` (Intel Xeon, 2
    threads; 8 such parameters with layer norm, at N = 1 a sixth of a training call)."""

    @staticmethod
    def forward(t, perm, inverse):
        return t.index_select(0, perm)  # (3H, ...) in block order

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.inverse = inputs[2]

    @staticmethod
    def backward(ctx, g):  # (3H, ...) in block order -> the parameter's own order
        return g.index_select(0, ctx.inverse), None, None


class _Recurrence(torch.autograd.Function):
    """The op with its backward in the form ``torch.func`` transforms accept (see
    ``cpu._Layer``)."""

    @staticmethod
    def forward(*args):
        return gru_recurrence_forward(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


class _RecurrenceBackward(torch.autograd.Function):
    @staticmethod
    def forward(*args):
        return gru_recurrence_backward(*args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(no_double_backward)


def _features(T: int, N: int, H: int, x: Tensor, bf16: bool) -> tuple[int, ...]:
    """The feature blocks of the layer's thread plan. Under ``torch.compile`` one block (the
    plan consults NumPy dtypes and the environment, which dynamo cannot trace, and with dynamic
    shapes T and N are symbols): the op then splits rows only, and a batch the plan would split
    by features runs on one thread."""
    if torch.compiler.is_compiling():
        return (0, H)
    packed = packed_products(np_float(x.dtype), bf16)
    return tuple(_cpu_launch.plan(T, N, H, x.element_size(), packed).features)


def layer(
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
    options: LayerOptions,
    gates: bool = False,
    bf16: bool = False,
):
    """One layer in one direction with ``options`` (the ``LayerFn`` contract of
    ``grukit.backends``); ``x`` (T, N, I), ``h0`` (N, H) in the parameters' dtype. With
    ``gates`` (no gradient), also the gate values ``(T, N, 3, H)``: r, z, n. ``bf16``: the
    products take bfloat16 operands (``_bf16``)."""
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    features = _features(T, N, H, x, bf16)
    order = _cpu_launch.gate_order(features)  # None: one block, the parameters' own order

    def blocks(t: Tensor | None) -> Tensor | None:  # a 3H parameter in the kernels' gate order
        return t if t is None or order is None else _GateOrder.apply(t, *order)

    norm_ih = options.norm_ih or (None, None)
    norm_weight, norm_bias = options.norm_hh or (None, None)
    with torch.autocast("cpu", enabled=False):  # the input side in the parameters' dtype
        w_ih, b_ih = blocks(weight_ih), blocks(bias_ih)
        linear = _BF16Linear.apply if bf16 else F.linear
        gain = shift = None
        if norm_ih[0] is not None:
            # LN(v; g, c) + b_ih = LN(v; g, c + b_ih): the bias joins the shift, saving a pass
            gain, shift = blocks(norm_ih[0]), blocks(norm_ih[1])
            shift = shift if b_ih is None else shift + b_ih  # (3H,)
        big = T * N * 3 * H * x.element_size() >= _cpu_pool.MIN_BYTES  # else F.linear's own memory
        pooled = big and not bf16 and not functorch_active() and not torch_modes_active()
        if pooled and needs_grad((x, weight_ih, bias_ih, gain, shift)):
            gi = _PooledInputSide.apply(x, w_ih, b_ih if gain is None else None, gain, shift)
        elif gain is None:
            gi = linear(x, w_ih, b_ih)  # (T, N, 3H), block gate order
        else:
            gi = F.layer_norm(linear(x, w_ih, None), (3 * H,), gain, shift, LAYER_NORM_EPS)
    inputs = (gi, h0, weight_hh, bias_hh, norm_weight, norm_bias)
    save = gates or needs_grad(inputs)
    args = (
        gi,
        h0.contiguous(),
        blocks(weight_hh).contiguous(),
        blocks(bias_hh),
        lengths,
        blocks(norm_weight),
        blocks(norm_bias),
        options.recurrent_mask,
        options.zoneout_mask,
        options.zoneout_key,
        float(options.zoneout),
        reset_after,
        reverse,
        save,
        list(features),
        bf16,
    )
    if gates:
        out, h_n, ws, _ = gru_recurrence_forward(*args)
        kw = saved_per_feature(reset_after, norm_weight is not None)
        return out, h_n, ws.view(T, N, kw, H)[:, :, :3]  # r, z, n: the first saved values
    if save and functorch_active():
        out, h_n, _, _ = _Recurrence.apply(*args)
    else:
        out, h_n, _, _ = gru_recurrence_forward(*args)
    return out, h_n
