"""Integer time columns (period numbers 1, 2, 3, ...): read, checked and continued like
timestamps, in the library, ``grukit forecast`` and ``grukit anomaly``."""

import json
from pathlib import Path

import numpy as np
import pytest

from grukit.apps.forecast import GRUForecaster
from grukit.cli.main import main
from grukit.data import DataError, read_csv

pd = pytest.importorskip("pandas")

FIXTURES = Path(__file__).parent / "fixtures"
ONE_EPOCH = {"epochs": 1, "batch_size": 16, "lr": 1e-2, "patience": None, "progress": "off"}


def _series_values(n, shift):
    return 100 + 10 * np.sin(np.arange(n) * np.pi / 2) + shift


def _long_csv(path: Path, starts=(1, 101), n=30, step=1, times=None) -> Path:
    """Series s0, s1, ... of ``n`` points with times ``start + k * step`` (or the given strings)."""
    lines = ["id,t,value"]
    for i, start in enumerate(starts):
        ts = times if times is not None else [str(start + k * step) for k in range(n)]
        lines += [f"s{i},{t},{v:.3f}" for t, v in zip(ts, _series_values(len(ts), 5 * i))]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- reading -----------------------------------------------------------------------------------


def test_whole_numbers_are_period_numbers_with_their_step(tmp_path):
    s = read_csv(_long_csv(tmp_path / "d.csv", starts=(10, -4), n=5, step=3), time_col="t")
    assert s.integer_time and s.freq == 3
    for t, start in zip(s.timestamps, (10, -4)):
        assert t.dtype == np.int64
        np.testing.assert_array_equal(t, [start, start + 3, start + 6, start + 9, start + 12])


def test_integer_valued_floats_are_whole_numbers(tmp_path):
    floats = read_csv(_long_csv(tmp_path / "f.csv", times=["1.0", "2.0", "3.00", "4e0"]), time_col="t")
    ints = read_csv(_long_csv(tmp_path / "i.csv", times=["1", "2", "3", "4"]), time_col="t")
    assert floats.freq == ints.freq == 1
    for a, b in zip(floats.timestamps, ints.timestamps):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, [1, 2, 3, 4])
        np.testing.assert_array_equal(a, b)


def test_a_fraction_is_refused_by_line(tmp_path):
    data = _long_csv(tmp_path / "d.csv", times=["1", "2", "2.5", "4"])
    with pytest.raises(DataError, match=r"line 4: t='2.5' is not a whole number"):
        read_csv(data, time_col="t")


@pytest.mark.parametrize(
    "times, lines, values", [(["1", "3", "2", "4"], (3, 4), (3, 2)), (["1", "2", "2", "3"], (3, 4), (2, 2))]
)
def test_times_that_do_not_increase_are_refused_naming_series_and_lines(tmp_path, times, lines, values):
    data = _long_csv(tmp_path / "d.csv", starts=(1,), times=times)
    with pytest.raises(
        DataError,
        match=rf"lines {lines[0]} and {lines[1]}: t goes from {values[0]} to "
        rf"{values[1]} in series 's0'; times must increase strictly",
    ):
        read_csv(data, time_col="t")


def test_a_mix_of_numbers_and_dates_is_refused(tmp_path):
    data = _long_csv(tmp_path / "d.csv", times=["2020-01-01", "2", "3"])
    with pytest.raises(DataError, match=r"line 3: t='2' is not a date or time \(the column mixes"):
        read_csv(data, time_col="t")


def test_series_with_different_steps_are_refused(tmp_path):
    lines = ["id,t,value", "a,1,1", "a,2,2", "a,3,3", "b,1,1", "b,3,2", "b,5,3"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"the series have different steps \(1, 2\)"):
        read_csv(tmp_path / "d.csv", time_col="t")


