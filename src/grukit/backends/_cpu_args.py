"""The arguments of the cpu kernels, written down once.

``_cpu_kernels.forward`` and ``backward`` take their arguments positionally (Numba compiles
positional signatures; a dataclass cannot cross into it). Their order, names and shapes live
here, and every call site is built from these tables: the backend's ops fill a ``ForwardArgs`` /
``BackwardArgs`` by keyword, the warm-up makes dummy ones with :func:`dummy`, the launcher appends
the block's own arguments (``BLOCK``), and the OpenMP record (``_cpu_omp``) stores and reads every
argument generically, in this order. ``tests/test_backends.py`` checks that the kernels'
signatures are exactly these fields followed by ``BLOCK``.

Shapes are written in the symbols of ``_cpu_kernels``: T steps, N batch, H hidden, kw values
saved per feature (5 for ``reset_after``, else 4, plus 3 with layer norm), C steps per backward
chunk, B feature-block bounds (blocks + 1), I input features, G the steps ``gi`` holds (T, or
the projection chunk's length when the forward projects its input itself). Gate rows (the ``3H`` dimension) are permuted by
feature block.

The GRU variants (``docs/variants.md``) are arguments too, each switched off by an empty array
(a first dimension of 0), so one compiled kernel serves every combination: ``rmask`` (recurrent
dropout), ``zm`` or ``zkey`` (zoneout), ``lng``/``lnb`` (the recurrent product's layer norm, which needs the
row's statistics over all feature blocks, exchanged in ``part`` at a barrier).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

__all__ = ["Arg", "FORWARD", "BACKWARD", "BLOCK", "ForwardArgs", "BackwardArgs", "dummy"]


class Arg(NamedTuple):
    name: str
    kind: str  # "float" (the call's dtype), "int64" or "bf16" (uint16 bit patterns) arrays,
    # "bool" or "int" (scalars)
    shape: str = ""  # arrays: dimensions in the symbols above, e.g. "T N 3H"

    @property
    def ndim(self) -> int:
        return len(self.shape.split())


FORWARD = (
    Arg("gi", "float", "G N 3H"),  # input projections, b_ih included: all T steps, or a chunk's
    # the input, when the kernel projects it itself G steps at a time into ``gi`` ((0, 0, 0):
    # ``gi`` holds every step's projection)
    Arg("xin", "float", "T N I"),
    Arg("wih", "float", "3H I"),  # W_ih, with xin
    Arg("bih", "float", "3H"),  # b_ih (zeros without bias), with xin
    Arg("hbuf", "float", "2 N H"),  # the state, double-buffered; hbuf[0] the initial one
    Arg("w", "float", "3H H"),  # W_hh
    Arg("b", "float", "3H"),  # b_hh (zeros without bias)
    Arg("lengths", "int64", "N"),  # row b is active at step t iff t < lengths[b]
    Arg("reverse", "bool"),
    Arg("reset_after", "bool"),
    Arg("save", "bool"),  # keep r, z, n, h_prev (+ W_hn h + b_hn) per step for the backward
    Arg("packed", "bool"),  # float32: the recurrent products through MKL's packed GEMM
    Arg("out", "float", "T N H"),
    Arg("ws", "float", "T N kw H"),  # the saved values; (0, 0, 0, 0) when not save
    Arg("scratch", "float", "N kw H"),  # one step's values when not saving
    Arg("gh", "float", "N 3H"),  # h W_hh^T of one step
    Arg("rh", "float", "N H"),  # r * h_prev of one step (reset_after=False)
    Arg("ghn", "float", "N H"),  # (r * h_prev) W_hn^T of one step (reset_after=False)
    # the variants: off when empty
    Arg("hin", "float", "2 N H"),  # h * rmask, what the recurrent products see (hbuf itself when off)
    Arg("rmask", "float", "N H"),  # recurrent dropout: 0 or 1/(1-p), the same every step
    Arg("zm", "float", "T N H"),  # zoneout: 1 keeps h_prev; (1, 1, 1) holding p in evaluation
    # zoneout in training from a Philox key (k0, k1, thr) (``_philox``), instead of ``zm``: the
    # kernel computes each row's mask into ``zbuf`` (N, H)
    Arg("zkey", "int64", "3"),
    Arg("zbuf", "float", "N H"),
    Arg("lng", "float", "3H"),  # layer norm of W_hh h: gain (permuted gate rows)
    Arg("lnb", "float", "3H"),  # and shift
    Arg("stat", "float", "T N 2"),  # layer norm: 1/std of each row and step (r,z part; n part)
    Arg("bounds", "int64", "B"),  # the feature blocks' boundaries
    Arg("part", "float", "N B 2"),  # layer norm: each block's partial statistics of a row
    # bfloat16 products (float32 calls only): off when empty
    Arg("w16", "bf16", "3H H"),  # W_hh in bfloat16
    Arg("h16", "bf16", "2 N H"),  # what the recurrent products see, in bfloat16, double-buffered
    Arg("rh16", "bf16", "N H"),  # r * h_prev in bfloat16 (reset_after=False)
)

BACKWARD = (
    Arg("dout", "float", "T N H"),  # dL/d(output)
    Arg("dh", "float", "N H"),  # dL/dh at the chunk's end in, at its start out
    Arg("w", "float", "3H H"),  # W_hh
    Arg("lengths", "int64", "N"),
    Arg("reverse", "bool"),
    Arg("reset_after", "bool"),
    Arg("ws", "float", "T N kw H"),  # what the forward saved
    Arg("dgi", "float", "C N 3H"),  # dL/d(input projection) of the chunk's steps
    Arg("dghn", "float", "C N H"),  # dL/d(W_hn h_prev + b_hn); (0, 0, 0) for reset_after=False
    Arg("ghbuf", "float", "2 N 3H"),  # one step's recurrent gradient, double-buffered
    Arg("drh", "float", "N H"),  # dL/d(r * h_prev) of one step
    Arg("dhd", "float", "N H"),  # dL/dh_prev of one step
    Arg("bounds", "int64", "B"),  # the feature blocks' boundaries
    Arg("s0", "int"),  # the chunk: steps s0:s1 of the backward order,
    Arg("s1", "int"),
    Arg("t_lo", "int"),  # whose earliest forward step is t_lo
    # the variants, as in FORWARD; off when empty
    Arg("rmask", "float", "N H"),
    Arg("zm", "float", "T N H"),  # as FORWARD's, but (1, 1, H) of p in evaluation
    Arg("zkey", "int64", "3"),  # as FORWARD's
    Arg("zbuf", "float", "N H"),
    Arg("lng", "float", "3H"),
    Arg("stat", "float", "T N 2"),
    Arg("dgr", "float", "C N 3H"),  # layer norm: dL/d(W_hh h) of the chunk's steps
    Arg("dhr", "float", "N H"),  # recurrent dropout: dL/d(h * rmask) of one step
    Arg("lnacc", "float", "2 N 3H"),  # layer norm: per row, the gain's and shift's gradients
    Arg("part", "float", "N B 2"),  # layer norm: each block's partial sums of a row
)

# appended to either by the launcher: rows b0:b1 and features j0:j1, the row block's barrier
# (16,) int64, and how many feature blocks meet at it
BLOCK = ("b0", "b1", "j0", "j1", "sync", "parties")

_PY_TYPES = {"float": np.ndarray, "int64": np.ndarray, "bf16": np.ndarray, "bool": bool, "int": int}
ARRAY_DTYPES = {"int64": np.int64, "bf16": np.uint16}  # arrays of a fixed dtype, by kind
ForwardArgs = NamedTuple("ForwardArgs", [(a.name, _PY_TYPES[a.kind]) for a in FORWARD])
BackwardArgs = NamedTuple("BackwardArgs", [(a.name, _PY_TYPES[a.kind]) for a in BACKWARD])
SPECS = {"forward": (FORWARD, ForwardArgs), "backward": (BACKWARD, BackwardArgs)}

_DIM = re.compile(r"^(\d*)([A-Za-z]\w*)?$")


def shape_of(arg: Arg, dims: dict[str, int]) -> tuple[int, ...]:
    """``arg``'s shape with the symbols' values in ``dims``: "T N 3H" -> (T, N, 3 * H)."""
    shape = []
    for token in arg.shape.split():
        factor, symbol = _DIM.match(token).groups()
        shape.append((int(factor) if factor else 1) * (dims[symbol] if symbol else 1))
    return tuple(shape)


def dummy(kind: str, dtype, dims: dict[str, int], **scalars) -> tuple:
    """Zero-filled arguments of kernel ``kind`` ("forward" or "backward") of the shapes ``dims``
    gives, with the scalars given by keyword (for compiling a specialisation)."""
    spec, record = SPECS[kind]
    values = {
        a.name: np.zeros(shape_of(a, dims), ARRAY_DTYPES.get(a.kind, dtype))
        for a in spec
        if a.kind not in ("bool", "int")
    }
    return record(**values, **scalars)
