"""The signal mode's defaults on a user's signal: the window from the data's period, short
recordings, no edge artefacts; and the matrix-profile discord baseline."""

import numpy as np
import pytest

from grukit.apps.anomaly import GRUAnomalyDetector
from grukit.apps.anomaly.period import FALLBACK, MAX_WINDOW, dominant_period, window_from_period
from grukit.data.series import DataError

TRAIN = {"epochs": 5, "progress": "off", "patience": None}


def _periodic(n, period, noise=0.0, seed=0, start=0):
    """Two harmonics of ``period`` points from point ``start`` on, plus Gaussian noise."""
    t = np.arange(start, start + n)
    rng = np.random.default_rng(seed)
    return (
        np.sin(2 * np.pi * t / period)
        + 0.4 * np.sin(4 * np.pi * t / period + 1)
        + noise * rng.standard_normal(n)
    )


@pytest.mark.parametrize("period", [7, 12, 24, 50, 100, 140])
def test_the_dominant_period_of_generated_signals(period):
    """The generating period, also under a trend and beside a channel of pure noise (whose
    autocorrelation halves the average: the peak may move a little); not a multiple of it."""
    rng = np.random.default_rng(period)
    x = _periodic(3000, period, noise=0.3, seed=period)
    assert dominant_period(x) == pytest.approx(period, abs=max(1, 0.01 * period))
    assert dominant_period(x + 0.01 * np.arange(3000)) == pytest.approx(period, abs=max(1, 0.01 * period))
    two = np.c_[x, rng.standard_normal(3000)]
    assert dominant_period(two) == pytest.approx(period, abs=max(1, 0.07 * period))
    square = np.sign(np.sin(2 * np.pi * np.arange(3000) / period + 0.1)) + 0.5 * rng.standard_normal(3000)
    assert dominant_period(square) == pytest.approx(period, abs=max(1, 0.01 * period))


def test_signals_without_a_period_have_none():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(5000)
    assert dominant_period(e) is None  # white noise
    assert dominant_period(np.cumsum(e)) is None  # a random walk
    assert dominant_period(np.convolve(e, 0.9 ** np.arange(40))[:5000]) is None  # AR(1), phi 0.9
    assert dominant_period(np.arange(500.0)) is None  # a line
    assert dominant_period(_periodic(60, 25)) is None  # fewer than three cycles


def test_the_window_is_whole_periods_within_bounds():
    assert window_from_period(37, 10_000) == 37
    assert window_from_period(5, 10_000) == 20  # four periods reach 16 points
    assert window_from_period(7, 10_000) == 21
    assert window_from_period(300, 10_000) == MAX_WINDOW
    assert window_from_period(None, 10_000) == FALLBACK
    assert window_from_period(37, 30) == 30  # what the training data allow


def test_the_default_window_comes_from_the_training_data_and_is_saved(tmp_path):
    det = GRUAnomalyDetector("signal", train=TRAIN)
    assert det.config.window is None and det.config.model == "forecaster"
    det.fit(_periodic(1200, 37, noise=0.05))
    assert (det.period_, det.config.window, det.config.horizon) == (37, 37, 37)
    det.save(tmp_path / "d")
    back = GRUAnomalyDetector.load(tmp_path / "d")
    assert (back.period_, back.config.window, back.config.horizon) == (37, 37, 37)
    det.fit(_periodic(1200, 24, noise=0.05))  # refitted on other data: chosen again
    assert (det.period_, det.config.window, det.config.horizon) == (24, 24, 24)
    auto = GRUAnomalyDetector("signal", model="autoencoder", train=TRAIN).fit(_periodic(1200, 24, noise=0.05))
    assert (auto.period_, auto.config.window, auto.config.window_stride) == (24, 24, 6)
    given = GRUAnomalyDetector("signal", window=30, train=TRAIN).fit(_periodic(1200, 24, noise=0.05))
    assert (given.period_, given.config.window, given.config.horizon) == (None, 30, None)


def test_a_short_normal_recording_trains_and_calibrates_on_a_stated_minimum():
    """600 points (the old fixed window of 128 refused them) train with the window chosen from
    the data; a calibration share below the minimum of two windows takes the minimum: the
    threshold is the 99% quantile of the last two windows' scores."""
    x = _periodic(600, 25, noise=0.05)
    det = GRUAnomalyDetector("signal", train=TRAIN).fit(x)
    assert det.config.window == 25
    auto = GRUAnomalyDetector("signal", model="autoencoder", window=100, train=TRAIN).fit(
        x
    )  # share: 120 < 200
    assert auto.threshold_ == np.quantile(auto.score(x[-200:]), 0.99)
    with pytest.raises(
        DataError,
        match=r"has 40 points; window 8 and horizon 8 need at least 48 \(24 to train "
        r"on, 24 to calibrate the threshold on\): give a longer normal stretch",
    ):
        GRUAnomalyDetector("signal", train=TRAIN).fit(x[:40])
    with pytest.raises(DataError, match=r"window 100 needs at least 300 \(100 to train on, 200 to calibrate"):
        GRUAnomalyDetector("signal", model="autoencoder", window=100, train=TRAIN).fit(x[:299])


@pytest.mark.parametrize("model", ["forecaster", "autoencoder"])
def test_no_edge_artefacts_on_a_clean_periodic_signal(model):
    """Every phase of a clean periodic signal occurs inside it, so neither the first nor the last
    window of points may score above the interior (the forecaster once scored highest right after
    its warm-up, where fewer predictions reach a point; the window autoencoder at the ends, where
    fewer windows cover one). Scored from two starting phases."""
    det = GRUAnomalyDetector("signal", model=model, train=TRAIN).fit(_periodic(1200, 37, noise=0.05))
    W = det.config.window
    for start in (0, 7):
        s = det.score(_periodic(3000, 37, start=start))
        f = np.flatnonzero(s != 0)[0]  # the forecaster's warm-up scores 0: its first window is after it
        assert f == (2 * W if model == "forecaster" else 0)
        inside = s[f + W : -W].max()
        tol = 1e-9 * max(1.0, abs(inside))
        assert s[f : f + W].max() <= inside + tol and s[-W:].max() <= inside + tol, (start, s.argmax())
