"""The GRU variants (issue 14, part 1): layer norm, zoneout, recurrent dropout, weight dropout.

The oracle is written here from the papers' equations, one sequence and one step at a time, with
the layer normalisation spelled out (mean, biased variance, eps 1e-5): haste's ``LayerNormGRU``
for ``reset_after=True``, docs/variants.md for ``reset_after=False``; Krueger et al. (zoneout);
Gal & Ghahramani (one recurrent-dropout mask per sequence); Wan et al. (DropConnect on W_hh).
The masks the module draws are recorded (by wrapping ``grukit.modules._bernoulli``, and
``_zoneout_key`` whose Philox key defines the zoneout mask) and handed to the oracle, so training-mode forward passes and gradients are compared exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from grukit import backends, modules
from grukit.backends import _philox
from grukit.convert import ConversionError, export_onnx, to_torch

F64 = dict(rtol=1e-9, atol=1e-11)
EPS = 1e-5
ALL = dict(layer_norm=True, zoneout=0.25, recurrent_dropout=0.3, weight_dropout=0.2)
OPTION_SETS = {
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.3),
    "recurrent_dropout": dict(recurrent_dropout=0.4),
    "weight_dropout": dict(weight_dropout=0.3),
    "all": ALL,
}


# -- the oracle -------------------------------------------------------------------------------


def ln(v, gain, shift):
    """Layer normalisation of a vector over its units (Ba et al. 2016)."""
    mean = v.sum() / v.numel()
    var = ((v - mean) ** 2).sum() / v.numel()
    return gain * (v - mean) / torch.sqrt(var + EPS) + shift


def oracle_step(x, h, p, reset_after, rmask):
    """One step of one sequence: x (I,), h (H,). ``p``: dict of this layer's parameters."""
    H = h.numel()
    hr = h if rmask is None else h * rmask  # the h entering the recurrent products
    wx = p["w_ih"] @ x
    if "g_ih" in p:
        wx = ln(wx, p["g_ih"], p["c_ih"])
    wx = wx + p["b_ih"]
    x_r, x_z, x_n = wx[:H], wx[H : 2 * H], wx[2 * H :]
    if reset_after:  # haste's LayerNormGRU
        rh = p["w_hh"] @ hr
        if "g_hh" in p:
            rh = ln(rh, p["g_hh"], p["c_hh"])
        rh = rh + p["b_hh"]
        r = torch.sigmoid(x_r + rh[:H])
        z = torch.sigmoid(x_z + rh[H : 2 * H])
        n = torch.tanh(x_n + r * rh[2 * H :])
    else:
        rz = p["w_hh"][: 2 * H] @ hr
        if "g_hh" in p:
            rz = ln(rz, p["g_hh"][: 2 * H], p["c_hh"][: 2 * H])
        rz = rz + p["b_hh"][: 2 * H]
        r = torch.sigmoid(x_r + rz[:H])
        z = torch.sigmoid(x_z + rz[H:])
        hn = p["w_hh"][2 * H :] @ (r * hr)
        if "g_hh" in p:
            hn = ln(hn, p["g_hh"][2 * H :], p["c_hh"][2 * H :])
        n = torch.tanh(x_n + hn + p["b_hh"][2 * H :])
    return z * h + (1 - z) * n


