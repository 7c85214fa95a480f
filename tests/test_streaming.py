"""Streaming inference (issue 14, part 3): ``gru.stream()`` carries the state between chunks.

Oracles: one pass of the module over the whole sequence (the property: chunks end to end equal one
pass), and ``torch.nn.GRU`` for ``reset_after=True``.
"""

import pytest
import torch

import grukit
from grukit._validate import InputError
from grukit.streaming import GRUStream, _kernel
from tests.conftest import tols

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: dict(rtol=0, atol=1e-12), torch.float32: dict(rtol=0, atol=1e-5)}
needs_fast = pytest.mark.skipif(_kernel() is None, reason="Numba kernels unavailable")


def _chunks(T: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """Random chunk bounds covering 0..T, sizes 1..5, at least one of size 1."""
    bounds, t = [], 0
    while t < T:
        size = 1 if not bounds else int(torch.randint(1, 6, (1,), generator=gen))
        bounds.append((t, min(T, t + size)))
        t = bounds[-1][1]
    return bounds


def _run_chunked(stream: GRUStream, x: torch.Tensor, bounds, time_dim: int) -> torch.Tensor:
    return torch.cat([stream(x.narrow(time_dim, a, b - a)) for a, b in bounds], time_dim)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("layout", ["batched", "batch_first", "unbatched"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "module"])
def test_chunks_equal_one_pass(dtype, reset_after, layers, layout, fast):
    gru = grukit.GRU(
        4, 6, layers, batch_first=layout == "batch_first", reset_after=reset_after, dtype=dtype
    ).eval()
    T, N = 17, 3
    shape = {"batched": (T, N, 4), "batch_first": (N, T, 4), "unbatched": (T, 4)}[layout]
    x = torch.randn(shape, dtype=dtype)
    h0 = torch.randn((layers, N, 6) if layout != "unbatched" else (layers, 6), dtype=dtype)
    y_ref, h_ref = gru(x, h0)
    time_dim = 1 if layout == "batch_first" else 0
    stream = gru.stream(fast=fast)
    stream.state = h0
    y = _run_chunked(stream, x, _chunks(T, torch.Generator().manual_seed(layers)), time_dim)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(stream.state, h_ref, **TOL[dtype])
    assert stream.path_used == ("fast" if fast and _kernel() is not None else "module")


def test_one_step_matches_torch_nn_gru():
    """The independent oracle: torch.nn.GRU (reset_after=True is its formulation)."""
    ref = torch.nn.GRU(3, 8, 2, dtype=torch.float64)
    gru = grukit.GRU(3, 8, 2, reset_after=True, dtype=torch.float64)
    gru.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        y_ref, h_ref = ref(x)
    stream = gru.stream()
    y = torch.cat([stream(x[t : t + 1]) for t in range(6)])
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    torch.testing.assert_close(stream.state, h_ref, **TOL[torch.float64])


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
def test_fast_path_agrees_with_module_path(dtype, reset_after):
    gru = grukit.GRU(5, 9, 2, bias=False, reset_after=reset_after, dtype=dtype).eval()
    x = torch.randn(12, 2, 5, dtype=dtype)
    fast, slow = gru.stream(fast=True), gru.stream(fast=False)
    for t in range(12):
        torch.testing.assert_close(fast(x[t : t + 1]), slow(x[t : t + 1]), **tols(dtype))
    assert (fast.path_used, slow.path_used) == ("fast", "module")
    torch.testing.assert_close(fast.state, slow.state, **tols(dtype))


def test_long_chunk_takes_module_path_and_continues():
    gru = grukit.GRU(2, 4, dtype=torch.float64)
    x = torch.randn(300, 1, 2, dtype=torch.float64)
    y_ref, _ = gru(x)
    stream = gru.stream()
    y1 = stream(x[:1])
    y2 = stream(x[1:])  # T * N = 299 > FAST_MAX_STEPS_ROWS
    assert stream.path_used == "module"
    torch.testing.assert_close(torch.cat([y1, y2]), y_ref, **TOL[torch.float64])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "module"])
def test_reset_selected_rows_starts_fresh_sequences(fast):
    gru = grukit.GRU(3, 5, 2, dtype=torch.float64).eval()
    a = torch.randn(4, 3, 3, dtype=torch.float64)  # (T, N, I) before the reset
    b = torch.randn(5, 3, 3, dtype=torch.float64)  # after
    stream = gru.stream(fast=fast)
    stream(a)
    h_before = stream.state
    stream.reset([0, 2])
    y = stream(b)
    # rows 0 and 2: a fresh sequence b; row 1: the continuation of a then b
    y_fresh, _ = gru(b[:, [0, 2]])
    y_cont, _ = gru(torch.cat([a[:, 1:2], b[:, 1:2]]))
    torch.testing.assert_close(y[:, [0, 2]], y_fresh, **TOL[torch.float64])
    torch.testing.assert_close(y[:, 1:2], y_cont[4:], **TOL[torch.float64])
    assert not torch.equal(stream.state[:, 1], h_before[:, 1])  # row 1 moved on
    stream.reset(torch.tensor([True, False, False]))
    assert torch.all(stream.state[:, 0] == 0) and torch.all(stream.state[:, 1:] != 0)
    stream.reset()
    assert torch.all(stream.state == 0) and stream.state.shape == (2, 3, 5)


