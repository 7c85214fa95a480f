"""Bad input is refused at the module boundary with a message naming what was expected and given."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
from grukit._validate import InputError


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(input_size=0), ValueError, "input_size must be greater than zero, got 0"),
        (dict(hidden_size=-3), ValueError, "hidden_size must be greater than zero, got -3"),
        (dict(hidden_size=4.0), TypeError, "hidden_size should be of type int, got: float"),
        (dict(num_layers=True), TypeError, "num_layers should be of type int, got: bool"),
        (dict(num_layers="2"), TypeError, "num_layers should be of type int, got: str"),
        (dict(dropout=1.5), ValueError, r"dropout should be a number in range \[0, 1\].*got 1.5"),
        (dict(dropout=-0.1), ValueError, r"range \[0, 1\]"),
        (dict(dropout="0.1"), ValueError, r"range \[0, 1\]"),
        (dict(bidirectional=1), TypeError, "bidirectional should be a bool, got: int"),
        (dict(reset_after="yes"), TypeError, "reset_after should be a bool"),
        (
            dict(backend="cuda-fast"),
            ValueError,
            r"unknown GRU backend 'cuda-fast'; expected 'auto' or one of",
        ),
    ],
)
def test_constructor_rejects(kwargs, exc, match):
    args = dict(input_size=3, hidden_size=4, num_layers=2) | kwargs
    with pytest.raises(exc, match=match):
        grukit.GRU(**args)


def test_cell_constructor_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        grukit.GRUCell(3, 0)
    with pytest.raises(TypeError, match="bias should be a bool"):
        grukit.GRUCell(3, 4, bias=None)


@pytest.fixture
def gru():
    return grukit.GRU(3, 4, 2, bidirectional=True)


def test_wrong_number_of_dimensions(gru):
    with pytest.raises(InputError, match="Expected input to be 2D or 3D, got 4D instead"):
        gru(torch.randn(2, 3, 4, 3))
    with pytest.raises(RuntimeError, match="got 1D"):  # also a RuntimeError, like torch's
        gru(torch.randn(3))


def test_wrong_feature_size(gru):
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 5"):
        gru(torch.randn(4, 2, 5))


def test_empty_sequence(gru):
    with pytest.raises(InputError, match="sequence length of at least 1, got 0"):
        gru(torch.randn(0, 2, 3))


@pytest.mark.parametrize(
    "x_shape, hx_shape, match",
    [
        (
            (5, 2, 3),
            (4, 3, 4),
            r"Expected hidden size \(D\*num_layers, N, H\) = \(4, 2, 4\), got \(4, 3, 4\)",
        ),
        ((5, 2, 3), (2, 2, 4), r"= \(4, 2, 4\), got \(2, 2, 4\)"),
        ((5, 2, 3), (4, 4), "for batched 3-D input, hx should also be 3-D but got 2-D"),
        ((5, 3), (4, 1, 4), "for unbatched 2-D input, hx should also be 2-D but got 3-D"),
        ((5, 3), (4, 5), r"Expected hidden size \(D\*num_layers, H\) = \(4, 4\), got \(4, 5\)"),
    ],
)
def test_hx_of_the_wrong_shape(gru, x_shape, hx_shape, match):
    with pytest.raises(InputError, match=match):
        gru(torch.randn(*x_shape), torch.randn(*hx_shape))


def test_packed_sequence_with_wrong_hx(gru):
    packed = pack_sequence([torch.randn(4, 3), torch.randn(2, 3)])
    with pytest.raises(InputError, match="for a PackedSequence input, hx should be 3-D"):
        gru(packed, torch.randn(4, 4))
    with pytest.raises(InputError, match=r"= \(4, 2, 4\), got \(4, 3, 4\)"):
        gru(packed, torch.randn(4, 3, 4))


def test_packed_sequence_with_wrong_features_or_dtype(gru):
    with pytest.raises(InputError, match="Expected 3, got 2"):
        gru(pack_sequence([torch.randn(4, 2)]))
    with pytest.raises(InputError, match="expected input of dtype torch.float32"):
        gru(pack_sequence([torch.randn(4, 3, dtype=torch.float64)]))


def test_dtype_mismatch(gru):
    with pytest.raises(
        InputError,
        match=r"expected input of dtype torch.float32 \(the parameters' dtype\), got torch.float64",
    ):
        gru(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="expected hx of dtype torch.float32.*got torch.float64"):
        gru(torch.randn(5, 2, 3), torch.randn(4, 2, 4, dtype=torch.float64))
    with pytest.raises(InputError, match="got torch.int64"):
        gru(torch.ones(5, 2, 3, dtype=torch.int64))


def test_device_mismatch(gru):
    meta = torch.randn(5, 2, 3, device="meta")
    with pytest.raises(
        InputError, match=r"expected input on device cpu \(the parameters' device\), got meta"
    ):
        gru(meta)


def test_not_a_tensor(gru):
    with pytest.raises(TypeError, match="expected input to be a torch.Tensor, got list"):
        gru([[1.0, 2.0, 3.0]])


def test_cell_errors():
    cell = grukit.GRUCell(3, 4)
    with pytest.raises(InputError, match="Expected input to be 1D or 2D, got 3D instead"):
        cell(torch.randn(2, 2, 3))
    with pytest.raises(InputError, match="Expected 3, got 5"):
        cell(torch.randn(2, 5))
    with pytest.raises(
        InputError, match=r"expected hx of shape \(2, 4\) for input of shape \(2, 3\), got \(3, 4\)"
    ):
        cell(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(InputError, match=r"expected hx of shape \(4,\)"):
        cell(torch.randn(3), torch.randn(1, 4))
    with pytest.raises(InputError, match="dtype"):
        cell(torch.randn(2, 3).double())