def oracle(model, x, h0, lengths, masks, training):
    """The whole model, sequence by sequence. x (T, N, I) time-major, h0 (D*L, N, H), lengths (N,).
    ``masks``: the recorded draws in the module's order (per layer and direction: weight, recurrent,
    zoneout). Returns the padded output (T, N, D*H) and h_n (D*L, N, H)."""
    T, N, _ = x.shape
    L, D, p_zo = model.num_layers, model.num_directions, model.zoneout
    masks = list(masks)
    layer_in, h_n = x, []
    for k in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            p = {
                key: getattr(model, name + sfx)
                for key, name in [
                    ("w_ih", "weight_ih"),
                    ("w_hh", "weight_hh"),
                    ("b_ih", "bias_ih"),
                    ("b_hh", "bias_hh"),
                ]
            }
            if model.layer_norm:
                for key, name in [
                    ("g_ih", "layer_norm_ih_weight"),
                    ("c_ih", "layer_norm_ih_bias"),
                    ("g_hh", "layer_norm_hh_weight"),
                    ("c_hh", "layer_norm_hh_bias"),
                ]:
                    p[key] = getattr(model, name + sfx)
            rmask = zmask = None
            if training and model.weight_dropout:
                p["w_hh"] = p["w_hh"] * masks.pop(0) / (1 - model.weight_dropout)
            if training and model.recurrent_dropout:
                rmask = masks.pop(0) / (1 - model.recurrent_dropout)  # (N, H)
            if training and model.zoneout:
                zmask = masks.pop(0)  # (T, N, H)
            out = torch.zeros(T, N, model.hidden_size, dtype=x.dtype)
            lasts = []
            for b in range(N):
                h = h0[k * D + d, b]
                steps = range(int(lengths[b]))
                for t in reversed(steps) if d else steps:
                    h_new = oracle_step(
                        layer_in[t, b], h, p, model.reset_after, None if rmask is None else rmask[b]
                    )
                    if zmask is not None:
                        h_new = zmask[t, b] * h + (1 - zmask[t, b]) * h_new
                    elif p_zo:
                        h_new = p_zo * h + (1 - p_zo) * h_new
                    h = h_new
                    out = out.index_put((torch.tensor(t), torch.tensor(b)), h)
                lasts.append(h)
            outs.append(out)
            h_n.append(torch.stack(lasts))
        layer_in = torch.cat(outs, -1)
    assert not masks
    return layer_in, torch.stack(h_n)


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """The masks the module draws, in order."""
    draws = []
    real = modules._bernoulli

    def record(shape, p, like):
        m = real(shape, p, like)
        draws.append(m.clone())
        return m

    def record_key(shape, p):
        key = real_key(shape, p)
        draws.append(torch.from_numpy(_philox.mask(key.numpy(), *shape)))  # float64, (T, N, H)
        return key

    real_key = modules._zoneout_key
    monkeypatch.setattr(modules, "_bernoulli", record)
    monkeypatch.setattr(modules, "_zoneout_key", record_key)
    return draws


def make(reset_after, L=2, bidirectional=True, batch_first=False, dtype=torch.float64, **options):
    model = grukit.GRU(
        3,
        4,
        L,
        bidirectional=bidirectional,
        batch_first=batch_first,
        reset_after=reset_after,
        dtype=dtype,
        **options,
    )
    with torch.no_grad():  # non-trivial layer-norm gains and shifts
        for name, p in model.named_parameters():
            if name.startswith("layer_norm_"):
                p.copy_(
                    torch.empty_like(p).uniform_(0.5, 1.5)
                    if "_weight" in name
                    else torch.empty_like(p).uniform_(-0.5, 0.5)
                )
    return model


def run(model, x, h0, lengths, packed, batch_first):
    """The model on padded (T, N, I) ``x``; returns the padded time-major output and h_n."""
    if packed:
        data = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, h_n = model(data, h0)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
        return out, h_n
    if batch_first:
        out, h_n = model(x.transpose(0, 1), h0)
        return out.transpose(0, 1), h_n
    return model(x, h0)


# -- construction and validation --------------------------------------------------------------


def test_options_keep_torch_weights_and_add_named_layer_norm_parameters():
    torch.manual_seed(3)
    ref = torch.nn.GRU(3, 4, 2, bidirectional=True)
    torch.manual_seed(3)
    model = grukit.GRU(3, 4, 2, bidirectional=True, reset_after=True, **ALL)
    state = model.state_dict()
    for name, value in ref.state_dict().items():
        assert torch.equal(state[name], value), name
    extra = sorted(set(state) - set(ref.state_dict()))
    assert len(extra) == 2 * 2 * 4 and "layer_norm_hh_bias_l1_reverse" in extra
    assert torch.equal(model.layer_norm_ih_weight_l0, torch.ones(12))
    assert torch.equal(model.layer_norm_hh_bias_l1_reverse, torch.zeros(12))
    assert "layer_norm" not in "".join(grukit.GRU(3, 4).state_dict())


