"""GRUAnomalyDetector on generated signals and sequences, and the detection measures."""

import numpy as np
import pytest
import torch

from grukit.apps.anomaly import DetectorConfig, GRUAnomalyDetector, clock
from grukit.apps.anomaly_metrics import at_threshold, events, ranking, segments
from grukit.apps.contract import check_estimator
from grukit.data import DataError
from grukit.train import ConfigError

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
    return GRUAnomalyDetector("signal", window=40, hidden_size=16, smooth=10, false_alarm_rate=0.002,
                              train=FAST).fit(_sine(4000))


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
    det = GRUAnomalyDetector("signal", model=model, window=40, hidden_size=16, false_alarm_rate=0.05, train=FAST)
    det.fit(_sine(4000))
    flags = det.predict(_sine(6000, seed=7))  # new noise, same process
    assert 0.025 <= flags.mean() <= 0.10


def test_chunked_scoring_equals_one_pass(signal_detector):
    x = _with_anomalies()[0][:1000]
    whole = signal_detector.score(x)
    for chunk in (1, 37, 500):
        np.testing.assert_allclose(signal_detector.score(x, chunk=chunk), whole, rtol=1e-4, atol=1e-4)


def test_min_aggregate_is_the_best_covering_window_and_chunks_agree():
    """aggregate="min": a point's error is the smallest mean error of the windows covering it."""
    train, x = _sine(3000), _with_anomalies()[0][:700]
    det = GRUAnomalyDetector("signal", window=30, stride=7, hidden_size=8, aggregate="min",
                             train={**FAST, "epochs": 1}).fit(train)
    z = torch.from_numpy(((x - det.mean_[0]) / det.std_[0]).astype(np.float32))
    starts = list(range(0, len(x) - 30 + 1, 7))
    if starts[-1] != len(x) - 30:
        starts.append(len(x) - 30)
    with torch.no_grad():
        w = torch.stack([z[s:s + 30] for s in starts])[:, :, None]
        e = ((det.net_[0](w) - w) ** 2).mean((1, 2)).double().numpy()
    best = np.full(len(x), np.inf)
    for s, v in zip(starts, e):
        best[s:s + 30] = np.minimum(best[s:s + 30], v)
    expected = ((best - det.member_center_[0]) / det.member_spread_[0] - det.center_) / det.spread_
    for chunk in (30, 95, 65536):
        np.testing.assert_allclose(det.score(x, chunk=chunk), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="stride must be an integer from 1 to window"):
        DetectorConfig(window=30, stride=31)
    with pytest.raises(ConfigError, match="aggregate must be one of window, point, min"):
        DetectorConfig(aggregate="max")


@pytest.fixture(scope="module")
def forecaster():
    return GRUAnomalyDetector("signal", model="forecaster", window=40, horizon=20, hidden_size=16, smooth=10,
                              false_alarm_rate=0.002, train=FAST).fit(_sine(4000))


def test_forecaster_finds_spikes_level_shifts_and_frequency_changes(forecaster):
    x, labels = _with_anomalies()
    scores = forecaster.score(x)
    ev = events(labels, scores > forecaster.threshold_, tolerance=20, min_gap=10)
    assert ev["events"] == 3 and ev["detected"] == 3
    assert ranking(labels, scores)["ROC-AUC"] > 0.8


def test_forecaster_errors_are_its_predictions_errors_and_chunks_carry_the_state(forecaster):
    """A point's error is the mean over j = 1..horizon of the squared error of the prediction made
    j steps earlier (after the warm-up of ``window`` points): checked against one pass of the
    network and a loop over points; scoring in chunks of any size carries the GRU state."""
    x = _with_anomalies()[0][1400:1900]
    W, Hz = 40, 20
    z = torch.from_numpy(((x - forecaster.mean_[0]) / forecaster.std_[0]).astype(np.float32))
    with torch.no_grad():
        pred = forecaster.net_[0](z[None, :, None])[0][0, :, :, 0].double().numpy()  # (n, Hz)
    zz = z.double().numpy()
    err = np.full(len(x), np.nan)
    for u in range(W + 1, len(x)):
        made = [(pred[u - j, j - 1] - zz[u]) ** 2 for j in range(1, Hz + 1) if u - j >= W]
        err[u] = np.mean(made)
    smooth = np.array([np.nanmean(err[max(0, u - 9):u + 1]) if u > W else np.nan for u in range(len(x))])
    expected = (smooth - forecaster.member_center_[0]) / forecaster.member_spread_[0]
    expected = np.nan_to_num((expected - forecaster.center_) / forecaster.spread_, nan=0.0)
    for chunk in (1, 37, 65536):
        np.testing.assert_allclose(forecaster.score(x, chunk=chunk), expected, rtol=1e-4, atol=1e-4)
    assert (forecaster.score(x)[:W + 1] == 0).all()  # the warm-up is not scored