def test_state_round_trip_and_copies():
    gru = grukit.GRU(3, 4, 2, dtype=torch.float64)
    stream = gru.stream()
    assert stream.state is None and stream.batch_size is None
    h = torch.randn(2, 5, 4, dtype=torch.float64)
    stream.state = h
    got = stream.state
    assert torch.equal(got, h) and got.data_ptr() != h.data_ptr()
    got.zero_()  # a copy: the stream's state is untouched
    h.zero_()
    assert not torch.all(stream.state == 0)
    y = stream(torch.randn(1, 5, 3, dtype=torch.float64))
    assert y.shape == (1, 5, 4) and stream.batch_size == 5
    stream.state = None
    stream(torch.randn(2, 3, dtype=torch.float64))  # unbatched: a new batch of 1
    assert stream.state.shape == (2, 4)


def test_errors_are_clear():
    gru = grukit.GRU(3, 4, 2, dtype=torch.float64)
    stream = gru.stream(batch_size=2)
    with pytest.raises(InputError, match="input_size = 3, got 5"):
        stream(torch.randn(1, 2, 5, dtype=torch.float64))
    with pytest.raises(InputError, match="batch size 2 .batch_size., got 3"):
        stream(torch.randn(1, 3, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="dtype torch.float64"):
        stream(torch.randn(1, 2, 3, dtype=torch.float32))
    with pytest.raises(InputError, match="2-D .T, I. or 3-D chunk, got 4-D"):
        stream(torch.randn(1, 1, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="at least 1 step, got 0"):
        stream(torch.randn(0, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        stream([[0.0, 1.0, 2.0]])
    with pytest.raises(InputError, match=r"\(num_layers, N, H\) = \(2, 2, 4\), got \(1, 2, 4\)"):
        stream.state = torch.zeros(1, 2, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="dtype"):
        stream.state = torch.zeros(2, 2, 4, dtype=torch.float32)
    stream(torch.randn(1, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="batch size 2 .the carried state., got 1"):
        stream(torch.randn(1, 3, dtype=torch.float64))
    with pytest.raises(InputError, match=r"row indices in \[-2, 2\), got \[2\]"):
        stream.reset(2)
    with pytest.raises(InputError, match=r"bool mask of shape \(2,\)"):
        stream.reset(torch.tensor([True]))
    with pytest.raises(ValueError, match="unidirectional GRU, got bidirectional=True"):
        grukit.GRU(3, 4, bidirectional=True).stream()
    noisy = grukit.GRU(3, 4, 2, dropout=0.5).train()
    with pytest.raises(RuntimeError, match="evaluation mode"):
        noisy.stream()(torch.randn(1, 3))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "module"])
def test_no_autograd_graph_and_parameters_untouched(fast):
    gru = grukit.GRU(3, 4, dtype=torch.float32)
    before = {k: v.clone() for k, v in gru.state_dict().items()}
    x = torch.randn(1, 2, 3, requires_grad=True)
    stream = gru.stream(fast=fast)
    y = stream(x)
    assert not y.requires_grad and y.grad_fn is None
    assert not stream.state.requires_grad
    for k, v in gru.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "module"])
def test_parameter_updates_are_seen(fast):
    gru = grukit.GRU(3, 4, dtype=torch.float64)
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    stream = gru.stream(fast=fast)
    stream.state = h0
    stream(x)
    with torch.no_grad():  # an optimiser step: in place
        gru.weight_hh_l0.mul_(0.5)
    stream.state = h0
    torch.testing.assert_close(stream(x), gru(x, h0)[0], **TOL[torch.float64])
    gru.weight_ih_l0 = torch.nn.Parameter(torch.randn(12, 3, dtype=torch.float64))  # replaced
    stream.state = h0
    torch.testing.assert_close(stream(x), gru(x, h0)[0], **TOL[torch.float64])


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
def test_variants_in_evaluation_stream_like_one_pass(reset_after):
    kw = {}
    for key, value in (("zoneout", 0.3), ("layer_norm", True)):
        if hasattr(grukit.GRU(1, 1), key):
            kw[key] = value
    if not kw:
        pytest.skip("this GRU has no variants yet")
    gru = grukit.GRU(3, 5, 2, reset_after=reset_after, dtype=torch.float64, **kw).eval()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    y_ref, h_ref = gru(x)
    stream = gru.stream()
    y = torch.cat([stream(x[t : t + 1]) for t in range(7)])
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    torch.testing.assert_close(stream.state, h_ref, **TOL[torch.float64])
    zoned = grukit.GRU(3, 5, reset_after=reset_after, dtype=torch.float64, zoneout=0.4).eval()
    y_ref, _ = zoned(x)
    stream = zoned.stream()
    y = torch.cat([stream(x[t : t + 1]) for t in range(7)])
    assert stream.path_used == ("fast" if _kernel() is not None else "module")
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