@pytest.mark.parametrize(
    "key, value",
    [
        ("zoneout", 1.0),
        ("zoneout", -0.1),
        ("recurrent_dropout", "0.1"),
        ("weight_dropout", True),
        ("weight_dropout", 1),
    ],
)
def test_bad_probability_raises_expected_got(key, value):
    with pytest.raises(ValueError, match=rf"expected {key} to be a number in \[0, 1\), got"):
        grukit.GRU(3, 4, **{key: value})


def test_layer_norm_must_be_a_bool():
    with pytest.raises(TypeError, match="layer_norm should be a bool, got: int"):
        grukit.GRU(3, 4, layer_norm=1)


# -- against the oracle -----------------------------------------------------------------------


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_training_forward_and_gradients_match_the_papers(recorded, reset_after, option, backend):
    model = make(reset_after, backend=backend, **OPTION_SETS[option]).train()
    T, N = 4, 2
    x = torch.randn(T, N, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, N, 4, dtype=torch.float64, requires_grad=True)
    out, h_n = model(x, h0)
    assert model.backend_used == backend
    want_out, want_h = oracle(model, x, h0, torch.full((N,), T), recorded, training=True)
    torch.testing.assert_close(out, want_out, **F64)
    torch.testing.assert_close(h_n, want_h, **F64)
    w = torch.randn_like(out)
    inputs = [x, h0, *model.parameters()]
    got = torch.autograd.grad((out * w).sum() + h_n.sum(), inputs)
    want = torch.autograd.grad((want_out * w).sum() + want_h.sum(), inputs)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, **F64)


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_evaluation_zoneout_is_the_deterministic_interpolation(recorded, reset_after):
    model = make(reset_after, **ALL).eval()
    x, h0 = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(4, 2, 4, dtype=torch.float64)
    out, h_n = model(x, h0)
    assert recorded == []  # nothing is drawn in evaluation
    want_out, want_h = oracle(model, x, h0, torch.full((2,), 5), [], training=False)
    torch.testing.assert_close(out, want_out, **F64)
    torch.testing.assert_close(h_n, want_h, **F64)
    plain = grukit.GRU(
        3, 4, 2, bidirectional=True, reset_after=reset_after, dtype=torch.float64, layer_norm=True
    )
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(x, h0)[0], out)  # zoneout in evaluation is not a no-op


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_dropouts_are_identity_in_evaluation_and_keep_the_fused_backend(reset_after):
    model = grukit.GRU(3, 4, 2, reset_after=reset_after, recurrent_dropout=0.5, weight_dropout=0.5).eval()
    plain = grukit.GRU(3, 4, 2, reset_after=reset_after).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(6, 2, 3)
    assert torch.equal(model(x)[0], plain(x)[0])
    assert model.backend_used == "cpu"


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
@pytest.mark.parametrize(
    "L, bidirectional, batch_first, packed, with_hx",
    [
        (1, False, False, False, False),
        (2, True, True, False, True),
        (2, True, False, True, True),
        (1, True, False, True, False),
    ],
)
def test_every_combination_matches_the_per_sequence_loop(
    recorded, reset_after, L, bidirectional, batch_first, packed, with_hx
):
    model = make(reset_after, L=L, bidirectional=bidirectional, batch_first=batch_first, **ALL)
    T, N, D = 5, 3, 2 if bidirectional else 1
    lengths = torch.tensor([5, 2, 4]) if packed else torch.full((N,), T)
    x = torch.randn(T, N, 3, dtype=torch.float64) * (torch.arange(T)[:, None] < lengths)[..., None]
    h0 = torch.randn(D * L, N, 4, dtype=torch.float64) if with_hx else None
    zeros = torch.zeros(D * L, N, 4, dtype=torch.float64)
    for training in (True, False):
        model.train(training)
        recorded.clear()
        out, h_n = run(model, x, h0, lengths, packed, batch_first)
        want_out, want_h = oracle(model, x, zeros if h0 is None else h0, lengths, recorded, training)
        torch.testing.assert_close(out, want_out, **F64)
        torch.testing.assert_close(h_n, want_h, **F64)


