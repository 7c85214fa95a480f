"""Exact exchange with Keras 3 GRU layers (KERAS_BACKEND=torch, no TensorFlow): Keras's own
outputs are the oracle."""

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")

import grukit  # noqa: E402
from grukit.convert import ConversionError, from_keras, load_keras, save_keras, to_keras  # noqa: E402


def _keras_stack(units, layers, bidirectional, reset_after, use_bias=True, input_size=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(layers):
        gru = keras.layers.GRU(units, return_sequences=True, reset_after=reset_after, use_bias=use_bias)
        layer = keras.layers.Bidirectional(gru) if bidirectional else gru
        layer.build((None, None, input_size if k == 0 else units * (2 if bidirectional else 1)))
        # random biases too: Keras initialises them to zero, which would hide a bias mix-up
        layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
        out.append(layer)
    return out


def _run_keras(layers, x):
    y = x
    for layer in layers:
        y = layer(y)
    return np.asarray(keras.ops.convert_to_numpy(y))


def _weights_equal(a, b):
    wa = [w for layer in a for w in layer.get_weights()]
    wb = [w for layer in b for w in layer.get_weights()]
    return len(wa) == len(wb) and all(np.array_equal(p, q) for p, q in zip(wa, wb))


STACKS = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize("layers, bidirectional", STACKS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_outputs_equal_grukit_and_round_trip_is_exact(layers, bidirectional, reset_after):
    stack = _keras_stack(4, layers, bidirectional, reset_after)
    model = from_keras(stack if layers > 1 else stack[0])
    assert (model.num_layers, model.bidirectional, model.reset_after, model.batch_first) == (
        layers,
        bidirectional,
        reset_after,
        True,
    )
    x = np.random.default_rng(1).standard_normal((3, 6, 3)).astype("float32")
    with torch.no_grad():
        y, _ = model(torch.from_numpy(x))
    np.testing.assert_allclose(y.numpy(), _run_keras(stack, x), rtol=1e-5, atol=1e-6)
    assert _weights_equal(stack, to_keras(model))  # keras -> grukit -> keras, bit for bit


@pytest.mark.parametrize("layers, bidirectional", STACKS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_grukit_to_keras_computes_the_same(layers, bidirectional, reset_after):
    model = grukit.GRU(3, 5, num_layers=layers, bidirectional=bidirectional, reset_after=reset_after)
    stack = to_keras(model)
    x = torch.randn(6, 2, 3)  # time-major model; Keras is batch-major
    with torch.no_grad():
        y, _ = model(x)
    got = _run_keras(stack, x.transpose(0, 1).numpy())
    np.testing.assert_allclose(got.transpose(1, 0, 2), y.numpy(), rtol=1e-5, atol=1e-6)
    back = from_keras(stack, batch_first=False)
    if reset_after:  # Keras keeps both biases: exact both ways
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), back.parameters()))
    else:  # one Keras bias = bias_ih + bias_hh: the same function
        with torch.no_grad():
            torch.testing.assert_close(back(x)[0], y, rtol=1e-5, atol=1e-6)


def test_use_bias_false_both_ways():
    stack = _keras_stack(4, 1, False, True, use_bias=False)
    model = from_keras(stack)
    assert not model.bias
    assert _weights_equal(stack, to_keras(model))


def test_float64_layers_give_a_float64_model():
    gru = keras.layers.GRU(3, return_sequences=True, dtype="float64")
    gru.build((None, None, 2))
    model = from_keras(gru)
    assert model.weight_ih_l0.dtype == torch.float64
    x = np.random.default_rng(0).standard_normal((2, 5, 2))
    with torch.no_grad():
        y, _ = model(torch.from_numpy(x))
    np.testing.assert_allclose(y.numpy(), _run_keras([gru], x), rtol=1e-12, atol=1e-13)


def test_copy_into_existing_models_and_layers():
    stack = _keras_stack(4, 2, True, True)
    model = grukit.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=True, batch_first=True)
    ids = [id(p) for p in model.parameters()]
    assert from_keras(stack, into=model) is model
    assert [id(p) for p in model.parameters()] == ids
    target = _keras_stack(4, 2, True, True, seed=5)
    assert to_keras(model, into=target) == target and _weights_equal(stack, target)
    with pytest.raises(ConversionError, match="num_layers=1 \\(the source has 2\\)"):
        from_keras(stack, into=grukit.GRU(3, 4, bidirectional=True, reset_after=True))
    with pytest.raises(ConversionError, match="reset_after"):
        to_keras(grukit.GRU(3, 4, num_layers=2, bidirectional=True), into=target)


def _built(layer, input_size=3):
    layer.build((None, None, input_size))
    return layer


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: _built(keras.layers.GRU(4, activation="relu")), "activation='relu'"),
        (
            lambda: _built(keras.layers.GRU(4, recurrent_activation="hard_sigmoid")),
            "recurrent_activation='hard_sigmoid'",
        ),
        (lambda: _built(keras.layers.GRU(4, go_backwards=True)), "go_backwards=True"),
        (
            lambda: _built(keras.layers.Bidirectional(keras.layers.GRU(4), merge_mode="sum")),
            "merge_mode='sum'",
        ),
        (lambda: keras.layers.GRU(4), "has no weights yet"),
        (lambda: [_built(keras.layers.GRU(4)), _built(keras.layers.GRU(5), 4)], "units=5"),
        (
            lambda: [_built(keras.layers.GRU(4)), _built(keras.layers.GRU(4, reset_after=False), 4)],
            "reset_after=False",
        ),
        (lambda: [_built(keras.layers.GRU(4)), _built(keras.layers.GRU(4), 7)], "takes 7 features"),
        (
            lambda: [_built(keras.layers.GRU(4)), _built(keras.layers.Bidirectional(keras.layers.GRU(4)), 4)],
            "Bidirectional and some are not",
        ),
        (
            lambda: keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4), keras.layers.Dense(1)]),
            "Dense layer",
        ),
        (lambda: [_built(keras.layers.LSTM(4))], "expected Keras GRU or Bidirectional"),
    ],
)
def test_what_grukit_does_not_compute_raises_with_the_reason(make, message):
    with pytest.raises(ConversionError, match=message):
        from_keras(make())


def test_keras_files_round_trip(tmp_path):
    model = grukit.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False, batch_first=True)
    path = tmp_path / "m.keras"
    save_keras(model, path)
    back = load_keras(path)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], model(x)[0], rtol=1e-5, atol=1e-6)
    kmodel = keras.saving.load_model(path)  # a plain Keras model for Keras users
    np.testing.assert_allclose(
        np.asarray(keras.ops.convert_to_numpy(kmodel(x.numpy()))),
        model(x)[0].detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match="not a loadable .keras model"):
        load_keras(bad)
