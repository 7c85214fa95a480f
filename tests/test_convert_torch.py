"""Exact exchange with torch.nn.GRU, state dicts and grukit's own safetensors files."""

import os

import pytest
import torch

import grukit
from grukit.convert import ConversionError, from_state_dict, from_torch, to_torch
from grukit.serialization import load, save

from conftest import tols

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, batch_first=True),
    dict(num_layers=2, bias=False, bidirectional=True, batch_first=True),
]


def _equal_params(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_grukit_torch_is_exact_and_computes_the_same(cfg, dtype):
    ref = torch.nn.GRU(5, 7, dtype=dtype, **cfg)
    model = from_torch(ref)
    assert model.reset_after and model.batch_first == ref.batch_first
    assert model.weight_ih_l0.dtype == dtype
    back = to_torch(model)
    assert type(back) is torch.nn.GRU and _equal_params(ref, back)
    assert back.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(4, 6, 5, dtype=dtype)
    with torch.no_grad():
        (y, h), (y_ref, h_ref) = model(x), ref(x)
    torch.testing.assert_close(y, y_ref, **tols(dtype))
    torch.testing.assert_close(h, h_ref, **tols(dtype))


def test_to_torch_refuses_the_spec_formulation_and_says_why():
    with pytest.raises(ConversionError, match="reset_after=False.*no exact conversion"):
        to_torch(grukit.GRU(3, 4))


def test_conversion_copies_into_existing_parameters_so_optimizers_keep_working():
    model = grukit.GRU(3, 4, num_layers=2, reset_after=True)
    ids = [id(p) for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref = torch.nn.GRU(3, 4, num_layers=2)
    assert from_torch(ref, into=model) is model
    assert [id(p) for p in model.parameters()] == ids and _equal_params(model, ref)
    model(torch.randn(5, 2, 3))[0].sum().backward()
    opt.step()
    assert not _equal_params(model, ref)  # the optimizer moved the copied weights
    target = torch.nn.GRU(3, 4, num_layers=2)
    target_ids = [id(p) for p in target.parameters()]
    to_torch(model, into=target)
    assert [id(p) for p in target.parameters()] == target_ids and _equal_params(model, target)


def test_into_must_match_and_the_error_names_the_difference():
    ref = torch.nn.GRU(3, 4, num_layers=2)
    with pytest.raises(ConversionError, match="num_layers=1 \\(the source has 2\\)"):
        from_torch(ref, into=grukit.GRU(3, 4, reset_after=True))
    with pytest.raises(ConversionError, match="reset_after=False"):
        from_torch(ref, into=grukit.GRU(3, 4, num_layers=2))
    with pytest.raises(ConversionError, match="hidden_size=5"):
        to_torch(grukit.GRU(3, 4, reset_after=True), into=torch.nn.GRU(3, 5))
    with pytest.raises(TypeError, match="torch.nn.GRU, got LSTM"):
        from_torch(torch.nn.LSTM(3, 4))


def test_conversion_leaves_the_callers_random_stream_alone():
    ref = torch.nn.GRU(3, 4)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    from_torch(ref)
    to_torch(from_torch(ref))
    assert torch.equal(torch.rand(3), expected)


def test_state_dict_names_and_shapes_are_checked():
    good = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).state_dict()
    model = from_state_dict(good, reset_after=True)
    assert (model.num_layers, model.bidirectional, model.input_size, model.hidden_size) == (2, True, 3, 4)
    bad = dict(good, extra_l0=torch.zeros(1))
    with pytest.raises(ConversionError, match="'extra_l0'"):
        from_state_dict(bad, reset_after=True)
    bad = dict(good)
    del bad["bias_hh_l1_reverse"]
    with pytest.raises(ConversionError, match="missing bias_hh_l1_reverse"):
        from_state_dict(bad, reset_after=True)
    bad = dict(good, weight_hh_l1=torch.zeros(12, 5))
    with pytest.raises(ConversionError, match=r"weight_hh_l1 of shape \(12, 4\), got \(12, 5\)"):
        from_state_dict(bad, reset_after=True)
    bad = dict(good, weight_ih_l1=torch.full((12, 8), float("nan")))
    with pytest.raises(ConversionError, match="NaN"):
        from_state_dict(bad, reset_after=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_safetensors_round_trip_keeps_weights_and_configuration(tmp_path, dtype, reset_after):
    model = grukit.GRU(
        3,
        5,
        num_layers=2,
        bidirectional=True,
        batch_first=True,
        dropout=0.25,
        reset_after=reset_after,
        dtype=dtype,
    )
    path = tmp_path / "m.safetensors"
    save(model, path)
    back = load(path)
    assert repr(back) == repr(model) and _equal_params(model, back)
    assert back.weight_ih_l0.dtype == dtype
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_bare_safetensors_state_dict_needs_the_formulation(tmp_path):
    from safetensors.torch import save_file

    ref = torch.nn.GRU(3, 4)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    with pytest.raises(ConversionError, match="formulation is unknown"):
        load(path)
    assert _equal_params(load(path, reset_after=True), ref)


def test_damaged_or_missing_files_raise_clear_errors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ConversionError, match="not a readable safetensors file"):
        load(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing.safetensors")


def test_saving_over_an_existing_file_replaces_it_whole(tmp_path):
    path = tmp_path / "m.safetensors"
    save(grukit.GRU(3, 4), path)
    second = grukit.GRU(3, 4, reset_after=True)
    save(second, path)
    assert _equal_params(load(path), second)