def test_unbatched_input_runs_the_variants(recorded):
    model = make(False, L=1, bidirectional=False, **ALL)
    x = torch.randn(4, 3, dtype=torch.float64)
    out, h_n = model(x)
    want_out, want_h = oracle(
        model,
        x[:, None],
        torch.zeros(1, 1, 4, dtype=torch.float64),
        torch.tensor([4]),
        recorded,
        training=True,
    )
    torch.testing.assert_close(out, want_out[:, 0], **F64)
    torch.testing.assert_close(h_n, want_h[:, 0], **F64)


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
@pytest.mark.parametrize("option", list(OPTION_SETS))
def test_gradcheck_through_the_reference_backend(reset_after, option):
    model = make(reset_after, L=1, bidirectional=False, backend="reference", **OPTION_SETS[option]).train()
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, h0, *ps):
        torch.manual_seed(11)  # the same masks at every evaluation
        out, h_n = torch.func.functional_call(model, dict(zip(names, ps)), (x, h0))
        return out, h_n

    assert torch.autograd.gradcheck(f, (x, h0, *params))


# -- the masks --------------------------------------------------------------------------------


def test_masks_have_the_requested_rate_and_sharing(recorded):
    torch.manual_seed(0)
    model = grukit.GRU(2, 10, zoneout=0.3, recurrent_dropout=0.3).train()
    model(torch.randn(20, 10_000, 2))
    rec, zo = recorded  # (N, H) keep mask, then (T, N, H) zoneout mask
    assert rec.shape == (10_000, 10) and zo.shape == (20, 10_000, 10)
    assert abs(1 - rec.mean().item() - 0.3) < 0.02  # 10^5 draws, sd 0.0015
    assert abs(zo[:10].mean().item() - 0.3) < 0.02  # 10^6 draws
    assert not torch.equal(zo[0], zo[1])  # a fresh zoneout mask per step
    # and the one recurrent mask is used at every step: see the oracle tests above


def test_weight_dropout_rate_and_gradients_flow_only_to_kept_weights(recorded):
    torch.manual_seed(0)
    model = grukit.GRU(2, 200, weight_dropout=0.3).train()
    model(torch.randn(3, 2, 2))[0].sum().backward()
    (mask,) = recorded
    assert mask.shape == (600, 200) and abs(1 - mask.mean().item() - 0.3) < 0.02
    grad = model.weight_hh_l0.grad
    assert torch.all(grad[mask == 0] == 0)
    assert (grad[mask == 1] != 0).float().mean() > 0.99
    assert (model.weight_ih_l0.grad != 0).float().mean() > 0.99


def test_manual_seed_reproduces_a_training_run():
    model = grukit.GRU(3, 4, 2, **ALL).train()
    x = torch.randn(5, 2, 3)
    torch.manual_seed(5)
    a = model(x)[0]
    torch.manual_seed(5)
    b = model(x)[0]
    assert torch.equal(a, b) and not torch.equal(a, model(x)[0])


# -- layer norm property ----------------------------------------------------------------------


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_layer_norm_output_is_invariant_to_scaling_the_weights(reset_after):
    # H = 16: every normalised vector has >= 16 units, so its variance is not near eps by chance
    x, h0 = torch.randn(6, 3, 3, dtype=torch.float64), torch.randn(1, 3, 16, dtype=torch.float64)
    for layer_norm in (True, False):
        torch.manual_seed(0)
        model = grukit.GRU(3, 16, reset_after=reset_after, layer_norm=layer_norm, dtype=torch.float64).eval()
        before = model(x, h0)[0]
        with torch.no_grad():
            model.weight_hh_l0.mul_(7.0)
            model.weight_ih_l0.mul_(3.0)
        after = model(x, h0)[0]
        if layer_norm:
            # LN(c v) = LN(v) up to eps: relative (c^2 - 1) eps / (2 c^2 var(v)) for small eps/var
            torch.testing.assert_close(after, before, rtol=0, atol=2e-3)
        else:
            assert (after - before).abs().max() > 0.1


