"""``grukit.GRU`` inside ``torch.onnx.export``: one standard ONNX ``GRU`` node per layer.

While ``torch.onnx.export`` runs a model, ``GRU.forward`` hands each layer (all its directions) to
:func:`gru_layer` instead of a backend. The exported graph then holds ONNX ``GRU`` nodes
(``linear_before_reset`` = the model's ``reset_after``, ``direction`` forward or bidirectional)
instead of a backend's custom op (which no exporter knows) or the ``reference`` backend's loop
unrolled over the example's time steps, and a model that contains a ``grukit.GRU`` exports with a
plain ``torch.onnx.export(model, args, f)``. Nothing needs registering up front:

- the ``torch.export``-based exporter (``dynamo=True``, the default since PyTorch 2.9) captures
  the node as ``torch.onnx.ops.symbolic_multi_out("GRU", ...)``, which it writes as it is;
- the TorchScript-based exporter (``dynamo=False``) traces the custom op ``grukit::onnx_gru``,
  which computes what ONNX's ``GRU`` computes; its symbolic, registered with
  ``torch.onnx.register_custom_op_symbolic`` the first time the op is traced, writes the node.

The weights are converted with :func:`grukit.convert.layout.to_onnx` (gate order r, z, n ->
z, r, h) in torch operations on the parameters, which both exporters fold into initializers.

Shapes: T time steps, N batch, I input features, H hidden features, D directions.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

__all__ = ["exporting", "gru_layer", "onnx_gru"]

# the ONNX opset from which the TorchScript symbolic applies: GRU-7 already has every input and
# attribute used here (linear_before_reset came in GRU-3), and 7 is that exporter's oldest opset
_TORCHSCRIPT_MIN_OPSET = 7


def exporting() -> bool:
    """True while ``torch.onnx.export`` (either exporter) runs the model. Cheap: without
    ``torch.onnx`` imported nothing can be exporting, and it is not imported to find out."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def gru_layer(
    x: Tensor,
    h0: Tensor | None,
    weights: list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]],
    *,
    reset_after: bool,
) -> tuple[Tensor, Tensor]:
    """One layer, every direction, as one ONNX ``GRU`` node.

    ``x`` (T, N, I) time-major; ``h0`` (D, N, H) or None for zeros; ``weights`` per direction
    (forward, then reverse): ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``,
    ``bias_hh`` (3H,) or None. Returns ``output`` (T, N, D*H) and ``h_n`` (D, N, H).
    """
    from grukit.convert import layout  # here, not at the top: grukit.convert imports grukit.modules

    T, N = x.shape[0], x.shape[1]
    D, H = len(weights), weights[0][1].shape[1]
    stacked = [None if w[0] is None else torch.stack(w) for w in zip(*weights)]  # (D, 3H, ...)
    W, R, B = layout.to_onnx(*stacked)  # (D, 3H, I), (D, 3H, H), (D, 6H) or None
    if torch.jit.is_tracing():  # the TorchScript exporter
        _register_torchscript_symbolic()
        y, h_n = onnx_gru(x, W, R, B, h0, H, D == 2, reset_after)
    else:  # the torch.export-based exporter
        try:
            from torch.onnx.ops import symbolic_multi_out
        except ImportError:  # torch.onnx.ops came in PyTorch 2.8
            raise RuntimeError(
                "exporting a grukit.GRU with torch.onnx.export(dynamo=True) needs torch>=2.8 "
                f"(found {torch.__version__}); pass dynamo=False, or export the GRU alone with "
                "grukit.convert.export_onnx"
            ) from None
        attrs = {
            "hidden_size": int(H),
            "direction": "bidirectional" if D == 2 else "forward",
            "linear_before_reset": int(reset_after),
        }
        y, h_n = symbolic_multi_out(
            "GRU",
            [x, W, R, B, None, h0],
            attrs,  # inputs X, W, R, B, sequence_lens, initial_h
            dtypes=[x.dtype, x.dtype],
            shapes=[[T, D, N, H], [D, N, H]],
        )  # (T, D, N, H), (D, N, H)
    return y.permute(0, 2, 1, 3).flatten(2), h_n  # (T, N, D*H), (D, N, H)


@torch.library.custom_op("grukit::onnx_gru", mutates_args=())
def onnx_gru(
    X: Tensor,
    W: Tensor,
    R: Tensor,
    B: Tensor | None,
    initial_h: Tensor | None,
    hidden_size: int,
    bidirectional: bool,
    linear_before_reset: bool,
) -> tuple[Tensor, Tensor]:
    """ONNX's ``GRU`` (default activations, ``layout`` 0, no ``sequence_lens``) as a torch op:
    ``X`` (T, N, I), ``W`` (D, 3H, I), ``R`` (D, 3H, H), ``B`` (D, 6H), ``initial_h`` (D, N, H)
    -> ``Y`` (T, D, N, H), ``Y_h`` (D, N, H), gate blocks z, r, h. Computed with the float64-exact
    equations of :mod:`grukit.functional` (it runs once, while the TorchScript exporter traces)."""
    from grukit.convert import layout
    from grukit.functional import gru_layer as reference_layer

    D, N = W.shape[0], X.shape[1]
    ys, hs = [], []
    for d in range(D):
        p = layout.from_onnx(W[d], R[d], None if B is None else B[d])
        h0 = X.new_zeros(N, hidden_size) if initial_h is None else initial_h[d]  # (N, H)
        y, h = reference_layer(
            X,
            h0,
            p["weight_ih"],
            p["weight_hh"],
            p["bias_ih"],
            p["bias_hh"],
            reset_after=linear_before_reset,
            reverse=d == 1,
        )  # (T, N, H), (N, H)
        ys.append(y)
        hs.append(h)
    return torch.stack(ys, 1), torch.stack(hs, 0)  # (T, D, N, H), (D, N, H)


@onnx_gru.register_fake
def _(X, W, R, B, initial_h, hidden_size, bidirectional, linear_before_reset):
    T, N, D = X.shape[0], X.shape[1], W.shape[0]
    return X.new_empty(T, D, N, hidden_size), X.new_empty(D, N, hidden_size)


_registered = False


def _register_torchscript_symbolic() -> None:
    """Tell the TorchScript exporter that ``grukit::onnx_gru`` is ONNX's ``GRU``. Called while it
    traces, which is before it translates the traced graph."""
    global _registered
    if _registered:
        return
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    @symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "b", "b")
    def symbolic(g, X, W, R, B, initial_h, hidden_size, bidirectional, linear_before_reset):
        missing = _missing_input(g)
        return g.op(
            "GRU",
            X,
            W,
            R,
            missing if symbolic_helper._is_none(B) else B,
            missing,  # sequence_lens: every sequence runs the whole length
            missing if symbolic_helper._is_none(initial_h) else initial_h,
            hidden_size_i=hidden_size,
            direction_s="bidirectional" if bidirectional else "forward",
            linear_before_reset_i=int(linear_before_reset),
            outputs=2,
        )  # (T, D, N, H), (D, N, H)

    register_custom_op_symbolic("grukit::onnx_gru", symbolic, _TORCHSCRIPT_MIN_OPSET)
    _registered = True


def _missing_input(g):
    """An omitted optional input (written as the empty name), as the TorchScript exporter's own
    symbolics make it."""
    node = g.op("prim::Constant")
    node.setType(torch._C.OptionalType.ofTensor())
    return node
