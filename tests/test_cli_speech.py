"""``grukit speech train / recognize / evaluate / demo`` as a user runs them, on small folders of
generated recordings (tones standing for words), plus FSDD when it is beside the checkout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from grukit.cli.main import main

sf = pytest.importorskip("soundfile", reason="the speech extra (soundfile) is part of the test extra")

RATE = 8000
TONES = {"low": 400.0, "mid": 1000.0, "high": 2200.0}
TINY = [
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--n-mels",
    "20",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--speed-perturb",
    "0",
    "--quiet",
]


def _tone(freq, seconds, rng):
    t = np.arange(int(seconds * RATE)) / RATE
    return (
        rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))
        + 0.01 * rng.standard_normal(len(t))
    ).astype(np.float32)


def _grukit(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "grukit", *args], capture_output=True, text=True, timeout=300, **kw
    )


@pytest.fixture(scope="module")
def word_folder(tmp_path_factory):
    """DIR/<word>/*.wav, 12 recordings per word, and one corrupt file."""
    root = tmp_path_factory.mktemp("words")
    rng = np.random.default_rng(0)
    for word, f in TONES.items():
        (root / word).mkdir()
        for k in range(12):
            sf.write(root / word / f"{k}.wav", _tone(f, rng.uniform(0.2, 0.4), rng), RATE, subtype="PCM_16")
    (root / "mid" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return root


@pytest.fixture(scope="module")
def trained(word_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    assert main(["speech", "train", "--data", str(word_folder), "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_model_metrics_baselines_and_figures(trained):
    for name in (
        "model.safetensors",
        "speech.json",
        "config.json",
        "metrics.json",
        "history.json",
        "confusion.png",
        "robustness.png",
        "posterior.png",
    ):
        assert (trained / name).is_file(), name
    m = json.loads((trained / "metrics.json").read_text())
    assert m["task"] == "classify" and m["classes"] == sorted(TONES)
    assert m["train_recordings"] + m["test_recordings"] == 36  # the corrupt file skipped
    assert any("broken.wav" in s[0] for s in m["skipped_files"])
    assert len(m["baselines"]) == 3 and all(0 <= b["accuracy"] <= 1 for b in m["baselines"].values())
    assert set(m["robustness"]["GRU"]) == {"clean", "20 dB", "10 dB", "5 dB", "speed 0.9", "speed 1.1"}
    assert m["machine"]["cpu"]


def test_recognize_prints_a_line_per_file_and_writes_csv(trained, word_folder, tmp_path):
    files = [str(word_folder / w / "0.wav") for w in TONES] + [str(word_folder / "mid" / "broken.wav")]
    r = _grukit("speech", "recognize", "--model", str(trained), *files, "--out", str(tmp_path / "r.csv"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, f in zip(lines, files):
        path, text, conf = line.split("\t")
        assert path == f and text in TONES and 0 < float(conf) <= 1
    assert "broken.wav: skipped" in r.stderr
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [row["path"] for row in rows] == files[:3]
    again = _grukit(
        "speech", "recognize", "--model", str(trained), files[0], "--out", str(tmp_path / "r.csv")
    )
    assert again.returncode == 2 and "exists; pass --force" in again.stderr


def test_evaluate_prints_accuracy_and_confusion(trained, word_folder, tmp_path, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "speech",
                "evaluate",
                "--model",
                str(trained),
                "--data",
                str(word_folder),
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert f"accuracy {saved['accuracy']:.4f} (36 recordings)" in out
    assert "confusion" in out and np.array(saved["confusion"]).sum() == 36


def test_stream_recognize_needs_a_streamable_model(trained, word_folder):
    r = _grukit(
        "speech", "recognize", "--model", str(trained), "--stream", str(word_folder / "low" / "0.wav")
    )
    assert r.returncode == 2 and "cannot stream" in r.stderr


@pytest.fixture(scope="module")
def string_manifest(tmp_path_factory):
    """A manifest of tone strings with transcripts (path,transcript,speaker)."""
    root = tmp_path_factory.mktemp("strings")
    rng = np.random.default_rng(1)
    rows = []
    names = list(TONES)
    for k in range(60):
        words = [names[i] for i in rng.integers(0, 3, rng.integers(2, 4))]
        parts = [np.zeros(int(0.1 * RATE), np.float32)]
        for w in words:
            parts += [_tone(TONES[w], 0.15, rng), np.zeros(int(0.1 * RATE), np.float32)]
        sf.write(
            root / f"s{k}.wav",
            np.concatenate(parts)
            + 0.003 * rng.standard_normal(sum(len(p) for p in parts)).astype(np.float32),
            RATE,
        )
        rows.append(f"s{k}.wav,{' '.join(words)},spk{k % 3}")
    (root / "manifest.csv").write_text("path,transcript,speaker\n" + "\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_transcribe_from_a_manifest_then_stream(string_manifest, tmp_path):
    out = tmp_path / "ctc"
    assert (
        main(
            [
                "speech",
                "train",
                "--data",
                str(string_manifest),
                "--holdout-speaker",
                "spk2",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "transcribe" and m["train_recordings"] == 40
    ((name, r),) = m["tests"].items()
    assert r["recordings"] == 20 and 0 <= r["beam"]["wer"] and 0 <= r["greedy"]["wer"]
    s = m["streaming"]
    assert s["recordings"] == 20 and s["startup_ms"] > 0 and s["real_time_factor"] > 0
    assert (out / "alignment.png").is_file()
    wav = string_manifest.parent / "s2.wav"
    offline = _grukit("speech", "recognize", "--model", str(out), "--decode", "greedy", str(wav))
    live = _grukit("speech", "recognize", "--model", str(out), "--stream", "--chunk-ms", "30", str(wav))
    assert offline.returncode == 0 and live.returncode == 0, live.stderr
    words = offline.stdout.split("\t")[1].split()
    assert live.stdout.split("\t")[0] == f"{wav}:" + "".join(" " + w for w in words)


def test_loso_trains_one_model_per_speaker(tmp_path):
    data = tmp_path / "fsddlike"
    data.mkdir()
    rng = np.random.default_rng(2)
    for spk in ("ann", "bob", "cid"):
        for word, f in TONES.items():
            for k in range(6):
                sf.write(data / f"{word}_{spk}_{k}.wav", _tone(f * rng.uniform(0.97, 1.03), 0.3, rng), RATE)
    out = tmp_path / "loso"
    assert (
        main(
            [
                "speech",
                "train",
                "--data",
                str(data),
                "--loso",
                "--out",
                str(out),
                *TINY[:-3],
                "--epochs",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["folds"] == 3 and set(m["summary"]["GRU"]["per_speaker"]) == {"ann", "bob", "cid"}
    assert m["summary"]["GRU"]["worst_speaker"] in {"ann", "bob", "cid"}
    assert (out / "per_speaker.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "/no/such/folder"], "no such"),
        (["--dataset", "fsdd", "--data", "x.csv"], "not a manifest"),
        (["--data", "{words}", "--task", "transcribe", "--strings", "2"], "--strings must be at least 6"),
        (["--data", "{words}", "--zoneout", "1.5"], "zoneout must be a probability"),
        (["--data", "{words}", "--n-mfcc", "30"], "n_mfcc (30) cannot exceed n_mels (20)"),
        (["--data", "{words}", "--freq-mask", "-1"], "freq_mask must be None or a non-negative integer"),
        (["--data", "{words}", "--volume-perturb", "60"], "volume_perturb must be None or in [0, 40] dB"),
        (["--data", "{words}", "--holdout-speaker", "nobody"], "needs speakers"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(word_folder, tmp_path, argv, message):
    out = tmp_path / "out"
    argv = [a.replace("{words}", str(word_folder)) for a in argv]
    r = _grukit("speech", "train", *argv, "--out", str(out), *TINY)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_out_must_be_new_or_empty(word_folder, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = _grukit("speech", "train", "--data", str(word_folder), "--out", str(out), *TINY)
    assert r.returncode == 2
    assert (out / "precious.txt").read_text() == "keep me"


def test_inspect_draws_a_speech_models_gates(trained, word_folder, tmp_path, capsys):
    wav = word_folder / "high" / "3.wav"
    assert main(["inspect", "--model", str(trained), "--input", str(wav), "--out", str(tmp_path / "g")]) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["model"] == "speech recognizer" and summary["directions"] == 2
    assert (tmp_path / "g" / "gates.png").stat().st_size > 0
    assert main(["inspect", "--model", str(trained), "--out", str(tmp_path / "h")]) == 2
    assert "--input is needed for a speech recognizer" in capsys.readouterr().err


def test_speech_demo_writes_three_runs_and_a_summary(fake_fsdd, tmp_path, monkeypatch):
    from grukit.apps.speech import run

    monkeypatch.setitem(run.DEMO, "strings", 40)
    monkeypatch.setitem(run.DEMO, "test_strings", 10)
    out = tmp_path / "demo"
    assert (
        main(["speech", "demo", "--data", str(fake_fsdd), "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["digits"]["test_recordings"] == 100  # recordings 0-4 of both speakers
    assert m["speaker"]["test_recordings"] == 70  # every recording of theo
    assert set(m["strings"]) == {"held-out recordings", "speaker theo (held out)"}
    for sub in ("digits", "speaker-theo", "strings"):
        assert (out / sub / "metrics.json").is_file(), sub
    assert (out / "strings" / "alignment.png").is_file() and (out / "digits" / "robustness.png").is_file()
    r = _grukit("speech", "demo", "--data", str(fake_fsdd), "--epochs", "1", "--out", str(out))
    assert r.returncode == 2 and "is not empty" in r.stderr, r.stderr
    again = main(
        [
            "speech",
            "demo",
            "--data",
            str(fake_fsdd),
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(out),
            "--resume",
        ]
    )  # every run is complete: measured again from its checkpoints, no training
    assert again == 0 and json.loads((out / "metrics.json").read_text())["digits"] == m["digits"]


def test_two_process_ddp_training_with_torchrun(word_folder, tmp_path):
    import os

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
            "speech",
            "train",
            "--data",
            str(word_folder),
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
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    m = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    # 36 readable recordings: 4 test, 32 training of which 3 validate; the 29 split over the two
    # processes (DistributedSampler pads to an even 30), their counts summed
    assert m["train_recordings"] == 32 and history[0]["samples"] == 30
