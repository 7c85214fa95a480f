"""GRUAnomalyDetector on generated signals and sequences, and the detection measures."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grukit.apps.anomaly import DetectorConfig, GRUAnomalyDetector, SeqAutoencoder, clock
from grukit.apps.anomaly.robust import center_and_spread
from grukit.apps.anomaly.scoring import window_errors
from grukit.apps.anomaly_metrics import at_threshold, events, ranking, segments
from grukit.apps.contract import check_estimator
from grukit.data import DataError
from grukit.train import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
FAST = {"epochs": 4, "batch_size": 32, "steps_per_epoch": 40, "lr": 1e-2, "progress": "off", "patience": None}


def _sine(n, period=20.0, noise=0.05, seed=0, phase=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period + phase) + noise * rng.standard_normal(n)


def _with_anomalies(n=3000, seed=1):
    x = _sine(n, seed=seed)
    labels = np.zeros(n, int)
    x[500:503] += 3.0  # spike
    labels[500:503] = 1
    x[1500:1600] += 1.5  # level shift
    labels[1500:1600] = 1
    t = np.arange(2300, 2450)
    x[t] = np.sin(2 * np.pi * t / 7.0)  # frequency change
    labels[t] = 1
    return x, labels


@pytest.fixture(scope="module")
def signal_detector():
    return GRUAnomalyDetector(
        "signal",
        model="autoencoder",
        window=40,
        hidden_size=16,
        smooth=10,
        false_alarm_rate=0.002,
        train=FAST,
    ).fit(_sine(4000))


def test_spikes_level_shifts_and_frequency_changes_are_found(signal_detector):
    x, labels = _with_anomalies()
    scores = signal_detector.score(x)
    flags = scores > signal_detector.threshold_
    ev = events(labels, flags, tolerance=20, min_gap=10)
    assert ev["events"] == 3 and ev["detected"] == 3
    assert ev["false_alarms_per_1000"] < 2
    assert ranking(labels, scores)["ROC-AUC"] > 0.8


@pytest.mark.parametrize("model", ["autoencoder", "forecaster"])
def test_threshold_gives_the_requested_false_alarm_rate_on_normal_data(model):
    det = GRUAnomalyDetector(
        "signal", model=model, window=40, hidden_size=16, false_alarm_rate=0.05, train=FAST
    )
    det.fit(_sine(4000))
    flags = det.predict(_sine(6000, seed=7))  # new noise, same process
    assert 0.025 <= flags.mean() <= 0.10


# -- tolerances for float32 networks --------------------------------------------------------------
# The networks run in float32; errors are summed in float64. Scoring the same windows in batches of
# another size (or a signal in chunks of another length) changes how BLAS blocks the float32
# products, which may move a network output o by a few ulps (0.5 ulp of max(|o|, 1) measured here):
# delta = 4 ulps of max(|o|, 1) is the allowance. A squared error (o - x)^2 then moves by at most
# 2 |o - x| delta + delta^2, and the float32 subtraction, square and mean round by about 2 ulps of
# the result. Means of errors move by at most the mean of the bounds, minima by the largest.
EPS32 = float(np.finfo(np.float32).eps)


def _sq_err_bound(out, target):
    """Elementwise bound on how far a float32 ``(out - target) ** 2`` may move (see above)."""
    delta = 4 * EPS32 * np.maximum(np.abs(out), 1.0)
    d = np.abs(out - target)
    return 2 * d * delta + delta**2 + 2 * EPS32 * d**2


def _windows_by_hand(net, z, W, stride, aggregate):
    """The per-point errors of a window autoencoder, from one batch of all windows and a loop over
    points: (errors (n,), their float32 bound (n,))."""
    n = len(z)
    starts = list(range(0, n - W + 1, stride))
    if starts[-1] != n - W:
        starts.append(n - W)
    with torch.no_grad():
        w = torch.stack([torch.from_numpy(z[s : s + W]) for s in starts])  # (B, W, C)
        out = net(w).double().numpy()
    w = w.double().numpy()
    e_pt = ((out - w) ** 2).mean(2)  # (B, W)
    b_pt = _sq_err_bound(out, w).mean(2)
    err, bound = np.zeros(n), np.zeros(n)
    fewest = W // stride  # an interior point's covering windows, at least
    for u in range(n):
        cover = [(i, u - s) for i, s in enumerate(starts) if s <= u < s + W]
        if aggregate == "point":
            err[u] = np.mean([e_pt[i, o] for i, o in cover])
            bound[u] = np.mean([b_pt[i, o] for i, o in cover])
        else:
            ws = [i for i, _ in cover]
            if len(ws) < fewest:  # near an end: the first or last windows, as many as inside
                ws = list(range(fewest)) if ws[0] == 0 else list(range(len(starts) - fewest, len(starts)))
            win = [e_pt[i].mean() for i in ws]
            wb = [b_pt[i].mean() for i in ws]
            err[u], bound[u] = (min(win), max(wb)) if aggregate == "min" else (np.mean(win), np.mean(wb))
    return err, bound


def _smooth_by_hand(v, m):
    return np.array([np.mean(v[max(0, u - m + 1) : u + 1]) for u in range(len(v))])


def test_scores_are_normalised_smoothed_window_errors_in_any_chunking(signal_detector):
    """score = ((e - c) / d - center) / spread of the causal moving average (10 points) of each
    point's mean covering-window error, whatever the chunk: against a loop over points."""
    det, x = signal_detector, _with_anomalies()[0][:1000]
    z = ((x[:, None] - det.mean_) / det.std_).astype(np.float32)
    err, bound = _windows_by_hand(det.net_[0], z, 40, 10, "window")
    scale = det.member_spread_[0] * det.spread_
    expected = (
        (_smooth_by_hand(err, 10) - det.member_center_[0]) / det.member_spread_[0] - det.center_
    ) / det.spread_
    # float64 normalisation adds rounding of ~1e-15 of the largest intermediate on top of the bound
    tol = _smooth_by_hand(bound, 10) / scale + 1e-12 * np.abs(expected).max()
    for chunk in (1, 37, 500, 65536):
        assert (np.abs(det.score(x, chunk=chunk) - expected) <= tol).all(), chunk


