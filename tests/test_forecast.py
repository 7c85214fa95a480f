"""GRUForecaster, the metrics and the baselines, on small generated series."""

import numpy as np
import pytest
import torch

from grukit.apps import baselines as B
from grukit.apps.forecast import ForecasterConfig, GRUForecaster, NotFittedError
from grukit.apps.metrics import evaluate, mase_scale, smape
from grukit.data import DataError, from_arrays
from grukit.train import ConfigError

FAST = {"epochs": 8, "batch_size": 64, "lr": 1e-2, "steps_per_epoch": 20, "progress": "off", "patience": None}


def _seasonal_series(count=12, n=72, m=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        t = np.arange(n)
        level = rng.uniform(50, 150)
        trend = rng.uniform(-0.3, 0.6)
        season = 1 + 0.25 * np.sin(2 * np.pi * (t + i) / m)
        out.append((level + trend * t) * season * (1 + 0.02 * rng.standard_normal(n)))
    return out


def test_smape_and_mase_by_hand():
    y, f = np.array([100.0, 200.0]), np.array([110.0, 150.0])
    np.testing.assert_allclose(smape(y, f), [200 * 10 / 210, 200 * 50 / 350])
    assert smape(np.zeros(1), np.zeros(1))[0] == 0
    x = np.array([1.0, 2, 4, 7])
    assert mase_scale(x, 1) == pytest.approx((1 + 2 + 3) / 3)
    r = evaluate([y], [f], [x], 1)
    assert r["MASE"] == pytest.approx(np.mean([10, 50]) / 2)


def test_seasonal_indices_match_statsmodels_classical_decomposition():
    sm = pytest.importorskip("statsmodels.tsa.seasonal")
    x = _seasonal_series(1, n=60)[0]
    ours = B.seasonal_indices(x, 12)
    theirs = sm.seasonal_decompose(x, model="multiplicative", period=12).seasonal[:12]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_baselines_on_a_pure_seasonal_pattern():
    x = np.tile([1.0, 2, 3, 4], 6) + 10
    np.testing.assert_allclose(B.seasonal_naive(x, 6, 4), [11, 12, 13, 14, 11, 12])
    np.testing.assert_allclose(B.naive(x, 3, 4), [14, 14, 14])
    np.testing.assert_allclose(B.naive2(x, 4, 4), [11, 12, 13, 14], rtol=0.05)


def test_the_shared_estimator_contract():
    from grukit.apps.contract import check_estimator

    series = _seasonal_series(4, n=48)
    check_estimator(
        lambda **kw: GRUForecaster(6, 12, train={**FAST, "epochs": 1}, hidden_size=8, **kw),
        series,
        lambda f: f.predict().point,
    )


def test_estimator_contract_and_a_forecast_better_than_seasonal_naive(tmp_path):
    series = _seasonal_series()
    train = [s[:-12] for s in series]
    actual = [s[-12:] for s in series]
    f = GRUForecaster(12, 12, train={**FAST, "epochs": 4}, hidden_size=16, num_layers=1)
    with pytest.raises(NotFittedError):
        f.predict()
    assert f.fit(train) is f
    assert f.net_ is not None and f.result_.epochs_run == 4 and f.series_ is not None
    fc = f.predict()
    assert fc.point.shape == (12, 12) and set(fc.quantiles) == {0.1, 0.5, 0.9}
    assert np.all(fc.quantiles[0.1] <= fc.point) and np.all(fc.point <= fc.quantiles[0.9])
    gru = evaluate(actual, list(fc.point), train, 12)["sMAPE"]
    # the honest baseline on seasonal data: the last season repeated (written out here)
    seasonal_naive = evaluate(actual, [x[-12:][np.arange(12) % 12] for x in train], train, 12)["sMAPE"]
    # the series trend, which the last season misses: with data and training seeds 0, 1, 2 the
    # GRU's sMAPE was 0.69, 0.55 and 0.76 of seasonal naive's
    assert gru < 0.85 * seasonal_naive
    # save / load gives identical forecasts, from the fitted series and from new data
    f.save(tmp_path / "m")
    g = GRUForecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(g.predict().point, fc.point)
    np.testing.assert_array_equal(g.predict(5, series).point, f.predict(5, series).point)
    assert g.config == f.config_


def test_a_save_that_fails_midway_leaves_the_previous_forecaster(tmp_path, monkeypatch):
    import grukit.apps.model_folder as module

    series = _seasonal_series(4, n=48)
    quick = {**FAST, "epochs": 1}
    first = GRUForecaster(6, 12, train=quick, hidden_size=8).fit(series)
    folder = tmp_path / "m"
    first.save(folder)
    (folder / "config.json").write_text("{}")  # a run's other files
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "keep.bin").write_bytes(b"x")
    before = first.predict().point
    second = GRUForecaster(6, 12, train={**quick, "seed": 1}, hidden_size=8).fit([s[:-6] for s in series])
    assert not np.allclose(second.predict().point, before)  # another fit, other forecasts

    real = module.save_weights

    def weights_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(module, "save_weights", weights_then_crash)
    with pytest.raises(OSError, match="disk full"):
        second.save(folder)
    monkeypatch.undo()
    np.testing.assert_array_equal(GRUForecaster.load(folder).predict().point, before)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind

    second.save(folder)
    np.testing.assert_array_equal(GRUForecaster.load(folder).predict().point, second.predict().point)
    assert (folder / "config.json").read_text() == "{}"
    assert (folder / "checkpoints" / "keep.bin").read_bytes() == b"x"


