"""Keras 3: exact weight exchange with ``keras.layers.GRU`` (either ``reset_after``), stacks of
them, and ``keras.layers.Bidirectional(GRU)``.

Keras orders the gate blocks z, r, h, stores transposed matrices, and keeps one bias per gate
for ``reset_after=False`` (grukit's ``bias_ih + bias_hh``, exact since that formulation only uses
their sum) or two for ``reset_after=True``. Keras layers are batch-major, so ``from_keras`` makes a
``batch_first=True`` model unless told otherwise. ``keras`` is imported on first use; when it is
not imported yet, ``KERAS_BACKEND`` defaults to ``torch``.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile

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
    _check_archive(path)
    try:
        kmodel = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors...
        raise ConversionError(f"{path}: not a loadable .keras model ({exc})") from None
    return from_keras(kmodel, batch_first=batch_first, backend=backend)


# What a .keras archive may hold before Keras reads it: its config.json is parsed into memory, and
# a layer's weights are allocated from the sizes it declares before the weights file is read.
_MAX_CONFIG_BYTES = 1 << 24
_LAYERS = ("InputLayer", "GRU", "Bidirectional")
_DEFLATE_MAX_RATIO = 1032  # the most a deflated byte can expand to


def _check_archive(path: str | os.PathLike) -> None:
    """Refuse a ``.keras`` file that is not a zip archive, has layers other than GRU ones, or
    declares GRU layers with more weights than its weights file can hold, before Keras builds
    (allocates) anything: a few bytes of JSON can declare ``units=10**9``."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            weights = archive.getinfo("model.weights.h5")
            if info.file_size > _MAX_CONFIG_BYTES:
                raise ConversionError(
                    f"config.json declares {info.file_size} bytes, more than a model of GRU layers needs"
                )
            with archive.open(info) as f:
                config = json.loads(f.read(_MAX_CONFIG_BYTES + 1))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, RuntimeError) as exc:
        # zlib.error is not an OSError; RuntimeError: an encrypted member
        raise ConversionError(
            f"{path}: not a loadable .keras model (expected a zip archive holding config.json and "
            f"model.weights.h5; {type(exc).__name__}: {exc})"
        ) from None
    layers = config.get("config", {}).get("layers", []) if isinstance(config, dict) else None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise ConversionError(f"{path}: config.json does not describe a Keras model of layers")
    for layer in layers:
        if layer.get("class_name") not in _LAYERS:
            raise ConversionError(
                f"{path}: the Keras model has a {layer.get('class_name')!r} layer; grukit converts models "
                "made of GRU and Bidirectional(GRU) layers only"
            )
    widest = max(_last_dims(config), default=1)
    declared = sum(_gru_weights(layer, widest, path) for layer in _gru_layers(config))
    size = os.path.getsize(path)
    ratio = 1 if weights.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO
    holds = min(weights.file_size, min(weights.compress_size, size) * ratio)
    if 2 * declared > holds:  # 2 bytes: the narrowest float a weight can be stored in
        raise ConversionError(
            f"{path}: config.json declares GRU layers with {declared:,} weights, but its weights file "
            f"model.weights.h5 can hold at most {holds:,} bytes; the file is damaged"
        )


def _gru_layers(node):
    """Every GRU layer's description (a dict with class_name "GRU") anywhere in ``node``."""
    if isinstance(node, dict):
        if node.get("class_name") == "GRU" and isinstance(node.get("config"), dict):
            yield node
        for value in node.values():
            yield from _gru_layers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _gru_layers(value)


def _last_dims(node):
    """The last entry of every shape (feature sizes) in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (
                key in ("batch_shape", "input_shape", "build_input_shape")
                and isinstance(value, list)
                and value
            ):
                if isinstance(value[-1], int):
                    yield value[-1]
            yield from _last_dims(value)
    elif isinstance(node, list):
        for value in node:
            yield from _last_dims(value)


def _gru_weights(layer: dict, widest: int, path) -> int:
    """The weights a GRU layer's description declares: kernel (I, 3H) and recurrent kernel (H, 3H),
    I from its own build_config where given, else the widest feature size in the model."""
    units = layer["config"].get("units")
    shape = (layer.get("build_config") or {}).get("input_shape")
    I = shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else widest
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0 or I <= 0:
        raise ConversionError(
            f"{path}: expected a GRU layer's units and input size to be positive integers, got {units!r}, {I!r}"
        )
    return 3 * units * (I + units)
