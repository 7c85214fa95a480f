"""ONNX export that ONNX Runtime runs with grukit's outputs, and loading GRU nodes whoever wrote
them: grukit, torch.onnx, ONNX's own backend test cases."""

import io
import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit
from grukit.convert import ConversionError, export_onnx, load_onnx

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


def _ort_session(proto):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _grukit_padded(model, x, lengths, hx):
    """grukit's outputs for a padded batch with lengths: through a PackedSequence."""
    packed = pack_padded_sequence(x, lengths, batch_first=model.batch_first, enforce_sorted=False)
    with torch.no_grad():
        out, h_n = model(packed, hx)
    total = x.shape[1] if model.batch_first else x.shape[0]
    out, _ = pad_packed_sequence(out, batch_first=model.batch_first, total_length=total)
    return out.numpy(), h_n.numpy()


LAYOUTS = [(1, False, False), (2, True, False), (2, False, True), (3, True, True)]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first", LAYOUTS)
@pytest.mark.parametrize("reset_after", [False, True])
def test_onnx_runtime_reproduces_every_exported_configuration(
    num_layers, bidirectional, batch_first, reset_after
):
    model = grukit.GRU(
        5,
        6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        reset_after=reset_after,
    )
    session = _ort_session(export_onnx(model, sequence_lens=True, initial_state=True))
    T, N, D = 7, 4, 2 if bidirectional else 1
    x = torch.randn(N, T, 5) if batch_first else torch.randn(T, N, 5)
    hx = torch.randn(D * num_layers, N, 6)
    lengths = torch.tensor([7, 2, 5, 1])
    y, h_n = session.run(None, {"input": x.numpy(), "hx": hx.numpy(), "sequence_lens": lengths.int().numpy()})
    y_ref, h_ref = _grukit_padded(model, x, lengths, hx)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, h_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset_after", [False, True])
def test_plain_export_has_only_the_input_and_dynamic_axes(reset_after):
    model = grukit.GRU(3, 4, num_layers=2, reset_after=reset_after)
    proto = export_onnx(model)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output", "h_n"]
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(grus) == 2
    assert all(
        helper.get_attribute_value(a) == int(reset_after)
        for n in grus
        for a in n.attribute
        if a.name == "linear_before_reset"
    )
    session = _ort_session(proto)
    for T, N in [(1, 1), (9, 5)]:  # one file, any batch and time
        x = torch.randn(T, N, 3)
        y, h_n = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            y_ref, h_ref = model(x)
        np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset_after", [False, True])
def test_float64_export_matches_onnx_reference_evaluator_tightly(reset_after):
    from onnx.reference import ReferenceEvaluator

    model = grukit.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=reset_after, dtype=torch.float64)
    proto = export_onnx(model, initial_state=True)
    x, hx = torch.randn(6, 2, 3, dtype=torch.float64), torch.randn(4, 2, 4, dtype=torch.float64)
    y, h_n = ReferenceEvaluator(proto).run(None, {"input": x.numpy(), "hx": hx.numpy()})
    with torch.no_grad():
        y_ref, h_ref = model(x, hx)
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=1e-12, atol=1e-13)