def test_horizon_longer_than_trained_is_refused():
    f = GRUForecaster(6, 1, train={**FAST, "epochs": 1}, hidden_size=8, num_layers=1)
    f.fit([np.arange(40.0) + 1])
    with pytest.raises(ValueError, match="trained for a horizon of 6 steps; asked for 7"):
        f.predict(7)


def test_series_too_short_for_the_window_is_named():
    f = GRUForecaster(6, 12, train=FAST, min_input=12)
    with pytest.raises(
        DataError,
        match="series '1' has 10 points; training needs at least min_input \\+ horizon = 12 \\+ 6 = 18",
    ):
        f.fit({"0": np.arange(50.0), "1": np.arange(10.0)})
    f = GRUForecaster(6, 1, train=FAST)  # the default min_input can shrink to 1, never to 0
    with pytest.raises(
        DataError,
        match="series '1' has 6 points; training needs at least min_input \\+ horizon = 1 \\+ 6 = 7",
    ):
        f.fit({"0": np.arange(50.0), "1": np.arange(6.0)})


@pytest.mark.parametrize(
    "horizon, season, lengths, input_len, min_input",
    [
        (18, 12, [48, 115, 126], 36, 12),  # M3 monthly's shortest, median, longest: 3 seasons
        (6, 1, [14, 19, 41], 12, 4),  # M3 yearly: 2 horizons
        (6, 1, [9, 15, 52], 12, 3),  # M1 yearly: a 9-point series keeps 3 inputs for validation
        (8, 4, [16, 44, 64], 16, 4),  # M3 quarterly: 2 horizons
        (6, 1, [6, 7, 40], 12, 1),  # a series of h + 1 points: one input
    ],
)
def test_default_windows_come_from_the_series_lengths(horizon, season, lengths, input_len, min_input):
    cfg = ForecasterConfig(horizon, season).resolve(lengths)
    assert (cfg.input_len, cfg.min_input) == (input_len, min_input)
    given = ForecasterConfig(horizon, season, input_len=20, min_input=5).resolve(lengths)
    assert (given.input_len, given.min_input) == (20, 5)  # what the user gave is kept
    assert ForecasterConfig(horizon, season, min_input=40).resolve(lengths).input_len == 40


def test_a_fitted_forecaster_saves_the_min_input_it_chose(tmp_path):
    series = [np.arange(n, dtype=float) + 10 for n in (14, 19, 41)]
    f = GRUForecaster(6, 1, train={**FAST, "epochs": 1}, hidden_size=8).fit(series)
    assert f.config.min_input is None and (f.config_.input_len, f.config_.min_input) == (12, 4)
    f.save(tmp_path / "m")
    g = GRUForecaster.load(tmp_path / "m")
    assert g.config == g.config_ == f.config_
    np.testing.assert_array_equal(g.predict().point, f.predict().point)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(horizon=3, quantiles=[0.1, 0.9]), "including 0.5"),
        (dict(horizon=3, dropout=1.0), "dropout must be in"),
        (dict(horizon=3, input_len=4, min_input=6), "min_input \\(6\\) must not exceed input_len \\(4\\)"),
    ],
)
def test_bad_hyperparameters(kw, message):
    with pytest.raises(ConfigError, match=message):
        ForecasterConfig(**kw)