def test_forecaster_threshold_save_load_and_settings(tmp_path, forecaster):
    x = _with_anomalies()[0][:800]
    forecaster.save(tmp_path / "f")
    back = GRUAnomalyDetector.load(tmp_path / "f")
    assert back.config.model == "forecaster" and back.config.horizon == 20
    np.testing.assert_array_equal(back.score(x), forecaster.score(x))
    det = GRUAnomalyDetector("signal", model="forecaster", window=40, train=FAST)
    assert det.config.steps_ahead == 20  # window // 2 by default
    with pytest.raises(DataError, match="the training stretch has 400 points; window 40 and horizon 20 need"):
        det.fit(_sine(400))
    for bad, message in ((dict(mode="sequences", model="forecaster"), "model 'forecaster' is for the signal mode"),
                         (dict(model="forecaster", aggregate="min"), "aggregate applies to the autoencoder"),
                         (dict(model="forecaster", stride=3), "stride applies to the autoencoder"),
                         (dict(horizon=5), "horizon applies to model 'forecaster'"),
                         (dict(model="forecaster", window=10, horizon=11), "horizon must be an integer from 1"),
                         (dict(model="forecaster", time_features=0), "time_features applies to the autoencoder"),
                         (dict(model="tcn"), "model must be one of autoencoder, forecaster")):
        with pytest.raises(ConfigError, match=message):
            DetectorConfig(**bad)


def test_sequences_mode_separates_shapes():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 50)
    normal = np.sin(2 * np.pi * t)[None] + 0.05 * rng.standard_normal((120, 50))
    odd = np.sign(np.sin(2 * np.pi * t))[None] + 0.05 * rng.standard_normal((20, 50))
    det = GRUAnomalyDetector("sequences", hidden_size=16, latent_size=4, false_alarm_rate=0.05,
                             train={**FAST, "epochs": 30, "steps_per_epoch": None})
    det.fit(normal[:100])
    scores = det.score(np.r_[normal[100:], odd])
    labels = np.r_[np.zeros(20), np.ones(20)]
    assert ranking(labels, scores)["ROC-AUC"] > 0.9


@pytest.mark.parametrize("mode", ["signal", "sequences"])
def test_estimator_contract(mode):
    data = _sine(600) if mode == "signal" else _sine(600).reshape(20, 30)
    check_estimator(lambda **kw: GRUAnomalyDetector(mode, window=20, hidden_size=8, train={**FAST, "epochs": 1}, **kw),
                    data, lambda d: d.score(data))


def test_save_and_load_give_the_same_scores(tmp_path, signal_detector):
    x = _with_anomalies()[0][:800]
    signal_detector.save(tmp_path / "m")
    back = GRUAnomalyDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(back.score(x), signal_detector.score(x))
    assert back.threshold_ == signal_detector.threshold_


def test_an_ensemble_averages_its_members_normalised_errors(tmp_path):
    """Member k of an ensemble is the single autoencoder trained from seed + k; the ensemble's
    score is the robust z (on the calibration stretch) of the mean of the members' scores."""
    train, x = _sine(2000), _with_anomalies()[0][:900]
    kw = dict(window=30, hidden_size=8, smooth=5)
    ens = GRUAnomalyDetector("signal", ensemble=2, train={**FAST, "epochs": 2}, **kw).fit(train)
    singles = [GRUAnomalyDetector("signal", train={**FAST, "epochs": 2, "seed": k}, **kw).fit(train) for k in (0, 1)]
    for member, single in zip(ens.net_, singles):
        for a, b in zip(member.state_dict().values(), single.net_[0].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    cal = train[1600:]  # the last 20% of the training stretch
    mean_cal = np.mean([d.score(cal) for d in singles], 0)
    med = np.median(mean_cal)
    mad = 1.4826 * np.median(np.abs(mean_cal - med))
    expected = (np.mean([d.score(x) for d in singles], 0) - med) / mad
    np.testing.assert_allclose(ens.score(x), expected, rtol=1e-6, atol=1e-6)
    assert ens.threshold_ == pytest.approx(np.quantile((mean_cal - med) / mad, 0.99), rel=1e-6)
    ens.save(tmp_path / "e")
    back = GRUAnomalyDetector.load(tmp_path / "e")
    np.testing.assert_array_equal(back.score(x), ens.score(x))
    with pytest.raises(ConfigError, match="ensemble must be a positive integer"):
        DetectorConfig(ensemble=0)


def test_an_ensemble_checkpoints_each_member_and_resumes(tmp_path):
    data = _sine(600).reshape(20, 30)
    kw = dict(hidden_size=8, latent_size=4, ensemble=2, train={**FAST, "epochs": 2})
    first = GRUAnomalyDetector("sequences", **kw).fit(data, out_dir=tmp_path)
    assert (tmp_path / "member-0" / "checkpoints").is_dir() and (tmp_path / "member-1" / "checkpoints").is_dir()
    again = GRUAnomalyDetector("sequences", **kw).fit(data, out_dir=tmp_path, resume=True)
    assert [r.stopped for r in again.results_] == ["already complete"] * 2
    np.testing.assert_array_equal(again.score(data), first.score(data))


def test_a_detector_saved_by_the_first_format_still_loads(tmp_path):
    """Format /1 (one autoencoder without a clock, unprefixed weights, no member statistics, no
    ensemble/bidirectional/time_features fields) gives the same scores."""
    import json

    from safetensors.torch import load_file, save_file

    x = _with_anomalies()[0][:600]
    det = GRUAnomalyDetector("signal", window=40, hidden_size=8, smooth=10, time_features=0,
                             train={**FAST, "epochs": 1}).fit(_sine(2000))
    det.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "detector.json").read_text())
    meta["format"] = "grukit.GRUAnomalyDetector/1"
    for key in ("member_center", "member_spread"):
        meta.pop(key)
    for key in ("ensemble", "bidirectional", "time_features"):
        meta["detector"].pop(key)
    c, d = det.member_center_[0], det.member_spread_[0]
    # a /1 file stored the statistics of the raw errors: score = (e - center) / spread
    meta["center"] = c + d * det.center_
    meta["spread"] = d * det.spread_
    (tmp_path / "m" / "detector.json").write_text(json.dumps(meta))
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file({k.removeprefix("0."): v for k, v in weights.items()}, str(tmp_path / "m" / "model.safetensors"))
    back = GRUAnomalyDetector.load(tmp_path / "m")
    assert back.config.time_features == 0
    np.testing.assert_allclose(back.score(x), det.score(x), rtol=1e-9, atol=1e-9)