@pytest.mark.parametrize("aggregate", ["window", "point", "min"])
def test_window_errors_aggregate_as_documented_in_any_chunking(aggregate, min_detector):
    """ "window": the mean of the covering windows' mean errors; "point": the mean of the errors
    at the point; "min": the smallest covering window's mean error; near the ends "window" and
    "min" take as many windows as an interior point has, the first or last (aggregation does not
    change training, so one network serves all three)."""
    det, x = min_detector, _with_anomalies()[0][:700]
    z = ((x[:, None] - det.mean_) / det.std_).astype(np.float32)
    err, bound = _windows_by_hand(det.net_[0], z, 30, 7, aggregate)
    for chunk in (1, 30, 95, 65536):
        got = window_errors(det.net_, z, 30, 7, aggregate, chunk, False)[0]
        assert (np.abs(got - err) <= bound).all(), chunk


@pytest.fixture(scope="module")
def min_detector():
    return GRUAnomalyDetector(
        "signal",
        model="autoencoder",
        window=30,
        stride=7,
        hidden_size=8,
        aggregate="min",
        train={**FAST, "epochs": 1},
    ).fit(_sine(3000))


def test_min_aggregate_scores_are_the_best_covering_window(min_detector):
    det, x = min_detector, _with_anomalies()[0][:700]
    z = ((x[:, None] - det.mean_) / det.std_).astype(np.float32)
    best, bound = _windows_by_hand(det.net_[0], z, 30, 7, "min")
    expected = ((best - det.member_center_[0]) / det.member_spread_[0] - det.center_) / det.spread_
    tol = bound / (det.member_spread_[0] * det.spread_) + 1e-12 * np.abs(expected).max()
    for chunk in (30, 95, 65536):
        assert (np.abs(det.score(x, chunk=chunk) - expected) <= tol).all(), chunk
    with pytest.raises(ConfigError, match="stride must be an integer from 1 to window"):
        DetectorConfig(model="autoencoder", window=30, stride=31)
    with pytest.raises(ConfigError, match="aggregate must be one of window, point, min"):
        DetectorConfig(aggregate="max")


