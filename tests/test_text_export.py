"""``grukit.apps.text.export.export_onnx`` and ``grukit text export``: the ONNX file, run in ONNX
Runtime here, gives the PyTorch model's next-token distribution and carries its state from chunk
to chunk; variants ONNX's GRU cannot express are refused by name; nothing is replaced unless the
export checks out (or, on the command line, without --force)."""

import json
import os
import sys

import numpy as np
import pytest
import torch

from grukit._extras import MissingDependency
from grukit.apps.text import GRULanguageModel, LMNet
from grukit.apps.text import export as text_export
from grukit.apps.text.export import export_onnx, vocab_path
from grukit.cli.main import main
from grukit.convert._common import ConversionError
from grukit.data.text import Vocabulary

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met. " * 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny fitted model (spec formulation, tied E = H) and the folder it is saved in."""
    lm = GRULanguageModel(
        hidden_size=16, bptt=16, train={"epochs": 1, "batch_size": 8, "progress": "off"}
    ).fit(TEXT)
    folder = tmp_path_factory.mktemp("lm") / "model"
    lm.save(folder)
    return lm, folder


def _untrained(seed=0, **config):
    """A model with random weights of the given configuration (perturbed well away from the
    small initial values, so that the comparison means something) over TEXT's characters."""
    lm = GRULanguageModel(**config)
    lm.vocab_ = Vocabulary.from_text(TEXT) if lm.config.level == "char" else Vocabulary.bytes()
    torch.manual_seed(seed)
    lm.net_ = LMNet(lm.config, lm.vocab_.size)
    with torch.no_grad():
        for p in lm.net_.parameters():
            p.add_(0.3 * torch.randn_like(p))
    lm.net_.eval()
    return lm


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _last_softmax(logits):
    """p(next token) from ONNX Runtime's logits (1, T, V), in float64: (V,)."""
    z = logits[0, -1].astype(np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def test_exported_next_token_distribution_matches_the_model(trained, tmp_path):
    lm, _ = trained
    path = tmp_path / "lm.onnx"
    export_onnx(lm, path)
    session = _session(path)
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("tokens", "tensor(int64)"),
        ("state", "tensor(float)"),
    ]
    assert [o.name for o in session.get_outputs()] == ["logits", "state_out"]
    # a deployer tokenizes with the vocabulary written beside the file (and kept in the metadata)
    vocab = Vocabulary.from_dict(json.loads(vocab_path(path).read_text(encoding="utf-8")))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["grukit.vocab"]) == lm.vocab_.to_dict()
    for prompt in ["the cat sat on the ", "a dog", "t"]:
        tokens = vocab.encode(prompt)[None]  # (1, T)
        state = np.zeros((1, 1, 16), np.float32)  # (L, N, H)
        logits, state_out = session.run(None, {"tokens": tokens, "state": state})
        assert logits.shape == (1, len(prompt), lm.vocab_.size) and state_out.shape == (1, 1, 16)
        np.testing.assert_allclose(_last_softmax(logits), lm.next_token_probs(prompt), rtol=0, atol=1e-5)


