"""torch.autograd.gradcheck on the module in float64, both formulations."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.nn.utils.rnn import pack_padded_sequence

import grukit

F64 = torch.float64


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck(reset_after, bidirectional, packed):
    gru = grukit.GRU(2, 3, 2, bidirectional=bidirectional, dtype=F64, reset_after=reset_after)
    D = 2 if bidirectional else 1
    x = torch.randn(4, 3, 2, dtype=F64, requires_grad=True)
    hx = torch.randn(2 * D, 3, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])
    params = list(gru.parameters())

    def f(x, hx, *ps):
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        out, h = torch.func.functional_call(
            gru, dict(zip([n for n, _ in gru.named_parameters()], ps)), (inp, hx)
        )
        return (out.data if packed else out), h

    inputs = (x, hx, *[p.detach().clone().requires_grad_(True) for p in params])
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])
def test_cell_gradcheck(reset_after):
    cell = grukit.GRUCell(3, 4, dtype=F64, reset_after=reset_after)
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h, *ps):
        return torch.func.functional_call(cell, dict(zip(names, ps)), (x, h))

    inputs = (
        torch.randn(2, 3, dtype=F64, requires_grad=True),
        torch.randn(2, 4, dtype=F64, requires_grad=True),
        *[p.detach().clone().requires_grad_(True) for p in cell.parameters()],
    )
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6)
