"""Reading and writing a GRU in any supported file format, chosen by the file's extension, and
checking a written file against the model it came from.

========================  ==============================================  =================
extension                 holds                                           formulation from
========================  ==============================================  =================
``.safetensors``          grukit's weights + configuration (or a bare     the metadata (or
                          ``torch.nn.GRU`` state dict)                    ``reset_after=``)
``.pt`` / ``.pth``        a ``torch.nn.GRU`` state dict                   ``reset_after=``,
                          (``torch.load(weights_only=True)``)             default True
``.onnx``                 standard ONNX ``GRU`` nodes                     linear_before_reset
``.keras``                a Keras 3 model of GRU / Bidirectional layers   the layers
========================  ==============================================  =================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from grukit._io import atomic_write
from grukit.convert._common import ConversionError
from grukit.modules import GRU

__all__ = ["FORMATS", "format_of", "read_model", "write_model", "verify_file"]

FORMATS = {
    ".safetensors": "grukit safetensors",
    ".pt": "PyTorch state dict",
    ".pth": "PyTorch state dict",
    ".onnx": "ONNX",
    ".keras": "Keras 3",
}


def format_of(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConversionError(
            f"{path}: unknown format {suffix or '(no extension)'!r}; expected one of " + ", ".join(FORMATS)
        )
    return suffix


def read_model(path: str | os.PathLike, *, reset_after: bool | None = None, backend: str = "auto") -> GRU:
    """A ``grukit.GRU`` from ``path``, in the format its extension names. ``reset_after`` is
    needed only where the file does not record the formulation (it defaults to True for a
    ``.pt`` state dict, the only formulation ``torch.nn.GRU`` has); where the file records it,
    a different value raises."""
    fmt = format_of(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if fmt == ".safetensors":
        from grukit.convert.safetensors import load

        return load(path, reset_after=reset_after, backend=backend)
    if fmt in (".pt", ".pth"):
        from grukit._safeload import load_tensors, require_safe_torch_load
        from grukit.convert.torch import from_state_dict

        require_safe_torch_load()  # outside the try: an unsafe torch is not a bad file
        try:
            state = load_tensors(path)
        except Exception as exc:  # pickle errors, zip errors, refused globals, legacy files
            why = next(iter(str(exc).splitlines()), "")[:300]
            raise ConversionError(
                f"{path}: not a state dict of tensors that torch.load(weights_only=True) can "
                f"read ({type(exc).__name__}: {why}); pickled modules and other objects are "
                "refused for safety: save module.state_dict() instead"
            ) from None
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConversionError(
                f"{path}: expected a torch.nn.GRU state dict (names -> tensors), got {type(state).__name__}"
            )
        return from_state_dict(
            state,
            reset_after=True if reset_after is None else reset_after,
            source=str(path),
            backend=backend,
        )
    if fmt == ".onnx":
        from grukit.convert.onnx_import import load_onnx

        model = load_onnx(path, backend=backend)
    else:
        from grukit.convert.keras import load_keras

        model = load_keras(path, backend=backend)
    if reset_after is not None and reset_after != model.reset_after:
        raise ConversionError(
            f"{path} holds a reset_after={model.reset_after} model "
            f"({'its linear_before_reset says' if fmt == '.onnx' else 'its layers say'} so); "
            f"reset_after={reset_after} was asked for"
        )
    return model


def write_model(model: GRU, path: str | os.PathLike, **options) -> None:
    """Write ``model`` to ``path`` in the format its extension names, atomically. ``options``
    go to :func:`grukit.convert.export_onnx` for ``.onnx``."""
    fmt = format_of(path)
    if options and fmt != ".onnx":
        raise ConversionError(f"options {sorted(options)} apply to .onnx files only")
    if fmt == ".safetensors":
        from grukit.convert.safetensors import save

        save(model, path)
    elif fmt in (".pt", ".pth"):
        from grukit.convert.torch import to_torch

        to_torch(model)  # refuses reset_after=False with the reason
        state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    elif fmt == ".onnx":
        from grukit.convert.onnx_export import export_onnx

        export_onnx(model, path, **options)
    else:
        from grukit.convert.keras import save_keras

        save_keras(model, path)


def _batch(model: GRU, N: int, T: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    dtype = model.weight_ih_l0.dtype
    x = torch.randn(T, N, model.input_size, generator=g, dtype=torch.float64).to(dtype)  # (T, N, I)
    hx = torch.randn(
        model.num_layers * model.num_directions, N, model.hidden_size, generator=g, dtype=torch.float64
    ).to(dtype)  # (D*L, N, H)
    return x, hx


def verify_file(model: GRU, path: str | os.PathLike, *, N: int = 3, T: int = 11, seed: int = 0) -> float:
    """Run ``model`` and what ``path`` holds, read back by the framework of its format (ONNX
    Runtime, or ONNX's reference evaluator without it; Keras; ``torch.nn.GRU``; grukit), on one
    random batch (with a random initial state where the format takes one), and return the
    largest absolute difference of the outputs (and final states where the format returns
    them)."""
    fmt = format_of(path)
    model = model.to("cpu")
    x, hx = _batch(model, N, T, seed)  # (T, N, I), (D*L, N, H)
    xin = x.transpose(0, 1) if model.batch_first else x
    if fmt in (".safetensors", ".pt", ".pth"):
        other = read_model(path, reset_after=model.reset_after)
        other.batch_first = model.batch_first
        if fmt != ".safetensors":
            from grukit.convert.torch import to_torch

            other = to_torch(other)  # runs torch.nn.GRU itself
        with torch.no_grad():
            y, h = other(xin, hx)
        got = [y, h]
    elif fmt == ".onnx":
        got, with_state = _run_onnx(path, xin.numpy(), hx.numpy(), model)
        if not with_state:
            hx = torch.zeros_like(hx)
    else:
        if model.num_layers > 1 or model.bidirectional:
            hx = torch.zeros_like(hx)  # a Keras stack takes no initial state for all layers at once
        got = _run_keras(path, xin, hx, model)
    with torch.no_grad():
        want = model(xin, hx)
    return max(float((torch.as_tensor(g).double() - w.double()).abs().max()) for g, w in zip(got, want))


def _run_onnx(path, x: np.ndarray, hx: np.ndarray, model: GRU):
    from grukit._extras import require

    onnx = require("onnx", "onnx", what="checking an ONNX file")

    proto = onnx.load(str(path))
    names = [i.name for i in proto.graph.input]
    feed = {"input": x}
    if "hx" in names:
        feed["hx"] = hx
    if "sequence_lens" in names:
        N, T = (x.shape[0], x.shape[1]) if model.batch_first else (x.shape[1], x.shape[0])
        feed["sequence_lens"] = np.full(N, T, dtype=np.int32)
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        outs = ReferenceEvaluator(proto).run(None, feed)
    else:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = session.run(None, feed)
    return [np.asarray(o) for o in outs], "hx" in names


def _run_keras(path, x: torch.Tensor, hx: torch.Tensor, model: GRU) -> list[np.ndarray]:
    from grukit.convert.keras import _keras

    keras = _keras()
    kmodel = keras.saving.load_model(path, compile=False, safe_mode=True)
    xb = (x if model.batch_first else x.transpose(0, 1)).numpy()  # Keras is batch-major
    if model.num_layers == 1 and not model.bidirectional:
        y = kmodel.layers[-1](xb, initial_state=[hx[0].numpy()])
    else:
        y = kmodel(xb)
    y = np.asarray(keras.ops.convert_to_numpy(y))
    return [y if model.batch_first else y.transpose(1, 0, 2)]