def test_dropout_is_not_exported():
    model = grukit.GRU(3, 4, num_layers=2, dropout=0.5, reset_after=True).train()
    session = _ort_session(export_onnx(model))
    x = torch.randn(5, 2, 3)
    (y, _) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, model.eval()(x)[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_layers, bidirectional, batch_first", LAYOUTS)
@pytest.mark.parametrize("reset_after", [False, True])
def test_export_then_load_is_exact(tmp_path, num_layers, bidirectional, batch_first, reset_after):
    model = grukit.GRU(
        5,
        6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        reset_after=reset_after,
        bias=num_layers != 2,
    )
    path = tmp_path / "m.onnx"
    export_onnx(model, path, sequence_lens=True)
    back = load_onnx(path)
    assert repr(back) == repr(model)
    for (name, p), (name2, q) in zip(model.named_parameters(), back.named_parameters()):
        assert name == name2 and torch.equal(p, q)


def _onnx_backend_cases():
    from onnx.backend.test import loader

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = [c for c in loader.load_model_tests(kind="node") if c.name.startswith("test_gru")]
    assert len(cases) >= 6
    return cases


@pytest.mark.parametrize("case", _onnx_backend_cases(), ids=lambda c: c.name)
def test_onnx_backend_test_cases_load_and_reproduce_their_outputs(case):
    """ONNX's own GRU test models (weights fed as graph inputs) with their expected outputs."""
    inputs, expected = case.data_sets[0]
    feed = dict(zip([i.name for i in case.model.graph.input], inputs))
    reverse = "reverse" in case.name
    weights = {k: v for k, v in feed.items() if k != "X"}
    if reverse:
        with pytest.raises(ConversionError, match="direction='reverse'"):
            load_onnx(case.model, values=weights)
    model = load_onnx(case.model, values=weights, reverse_as_forward=reverse).double()
    x = torch.from_numpy(feed["X"]).double()
    with torch.no_grad():
        y, h_n = model(x.flip(0) if reverse else x)
    y = y.flip(0) if reverse else y
    H = model.hidden_size
    if model.batch_first:  # layout=1: Y (N, T, D, H), Y_h (N, D, H)
        got = {"Y": y.reshape(*y.shape[:2], -1, H), "Y_h": h_n.transpose(0, 1)}
    else:  # Y (T, D, N, H), Y_h (D, N, H)
        got = {"Y": y.reshape(*y.shape[:2], -1, H).transpose(1, 2), "Y_h": h_n}
    for out, want in zip(case.model.graph.output, expected):
        np.testing.assert_allclose(got[out.name].numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", [False, True])
def test_model_exported_by_torch_onnx_loads_and_matches(dynamo):
    if dynamo:
        pytest.importorskip("onnxscript")
    ref = torch.nn.GRU(3, 5, num_layers=2, bidirectional=True).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"dynamo": True, "verbose": False} if dynamo else {"dynamo": False}
        torch.onnx.export(ref, (torch.randn(6, 2, 3),), buf, **kwargs)
    model = load_onnx(buf.getvalue())
    assert model.reset_after and model.num_layers == 2 and model.bidirectional
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        for a, b in zip(model(x), ref(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _node_model(**attrs):
    H, I = 2, 3
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.standard_normal((1, 3 * H, I)).astype(np.float32), "W")
    R = numpy_helper.from_array(rng.standard_normal((1, 3 * H, H)).astype(np.float32), "R")
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [4, 1, I])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        initializer=[W, R],
    )
    return helper.make_model(graph)


@pytest.mark.parametrize(
    "attrs, message",
    [
        (dict(clip=2.0), "'clip'"),
        (dict(activations=["Relu", "Tanh"]), "activations=\\['Relu', 'Tanh'\\]"),
        (dict(activations=["Sigmoid", "Tanh"], activation_alpha=[1.0]), "'activation_alpha'"),
    ],
)
def test_unsupported_attributes_raise_naming_them(attrs, message):
    with pytest.raises(ConversionError, match=message):
        load_onnx(_node_model(**attrs))
    load_onnx(_node_model(activations=["Sigmoid", "Tanh"]))  # the defaults, spelled out, are fine


def test_weights_fed_at_run_time_need_values():
    proto = _node_model()
    w = proto.graph.initializer[0]
    del proto.graph.initializer[0]
    with pytest.raises(ConversionError, match="values="):
        load_onnx(proto)
    assert load_onnx(proto, values={"W": numpy_helper.to_array(w)}).hidden_size == 2