def test_a_gap_is_treated_as_a_gap_in_daily_timestamps(tmp_path):
    days = [str(np.datetime64("2020-01-01") + k) for k in range(8)]
    periods = [str(k) for k in range(1, 9)]

    def csv(name, times, drop=None, empty=None):
        rows = [f"s,{t},{v}" for t, v in zip(times, [3.0, 5, 4, 8, 6, 7, 9, 8])]
        if empty is not None:
            rows[empty] = f"s,{times[empty]},"
        if drop is not None:
            del rows[drop]
        (tmp_path / name).write_text("id,t,value\n" + "\n".join(rows) + "\n")
        return tmp_path / name

    # a missing period: refused by both, with the same advice
    for times, what in ((days, "timestamps"), (periods, "times")):
        with pytest.raises(
            DataError,
            match=rf"irregularly spaced {what} \(a missing period.*add the missing "
            "periods with empty values, which are interpolated",
        ):
            read_csv(csv("gap.csv", times, drop=3), time_col="t")
    # the period added with an empty value: the same interpolated series from both
    by_day = read_csv(csv("d.csv", days, empty=3), time_col="t")
    by_period = read_csv(csv("p.csv", periods, empty=3), time_col="t")
    expected = [3.0, 5, 4, (4 + 6) / 2, 6, 7, 9, 8]  # the empty cell is the mean of its neighbours
    np.testing.assert_array_equal(by_day.values[0], expected)
    np.testing.assert_array_equal(by_period.values[0], expected)
    assert by_day.report == by_period.report
    assert (by_day.freq, by_period.freq) == ("D", 1)
    np.testing.assert_array_equal(by_period.timestamps[0], np.arange(1, 9))


def test_timestamps_with_a_time_zone_are_still_dates(tmp_path):
    stamps = [f"2020-01-{d:02d}T00:00:00+01:00" for d in range(1, 6)]
    s = read_csv(_long_csv(tmp_path / "d.csv", starts=(1,), times=stamps), time_col="t")
    assert not s.integer_time and s.freq == "D"
    assert [str(t) for t in s.timestamps[0][:2]] == ["2020-01-01 00:00:00+01:00", "2020-01-02 00:00:00+01:00"]


def test_an_empty_time_cell_is_refused_by_line(tmp_path):
    data = _long_csv(tmp_path / "d.csv", times=["1", "", "3"])
    with pytest.raises(DataError, match="line 3: t is empty"):
        read_csv(data, time_col="t")


# -- forecasting -------------------------------------------------------------------------------


def test_forecasts_continue_integer_times_and_keep_them_across_save_load(tmp_path):
    data = _long_csv(tmp_path / "d.csv", starts=(10, 1000), n=24, step=2)
    series = read_csv(data, time_col="t")
    f = GRUForecaster(3, 4, train=ONE_EPOCH, hidden_size=4).fit(series)
    fc = f.predict()
    # the last times, read straight from the file, plus 1, 2, 3 steps of 2
    last = pd.read_csv(data).groupby("id", sort=False)["t"].last().to_numpy()
    for got, end in zip(fc.timestamps, last):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, end + 2 * np.arange(1, 4))
    frame = fc.to_frame()
    assert frame["timestamp"].dtype == np.int64 and frame["timestamp"].tolist()[:3] == [58, 60, 62]

    f.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "forecaster.json").read_text())["series"]
    assert (meta["periods"], meta["timestamps"], meta["freq"]) == (True, False, 2)
    g = GRUForecaster.load(tmp_path / "m")
    assert g.series_.integer_time and g.series_.freq == 2
    for a, b in zip(g.series_.timestamps, series.timestamps):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    again = g.predict()
    np.testing.assert_array_equal(again.point, fc.point)
    for a, b in zip(again.timestamps, fc.timestamps):
        np.testing.assert_array_equal(a, b)


