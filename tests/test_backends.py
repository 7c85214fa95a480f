"""The backend seam: registry, eligibility, selection, and every backend against the reference."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
from grukit import backends
from conftest import tols

F64 = torch.float64


def test_registry_lists_the_builtin_backends():
    assert backends.names() == ["cpu", "torch", "reference"]  # priority order
    assert backends.get("reference").name == "reference"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_auto_on_cpu_runs_the_fused_kernels_and_says_so(reset_after, dtype):
    gru = grukit.GRU(3, 4, reset_after=reset_after, dtype=dtype)
    x = torch.randn(5, 2, 3, dtype=dtype)
    assert gru.backend_used is None
    assert gru.backend_for(x) == "cpu"
    gru(x)
    assert gru.backend_used == "cpu"


def test_auto_falls_back_to_reference_where_the_kernels_do_not_apply():
    gru = grukit.GRU(3, 4, dtype=torch.bfloat16)
    gru(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    assert gru.backend_used == "reference"
    with pytest.raises(backends.BackendUnavailable, match="'cpu' cannot run this input: supports float32 and float64, got torch.bfloat16"):
        grukit.GRU(3, 4, dtype=torch.bfloat16, backend="cpu")(torch.randn(5, 2, 3, dtype=torch.bfloat16))


def test_explicit_backend_that_cannot_run_raises_with_the_reason():
    gru = grukit.GRU(3, 4, backend="torch")  # reset_after=False: PyTorch has no such GRU
    with pytest.raises(backends.BackendUnavailable, match="'torch' cannot run this input: PyTorch implements only reset_after=True"):
        gru(torch.randn(5, 2, 3))


def test_explain_gives_a_reason_per_backend():
    req = backends.Request(torch.device("cpu"), torch.float32, reset_after=False, bias=True,
                           packed=False, requires_grad=True)
    reasons = backends.explain(req)
    assert reasons["reference"] is None and reasons["cpu"] is None
    assert "reset_after=True" in reasons["torch"]
    cuda_req = backends.Request(torch.device("cuda"), torch.float32, True, True, False, True)
    assert backends.select("auto", cuda_req).name == "torch"  # cuDNN where it applies
    assert "CPU tensors only" in backends.explain(cuda_req)["cpu"]


def test_backend_can_be_switched_on_a_module():
    gru = grukit.GRU(3, 4, reset_after=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    a = gru(x)[0]
    gru.backend = "torch"
    b = gru(x)[0]
    assert gru.backend_used == "torch"
    torch.testing.assert_close(a, b, **tols(F64))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_torch_backend_matches_reference_with_gradients(bidirectional, packed):
    ref = grukit.GRU(3, 4, 2, bidirectional=bidirectional, dtype=F64, reset_after=True, backend="reference")
    nat = grukit.GRU(3, 4, 2, bidirectional=bidirectional, dtype=F64, reset_after=True, backend="torch")
    nat.load_state_dict(ref.state_dict())
    D = 2 if bidirectional else 1
    hx = torch.randn(2 * D, 3, 4, dtype=F64)
    seqs = [torch.randn(n, 3, dtype=F64) for n in (2, 5, 3)]
    inp = pack_sequence(seqs, enforce_sorted=False) if packed else torch.stack([s[:2] for s in seqs], 1)
    outs = []
    for m in (ref, nat):
        out, h = m(inp, hx)
        data = out.data if packed else out
        grads = torch.autograd.grad(data.sum() + h.square().sum(), list(m.parameters()))
        outs.append((data, h, grads))
    (d1, h1, g1), (d2, h2, g2) = outs
    torch.testing.assert_close(d1, d2, **tols(F64))
    torch.testing.assert_close(h1, h2, **tols(F64))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **tols(F64))