# both formulations, 2 layers, tied with E != H (the projection P), untied, the byte level, and
# the dropouts (identity in evaluation, so exportable)
CONFIGS = [
    dict(reset_after=False, num_layers=2, hidden_size=16, embedding_size=8),
    dict(
        reset_after=True,
        num_layers=2,
        hidden_size=12,
        tie_weights=False,
        dropout=0.2,
        recurrent_dropout=0.1,
        weight_dropout=0.2,
        embed_dropout=0.1,
        output_dropout=0.1,
    ),
    dict(reset_after=True, num_layers=1, hidden_size=8, level="byte"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_state_carried_over_two_chunks_matches_one_pytorch_pass(tmp_path, config):
    lm = _untrained(**config)
    path = tmp_path / "lm.onnx"
    proto = export_onnx(lm, path)
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(grus) == lm.config.num_layers
    for node in grus:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["linear_before_reset"] == int(lm.config.reset_after)
    assert not {"Loop", "Scan", "Sigmoid"} & {n.op_type for n in proto.graph.node}  # not unrolled

    L, H, N = lm.config.num_layers, lm.config.hidden_size, 3
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, lm.vocab_.size, (N, 13), generator=g)  # (N, T)
    h0 = torch.randn(L, N, H, generator=g)  # (L, N, H)
    session = _session(path)
    first, state = session.run(None, {"tokens": tokens[:, :6].numpy(), "state": h0.numpy()})
    second, state = session.run(None, {"tokens": tokens[:, 6:].numpy(), "state": state})
    with torch.no_grad():
        logits, h_n = lm.net_(tokens, h0)  # (N, T, V), (L, N, H): one pass over both chunks
    got = torch.log_softmax(torch.from_numpy(np.concatenate([first, second], 1)).double(), -1)
    want = torch.log_softmax(logits.double(), -1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(state, h_n.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("option", [dict(layer_norm=True), dict(zoneout=0.1)], ids=lambda o: next(iter(o)))
def test_variant_onnx_cannot_express_is_refused_naming_the_option(tmp_path, option):
    lm = _untrained(hidden_size=8, **option)
    with pytest.raises(ConversionError, match=f"cannot be exported to ONNX.*{next(iter(option))}"):
        export_onnx(lm, tmp_path / "lm.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_opset_and_wrong_objects_are_refused(tmp_path):
    lm = _untrained(hidden_size=8)
    for opset in (5, 1000, "18", True):
        with pytest.raises(ConversionError, match="expected opset to be an int"):
            export_onnx(lm, tmp_path / "lm.onnx", opset=opset)
    with pytest.raises(TypeError, match="expected a GRULanguageModel"):
        export_onnx(lm.net_, tmp_path / "lm.onnx")
    assert list(tmp_path.iterdir()) == []


def test_failed_check_keeps_the_existing_file(tmp_path, monkeypatch):
    lm = _untrained(hidden_size=8)
    path = tmp_path / "lm.onnx"
    path.write_bytes(b"the previous export")
    monkeypatch.setattr(text_export, "TOLERANCE", -1.0)  # nothing passes
    with pytest.raises(ConversionError, match="verification failed.*not written"):
        export_onnx(lm, path)
    assert path.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.onnx"]  # no temporary file left


def test_cli_export_keeps_existing_output_unless_force(trained, tmp_path, capsys):
    lm, folder = trained
    out = tmp_path / "lm.onnx"
    argv = ["text", "export", "--model", str(folder), "--out", str(out)]
    assert main(argv) == 0
    assert "verified: ONNX Runtime matches the model" in capsys.readouterr().out
    assert out.is_file() and vocab_path(out).is_file()
    logits, _ = _session(out).run(
        None, {"tokens": lm.vocab_.encode("the ")[None], "state": np.zeros((1, 1, 16), np.float32)}
    )
    np.testing.assert_allclose(_last_softmax(logits), lm.next_token_probs("the "), rtol=0, atol=1e-5)

    out.write_bytes(b"keep me")
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    out.unlink()  # the vocabulary beside it is an output too
    assert main(argv) == 2
    assert f"{vocab_path(out)} exists; pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert out.read_bytes() != b"keep me" and onnx.load(str(out)).graph.input[0].name == "tokens"


def test_cli_reports_refusals_in_one_line(tmp_path, capsys):
    folder = tmp_path / "zoneout"
    _untrained(hidden_size=8, zoneout=0.1).save(folder)
    out = tmp_path / "lm.onnx"
    assert main(["text", "export", "--model", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grukit: error:") and "zoneout" in err and "\n" not in err
    assert main(["text", "export", "--model", str(folder), "--out", str(tmp_path / "lm.txt")]) == 2
    assert "--out must name a .onnx file" in capsys.readouterr().err
    assert main(["text", "export", "--model", str(folder), "--out", str(out), "--opset", "3"]) == 2
    assert "expected opset to be an int" in capsys.readouterr().err
    assert not out.exists()


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "model"
    lm = _untrained(hidden_size=8)
    lm.save(folder)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(MissingDependency, match=r"grukit\[onnx\]"):
        export_onnx(lm, tmp_path / "lm.onnx")
    assert main(["text", "export", "--model", str(folder), "--out", str(tmp_path / "lm.onnx")]) == 2
    assert "pip install 'grukit[onnx]'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "lm.onnx")