def test_a_forecaster_saved_before_integer_time_still_loads():
    """tests/fixtures/forecaster_v1 was written by the old code (scripts/make_forecaster_v1_fixture.py)."""
    folder = FIXTURES / "forecaster_v1"
    expected = json.loads((folder / "expected.json").read_text())
    f = GRUForecaster.load(folder)
    assert not f.series_.integer_time and f.series_.freq == "D"
    fc = f.predict()
    assert fc.ids == expected["ids"]
    np.testing.assert_allclose(fc.point, expected["point"], rtol=1e-5)
    got = [[str(np.datetime64(t, "D")) for t in ts] for ts in fc.timestamps]
    assert got == expected["timestamps"]


# -- the command line --------------------------------------------------------------------------

TINY = ["--horizon", "4", "--hidden-size", "4", "--epochs", "1", "--batch-size", "16", "--quiet"]


def test_forecast_train_and_predict_with_an_integer_time_column(tmp_path, capsys):
    data = _long_csv(tmp_path / "d.csv", starts=(1, 101), n=30)
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--time-col", "t", "--out", str(out), *TINY]) == 0
    # no calendar: the season stays 1 unless given
    assert json.loads((out / "config.json").read_text())["forecaster"]["season"] == 1
    held = pd.read_csv(out / "holdout_forecast.csv")
    source = pd.read_csv(data)
    assert held["timestamp"].dtype == np.int64
    assert held["timestamp"].tolist() == source.groupby("id", sort=False).tail(4)["t"].tolist()
    capsys.readouterr()

    pred = tmp_path / "forecast.csv"
    assert main(["forecast", "predict", "--model", str(out), "--data", str(data), "--out", str(pred)]) == 0
    frame = pd.read_csv(pred)
    assert frame["timestamp"].dtype == np.int64
    assert frame["timestamp"].tolist() == [31, 32, 33, 34, 131, 132, 133, 134]


def test_forecast_train_refuses_a_decreasing_integer_time_column(tmp_path, capsys):
    times = [str(k) for k in range(1, 31)]
    times[10], times[11] = times[11], times[10]
    data = _long_csv(tmp_path / "d.csv", starts=(1,), times=times)
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--time-col", "t", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "lines 12 and 13: t goes from 12 to 11 in series 's0'" in err and err.count("\n") == 1
    assert not out.exists()


def _signal_csv(path: Path, times) -> Path:
    t = np.arange(len(times))
    a = np.sin(2 * np.pi * t / 20) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    path.write_text("t,a\n" + "\n".join(f"{s},{x:.4f}" for s, x in zip(times, a)) + "\n")
    return path


ANOMALY_TINY = [
    "--window",
    "16",
    "--hidden-size",
    "4",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "4",
    "--batch-size",
    "16",
    "--quiet",
]


def test_anomaly_train_and_score_with_an_integer_time_column(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv", [str(k) for k in range(5, 5 + 400)])
    out = tmp_path / "run"
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(data),
                "--time-col",
                "t",
                "--train-until",
                "200",
                "--out",
                str(out),
                *ANOMALY_TINY,
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["value_cols"] == ["a"] and config["train_rows"] == 200  # a number is a row number
    scores = tmp_path / "scores.csv"
    assert main(["anomaly", "score", "--model", str(out), "--data", str(data), "--out", str(scores)]) == 0
    assert len(pd.read_csv(scores)) == 400


@pytest.mark.parametrize(
    "times, message",
    [
        ([str(k) for k in range(10)] + ["5"], "lines 11 and 12: t goes from 9 to 5; times must increase"),
        ([str(k) for k in range(10)] + ["10.5"], "line 12: t='10.5' is not a whole number"),
        (
            [str(np.datetime64("2020-01-01") + k) for k in range(10, 0, -1)],
            "lines 2 and 3: t goes from 2020-01-11",
        ),
    ],
)
def test_anomaly_refuses_a_bad_time_column(tmp_path, capsys, times, message):
    data = _signal_csv(tmp_path / "s.csv", times)
    out = tmp_path / "run"
    assert (
        main(["anomaly", "train", "--data", str(data), "--time-col", "t", "--out", str(out), *ANOMALY_TINY])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not out.exists()
