"""Scoring a signal in chunks (``apps.anomaly.stream``) equals scoring it whole, and the CLI's
``anomaly score`` reads a CSV in chunks."""

import numpy as np
import pytest

from grukit.apps.anomaly import GRUAnomalyDetector
from grukit.apps.anomaly.stream import SignalStream
from grukit.data import DataError

TRAIN = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 5, "lr": 1e-2, "progress": "off", "patience": None}


def _signal(n, C=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    x = np.sin(2 * np.pi * t / (17.0 + 3 * np.arange(C))) + 0.1 * rng.standard_normal((n, C))
    x[n // 2 : n // 2 + 5] += 3.0
    return x


SETTINGS = {
    "forecaster": {"model": "forecaster", "window": 12, "horizon": 5, "smooth": 4, "ensemble": 2},
    "window": {"model": "autoencoder", "window": 16, "aggregate": "window", "smooth": 3},
    "point": {"model": "autoencoder", "window": 12, "stride": 5, "aggregate": "point", "ensemble": 2},
    "min": {"model": "autoencoder", "window": 10, "stride": 3, "aggregate": "min"},
}
_fitted = {}


def _fit(name):
    if name not in _fitted:
        _fitted[name] = GRUAnomalyDetector("signal", hidden_size=8, train=TRAIN, **SETTINGS[name]).fit(
            _signal(600)
        )
    return _fitted[name]


@pytest.fixture(scope="module", params=list(SETTINGS))
def detector(request):
    return _fit(request.param)


def _streamed(det, x, sizes, chunk):
    stream, parts, i = SignalStream(det, chunk=chunk), [], 0
    for m in sizes:
        parts.append(stream.feed(x[i : i + m]))
        i += m
    assert i == len(x)
    parts.append(stream.finish())
    return np.concatenate(parts)


@pytest.mark.parametrize("sizes,chunk", [([997], 64), ([1, 2, 3, 200, 91, 700], 50), ([1] * 40 + [957], 7)])
def test_chunks_of_any_size_give_the_whole_signals_scores(detector, sizes, chunk):
    x = _signal(997, seed=3)
    whole = detector.score(x)
    got = _streamed(detector, x, sizes, chunk)
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def test_gaps_that_span_chunks_are_filled_as_in_one_pass(detector):
    x = _signal(800, seed=4)
    x[:3, 0] = np.nan  # a leading gap, held
    x[100:260, 1] = np.nan  # crosses several chunks
    x[400:402] = np.nan  # both channels
    x[-4:, 0] = np.nan  # a trailing gap, held
    whole = detector.score(x)
    got = _streamed(detector, x, [90] * 8 + [80], 40)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()


def test_score_chunks_yields_the_scores(detector):
    x = _signal(700, seed=5)
    got = np.concatenate(list(detector.score_chunks((x[i : i + 128] for i in range(0, 700, 128)), chunk=64)))
    np.testing.assert_allclose(got, detector.score(x), rtol=1e-5, atol=1e-5)


def test_bad_chunks_are_refused_with_what_was_expected(detector):
    s = SignalStream(detector)
    with pytest.raises(DataError, match=r"trained on 2 channel\(s\); got 3"):
        s.feed(np.zeros((5, 3)))
    with pytest.raises(DataError, match=r"expected a chunk of shape \(m, 2\) or \(m,\), got \(5, 2, 1\)"):
        s.feed(np.zeros((5, 2, 1)))
    with pytest.raises(DataError, match="infinite"):
        s.feed(np.full((5, 2), np.inf))
    with pytest.raises(DataError, match="at least one window"):
        s.finish()
    with pytest.raises(RuntimeError, match="finished"):
        s.feed(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="chunk must be a positive"):
        SignalStream(detector, chunk=0)
    nan = SignalStream(detector)
    nan.feed(np.c_[np.zeros(50), np.full(50, np.nan)])
    with pytest.raises(DataError, match="channel 1 has no values"):
        nan.finish()


# -- the command line: `anomaly score` reads a signal CSV in chunks ------------------------------


@pytest.fixture(scope="module", params=["forecaster", "window"])  # scores as they come; later than the rows
def cli_detector(request):
    return _fit(request.param)


@pytest.fixture(scope="module")
def folder(cli_detector, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    cli_detector.save(out)
    return out


def _csv(path, x, labels=None, times=None):
    import pandas as pd

    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1]})
    if times is not None:
        frame.insert(0, "t", times)
    if labels is not None:
        frame["y"] = labels
    frame.to_csv(path, index=False)
    return path