def test_statistics_are_per_sample_not_across_the_batch():
    model = make(True, L=1, bidirectional=False, layer_norm=True).eval()
    x = torch.randn(4, 3, 3, dtype=torch.float64)
    together = model(x)[0]
    alone = torch.cat([model(x[:, b : b + 1])[0] for b in range(3)], 1)
    torch.testing.assert_close(together, alone, **F64)


# -- backends ---------------------------------------------------------------------------------


def test_backends_without_the_variants_are_not_eligible_and_say_why():
    model = grukit.GRU(3, 4, reset_after=True, layer_norm=True, zoneout=0.1)
    x = torch.randn(2, 1, 3)
    assert model.backend_for(x) == "cpu"  # the fused kernels compute every variant
    reasons = backends.explain(model._request(x, False))
    assert reasons["torch"] == "layer_norm/zoneout are not in the 'torch' backend yet"
    assert reasons["cpu"] is None and reasons["reference"] is None
    assert grukit.GRU(3, 4, zoneout=0.1).eval().backend_for(x) == "cpu"
    rd = grukit.GRU(3, 4, recurrent_dropout=0.1)
    assert rd.train().backend_for(x) == "cpu" and rd.eval().backend_for(x) == "cpu"
    assert grukit.GRU(3, 4, weight_dropout=0.5).train().backend_for(x) == "cpu"
    with pytest.raises(backends.BackendUnavailable, match="layer_norm is not in the 'torch'"):
        grukit.GRU(3, 4, layer_norm=True, backend="torch")(x)


def test_weight_dropout_runs_on_the_torch_backend_too(recorded):
    model = grukit.GRU(
        3, 4, reset_after=True, weight_dropout=0.5, backend="torch", dtype=torch.float64
    ).train()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, h_n = model(x)
    want_out, want_h = oracle(
        model, x, torch.zeros(1, 2, 4, dtype=torch.float64), torch.full((2,), 5), recorded, training=True
    )
    torch.testing.assert_close(out, want_out, **F64)


# -- state dicts, saving, conversions ---------------------------------------------------------


def test_state_dicts_load_across_dropouts_and_zoneout_but_not_layer_norm():
    plain = grukit.GRU(3, 4, 2)
    regular = grukit.GRU(3, 4, 2, zoneout=0.1, recurrent_dropout=0.2, weight_dropout=0.3)
    regular.load_state_dict(plain.state_dict())
    plain.load_state_dict(regular.state_dict())
    normed = grukit.GRU(3, 4, 2, layer_norm=True)
    with pytest.raises(RuntimeError, match="expected a state dict without layer-norm parameters"):
        plain.load_state_dict(normed.state_dict())
    with pytest.raises(RuntimeError, match="expected a state dict with layer-norm parameters"):
        normed.load_state_dict(plain.state_dict(), strict=False)
    with pytest.raises(RuntimeError, match="layer_norm=True"):
        normed.load_state_dict(torch.nn.GRU(3, 4, 2).state_dict())


def test_save_and_load_keep_the_options(tmp_path):
    model = make(True, **ALL).eval()
    grukit.save(model, tmp_path / "m.safetensors")
    back = grukit.load(tmp_path / "m.safetensors").eval()
    for key in ALL:
        assert getattr(back, key) == getattr(model, key)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(back(x)[0], model(x)[0], **F64)


@pytest.mark.parametrize("option", list(OPTION_SETS)[:4])
def test_to_torch_refuses_every_option_by_name(option, tmp_path):
    model = grukit.GRU(3, 4, reset_after=True, **OPTION_SETS[option])
    with pytest.raises(ConversionError, match=f"option\\(s\\) {option} "):
        to_torch(model)
    with pytest.raises(ConversionError, match=option):
        grukit.convert.write_model(model, tmp_path / "m.pt")


