"""``grukit.GRU``: a multi-layer, optionally bidirectional GRU with ``torch.nn.GRU``'s interface.

Shapes: T time steps, N batch, I input features, H hidden features, L layers, D directions.
"""

from __future__ import annotations

import math
import threading
import warnings
import weakref
from contextvars import ContextVar
from dataclasses import replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from grukit import _onnx_nodes, backends
from grukit._layer_options import LayerOptions, draw_zoneout_key
from grukit._modes import torch_modes_active
from grukit._validate import (
    InputError,
    check_dropout,
    check_flag,
    check_probability,
    check_size,
    check_tensor,
)
from grukit.backends import _bf16
from grukit.packing import repack, unpack

__all__ = ["GRU", "VARIANT_KEYS", "LAYER_NORM_KINDS"]

# The variant options (keyword-only, default off); ``docs/variants.md`` has their equations.
VARIANT_KEYS = ("layer_norm", "zoneout", "recurrent_dropout", "weight_dropout")
# The layer-norm parameters of one layer and direction, each (3H,): gains 1, shifts 0 at init.
LAYER_NORM_KINDS = (
    "layer_norm_ih_weight",
    "layer_norm_ih_bias",
    "layer_norm_hh_weight",
    "layer_norm_hh_bias",
)


class _GateRecorder:
    """What :func:`grukit.inspect.gates` collects from one forward pass of ``module``: the gates
    (T, N, 3, H) of each (layer, direction), computed by ``backend`` (the model's own, or
    ``reference`` where the model's has no ``gates`` function)."""

    def __init__(self, module: GRU) -> None:
        self.module = module
        self.backend: backends.Backend | None = None
        self.gates: dict[tuple[int, int], Tensor] = {}

    def use(self, backend: backends.Backend) -> backends.Backend:
        self.backend = backend if backend.gates is not None else backends.get("reference")
        return self.backend


# Set only while grukit.inspect records a forward pass (a context variable, so another thread's
# forward pass of the same module is not recorded); one lookup per forward pass otherwise.
_RECORDING: ContextVar[_GateRecorder | None] = ContextVar("grukit_gate_recording", default=None)

_NO_VARIANTS = LayerOptions()
_bf16_warned = False


