"""The lean inference kernel (``backends/_infer_kernel.py``): eager inference on one block of the
calling thread runs it instead of the fused kernel; it must give what the reference backend (a
Python loop written from the equations) gives, in every case the fused kernel handles there."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
from grukit.backends import _blas, _cpu_base, _infer_kernel
from tests.conftest import run_script

F64 = torch.float64


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every plan is one block on the calling thread
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def lean_calls(monkeypatch):
    """How many calls reached the lean kernel."""
    calls = []
    forward = _infer_kernel.forward

    def counted(*args):
        calls.append(args[0].shape)
        return forward(*args)

    monkeypatch.setattr(_infer_kernel, "forward", counted)
    return calls


def _pair(reset_after, dtype, **options):
    ref = grukit.GRU(5, 24, 2, dtype=F64, reset_after=reset_after, backend="reference", **options)
    lean = grukit.GRU(5, 24, 2, dtype=dtype, reset_after=reset_after, backend="cpu", **options)
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-0.6, 0.6)  # gates away from 1/2, so a wrong term shows
    lean.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    return ref.eval(), lean.eval()


def _tolerance(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("dtype", ["float32-packed", "float32-plain", "float64"])
def test_matches_the_reference_with_padding_both_directions_and_hx(
    reset_after, dtype, one_thread, lean_calls, monkeypatch
):
    """Packed sequences of unequal lengths (rows past their end keep their state, output 0),
    two layers, both directions, a given ``hx``, sequences long enough for several projected
    chunks (``PROJECT_ROWS``), in float64 and in float32 with the packed products on and off."""
    if dtype == "float32-packed" and not _blas.has_packed_gemm():
        pytest.skip("no MKL packed GEMM in PyTorch's library")
    if dtype == "float32-plain":
        monkeypatch.setenv(_cpu_base.PACKED_ENV, "0")
    dt = F64 if dtype == "float64" else torch.float32
    ref, lean = _pair(reset_after, dt, bidirectional=True)
    lengths = (300, 17, 1, 263)  # over a chunk of 256 / N = 64 steps, and a one-step row
    seqs = [torch.randn(n, 5, dtype=F64) for n in lengths]
    hx = torch.randn(4, len(lengths), 24, dtype=F64)
    with torch.no_grad():
        out_r, h_r = ref(pack_sequence(seqs, enforce_sorted=False), hx)
        out_l, h_l = lean(pack_sequence([s.to(dt) for s in seqs], enforce_sorted=False), hx.to(dt))
    assert lean_calls, "the lean kernel did not run"
    torch.testing.assert_close(out_l.data.double(), out_r.data, **_tolerance(dt))
    torch.testing.assert_close(h_l.double(), h_r, **_tolerance(dt))


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_the_reference_without_bias_with_zoneout_and_batch_first(
    reset_after, batch, one_thread, lean_calls
):
    """No biases, evaluation's zoneout (``h = p h_prev + (1 - p) h'``), ``batch_first``, and a
    single row, in float32."""
    ref, lean = _pair(reset_after, torch.float32, bias=False, zoneout=0.3, batch_first=True)
    x = torch.randn(batch, 70, 5, dtype=F64)
    with torch.no_grad():
        out_r, h_r = ref(x)
        out_l, h_l = lean(x.float())
    assert lean_calls
    torch.testing.assert_close(out_l.double(), out_r, **_tolerance(torch.float32))
    torch.testing.assert_close(h_l.double(), h_r, **_tolerance(torch.float32))


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
def test_torch_gru_agrees_where_it_applies(reset_after, one_thread, lean_calls):
    """``reset_after=True`` is ``torch.nn.GRU``; the spec's formulation has no torch twin, so it
    is checked against the reference above and here only for its shape and state carry: two
    halves with the state passed on equal one pass."""
    torch.manual_seed(0)
    gru = grukit.GRU(7, 33, reset_after=reset_after, backend="cpu").eval()
    x = torch.randn(120, 2, 7)
    with torch.no_grad():
        y, h = gru(x)
        y1, h1 = gru(x[:50])
        y2, h2 = gru(x[50:], h1)
        if reset_after:
            ref = torch.nn.GRU(7, 33)
            ref.load_state_dict(gru.state_dict())
            y_t, h_t = ref(x)
            torch.testing.assert_close(y, y_t, rtol=2e-5, atol=2e-6)
            torch.testing.assert_close(h, h_t, rtol=2e-5, atol=2e-6)
    assert len(lean_calls) == 3
    torch.testing.assert_close(torch.cat([y1, y2]), y, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(h2, h, rtol=1e-6, atol=1e-7)


def test_only_eager_inference_on_one_block_takes_it(one_thread, lean_calls, monkeypatch):
    """A call that needs a gradient, and every call with ``GRUKIT_CPU_LEAN=0``, takes the fused
    kernel."""
    gru = grukit.GRU(4, 16, backend="cpu")
    x = torch.randn(9, 2, 4)
    y, _ = gru(x)  # training: saves for the backward
    assert y.requires_grad and not lean_calls
    with torch.no_grad():
        gru(x)
    assert len(lean_calls) == 1
    monkeypatch.setenv(_cpu_base.LEAN_ENV, "0")
    with torch.no_grad():
        gru(x)
    assert len(lean_calls) == 1


def test_the_argument_record_names_the_kernels_parameters_in_order():
    import inspect

    params = list(inspect.signature(_infer_kernel.forward.py_func).parameters)
    assert list(_infer_kernel.Args._fields) == params


def test_an_inference_on_one_thread_never_loads_the_fused_kernel(tmp_path):
    """A process whose calls all take the lean kernel compiles (or reads from Numba's cache)
    neither fused kernel: a first run pays for what it uses only."""
    out = run_script(
        tmp_path / "lean.py",
        "import torch, grukit\n"
        "from grukit.backends import _cpu_kernels as K, _infer_kernel as L\n"
        "torch.set_num_threads(1)\n"
        "m = grukit.GRU(3, 64, backend='cpu', reset_after=True)\n"
        "with torch.no_grad():\n"
        "    m(torch.randn(300, 2, 3))\n"
        "assert m.backend_used == 'cpu', m.backend_used\n"
        "assert not K.forward.signatures and not K.backward.signatures\n"
        "assert len(L.forward.signatures) == 1, L.forward.signatures\n"
        "print('ok')\n",
    )
    assert out == "ok"