def test_graphs_that_are_not_one_gru_stack_are_refused():
    a, b = grukit.GRU(3, 3), grukit.GRU(3, 3)
    pa, pb = export_onnx(a), export_onnx(b)
    # two GRUs reading the same input side by side
    nodes = list(pa.graph.node)
    second = [n for n in pb.graph.node if n.op_type == "GRU"][0]
    second.name = "second"
    second.output[:] = ["Y2", "Yh2"]
    second.input[1:3] = ["W2", "R2"]
    extra = []
    for init in pb.graph.initializer:
        if init.name in ("W_l0", "R_l0"):
            init.name = init.name[0] + "2"
            extra.append(init)
    del pa.graph.node[:]
    pa.graph.node.extend(nodes + [second])
    pa.graph.initializer.extend(extra)
    with pytest.raises(ConversionError, match="not the output of the GRU layer below"):
        load_onnx(pa)
    empty = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    with pytest.raises(ConversionError, match="expected GRU nodes, found none"):
        load_onnx(empty)


def test_bad_arguments_and_files(tmp_path):
    model = grukit.GRU(3, 4)
    with pytest.raises(ConversionError, match="expected opset to be an int from 11"):
        export_onnx(model, opset=7)
    with pytest.raises(ConversionError, match="float16, float32 or float64"):
        export_onnx(grukit.GRU(3, 4, dtype=torch.bfloat16))
    with pytest.raises(FileNotFoundError):
        load_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        load_onnx(bad)
    with pytest.raises(TypeError, match="expected a grukit.GRU"):
        export_onnx(torch.nn.GRU(3, 4))


def test_split_directions_and_keras_style_biases_load_as_one_bidirectional_stack():
    """Some exporters (tf2onnx for Keras) write a bidirectional layer as a forward node and a
    reverse node on the same input, joined by Concat, with Keras's reset_after=False bias as
    B = [bias, 0]. ONNX Runtime runs that graph; the loaded model must reproduce it."""
    rng = np.random.default_rng(0)
    I, H, T, N = 3, 4, 5, 2
    f32 = onnx.TensorProto.FLOAT
    inits, nodes = [], []

    def init(name, shape, zero_half=False):
        value = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
        if zero_half:
            value[..., 3 * H :] = 0
        inits.append(numpy_helper.from_array(value, name))
        return name

    x = "X"
    for k in range(2):
        ins = I if k == 0 else 2 * H
        ys = []
        for direction in ("forward", "reverse"):
            tag = f"{k}{direction[0]}"
            nodes.append(
                helper.make_node(
                    "GRU",
                    [
                        x,
                        init("W" + tag, (1, 3 * H, ins)),
                        init("R" + tag, (1, 3 * H, H)),
                        init("B" + tag, (1, 6 * H), zero_half=True),
                    ],
                    ["Y" + tag],
                    name="gru" + tag,
                    hidden_size=H,
                    direction=direction,
                )
            )
            ys.append("Y" + tag)  # (T, 1, N, H)
        nodes.append(helper.make_node("Concat", ys, [f"Y{k}"], axis=1))  # (T, 2, N, H)
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]))
        inits.append(numpy_helper.from_array(np.array([0, 0, 2 * H], np.int64), f"shape{k}"))
        x = f"out{k}"
        nodes.append(helper.make_node("Reshape", [f"Yt{k}", f"shape{k}"], [x]))  # (T, N, 2H)
    graph = helper.make_graph(
        nodes,
        "split",
        [helper.make_tensor_value_info("X", f32, ["T", "N", I])],
        [helper.make_tensor_value_info(x, f32, ["T", "N", 2 * H])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = load_onnx(proto)
    assert (model.num_layers, model.bidirectional, model.reset_after) == (2, True, False)
    xin = np.random.default_rng(1).standard_normal((T, N, I)).astype(np.float32)
    (y,) = _ort_session(proto).run(None, {"X": xin})
    with torch.no_grad():
        y_ref, _ = model(torch.from_numpy(xin))
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-5, atol=1e-6)
