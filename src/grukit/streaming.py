"""Streaming (stateful) inference: ``stream = gru.stream(); y = stream(chunk)``.

Shapes: T steps in a chunk, N batch, I input features, H hidden, L layers.

A :class:`GRUStream` computes ``grukit.GRU``'s equations (see ``grukit.GRU``) over a sequence that
arrives in chunks, carrying ``h`` (L, N, H) from one call to the next, so the outputs of the chunks
put end to end equal one pass over the whole sequence. A short chunk on the CPU (the live signal,
token-by-token generation) takes a lean path: one Numba call for all layers on preallocated scratch,
with no custom-op dispatch, backend selection or autograd (``backends/_stream_kernel.py``). Any
other chunk runs the module's own forward with the carried state. See ``docs/streaming.md``.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor

from grukit._validate import InputError, check_size, check_tensor

if TYPE_CHECKING:
    from grukit.modules import GRU

__all__ = ["GRUStream", "FAST_MAX_STEPS_ROWS"]

# The fast path takes chunks with T * N up to this (a chosen bound, not a measured crossover):
# beyond it the module's forward, whose fused backend threads the whole sequence, is expected to
# win over a single-threaded per-step loop.
FAST_MAX_STEPS_ROWS = 256

# The fast path splits a chunk's hidden units over threads when a layer's weights reach this
# many bytes (at H = 256, float32, 1.5 MiB: more than one core's L2 cache on the 2-core AMD EPYC
# it was measured on, while each half fits) and each thread gets at least SPLIT_MIN_UNITS units.
SPLIT_MIN_BYTES = 512 * 1024
SPLIT_MIN_UNITS = 128

_KEEP = -1  # _stream_kernel.KEEP (that module loads Numba, so it is imported only when needed)
_kernel_module: Any = None  # the loaded kernel module, False if it cannot load
_omp_module: Any = None  # its launch on PyTorch's OpenMP threads, None where that cannot load


def _kernel():
    """``_stream_kernel.chunk``, or None where Numba or the BLAS binding is unavailable."""
    global _kernel_module, _omp_module
    if _kernel_module is None:
        from grukit.backends import cpu

        if cpu.kernels_available() is not None:
            _kernel_module = False
        else:
            from grukit.backends import _cpu_launch, _stream_kernel

            _kernel_module = _stream_kernel
            if _cpu_launch.launcher() == "openmp":
                try:
                    from grukit.backends import _stream_omp
                except Exception:  # the fused backend's launcher warned already if OpenMP fails
                    pass
                else:
                    _omp_module = _stream_omp
    return _kernel_module.chunk if _kernel_module else None


class GRUStream:
    """A callable carrying a unidirectional ``grukit.GRU``'s hidden state between calls.

    ``y = stream(chunk)``: ``chunk`` is (T, N, I), (N, T, I) with ``batch_first``, or (T, I)
    unbatched, any T >= 1; ``y`` is (T, N, H), (N, T, H) or (T, H), the last layer's ``h_t``,
    exactly what ``gru(whole_sequence)`` gives for those steps (to float rounding). The batch size
    is fixed by ``batch_size``, else by the first chunk or by a state set through ``state``.

    ``state``: the carried ``h`` as a new tensor, (L, N, H), or (L, H) after an unbatched chunk;
    None before the first chunk. Setting it validates shape, dtype and device and copies it;
    setting None starts over (zeros, any batch size). ``reset(rows=None)`` zeroes the state of
    every row, or of the rows given (an int, a sequence of ints, or a bool mask of shape (N,)):
    those rows continue as fresh sequences.

    The stream runs without building autograd graphs (outputs never require grad) and never
    writes the parameters; it reads them at every call, so in-place updates (an optimiser step,
    ``load_state_dict``) and replaced or cast parameters are seen (the fast path keeps their
    addresses, looked up again when a parameter's ``data_ptr`` changes). A module in training
    mode with a stochastic option (inter-layer dropout, zoneout, recurrent or weight dropout) is
    refused: call ``gru.eval()``. A bidirectional GRU is refused, since its reverse direction
    needs the future of the sequence. ``fast=False`` turns the fast path off (for tests and
    comparisons).
    """

    def __init__(self, gru: GRU, batch_size: int | None = None, *, fast: bool = True):
        if getattr(gru, "bidirectional", False):
            raise ValueError(
                "GRU.stream: expected a unidirectional GRU, got bidirectional=True; the reverse "
                "direction at step t reads steps t+1..T, which a stream has not seen yet. Run "
                "the bidirectional GRU on whole sequences, or stream a unidirectional one"
            )
        self.gru = gru
        self._batch_size = None if batch_size is None else check_size("batch_size", batch_size)
        self.fast = bool(fast)
        self._h: Tensor | None = None  # (L, N, H), contiguous, the parameters' dtype and device
        self._h_np: np.ndarray | None = None  # a NumPy view of _h for the fast path
        self._unbatched = False  # whether the last chunk (or state set) was unbatched
        self._weights_key: list | None = None  # data_ptr of each parameter, reset_after
        self._weights_rec: np.ndarray | None = None  # the fast path's record of addresses
        self._weights_alive: list | None = None  # the arrays the record points at
        self._scratch: np.ndarray | None = None  # the fast path's scratch, 1-D
        self.path_used: str | None = None  # "fast" or "module": what ran the last chunk
        self._lane: _Lane | None = None  # the last fast chunk's layout (see _call_lane)

    # -- state ------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int | None:
        """N of the carried state, else the fixed one, else None (set by the first chunk)."""
        return self._h.shape[1] if self._h is not None else self._batch_size

    @property
    def state(self) -> Tensor | None:
        if self._h is None:
            return None
        h = self._h.clone()  # (L, N, H)
        return h.squeeze(1) if self._unbatched else h  # (L, H) unbatched

    @state.setter
    def state(self, value: Tensor | None) -> None:
        if value is None:
            self._set_h(None)
            self._unbatched = False
            return
        g = self.gru
        w = g.weight_ih_l0
        check_tensor("state", value, w)
        if value.dtype != w.dtype:
            raise InputError(f"expected state of dtype {w.dtype}, got {value.dtype}")
        L, H = g.num_layers, g.hidden_size
        if value.dim() == 2:
            if tuple(value.shape) != (L, H):
                raise InputError(
                    f"GRUStream: expected an unbatched state of shape (num_layers, H) = {(L, H)}, "
                    f"got {tuple(value.shape)}"
                )
            self._check_batch(1, "state")
            h = value.unsqueeze(1)  # (L, 1, H)
        elif value.dim() == 3:
            N = self._batch_size if self._batch_size is not None else value.shape[1]
            if tuple(value.shape) != (L, N, H):
                raise InputError(
                    f"GRUStream: expected a state of shape (num_layers, N, H) = {(L, N, H)}, "
                    f"got {tuple(value.shape)}"
                )
            h = value
        else:
            raise InputError(
                f"GRUStream: expected a 2-D (num_layers, H) or 3-D (num_layers, N, H) state, got "
                f"{value.dim()}-D of shape {tuple(value.shape)}"
            )
        self._set_h(h.detach().clone(memory_format=torch.contiguous_format))
        self._unbatched = value.dim() == 2

    def reset(self, rows=None) -> None:
        """Zero the state of all rows (``rows=None``) or of the rows given; the batch size is
        kept. Before the first chunk there is nothing to reset."""
        if self._h is None:
            return
        if rows is None:
            self._h.zero_()
            return
        N = self._h.shape[1]
        index = torch.as_tensor(rows, device=self._h.device)
        if index.dtype == torch.bool:
            if tuple(index.shape) != (N,):
                raise InputError(
                    f"GRUStream.reset: expected a bool mask of shape ({N},), got {tuple(index.shape)}"
                )
        elif index.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
            index = index.reshape(-1).long()
            bad = index[(index < -N) | (index >= N)]
            if bad.numel():
                raise InputError(f"GRUStream.reset: expected row indices in [-{N}, {N}), got {bad.tolist()}")
        else:
            raise InputError(
                f"GRUStream.reset: expected None, an int, a sequence of ints or a bool mask, got {rows!r}"
            )
        self._h[:, index] = 0

    def _set_h(self, h: Tensor | None) -> None:
        self._h = h
        self._h_np = None
        self._lane = None

    def _check_batch(self, N: int, what: str) -> None:
        have = self.batch_size
        if have is not None and N != have:
            source = "batch_size" if self._h is None else "the carried state"
            raise InputError(
                f"GRUStream: expected {what} of batch size {have} ({source}), got {N}; set "
                "stream.state = None to start a new batch"
            )

    # -- running ----------------------------------------------------------------------------

    def __call__(self, chunk: Tensor) -> Tensor:
        lane = self._lane
        if lane is not None:
            y = self._call_lane(lane, chunk)
            if y is not None:
                return y
        g = self.gru
        w = _params(g).get("weight_ih_l0")  # (not g.weight_ih_l0: Module.__getattr__ costs ~1 us)
        if w is None:  # a parametrization computes it
            w = g.weight_ih_l0
        x = check_tensor("chunk", chunk, w)
        if x.dim() not in (2, 3):
            raise InputError(
                f"GRUStream: expected a 2-D (T, I) or 3-D chunk, got {x.dim()}-D of shape {tuple(x.shape)}"
            )
        if x.shape[-1] != g.input_size:
            raise InputError(
                f"GRUStream: expected chunk.size(-1) = input_size = {g.input_size}, got {x.shape[-1]}"
            )
        unbatched = x.dim() == 2
        if unbatched:
            x3 = x.unsqueeze(1)  # (T, 1, I)
        elif g.batch_first:
            x3 = x.transpose(0, 1)  # (T, N, I)
        else:
            x3 = x
        T, N = x3.shape[0], x3.shape[1]
        if T == 0:
            raise InputError("GRUStream: expected a chunk of at least 1 step, got 0")
        h = self._h
        if (N != h.shape[1]) if h is not None else (self._batch_size not in (None, N)):
            self._check_batch(N, "an unbatched chunk (batch size 1)" if unbatched else "a chunk")
        if g.training and _stochastic(g):
            raise RuntimeError(
                "GRUStream: expected the GRU in evaluation mode: in training its dropout, zoneout "
                "or weight-dropout masks are random, so chunks would not continue one sequence; "
                "call gru.eval() before streaming"
            )
        if h is None:
            self._set_h(x3.new_zeros(g.num_layers, N, g.hidden_size, dtype=w.dtype))  # (L, N, H)
        self._unbatched = unbatched

        rec = None
        if self.fast and T * N <= FAST_MAX_STEPS_ROWS and x.dtype == w.dtype:
            rec = self._weights()  # None where the parameters are not eligible
        if rec is not None and not torch.is_autocast_enabled("cpu"):
            lane = self._make_lane(x, rec)
            x3c = x3.resolve_neg().contiguous()  # (T, N, I), the kernel's layout
            y_np = np.empty((T, N, g.hidden_size), lane.dtype_np)  # (T, N, H)
            lane.chunk(x3c.data_ptr(), y_np, T, N, float(getattr(g, "zoneout", 0.0)))
            y = torch.from_numpy(y_np)
            self.path_used = "fast"
            self._lane = None if g.training else lane
        else:
            x_in = x3.transpose(0, 1) if g.batch_first else x3  # the module's layout
            with torch.no_grad():
                y, h_n = g(x_in, self._h)  # (T, N, H) ((N, T, H) with batch_first), (L, N, H)
            if g.batch_first:
                y = y.transpose(0, 1)  # (T, N, H)
            self._set_h(h_n.to(w.dtype).contiguous())
            self.path_used = "module"
        if unbatched:
            return y.squeeze(1)  # (T, H)
        return y.transpose(0, 1) if g.batch_first else y  # (N, T, H) or (T, N, H)

    def _call_lane(self, lane: _Lane, chunk: Tensor) -> Tensor | None:
        """The fast path for a chunk like the last one that took it (``lane``: same layout, dtype,
        batch size; contiguous; unchanged parameters; evaluation mode), with the checks that
        guarantee that and nothing else: at batch 1 and H = 64 the general path's conversions and
        validation cost more than the step. None: take the general path."""
        if not (
            type(chunk) is Tensor and chunk.dtype is lane.dtype and chunk.is_cpu and chunk.dim() == lane.dim
        ):
            return None
        shape = chunk.shape
        layout = _layout(shape, lane.dim, lane.batch_first, lane.H)
        if layout is None:
            return None
        T, N, out = layout
        g = self.gru
        if (
            shape[-1] != lane.I
            or N != lane.N
            or T < 1
            or T * N > FAST_MAX_STEPS_ROWS
            or g.training
            or not chunk.is_contiguous()
            or chunk.is_neg()
            or torch.is_autocast_enabled("cpu")
        ):
            return None
        if (
            _fast_key(g) != lane.fast_key
            or g.reset_after != lane.reset_after
            or torch.get_num_threads() != lane.torch_threads
        ):
            return None
        y = np.empty(out, lane.dtype_np)
        lane.chunk(chunk.data_ptr(), y, T, N, float(getattr(g, "zoneout", 0.0)))
        self.path_used = "fast"
        return torch.from_numpy(y)

    def _make_lane(self, x: Tensor, weights: np.ndarray) -> _Lane:
        """The fast path's arrays for chunks like ``x`` (see ``_Lane``): the state as a NumPy
        view, scratch for the longest chunk the fast path takes at this batch size, and the
        threads to split the hidden units over."""
        g = self.gru
        L, H = g.num_layers, g.hidden_size
        hv = self._h_np
        if hv is None:
            hv = self._h_np = cast(Tensor, self._h).numpy()  # (L, N, H), shares memory with _h
        N = hv.shape[1]
        s = self._scratch
        size = _kernel_module.scratch_size(max(1, FAST_MAX_STEPS_ROWS // N), N, H, L)
        if s is None or s.shape[0] < size or s.dtype != hv.dtype:
            s = self._scratch = np.empty(size, hv.dtype)
        torch_threads = torch.get_num_threads()
        threads = _split_threads(H, g.input_size, hv.itemsize, torch_threads)
        if threads > 1 and _omp_module is None:
            threads = 1
        return _Lane(x, g, weights, self._weights_key, hv, s, threads, torch_threads)

    def _weights(self) -> np.ndarray | None:
        """The fast path's record of the parameters' addresses (``_stream_kernel.record``), or
        None where it cannot take these parameters (not on the CPU, not float32/float64, layer
        norm, no Numba). Rebuilt only when a parameter's storage changed (replaced, moved, cast):
        the record points at the parameters' own memory, so in-place updates need nothing."""
        g = self.gru
        params = _params(g)
        names = g._flat_weights_names
        key = _weights_key(g)
        if key == self._weights_key:
            return self._weights_rec
        w = params.get(names[0])
        eligible = (
            None not in key  # no parametrization (which computes a weight on every access)
            and w is not None
            and w.device.type == "cpu"
            and w.dtype in (torch.float32, torch.float64)
            and not getattr(g, "layer_norm", False)
            and _kernel() is not None
        )
        rec = None
        if eligible:
            per = 4 if g.bias else 2
            layers = []
            for i in range(0, len(names), per):
                ps = [params[n].detach() for n in names[i : i + per]]
                if not g.bias:
                    ps += [ps[0].new_zeros(ps[0].shape[0])] * 2  # b_ih, b_hh (3H,)
                layers.append(tuple(np.ascontiguousarray(p.numpy()) for p in ps))
            rec = _kernel_module.weights_record(layers, g.reset_after)
            self._weights_alive = layers  # the record's memory (copies of non-contiguous ones)
        self._weights_rec = rec
        # a non-contiguous parameter was copied above: copy again next call
        contiguous = all(params[n].is_contiguous() for n in names)
        self._weights_key = key if contiguous else None
        return rec


class _Lane:
    """What ``GRUStream._call_lane`` checks a chunk against (the layout, dtype and batch size of
    the last chunk that took the fast path, the parameters' key, PyTorch's thread count), and
    what the kernel needs: its record (``_stream_kernel.record``) and the arrays it points at."""

    __slots__ = (
        "dtype",
        "dtype_np",
        "dim",
        "batch_first",
        "I",
        "N",
        "H",
        "key",
        "threads",
        "torch_threads",
        "fast_key",
        "reset_after",
        "rec",
        "call",
        "no_state",
        "alive",
    )

    def __init__(
        self,
        x: Tensor,
        g: GRU,
        weights: np.ndarray,
        key,
        hv: np.ndarray,
        s: np.ndarray,
        threads: int,
        torch_threads: int,
    ):
        self.dtype, self.dtype_np = x.dtype, hv.dtype
        self.dim, self.batch_first = x.dim(), g.batch_first
        self.I, self.N, self.H = g.input_size, hv.shape[1], g.hidden_size
        self.key, self.threads, self.torch_threads = key, threads, torch_threads
        # what a call checks instead of ``key`` (``_fast_key``); None where ``key`` is (no match)
        self.fast_key = None if key is None else _fast_key(g)
        self.reset_after = g.reset_after
        sync = np.zeros(16, np.int64)
        # the kernel, one entry for every use (each entry compiles the whole kernel again):
        # call(rec, x_addr, h0_addr, y, hn, T, N, zoneout), h0_addr = _KEEP to go on from the
        # record's state and hn = no_state to leave it there
        self.no_state = np.empty(0, self.dtype_np)
        if threads > 1:
            self.rec = _kernel_module.record(
                weights, hv, s, sync, threads, _omp_module.entry_address(hv.itemsize)
            )
            self.call = _omp_module.run_from
        else:
            self.rec = _kernel_module.record(weights, hv, s, sync, 1, 0)
            self.call = _kernel_module.chunk_from
        self.alive = (hv, s, sync)  # the record points at them

    def chunk(self, x_addr: int, y: np.ndarray, T: int, N: int, zoneout: float) -> None:
        """T steps from the record's state, which they advance: the input at ``x_addr`` ((T, N, I)
        in memory), the output into ``y`` (C-contiguous, T * N * H values, any shape)."""
        self.call(self.rec, x_addr, _KEEP, y.reshape(-1), self.no_state, T, N, zoneout)


# module -> {thread id: GRUStream}: the streams that run short module calls (``short_call``);
# weak, so a module's streams go with it, and per thread, so concurrent calls share no state
_SHORT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def short_call(gru: GRU, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor] | None:
    """``gru``'s forward pass over ``x`` (T, N, I) from ``h0`` (L, N, H), as ``(output (T, N, H),
    h_n (L, N, H))``, through the fast path's kernel; None where that cannot take the module's
    parameters (``GRUStream._weights``). For ``grukit.GRU.forward``'s short inference calls,
    which check everything else (one direction, no layer norm, no gradient, no random mask,
    T * N at most ``FAST_MAX_STEPS_ROWS``, dtypes and devices, no tracing). The stream behind
    it is private to the module and the calling thread; ``h0`` is copied into its state."""
    if _kernel() is None:
        return None
    streams = _SHORT.get(gru)
    if streams is None:
        streams = _SHORT[gru] = {}
    stream = streams.get(threading.get_ident())
    if stream is None:
        stream = streams[threading.get_ident()] = GRUStream(gru)
    rec = stream._weights()
    if rec is None:
        return None
    T, N = x.shape[0], x.shape[1]
    h = stream._h
    if h is None or h.shape != h0.shape:
        stream._set_h(h0.detach().clone(memory_format=torch.contiguous_format))  # (L, N, H)
    else:
        h.copy_(h0)  # in place: the lane's NumPy view of the state stays valid
    lane = stream._lane
    if (
        lane is None
        or lane.N != N
        or lane.dtype is not x.dtype
        or lane.key != stream._weights_key
        or lane.torch_threads != torch.get_num_threads()
    ):
        lane = stream._lane = stream._make_lane(x, rec)
    xc = x.resolve_neg().contiguous()  # (T, N, I), the kernel's layout
    y = np.empty((T, N, gru.hidden_size), lane.dtype_np)  # (T, N, H)
    lane.chunk(xc.data_ptr(), y, T, N, float(getattr(gru, "zoneout", 0.0)))
    return torch.from_numpy(y), cast(Tensor, stream._h).clone()  # (set above)


class CallLane:
    """``GRU.forward`` for calls like the last short one (``short_call``) that took the streaming
    kernel: the same input shape, dtype and layout (batched or not, ``batch_first``), ``hx``
    absent or of the same shape, contiguous, unchanged parameters, the same thread count. Such a
    call needs none of the forward's validation, which at N = 1, H = 64 costs several times the
    step (``scripts/step_costs.py``): ``run`` checks only what could differ from the call that
    built the lane and returns None where anything does (a random mask in training included).
    The caller (``GRU._lane_call``) checks the modes (no gradient, no tracing, transform,
    autocast or gate recording).
    Private to its module and calling thread, like the stream it runs on."""

    __slots__ = ("lane", "shape", "batch_first", "hx_shape", "T", "N", "out_shape", "hn_shape")

    def __init__(self, stream: GRUStream, x: Tensor, hx: Tensor | None, T: int, N: int):
        g = stream.gru
        lane = stream._lane
        assert lane is not None and stream._h is not None
        self.lane = lane  # its record points at the stream's state (L, N, H), which each call sets
        self.shape, self.batch_first = x.shape, g.batch_first
        self.hx_shape = None if hx is None else hx.shape
        self.T, self.N = T, N
        H = g.hidden_size
        layout = _layout(x.shape, x.dim(), g.batch_first, H)
        assert layout is not None  # (build checked it)
        self.out_shape: tuple[int, ...] = layout[2]
        self.hn_shape = (g.num_layers, H) if x.dim() == 2 else (g.num_layers, N, H)  # unbatched or not

    @classmethod
    def build(cls, gru: GRU, x: Tensor, hx: Tensor | None) -> CallLane | None:
        """The lane for calls like ``gru(x, hx)``, which has just run through ``short_call`` on
        this thread; None where such calls cannot take one (non-contiguous, or batch-first with
        more than one row and step, whose memory is not the kernel's (T, N, I))."""
        streams = _SHORT.get(gru)
        stream = None if streams is None else streams.get(threading.get_ident())
        if stream is None or stream._lane is None or stream._h is None:
            return None
        if type(x) is not Tensor or not x.is_contiguous() or x.is_neg():
            return None
        if hx is not None and (
            type(hx) is not Tensor or hx.requires_grad or not hx.is_contiguous() or hx.is_neg()
        ):
            return None
        layout = _layout(x.shape, x.dim(), gru.batch_first, gru.hidden_size)
        if layout is None:
            return None
        T, N, _ = layout
        if stream._lane.N != N or T * N > FAST_MAX_STEPS_ROWS:
            return None
        return cls(stream, x, hx, T, N)

    def run(self, g: GRU, x, hx) -> tuple[Tensor, Tensor] | None:
        """``g(x, hx)`` as ``(output, h_n)``, or None where the call is not like the lane's."""
        lane = self.lane
        if not (
            type(x) is Tensor
            and x.dtype is lane.dtype
            and x.shape == self.shape
            and x.is_cpu
            and g.batch_first is self.batch_first
            and x.is_contiguous()
            and not x.is_neg()
        ):
            return None
        if hx is None:
            if self.hx_shape is not None:
                return None
        elif not (
            type(hx) is Tensor
            and hx.shape == self.hx_shape
            and hx.dtype is lane.dtype
            and hx.is_cpu
            and not hx.requires_grad
            and hx.is_contiguous()
            and not hx.is_neg()
        ):
            return None
        if (
            _fast_key(g) != lane.fast_key  # (a parametrization takes a weight out of _parameters)
            or g.reset_after != lane.reset_after
            or torch.get_num_threads() != lane.torch_threads
            or (g.training and _stochastic(g))
        ):
            return None
        hn = np.empty(self.hn_shape, lane.dtype_np)  # (L, N, H) or (L, H)
        y = np.empty(self.out_shape, lane.dtype_np)
        h0 = 0 if hx is None else hx.data_ptr()  # 0: zeros
        lane.call(
            lane.rec,
            x.data_ptr(),
            h0,
            y.reshape(-1),
            hn.reshape(-1),
            self.T,
            self.N,
            float(getattr(g, "zoneout", 0.0)),
        )
        return torch.from_numpy(y), torch.from_numpy(hn)


def _layout(shape, dim: int, batch_first: bool, H: int) -> tuple[int, int, tuple[int, ...]] | None:
    """``(T, N, output shape)`` of a chunk or call input of ``shape`` and ``dim`` (2: unbatched
    (T, I); 3: (T, N, I), or (N, T, I) with ``batch_first``), or None where its memory is not
    the kernel's (T, N, I): batch-first with more than one row and step."""
    if dim == 2:
        return shape[0], 1, (shape[0], H)  # (T, I) -> (T, H)
    if batch_first:
        N, T = shape[0], shape[1]  # (N, T, I): (T, N, I) in memory when N or T is 1
        return None if N != 1 and T != 1 else (T, N, (N, T, H))
    return shape[0], shape[1], (shape[0], shape[1], H)  # (T, N, I) -> (T, N, H)


def _params(g: GRU) -> dict[str, Tensor]:
    """``g._parameters``, typed as what a GRU holds (no None entries)."""
    return cast("dict[str, Tensor]", g._parameters)


def _split_threads(H: int, I: int, itemsize: int, torch_threads: int) -> int:
    """Threads a chunk's hidden units are split over: one while a layer's weights are under
    ``SPLIT_MIN_BYTES`` (a parallel region costs more than it saves), else up to PyTorch's
    thread count with at least ``SPLIT_MIN_UNITS`` units each."""
    if 3 * H * (I + H) * itemsize < SPLIT_MIN_BYTES:
        return 1
    return max(1, min(torch_threads, H // SPLIT_MIN_UNITS))


def _weights_key(g: GRU) -> list:
    """What the fast path's record of ``g``'s weights depends on: every parameter's ``data_ptr``
    (a replaced, cast or moved parameter changes it; an in-place update does not need to) and
    ``reset_after``."""
    params = _params(g)
    key = [None if p is None else p.data_ptr() for p in map(params.get, g._flat_weights_names)]
    key.append(g.reset_after)
    return key


_data_ptr = Tensor.data_ptr


def _fast_key(g: GRU) -> tuple | None:
    """Every registered parameter's ``data_ptr``, in order: what a lane (``_Lane``) checks on
    each call instead of :func:`_weights_key` (half its cost), since the parameters in
    ``_parameters`` at the lane's creation were exactly the record's: a replaced, moved, cast or
    ``.data``-swapped parameter changes its entry, a parametrization removes it. None where an
    entry is None (never a lane's key)."""
    try:
        return tuple(map(_data_ptr, g._parameters.values()))  # type: ignore[arg-type]
    except TypeError:  # a parameter set to None
        return None


def _stochastic(g: GRU) -> bool:
    """Whether the module's forward draws random masks in training mode."""
    return (
        (g.dropout > 0 and g.num_layers > 1)
        or getattr(g, "zoneout", 0) > 0
        or getattr(g, "recurrent_dropout", 0) > 0
        or getattr(g, "weight_dropout", 0) > 0
    )