@pytest.fixture(scope="module")
def forecaster():
    return GRUAnomalyDetector(
        "signal",
        model="forecaster",
        window=40,
        horizon=20,
        hidden_size=16,
        smooth=10,
        false_alarm_rate=0.002,
        train=FAST,
    ).fit(_sine(4000))


def test_forecaster_finds_spikes_level_shifts_and_frequency_changes(forecaster):
    x, labels = _with_anomalies()
    scores = forecaster.score(x)
    ev = events(labels, scores > forecaster.threshold_, tolerance=20, min_gap=10)
    assert ev["events"] == 3 and ev["detected"] == 3
    assert ranking(labels, scores)["ROC-AUC"] > 0.8


def test_forecaster_errors_are_its_predictions_errors_and_chunks_carry_the_state(forecaster):
    """A point's error is the mean over j = 1..horizon of the squared error of the prediction made
    j steps earlier, from the first point all those predictions made after the warm-up of
    ``window`` points reach (``window + horizon``; none before): checked against one pass of the
    network and a loop over points; scoring in chunks of any size carries the GRU state."""
    x = _with_anomalies()[0][1400:1900]
    W, Hz = 40, 20
    z = torch.from_numpy(((x - forecaster.mean_[0]) / forecaster.std_[0]).astype(np.float32))
    with torch.no_grad():
        pred = forecaster.net_[0](z[None, :, None])[0][0, :, :, 0].double().numpy()  # (n, Hz)
    zz = z.double().numpy()
    err, bound = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for u in range(W + Hz, len(x)):  # the points all Hz predictions made after the warm-up reach
        made = np.array([pred[u - j, j - 1] for j in range(1, Hz + 1)])
        err[u] = np.mean((made - zz[u]) ** 2)
        bound[u] = np.mean(_sq_err_bound(made, zz[u]))  # chunks change the float32 products' blocking
    first = W + Hz
    smooth = np.array(
        [np.nanmean(err[max(0, u - 9) : u + 1]) if u >= first else np.nan for u in range(len(x))]
    )
    smooth_bound = np.array(
        [np.nanmean(bound[max(0, u - 9) : u + 1]) if u >= first else 0.0 for u in range(len(x))]
    )
    expected = (smooth - forecaster.member_center_[0]) / forecaster.member_spread_[0]
    expected = np.nan_to_num((expected - forecaster.center_) / forecaster.spread_, nan=0.0)
    tol = smooth_bound / (forecaster.member_spread_[0] * forecaster.spread_) + 1e-12 * np.abs(expected).max()
    for chunk in (1, 37, 65536):
        assert (np.abs(forecaster.score(x, chunk=chunk) - expected) <= tol).all(), chunk
    assert (forecaster.score(x)[: W + Hz] == 0).all()  # the warm-up and the partly reached points
    assert (forecaster.score(x)[W + Hz : W + Hz + 10] != 0).all()


def test_forecaster_threshold_save_load_and_settings(tmp_path, forecaster):
    x = _with_anomalies()[0][:800]
    forecaster.save(tmp_path / "f")
    back = GRUAnomalyDetector.load(tmp_path / "f")
    assert back.config.model == "forecaster" and back.config.horizon == 20
    np.testing.assert_array_equal(back.score(x), forecaster.score(x))
    det = GRUAnomalyDetector("signal", model="forecaster", window=40, train=FAST)
    assert det.config.steps_ahead == 20  # window // 2 by default
    with pytest.raises(
        DataError,
        match="the training stretch has 199 points; window 40 and horizon 20 need "
        "at least 200 \\(100 to train on, 100 to calibrate",
    ):
        det.fit(_sine(199))
    for bad, message in (
        (dict(mode="sequences", model="forecaster"), "model 'forecaster' is for the signal mode"),
        (dict(model="forecaster", aggregate="min"), "aggregate applies to the autoencoder"),
        (dict(model="forecaster", stride=3), "stride applies to the autoencoder"),
        (dict(model="autoencoder", horizon=5), "horizon applies to model 'forecaster'"),
        (dict(aggregate="min"), "the signal mode's default: pass model='autoencoder'"),
        (dict(model="forecaster", window=10, horizon=11), "horizon must be an integer from 1"),
        (dict(model="forecaster", time_features=0), "time_features applies to the autoencoder"),
        (dict(model="tcn"), "model must be one of autoencoder, forecaster"),
    ):
        with pytest.raises(ConfigError, match=message):
            DetectorConfig(**bad)


