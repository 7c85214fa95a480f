"""grukit.GRU(reset_after=True) against torch.nn.GRU: outputs, h_n and every gradient, on every
backend that can run on this machine (the default ``cpu`` first)."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import grukit

from conftest import tols

LAYERS = [1, 2, 3]
FLAGS = list(itertools.product([False, True], repeat=4))  # bidirectional, batch_first, bias, hx
MODES = ["batched", "unbatched", "packed"]
BACKENDS = ["cpu", "torch", "reference"]  # every backend that runs on CPU, the default first


def test_every_cpu_backend_is_in_the_matrix():
    """A backend added to the registry must join the parity matrix (or be refused on CPU here)."""
    request = grukit.backends.Request(torch.device("cpu"), torch.float32, True, True, False, True)
    runnable = {n for n in grukit.backends.names() if grukit.backends.get(n).check(request) is None}
    assert runnable == set(BACKENDS)


def make_pair(I, H, L, bidirectional, batch_first, bias, dtype, backend="reference"):
    torch.manual_seed(1)
    ours = grukit.GRU(
        I,
        H,
        L,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=dtype,
        reset_after=True,
        backend=backend,
    )
    theirs = torch.nn.GRU(
        I, H, L, bias=bias, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype
    )
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def make_input(mode, T, N, I, batch_first, dtype):
    if mode == "unbatched":
        return torch.randn(T, I, dtype=dtype, requires_grad=True), None
    x = torch.randn(N, T, I, dtype=dtype) if batch_first else torch.randn(T, N, I, dtype=dtype)
    x.requires_grad_(True)
    if mode == "packed":
        lengths = torch.tensor([3, T, 1, T - 2][:N])  # unsorted, includes the full length
        return x, lengths
    return x, None


def run(model, x, lengths, hx, batch_first):
    inp = (
        x
        if lengths is None
        else pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    )
    out, h_n = model(inp, hx)
    data = out.data if lengths is not None else out
    return data, h_n


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "flags", FLAGS, ids=lambda f: "".join("bBih"[i] if v else "-" for i, v in enumerate(f))
)
@pytest.mark.parametrize("L", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_torch_gru(backend, L, flags, mode, dtype):
    bidirectional, batch_first, bias, with_hx = flags
    T, N, I, H = 6, 4, 3, 5
    D = 2 if bidirectional else 1
    ours, theirs = make_pair(I, H, L, bidirectional, batch_first, bias, dtype, backend)
    x, lengths = make_input(mode, T, N, I, batch_first, dtype)
    hx = None
    if with_hx:
        shape = (D * L, H) if mode == "unbatched" else (D * L, N, H)
        hx = torch.randn(*shape, dtype=dtype, requires_grad=True)

    out_a, h_a = run(ours, x, lengths, hx, batch_first)
    assert ours.backend_used == backend
    out_b, h_b = run(theirs, x, lengths, hx, batch_first)
    tol = tols(dtype)
    torch.testing.assert_close(out_a, out_b, **tol)
    torch.testing.assert_close(h_a, h_b, **tol)

    # gradients of input, hx and every parameter, through both outputs
    g_out, g_h = torch.randn_like(out_a), torch.randn_like(h_a)
    wrt_a = [x] + ([hx] if with_hx else []) + list(ours.parameters())
    wrt_b = [x] + ([hx] if with_hx else []) + list(theirs.parameters())
    grads_a = torch.autograd.grad((out_a * g_out).sum() + (h_a * g_h).sum(), wrt_a)
    grads_b = torch.autograd.grad((out_b * g_out).sum() + (h_b * g_h).sum(), wrt_b)
    names = ["input"] + (["hx"] if with_hx else []) + [n for n, _ in ours.named_parameters()]
    for name, ga, gb in zip(names, grads_a, grads_b):
        torch.testing.assert_close(ga, gb, **tol, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_state_dict_exchanges_both_ways_strictly(bidirectional):
    ours = grukit.GRU(4, 6, 2, bidirectional=bidirectional, reset_after=True)
    theirs = torch.nn.GRU(4, 6, 2, bidirectional=bidirectional)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(7, 3, 4)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])
    fresh = grukit.GRU(4, 6, 2, bidirectional=bidirectional, reset_after=True)
    fresh.load_state_dict(theirs.state_dict(), strict=True)
    torch.testing.assert_close(fresh(x)[1], theirs(x)[1])


@pytest.mark.parametrize("cls", ["GRU", "GRUCell"])
def test_same_seed_gives_torch_initialisation(cls):
    args = (5, 7, 2) if cls == "GRU" else (5, 7)
    torch.manual_seed(42)
    ours = getattr(grukit, cls)(*args)
    torch.manual_seed(42)
    theirs = getattr(torch.nn, cls)(*args)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert a.shape == b.shape
        assert torch.equal(a, b)
    bound = 1 / 7**0.5
    assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch_cell(bias, batched):
    torch.manual_seed(3)
    ours = grukit.GRUCell(4, 5, bias=bias, dtype=torch.float64, reset_after=True)
    theirs = torch.nn.GRUCell(4, 5, bias=bias, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 4, dtype=torch.float64) if batched else torch.randn(4, dtype=torch.float64)
    h = torch.randn(3, 5, dtype=torch.float64) if batched else torch.randn(5, dtype=torch.float64)
    for hx in (None, h):
        a, b = ours(x, hx), theirs(x, hx)
        torch.testing.assert_close(a, b, **tols(torch.float64))
        ga = torch.autograd.grad(a.sum(), list(ours.parameters()))
        gb = torch.autograd.grad(b.sum(), list(theirs.parameters()))
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v, **tols(torch.float64))
