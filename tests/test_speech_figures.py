"""The speech figures: each writes a PNG that reads back as an image, and bad shapes are refused
with a message naming what was expected."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

from grukit.apps.speech import figures  # noqa: E402
from grukit.data.series import DataError  # noqa: E402

RATE = 8000


def read_png(path) -> np.ndarray:
    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] >= 300 and img.shape[1] >= 400
    assert img[..., :3].std() > 0.01  # something was drawn
    return img


def audio(seconds: float = 0.8, seed: int = 0):
    rng = np.random.default_rng(seed)
    wave = (
        0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)
        + rng.normal(0, 0.02, int(seconds * RATE))
    ).astype(np.float32)
    T = 1 + (len(wave) - 200) // 80
    logmel = rng.normal(size=(T, 40))
    return wave, logmel


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_confusion_figure(tmp_path):
    m = np.array([[5, 1, 0], [0, 6, 0], [2, 0, 4]])
    path = figures.confusion_figure(m, ["zero", "one", "two"], tmp_path / "c.png", title="digits")
    assert path == tmp_path / "c.png"
    read_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left behind


def test_confusion_refuses_bad_shapes(tmp_path):
    with pytest.raises(DataError, match=r"square.*\(2, 3\)"):
        figures.confusion_figure(np.ones((2, 3)), ["a", "b"], tmp_path / "c.png")
    with pytest.raises(DataError, match=r"expected \(3, 3\) for the 3 classes, got \(2, 2\)"):
        figures.confusion_figure(np.ones((2, 2)), ["a", "b", "c"], tmp_path / "c.png")
    with pytest.raises(DataError, match="non-negative"):
        figures.confusion_figure(-np.eye(2), ["a", "b"], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_per_speaker_figure(tmp_path):
    acc = {
        "GRU": {"george": 0.98, "jackson": 1.0, "theo": 0.9},
        "pooled MFCC + logistic regression": {"george": 0.95, "jackson": 0.97, "theo": 0.93},
    }
    read_png(figures.per_speaker_figure(acc, tmp_path / "s.png", title="per speaker"))
    # a model measured on fewer speakers still draws
    acc["pooled MFCC + 1-NN"] = {"george": 0.5}
    read_png(figures.per_speaker_figure(acc, tmp_path / "s2.png"))


def test_per_speaker_refuses_bad_tables(tmp_path):
    with pytest.raises(DataError, match="non-empty dict"):
        figures.per_speaker_figure({}, tmp_path / "s.png")
    with pytest.raises(DataError, match=r"\['GRU'\]\['theo'\]: expected a finite number"):
        figures.per_speaker_figure({"GRU": {"theo": float("nan")}}, tmp_path / "s.png")


def test_alignment_figure(tmp_path):
    wave, logmel = audio()
    symbols = ["one", "two", "three"]
    T2 = 25
    logits = np.full((T2, 4), -2.0)
    logits[:, 0] = 3.0  # blank, except where words are spoken
    logits[5:8, 2] = 6.0  # "two"
    logits[15:17, 1] = 6.0  # "one"
    path = figures.alignment_figure(
        wave, RATE, logmel, softmax(logits), symbols, 0.03, tmp_path / "a.png", title="one utterance"
    )
    read_png(path)
    read_png(figures.alignment_figure(wave, RATE, logmel, softmax(logits), symbols, 0.03, tmp_path / "b.png"))


def test_best_path_words_at_their_peaks():
    post = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],  # the peak of the first word 1
            [0.6, 0.3, 0.1],
            [0.2, 0.6, 0.2],  # word 1 again after a blank
            [0.1, 0.1, 0.8],  # then word 2 directly
            [0.9, 0.05, 0.05],
        ]
    )
    assert figures._emitted(post) == [(1, 2), (1, 4), (2, 5)]


def test_alignment_refuses_a_vocabulary_mismatch(tmp_path):
    wave, logmel = audio()
    with pytest.raises(DataError, match=r"expected 4 columns \(blank, then the 3 symbols\), got 3"):
        figures.alignment_figure(
            wave, RATE, logmel, np.full((10, 3), 1 / 3), ["a", "b", "c"], 0.03, tmp_path / "a.png"
        )
    with pytest.raises(DataError, match=r"wave: expected a 1-D"):
        figures.alignment_figure(
            wave[None], RATE, logmel, np.full((10, 4), 0.25), ["a", "b", "c"], 0.03, tmp_path / "a.png"
        )
    with pytest.raises(DataError, match="step_seconds"):
        figures.alignment_figure(
            wave, RATE, logmel, np.full((10, 4), 0.25), ["a", "b", "c"], 0.0, tmp_path / "a.png"
        )


def test_posterior_figure(tmp_path):
    wave, logmel = audio(seed=1)
    classes = [str(d) for d in range(10)]
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20, 10)) + np.linspace(0, 6, 20)[:, None] * (np.arange(10) == 7)
    read_png(
        figures.posterior_figure(
            wave, RATE, logmel, softmax(logits), classes, 0.04, tmp_path / "p.png", title="a seven"
        )
    )
    with pytest.raises(DataError, match=r"expected 10 columns \(one per class\), got 9"):
        figures.posterior_figure(
            wave, RATE, logmel, softmax(logits[:, :9]), classes, 0.04, tmp_path / "q.png"
        )
    with pytest.raises(DataError, match=r"logmel: expected a 2-D"):
        figures.posterior_figure(wave, RATE, logmel[0], softmax(logits), classes, 0.04, tmp_path / "q.png")


def test_robustness_figure(tmp_path):
    curves = {
        "GRU": {"clean": 0.99, "20 dB": 0.98, "10 dB": 0.9, "5 dB": 0.7, "speed 0.9": 0.95},
        "baseline": {"clean": 0.97, "20 dB": 0.8, "10 dB": 0.5, "5 dB": 0.3},
    }
    read_png(figures.robustness_figure(curves, tmp_path / "r.png", title="noise"))
    read_png(
        figures.robustness_figure(
            {"GRU": {"clean": 12.0, "noisy": 30.0}}, tmp_path / "w.png", ylabel="word error rate (%)"
        )
    )
    with pytest.raises(DataError, match=r"curves\['GRU'\]: expected a non-empty dict"):
        figures.robustness_figure({"GRU": {}}, tmp_path / "r.png")
