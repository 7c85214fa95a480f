"""Exact weight exchange with ``torch.nn.GRU``.

``torch.nn.GRU`` computes the ``reset_after=True`` formulation with the same parameter names,
shapes and gate order (r, z, n) as grukit, so the exchange is a copy. A ``reset_after=False``
model is a different function that ``torch.nn.GRU`` cannot compute: ``to_torch`` refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from grukit.convert._common import (
    ConversionError,
    assign,
    check_into,
    config_from_state_dict,
    config_of,
    new_model,
    refuse_variants,
)
from grukit.modules import GRU, VARIANT_KEYS

__all__ = ["from_torch", "to_torch", "from_state_dict"]


def from_torch(module: nn.GRU, *, into: GRU | None = None, backend: str = "auto") -> GRU:
    """A ``grukit.GRU`` (``reset_after=True``) computing exactly what ``module`` computes.

    With ``into``, the weights are copied into that existing model (its configuration must
    match), so optimizers built on it keep working; otherwise a new model is made on the
    module's device and dtype.
    """
    if not isinstance(module, nn.GRU):
        raise TypeError(f"expected a torch.nn.GRU, got {type(module).__name__}")
    want = {
        "input_size": module.input_size,
        "hidden_size": module.hidden_size,
        "num_layers": module.num_layers,
        "bias": module.bias,
        "batch_first": module.batch_first,
        "dropout": float(module.dropout),
        "bidirectional": module.bidirectional,
        "reset_after": True,
    }
    if into is None:
        w = module.weight_ih_l0
        into = new_model(want, device=w.device, dtype=w.dtype, backend=backend)
    else:
        check_into(into, want, source="this torch.nn.GRU")
    assign(into, dict(module.named_parameters()), source="torch.nn.GRU")
    into.train(module.training)
    return into


def to_torch(model: GRU, *, into: nn.GRU | None = None) -> nn.GRU:
    """A ``torch.nn.GRU`` computing exactly what ``model`` computes (``reset_after=True`` only).

    With ``into``, the weights are copied into that existing ``torch.nn.GRU``.
    """
    if not isinstance(model, GRU):
        raise TypeError(f"expected a grukit.GRU, got {type(model).__name__}")
    refuse_variants(model, target="to_torch: torch.nn.GRU")
    if not model.reset_after:
        raise ConversionError(
            "to_torch: this model has reset_after=False (the reset gate applied to h before the "
            "recurrent product, the spec's formulation); torch.nn.GRU only computes "
            "reset_after=True, a different function, so no exact conversion exists. Keep it as a "
            "grukit.GRU, or export it to ONNX (linear_before_reset=0) or Keras (reset_after=False)"
        )
    cfg = config_of(model)
    for key in ("reset_after", *VARIANT_KEYS):  # all off or False here
        cfg.pop(key)
    if into is None:
        w = model.weight_ih_l0
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            into = nn.GRU(**cfg, device=w.device, dtype=w.dtype)
    else:
        if not isinstance(into, nn.GRU):
            raise TypeError(f"expected into= to be a torch.nn.GRU, got {type(into).__name__}")
        have = {k: getattr(into, k) for k in cfg}
        have["dropout"] = float(have["dropout"])
        wrong = [f"{k}={have[k]!r} (the model has {v!r})" for k, v in cfg.items() if have[k] != v]
        if getattr(into, "proj_size", 0):
            wrong.append(f"proj_size={into.proj_size} (grukit has no projection)")
        if wrong:
            raise ConversionError("to_torch: the target torch.nn.GRU has " + ", ".join(wrong))
    assign(into, dict(model.named_parameters()), source="grukit.GRU")
    into.train(model.training)
    return into


def from_state_dict(
    state: Mapping[str, Tensor],
    *,
    reset_after: bool,
    batch_first: bool = False,
    dropout: float = 0.0,
    into: GRU | None = None,
    source: str = "state dict",
    **factory,
) -> GRU:
    """A ``grukit.GRU`` from a ``torch.nn.GRU``-style state dict (sizes read from the names and
    shapes). A state dict does not record the formulation: ``reset_after`` must be given
    (``True`` for one saved from ``torch.nn.GRU``)."""
    cfg = config_from_state_dict(state, source=source)
    cfg.update(batch_first=batch_first, dropout=dropout, reset_after=reset_after)
    if into is None:
        dtype = factory.pop("dtype", None) or state["weight_ih_l0"].dtype
        if not dtype.is_floating_point:
            raise ConversionError(f"{source}: expected floating-point weights, got {dtype}")
        into = new_model(cfg, dtype=dtype, **factory)
    else:
        cfg.pop("batch_first")
        cfg.pop("dropout")
        check_into(into, cfg, source=source)
    assign(into, state, source=source)
    return into