def test_the_cli_scores_a_csv_in_chunks_as_in_one_pass(cli_detector, folder, tmp_path, capsys):
    import pandas as pd

    from grukit.cli.main import main

    x = _signal(900, seed=6)
    x[300:420, 0] = np.nan  # a gap across chunks: an empty cell
    labels = np.zeros(900, int)
    labels[450:455] = 1
    data = _csv(tmp_path / "d.csv", x, labels)
    out = tmp_path / "s.csv"
    args = ["anomaly", "score", "--model", str(folder), "--data", str(data), "--out", str(out)]
    assert main([*args, "--chunk", "64", "--label-col", "y"]) == 0
    got = pd.read_csv(out)
    whole = cli_detector.score(x)
    assert list(got.columns) == ["row", "score", "flag", "label"]
    assert (got["row"] == np.arange(900)).all() and (got["label"] == labels).all()
    np.testing.assert_allclose(got["score"], whole, rtol=1e-5, atol=1e-5)
    assert (got["flag"] == (got["score"] > cli_detector.threshold_)).all()
    printed = capsys.readouterr().out
    assert f"wrote {out}: 900 rows, {int(got['flag'].sum())} flagged" in printed and "ROC-AUC" in printed
    _csv(data, x)
    assert main([*args, "--chunk", "100", "--force"]) == 0  # nothing kept: no labels, no plot
    np.testing.assert_allclose(pd.read_csv(out)["score"], whole, rtol=1e-5, atol=1e-5)


def test_the_cli_names_the_line_of_a_bad_value_in_a_later_chunk(tmp_path, capsys):
    from grukit.cli.main import main

    folder = tmp_path / "model"  # reading is the same for every model
    _fit("forecaster").save(folder)

    x = _signal(500, seed=7)
    data = _csv(tmp_path / "d.csv", x, times=np.arange(500))
    text = data.read_text().splitlines()
    t, a, b = text[301].split(",")
    text[301] = f"{t},oops,{b}"  # row 300: line 302, in the fifth chunk of 64 rows
    data.write_text("\n".join(text) + "\n")
    out = tmp_path / "s.csv"
    args = [
        "anomaly",
        "score",
        "--model",
        str(folder),
        "--data",
        str(data),
        "--out",
        str(out),
        "--chunk",
        "64",
    ]
    config = folder / "config.json"  # what `anomaly train` saves beside the model: the columns
    config.write_text('{"time_col": "t", "value_cols": ["a", "b"]}')
    try:
        assert main(args) == 2
        assert "line 302: a='oops' is not a number" in capsys.readouterr().err
        assert not out.exists() and not list(tmp_path.glob(".s.csv*"))  # nothing half-written is left
        times = np.arange(500)
        times[200:] -= 5  # back in time in the fourth chunk (rows 192 .. 255)
        _csv(data, x, times=times)
        assert main(args) == 2
        assert "lines 201 and 202: t goes from 199 to 195" in capsys.readouterr().err
        times = np.arange(500)
        times[256:] -= 5  # back in time across the boundary of the fourth and fifth chunks
        _csv(data, x, times=times)
        assert main(args) == 2
        assert "lines 257 and 258: t goes from 255 to 251" in capsys.readouterr().err
        assert main([*args[:-2], "--chunk", "0"]) == 2
        assert "--chunk must be a positive number" in capsys.readouterr().err
        assert not out.exists()
    finally:
        config.unlink()
