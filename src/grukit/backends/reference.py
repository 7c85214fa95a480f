"""The ``reference`` backend: :func:`grukit.functional.gru_layer` under autograd.

Always eligible, any device and floating dtype, every variant of :class:`LayerOptions`; slow (a
Python loop over time), exact, the oracle. Its ``gates`` function is the same loop keeping r, z, n.
"""

from grukit.backends import Backend, Request, register
from grukit.functional import gru_layer, gru_layer_gates


def _check(request: Request) -> str | None:
    return None


BACKEND = register(
    Backend(
        name="reference",
        layer=gru_layer,
        gates=gru_layer_gates,
        check=_check,
        priority=0,
        variants=frozenset({"layer_norm", "zoneout", "recurrent_dropout"}),
        doc="the float64-exact equations of grukit.functional under autograd; any device",
    )
)
