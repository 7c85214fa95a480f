"""ONNX: load a model made of standard ``GRU`` nodes into a ``grukit.GRU``, whoever exported it
(grukit, ``torch.onnx``, tf2onnx/Keras, ONNX's own test models).

The nodes must form one stack: bidirectional nodes (or a forward node and a reverse node reading
the same input) are one layer, and only value-preserving reshapes may sit between two layers.
The formulation comes from ``linear_before_reset``; everything grukit does not compute
(``clip``, other activations, weights computed at run time) raises ``ConversionError`` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grukit.convert import layout
from grukit.convert._common import (
    ConversionError,
    assign,
    check_into,
    import_onnx,
    new_model,
    param_name,
)
from grukit.modules import GRU

if TYPE_CHECKING:
    import onnx

__all__ = ["load_onnx"]

# Ops that may sit between two stacked GRU nodes without changing their values.
_PASS_THROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Flatten"}


def _attrs(onnx, name: str, node) -> dict:
    """A node's attributes, strings decoded; a string that is not UTF-8 (a damaged file) or a
    ``direction`` ONNX does not define is a ``ConversionError`` naming ``name`` (the model)."""
    out = {}
    for a in node.attribute:
        try:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [s.decode() if isinstance(s, bytes) else s for s in v]
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConversionError(
                f"{name}: {node.op_type} node {node.name or '(unnamed)'!r}: attribute {a.name!r} is damaged ({exc})"
            ) from None
        out[a.name] = v
    direction = out.get("direction", "forward")
    if node.op_type == "GRU" and direction not in ("forward", "reverse", "bidirectional"):
        raise ConversionError(
            f"{name}: GRU node {node.name or '(unnamed)'!r}: expected direction 'forward', 'reverse' or "
            f"'bidirectional', got {direction!r}"
        )
    return out


def load_onnx(
    source: str | os.PathLike | bytes | bytearray | onnx.ModelProto,
    *,
    values: Mapping[str, object] | None = None,
    into: GRU | None = None,
    backend: str = "auto",
    reverse_as_forward: bool = False,
) -> GRU:
    """A ``grukit.GRU`` computing the stack of ``GRU`` nodes in an ONNX model, whoever exported
    it (grukit, ``torch.onnx``, tf2onnx/Keras, ONNX's own test models).

    Args:
        source: a path, the file's bytes, or an ``onnx.ModelProto``.
        values: arrays for weights that the graph takes as inputs rather than storing
            (``{"W": ..., "R": ..., "B": ...}``); stored initializers and ``Constant`` nodes are
            read from the model.
        into: copy the weights into this existing model (its configuration must match).
        reverse_as_forward: a lone ``direction="reverse"`` node has no grukit equivalent; with
            this flag it loads as a forward model that computes it on time-reversed input
            (``model(x.flip(0))[0].flip(0)`` for time-major, full-length batches).

    The formulation comes from ``linear_before_reset`` (1: ``reset_after=True``), ``layout=1``
    gives ``batch_first=True``, a missing ``B`` is zeros. Anything grukit does not compute
    (``clip``, other activations, layers that are not one stack) raises ``ConversionError``
    naming it.
    """
    onnx = import_onnx()
    from onnx import numpy_helper

    name = "the ONNX model"
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        if not Path(source).is_file():
            raise FileNotFoundError(f"no such file: {source}")
        try:
            proto = onnx.load(str(source))
        except Exception as exc:  # onnx raises DecodeError and others for damaged files
            raise ConversionError(f"{source}: not a readable ONNX model ({exc})") from None
    elif isinstance(source, (bytes, bytearray)):
        try:
            proto = onnx.load_from_string(bytes(source))
        except Exception as exc:
            raise ConversionError(f"not a readable ONNX model ({exc})") from None
    elif isinstance(source, onnx.ModelProto):
        proto = source
    else:
        raise TypeError(f"expected a path, bytes or onnx.ModelProto, got {type(source).__name__}")
    graph = proto.graph

    def array(t) -> np.ndarray:
        """A stored tensor's values; a damaged one (data shorter than its dims, an unknown data
        type) is refused naming it. numpy_helper checks the data's size before allocating."""
        try:
            return numpy_helper.to_array(t)
        except Exception as exc:  # ValueError, TypeError, KeyError, whatever onnx raises
            why = next(iter(str(exc).splitlines()), type(exc).__name__)
            raise ConversionError(f"{name}: the stored tensor {t.name!r} is damaged ({why})") from None

    known: dict[str, np.ndarray] = {t.name: array(t) for t in graph.initializer}
    producer: dict[str, tuple] = {}
    for node in graph.node:
        for i, out in enumerate(node.output):
            producer[out] = (node, i)
        if node.op_type == "Constant":
            attrs = {a.name: a for a in node.attribute}
            if "value" in attrs:
                known[node.output[0]] = array(attrs["value"].t)
    for key, value in (values or {}).items():
        known[key] = np.asarray(value)

    grus = [n for n in graph.node if n.op_type == "GRU" and n.domain in ("", "ai.onnx")]
    if not grus:
        # a damaged name that is not UTF-8 comes back from protobuf as bytes: show it, do not sort it with str
        ops = sorted({n.op_type if isinstance(n.op_type, str) else repr(n.op_type) for n in graph.node})
        raise ConversionError(f"{name}: expected GRU nodes, found none (ops: {', '.join(ops)})")

    def tensor(node, index: int, what: str) -> np.ndarray | None:
        if index >= len(node.input) or node.input[index] == "":
            return None
        key = node.input[index]
        if key in known:
            return known[key]
        made_by = producer.get(key)
        where = (
            f"computed by a {made_by[0].op_type} node"
            if made_by
            else "a graph input; pass its value with values={" + repr(key) + ": array}"
        )
        raise ConversionError(
            f"{name}: GRU node {node.name or '(unnamed)'!r}: {what} ({key!r}) is {where}; "
            "load_onnx needs weights stored in the model or given in values="
        )

    # Group the nodes into layers: a bidirectional node is a layer; a forward node followed by a
    # reverse node reading the same input is a layer split in two (some exporters do this).
    layers: list[list] = []
    i = 0
    while i < len(grus):
        node, a = grus[i], _attrs(onnx, name, grus[i])
        direction = a.get("direction", "forward")
        if direction == "forward" and i + 1 < len(grus):
            nxt = grus[i + 1]
            if _attrs(onnx, name, nxt).get("direction") == "reverse" and nxt.input[0] == node.input[0]:
                layers.append([node, nxt])
                i += 2
                continue
        if direction == "reverse" and not reverse_as_forward:
            raise ConversionError(
                f"{name}: GRU node {node.name or '(unnamed)'!r} runs direction='reverse' alone; "
                "grukit.GRU has forward and bidirectional layers only. Pass "
                "reverse_as_forward=True to load it as a forward model fed the time-reversed input"
            )
        layers.append([node])
        i += 1

    # One configuration for every node.
    settings = []
    for nodes in layers:
        for node in nodes:
            a = _attrs(onnx, name, node)
            label = f"{name}: GRU node {node.name or '(unnamed)'!r}"
            for bad in ("clip", "activation_alpha", "activation_beta"):
                if bad in a:
                    raise ConversionError(f"{label} sets '{bad}', which grukit does not compute")
            acts = [s.lower() for s in a.get("activations", [])]
            if acts and acts != ["sigmoid", "tanh"] * (len(acts) // 2) or len(acts) % 2:
                raise ConversionError(
                    f"{label} sets activations={a['activations']}; grukit computes Sigmoid and Tanh only"
                )
            settings.append((label, a))
    for label, a in settings:
        for key in ("linear_before_reset", "layout"):
            if a.get(key, 0) not in (0, 1):
                raise ConversionError(f"{label}: expected {key} 0 or 1, got {a[key]!r}")
    lbr = {int(a.get("linear_before_reset", 0)) for _, a in settings}
    lay = {int(a.get("layout", 0)) for _, a in settings}
    if len(lbr) > 1 or len(lay) > 1:
        what = "linear_before_reset" if len(lbr) > 1 else "layout"
        raise ConversionError(f"{name}: the GRU nodes disagree on '{what}'; grukit needs one value")
    D = {
        2 if (len(n) == 2 or _attrs(onnx, name, n[0]).get("direction") == "bidirectional") else 1
        for n in layers
    }
    if len(D) > 1:
        raise ConversionError(f"{name}: some GRU layers are bidirectional and some are not")
    D = D.pop()

    # Weights per layer and direction, in grukit's layout.
    params: dict[str, torch.Tensor] = {}
    hidden, inputs_of, has_bias = set(), [], []
    for k, nodes in enumerate(layers):
        per_dir = []
        for node in nodes:
            W = tensor(node, 1, "W")
            R = tensor(node, 2, "R")
            B = tensor(node, 3, "B")
            if W is None or R is None:
                raise ConversionError(f"{name}: GRU node {node.name!r} lacks W or R")
            for what, value, dims in (("W", W, 3), ("R", R, 3), ("B", B, 2)):
                if value is not None and (value.ndim != dims or not np.issubdtype(value.dtype, np.floating)):
                    raise ConversionError(
                        f"{name}: GRU node {node.name!r}: expected {what} to be a {dims}-D floating-point "
                        f"tensor, got {value.ndim}-D of {value.dtype}"
                    )
            nd = W.shape[0]
            per_dir += [(W[d], R[d], None if B is None else B[d]) for d in range(nd)]
            has_bias.append(B is not None)
            a = _attrs(onnx, name, node)
            if "hidden_size" in a and a["hidden_size"] != R.shape[-1]:
                raise ConversionError(
                    f"{name}: GRU node {node.name!r} has hidden_size={a['hidden_size']} but R of "
                    f"shape {tuple(R.shape)}"
                )
        if len(per_dir) != D:
            raise ConversionError(f"{name}: GRU layer {k} has {len(per_dir)} directions, expected {D}")
        for d, (W, R, B) in enumerate(per_dir):
            H = R.shape[-1]
            if W.shape[0] != 3 * H or R.shape != (3 * H, H) or (B is not None and B.shape != (6 * H,)):
                raise ConversionError(
                    f"{name}: GRU layer {k}: expected W (3H, I), R (3H, H), B (6H,) with H={H}, "
                    f"got {W.shape}, {R.shape}, {None if B is None else B.shape}"
                )
            hidden.add(H)
            inputs_of.append(W.shape[1])
            t = {
                key: torch.from_numpy(np.array(v, copy=True)) if v is not None else None
                for key, v in (("W", W), ("R", R), ("B", B))
            }
            for kind, value in layout.from_onnx(t["W"], t["R"], t["B"]).items():
                params[param_name(kind, k, d)] = value
    if len(hidden) > 1:
        raise ConversionError(f"{name}: the GRU layers have different hidden sizes {sorted(hidden)}")
    H = hidden.pop()
    for k in range(1, len(layers)):
        if inputs_of[k * D] != D * H:
            raise ConversionError(
                f"{name}: GRU layer {k} takes {inputs_of[k * D]} features, not the {D * H} the layer "
                "below produces; the GRU nodes are not one stack"
            )
        _check_chain(name, layers[k][0], layers[k - 1], producer)
    bias = any(has_bias)
    if not bias:
        params = {k: v for k, v in params.items() if k.startswith("weight")}

    dtype = params["weight_ih_l0"].dtype
    config = {
        "input_size": int(inputs_of[0]),
        "hidden_size": int(H),
        "num_layers": len(layers),
        "bias": bias,
        "batch_first": lay.pop() == 1 or _batch_major_input(graph, layers[0][0], producer),
        "dropout": 0.0,
        "bidirectional": D == 2,
        "reset_after": lbr.pop() == 1,
    }
    if into is None:
        into = new_model(config, dtype=dtype, backend=backend)
    else:
        config.pop("dropout")
        check_into(into, config, source=name)
    assign(into, params, source=name)
    return into


def _batch_major_input(graph, node, producer: dict) -> bool:
    """True when the first GRU reads a graph input through ``Transpose(perm=[1, 0, 2])``, the way
    grukit (and others) export a batch-first model for runtimes without ``layout=1``."""
    made_by = producer.get(node.input[0])
    if made_by is None or made_by[0].op_type != "Transpose":
        return False
    op = made_by[0]
    perm = [list(a.ints) for a in op.attribute if a.name == "perm"]
    return perm == [[1, 0, 2]] and op.input[0] in {i.name for i in graph.input}


def _check_chain(name: str, node, below: list, producer: dict) -> None:
    """``node``'s input must come from the layer ``below``'s ``Y`` through value-preserving
    reshapes only (or a ``Concat`` of its two directions)."""
    targets = {n.output[0] for n in below if n.output}
    frontier = [node.input[0]]
    while frontier:
        key = frontier.pop()
        if key in targets:
            continue
        made_by = producer.get(key)
        if made_by is None:
            raise ConversionError(
                f"{name}: GRU node {node.name!r} reads {key!r}, which is not the output of the GRU "
                "layer below; load_onnx reads one stack of GRU layers"
            )
        op = made_by[0]
        if op.op_type in _PASS_THROUGH:
            frontier.append(op.input[0])
        elif op.op_type == "Concat":
            frontier.extend(op.input)
        else:
            raise ConversionError(
                f"{name}: between two GRU layers there is a {op.op_type} node "
                f"({op.name or key!r}); load_onnx reads a plain stack of GRU layers"
            )
