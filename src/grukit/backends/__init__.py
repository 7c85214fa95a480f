"""A small registry of GRU backends.

A backend computes one layer in one direction (see :func:`grukit.functional.gru_layer` for the
contract) and says when it can run. ``grukit.GRU(backend="auto")`` asks every registered backend,
in priority order, and runs the first eligible one; a named backend that is not eligible raises
with its reason. ``GRU.backend_used`` records what ran last, and :func:`select` says what would run
without running anything.

A GRU variant (layer norm, zoneout, recurrent dropout) reaches a backend as one
:class:`LayerOptions` record (``options=``), and a request names the variants it needs in
``Request.variants``; a backend that does not list one of them in ``Backend.variants`` is not
eligible, with the reason in :func:`explain`. Weight dropout is applied by the module to
``weight_hh`` before any backend sees it, so it needs nothing here.

A backend may also expose its gates (``Backend.gates``, a :class:`GatesFn`): the same arguments
as its ``layer`` function, returning ``output`` (T, N, H), ``h_n`` (N, H) and ``gates``
(T, N, 3, H), ``gates[t, :, 0..2]`` being ``r_t``, ``z_t``, ``n_t`` (natural feature order, time
index ``t`` whatever the direction, zero for a sequence's steps past its length). The module
calls it instead of ``layer`` only while :func:`grukit.inspect.gates` records a forward pass; a
backend without it (``torch``: PyTorch's kernel keeps its gates to itself) is replaced by
``reference`` for that pass, and the trace says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor

from grukit._layer_options import LayerOptions

__all__ = [
    "LayerOptions",
    "LayerFn",
    "GatesFn",
    "Backend",
    "Request",
    "BackendUnavailable",
    "register",
    "get",
    "names",
    "select",
    "explain",
]


@dataclass(frozen=True)
class Request:
    """What a backend needs to know to decide whether it can run a forward pass."""

    device: torch.device
    dtype: torch.dtype
    reset_after: bool
    bias: bool
    packed: bool
    requires_grad: bool
    variants: tuple[str, ...] = ()  # options the layer must compute: "layer_norm", "zoneout", ...


class LayerFn(Protocol):
    def __call__(
        self,
        x: Tensor,
        h0: Tensor,
        weight_ih: Tensor,
        weight_hh: Tensor,
        bias_ih: Tensor | None,
        bias_hh: Tensor | None,
        *,
        reset_after: bool,
        reverse: bool,
        lengths: Tensor | None,
        options: LayerOptions | None = None,  # given only to backends listing variants
    ) -> tuple[Tensor, Tensor]: ...


class GatesFn(Protocol):
    """A :class:`LayerFn` that also returns the gates: (T, N, H), (N, H), (T, N, 3, H)."""

    def __call__(
        self,
        x: Tensor,
        h0: Tensor,
        weight_ih: Tensor,
        weight_hh: Tensor,
        bias_ih: Tensor | None,
        bias_hh: Tensor | None,
        *,
        reset_after: bool,
        reverse: bool,
        lengths: Tensor | None,
        options: LayerOptions | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]: ...


@dataclass(frozen=True)
class Backend:
    """``check(request)`` returns None when the backend can run, else the reason it cannot.

    ``auto_check`` (default: ``check``) decides whether ``backend="auto"`` may choose it; among
    those, the highest ``priority`` wins. ``variants`` names the options of
    :class:`LayerOptions` it computes; a request needing another is refused before ``check``.
    ``gates`` (optional) is the ``layer`` function that also returns r, z, n (module docstring);
    gate inspection uses ``reference`` where it is None.
    """

    name: str
    layer: LayerFn
    check: Callable[[Request], str | None]
    priority: int = 0
    auto_check: Callable[[Request], str | None] | None = None
    doc: str = ""
    variants: frozenset[str] = frozenset()
    gates: GatesFn | None = None

    def reason(self, request: Request) -> str | None:
        """None if this backend can run ``request`` when named, else why not."""
        return self._variants_reason(request) or self.check(request)

    def auto_reason(self, request: Request) -> str | None:
        """None if ``backend="auto"`` may pick this backend for ``request``, else why not."""
        return self._variants_reason(request) or (self.auto_check or self.check)(request)

    def _variants_reason(self, request: Request) -> str | None:
        missing = [v for v in request.variants if v not in self.variants]
        if not missing:
            return None
        verb = "is" if len(missing) == 1 else "are"
        return f"{'/'.join(missing)} {verb} not in the {self.name!r} backend yet"


class BackendUnavailable(RuntimeError):
    """A named backend cannot run the requested computation."""


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add (or replace) a backend in the registry; returns it."""
    _REGISTRY[backend.name] = backend
    return backend


def names() -> list[str]:
    """Registered backend names, highest priority first."""
    return [b.name for b in sorted(_REGISTRY.values(), key=lambda b: -b.priority)]


def get(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown GRU backend {name!r}; expected 'auto' or one of {names()}") from None


def explain(request: Request) -> dict[str, str | None]:
    """For every backend, None if ``auto`` could choose it for ``request``, else why not."""
    return {name: _REGISTRY[name].auto_reason(request) for name in names()}


def select(name: str, request: Request) -> Backend:
    """The backend that runs ``request``: the named one, or the best eligible for ``"auto"``."""
    if name != "auto":
        backend = get(name)
        reason = backend.reason(request)
        if reason is not None:
            raise BackendUnavailable(f"GRU backend {name!r} cannot run this input: {reason}")
        return backend
    for candidate in names():
        backend = _REGISTRY[candidate]
        if backend.auto_reason(request) is None:
            return backend
    raise BackendUnavailable(f"no GRU backend can run this input: {explain(request)}")


def _load_builtin() -> None:
    from grukit.backends import cpu, native, reference  # noqa: F401  (register on import)


_load_builtin()