def _bf16_products(module: GRU, backend: backends.Backend) -> bool:
    """Whether ``module``'s ``matmul_dtype=torch.bfloat16`` reaches ``backend`` this pass; where it
    cannot be honoured (another backend, float64 parameters, a CPU without bfloat16 products)
    the products stay in the parameters' dtype, with one warning per process."""
    global _bf16_warned
    dtype = cast(Tensor, module._parameters["weight_ih_l0"]).dtype
    if "matmul_dtype" not in backend.variants:
        reason = f"the {backend.name!r} backend computes its products in the parameters' dtype"
    elif dtype != torch.float32:
        reason = f"the parameters are {dtype}, not torch.float32"
    elif not _bf16.enabled():
        reason = (
            "GRUKIT_BF16=off"
            if _bf16.mode() == "off"
            else "this CPU multiplies bfloat16 only in emulation (no AVX512-BF16 or AMX; "
            "GRUKIT_BF16=always forces it)"
        )
    else:
        return True
    if not _bf16_warned:
        _bf16_warned = True
        warnings.warn(
            f"GRU(matmul_dtype=torch.bfloat16): the matrix products stay {dtype} here: {reason}",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


_PLAIN = (nn.Parameter, Tensor)  # parameter types a short call takes (not fake, functional, ...)


def _kernel_call_excluded() -> bool:
    """Whether the streaming kernel's direct calls (``GRU._short_call``, ``GRU._lane_call``) must
    leave the call to the backends: a torch mode that must see the ops (``_modes``) or gate
    recording."""
    return torch_modes_active() or _RECORDING.get() is not None


# module -> {thread id: streaming.CallLane}: calls like the last short one (GRU._lane_call); weak,
# so a module's lanes go with it, and outside the module, so a copy or pickle never carries one
_LANES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Short inference calls (``GRU._short_call``) have T * N <= streaming.FAST_MAX_STEPS_ROWS and, at
# H above SHORT_CALL_ANY_STEPS_H, at most SHORT_CALL_MAX_STEPS steps: past that the fused path's
# one input-projection product for all steps beats the streaming kernel's one per step
# (scripts/short_calls.py on a 2-core AMD EPYC at 1 and 2 threads, the streaming kernel's speed
# over the fused path's: N=1, T=200, H=256 0.85-0.89x; N=1, T=100, H=512 0.88x on 1 thread;
# N=1, T=250, H=64 1.16-1.60x; N=32, T=8, H=256 1.13-1.32x; N=1, T=10, H=64 6.5-6.9x).
SHORT_CALL_MAX_STEPS = 64
SHORT_CALL_ANY_STEPS_H = 128


def _bernoulli(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A 0/1 tensor with P(1) = p, from torch's global generator, on ``like``'s device and dtype.
    Every mask of the variants is drawn here (tests wrap it to record the masks)."""
    return torch.empty(shape, device=like.device, dtype=like.dtype).bernoulli_(p)


def _zoneout_key(shape: tuple[int, int, int], p: float) -> Tensor:
    """Zoneout's mask of ``shape`` (T, N, H) with P(1) = p, as the Philox key record that defines it
    (``LayerOptions.zoneout_key``), drawn from torch's global generator (tests wrap it to record
    the masks)."""
    return draw_zoneout_key(p)


class GRU(nn.Module):
    r"""A multi-layer gated recurrent unit, a drop-in for ``torch.nn.GRU``.

    For each element of the input sequence, each layer computes (gate order r, z, n)::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)    reset_after=False (default)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))    reset_after=True
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    ``reset_after=False`` is the model of the original GRU and of grukit's spec: the reset gate
    scales the previous state *before* the recurrent product. ``reset_after=True`` is PyTorch's and
    cuDNN's formulation; with it a ``torch.nn.GRU`` state dict loads with ``strict=True`` and gives
    the same outputs. Either way ``z`` is the share of the previous state carried forward (the
    frameworks' convention); the spec's ``h_t = (1 - z) h_{t-1} + z n`` is the same model with the
    update gate negated, see ``docs/spec.md``.

    Arguments, inputs and outputs are those of ``torch.nn.GRU``; the extras are keyword-only:

    Args:
        reset_after: the formulation, as above.
        backend: ``"auto"`` (the fastest eligible backend) or a name from
            ``grukit.backends.names()``. What ran last is in ``backend_used``. With ``"auto"``,
            a short inference call of the cpu backend (one direction, no layer norm, nothing
            needing a gradient, T * N <= 256, at most 64 steps when H > 128) runs through the
            streaming kernel (``docs/streaming.md``), a fraction of the fused path's per-call
            cost; naming ``"cpu"`` always runs the fused sequence kernels.
        layer_norm: layer-normalise ``W_ih x`` and ``W_hh h`` before their biases (haste's
            ``LayerNormGRU`` with ``reset_after=True``); adds the parameters
            ``layer_norm_{ih,hh}_{weight,bias}_l{k}[_reverse]`` (3H,), initialised to 1 and 0.
        zoneout: p in [0, 1): in training each unit keeps its previous value with probability p
            (a fresh mask per step and sample); in evaluation ``h_t = p h_{t-1} + (1-p) h'_t``.
        recurrent_dropout: p in [0, 1): in training one dropout mask per sequence and layer on
            the ``h`` entering the recurrent product, scaled by 1/(1-p); identity in evaluation.
        weight_dropout: p in [0, 1): in training DropConnect on ``weight_hh``, one mask per forward
            call scaled by 1/(1-p), applied before any backend; identity in evaluation.
        matmul_dtype: ``torch.bfloat16`` lets a float32 GRU's matrix products (the input
            projection and the recurrent products, forward) take bfloat16 operands with float32
            accumulation, while gates, states and gradients stay float32: on CPUs that multiply
            bfloat16 in hardware (AVX512-BF16, AMX), in the ``cpu`` backend. Elsewhere, and in
            other backends, the products stay float32 (one warning); ``GRUKIT_BF16=always``
            forces them on any CPU. Also what bfloat16 ``torch.autocast`` does to a float32
            GRU. ``docs/performance.md`` has its speed and accuracy.

    The equations of the variants are in ``docs/variants.md``. Masks come from torch's global
    generator. The fused ``cpu`` backend and ``reference`` compute every variant; ``torch`` only
    ``weight_dropout`` (applied by the module), so ``auto`` never picks it for the others.

    Under ``torch.autocast`` it behaves as ``torch.nn.GRU`` does: an input (or ``hx``) of another
    floating dtype than the parameters is accepted (not float64, which autocast never casts), and
    the outputs take the state's dtype promoted with autocast's (float32 for a float32 input,
    bfloat16 for a bfloat16 one under bfloat16 autocast). The ``cpu`` backend computes in the
    parameters' dtype there, its products in bfloat16 as with ``matmul_dtype=torch.bfloat16``
    under bfloat16 autocast; ``torch`` and ``reference`` run autocast's lower-precision products.

    Inputs: ``input`` (T, N, I), (N, T, I) with ``batch_first``, (T, I) unbatched, or a
    ``PackedSequence``; ``hx`` (D*L, N, H) or (D*L, H) unbatched, zeros if omitted.
    Outputs: ``output`` (T, N, D*H) (batch-first or packed like the input) and ``h_n`` (D*L, N, H).
    """

    # registered by name in __init__ (setattr), declared here for type checkers; the others
    # (``weight_ih_l{k}[_reverse]``, ...) are read with getattr or through ``_parameters``
    weight_ih_l0: Tensor  # (3H, I)
    weight_hh_l0: Tensor  # (3H, H)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        reset_after: bool = False,
        backend: str = "auto",
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        matmul_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        self.dropout = check_dropout(dropout)
        self.bidirectional = check_flag("bidirectional", bidirectional)
        self.reset_after = check_flag("reset_after", reset_after)
        self.layer_norm = check_flag("layer_norm", layer_norm)
        self.zoneout = check_probability("zoneout", zoneout)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.weight_dropout = check_probability("weight_dropout", weight_dropout)
        if matmul_dtype not in (None, torch.float32, torch.bfloat16):
            raise InputError(
                f"GRU: matmul_dtype must be None, torch.float32 or torch.bfloat16, got {matmul_dtype!r}"
            )
        self.matmul_dtype = None if matmul_dtype == torch.float32 else matmul_dtype
        self.backend = backend if backend == "auto" else backends.get(backend).name
        self.backend_used: str | None = None  # the backend that ran the last forward pass
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )

        factory = {"device": device, "dtype": dtype}
        H, D = self.hidden_size, self.num_directions
        self._flat_weights_names: list[str] = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else H * D
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes: dict[str, tuple[int, ...]] = {
                    "weight_ih": (3 * H, layer_input),
                    "weight_hh": (3 * H, H),
                }
                if self.bias:
                    shapes.update({"bias_ih": (3 * H,), "bias_hh": (3 * H,)})
                for kind, shape in shapes.items():
                    name = kind + suffix
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)
        # Registered after the standard parameters, so those draw the same numbers as
        # torch.nn.GRU's for the same seed.
        self._layer_norm_names: list[str] = []
        for layer in range(self.num_layers if self.layer_norm else 0):
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                for kind in LAYER_NORM_KINDS:
                    name = kind + suffix
                    setattr(self, name, nn.Parameter(torch.empty(3 * H, **factory)))  # (3H,)
                    self._layer_norm_names.append(name)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every standard parameter, drawn in ``torch.nn.GRU``'s
        order, so the same seed gives the same weights as ``torch.nn.GRU``; then layer-norm gains
        1 and shifts 0 (no draws)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            nn.init.uniform_(getattr(self, name), -bound, bound)
        for name in self._layer_norm_names:
            param = getattr(self, name)
            nn.init.ones_(param) if "_weight" in name else nn.init.zeros_(param)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as ``torch.nn.GRU.all_weights``."""
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i : i + per]] for i in range(0, len(names), per)]

    def flatten_parameters(self) -> None:
        """No-op, for code written for ``torch.nn.GRU``."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        s += f", reset_after={self.reset_after}"
        for key in VARIANT_KEYS:
            if getattr(self, key):
                s += f", {key}={getattr(self, key)}"
        if self.matmul_dtype is not None:
            s += f", matmul_dtype={self.matmul_dtype}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    # -- running ----------------------------------------------------------------------------

    def _request(self, x: Tensor, packed: bool) -> backends.Request:
        w = self.weight_ih_l0
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        return backends.Request(
            device=w.device,
            dtype=w.dtype,
            reset_after=self.reset_after,
            bias=self.bias,
            packed=packed,
            requires_grad=needs_grad,
            variants=self._variants(),
        )

    def _variants(self) -> tuple[str, ...]:
        """The options a backend must compute in this mode (weight dropout is the module's)."""
        on = {
            "layer_norm": self.layer_norm,
            "zoneout": self.zoneout > 0,  # in evaluation too: the interpolation is not a no-op
            "recurrent_dropout": self.recurrent_dropout > 0 and self.training,
        }
        return tuple(name for name, active in on.items() if active)

    def backend_for(self, input: Tensor | PackedSequence) -> str:
        """The name of the backend a forward pass on ``input`` would use, without running it."""
        packed = isinstance(input, PackedSequence)
        x = input.data if isinstance(input, PackedSequence) else input
        return backends.select(self.backend, self._request(x, packed)).name

    def stream(self, batch_size: int | None = None, *, fast: bool = True):
        """A stateful callable for live inference: ``y = stream(chunk)`` carries the hidden
        state from one chunk to the next (``grukit.streaming.GRUStream``; ``docs/streaming.md``)."""
        from grukit.streaming import GRUStream  # lazy: streaming is optional at import time

        return GRUStream(self, batch_size, fast=fast)

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, Tensor]:
        lanes = _LANES.get(self)
        if lanes is not None:  # a call like the last short one: see streaming.CallLane
            lane = lanes.get(threading.get_ident())
            if lane is not None:
                result = self._lane_call(lane, input, hx)
                if result is not None:
                    return result
        w = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        onnx_export = _onnx_nodes.exporting()  # torch.onnx.export is running: write GRU nodes
        lengths = None
        if packed and onnx_export:
            raise NotImplementedError(
                "GRU: torch.onnx.export of a PackedSequence input is not supported (its unpacking "
                "has data-dependent shapes); export with the padded batch, or export the GRU "
                "alone with grukit.convert.export_onnx(model, sequence_lens=True), whose "
                "sequence_lens input takes each sequence's length"
            )
        if isinstance(input, PackedSequence):
            check_tensor("input", input.data, w)
            self._check_features(input.data)
            x, lengths, t_idx, b_idx = unpack(input)  # (T, N, I), (N,)
            batched = True
        else:
            x = check_tensor("input", input, w)
            if x.dim() not in (2, 3):
                raise InputError(f"GRU: Expected input to be 2D or 3D, got {x.dim()}D instead")
            self._check_features(x)
            batched = x.dim() == 3
            if not batched:
                x = x.unsqueeze(1)  # (T, 1, I)
            elif self.batch_first:
                x = x.transpose(0, 1)  # (T, N, I)
        T, N = x.shape[0], x.shape[1]
        if T == 0:
            raise InputError("GRU: expected a sequence length of at least 1, got 0")
        h0 = self._initial_state(hx, N, batched, packed, x)  # (D*L, N, H)

        if onnx_export and (self.layer_norm or self.zoneout):
            option = "layer_norm" if self.layer_norm else "zoneout"
            raise NotImplementedError(
                f"GRU: torch.onnx.export of a GRU with {option} is not supported: ONNX's GRU node "
                "has no such option"
            )
        short = None if packed or onnx_export else self._short_call(x, h0)
        if short is not None:
            output, hidden = short  # (T, N, H), (L, N, H)
            self._keep_lane(input, hx)
        else:
            output, hidden = self._layers(x, h0, lengths, onnx_export, hx)  # (T, N, D*H), (D*L, N, H)
        if isinstance(input, PackedSequence):
            return repack(output, input, t_idx, b_idx), hidden
        if not batched:
            return output.squeeze(1), hidden.squeeze(1)  # (T, D*H), (D*L, H)
        if self.batch_first:
            output = output.transpose(0, 1)  # (N, T, D*H)
        return output, hidden

    def _layers(
        self, x: Tensor, h0: Tensor, lengths: Tensor | None, onnx_export: bool, hx: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Every layer and direction through the selected backend (or, under
        ``torch.onnx.export``, as ONNX GRU nodes): ``x`` (T, N, I), ``h0`` (D*L, N, H) ->
        ``(output (T, N, D*H), h_n (D*L, N, H))``."""
        L, D = self.num_layers, self.num_directions
        T, N = x.shape[0], x.shape[1]
        packed = lengths is not None
        # torch.compile cannot trace a ContextVar, and never runs under grukit.inspect
        recorder = None if torch.compiler.is_compiling() else _RECORDING.get()
        if recorder is not None and recorder.module is not self:
            recorder = None
        if not onnx_export:
            backend = backends.select(self.backend, self._request(x, packed))
            if recorder is not None:  # grukit.inspect: the gates' backend runs this pass
                backend = recorder.use(backend)
            if self.backend_used != backend.name:  # nn.Module.__setattr__ costs microseconds
                self.backend_used = backend.name
        # bfloat16 products: only a backend that computes them is told (and asked to warn)
        bf16 = not onnx_export and self.matmul_dtype is not None and _bf16_products(self, backend)
        h_n: list[Tensor] = []  # (D, N, H) per layer
        layer_in = x  # (T, N, I) then (T, N, D*H)
        for layer in range(L):
            weights = [self._weights(layer, d) for d in range(D)]
            if onnx_export:  # one ONNX GRU node for the layer (see grukit._onnx_nodes)
                h0_layer = None if hx is None else h0[layer * D : (layer + 1) * D]  # (D, N, H)
                layer_in, h_last = _onnx_nodes.gru_layer(
                    layer_in, h0_layer, weights, reset_after=self.reset_after
                )  # (T, N, D*H), (D, N, H)
                h_n.append(h_last)
            else:
                outs, lasts = [], []
                for d in range(D):
                    w_ih, w_hh, b_ih, b_hh = weights[d]
                    if self.weight_dropout and self.training:  # DropConnect, before any backend
                        keep = 1 - self.weight_dropout
                        w_hh = w_hh * (_bernoulli(w_hh.shape, keep, w_hh) / keep)  # (3H, H)
                    options = self._layer_options(layer, d, T, N)
                    if bf16:
                        options = replace(options or _NO_VARIANTS, matmul_dtype=self.matmul_dtype)
                    # ``options=`` only where a variant is on: a backend without variants (one
                    # registered by a user, say) keeps the plain LayerFn signature.
                    extra = {} if options is None else {"options": options}
                    # under grukit.inspect, the same call to the backend's gates function
                    # (recorder.use chose a backend that has gates)
                    run = backend.layer if recorder is None else cast(backends.GatesFn, backend.gates)
                    out, h_last, *gates = run(
                        layer_in,
                        h0[layer * D + d],
                        w_ih,
                        w_hh,
                        b_ih,
                        b_hh,
                        reset_after=self.reset_after,
                        reverse=d == 1,
                        lengths=lengths,
                        **extra,
                    )  # (T, N, H), (N, H)[, (T, N, 3, H)]
                    if recorder is not None:
                        recorder.gates[layer, d] = gates[0]
                    outs.append(out)
                    lasts.append(h_last)
                layer_in = outs[0] if D == 1 else torch.cat(outs, -1)  # (T, N, D*H)
                h_n.append(lasts[0].unsqueeze(0) if D == 1 else torch.stack(lasts, 0))  # (D, N, H)
            if self.dropout and self.training and layer < L - 1:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        output = layer_in  # (T, N, D*H)
        return output, h_n[0] if L == 1 else torch.cat(h_n, 0)  # (D*L, N, H)

    def _short_call(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor] | None:
        """A short inference call through the streaming kernel (``streaming.short_call``): one
        Numba call for all layers, without the per-layer op dispatch, allocations and
        conversions of the fused backend, which cost a one-step call more than its arithmetic
        (``scripts/step_costs.py``). ``x`` (T, N, I), ``h0`` (L, N, H). Taken only with
        ``backend="auto"`` (naming ``"cpu"`` always runs the fused sequence kernels) and where
        ``auto`` would choose the cpu backend: one direction, T * N at most
        ``FAST_MAX_STEPS_ROWS``, no layer norm, no random mask, nothing needing a gradient,
        plain CPU tensors of the parameters' dtype, no tracing, transform, autocast or gate
        recording. None otherwise."""
        from grukit import streaming

        T, N = x.shape[0], x.shape[1]
        if (
            self.bidirectional
            or self.layer_norm
            or self.backend != "auto"
            or (self.matmul_dtype is not None and _bf16.enabled())
            or T * N > streaming.FAST_MAX_STEPS_ROWS
            or (T > SHORT_CALL_MAX_STEPS and self.hidden_size > SHORT_CALL_ANY_STEPS_H)
        ):
            return None
        if self.training and streaming._stochastic(self):
            return None
        w = cast(Tensor, self._parameters["weight_ih_l0"])  # (Module.__getattr__ costs ~1 us)
        if not (
            type(x) is Tensor
            and type(h0) is Tensor
            and x.dtype == w.dtype == h0.dtype
            and x.is_cpu
            and w.dtype in (torch.float32, torch.float64)
        ):
            return None
        found = [self._parameters.get(n) for n in self._flat_weights_names]
        if any(p is None for p in found):  # a parametrization computes a weight on each access
            return None
        params = cast("list[Tensor]", found)
        if torch.is_grad_enabled() and (
            x.requires_grad or h0.requires_grad or any(p.requires_grad for p in params)
        ):
            return None
        if _kernel_call_excluded() or not all(type(p) in _PLAIN for p in params):
            return None
        result = streaming.short_call(self, x, h0)
        if result is not None and self.backend_used != "cpu":
            self.backend_used = "cpu"
        return result

    def _lane_call(self, lane, input, hx) -> tuple[Tensor, Tensor] | None:
        """``lane.run`` (``streaming.CallLane``) where the modes still allow the streaming
        kernel: what ``_short_call`` checks that a lane cannot (no gradient, the auto backend, no
        bfloat16 products, no tracing, export, transform, autocast or gate recording; the lane
        checks for random masks in training). None: take the full forward."""
        if (
            torch.is_grad_enabled()
            or self.backend != "auto"
            or self.matmul_dtype is not None
            or self.layer_norm
            or _kernel_call_excluded()
            or _onnx_nodes.exporting()
        ):
            return None
        result = lane.run(self, input, hx)
        if result is not None and self.backend_used != "cpu":
            self.backend_used = "cpu"
        return result

    def _keep_lane(self, input, hx) -> None:
        """After a short call in a mode a lane serves (see ``_lane_call``), keep a lane for calls
        like it on this thread (``streaming.CallLane.build``; none where it cannot take them)."""
        if torch.is_grad_enabled() or self.matmul_dtype is not None:
            return
        from grukit.streaming import CallLane

        lane = CallLane.build(self, input, hx)
        lanes = _LANES.get(self)
        if lanes is None:
            lanes = _LANES[self] = {}
        if lane is None:
            lanes.pop(threading.get_ident(), None)
        else:
            lanes[threading.get_ident()] = lane

    def _weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (None without bias) of one layer
        and direction (0 forward, 1 reverse)."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return (
            getattr(self, "weight_ih" + suffix),
            getattr(self, "weight_hh" + suffix),
            getattr(self, "bias_ih" + suffix) if self.bias else None,
            getattr(self, "bias_hh" + suffix) if self.bias else None,
        )

    def _layer_options(self, layer: int, direction: int, T: int, N: int) -> LayerOptions | None:
        """The variants of one layer and direction for this forward pass, masks drawn here (in
        this order: recurrent dropout (N, H), zoneout (T, N, H)); None for the plain GRU."""
        if not (self.layer_norm or self.zoneout or (self.recurrent_dropout and self.training)):
            return None
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        norm_ih = norm_hh = None
        if self.layer_norm:
            g_ih, c_ih, g_hh, c_hh = (getattr(self, kind + suffix) for kind in LAYER_NORM_KINDS)
            norm_ih, norm_hh = (g_ih, c_ih), (g_hh, c_hh)
        w = self.weight_hh_l0
        H = self.hidden_size
        recurrent_mask = zoneout_key = None
        if self.recurrent_dropout and self.training:
            keep = 1 - self.recurrent_dropout
            recurrent_mask = _bernoulli((N, H), keep, w) / keep  # (N, H), the same every step
        if self.zoneout and self.training:
            zoneout_key = _zoneout_key((T, N, H), self.zoneout)  # defines (T, N, H), 1 keeps h_{t-1}
        return LayerOptions(
            norm_ih=norm_ih,
            norm_hh=norm_hh,
            zoneout=self.zoneout,
            zoneout_key=zoneout_key,
            recurrent_mask=recurrent_mask,
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # Layer-norm weights mean nothing without the normalisation (and a plain GRU's weights
        # were not trained under it): refuse either way, whatever ``strict`` says. Zoneout and
        # the dropouts have no parameters, so their state dicts load into one another.
        has_norm = any(k.startswith(prefix + "layer_norm_") for k in state_dict)
        if has_norm != self.layer_norm:
            have, got = ("layer_norm=True", "without") if self.layer_norm else ("layer_norm=False", "with")
            error_msgs.append(
                f"GRU: expected a state dict {'with' if self.layer_norm else 'without'} "
                f"layer-norm parameters (this GRU has {have}), got one {got} them; a "
                "layer-normalised GRU and a plain one compute different functions of their "
                f"weights, so build the GRU with layer_norm={has_norm} to load it"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _check_features(self, x: Tensor) -> None:
        if x.shape[-1] != self.input_size:
            raise InputError(
                f"GRU: input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {x.shape[-1]}"
            )

    def _initial_state(self, hx: Tensor | None, N: int, batched: bool, packed: bool, x: Tensor) -> Tensor:
        DL, H = self.num_layers * self.num_directions, self.hidden_size
        if hx is None:
            return x.new_zeros(DL, N, H)  # (D*L, N, H)
        check_tensor("hx", hx, self.weight_ih_l0)
        if packed and hx.dim() != 3:
            raise InputError(
                f"GRU: for a PackedSequence input, hx should be 3-D (D*num_layers, N, H) = "
                f"{(DL, N, H)}, got a {hx.dim()}-D tensor of shape {tuple(hx.shape)}"
            )
        if batched and hx.dim() != 3:
            raise InputError(
                f"GRU: for batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor "
                f"of shape {tuple(hx.shape)}"
            )
        if not batched and hx.dim() != 2:
            raise InputError(
                f"GRU: for unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor "
                f"of shape {tuple(hx.shape)}"
            )
        expected = (DL, N, H) if batched else (DL, H)
        if tuple(hx.shape) != expected:
            what = "(D*num_layers, N, H)" if batched else "(D*num_layers, H)"
            raise InputError(f"GRU: Expected hidden size {what} = {expected}, got {tuple(hx.shape)}")
        return hx if batched else hx.unsqueeze(1)  # (D*L, N, H)
