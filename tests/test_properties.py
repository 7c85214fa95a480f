"""Properties both formulations must satisfy, checked against the module itself."""

import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit

from conftest import tols

F64 = torch.float64
FORMS = pytest.mark.parametrize("reset_after", [False, True], ids=["before", "after"])


@FORMS
@pytest.mark.parametrize("layers", [1, 2])
def test_two_chunks_carrying_h_equal_one_pass(reset_after, layers):
    gru = grukit.GRU(3, 5, layers, dtype=F64, reset_after=reset_after)
    x = torch.randn(9, 2, 3, dtype=F64)
    out, h = gru(x)
    out1, h1 = gru(x[:4])
    out2, h2 = gru(x[4:], h1)
    torch.testing.assert_close(torch.cat([out1, out2]), out, **tols(F64))
    torch.testing.assert_close(h2, h, **tols(F64))


@FORMS
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batch_equals_per_sequence_runs(reset_after, bidirectional):
    gru = grukit.GRU(3, 4, 2, dtype=F64, bidirectional=bidirectional, reset_after=reset_after)
    seqs = [torch.randn(n, 3, dtype=F64) for n in (4, 7, 1, 5)]
    D = 2 if bidirectional else 1
    hx = torch.randn(2 * D, 4, 4, dtype=F64)
    out, h_n = gru(pack_sequence(seqs, enforce_sorted=False), hx)
    padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(out)
    assert lengths.tolist() == [4, 7, 1, 5]
    for b, seq in enumerate(seqs):
        out_b, h_b = gru(seq, hx[:, b])  # unbatched run of one sequence
        torch.testing.assert_close(padded[: len(seq), b], out_b, **tols(F64))
        assert torch.all(padded[len(seq) :, b] == 0)
        torch.testing.assert_close(h_n[:, b], h_b, **tols(F64))


@FORMS
def test_reverse_direction_equals_forward_on_flipped_input(reset_after):
    bi = grukit.GRU(3, 4, dtype=F64, bidirectional=True, reset_after=reset_after)
    fwd = grukit.GRU(3, 4, dtype=F64, reset_after=reset_after)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fwd, name + "_l0").copy_(getattr(bi, name + "_l0_reverse"))
    x = torch.randn(6, 2, 3, dtype=F64)
    out, h_n = bi(x)
    out_f, h_f = fwd(x.flip(0))
    torch.testing.assert_close(out[..., 4:], out_f.flip(0), **tols(F64))
    torch.testing.assert_close(h_n[1], h_f[0], **tols(F64))


@FORMS
@pytest.mark.parametrize("bias", [True, False])
def test_cell_loop_equals_one_layer_gru(reset_after, bias):
    gru = grukit.GRU(3, 5, bias=bias, dtype=F64, reset_after=reset_after)
    cell = grukit.GRUCell(3, 5, bias=bias, dtype=F64, reset_after=reset_after)
    cell.load_state_dict({k[:-3]: v for k, v in gru.state_dict().items()}, strict=True)
    x, h = torch.randn(6, 2, 3, dtype=F64), torch.randn(2, 5, dtype=F64)
    out, h_n = gru(x, h.unsqueeze(0))
    steps = []
    for x_t in x:
        h = cell(x_t, h)
        steps.append(h)
    torch.testing.assert_close(torch.stack(steps), out, **tols(F64))
    torch.testing.assert_close(h, h_n[0], **tols(F64))


def test_formulations_are_different_functions():
    a = grukit.GRU(3, 4, dtype=F64, reset_after=False)
    b = grukit.GRU(3, 4, dtype=F64, reset_after=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3, dtype=F64)
    assert (a(x)[0] - b(x)[0]).abs().max() > 1e-3


def test_dropout_between_layers_only_in_training():
    gru = grukit.GRU(3, 8, 3, dropout=0.5)
    x = torch.randn(5, 4, 3)
    gru.eval()
    torch.testing.assert_close(gru(x)[0], gru(x)[0], rtol=0, atol=0)
    reference = gru(x)[0]
    gru.train()
    a, b = gru(x)[0], gru(x)[0]
    assert not torch.equal(a, b), "training-mode dropout should draw new masks"
    assert not torch.equal(a, reference)


def test_dropout_applies_between_layers_not_after_the_last():
    gru = grukit.GRU(3, 4, 2, dropout=1.0, dtype=F64).train()  # layer 0's output all dropped
    x = torch.randn(5, 2, 3, dtype=F64)
    out, h_n = gru(x)
    top = grukit.GRU(4, 4, dtype=F64)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in gru.state_dict().items() if "_l1" in k})
    expected, h_top = top(torch.zeros(5, 2, 4, dtype=F64))  # layer 1 sees only zeros
    torch.testing.assert_close(out, expected, **tols(F64))
    torch.testing.assert_close(h_n[1], h_top[0], **tols(F64))
    assert out.abs().min() > 0  # the top layer's output itself is not dropped


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        grukit.GRU(3, 4, 1, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grukit.GRU(3, 4, 2, dropout=0.2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dtypes_run_on_cpu(dtype):
    gru = grukit.GRU(3, 4, 2, bidirectional=True, dtype=dtype)
    out, h = gru(torch.randn(5, 2, 3, dtype=dtype))
    assert out.dtype == dtype and out.shape == (5, 2, 8) and h.shape == (4, 2, 4)
    ref = grukit.GRU(3, 4, 2, bidirectional=True, dtype=F64)
    ref.load_state_dict(gru.state_dict())
    x = torch.randn(5, 2, 3, dtype=dtype)
    torch.testing.assert_close(gru(x)[0].double(), ref(x.double())[0], rtol=0.05, atol=0.05)


def test_module_to_float64_and_back():
    gru = grukit.GRU(3, 4).double()
    assert gru(torch.randn(2, 1, 3, dtype=F64))[0].dtype == F64
    gru.float()
    assert gru(torch.randn(2, 1, 3))[0].dtype == torch.float32


def test_shapes_and_batch_first():
    gru = grukit.GRU(input_size=10, hidden_size=20, num_layers=2, batch_first=True, bidirectional=True)
    out, h = gru(torch.randn(32, 5, 10))
    assert out.shape == (32, 5, 40) and h.shape == (4, 32, 20)
    out, h = gru(torch.randn(5, 10))  # unbatched ignores batch_first, like torch
    assert out.shape == (5, 40) and h.shape == (4, 20)
    out, h = gru(torch.randn(0, 5, 10))  # empty batch
    assert out.shape == (0, 5, 40) and h.shape == (4, 0, 20)


def test_extra_repr_names_the_formulation():
    assert repr(grukit.GRU(3, 4)) == "GRU(3, 4, reset_after=False)"
    r = repr(
        grukit.GRU(
            3,
            4,
            2,
            bias=False,
            batch_first=True,
            dropout=0.1,
            bidirectional=True,
            reset_after=True,
            backend="reference",
        )
    )
    assert r == (
        "GRU(3, 4, num_layers=2, bias=False, batch_first=True, dropout=0.1, "
        "bidirectional=True, reset_after=True, backend='reference')"
    )
    assert repr(grukit.GRUCell(3, 4)) == "GRUCell(3, 4, reset_after=False)"


def test_all_weights_groups_like_torch():
    ours = grukit.GRU(3, 4, 2, bidirectional=True, reset_after=True)
    theirs = torch.nn.GRU(3, 4, 2, bidirectional=True)
    assert [[w.shape for w in g] for g in ours.all_weights] == [
        [w.shape for w in g] for g in theirs.all_weights
    ]