def test_loading_a_damaged_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a forecaster folder"):
        GRUForecaster.load(tmp_path)
    (tmp_path / "forecaster.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable forecaster"):
        GRUForecaster.load(tmp_path)


def test_arrays_follow_the_missing_value_policy():
    s = from_arrays([np.array([np.nan, 1.0, np.nan, 3.0, np.nan])])
    np.testing.assert_array_equal(s.values[0], [1.0, 2.0, 3.0])
    assert s.report["interpolated"] == 1 and s.report["dropped_at_ends"] == 2
    with pytest.raises(DataError, match="has no values"):
        from_arrays([np.array([np.nan, np.nan])])
    with pytest.raises(DataError, match="infinite"):
        from_arrays([np.array([1.0, np.inf])])


def test_same_seed_same_forecast():
    series = _seasonal_series(4, n=48)
    a = GRUForecaster(6, 12, train={**FAST, "epochs": 2}, hidden_size=8, num_layers=1).fit(series)
    b = GRUForecaster(6, 12, train={**FAST, "epochs": 2}, hidden_size=8, num_layers=1).fit(series)
    np.testing.assert_array_equal(a.predict().point, b.predict().point)
    for p, q in zip(a.net_.parameters(), b.net_.parameters()):
        assert torch.equal(p, q)


def test_an_ensemble_is_the_median_of_forecasters_trained_alone(tmp_path):
    from grukit.apps.contract import check_estimator
    from grukit.apps.forecast_ensemble import ForecasterEnsemble

    series = _seasonal_series(4, n=48)
    quick = {**FAST, "epochs": 1}
    ens = ForecasterEnsemble(6, 12, members=3, train=quick, hidden_size=8).fit(series)
    alone = [
        GRUForecaster(6, 12, train={**quick, "seed": s}, hidden_size=8).fit(series).predict()
        for s in (0, 1, 2)
    ]
    fc = ens.predict()
    for q in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(fc.quantiles[q], np.median([a.quantiles[q] for a in alone], axis=0))
    np.testing.assert_array_equal(fc.point, fc.quantiles[0.5])
    assert np.all(fc.quantiles[0.1] <= fc.point) and np.all(fc.point <= fc.quantiles[0.9])
    assert ens.result_.epochs_run == [1, 1, 1]
    check_estimator(
        lambda **kw: ForecasterEnsemble(6, 12, members=2, train=quick, hidden_size=8, **kw),
        series,
        lambda f: f.predict().point,
    )
    with pytest.raises(ConfigError, match="members must be a positive integer, got 0"):
        ForecasterEnsemble(6, 12, members=0)


def test_an_ensemble_over_input_lengths_is_the_median_of_those_forecasters_and_reloads(tmp_path):
    """``input_lens`` cycles over the members: member k is the forecaster of seed + k reading
    ``input_lens[k % len]`` points, trained alone; a saved ensemble reloads every member's own
    window and forecasts the same."""
    from grukit.apps.forecast_ensemble import ForecasterEnsemble

    series = _seasonal_series(4, n=60)
    quick = {**FAST, "epochs": 1}
    ens = ForecasterEnsemble(6, 12, members=3, input_lens=[12, 24], train=quick, hidden_size=8).fit(series)
    assert [m.config_.input_len for m in ens.members] == [12, 24, 12]
    alone = [
        GRUForecaster(6, 12, train={**quick, "seed": s}, hidden_size=8, input_len=n).fit(series).predict()
        for s, n in ((0, 12), (1, 24), (2, 12))
    ]
    fc = ens.predict()
    for q in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(fc.quantiles[q], np.median([a.quantiles[q] for a in alone], axis=0))
    ens.save(tmp_path / "ens")
    back = ForecasterEnsemble.load(tmp_path / "ens")
    assert [m.config_.input_len for m in back.members] == [12, 24, 12]
    np.testing.assert_array_equal(back.predict().point, fc.point)
    with pytest.raises(ConfigError, match="input_len or input_lens, not both"):
        ForecasterEnsemble(6, 12, input_len=12, input_lens=[12, 24])
    with pytest.raises(ConfigError, match="input_lens must be positive integers"):
        ForecasterEnsemble(6, 12, input_lens=[12, 0])
