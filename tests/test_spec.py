"""The spec's four equations, run literally, equal grukit.GRU(reset_after=False) under the mapping."""

import math

import torch

import grukit
from grukit.convert.layout import from_spec, to_spec
from grukit.spec import spec_sequence

from conftest import tols

F64 = torch.float64


def test_spec_equations_equal_gru_reset_before():
    gru = grukit.GRU(3, 5, dtype=F64)  # reset_after=False is the default
    with torch.no_grad():
        for p in gru.parameters():
            p.uniform_(-1, 1)  # larger than the default init, so every term matters
    x, h0 = torch.randn(8, 4, 3, dtype=F64), torch.randn(4, 5, dtype=F64)
    params = to_spec(gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    assert params["W_z"].shape == (5, 5 + 3) and params["b_z"].shape == (5,)
    out_spec, h_spec = spec_sequence(x, h0, params)
    out, h_n = gru(x, h0.unsqueeze(0))
    torch.testing.assert_close(out_spec, out, **tols(F64))
    torch.testing.assert_close(h_spec, h_n[0], **tols(F64))


def test_spec_weights_load_into_gru():
    H, I = 4, 2
    spec = {f"W_{g}": torch.randn(H, H + I, dtype=F64) for g in "zrh"}
    spec |= {f"b_{g}": torch.randn(H, dtype=F64) for g in "zrh"}
    gru = grukit.GRU(I, H, dtype=F64)
    with torch.no_grad():
        for name, value in from_spec(spec).items():
            getattr(gru, name + "_l0").copy_(value)
    x, h0 = torch.randn(6, 3, I, dtype=F64), torch.randn(3, H, dtype=F64)
    torch.testing.assert_close(gru(x, h0.unsqueeze(0))[0], spec_sequence(x, h0, spec)[0], **tols(F64))
    back = to_spec(gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    for k in spec:
        torch.testing.assert_close(back[k], spec[k], rtol=0, atol=0)


def test_spec_update_gate_is_the_complement_of_grukits():
    """With every weight zero but the update gate's bias, the spec's z and grukit's z sum to 1."""
    gru = grukit.GRU(1, 1, dtype=F64)
    with torch.no_grad():
        for p in gru.parameters():
            p.zero_()
        gru.bias_ih_l0[1] = 2.0  # grukit z = sigmoid(2): keeps 88% of h
    spec = to_spec(gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    assert spec["b_z"].item() == -2.0
    h0 = torch.ones(1, 1, dtype=F64)
    out, _ = gru(torch.zeros(1, 1, 1, dtype=F64), h0.unsqueeze(0))
    assert abs(out.item() - 1 / (1 + math.exp(-2.0))) < 1e-12  # n = 0, h = z * 1
