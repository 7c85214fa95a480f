"""Gate inspection (issue 14, part 4): ``grukit.inspect`` and ``grukit inspect``.

The oracle is written here from the equations (docs/inspect.md, docs/variants.md), one sequence
and one step at a time in float64, and returns every step's r, z, n; the traces are compared with
it, and with properties (the state update rebuilt from the gates, packed = per sequence, layouts).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
import grukit.inspect as gi
from grukit import backends, modules
from grukit._validate import InputError

F64 = dict(rtol=1e-10, atol=1e-12)
EPS = 1e-5  # layer norm's
OPTIONS = {
    "plain": {},
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.3),
    "layer_norm+zoneout": dict(layer_norm=True, zoneout=0.2),
}


# -- the oracle -------------------------------------------------------------------------------


def ln(v, gain, shift):
    mean = v.mean()
    var = ((v - mean) ** 2).mean()
    return gain * (v - mean) / torch.sqrt(var + EPS) + shift


def oracle_gates(x, h, p, reset_after):
    """r, z, n of one step of one sequence: x (I,), h (H,)."""
    H = h.numel()
    wx = p["w_ih"] @ x
    if "g_ih" in p:
        wx = ln(wx, p["g_ih"], p["c_ih"])
    wx = wx + p["b_ih"]
    if reset_after:
        wh = p["w_hh"] @ h
        if "g_hh" in p:
            wh = ln(wh, p["g_hh"], p["c_hh"])
        wh = wh + p["b_hh"]
        r = torch.sigmoid(wx[:H] + wh[:H])
        z = torch.sigmoid(wx[H : 2 * H] + wh[H : 2 * H])
        n = torch.tanh(wx[2 * H :] + r * wh[2 * H :])
    else:
        wh = p["w_hh"][: 2 * H] @ h
        if "g_hh" in p:
            wh = ln(wh, p["g_hh"][: 2 * H], p["c_hh"][: 2 * H])
        wh = wh + p["b_hh"][: 2 * H]
        r = torch.sigmoid(wx[:H] + wh[:H])
        z = torch.sigmoid(wx[H : 2 * H] + wh[H:])
        hn = p["w_hh"][2 * H :] @ (r * h)
        if "g_hh" in p:
            hn = ln(hn, p["g_hh"][2 * H :], p["c_hh"][2 * H :])
        n = torch.tanh(wx[2 * H :] + hn + p["b_hh"][2 * H :])
    return r, z, n


def oracle(model, x):
    """Evaluation mode, full-length sequences: x (T, N, I) -> gates (L, D, T, N, 3, H)."""
    T, N, _ = x.shape
    L, D, H, p_zo = model.num_layers, model.num_directions, model.hidden_size, model.zoneout
    names = [("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")]
    if model.layer_norm:
        names += [
            ("g_ih", "layer_norm_ih_weight"),
            ("c_ih", "layer_norm_ih_bias"),
            ("g_hh", "layer_norm_hh_weight"),
            ("c_hh", "layer_norm_hh_bias"),
        ]
    gates = torch.zeros(L, D, T, N, 3, H, dtype=x.dtype)
    layer_in = x
    for k in range(L):
        out = torch.zeros(T, N, D * H, dtype=x.dtype)
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            p = {key: getattr(model, name + sfx).detach() for key, name in names}
            for b in range(N):
                h = torch.zeros(H, dtype=x.dtype)
                for t in reversed(range(T)) if d else range(T):
                    r, z, n = oracle_gates(layer_in[t, b], h, p, model.reset_after)
                    gates[k, d, t, b] = torch.stack([r, z, n])
                    h_new = (1 - z) * n + z * h
                    h = p_zo * h + (1 - p_zo) * h_new
                    out[t, b, d * H : (d + 1) * H] = h
        layer_in = out
    return gates


def _model(**kw):
    defaults = dict(input_size=3, hidden_size=4, dtype=torch.float64)
    model = grukit.GRU(**(defaults | kw)).eval()
    with torch.no_grad():  # layer-norm gains and shifts away from 1 and 0
        for name in model._layer_norm_names:
            getattr(model, name).add_(0.3 * torch.randn(getattr(model, name).shape, dtype=torch.float64))
    return model


# -- the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_gates_match_float64_oracle(reset_after, option, backend):
    model = _model(
        num_layers=2, bidirectional=True, reset_after=reset_after, backend=backend, **OPTIONS[option]
    )
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    trace = gi.gates(model, x)
    expected = oracle(model, x)  # (L, D, T, N, 3, H)
    assert trace.z.shape == (2, 2, 5, 2, 4)
    torch.testing.assert_close(torch.stack([trace.r, trace.z, trace.n], 4), expected, **F64)
    ran = backends.get(trace.model_backend)  # auto: the fused cpu backend where it can run
    assert trace.backend == (ran.name if ran.gates is not None else "reference")
    assert trace.reset_after is reset_after
    out, h_n = model(x)
    torch.testing.assert_close(trace.output, out, **F64)  # the forward pass it recorded
    torch.testing.assert_close(trace.h_n, h_n, **F64)


@pytest.mark.parametrize("reset_after", [False, True])
def test_state_update_rebuilt_from_gates(reset_after):
    model = _model(reset_after=reset_after)
    x, hx = torch.randn(6, 3, 3, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    trace = gi.gates(model, x, hx)
    h_prev = torch.cat([hx, trace.output[:-1]])  # (T, N, H): h_{t-1}
    z, n = trace.z[0, 0], trace.n[0, 0]
    torch.testing.assert_close((1 - z) * n + z * h_prev, trace.output, **F64)
    assert ((trace.r > 0) & (trace.r < 1) & (trace.z > 0) & (trace.z < 1)).all()
    assert (trace.n.abs() < 1).all()


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_packed_gates_match_per_sequence_and_are_zero_past_the_end(backend):
    model = _model(bidirectional=True, layer_norm=True, backend=backend)
    seqs = [torch.randn(T, 3, dtype=torch.float64) for T in (3, 5, 1)]
    trace = gi.gates(model, pack_sequence(seqs, enforce_sorted=False))
    assert trace.lengths.tolist() == [3, 5, 1]
    assert trace.z.shape == (1, 2, 5, 3, 4)
    valid = trace.valid()  # (T, N)
    for g in (trace.r, trace.z, trace.n):
        assert (g[:, :, ~valid] == 0).all()
    for b, s in enumerate(seqs):  # a packed batch equals per-sequence runs
        alone = gi.gates(model, s)  # unbatched: N = 1
        torch.testing.assert_close(trace.z[:, :, : len(s), b], alone.z[:, :, :, 0], **F64)
        torch.testing.assert_close(trace.n[:, :, : len(s), b], alone.n[:, :, :, 0], **F64)


def test_reverse_direction_is_forward_on_flipped_input():
    model = _model(bidirectional=True)
    forward_only = _model()
    with torch.no_grad():
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(forward_only, kind + "_l0").copy_(getattr(model, kind + "_l0_reverse"))
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    reverse = gi.gates(model, x).z[0, 1]  # (T, N, H)
    torch.testing.assert_close(reverse, gi.gates(forward_only, x.flip(0)).z[0, 0].flip(0), **F64)


def test_layouts_are_time_major():
    model = _model(num_layers=2)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    time_major = gi.gates(model, x)
    model.batch_first = True
    batch_first = gi.gates(model, x.transpose(0, 1))
    torch.testing.assert_close(batch_first.z, time_major.z, **F64)
    assert batch_first.output.shape == (2, 6, 4)  # the forward pass's own layout
    unbatched = gi.gates(model, x[:, 0])  # batch_first does not apply to 2-D input
    torch.testing.assert_close(unbatched.z[:, :, :, 0], time_major.z[:, :, :, 0], **F64)


def test_training_mode_draws_the_forward_pass_masks():
    kw = dict(num_layers=2, dropout=0.3, zoneout=0.3, recurrent_dropout=0.3, weight_dropout=0.3)
    model = _model(**kw).train()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(7)
    trace = gi.gates(model, x)
    torch.manual_seed(7)
    out, h_n = model(x)
    torch.testing.assert_close(trace.output, out, **F64)
    torch.testing.assert_close(trace.h_n, h_n, **F64)


def test_backend_without_gates_falls_back_to_reference():
    model = grukit.GRU(3, 4, reset_after=True, backend="torch").eval()
    x = torch.randn(5, 2, 3)
    trace = gi.gates(model, x)
    assert (trace.backend, trace.model_backend) == ("reference", "torch")
    torch.testing.assert_close(trace.output, model(x)[0])


def test_cpu_model_gates_from_its_backend_or_reference():
    model = grukit.GRU(3, 4).eval()
    x = torch.randn(5, 2, 3)
    trace = gi.gates(model, x)
    used = backends.get(trace.model_backend)
    assert trace.backend == (used.name if used.gates is not None else "reference")
    torch.testing.assert_close(trace.output, model(x)[0], rtol=1e-5, atol=1e-6)


def test_a_backend_with_gates_computes_them():
    ref = backends.get("reference")
    calls = []

    def gates_fn(*args, **kw):
        calls.append(kw["reverse"])
        return ref.gates(*args, **kw)

    fake = backends.register(
        backends.Backend(
            name="test-gates", layer=ref.layer, gates=gates_fn, check=lambda request: None, priority=-1
        )
    )
    try:
        model = _model(backend=fake.name, bidirectional=True)
        trace = gi.gates(model, torch.randn(4, 2, 3, dtype=torch.float64))
    finally:
        backends._REGISTRY.pop(fake.name)
    assert trace.backend == "test-gates" and calls == [False, True]


def test_only_the_inspected_module_is_recorded_and_plain_passes_after_are_plain():
    inner, outer = _model(), _model(input_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    trace = gi.gates(outer, inner(x)[0])
    assert trace.z.shape == (1, 1, 5, 2, 4)
    assert modules._RECORDING.get() is None


def test_bad_input_is_refused():
    model = _model()
    with pytest.raises(InputError, match="Expected input to be 2D or 3D, got 4D"):
        gi.gates(model, torch.zeros(2, 2, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="input_size. Expected 3, got 5"):
        gi.gates(model, torch.zeros(4, 2, 5, dtype=torch.float64))
    with pytest.raises(InputError, match="hx"):
        gi.gates(model, torch.zeros(4, 2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(InputError, match="Tensor or a PackedSequence, got list"):
        gi.gates(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="expected a grukit.GRU, got GRU"):
        gi.gates(torch.nn.GRU(3, 4), torch.zeros(4, 3))
    assert modules._RECORDING.get() is None  # reset after a failed pass too


def test_hold_durations_finds_every_run():
    z = torch.tensor([[0.9, 0.1], [0.8, 0.6], [0.2, 0.7], [0.6, 0.7]])  # (T=4, H=2)
    holds = gi.hold_durations(z)
    runs = sorted(zip(holds.unit.tolist(), holds.start.tolist(), holds.length.tolist()))
    assert runs == [(0, 0, 2), (0, 3, 1), (1, 1, 3)]
    assert holds.sequence.tolist() == [0, 0, 0]
    batch = torch.stack([z, z], 1)  # (T, N=2, H): the second sequence has 2 steps
    cut = gi.hold_durations(batch, lengths=torch.tensor([4, 2]))
    assert sorted(cut.length[cut.sequence == 1].tolist()) == [1, 2]
    assert gi.hold_durations(z, threshold=0.65).length.tolist() == [2, 2]
    torch.testing.assert_close(
        gi.time_constant(torch.tensor([0.0, 0.5, 0.9])), torch.tensor([1.0, 2.0, 10.0])
    )
    with pytest.raises(InputError, match="threshold in \\[0, 1\\), got 1.5"):
        gi.hold_durations(z, threshold=1.5)
    with pytest.raises(InputError, match="got 1-D"):
        gi.hold_durations(z[0])


def test_recording_a_gru_inside_a_larger_model():
    encoder, decoder = _model(), _model(input_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with gi.recording(decoder) as traces, torch.no_grad():
        for _ in range(2):
            decoder(encoder(x)[0])
    assert len(traces) == 2 and traces[0].z.shape == (1, 1, 5, 2, 4)
    torch.testing.assert_close(traces[1].output, decoder(encoder(x)[0])[0], **F64)


# -- the command line -------------------------------------------------------------------------

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "progress": "off"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny model folders as `forecast train` / `anomaly train` save them, and their data."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    from grukit.apps.anomaly import GRUAnomalyDetector
    from grukit.apps.forecast import GRUForecaster

    root = tmp_path_factory.mktemp("inspect")
    rng = np.random.default_rng(0)
    series = {f"s{i}": 10 + np.sin(np.arange(40) * np.pi / 2) + rng.normal(0, 0.1, 40) for i in range(2)}
    GRUForecaster(4, 4, train=TINY_TRAIN, hidden_size=6, num_layers=2).fit(series).save(root / "fc")
    signal = np.sin(np.arange(300) / 5)[:, None] + rng.normal(0, 0.05, (300, 1))
    np.savetxt(root / "signal.csv", signal, header="a", comments="", delimiter=",")
    GRUAnomalyDetector(
        "signal", train=TINY_TRAIN, model="forecaster", window=16, horizon=4, hidden_size=6
    ).fit(signal).save(root / "sf")
    seqs = np.sin(np.arange(12)[None] / 3 + rng.normal(0, 1, (20, 1)))
    np.savetxt(
        root / "seqs.csv", seqs, header=",".join(f"t{i}" for i in range(12)), comments="", delimiter=","
    )
    GRUAnomalyDetector("sequences", train=TINY_TRAIN, hidden_size=6, latent_size=3, bidirectional=True).fit(
        seqs
    ).save(root / "sq")
    return root


@pytest.mark.parametrize(
    "model, extra, steps",
    [
        ("fc", ["--series", "s1", "--layer", "1"], 12),
        ("sf", ["--input", "signal.csv", "--start", "100", "--length", "50"], 50),
        ("sq", ["--input", "seqs.csv", "--start", "3"], 12),
        ("sq", ["--input", "seqs.csv", "--network", "decoder"], 12),
    ],
)
def test_cli_writes_the_gate_figures(models, tmp_path, capsys, model, extra, steps):
    import json

    from grukit.cli.main import main

    extra = [str(models / a) if a.endswith(".csv") else a for a in extra]
    out = tmp_path / "out"
    assert main(["inspect", "--model", str(models / model), "--out", str(out), *extra]) == 0
    for name in ("gates.png", "holds.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == steps and summary["units"] == 6
    assert summary["directions"] == (2 if model == "sq" and "decoder" not in extra else 1)
    assert 0 < summary["mean_z"] < 1 and summary["gates_backend"] in ("cpu", "reference")
    assert "most-holding units" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model, extra, message",
    [
        ("fc", ["--series", "nope"], "--series 'nope' is not in the data; its series are s0, s1"),
        ("fc", ["--layer", "2"], "--layer must be below the GRU's 2 layer(s), got 2"),
        ("fc", ["--threshold", "1"], "--threshold must be in [0, 1), got 1.0"),
        ("sf", [], "--input is needed for an anomaly detector"),
        ("sf", ["--input", "signal.csv", "--start", "300"], "--start must be below the data's 300 rows"),
        ("sq", ["--input", "seqs.csv", "--length", "5"], "--length applies to forecasters"),
        ("sq", ["--input", "seqs.csv", "--start", "20"], "--start must be below the data's 20 sequences"),
        ("sq", ["--input", "seqs.csv", "--member", "1"], "--member must be below the ensemble's 1 member"),
        (".", [], "is not a model folder written by"),
    ],
)
def test_cli_mistakes_are_one_line_exit_2(models, tmp_path, capsys, model, extra, message):
    from grukit.cli.main import main

    extra = [str(models / a) if a.endswith(".csv") else a for a in extra]
    args = ["inspect", "--model", str(models / model), "--out", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_never_overwrites_without_force(models, tmp_path, capsys):
    from grukit.cli.main import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "gates.png").write_text("mine")
    args = ["inspect", "--model", str(models / "fc"), "--out", str(out)]
    assert main(args) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert (out / "gates.png").read_text() == "mine"
    assert main([*args, "--force"]) == 0 and (out / "gates.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_value_that_is_not_a_number(models, tmp_path, capsys):
    import shutil

    from grukit.cli.main import main

    model = tmp_path / "model"
    shutil.copytree(models / "sf", model)
    (model / "config.json").write_text('{"value_cols": ["a"]}')  # as `anomaly train` records it
    bad = tmp_path / "bad.csv"
    bad.write_text("a\n1.0\nabc\n2.0\n")
    args = ["inspect", "--model", str(model), "--input", str(bad), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "line 3: a='abc' is not a number" in capsys.readouterr().err
    bad.write_text("b\n1.0\n")
    assert main(args) == 2
    assert "no column 'a' (the model's channels are a); the columns are b" in capsys.readouterr().err


# -- the demo report's figure -----------------------------------------------------------------


def test_adding_gate_study_measures_z_around_the_markers(tmp_path):
    from grukit.demos import adding

    cfg = adding.AddingConfig(lengths=(8,), steps=3, batch_size=8, hidden_size=5, test_size=8)
    models = {adding.GATE_MODEL: adding.default_models()[adding.GATE_MODEL]}
    (run,) = adding.run(cfg, models, progress=False)
    assert adding.gate_run([run]) is run and "network" not in adding.summary(cfg, [run])["runs"][0]
    study = adding.gate_study(run, sequences=16, top=2)
    assert study.z.shape == (8, 5) and sorted(study.units.tolist()) == list(range(5))
    assert study.x[study.first, 1] == 1 and study.x[study.second, 1] == 1 and study.first < study.second
    for value in (study.before, study.at_first, study.between, study.after):
        assert 0 < value < 1
    trace = gi.gates(run.network.rnn, study.x)  # unbatched: the study's first sequence
    torch.testing.assert_close(trace.z[0, 0, :, 0], study.z)
    assert f"hold z at {study.between:.2f}" in adding.describe_gates(study)
    adding.plot_gates(study, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
