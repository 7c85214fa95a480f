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
    cases = {(r["N"], r["T"], r["I"], r["H"]) for r in rows}
    for r in rows:
        if not r.get("skipped"):  # the rate is the case's work (formula below) over the median
            case = Case(int(r["N"]), int(r["T"]), int(r["I"]), int(r["H"]), int(r["layers"]),
                        r["bidirectional"] == "True")
            expected = case.flops(r["mode"]) / (float(r["median_ms"]) / 1e3) / 1e9
            assert float(r["gflops"]) == pytest.approx(expected, rel=1e-6), r
    assert len(cases) == 2
    data = json.loads((tmp_path / "bench.json").read_text())
    env = data["environment"]
    assert env["torch_threads"] >= 1 and env["versions"]["torch"] and env["matmul_peak_gflops"] > 0
    assert len(data["results"]) == len(rows)
    summary = (tmp_path / "bench.md").read_text().splitlines()
    assert summary[0].startswith("| case (N, T, I, H) | form | mode | grukit ms | torch ms | ORT ms")
    assert len(summary) == 2 + 2 * 2 * 2  # header + one row per case, formulation and mode


def test_runner_keeps_the_median_of_interleaved_rounds(monkeypatch):
    """With a fake clock, every provider's per-call time is known exactly: the runner repeats
    short calls up to min_time, divides by the repeats, keeps one sample per round and reports
    the median, with providers rotated each round."""
    import itertools

    from grukit.bench import runner
    from grukit.bench.providers import Provider

    now, order = [0.0], []
    cost = {"a": [0.004, 0.001, 0.009, 0.003, 0.002], "b": [0.010] * 5}  # seconds per call

    def build(name):
        calls = itertools.count()

        def make(case, reset_after, mode):
            def run():
                i = next(calls)
                order.append(name)
                # calls 0 and 1 are the first call and the repeat-count probe; then round r
                # repeats its call reps times at round r's cost
                now[0] += cost[name][0] if i < 2 else cost[name][min(4, (i - 2) // reps[name])]
            return run
        return Provider(name, make, lambda c, r, m: None)

    reps = {"a": 3, "b": 1}  # ceil(0.010 / 0.004), ceil(0.010 / 0.010)
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(runner, "PROVIDERS", {"a": build("a"), "b": build("b")})
    results = runner.run_grid([Case(1, 2, 3, 4)], ["a", "b"], ["inference"], ["after"],
                              rounds=5, min_time=0.010)
    a, b = results
    assert a.times == pytest.approx(cost["a"]) and a.median == pytest.approx(0.003)
    assert b.median == pytest.approx(0.010) and a.first_call_s == pytest.approx(0.004)
    assert a.spread == pytest.approx((0.009 - 0.001) / 0.003)
    rounds = order[4:]  # after each provider's first call and probe
    assert rounds[:4] == ["a", "a", "a", "b"] and rounds[4:8] == ["b", "a", "a", "a"]


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
    from grukit.bench.providers import VARIANTS

    variants = {f"grukit-cpu[{v}]" for v in VARIANTS}
    assert set(PROVIDERS) == {"grukit-cpu", "grukit-reference", "torch", "ort-lbr1", "ort-lbr0"} | variants


def test_bench_variants_axis_runs_each_option_beside_the_plain_gru(tmp_path, capsys):
    rc = main(["bench", "--grid", "tiny", "--rounds", "1", "--out", str(tmp_path),
               "--providers", "torch", "--variants", "layer_norm", "zoneout", "--modes", "training"])
    assert rc == 0
    assert "vs plain" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    ran = {r["provider"] for r in rows if not r.get("skipped")}
    assert ran == {"grukit-cpu", "torch", "grukit-cpu[layer_norm]", "grukit-cpu[zoneout]"}
    plain = {(r["case"], r["formulation"]): float(r["median_ms"]) for r in rows
             if r["provider"] == "grukit-cpu"}
    for r in rows:  # a variant's cost is its own median over the plain one's on the same row
        if r["provider"].startswith("grukit-cpu["):
            expected = float(r["median_ms"]) / plain[r["case"], r["formulation"]]
            assert float(r["cost_vs_plain"]) == pytest.approx(expected, rel=1e-6)
    md = (tmp_path / "bench.md").read_text()
    assert "| case (N, T, I, H) | form | mode | plain ms | layer_norm | zoneout |" in md


def test_variant_providers_build_models_with_their_options_in_the_mode_measured():
    from grukit.bench.providers import VARIANTS, variant_provider

    case = Case(2, 3, 4, 5)
    for variant, options in VARIANTS.items():
        provider = PROVIDERS[variant_provider(variant)]
        assert provider.supports(case, True, "training") is None
        assert provider.supports(case, False, "inference") is None
    assert set(VARIANTS["all"]) == {"layer_norm", "zoneout", "recurrent_dropout", "weight_dropout"}
