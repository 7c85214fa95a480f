"""Gate inspection: the reset gate, update gate and candidate of a ``grukit.GRU``'s forward pass.

At every step each layer and direction computes (gate order r, z, n; ``docs/inspect.md``)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)        the share of h_{t-1} n_t sees
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)        the share of h_{t-1} carried on
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)   reset_after=False (the spec)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   reset_after=True
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

:func:`gates` runs the module's own forward pass (every layer and direction, inter-layer dropout
and the variants' masks drawn as in any forward pass, packed sequences, ``hx``) with the backend
that runs the model when it exposes its gates (``Backend.gates``), else with ``reference``; the
trace names the one that computed them. With zoneout the trace holds the GRU step's own gates;
the state then moves by ``h_t = p h_{t-1} + (1 - p) h'_t`` (evaluation) around that step.

Shapes: L layers, D directions, T time steps, N batch, H hidden features. A trace is always
time-major, ``(T, N, H)`` per layer and direction, whatever the input's layout: ``batch_first``
input is transposed, unbatched input has N = 1, a ``PackedSequence`` is padded to its longest
sequence in its original (unsorted) batch order with zeros past each sequence's length.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from grukit._validate import InputError
from grukit.backends import Backend
from grukit.modules import _RECORDING, GRU, _GateRecorder

__all__ = [
    "GateTrace",
    "Holds",
    "gates",
    "recording",
    "hold_durations",
    "time_constant",
    "HOLD_THRESHOLD",
]

# z_t > 0.5: the step keeps more of h_{t-1} than it takes from the candidate n_t.
HOLD_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class GateTrace:
    """The gates of one forward pass.

    Attributes:
        r, z, n: (L, D, T, N, H): ``z[k, d]`` is the update gate of layer ``k``, direction ``d``
            (0 forward, 1 reverse) over time, always time-major (module docstring); entry ``t``
            is the gate at time step ``t`` whatever the direction.
        lengths: (N,) int64, each sequence's length, or None when every sequence has all T steps.
        output, h_n: what the forward pass returned, in the input's own layout.
        backend: the backend that computed the gates (``reference`` where the model's own, e.g.
            ``torch``, cannot expose them).
        model_backend: the backend a plain forward pass of this input would use.
        reset_after: the model's formulation (how ``r`` entered ``n``).
    """

    r: Tensor
    z: Tensor
    n: Tensor
    lengths: Tensor | None
    output: Tensor | PackedSequence
    h_n: Tensor
    backend: str
    model_backend: str
    reset_after: bool

    @property
    def num_layers(self) -> int:
        return self.z.shape[0]

    @property
    def num_directions(self) -> int:
        return self.z.shape[1]

    def valid(self) -> Tensor:
        """(T, N) bool: the steps each sequence owns (all of them without ``lengths``)."""
        T, N = self.z.shape[2], self.z.shape[3]
        steps = torch.arange(T, device=self.z.device)[:, None]  # (T, 1)
        if self.lengths is None:
            return torch.ones(T, N, dtype=torch.bool, device=self.z.device)
        return steps < self.lengths.to(self.z.device)[None, :]  # (T, N)


def gates(gru: GRU, input: Tensor | PackedSequence, hx: Tensor | None = None) -> GateTrace:
    """Run ``gru`` on ``input`` (and ``hx``), as its forward pass does, and return its gates.

    ``input`` and ``hx`` are those of ``gru(input, hx)``, checked by it (an ``InputError`` with
    the forward pass's message). Runs without autograd, in the module's current mode: in training
    mode the dropout and variant masks are drawn as in a training forward pass.
    """
    _check_gru(gru)
    if not isinstance(input, (Tensor, PackedSequence)):
        raise InputError(
            f"grukit.inspect.gates: expected input to be a Tensor or a PackedSequence, got "
            f"{type(input).__name__}"
        )
    with recording(gru) as traces, torch.no_grad():
        gru(input, hx)
    return traces[0]


@contextmanager
def recording(gru: GRU) -> Iterator[list[GateTrace]]:
    """Record the gates of every forward pass of ``gru`` inside the block, also when a larger
    model calls it (an autoencoder's decoder, say), in the current thread::

        with grukit.inspect.recording(model.decoder) as traces, torch.no_grad():
            model(x)
        z = traces[0].z  # (L, D, T, N, H)

    The list gets one :class:`GateTrace` per forward pass; other modules run as usual.
    """
    _check_gru(gru)
    recorder = _GateRecorder(gru)
    traces: list[GateTrace] = []

    def finish(module: GRU, args: tuple, output: tuple) -> None:
        traces.append(_trace(module, recorder, args[0], output))
        recorder.gates = {}

    handle = gru.register_forward_hook(finish)
    token = _RECORDING.set(recorder)
    try:
        yield traces
    finally:
        _RECORDING.reset(token)
        handle.remove()


def _check_gru(gru: object) -> None:
    if not isinstance(gru, GRU):
        raise TypeError(
            f"grukit.inspect: expected a grukit.GRU, got {type(gru).__name__}; convert a "
            "torch.nn.GRU with grukit.convert.from_torch first"
        )


def _trace(gru: GRU, recorder: _GateRecorder, input, output: tuple) -> GateTrace:
    """The trace of the forward pass that just returned ``output`` on ``input``."""
    L, D = gru.num_layers, gru.num_directions
    stacked = torch.stack(
        [torch.stack([recorder.gates[k, d] for d in range(D)]) for k in range(L)]
    )  # (L, D, T, N, 3, H)
    r, z, n = stacked.unbind(4)  # 3 x (L, D, T, N, H)
    packed = isinstance(input, PackedSequence)
    return GateTrace(
        r=r,
        z=z,
        n=n,
        lengths=_lengths(input) if packed else None,
        output=output[0],
        h_n=output[1],
        backend=cast(Backend, recorder.backend).name,  # set by the forward pass just run
        model_backend=gru.backend_for(input),
        reset_after=gru.reset_after,
    )


def _lengths(packed: PackedSequence) -> Tensor:
    """(N,) int64: each sequence's length, in the caller's (unsorted) order."""
    batch_sizes = packed.batch_sizes  # (T,) sequences still running at each step
    N = int(batch_sizes[0])
    sorted_lengths = (batch_sizes[None, :] > torch.arange(N)[:, None]).sum(1)  # (N,) sorted
    if packed.unsorted_indices is None:
        return sorted_lengths
    return sorted_lengths[packed.unsorted_indices.cpu()]  # (N,)


@dataclass(frozen=True, eq=False)
class Holds:
    """Runs of consecutive steps during which a unit holds its state (``z_t > threshold``), one
    entry per run, each (M,) int64: the sequence, the unit, the first step and the length."""

    sequence: Tensor
    unit: Tensor
    start: Tensor
    length: Tensor


def hold_durations(z: Tensor, threshold: float = HOLD_THRESHOLD, lengths: Tensor | None = None) -> Holds:
    """Every run of consecutive steps with ``z_t > threshold``, per sequence and unit.

    ``z``: (T, N, H) (one layer and direction of a :class:`GateTrace`) or (T, H) for one
    sequence; ``lengths`` (N,): steps past a sequence's length never hold. The default threshold,
    0.5, marks the steps where a unit carries more of its previous state than it takes from the
    candidate; over a run of k such steps the state keeps ``prod z_t`` of its value (at least
    ``threshold ** k``). A run cut off by the end of the sequence counts with the steps seen.
    """
    if z.dim() not in (2, 3):
        raise InputError(f"hold_durations: expected z to be 2-D (T, H) or 3-D (T, N, H), got {z.dim()}-D")
    if not 0 <= threshold < 1:
        raise InputError(f"hold_durations: expected a threshold in [0, 1), got {threshold}")
    if z.dim() == 2:
        z = z.unsqueeze(1)  # (T, 1, H)
    T, N, _ = z.shape
    held = z > threshold  # (T, N, H)
    if lengths is not None:
        steps = torch.arange(T, device=z.device)[:, None]  # (T, 1)
        held = held & (steps < lengths.to(z.device)[None, :]).unsqueeze(-1)  # (T, N, H)
    edges = F.pad(held.permute(1, 2, 0).to(torch.int8), (1, 1)).diff(dim=-1)  # (N, H, T + 1)
    # ordered by (sequence, unit, step): a unit's starts and ends alternate, so they pair up
    starts = (edges == 1).nonzero()  # (M, 3): sequence, unit, first step
    ends = (edges == -1).nonzero()  # (M, 3): sequence, unit, step after the last
    return Holds(
        sequence=starts[:, 0],
        unit=starts[:, 1],
        start=starts[:, 2],
        length=ends[:, 2] - starts[:, 2],
    )


def time_constant(z: Tensor) -> Tensor:
    """``1 / (1 - z)``, elementwise: the number of steps a state would be remembered if the
    update gate stayed at ``z`` (the mean of the geometric decay ``z ** k``; inf at z = 1)."""
    return 1.0 / (1.0 - z)
