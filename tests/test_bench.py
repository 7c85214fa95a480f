"""`grukit bench` on a tiny grid: runs every provider it can, writes CSV and JSON with the machine."""

import csv
import importlib.util
import json

import pytest

from grukit.bench.cases import Case, parse_case
from grukit.bench.providers import PROVIDERS, Job, onnx_gru_model
from grukit.cli.main import main

PEERS = ["ort", "openvino"]


@pytest.mark.parametrize("placement", ["isolated", "interleaved"])
def test_bench_smoke_on_the_tiny_grid(tmp_path, capsys, placement):
    """Every provider at each thread count, each in its own process or all in this one; a peer
    that is not installed is named and skipped. A process costs seconds to start, so the
    isolated run has one thread count and leaves the reference backend to the interleaved run."""
    absent = [p for p in PEERS if importlib.util.find_spec(p if p == "openvino" else "onnxruntime") is None]
    isolated = placement == "isolated"
    own = ["grukit-cpu", "torch"] + ([] if isolated else ["grukit-reference"])
    threads = ["1"] if isolated else ["1", "2"]
    rc = main(
        [
            "bench",
            "--grid",
            "tiny",
            "--rounds",
            "2",
            "--min-time",
            "0.005",
            "--out",
            str(tmp_path),
            "--threads",
            *threads,
            "--providers",
            *own,
            *PEERS,
        ]
        + ([] if isolated else ["--interleaved"])
    )
    assert rc == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "matrix-product peak GFLOP/s" in text and "float32@1" in text and "vs torch" in text
    assert placement in text
    for p in absent:
        assert f"skipping {p}: " in captured.err
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    ran = {(r["provider"], r["formulation"], r["mode"], r["threads"]) for r in rows if not r.get("skipped")}
    for t in threads:
        assert ("grukit-cpu", "before", "training", t) in ran
        assert ("grukit-cpu", "after", "inference", t) in ran
        assert ("torch", "after", "training", t) in ran
        for p in set(PEERS) - set(absent):  # both formulations: linear_before_reset 0 and 1
            assert (p, "before", "inference", t) in ran and (p, "after", "inference", t) in ran
    skipped = {(r["provider"], r["formulation"]): r["skipped"] for r in rows if r.get("skipped")}
    assert "only the reset-after" in skipped["torch", "before"]
    for p in set(PEERS) - set(absent):
        assert "no GRU training" in skipped[p, "after"]
    cases = {(r["N"], r["T"], r["I"], r["H"]) for r in rows}
    for r in rows:
        if not r.get("skipped"):  # the rate is the case's work (formula below) over the median
            case = Case(
                int(r["N"]),
                int(r["T"]),
                int(r["I"]),
                int(r["H"]),
                int(r["layers"]),
                r["bidirectional"] == "True",
            )
            expected = case.flops(r["mode"]) / (float(r["median_ms"]) / 1e3) / 1e9
            assert float(r["gflops"]) == pytest.approx(expected, rel=1e-6), r
    assert len(cases) == 2
    _check_fastest_and_ratios(rows)
    data = json.loads((tmp_path / "bench.json").read_text())
    env = data["environment"]
    assert env["versions"]["torch"] and env["cpu"] and env["threads_tried"] == [int(t) for t in threads]
    assert env["isolated"] == isolated
    assert set(env["matmul_peak_gflops"]) >= {f"float32@{t}" for t in threads}
    assert all(g > 0 for g in env["matmul_peak_gflops"].values())
    assert isinstance(env["vector_extensions"], list)
    assert len(data["results"]) == len(rows)
    summary = (tmp_path / "bench.md").read_text().splitlines()
    assert summary[0].startswith(
        "| case (N, T, I, H) | form | mode | grukit ms | torch ms | ORT ms | OpenVINO ms"
    )
    assert len(summary) == 2 + 2 * 2 * 2  # header + one row per case, formulation and mode