def test_onnx_export_refuses_layer_norm_and_zoneout_but_not_the_dropouts():
    pytest.importorskip("onnx")
    for option in ("layer_norm", "zoneout"):
        with pytest.raises(ConversionError, match=f"option\\(s\\) {option} "):
            export_onnx(grukit.GRU(3, 4, **OPTION_SETS[option]))
    export_onnx(grukit.GRU(3, 4, recurrent_dropout=0.2, weight_dropout=0.2))


def test_torch_onnx_export_of_a_module_with_layer_norm_refuses():
    pytest.importorskip("onnx")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = grukit.GRU(3, 4, layer_norm=True)

        def forward(self, x):
            return self.gru(x)[0]

    with pytest.raises(Exception, match="layer_norm"):
        torch.onnx.export(Net().eval(), (torch.randn(2, 1, 3),), None, dynamo=False)


# -- Keras ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_recurrent_dropout_round_trip(bidirectional):
    keras = pytest.importorskip("keras")
    from grukit.convert import from_keras, to_keras

    def gru(backwards=False):
        return keras.layers.GRU(4, return_sequences=True, recurrent_dropout=0.25, go_backwards=backwards)

    layer = keras.layers.Bidirectional(gru(), backward_layer=gru(True)) if bidirectional else gru()
    layer.build((None, None, 3))
    model = from_keras([layer])
    assert model.recurrent_dropout == 0.25
    (back,) = to_keras(model)
    halves = [back.forward_layer, back.backward_layer] if bidirectional else [back]
    assert [h.recurrent_dropout for h in halves] == [0.25] * len(halves)
    x = torch.randn(2, 5, 3)
    want = np.asarray(keras.ops.convert_to_numpy(back(x.numpy())))  # inference: no dropout
    torch.testing.assert_close(model.eval()(x)[0], torch.from_numpy(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("option", ["layer_norm", "zoneout", "weight_dropout"])
def test_to_keras_refuses_what_keras_cannot_represent(option):
    pytest.importorskip("keras")
    from grukit.convert import to_keras

    with pytest.raises(ConversionError, match=f"option\\(s\\) {option} "):
        to_keras(grukit.GRU(3, 4, **OPTION_SETS[option]))


# -- GRUCell ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_cell_layer_norm_and_zoneout_match_the_papers(reset_after):
    torch.manual_seed(4)
    ref = torch.nn.GRUCell(3, 4)
    torch.manual_seed(4)
    cell = grukit.GRUCell(3, 4, reset_after=reset_after, layer_norm=True, zoneout=0.4)
    for name, value in ref.state_dict().items():  # the same draws as torch.nn.GRUCell's
        assert torch.equal(getattr(cell, name), value)
    cell = cell.double()
    with torch.no_grad():
        for name in ("layer_norm_ih_weight", "layer_norm_hh_weight"):
            getattr(cell, name).uniform_(0.5, 1.5)
        for name in ("layer_norm_ih_bias", "layer_norm_hh_bias"):
            getattr(cell, name).uniform_(-0.5, 0.5)
    p = dict(
        w_ih=cell.weight_ih,
        w_hh=cell.weight_hh,
        b_ih=cell.bias_ih,
        b_hh=cell.bias_hh,
        g_ih=cell.layer_norm_ih_weight,
        c_ih=cell.layer_norm_ih_bias,
        g_hh=cell.layer_norm_hh_weight,
        c_hh=cell.layer_norm_hh_bias,
    )
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    plain = torch.stack([oracle_step(x[b], h[b], p, reset_after, None) for b in range(2)])
    torch.testing.assert_close(cell.eval()(x, h), 0.4 * h + 0.6 * plain, **F64)
    torch.manual_seed(9)
    got = cell.train()(x, h)
    torch.manual_seed(9)
    m = torch.empty_like(h).bernoulli_(0.4)
    torch.testing.assert_close(got, m * h + (1 - m) * plain, **F64)
    with pytest.raises(RuntimeError, match="expected a state dict with layer-norm"):
        cell.load_state_dict(ref.state_dict())
