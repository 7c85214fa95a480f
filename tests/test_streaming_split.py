"""The stream's fast path split by hidden units over OpenMP threads (``_stream_omp``), and the
fast lane a stream takes for chunks like its last one (``GRUStream._call_lane``).

Oracles: one pass of the module over the whole sequence (``fast=False`` never touches the
kernels), and the same stream computed on one thread.
"""

import pytest
import torch

import grukit
from grukit import streaming
from grukit.streaming import _kernel
from tests.conftest import run_script

TOL = {torch.float64: dict(rtol=0, atol=1e-12), torch.float32: dict(rtol=0, atol=1e-5)}
pytestmark = pytest.mark.skipif(_kernel() is None, reason="Numba kernels unavailable")


@pytest.fixture
def split(monkeypatch):
    """Split every fast chunk, 16 units a block at least, over ``threads`` threads."""
    if streaming._omp_module is None:
        pytest.skip("the OpenMP launch is unavailable")
    monkeypatch.setattr(streaming, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(streaming, "SPLIT_MIN_UNITS", 16)
    before = torch.get_num_threads()

    def threads(n: int) -> None:
        torch.set_num_threads(n)

    yield threads
    torch.set_num_threads(before)


def _stream_steps(gru, x, h0, sizes):
    stream = gru.stream()
    stream.state = h0
    ys, t = [], 0
    for size in sizes:
        ys.append(stream(x[t : t + size]))
        t += size
    return torch.cat(ys), stream


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("N", [1, 3, 6])  # 6 rows: the products go through the GEMM
@pytest.mark.parametrize("threads", [2, 3])
def test_split_stream_equals_one_pass(split, dtype, reset_after, layers, N, threads):
    split(threads)
    H = 16 * threads + 8  # blocks of 16 units, the last one wider
    kw = {"zoneout": 0.25} if layers == 3 else {}
    gru = grukit.GRU(5, H, layers, reset_after=reset_after, dtype=dtype, **kw).eval()
    x = torch.randn(9, N, 5, dtype=dtype)
    h0 = torch.randn(layers, N, H, dtype=dtype)
    y_ref, h_ref = gru(x, h0)
    y, stream = _stream_steps(gru, x, h0, [1, 3, 1, 4])
    assert stream.path_used == "fast" and stream._lane.threads == threads
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(stream.state, h_ref, **TOL[dtype])
    split(1)  # the same stream on one thread
    y1, stream1 = _stream_steps(gru, x, h0, [1, 3, 1, 4])
    assert stream1._lane.threads == 1
    torch.testing.assert_close(y, y1, **TOL[dtype])


def test_thread_count_changes_are_followed(split):
    split(2)
    gru = grukit.GRU(4, 40, dtype=torch.float64).eval()
    x = torch.randn(6, 1, 4, dtype=torch.float64)
    stream = gru.stream()
    y = [stream(x[:2])]
    assert stream._lane.threads == 2
    split(1)
    y.append(stream(x[2:4]))
    assert stream._lane.threads == 1
    split(2)
    y.append(stream(x[4:]))
    assert stream._lane.threads == 2
    torch.testing.assert_close(torch.cat(y), gru(x)[0], **TOL[torch.float64])


def test_a_smaller_openmp_team_runs_on_the_calling_thread(tmp_path):
    """With OMP_THREAD_LIMIT=1 OpenMP grants one thread where the split asks two: the callbacks
    must touch nothing and the chunk run on the calling thread, not wait forever."""
    out = run_script(
        tmp_path / "limited.py",
        "import torch, grukit\n"
        "from grukit import streaming\n"
        "streaming._kernel()\n"
        "streaming.SPLIT_MIN_BYTES, streaming.SPLIT_MIN_UNITS = 0, 16\n"
        "torch.set_num_threads(2)\n"
        "omp = streaming._omp_module\n"
        "assert omp is not None\n"
        "ran = []\n"
        "real = omp.run_from\n"
        "def spy(*a):\n"
        "    ran.append(real(*a))\n"
        "    return ran[-1]\n"
        "omp.run_from = spy\n"
        "gru = grukit.GRU(3, 40, dtype=torch.float64).eval()\n"
        "x = torch.randn(5, 2, 3, dtype=torch.float64)\n"
        "s = gru.stream()\n"
        "y = torch.cat([s(x[t : t + 1]) for t in range(5)])\n"
        "torch.testing.assert_close(y, gru(x)[0], rtol=0, atol=1e-12)\n"
        "assert ran == [1] * 5, ran\n"
        "print('ok')\n",
        OMP_THREAD_LIMIT="1",
    )
    assert out == "ok"


# -- the lane: every change since the last fast chunk must send the call to the general path ----


def _fresh(gru, x):
    """The reference: a new stream over the same steps, on the module's path."""
    s = gru.stream(fast=False)
    return torch.cat([s(x[t : t + 1]) for t in range(x.shape[0])])


def test_lane_sees_replaced_parameter_storage():
    gru = grukit.GRU(3, 8, dtype=torch.float64).eval()
    x = torch.randn(4, 1, 3, dtype=torch.float64)
    new = torch.randn(24, 8, dtype=torch.float64)
    old = gru.weight_hh_l0.detach().clone()
    ys = []
    for fast in (True, False):  # the module's path is the oracle for the same events
        with torch.no_grad():
            gru.weight_hh_l0.data = old.clone()
        stream = gru.stream(fast=fast)
        y = [stream(x[0:1]), stream(x[1:2])]
        assert (stream._lane is not None) == fast
        with torch.no_grad():
            gru.weight_hh_l0.data = new.clone()  # the same Parameter object, new memory
        y += [stream(x[2:3]), stream(x[3:4])]
        ys.append(torch.cat(y))
    torch.testing.assert_close(ys[0], ys[1], **TOL[torch.float64])


def test_lane_sees_a_cast_and_new_layouts():
    gru = grukit.GRU(3, 8, batch_first=True).eval()
    x = torch.randn(1, 6, 3)
    stream = gru.stream()
    stream(x[:, :2])
    gru.double()
    stream.state = None
    xd = x.double()
    ys = [stream(xd[:, :2]), stream(xd[:, 2:3])]  # float64 now
    ys.append(stream(xd[0, 3:4]).unsqueeze(0))  # an unbatched chunk
    strided = torch.stack([xd[:, 4:], torch.zeros_like(xd[:, 4:])], -1)[..., 0]  # steps 4, 5
    assert not strided.is_contiguous()
    ys.append(stream(strided))
    ref = gru(xd)[0]
    torch.testing.assert_close(torch.cat(ys, 1), ref, **TOL[torch.float64])


def test_lane_sees_negative_views_and_training_mode():
    gru = grukit.GRU(3, 8, dtype=torch.float64, zoneout=0.3).eval()
    x = torch.randn(3, 1, 3, dtype=torch.float64)
    stream = gru.stream()
    a = stream(x[0:1])
    b = stream(torch._neg_view(-x[1:2]))  # a view whose memory holds the negated values
    c = stream(x[2:3])
    torch.testing.assert_close(torch.cat([a, b, c]), gru(x)[0], **TOL[torch.float64])
    gru.train()
    with pytest.raises(RuntimeError, match="evaluation mode"):
        stream(x[0:1])


def test_the_kernel_refuses_an_output_that_does_not_fit():
    import numpy as np

    from grukit.backends import _stream_kernel as S

    layers = [tuple(np.zeros(s) for s in ((12, 3), (12, 4), (12,), (12,)))]
    w = S.weights_record(layers, True)
    h, s, sync = np.zeros((1, 2, 4)), np.zeros(S.scratch_size(1, 2, 4, 1)), np.zeros(16, np.int64)
    rec = S.record(w, h, s, sync, 1, 0)
    x = np.zeros((1, 2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        S.chunk(rec, x.ctypes.data, np.zeros(4), 1, 2, 0.0)  # 4 outputs for 8
    with pytest.raises(ValueError, match="does not fit"):
        S.chunk(rec, x.ctypes.data, np.zeros(12), 1, 3, 0.0)  # batch 3 for a state of 2


def test_the_keep_marker_is_the_kernels():
    from grukit import streaming
    from grukit.backends import _stream_kernel as S

    assert streaming._KEEP == S.KEEP