def _check_fastest_and_ratios(rows):
    """Each provider's fastest thread count is marked once per row group, and every speed-up is
    the peer's fastest median over this result's median, recomputed here from the CSV."""
    groups = {}
    for r in rows:
        if not r.get("skipped"):
            groups.setdefault((r["case"], r["formulation"], r["mode"]), []).append(r)
    for group in groups.values():
        best = {}
        for r in group:
            ms = float(r["median_ms"])
            if r["provider"] not in best or ms < best[r["provider"]]:
                best[r["provider"]] = ms
        for r in group:
            assert (r["fastest"] == "True") == (float(r["median_ms"]) == best[r["provider"]])
            peers = {p: best[p] for p in ("torch", "ort", "openvino") if p in best and p != r["provider"]}
            for p, ms in peers.items():
                assert float(r[f"speedup_vs_{p}"]) == pytest.approx(ms / float(r["median_ms"]), rel=1e-6)
            if r["provider"].startswith("grukit") and peers:
                expected = min(peers.values()) / float(r["median_ms"])
                assert float(r["speedup_vs_best_peer"]) == pytest.approx(expected, rel=1e-6)


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

        def make(job):
            def run():
                i = next(calls)
                order.append(name)
                # calls 0 and 1 are the first call and the repeat-count probe; then round r
                # repeats its call reps times at round r's cost
                now[0] += cost[name][0] if i < 2 else cost[name][min(4, (i - 2) // reps[name])]

            return run

        return Provider(name, make, lambda job: None)

    reps = {"a": 3, "b": 1}  # ceil(0.010 / 0.004), ceil(0.010 / 0.010)
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(runner, "PROVIDERS", {"a": build("a"), "b": build("b")})
    config = runner.GridConfig((Case(1, 2, 3, 4),), ("a", "b"), rounds=5, min_time=0.010, isolated=False)
    results = runner.run_grid(config)
    a, b = results
    assert a.times == pytest.approx(cost["a"]) and a.median == pytest.approx(0.003)
    assert b.median == pytest.approx(0.010) and a.first_call_s == pytest.approx(0.004)
    assert a.spread == pytest.approx((0.009 - 0.001) / 0.003)
    rounds = order[4:]  # after each provider's first call and probe
    assert rounds[:4] == ["a", "a", "a", "b"] and rounds[4:8] == ["b", "a", "a", "a"]


@pytest.mark.parametrize("isolated", [True, False])
def test_isolated_samples_start_after_a_pause(monkeypatch, isolated):
    """In isolated mode each sample starts after ``settle`` seconds, so the previous provider's
    process has let its spinning threads sleep (they slowed the next provider's barrier-bound
    training by 15-40%); in one process (interleaved) there is nothing to wait for."""
    from grukit.bench import runner
    from grukit.bench.providers import Provider

    sleeps = []
    monkeypatch.setattr(runner.time, "sleep", sleeps.append)
    monkeypatch.setattr(runner, "_Worker", runner._Local)  # the same protocol, no processes
    noop = Provider("a", lambda job: lambda: None, lambda job: None)
    monkeypatch.setattr(runner, "PROVIDERS", {"a": noop, "b": noop})
    config = runner.GridConfig((Case(1, 2, 3, 4),), ("a", "b"), rounds=3, min_time=0.0, isolated=isolated)
    runner.run_grid(config)
    assert sleeps == ([config.settle] * 6 if isolated else [])
    assert config.settle == 0.1


def test_an_isolated_sample_starts_with_one_untimed_call(monkeypatch):
    """After the pause, the first call is slow (the core idled); it is made but not counted:
    with a fake clock where that call costs 1 s and the others 1 ms, every sample is 1 ms."""
    from grukit.bench import runner
    from grukit.bench.providers import Provider

    now, calls = [0.0], []
    monkeypatch.setattr(runner.time, "sleep", lambda s: calls.append("sleep"))
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(runner, "_Worker", runner._Local)

    def make(job):
        def run():
            now[0] += 1.0 if calls and calls[-1] == "sleep" else 0.001
            calls.append("call")

        return run

    monkeypatch.setattr(runner, "PROVIDERS", {"a": Provider("a", make, lambda job: None)})
    config = runner.GridConfig((Case(1, 2, 3, 4),), ("a",), rounds=4, min_time=0.0025, isolated=True)
    (result,) = runner.run_grid(config)
    assert result.times == pytest.approx([0.001] * 4)
    assert calls.count("sleep") == 4 and calls.count("call") == 2 + 4 * (1 + 3)  # first, probe; warm + 3


def test_case_parsing():
    assert parse_case("8,500,64,128") == Case(8, 500, 64, 128)
    assert parse_case("4, 50, 32, 64, 2, bi") == Case(4, 50, 32, 64, layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="expected a case as N,T,I,H"):
        parse_case("8,500,64")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--case", "1,2,x,4"], "expected a case as N,T,I,H"),
        (["--threads", "0"], "--threads takes positive integers or 'all', got '0'"),
        (["--threads", "two"], "--threads takes positive integers or 'all', got 'two'"),
        (["--min-time", "nan"], "--min-time must be 0 or more seconds, got nan"),
        (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    ],
)
def test_bad_options_on_the_command_line_are_one_line(tmp_path, capsys, args, message):
    assert main(["bench", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grukit: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("lbr", [0, 1])
def test_onnx_peers_run_the_graph_of_the_module(lbr):
    """ONNX Runtime and OpenVINO (at float32) run the exported graph of the peer to the
    module's own outputs: the peers compute the same GRU as grukit, in both formulations."""
    import numpy as np
    import torch

    import grukit

    case = Case(3, 5, 4, 6, layers=2, bidirectional=True)
    proto = onnx_gru_model(case, lbr, seed=7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)  # the same weights as the exported graph
        module = grukit.GRU(4, 6, 2, bidirectional=True, reset_after=bool(lbr))
    x = np.random.default_rng(0).standard_normal((5, 3, 4), dtype=np.float32)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in module(torch.from_numpy(x)))
    assert y_ref.shape == (5, 3, 12) and h_ref.shape == (4, 3, 6)
    outputs = {}
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs["ort"] = sess.run(None, {"input": x})
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(proto.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        result = compiled.create_infer_request().infer({0: x})
        outputs["openvino"] = [result[o] for o in compiled.outputs]
    if not outputs:
        pytest.skip("neither onnxruntime nor openvino is installed")
    for name, (y, h_n) in outputs.items():
        np.testing.assert_allclose(y, y_ref, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(h_n, h_ref, atol=1e-5, err_msg=name)


def test_flops_formula():
    case = Case(2, 10, 3, 4, layers=2, bidirectional=True)
    layer0 = 2 * 2 * 10 * 2 * 12 * (3 + 4)
    layer1 = 2 * 2 * 10 * 2 * 12 * (8 + 4)
    assert case.flops("inference") == layer0 + layer1
    assert case.flops("training") == 3 * (layer0 + layer1)
    from grukit.bench.providers import VARIANTS

    variants = {f"grukit-cpu[{v}]" for v in VARIANTS}
    assert set(PROVIDERS) == {"grukit-cpu", "grukit-reference", "torch", "ort", "openvino"} | variants


def test_bench_variants_axis_runs_each_option_beside_the_plain_gru(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--grid",
            "tiny",
            "--rounds",
            "1",
            "--min-time",
            "0.005",
            "--out",
            str(tmp_path),
            "--interleaved",
            "--threads",
            "1",
            "--providers",
            "torch",
            "--variants",
            "layer_norm",
            "zoneout",
            "--modes",
            "training",
        ]
    )
    assert rc == 0
    assert "vs plain" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    ran = {r["provider"] for r in rows if not r.get("skipped")}
    assert ran == {"grukit-cpu", "torch", "grukit-cpu[layer_norm]", "grukit-cpu[zoneout]"}
    plain = {}  # the plain GRU at its fastest thread count
    for r in rows:
        if r["provider"] == "grukit-cpu":
            key = (r["case"], r["formulation"])
            plain[key] = min(plain.get(key, float("inf")), float(r["median_ms"]))
    for r in rows:  # a variant's cost is its own median over the plain one's on the same row
        if r["provider"].startswith("grukit-cpu["):
            expected = float(r["median_ms"]) / plain[r["case"], r["formulation"]]
            assert float(r["cost_vs_plain"]) == pytest.approx(expected, rel=1e-6)
    md = (tmp_path / "bench.md").read_text()
    assert "| case (N, T, I, H) | form | mode | plain ms | layer_norm | zoneout |" in md


def test_variant_providers_build_models_with_their_options_in_the_mode_measured():
    from grukit.bench.providers import VARIANTS, variant_provider

    case = Case(2, 3, 4, 5)
    for variant in VARIANTS:
        provider = PROVIDERS[variant_provider(variant)]
        assert provider.supports(Job(case, True, "training")) is None
        assert provider.supports(Job(case, False, "inference")) is None
    assert set(VARIANTS["all"]) == {"layer_norm", "zoneout", "recurrent_dropout", "weight_dropout"}


def test_a_failure_in_a_worker_is_raised_here_with_its_traceback():
    """torch.nn.GRU refuses hidden_size 0 inside the worker process: the parent raises, naming
    the provider and thread count and carrying the worker's own error, instead of hanging or
    reporting a skipped row."""
    from grukit.bench import runner

    config = runner.GridConfig((Case(1, 2, 3, 0),), ("torch",), isolated=True)
    with pytest.raises(RuntimeError, match="torch at 1 threads failed in its worker") as info:
        runner.run_grid(config)
    assert "hidden_size" in str(info.value)


def test_a_peer_that_is_not_installed_is_named_and_skipped(tmp_path, capsys, monkeypatch):
    import dataclasses

    from grukit.bench import providers, runner

    absent = dataclasses.replace(
        PROVIDERS["openvino"], missing=lambda: "openvino is not installed (pip install 'grukit[bench]')"
    )
    patched = dict(PROVIDERS, openvino=absent)
    monkeypatch.setattr(providers, "PROVIDERS", patched)
    monkeypatch.setattr(runner, "PROVIDERS", patched)
    rc = main(
        [
            "bench",
            "--case",
            "2,3,4,5",
            "--modes",
            "inference",
            "--rounds",
            "1",
            "--min-time",
            "0",
            "--threads",
            "1",
            "--interleaved",
            "--providers",
            "grukit-cpu",
            "openvino",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    assert (
        "skipping openvino: openvino is not installed (pip install 'grukit[bench]')"
        in capsys.readouterr().err
    )
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert {r["provider"] for r in rows if not r.get("skipped")} == {"grukit-cpu"}
    assert all("not installed" in r["skipped"] for r in rows if r["provider"] == "openvino")


def test_a_busy_machine_is_named_when_more_threads_multiply_slower():
    """The run's own peak measurement says when the cores were shared: more threads measuring a
    lower float32 rate than fewer gives a warning naming both rates; a normal scaling none."""
    from grukit.cli.bench import busy_warning

    assert busy_warning({"float32@1": 149.0, "float32@2": 292.0, "bfloat16@2": 1.0}, [1, 2]) is None
    message = busy_warning({"float32@1": 149.0, "float32@2": 114.0}, [2, 1])
    assert message is not None and "114" in message and "149" in message and "2 threads" in message
    assert busy_warning({"float32@4": 10.0}, [4]) is None