def test_sequences_mode_separates_shapes():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 50)
    normal = np.sin(2 * np.pi * t)[None] + 0.05 * rng.standard_normal((120, 50))
    odd = np.sign(np.sin(2 * np.pi * t))[None] + 0.05 * rng.standard_normal((20, 50))
    det = GRUAnomalyDetector(
        "sequences",
        hidden_size=16,
        latent_size=4,
        false_alarm_rate=0.05,
        train={**FAST, "epochs": 30, "steps_per_epoch": None},
    )
    det.fit(normal[:100])
    scores = det.score(np.r_[normal[100:], odd])
    labels = np.r_[np.zeros(20), np.ones(20)]
    assert ranking(labels, scores)["ROC-AUC"] > 0.9


@pytest.mark.parametrize("mode", ["signal", "sequences"])
def test_estimator_contract(mode):
    data = _sine(600) if mode == "signal" else _sine(600).reshape(20, 30)
    check_estimator(
        lambda **kw: GRUAnomalyDetector(mode, window=20, hidden_size=8, train={**FAST, "epochs": 1}, **kw),
        data,
        lambda d: d.score(data),
    )


def test_save_and_load_give_the_same_scores(tmp_path, signal_detector):
    x = _with_anomalies()[0][:800]
    signal_detector.save(tmp_path / "m")
    back = GRUAnomalyDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(back.score(x), signal_detector.score(x))
    assert back.threshold_ == signal_detector.threshold_


def _files(folder):
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_a_save_that_fails_midway_leaves_the_previous_detector(
    tmp_path, monkeypatch, signal_detector, min_detector
):
    """The JSON write fails after the new weights were written: the folder still holds the old
    detector, byte for byte, it loads and scores as before, and no staging folder is left."""
    x = _sine(400, seed=4)
    signal_detector.save(tmp_path / "m")
    before, expected = _files(tmp_path / "m"), signal_detector.score(x)
    seen = []

    def fail(path, meta):
        seen.extend(sorted(f.name for f in path.parent.iterdir()))
        raise OSError("disk full")

    monkeypatch.setattr("grukit.apps.anomaly.persistence.write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        min_detector.save(tmp_path / "m")  # another window, another network: a mixture would not load
    monkeypatch.undo()
    assert seen == ["model.safetensors"]  # the new weights were on disk when the JSON failed
    assert _files(tmp_path / "m") == before and [f.name for f in tmp_path.iterdir()] == ["m"]
    back = GRUAnomalyDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(back.score(x), expected)


def test_saving_into_a_run_folder_keeps_its_other_files(tmp_path, signal_detector, min_detector):
    """A second save replaces the detector's two files and leaves a run's config and checkpoints."""
    run, x = tmp_path / "run", _sine(400, seed=4)
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"command": "train"}')
    (run / "checkpoints" / "last.safetensors").write_bytes(b"weights")
    min_detector.save(run)
    signal_detector.save(run)
    files = _files(run)
    assert sorted(files) == [
        "checkpoints/last.safetensors",
        "config.json",
        "detector.json",
        "model.safetensors",
    ]
    assert (
        files["config.json"] == b'{"command": "train"}'
        and files["checkpoints/last.safetensors"] == b"weights"
    )
    back = GRUAnomalyDetector.load(run)
    assert back.config.window == 40 and back.threshold_ == signal_detector.threshold_
    np.testing.assert_array_equal(back.score(x), signal_detector.score(x))


def test_an_unreadable_folder_is_a_data_error(tmp_path, min_detector):
    min_detector.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "detector.json").read_text())
    (tmp_path / "m" / "detector.json").write_text(
        json.dumps({**meta, "format": "grukit.GRUAnomalyDetector/9"})
    )
    with pytest.raises(
        DataError, match="not a readable anomaly detector .*format 'grukit.GRUAnomalyDetector/9'"
    ):
        GRUAnomalyDetector.load(tmp_path / "m")
    (tmp_path / "m" / "detector.json").write_text(json.dumps(meta))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="not a readable anomaly detector"):
        GRUAnomalyDetector.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no detector.json"):
        GRUAnomalyDetector.load(tmp_path)
    assert issubclass(DataError, ValueError) and issubclass(
        ConfigError, ValueError
    )  # `except ValueError` still works


