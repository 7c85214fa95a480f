"""grukit's own file format: one ``.safetensors`` file holding a ``grukit.GRU``'s weights (the
``torch.nn.GRU`` names) and, in the file's metadata, its configuration as JSON. Loading never
unpickles anything. ``grukit.save`` and ``grukit.load`` are :func:`save` and :func:`load`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from grukit._io import save_weights
from grukit.convert._common import (
    CONFIG_KEYS,
    ConversionError,
    assign,
    config_from_state_dict,
    config_of,
    new_model,
)
from grukit.convert.torch import from_state_dict
from grukit.modules import GRU

__all__ = ["save", "load", "read_metadata", "FORMAT"]

FORMAT = "grukit.GRU/1"


def save(model: GRU, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (``.safetensors``) atomically: a reader or a crash never sees
    a half-written file, and an existing file is replaced only once the new one is complete."""
    if not isinstance(model, GRU):
        raise TypeError(f"expected a grukit.GRU, got {type(model).__name__}")
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config_of(model)),
        "dtype": str(model.weight_ih_l0.dtype).removeprefix("torch."),
    }
    save_weights(model, path, metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` file's header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load(
    path: str | os.PathLike,
    *,
    reset_after: bool | None = None,
    device=None,
    backend: str = "auto",
) -> GRU:
    """A ``grukit.GRU`` from a ``.safetensors`` file written by :func:`save`, or from a plain
    ``torch.nn.GRU`` state dict saved with safetensors (then ``reset_after`` must be given, since
    such a file does not record the formulation)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        meta = read_metadata(path)
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") == FORMAT:
        config = _config(meta, state, path)
        if reset_after is not None and reset_after != config["reset_after"]:
            raise ConversionError(
                f"{path} holds a reset_after={config['reset_after']} model; "
                f"reset_after={reset_after} was asked for"
            )
        dtype = state["weight_ih_l0"].dtype
        if not dtype.is_floating_point:
            raise ConversionError(f"{path}: expected floating-point weights, got {dtype}")
        try:
            model = new_model(config, dtype=dtype, backend=backend)
        except (TypeError, ValueError) as exc:  # a value of the wrong type or range
            raise ConversionError(
                f"{path}: the grukit configuration in the metadata is damaged ({exc})"
            ) from None
        assign(model, state, source=str(path))
    else:
        if reset_after is None:
            raise ConversionError(
                f"{path} holds weights without a grukit configuration, so the formulation is "
                "unknown: say reset_after=True (e.g. saved from torch.nn.GRU) or False"
            )
        model = from_state_dict(state, reset_after=reset_after, source=str(path), backend=backend)
    return model.to(device) if device is not None else model


def _config(meta: dict[str, str], state: dict, path: Path) -> dict:
    """The configuration in ``meta``, checked against the tensors in ``state`` before anything is
    built: the sizes it declares are the file's word only, and a model of that size is allocated."""
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ConversionError(
            f"{path}: the grukit configuration in the metadata is damaged ({exc})"
        ) from None
    if not isinstance(config, dict) or sorted(config) != sorted(CONFIG_KEYS):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ConversionError(
            f"{path}: the grukit configuration in the metadata is damaged: expected the keys "
            f"{', '.join(CONFIG_KEYS)}, got {got}"
        )
    plain = {k: v for k, v in state.items() if not k.startswith("layer_norm_")}
    sizes = config_from_state_dict(plain, source=str(path))
    wrong = [f"{k}={config[k]!r} (its tensors say {v!r})" for k, v in sizes.items() if config[k] != v]
    if wrong:
        raise ConversionError(
            f"{path}: the configuration in the metadata does not fit the tensors: " + ", ".join(wrong)
        )
    return config
