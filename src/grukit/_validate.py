"""Checks run once, at the public boundary, with "expected X, got Y" messages."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = [
    "InputError",
    "check_size",
    "check_dropout",
    "check_probability",
    "check_flag",
    "check_tensor",
]


class InputError(ValueError, RuntimeError):
    """Bad input to a GRU. A ``ValueError``, and also a ``RuntimeError`` like the errors
    ``torch.nn.GRU`` raises for the same mistakes, so code written for either keeps working."""


def check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")
    return int(value)


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be a bool, got: {type(value).__name__} ({value!r})")
    return value


def check_dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed, got {value!r}"
        )
    return float(value)


def check_probability(name: str, value: object) -> float:
    """A variant's probability (zoneout, recurrent or weight dropout): a number in [0, 1); 1 would
    freeze the state or zero every recurrent input, and dropout's 1/(1-p) would divide by zero."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"expected {name} to be a number in [0, 1), got {value!r}")
    return float(value)


def check_tensor(name: str, value: object, like: Tensor) -> Tensor:
    """``value`` must be a tensor on ``like``'s device with ``like``'s dtype; under autocast for
    that device, as for ``torch.nn.GRU``, any floating dtype that autocast casts will do."""
    if not isinstance(value, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != like.dtype and not _autocast_casts(value, like):
        hint = (
            "; autocast leaves float64 as it is, so it cannot mix float64 with another dtype"
            if _autocast_enabled(like)
            else ""
        )
        raise InputError(
            f"expected {name} of dtype {like.dtype} (the parameters' dtype), got {value.dtype}; "
            f"convert the {name} with .to({like.dtype}) or the model with .to({value.dtype})" + hint
        )
    if value.device != like.device:
        raise InputError(
            f"expected {name} on device {like.device} (the parameters' device), got {value.device}"
        )
    return value


def _autocast_enabled(like: Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(like.device.type)
    except RuntimeError:  # a device type autocast does not know (meta, ...)
        return False


def _autocast_casts(value: Tensor, like: Tensor) -> bool:
    """Whether autocast reconciles ``value``'s dtype with the parameters': it is on for their
    device, and neither side is float64 (which autocast never casts)."""
    return (
        _autocast_enabled(like)
        and value.is_floating_point()
        and like.is_floating_point()
        and torch.float64 not in (value.dtype, like.dtype)
    )
