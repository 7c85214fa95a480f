"""grukit.GRU under autocast and under torch.func, with torch.nn.GRU (same weights) as the oracle.

What torch.nn.GRU does under ``torch.autocast("cpu", dtype=bfloat16)`` (torch 2.13, found by
experiment): it accepts an input of another floating dtype than its parameters (not float64,
which autocast never casts), runs its products in bfloat16 and returns the dtype of its state
promoted with autocast's: float32 for a float32 input, bfloat16 for a bfloat16 one, float32 for a
float16 one. Without autocast a bfloat16 input is an error.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
from grukit._validate import InputError

BF16 = torch.bfloat16
BF16_TOL = dict(rtol=2e-2, atol=1e-2)  # a few bfloat16 ulps (2^-8 relative) through 6 steps


def _pair(backend="auto", **kw):
    torch.manual_seed(1)
    ours = grukit.GRU(3, 8, reset_after=True, backend=backend, **kw)
    theirs = torch.nn.GRU(
        3, 8, bidirectional=kw.get("bidirectional", False), num_layers=kw.get("num_layers", 1)
    )
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("backend", ["auto", "reference", "torch"])
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_autocast_gives_torch_nn_gru_dtypes_and_values(input_dtype, autocast_dtype, backend):
    ours, theirs = _pair(backend, num_layers=2, bidirectional=True)
    x = torch.randn(6, 2, 3).to(input_dtype)
    with torch.autocast("cpu", dtype=autocast_dtype):
        out, h_n = ours(x)
        ref_out, ref_h = theirs(x)
    if backend == "auto":
        assert ours.backend_used == "cpu"
    assert (out.dtype, h_n.dtype) == (ref_out.dtype, ref_h.dtype)
    torch.testing.assert_close(out.float(), ref_out.float(), **BF16_TOL)
    torch.testing.assert_close(h_n.float(), ref_h.float(), **BF16_TOL)


def test_autocast_with_a_packed_input_and_an_initial_state_of_another_dtype():
    ours, theirs = _pair()
    seqs = [torch.randn(n, 3).to(BF16) for n in (5, 2, 6)]
    hx = torch.randn(1, 3, 8)  # float32 state, bfloat16 input
    with torch.autocast("cpu", dtype=BF16):
        out, h_n = ours(pack_sequence(seqs, enforce_sorted=False), hx)
        ref_out, ref_h = theirs(pack_sequence(seqs, enforce_sorted=False), hx)
    assert (out.data.dtype, h_n.dtype) == (ref_out.data.dtype, ref_h.dtype) == (torch.float32,) * 2
    torch.testing.assert_close(out.data, ref_out.data, **BF16_TOL)
    torch.testing.assert_close(h_n, ref_h, **BF16_TOL)


def test_training_under_autocast_gives_float32_gradients_close_to_torch_nn_gru():
    ours, theirs = _pair()
    x = torch.randn(6, 2, 3)
    grads = []
    for m in (ours, theirs):
        with torch.autocast("cpu", dtype=BF16):
            out, _ = m(x)
        grads.append(torch.autograd.grad(out.float().square().sum(), list(m.parameters())))
    for a, b in zip(*grads):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=5e-2, atol=2e-2)


def test_gru_cell_under_autocast_behaves_as_torch_nn_gru_cell():
    torch.manual_seed(2)
    ours = grukit.GRUCell(3, 8, reset_after=True)
    theirs = torch.nn.GRUCell(3, 8)
    theirs.load_state_dict(ours.state_dict())
    for dtype in (torch.float32, BF16, torch.float16):
        x = torch.randn(2, 3).to(dtype)
        with torch.autocast("cpu", dtype=BF16):
            h, ref = ours(x), theirs(x)
        assert h.dtype == ref.dtype
        torch.testing.assert_close(h.float(), ref.float(), **BF16_TOL)


def test_outside_autocast_another_dtype_is_refused_as_by_torch_nn_gru():
    ours, theirs = _pair()
    x = torch.randn(6, 2, 3, dtype=BF16)
    with pytest.raises(ValueError):
        theirs(x)
    with pytest.raises(InputError, match="expected input of dtype torch.float32 .* got torch.bfloat16"):
        ours(x)


def test_autocast_does_not_mix_float64_as_torch_nn_gru_does_not():
    ours, theirs = _pair()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    with torch.autocast("cpu", dtype=BF16):
        with pytest.raises(RuntimeError):
            theirs(x)
        with pytest.raises(InputError, match="autocast leaves float64 as it is"):
            ours(x)


# -- torch.func --------------------------------------------------------------------------------


def _loss(module, params, x):
    out, h_n = torch.func.functional_call(module, params, (x,))
    return out.square().sum() + (h_n**3).sum()


@pytest.mark.parametrize("reset_after", [False, True])
def test_func_grad_through_the_cpu_backend_equals_autograd(reset_after):
    ours = grukit.GRU(
        3, 8, 2, bidirectional=True, reset_after=reset_after, dtype=torch.float64, backend="cpu"
    )
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    grads = torch.func.grad(lambda p: _loss(ours, p, x))(params)
    assert ours.backend_used == "cpu"
    oracle = grukit.GRU(
        3, 8, 2, bidirectional=True, reset_after=reset_after, dtype=torch.float64, backend="reference"
    )
    oracle.load_state_dict(ours.state_dict())
    expected = torch.autograd.grad(
        _loss(oracle, dict(oracle.named_parameters()), x), list(oracle.parameters())
    )
    if reset_after:  # and torch.nn.GRU's, for its formulation
        theirs = torch.nn.GRU(3, 8, 2, bidirectional=True, dtype=torch.float64)
        theirs.load_state_dict(ours.state_dict())
        out, h_n = theirs(x)
        from_torch = torch.autograd.grad(out.square().sum() + (h_n**3).sum(), list(theirs.parameters()))
        for a, b in zip(expected, from_torch):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert list(grads) == [name for name, _ in ours.named_parameters()]
    for (name, got), want in zip(grads.items(), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)


def test_func_grad_with_respect_to_the_input():
    ours = grukit.GRU(3, 8, reset_after=True, dtype=torch.float64, backend="cpu")
    theirs = torch.nn.GRU(3, 8, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    params = {k: v.detach() for k, v in ours.named_parameters()}
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    got = torch.func.grad(lambda x: _loss(ours, params, x))(x)
    xr = x.clone().requires_grad_()
    out, h_n = theirs(xr)
    (want,) = torch.autograd.grad(out.square().sum() + (h_n**3).sum(), xr)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_func_second_order_through_the_cpu_backend_raises_clearly():
    ours = grukit.GRU(3, 8, dtype=torch.float64, backend="cpu")
    params = {k: v.detach() for k, v in ours.named_parameters()}
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        torch.func.grad(lambda x: torch.func.grad(lambda x: _loss(ours, params, x))(x).sum())(x)