def test_the_clock_is_sines_and_cosines_of_the_step():
    T, k = 12, 3
    t = np.arange(T)[:, None] / T
    j = np.arange(1, k + 1)[None, :]
    expected = np.c_[np.sin(2 * np.pi * j * t), np.cos(2 * np.pi * j * t)]  # (T, 2k)
    np.testing.assert_allclose(clock(T, k, torch.float64).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [0, 4])
def test_the_decoder_reads_the_latent_and_the_clock(k):
    """The decoder's input at step t is [latent, clock(T)[t]]: checked by running the decoder by
    hand on that input; with time_features=0 it reads the latent alone."""
    det = GRUAnomalyDetector("sequences", hidden_size=8, latent_size=3, time_features=k,
                             train={**FAST, "epochs": 1}).fit(_sine(600).reshape(20, 30))
    net = det.net_[0]
    assert net.decoder.input_size == 3 + 2 * k
    x = torch.from_numpy(_sine(90, seed=3).reshape(3, 30, 1)).float()
    with torch.no_grad():
        z = torch.tanh(net.to_latent(net.encoder(x)[1][-1]))  # (3, d)
        inp = z[:, None, :].expand(-1, 30, -1)
        if k:
            t = torch.arange(30, dtype=torch.float64)[:, None] / 30 * torch.arange(1, k + 1)[None, :] * 2 * torch.pi
            inp = torch.cat([inp, torch.cat([t.sin(), t.cos()], 1).float()[None].expand(3, -1, -1)], 2)
        torch.testing.assert_close(net(x), net.head(net.decoder(inp)[0]))
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigError, match="time_features must be a non-negative integer"):
            DetectorConfig(time_features=bad)
    # by default a clock for whole sequences, none for the signal mode's windows, resolved when the
    # config is made (a saved folder says what it ran); the forecaster has none
    assert DetectorConfig(mode="sequences").time_features == 4 and DetectorConfig(mode="signal").time_features == 0
    assert DetectorConfig(mode="signal", time_features=2).time_features == 2
    assert DetectorConfig(model="forecaster").time_features is None


def test_bidirectional_encoder_reads_both_ways():
    det = GRUAnomalyDetector("sequences", hidden_size=8, latent_size=4, bidirectional=True,
                             train={**FAST, "epochs": 1}).fit(_sine(600).reshape(20, 30))
    assert det.net_[0].encoder.bidirectional and det.net_[0].to_latent.in_features == 16
    assert np.isfinite(det.score(_sine(300).reshape(10, 30))).all()
    with pytest.raises(ConfigError, match="bidirectional must be true or false"):
        DetectorConfig(bidirectional="yes")


def test_bad_input_is_named(signal_detector):
    det = GRUAnomalyDetector("signal", window=40, train=FAST)
    with pytest.raises(DataError, match="channel 1 is constant"):
        det.fit(np.c_[_sine(1000), np.ones(1000)])
    with pytest.raises(DataError, match="channel 0 has no values"):
        det.fit(np.full(1000, np.nan))
    with pytest.raises(DataError, match="the training stretch has 100 points; window 40 needs at least"):
        det.fit(_sine(100))
    with pytest.raises(DataError, match="trained on 1 channel\\(s\\); got 2"):
        signal_detector.score(np.c_[_sine(100), _sine(100)])
    with pytest.raises(ConfigError, match="mode must be one of signal, sequences"):
        DetectorConfig(mode="points")
    with pytest.raises(ConfigError, match="false_alarm_rate must be in"):
        DetectorConfig(false_alarm_rate=0)


def test_interior_gaps_are_interpolated_for_signals(signal_detector):
    x = _sine(300)
    x[100:105] = np.nan
    assert np.isfinite(signal_detector.score(x)).all()


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
