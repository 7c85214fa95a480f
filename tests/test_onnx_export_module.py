"""Whole models that contain a ``grukit.GRU`` export with a plain ``torch.onnx.export``, with both of
PyTorch's exporters: the graph holds standard ONNX ``GRU`` nodes (not a grukit op, not a loop
unrolled over the example's steps) and ONNX Runtime gives the PyTorch model's outputs."""

import collections
import importlib.util
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import grukit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# the torch.export-based exporter (dynamo=True, the default since PyTorch 2.9) needs onnxscript;
# the TorchScript-based one (dynamo=False) still exists in PyTorch 2.13
EXPORTERS = [
    pytest.param(
        True,
        id="dynamo",
        marks=pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="needs onnxscript"),
    ),
    pytest.param(False, id="torchscript"),
]


class Tagger(nn.Module):
    """What users export: token ids -> embedding -> grukit.GRU -> a linear head per step."""

    def __init__(self, vocab: int = 11, embed: int = 5, hidden: int = 6, classes: int = 3, **gru):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = grukit.GRU(embed, hidden, **gru)
        self.head = nn.Linear(hidden * self.gru.num_directions, classes)

    def forward(self, tokens, hx=None):
        y, h_n = self.gru(self.embed(tokens), hx)  # (T, N, D*H) or (N, T, D*H), (D*L, N, H)
        return self.head(y), h_n


def _export(model, args, path, dynamo, **kwargs):
    """``torch.onnx.export(model, args, path)`` and nothing grukit-specific; its progress lines,
    deprecation notices and torch's own FutureWarnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, args, str(path), dynamo=dynamo, **({"verbose": False} if dynamo else {}), **kwargs
        )
    return onnx.load(str(path))


def _run(path, args):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(args)  # no stray inputs (weights are initializers)
    return session.run(None, {name: a.numpy() for name, a in zip(names, args)})


def _assert_gru_nodes(proto, model: grukit.GRU):
    """One standard GRU node per layer, in the model's formulation, and nothing grukit-specific
    or loop-like left in the graph."""
    ops = collections.Counter((n.domain, n.op_type) for n in proto.graph.node)
    grus = [n for n in proto.graph.node if n.op_type == "GRU" and n.domain in ("", "ai.onnx")]
    assert len(grus) == model.num_layers, ops
    for node in grus:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["linear_before_reset"] == int(model.reset_after)
        assert attrs["hidden_size"] == model.hidden_size
        assert attrs.get("direction", b"forward") == (b"bidirectional" if model.bidirectional else b"forward")
    assert not any(domain.startswith("grukit") or domain == "onnx_symbolic" for domain, _ in ops)
    # an unrolled time loop shows up as one Sigmoid per gate and step
    assert not any(op in ("Sigmoid", "Tanh", "Loop", "Scan") for _, op in ops), ops


# every option in both formulations (and each formulation with and without hx, bias and a
# second direction), without the full cross product: each case costs an export
CONFIGS = [
    dict(reset_after=False, num_layers=1, bidirectional=False, batch_first=False, bias=True, hx=False),
    dict(reset_after=True, num_layers=2, bidirectional=True, batch_first=True, bias=True, hx=True),
    dict(reset_after=True, num_layers=2, bidirectional=False, batch_first=True, bias=False, hx=False),
    dict(reset_after=False, num_layers=3, bidirectional=True, batch_first=False, bias=False, hx=True),
]


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_model_with_a_gru_exports_as_gru_nodes_and_onnx_runtime_matches(tmp_path, config, dynamo):
    config = dict(config)
    with_hx = config.pop("hx")
    model = Tagger(**config).eval()
    N, T = 3, 7
    tokens = torch.randint(0, 11, (N, T) if config["batch_first"] else (T, N))
    args = (tokens,)
    if with_hx:
        args += (torch.randn(model.gru.num_directions * config["num_layers"], N, 6),)
    proto = _export(model, args, tmp_path / "tagger.onnx", dynamo)
    _assert_gru_nodes(proto, model.gru)
    got = _run(tmp_path / "tagger.onnx", args)
    with torch.no_grad():
        want = model(*args)
    assert [g.shape for g in got] == [tuple(w.shape) for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "dynamo, reset_after",
    [
        pytest.param(True, False, id="dynamo", marks=EXPORTERS[0].marks),
        pytest.param(False, True, id="torchscript"),
    ],
)
def test_plain_gru_exports_with_dynamic_batch_and_time_and_runs_as_before(tmp_path, dynamo, reset_after):
    model = grukit.GRU(
        4, 5, num_layers=2, bidirectional=True, batch_first=True, reset_after=reset_after
    ).eval()
    x = torch.randn(2, 6, 4)  # (N, T, I)
    with torch.no_grad():
        before = model(x)
    used = model.backend_used
    if dynamo:
        dims = {"dynamic_shapes": ({0: torch.export.Dim("batch"), 1: torch.export.Dim("time")},)}
    else:
        dims = {
            "input_names": ["x"],
            "output_names": ["y", "h_n"],
            "dynamic_axes": {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}, "h_n": {1: "batch"}},
        }
    proto = _export(model, (x,), tmp_path / "gru.onnx", dynamo, **dims)
    _assert_gru_nodes(proto, model)
    for N, T in [(2, 6), (5, 9), (1, 1)]:  # one file, any batch and length
        x_new = torch.randn(N, T, 4)
        y, h_n = _run(tmp_path / "gru.onnx", (x_new,))
        with torch.no_grad():
            y_ref, h_ref = model(x_new)
        np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=1e-5, atol=1e-6)
    # exporting left nothing behind: the model runs its backend again, bit for bit
    with torch.no_grad():
        after = model(x)
    assert model.backend_used == used
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("reset_after", [False, True])
def test_float64_export_matches_onnx_reference_evaluator_tightly(tmp_path, reset_after, dynamo):
    """ONNX's own reference implementation of GRU, in float64: the exported nodes compute exactly
    grukit's function (gate order, bias split, formulation), not just something close."""
    from onnx.reference import ReferenceEvaluator

    model = grukit.GRU(
        3, 4, num_layers=2, bidirectional=True, reset_after=reset_after, dtype=torch.float64
    ).eval()
    x, hx = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(4, 2, 4, dtype=torch.float64)
    proto = _export(model, (x, hx), tmp_path / "gru64.onnx", dynamo)
    _assert_gru_nodes(proto, model)
    names = [i.name for i in proto.graph.input]
    y, h_n = ReferenceEvaluator(proto).run(None, dict(zip(names, (x.numpy(), hx.numpy()))))
    with torch.no_grad():
        y_ref, h_ref = model(x, hx)
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_unbatched_input_exports(tmp_path, dynamo):
    model = grukit.GRU(3, 4, reset_after=True).eval()
    x = torch.randn(6, 3)  # (T, I)
    _export(model, (x,), tmp_path / "unbatched.onnx", dynamo)
    y, h_n = _run(tmp_path / "unbatched.onnx", (x,))
    with torch.no_grad():
        y_ref, h_ref = model(x)
    assert y.shape == (6, 4) and h_n.shape == (1, 4)
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, h_ref.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_packed_sequence_is_refused_with_the_alternatives(tmp_path, dynamo):
    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = grukit.GRU(3, 4)

        def forward(self, x, lengths):
            return self.gru(pack_padded_sequence(x, lengths, enforce_sorted=False))[1]

    args = (torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(Exception, match="PackedSequence input is not supported.*sequence_lens=True"):
        _export(Packed(), args, tmp_path / "packed.onnx", dynamo)
