"""``LayerOptions``: the per-layer values of the GRU variants a backend must compute, in one record.

It lives outside :mod:`grukit.backends` so that :mod:`grukit.functional` (which the ``reference``
backend wraps) can use it without an import cycle; ``grukit.backends.LayerOptions`` is the same
class. The module (:class:`grukit.GRU`) draws every mask; a backend only applies what it is given,
so a run is reproduced by its masks alone. Shapes: T time steps, N batch, H hidden features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LayerOptions", "LAYER_NORM_EPS", "draw_zoneout_key"]

LAYER_NORM_EPS = 1e-5  # haste's and torch.nn.LayerNorm's default


def draw_zoneout_key(p: float) -> Tensor:
    """A training step's zoneout key record, int64 (3,): two 32-bit Philox key words drawn from
    torch's global CPU generator (``torch.manual_seed`` reproduces them) and the threshold
    ``round(p * 2**32)`` below which an output keeps its unit (``grukit.backends._philox``)."""
    words = torch.randint(0, 2**32, (2,), dtype=torch.int64)  # tensor ops only: torch.compile traces them
    return torch.cat([words, torch.full((1,), min(round(p * 2**32), 2**32 - 1), dtype=torch.int64)])


@dataclass(frozen=True)
class LayerOptions:
    """The variants of one layer in one direction (everything absent is the plain GRU).

    Attributes:
        norm_ih: (gain, bias), each (3H,): layer normalisation of ``W_ih x`` over its 3H units,
            before ``b_ih`` is added. None: no layer norm.
        norm_hh: (gain, bias), each (3H,): layer normalisation of ``W_hh h`` before ``b_hh``; with
            ``reset_after=False`` rows ``:2H`` normalise the r,z product and rows ``2H:`` the n
            product ``W_hn (r * h)``, separately.
        zoneout: p. With ``zoneout_mask`` None (evaluation) the step ends with
            ``h_t = p * h_{t-1} + (1 - p) * h'_t``.
        zoneout_mask: (T, N, H) of 0/1 (training): ``h_t = m * h_{t-1} + (1 - m) * h'_t``,
            row ``t`` for time step ``t`` whatever the direction.
        zoneout_key: int64 (3,), instead of ``zoneout_mask`` (training): the Philox key
            ``(k0, k1, thr)`` that defines the mask (``grukit.backends._philox``); the fused
            kernels compute it where they need it, :meth:`resolved_zoneout_mask` materialises it.
        recurrent_mask: (N, H) of 0 or 1/(1-p) (training): multiplies the ``h`` that enters the
            recurrent product, the same at every step; the state update uses the unmasked ``h``.
        matmul_dtype: ``torch.bfloat16``: the layer's matrix products may take bfloat16 operands
            with float32 accumulation (float32 layers; the cpu backend, where the CPU has it).
            None: the parameters' dtype.
    """

    norm_ih: tuple[Tensor, Tensor] | None = None
    norm_hh: tuple[Tensor, Tensor] | None = None
    zoneout: float = 0.0
    zoneout_mask: Tensor | None = None
    zoneout_key: Tensor | None = None
    recurrent_mask: Tensor | None = None
    matmul_dtype: torch.dtype | None = None

    @property
    def any_variant(self) -> bool:
        """Whether layer norm, zoneout or recurrent dropout is on (else the plain GRU)."""
        return (
            self.norm_ih is not None
            or self.norm_hh is not None
            or self.zoneout > 0
            or self.zoneout_mask is not None
            or self.zoneout_key is not None
            or self.recurrent_mask is not None
        )

    def resolved_zoneout_mask(self, T: int, N: int, H: int, like: Tensor) -> Tensor | None:
        """The training zoneout mask (T, N, H) in ``like``'s dtype and device: ``zoneout_mask``,
        or the one ``zoneout_key`` defines; None in evaluation or without zoneout."""
        if self.zoneout_mask is not None or self.zoneout_key is None:
            return self.zoneout_mask
        from grukit.backends import _philox  # Numba: imported only when a key is given

        m = _philox.mask(self.zoneout_key.numpy(), T, N, H)  # (T, N, H) float64
        return torch.from_numpy(m).to(device=like.device, dtype=like.dtype)
