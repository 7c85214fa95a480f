"""What every adapter shares: the model's configuration, parameter names, and copying a
converted set of parameters into a model with every name and shape checked."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from grukit._validate import InputError
from grukit.modules import GRU, VARIANT_KEYS

__all__ = [
    "ConversionError",
    "CONFIG_KEYS",
    "config_of",
    "new_model",
    "param_name",
    "assign",
    "check_into",
    "import_onnx",
    "refuse_variants",
]

# The constructor arguments that define a GRU's function and parameters (not device, dtype,
# backend: those say where and how it runs).
CONFIG_KEYS = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "reset_after",
    *VARIANT_KEYS,  # layer_norm, zoneout, recurrent_dropout, weight_dropout
)

_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


class ConversionError(InputError):
    """A conversion that cannot be done exactly, or a source that does not fit its target.
    A ``ValueError``; the message says what was expected, what was found, and why."""


_WHY = {
    "layer_norm": "layer normalisation of the gate projections (extra parameters)",
    "zoneout": "zoneout (in evaluation it still mixes h_{t-1} into h_t)",
    "recurrent_dropout": "variational dropout on the recurrent input (training)",
    "weight_dropout": "DropConnect on weight_hh (training)",
}


def refuse_variants(model: GRU, *, target: str, keep: tuple[str, ...] = ()) -> None:
    """Raise, naming each option, if ``model`` has a variant on that ``target`` cannot represent
    (all but those in ``keep``)."""
    on = [key for key in VARIANT_KEYS if key not in keep and getattr(model, key)]
    if on:
        what = "; ".join(f"{key}={getattr(model, key)!r}: {_WHY[key]}" for key in on)
        raise ConversionError(
            f"{target} cannot represent this grukit.GRU's option(s) {', '.join(on)} ({what}); "
            "keep it as a grukit.GRU (grukit.save keeps every option), or build a model without "
            "them"
        )


def import_onnx():
    """The ``onnx`` package, imported on first use (the ``grukit[onnx]`` extra)."""
    from grukit._extras import require

    return require("onnx", "onnx", what="ONNX support")


def config_of(model: GRU) -> dict:
    return {key: getattr(model, key) for key in CONFIG_KEYS}


def new_model(config: Mapping[str, object], **kwargs) -> GRU:
    """A ``grukit.GRU`` to copy weights into. Its throw-away initial draw does not advance the
    caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        return GRU(**config, **kwargs)


def param_name(kind: str, layer: int, direction: int) -> str:
    """``kind`` is ``weight_ih``, ``weight_hh``, ``bias_ih`` or ``bias_hh``."""
    return f"{kind}_l{layer}" + ("_reverse" if direction == 1 else "")


def config_from_state_dict(state: Mapping[str, Tensor], *, source: str) -> dict:
    """The sizes a ``torch.nn.GRU``-style state dict implies (everything but the formulation,
    ``batch_first`` and ``dropout``, which a state dict does not record)."""
    layers, reverse, kinds = set(), False, set()
    for name in state:
        m = _NAME.match(name)
        if m is None:
            raise ConversionError(
                f"{source}: expected only torch.nn.GRU parameter names such as "
                f"'weight_ih_l0' or 'bias_hh_l1_reverse', got {name!r}"
            )
        kinds.add(m.group(1))
        layers.add(int(m.group(2)))
        reverse |= m.group(3) is not None
    if "weight_ih_l0" not in state or "weight_hh_l0" not in state:
        raise ConversionError(f"{source}: expected 'weight_ih_l0' and 'weight_hh_l0', not found")
    num_layers = max(layers) + 1
    if len(layers) != num_layers:  # a gap: the names alone would otherwise size the model
        gap = next(k for k in range(num_layers) if k not in layers)
        raise ConversionError(
            f"{source}: expected parameters of layers 0 to {num_layers - 1}, none found for layer {gap}"
        )
    w_ih, w_hh = state["weight_ih_l0"], state["weight_hh_l0"]
    # every size comes from these two tensors' shapes, so both must hold data: (3H, H), (3H, I)
    if (
        w_hh.dim() != 2
        or w_hh.shape[0] != 3 * w_hh.shape[1]
        or w_ih.dim() != 2
        or w_ih.shape[0] != w_hh.shape[0]
        or w_hh.numel() == 0
        or w_ih.numel() == 0
    ):
        raise ConversionError(
            f"{source}: expected weight_hh_l0 of shape (3H, H) and weight_ih_l0 of shape (3H, I), "
            f"got {tuple(w_hh.shape)} and {tuple(w_ih.shape)}; is it a GRU's state dict?"
        )
    return {
        "input_size": int(w_ih.shape[1]),
        "hidden_size": int(w_hh.shape[1]),
        "num_layers": num_layers,
        "bias": "bias_ih" in kinds,
        "bidirectional": reverse,
    }


def check_into(into: object, want: Mapping[str, object], *, source: str) -> GRU:
    """``into`` must be a ``grukit.GRU`` whose configuration matches ``want`` key by key."""
    if not isinstance(into, GRU):
        raise TypeError(f"expected into= to be a grukit.GRU, got {type(into).__name__}")
    have = config_of(into)
    wrong = [f"{k}={have[k]!r} (the source has {v!r})" for k, v in want.items() if have[k] != v]
    if wrong:
        raise ConversionError(f"cannot copy {source} into this grukit.GRU: it has " + ", ".join(wrong))
    return into


@torch.no_grad()
def assign(model: torch.nn.Module, params: Mapping[str, Tensor], *, source: str) -> None:
    """Copy ``params`` into ``model``'s existing parameters (the objects stay the same, so an
    optimizer built on the model keeps working). Every parameter of the model must be given,
    nothing else may be, and every shape must match."""
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(params))
    extra = sorted(set(params) - set(own))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise ConversionError(f"{source} does not fit the target: " + "; ".join(parts))
    for name, value in params.items():
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(own[name].shape):
            raise ConversionError(
                f"{source}: expected {name} of shape {tuple(own[name].shape)}, got {tuple(value.shape)}"
            )
        if not value.is_floating_point():
            raise ConversionError(f"{source}: expected {name} to be floating point, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ConversionError(f"{source}: {name} contains NaN or infinite values")
    for name, value in params.items():
        own[name].copy_(torch.as_tensor(value))
