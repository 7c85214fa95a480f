"""ONNX: export a ``grukit.GRU`` on its own as a graph of standard ``GRU`` nodes, written with
``onnx.helper``. (A whole model that contains a ``grukit.GRU`` exports through ``torch.onnx.export``
instead, see :mod:`grukit._onnx_nodes`.)

Export writes one ``GRU`` node per layer (``direction`` forward or bidirectional,
``linear_before_reset`` = the model's ``reset_after``, ``layout`` 0), with dynamic batch and time
axes::

    inputs:  input          (time, batch, I)  or (batch, time, I) for a batch_first model
             sequence_lens  (batch,) int32    optional: the valid length of each sequence
             hx             (D*L, batch, H)   optional: the initial state, zeros when absent
    outputs: output         (time, batch, D*H) or (batch, time, D*H); zero past a length
             h_n            (D*L, batch, H)   the state at each sequence's last valid step

This is what ``grukit.GRU`` computes for the padded batch (or a ``PackedSequence`` with those
lengths); ONNX Runtime runs it. ``layout=1`` is not used because ONNX Runtime's CPU kernel rejects
it; a batch-first model gets ``Transpose`` nodes instead. Dropout is a training-time operation
and is not exported (nor are ``recurrent_dropout`` and ``weight_dropout``, identity in evaluation);
``layer_norm`` and ``zoneout`` change the function ONNX's GRU node computes, so they are refused.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from grukit._io import atomic_write
from grukit.convert import layout
from grukit.convert._common import (
    ConversionError,
    config_of,
    import_onnx,
    param_name,
    refuse_variants,
)
from grukit.modules import GRU

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17  # widely supported by runtimes; GRU itself has not changed since opset 14
MIN_OPSET = 11


def _elem_type(dtype: torch.dtype) -> int:
    onnx = import_onnx()
    types = {
        torch.float32: onnx.TensorProto.FLOAT,
        torch.float64: onnx.TensorProto.DOUBLE,
        torch.float16: onnx.TensorProto.FLOAT16,
    }
    if dtype not in types:
        raise ConversionError(
            f"export_onnx: the ONNX GRU op takes float16, float32 or float64 weights, got {dtype}"
        )
    return types[dtype]


def export_onnx(
    model: GRU,
    path: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    sequence_lens: bool = False,
    initial_state: bool = False,
):
    """Write ``model`` as an ONNX graph of standard ``GRU`` nodes (see the module docstring) and
    return the ``onnx.ModelProto``. ``path=None`` only returns it. The file is written
    atomically and checked with ONNX's checker (with shape inference) first.

    Args:
        opset: the ONNX opset (default ``DEFAULT_OPSET``; from ``MIN_OPSET`` to the installed
            ``onnx``'s newest).
        sequence_lens: add the ``sequence_lens`` input for batches of different lengths.
        initial_state: add the ``hx`` input for the initial state.
    """
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    if not isinstance(model, GRU):
        raise TypeError(f"expected a grukit.GRU, got {type(model).__name__}")
    refuse_variants(
        model, target="export_onnx: ONNX's GRU node", keep=("recurrent_dropout", "weight_dropout")
    )
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConversionError(
            f"export_onnx: expected opset to be an int from {MIN_OPSET} to {newest} "
            f"(the installed onnx's newest), got {opset!r}"
        )
    elem = _elem_type(model.weight_ih_l0.dtype)
    L, D, H = model.num_layers, model.num_directions, model.hidden_size
    direction = "bidirectional" if D == 2 else "forward"

    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def weight(name: str, tensors: list[torch.Tensor]) -> str:
        value = torch.stack([t.detach().to("cpu") for t in tensors]).contiguous().numpy()
        return const(name, value)

    batch, time = "batch", "time"
    inputs = [
        helper.make_tensor_value_info(
            "input",
            elem,
            [batch, time, model.input_size] if model.batch_first else [time, batch, model.input_size],
        )
    ]
    x = "input"
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["input_time_major"], perm=[1, 0, 2]))
        x = "input_time_major"  # (T, N, I)
    seq = ""
    if sequence_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", onnx.TensorProto.INT32, [batch]))
        seq = "sequence_lens"
    if initial_state:
        inputs.append(helper.make_tensor_value_info("hx", elem, [D * L, batch, H]))
        const("hx_axes", np.array([0], dtype=np.int64))

    h_last = []
    for k in range(L):
        per_dir = [
            layout.to_onnx(
                *(
                    getattr(model, param_name(kind, k, d))
                    if model.bias or kind.startswith("weight")
                    else None
                    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                )
            )
            for d in range(D)
        ]
        gru_in = [
            x,
            weight(f"W_l{k}", [p[0] for p in per_dir]),  # (D, 3H, I)
            weight(f"R_l{k}", [p[1] for p in per_dir]),  # (D, 3H, H)
            weight(f"B_l{k}", [p[2] for p in per_dir]) if model.bias else "",  # (D, 6H)
            seq,
            "",
        ]
        if initial_state:
            const(f"hx_start_l{k}", np.array([k * D], dtype=np.int64))
            const(f"hx_end_l{k}", np.array([(k + 1) * D], dtype=np.int64))
            nodes.append(
                helper.make_node("Slice", ["hx", f"hx_start_l{k}", f"hx_end_l{k}", "hx_axes"], [f"hx_l{k}"])
            )  # (D, N, H)
            gru_in[5] = f"hx_l{k}"
        while gru_in and gru_in[-1] == "":
            gru_in.pop()
        nodes.append(
            helper.make_node(
                "GRU",
                gru_in,
                [f"Y_l{k}", f"Y_h_l{k}"],
                name=f"gru_l{k}",
                hidden_size=H,
                direction=direction,
                linear_before_reset=int(model.reset_after),
            )
        )  # (T, D, N, H), (D, N, H)
        nodes.append(helper.make_node("Transpose", [f"Y_l{k}"], [f"Y_t_l{k}"], perm=[0, 2, 1, 3]))
        shape = const(f"shape_l{k}", np.array([0, 0, D * H], dtype=np.int64))
        x = f"output_l{k}" if (k < L - 1 or model.batch_first) else "output"
        nodes.append(helper.make_node("Reshape", [f"Y_t_l{k}", shape], [x]))  # (T, N, D*H)
        h_last.append(f"Y_h_l{k}")
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
    if L == 1:
        nodes.append(helper.make_node("Identity", h_last, ["h_n"]))
    else:
        nodes.append(helper.make_node("Concat", h_last, ["h_n"], axis=0))  # (D*L, N, H)

    outputs = [
        helper.make_tensor_value_info(
            "output", elem, [batch, time, D * H] if model.batch_first else [time, batch, D * H]
        ),
        helper.make_tensor_value_info("h_n", elem, [D * L, batch, H]),
    ]
    graph = helper.make_graph(nodes, "grukit_gru", inputs, outputs, initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="grukit",
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    proto.doc_string = f"grukit.GRU({_describe(model)})"
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        atomic_write(path, lambda tmp: onnx.save_model(proto, tmp))
    return proto


def _describe(model: GRU) -> str:
    return ", ".join(f"{k}={v}" for k, v in config_of(model).items())
