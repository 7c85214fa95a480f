"""`grukit bench` on a tiny grid: runs every provider it can, writes CSV and JSON with the machine."""

import csv
import json

import pytest

from grukit.bench.cases import Case, parse_case
from grukit.bench.providers import PROVIDERS, onnx_gru_model
from grukit.cli.main import main


def test_bench_smoke_on_the_tiny_grid(tmp_path, capsys):
    rc = main(["bench", "--grid", "tiny", "--rounds", "2", "--out", str(tmp_path),
               "--providers", "grukit-cpu", "grukit-reference", "torch", "ort-lbr1", "ort-lbr0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fp32 matmul peak" in text and "vs torch" in text
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    ran = {(r["provider"], r["formulation"], r["mode"]) for r in rows if not r.get("skipped")}
    assert ("grukit-cpu", "before", "training") in ran and ("grukit-cpu", "after", "inference") in ran
    assert ("torch", "after", "training") in ran and ("ort-lbr0", "before", "inference") in ran
    skipped = {(r["provider"], r["formulation"]): r["skipped"] for r in rows if r.get("skipped")}
    assert "only the reset-after" in skipped["torch", "before"]
    for r in rows:
        if not r.get("skipped"):
            assert float(r["median_ms"]) > 0 and float(r["gflops"]) > 0
    data = json.loads((tmp_path / "bench.json").read_text())
    env = data["environment"]
    assert env["torch_threads"] >= 1 and env["versions"]["torch"] and env["matmul_peak_gflops"] > 0
    assert len(data["results"]) == len(rows)
    summary = (tmp_path / "bench.md").read_text().splitlines()
    assert summary[0].startswith("| case (N, T, I, H) | form | mode | grukit ms | torch ms | ORT ms")
    assert len(summary) == 2 + 2 * 2 * 2  # header + one row per case, formulation and mode


def test_case_parsing():
    assert parse_case("8,500,64,128") == Case(8, 500, 64, 128)
    assert parse_case("4, 50, 32, 64, 2, bi") == Case(4, 50, 32, 64, layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="expected a case as N,T,I,H"):
        parse_case("8,500,64")


def test_bad_case_on_the_command_line_is_one_line(tmp_path, capsys):
    assert main(["bench", "--case", "1,2,x,4", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("grukit: error: expected a case as N,T,I,H")


@pytest.mark.parametrize("lbr", [0, 1])
def test_onnx_peer_graph_has_the_module_shapes(lbr):
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    case = Case(3, 5, 4, 6, layers=2, bidirectional=True)
    sess = ort.InferenceSession(onnx_gru_model(case, lbr).SerializeToString(), providers=["CPUExecutionProvider"])
    y, h_n = sess.run(None, {"input": np.zeros((5, 3, 4), np.float32)})
    assert y.shape == (5, 3, 12) and h_n.shape == (4, 3, 6)


def test_flops_formula():
    case = Case(2, 10, 3, 4, layers=2, bidirectional=True)
    layer0 = 2 * 2 * 10 * 2 * 12 * (3 + 4)
    layer1 = 2 * 2 * 10 * 2 * 12 * (8 + 4)
    assert case.flops("inference") == layer0 + layer1
    assert case.flops("training") == 3 * (layer0 + layer1)
    assert set(PROVIDERS) == {"grukit-cpu", "grukit-reference", "torch", "ort-lbr1", "ort-lbr0"}
