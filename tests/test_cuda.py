"""grukit on CUDA against torch.nn.GRU (cuDNN): forward and backward, every gradient. Runs where a
GPU exists; skipped elsewhere."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


def _pair(reset_after=True, bidirectional=False, dtype=torch.float64):
    ours = grukit.GRU(3, 8, 2, bidirectional=bidirectional, reset_after=reset_after, device=CUDA, dtype=dtype)
    theirs = torch.nn.GRU(3, 8, 2, bidirectional=bidirectional, device=CUDA, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _run(m, inp, hx):
    out, h_n = m(inp, hx)
    data = out.data if hasattr(out, "batch_sizes") else out
    loss = data.square().sum() + (h_n**3).sum()
    grads = torch.autograd.grad(loss, [inp.data if hasattr(inp, "batch_sizes") else inp, hx, *m.parameters()])
    return [data, h_n, *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_training_on_cuda_matches_torch_nn_gru(packed, bidirectional, dtype):
    """Forward and backward of a reset_after=True GRU on CUDA (auto picks the torch backend, i.e.
    cuDNN, whose backward needs the forward run in training mode) equal torch.nn.GRU's."""
    ours, theirs = _pair(bidirectional=bidirectional, dtype=dtype)
    D = 2 if bidirectional else 1
    hx = torch.randn(2 * D, 3, 8, device=CUDA, dtype=dtype, requires_grad=True)
    seqs = [torch.randn(n, 3, device=CUDA, dtype=dtype) for n in (5, 7, 2)]
    if packed:
        inp = pack_sequence(seqs, enforce_sorted=False)
        inp.data.requires_grad_()
    else:
        inp = torch.stack([s[:2] for s in seqs], 1).requires_grad_()
    got, expected = _run(ours, inp, hx), _run(theirs, inp, hx)
    assert ours.backend_used == "torch"
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **tol)


def test_reset_before_trains_on_cuda_like_the_cpu_reference():
    """reset_after=False on CUDA (the reference backend) against the same model on CPU."""
    gpu = grukit.GRU(3, 8, 2, dtype=torch.float64, device=CUDA)
    cpu = grukit.GRU(3, 8, 2, dtype=torch.float64, backend="reference")
    cpu.load_state_dict(gpu.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    results = []
    for m, inp in ((gpu, x.to(CUDA)), (cpu, x)):
        out, h_n = m(inp)
        results.append(
            [
                out.cpu(),
                h_n.cpu(),
                *(g.cpu() for g in torch.autograd.grad(out.square().sum() + h_n.sum(), list(m.parameters()))),
            ]
        )
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_autocast_on_cuda_behaves_as_torch_nn_gru():
    ours, theirs = _pair(dtype=torch.float32)
    x = torch.randn(6, 2, 3, device=CUDA)
    with torch.autocast("cuda", dtype=torch.float16):
        a, ha = ours(x)
        b, hb = theirs(x)
    assert (a.dtype, ha.dtype) == (b.dtype, hb.dtype)
    torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-3)
