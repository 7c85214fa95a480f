"""Keras 3: exact weight exchange with ``keras.layers.GRU`` (either ``reset_after``), stacks of
them, and ``keras.layers.Bidirectional(GRU)``.

Keras orders the gate blocks z, r, h, stores transposed matrices, and keeps one bias per gate
for ``reset_after=False`` (grukit's ``bias_ih + bias_hh``, exact since that formulation only uses
their sum) or two for ``reset_after=True``. Keras layers are batch-major, so ``from_keras`` makes a
``batch_first=True`` model unless told otherwise. ``keras`` is imported on first use; when it is
not imported yet, ``KERAS_BACKEND`` defaults to ``torch``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from grukit._io import atomic_write
from grukit.convert import layout
from grukit.convert._common import (
    ConversionError,
    assign,
    check_into,
    new_model,
    param_name,
    refuse_variants,
)
from grukit.modules import GRU

__all__ = ["from_keras", "to_keras", "load_keras", "save_keras"]


def _keras():
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    from grukit._extras import MissingDependency, require

    keras = require("keras", "keras", what="Keras support")
    if int(keras.__version__.split(".")[0]) < 3:
        raise MissingDependency(
            f"grukit supports Keras 3, found keras {keras.__version__}: pip install 'grukit[keras]'",
            name="keras",
            extra="keras",
        )
    return keras


def _layers_of(keras, obj) -> list:
    """The GRU / Bidirectional(GRU) layers of a layer, a list of layers, or a Keras model."""
    if isinstance(obj, (keras.layers.GRU, keras.layers.Bidirectional)):
        return [obj]
    if isinstance(obj, keras.Model):
        out = []
        for layer in obj.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if not isinstance(layer, (keras.layers.GRU, keras.layers.Bidirectional)):
                raise ConversionError(
                    f"the Keras model has a {type(layer).__name__} layer ({layer.name!r}); "
                    "grukit converts models made of GRU and Bidirectional(GRU) layers only"
                )
            out.append(layer)
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for item in obj:
            if not isinstance(item, (keras.layers.GRU, keras.layers.Bidirectional)):
                raise ConversionError(
                    f"expected Keras GRU or Bidirectional(GRU) layers, got {type(item).__name__}"
                )
            out.append(item)
        return out
    raise TypeError(
        "expected a keras.layers.GRU, a Bidirectional(GRU), a list of them or a Keras model, "
        f"got {type(obj).__name__}"
    )


def _check_gru(keras, gru, label: str, *, backwards: bool = False) -> dict:
    """The settings of one Keras GRU that grukit needs, after checking it computes a GRU grukit
    can compute."""
    if not isinstance(gru, keras.layers.GRU):
        raise ConversionError(f"{label}: expected a keras.layers.GRU, got {type(gru).__name__}")
    if not gru.built:
        raise ConversionError(
            f"{label}: the layer has no weights yet; build it first, e.g. layer.build((None, None, "
            "input_size)) or call it on a batch"
        )
    cell = gru.cell
    act = keras.activations.serialize(cell.activation)
    rec = keras.activations.serialize(cell.recurrent_activation)
    if act != "tanh" or rec != "sigmoid":
        raise ConversionError(
            f"{label}: activation={act!r}, recurrent_activation={rec!r}; grukit computes "
            "activation='tanh' and recurrent_activation='sigmoid' only"
        )
    if gru.go_backwards != backwards:
        raise ConversionError(
            f"{label}: go_backwards={gru.go_backwards}; grukit runs a reversed GRU only as the "
            "backward half of a bidirectional layer (keras.layers.Bidirectional)"
        )
    return {
        "units": int(cell.units),
        "reset_after": bool(cell.reset_after),
        "recurrent_dropout": float(cell.recurrent_dropout),
        "use_bias": bool(cell.use_bias),
        "input_size": int(cell.kernel.shape[0]),
        "weights": [np.asarray(w) for w in gru.get_weights()],
    }


def _describe(keras, layers) -> list[list[dict]]:
    out = []
    for k, layer in enumerate(layers):
        label = f"Keras layer {k} ({layer.name!r})"
        if isinstance(layer, keras.layers.Bidirectional):
            if layer.merge_mode != "concat":
                raise ConversionError(
                    f"{label}: merge_mode={layer.merge_mode!r}; grukit concatenates the two "
                    "directions (merge_mode='concat')"
                )
            out.append(
                [
                    _check_gru(keras, layer.forward_layer, label + " forward"),
                    _check_gru(keras, layer.backward_layer, label + " backward", backwards=True),
                ]
            )
        else:
            out.append([_check_gru(keras, layer, label)])
    if not out:
        raise ConversionError("expected at least one Keras GRU layer, got none")
    first = out[0][0]
    for k, dirs in enumerate(out):
        for s in dirs:
            for key in ("units", "reset_after", "use_bias", "recurrent_dropout"):
                if s[key] != first[key]:
                    raise ConversionError(
                        f"Keras layer {k} has {key}={s[key]}, layer 0 has {first[key]}; one "
                        "grukit.GRU needs the same value in every layer"
                    )
        if len(dirs) != len(out[0]):
            raise ConversionError("some Keras layers are Bidirectional and some are not")
        if k > 0 and dirs[0]["input_size"] != len(dirs) * first["units"]:
            raise ConversionError(
                f"Keras layer {k} takes {dirs[0]['input_size']} features, not the "
                f"{len(dirs) * first['units']} that layer {k - 1} produces"
            )
    return out


def from_keras(
    layer_or_layers,
    *,
    into: GRU | None = None,
    batch_first: bool = True,
    backend: str = "auto",
) -> GRU:
    """A ``grukit.GRU`` computing what the Keras layers compute: one ``GRU`` layer, a list of
    stacked ones (one multi-layer model), ``Bidirectional(GRU)`` layers (a bidirectional model),
    or a Keras model made of those. ``reset_after`` comes from the layers.

    With ``into``, the weights are copied into that existing model (its configuration must
    match). Keras's ``recurrent_dropout`` (the same in every layer) becomes grukit's
    ``recurrent_dropout``; Keras's input ``dropout`` is not carried over.
    """
    keras = _keras()
    dirs = _describe(keras, _layers_of(keras, layer_or_layers))
    first = dirs[0][0]
    config = {
        "input_size": first["input_size"],
        "hidden_size": first["units"],
        "num_layers": len(dirs),
        "bias": first["use_bias"],
        "bidirectional": len(dirs[0]) == 2,
        "reset_after": first["reset_after"],
        "recurrent_dropout": first["recurrent_dropout"],
    }
    params = {}
    for k, layer in enumerate(dirs):
        for d, s in enumerate(layer):
            w = [torch.from_numpy(np.array(a, copy=True)) for a in s["weights"]]
            bias = w[2] if s["use_bias"] else None
            converted = layout.from_keras(w[0], w[1], bias, reset_after=s["reset_after"])
            for kind, value in converted.items():
                params[param_name(kind, k, d)] = value
    if into is None:
        dtype = params["weight_ih_l0"].dtype
        into = new_model({**config, "batch_first": batch_first, "dropout": 0.0}, dtype=dtype, backend=backend)
    else:
        check_into(into, config, source="the Keras layers")
    assign(into, params, source="Keras")
    return into


def to_keras(model: GRU, *, into=None) -> list:
    """Keras 3 layers computing what ``model`` computes: one ``keras.layers.GRU`` per layer
    (``Bidirectional(GRU)`` for a bidirectional model), built, with ``return_sequences=True``,
    the model's ``reset_after`` and dtype. Stack them (e.g. ``keras.Sequential``) to run them.
    Keras layers are batch-major: they take (N, T, I) whatever ``model.batch_first`` says.

    With ``into`` (a list of layers of the same structure), the weights are copied into those.
    """
    keras = _keras()
    if not isinstance(model, GRU):
        raise TypeError(f"expected a grukit.GRU, got {type(model).__name__}")
    refuse_variants(model, target="to_keras: keras.layers.GRU", keep=("recurrent_dropout",))
    L, D, H = model.num_layers, model.num_directions, model.hidden_size
    dtype = str(model.weight_ih_l0.dtype).removeprefix("torch.")
    if into is None:
        layers = []
        for k in range(L):

            def gru(backwards: bool = False):
                return keras.layers.GRU(
                    H,
                    return_sequences=True,
                    reset_after=model.reset_after,
                    use_bias=model.bias,
                    go_backwards=backwards,
                    dtype=dtype,
                    recurrent_dropout=model.recurrent_dropout,
                )

            layer = keras.layers.Bidirectional(gru(), backward_layer=gru(True)) if D == 2 else gru()
            layer.build((None, None, model.input_size if k == 0 else D * H))
            layers.append(layer)
    else:
        layers = _layers_of(keras, into)
        dirs = _describe(keras, layers)
        have = (
            len(dirs),
            len(dirs[0]),
            dirs[0][0]["units"],
            dirs[0][0]["input_size"],
            dirs[0][0]["reset_after"],
            dirs[0][0]["use_bias"],
        )
        want = (L, D, H, model.input_size, model.reset_after, model.bias)
        if have != want:
            keys = "layers, directions, units, input size, reset_after, use_bias"
            raise ConversionError(f"to_keras: the target layers have ({keys}) = {have}, the model {want}")
    for k, layer in enumerate(layers):
        weights = []
        for d in range(D):
            tensors = [
                getattr(model, param_name(kind, k, d)).detach().to("cpu")
                if model.bias or kind.startswith("weight")
                else None
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            converted = layout.to_keras(*tensors, reset_after=model.reset_after)
            weights += [t.contiguous().numpy() for t in converted]
        layer.set_weights(weights)
    return layers


def save_keras(model: GRU, path: str | os.PathLike) -> None:
    """Write ``model`` as a ``.keras`` file: a ``keras.Sequential`` of the layers from
    :func:`to_keras`, input (batch, time, I). Written atomically."""
    keras = _keras()
    layers = to_keras(model)
    dtype = str(model.weight_ih_l0.dtype).removeprefix("torch.")
    seq = keras.Sequential([keras.Input((None, model.input_size), dtype=dtype), *layers])
    atomic_write(path, lambda tmp: seq.save(tmp))


def load_keras(path: str | os.PathLike, *, batch_first: bool = True, backend: str = "auto") -> GRU:
    """A ``grukit.GRU`` from a ``.keras`` file holding a model made of GRU / Bidirectional(GRU)
    layers (loaded with Keras's ``safe_mode``: no code in the file is run)."""
    keras = _keras()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        kmodel = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors...
        raise ConversionError(f"{path}: not a loadable .keras model ({exc})") from None
    return from_keras(kmodel, batch_first=batch_first, backend=backend)