def test_an_ensemble_averages_its_members_normalised_errors(tmp_path):
    """Member k of an ensemble is the single autoencoder trained from seed + k; the ensemble's
    score is the robust z (on the calibration stretch) of the mean of the members' scores."""
    train, x = _sine(2000), _with_anomalies()[0][:900]
    kw = dict(model="autoencoder", window=30, hidden_size=8, smooth=5)
    ens = GRUAnomalyDetector("signal", ensemble=2, train={**FAST, "epochs": 2}, **kw).fit(train)
    singles = [
        GRUAnomalyDetector("signal", train={**FAST, "epochs": 2, "seed": k}, **kw).fit(train) for k in (0, 1)
    ]
    for member, single in zip(ens.net_, singles):
        for a, b in zip(member.state_dict().values(), single.net_[0].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    cal = train[1600:]  # the last 20% of the training stretch
    mean_cal = np.mean([d.score(cal) for d in singles], 0)
    med = np.median(mean_cal)
    mad = 1.4826 * np.median(np.abs(mean_cal - med))
    expected = (np.mean([d.score(x) for d in singles], 0) - med) / mad
    # the members' weights are bitwise those of the singles, so their float32 errors are too: what
    # remains is float64 arithmetic in another order (a single's second normalisation is the
    # identity up to rounding), ~1e-16 relative to the largest intermediate
    np.testing.assert_allclose(ens.score(x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    assert ens.threshold_ == pytest.approx(np.quantile((mean_cal - med) / mad, 0.99), rel=1e-12)
    ens.save(tmp_path / "e")
    back = GRUAnomalyDetector.load(tmp_path / "e")
    np.testing.assert_array_equal(back.score(x), ens.score(x))
    with pytest.raises(ConfigError, match="ensemble must be a positive integer"):
        DetectorConfig(ensemble=0)


def test_an_ensemble_checkpoints_each_member_and_resumes(tmp_path):
    data = _sine(600).reshape(20, 30)
    kw = dict(hidden_size=8, latent_size=4, ensemble=2, train={**FAST, "epochs": 2})
    first = GRUAnomalyDetector("sequences", **kw).fit(data, out_dir=tmp_path)
    assert (tmp_path / "member-0" / "checkpoints").is_dir() and (
        tmp_path / "member-1" / "checkpoints"
    ).is_dir()
    again = GRUAnomalyDetector("sequences", **kw).fit(data, out_dir=tmp_path, resume=True)
    assert [r.stopped for r in again.results_] == ["already complete"] * 2
    np.testing.assert_array_equal(again.score(data), first.score(data))


@pytest.mark.parametrize("name", ["signal", "sequences"])
def test_a_detector_saved_by_the_first_format_still_loads(name):
    """Folders written by the code of format /1 (commit e699771, scripts/make_anomaly_v1_fixture.py:
    one autoencoder without a clock, unprefixed weights, statistics of the raw errors) give the
    scores that code gave. Same weights, same float32 network, and a /1 score (e - c) / s equals
    ((e - 0) / 1 - c) / s exactly in float64: only BLAS blocking on another machine could move the
    errors, by a few float32 ulps, hence 1e-6 of the largest score. The signal's end points, which
    /1 gave fewer windows than an interior point, are scored the current way (``window_errors``)."""
    folder = FIXTURES / "anomaly_v1" / name
    assert json.loads((folder / "detector.json").read_text())["format"] == "grukit.GRUAnomalyDetector/1"
    old = json.loads((folder / "scores.json").read_text())
    det = GRUAnomalyDetector.load(folder)
    assert det.config.time_features == 0 and det.config.mode == name  # /1 had no clock
    expected, x = np.array(old["scores"]), np.array(old["input"])
    same = np.ones(len(expected), bool)
    if name == "signal":  # /1 averaged fewer windows at the ends: the current code takes as many as inside
        W, stride = det.config.window, det.config.window_stride
        starts = sorted(set(range(0, len(x) - W + 1, stride)) | {len(x) - W})
        inside = np.array([sum(s <= u < s + W for s in starts) >= W // stride for u in range(len(x))])
        m = det.config.smooth  # the causal moving average carries an end point's error m - 1 further
        same = np.array([inside[max(0, u - m + 1) : u + 1].all() for u in range(len(x))])
        assert 0 < (~same).sum() < 3 * W
    np.testing.assert_allclose(det.score(x)[same], expected[same], rtol=0, atol=1e-6 * np.abs(expected).max())
    assert det.threshold_ == old["threshold"]


def test_the_clock_is_sines_and_cosines_of_the_step():
    T, k = 12, 3
    t = np.arange(T)[:, None] / T
    j = np.arange(1, k + 1)[None, :]
    expected = np.c_[np.sin(2 * np.pi * j * t), np.cos(2 * np.pi * j * t)]  # (T, 2k)
    np.testing.assert_allclose(clock(T, k, torch.float64).numpy(), expected, rtol=0, atol=1e-12)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _gru_by_hand(x, p, layers, directions, reset_after):
    """A GRU from its equations in float64 (gate order r, z, n; ``h = (1 - z) n + z h_prev``):
    x (N, T, I), p the state dict -> output (N, T, D H), h_n (L D, N, H)."""
    h_n, inp = [], x
    for layer in range(layers):
        outs = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            W_i, W_h, b_i, b_h = (p[name + sfx] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            H = W_h.shape[1]
            h, out = np.zeros((len(inp), H)), np.zeros((*inp.shape[:2], H))
            for t in reversed(range(inp.shape[1])) if d else range(inp.shape[1]):
                x_t = inp[:, t]
                r = _sigmoid(x_t @ W_i[:H].T + b_i[:H] + h @ W_h[:H].T + b_h[:H])
                z = _sigmoid(x_t @ W_i[H : 2 * H].T + b_i[H : 2 * H] + h @ W_h[H : 2 * H].T + b_h[H : 2 * H])
                if reset_after:
                    n = np.tanh(x_t @ W_i[2 * H :].T + b_i[2 * H :] + r * (h @ W_h[2 * H :].T + b_h[2 * H :]))
                else:
                    n = np.tanh(x_t @ W_i[2 * H :].T + b_i[2 * H :] + (r * h) @ W_h[2 * H :].T + b_h[2 * H :])
                h = (1 - z) * n + z * h
                out[:, t] = h
            outs.append(out)
            h_n.append(h)
        inp = np.concatenate(outs, 2)
    return inp, np.stack(h_n)


def _autoencoder_by_hand(x, p, cfg):
    """The documented autoencoder in NumPy: z = tanh(A [last layer's final state(s)] + a); the
    decoder reads [z, sin(2 pi j t / T), cos(2 pi j t / T)] (j = 1 .. k) at step t; a linear head."""
    sub = lambda prefix: {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}  # noqa: E731
    D = 2 if cfg.bidirectional else 1
    _, h_n = _gru_by_hand(x, sub("encoder."), cfg.num_layers, D, cfg.reset_after)
    last = np.concatenate(list(h_n[-D:]), 1)  # (N, D H): h_n is ordered layer by layer, forward first
    z = np.tanh(last @ p["to_latent.weight"].T + p["to_latent.bias"])  # (N, d)
    N, T = x.shape[:2]
    angle = 2 * np.pi * np.arange(T)[:, None] * np.arange(1, cfg.time_features + 1)[None, :] / T  # (T, k)
    dec_in = np.concatenate(
        [
            np.repeat(z[:, None], T, 1),
            np.broadcast_to(np.c_[np.sin(angle), np.cos(angle)], (N, T, 2 * cfg.time_features)),
        ],
        2,
    )
    out, _ = _gru_by_hand(dec_in, sub("decoder."), cfg.num_layers, 1, cfg.reset_after)
    return out @ p["head.weight"].T + p["head.bias"]


@pytest.mark.parametrize(
    "hyper",
    [
        dict(mode="sequences", time_features=0),
        dict(mode="sequences", time_features=4, bidirectional=True, num_layers=2),
        dict(mode="signal", model="autoencoder", time_features=2, bidirectional=True, reset_after=True),
    ],
)
def test_the_autoencoder_is_the_documented_network(hyper):
    """Encoder (both ways when bidirectional, the last layer's final states), latent, decoder fed
    the latent and the clock, head: against the equations in NumPy float64, to float64 rounding."""
    torch.manual_seed(0)
    cfg = DetectorConfig(hidden_size=5, latent_size=3, **hyper)
    net = SeqAutoencoder(2, cfg).double()
    assert net.decoder.input_size == 3 + 2 * cfg.time_features
    x = np.random.default_rng(1).standard_normal((3, 11, 2))
    p = {k: v.numpy() for k, v in net.state_dict().items()}
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _autoencoder_by_hand(x, p, cfg), rtol=0, atol=1e-12)


def test_time_features_and_bidirectional_are_checked_and_resolved():
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigError, match="time_features must be a non-negative integer"):
            DetectorConfig(model="autoencoder", time_features=bad)
    with pytest.raises(ConfigError, match="bidirectional must be true or false"):
        DetectorConfig(bidirectional="yes")
    # by default a clock for whole sequences, none for the signal mode's windows, resolved when the
    # config is made (a saved folder says what it ran); the forecaster has none
    assert DetectorConfig(mode="sequences").time_features == 4
    assert DetectorConfig(mode="signal", model="autoencoder").time_features == 0
    assert DetectorConfig(mode="signal", model="autoencoder", time_features=2).time_features == 2
    assert DetectorConfig(model="forecaster").time_features is None


def test_robust_center_and_spread_by_hand():
    """median and 1.4826 MAD; the standard deviation where the MAD is 0; 1 where both are."""
    assert center_and_spread(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == (3.0, 1.4826)  # |dev| 2 1 0 1 97
    assert center_and_spread(np.array([5.0, 5.0, 5.0, 9.0])) == (5.0, np.sqrt(3.0))  # std of 5 5 5 9
    assert center_and_spread(np.full(4, 2.0)) == (2.0, 1.0)


def test_bad_input_is_named(signal_detector):
    det = GRUAnomalyDetector("signal", model="autoencoder", window=40, train=FAST)
    with pytest.raises(DataError, match="channel 1 is constant"):
        det.fit(np.c_[_sine(1000), np.ones(1000)])
    with pytest.raises(DataError, match="channel 0 has no values"):
        det.fit(np.full(1000, np.nan))
    with pytest.raises(
        DataError,
        match="the training stretch has 100 points; window 40 needs at least 120 "
        "\\(40 to train on, 80 to calibrate",
    ):
        det.fit(_sine(100))
    with pytest.raises(DataError, match="trained on 1 channel\\(s\\); got 2"):
        signal_detector.score(np.c_[_sine(100), _sine(100)])
    with pytest.raises(ConfigError, match="mode must be one of signal, sequences"):
        DetectorConfig(mode="points")
    with pytest.raises(ConfigError, match="false_alarm_rate must be in"):
        DetectorConfig(false_alarm_rate=0)


def test_gaps_in_a_signal_are_interpolated_and_its_ends_held(signal_detector):
    """NaNs inside a signal score as the straight line between their neighbours; NaNs at the ends
    as the nearest value. The filled signals are equal in float64 up to rounding of the line
    (~1e-16), which can flip a float32 rounding of the input: 4 float32 ulps of the largest score."""
    x = _sine(300)
    filled = x.copy()
    filled[100:105] = x[99] + (x[105] - x[99]) * np.arange(1, 6) / 6  # 5 points between 99 and 105
    filled[:3], filled[-2:] = x[3], x[-3]
    gappy = x.copy()
    gappy[100:105] = gappy[:3] = gappy[-2:] = np.nan
    expected = signal_detector.score(filled)
    np.testing.assert_allclose(
        signal_detector.score(gappy), expected, rtol=0, atol=4 * EPS32 * np.abs(expected).max()
    )


def test_segments_events_and_threshold_measures_by_hand():
    flags = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1], bool)
    assert segments(flags) == [(1, 3), (5, 6), (9, 10)]
    assert segments(flags, min_gap=2) == [(1, 6), (9, 10)]
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
    ev = events(labels, flags, tolerance=0)
    assert ev["detected"] == 1 and ev["events"] == 1 and ev["false_alarm_segments"] == 2
    m = at_threshold(labels, flags)
    assert (m["precision"], m["recall"]) == (1 / 4, 1 / 2)
    assert ranking([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])["ROC-AUC"] == 0.75
