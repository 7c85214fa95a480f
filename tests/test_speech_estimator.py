"""GRUSpeechRecognizer: tiny synthetic tasks learned in seconds (classes of tones; strings of
tones through CTC), the estimator contract, streaming equal to whole-recording recognition,
decoding and confidences, and errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grukit.apps import GRUSpeechRecognizer, NotFittedError
from grukit.apps.contract import check_estimator
from grukit.data.series import DataError
from grukit.train.config import ConfigError

RATE = 8000
TONES = {"low": 400.0, "mid": 1000.0, "high": 2200.0}


def tone(freq: float, seconds: float, rng, amp=None) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    a = rng.uniform(0.2, 0.8) if amp is None else amp
    w = a * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return (w + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def quiet(seconds: float, rng) -> np.ndarray:
    return (0.01 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def tone_words(n_per_class: int, seed: int):
    """Tone bursts between stretches of quiet (a word is an event in time: per-recording
    normalisation removes a steady tone's level, not its onset)."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for _ in range(n_per_class):
        for name, f in TONES.items():
            waves.append(
                np.concatenate(
                    [
                        quiet(rng.uniform(0.05, 0.15), rng),
                        tone(f * rng.uniform(0.95, 1.05), rng.uniform(0.15, 0.3), rng),
                        quiet(rng.uniform(0.05, 0.15), rng),
                    ]
                )
            )
            labels.append(name)
    return waves, labels


def tone_strings(n: int, seed: int):
    """Strings of 2-4 tone words with silences between: (waves, transcripts)."""
    rng = np.random.default_rng(seed)
    names = list(TONES)
    waves, texts = [], []
    for _ in range(n):
        words = [names[i] for i in rng.integers(0, len(names), rng.integers(2, 5))]
        parts = [0.005 * rng.standard_normal(int(rng.uniform(0.05, 0.15) * RATE))]
        for w in words:
            parts.append(tone(TONES[w], rng.uniform(0.12, 0.2), rng))
            parts.append(0.005 * rng.standard_normal(int(rng.uniform(0.08, 0.15) * RATE)))
        waves.append(np.concatenate(parts).astype(np.float32))
        texts.append(" ".join(words))
    return waves, texts


SMALL = dict(hidden_size=24, num_layers=1, n_mels=20, speed_perturb=0.0)


@pytest.fixture(scope="module")
def classifier():
    waves, labels = tone_words(16, seed=0)
    rec = GRUSpeechRecognizer(
        task="classify",
        train={"epochs": 25, "batch_size": 16, "lr": 1e-2, "progress": "off", "patience": None},
        **SMALL,
    )
    return rec.fit(waves, labels, valid_fraction=0.0)


def test_classify_learns_tones_and_reports_confidence(classifier):
    waves, labels = tone_words(8, seed=1)
    r = classifier.evaluate(waves, labels)
    assert r["accuracy"] >= 0.95, r["accuracy"]
    assert np.array(r["confusion"]).sum() == len(labels)
    assert classifier.labels_ == sorted(TONES)
    proba = classifier.predict_proba(waves)
    assert proba.shape == (len(waves), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    recs = classifier.recognize(waves[:5])
    for rec, p in zip(recs, proba[:5]):
        assert rec.text == classifier.labels_[int(p.argmax())]
        assert rec.confidence == pytest.approx(p.max(), abs=1e-6)


def test_classify_posterior_over_time_ends_at_the_whole_recording(classifier):
    waves, _ = tone_words(1, seed=2)
    post = classifier.frame_posteriors(waves[0])
    whole = classifier.predict_proba([waves[0]])[0]
    assert post.shape[1] == 3
    np.testing.assert_allclose(post[-1], whole, atol=1e-5)  # the last prefix is the whole recording


def test_estimator_contract():
    waves, labels = tone_words(4, seed=3)

    # the contract's fit(data) takes one argument: adapt with a thin subclass
    class OneArg(GRUSpeechRecognizer):
        def fit(self, data, **kw):
            return super().fit(data[0], data[1], valid_fraction=0.0, **kw)

    check_estimator(
        lambda **kw: OneArg(train={"epochs": 2, "batch_size": 8, "progress": "off"}, **{**SMALL, **kw}),
        (waves, labels),
        lambda est: est.predict_proba(waves[:4]),
    )


def test_not_fitted_and_bad_input(classifier):
    with pytest.raises(NotFittedError):
        GRUSpeechRecognizer().predict([np.zeros(800, np.float32)])
    with pytest.raises(DataError, match="sequence of recordings"):
        classifier.predict(np.zeros(800, np.float32))
    with pytest.raises(DataError, match="samples, fewer than"):
        classifier.predict([np.ones(50, np.float32)])
    with pytest.raises(DataError, match="shape"):
        classifier.predict([np.ones((2, 800), np.float32)])
    with pytest.raises(DataError, match="non-finite"):
        classifier.predict([np.full(800, np.nan, np.float32)])
    with pytest.raises(DataError, match="not one of"):
        classifier.evaluate([np.ones(800, np.float32) * 0.1], ["nope"])
    with pytest.raises(DataError, match="2 recordings but 1 labels"):
        GRUSpeechRecognizer(**SMALL).fit([np.ones(800, np.float32)] * 2, ["a"])
    with pytest.raises(DataError, match="at least 2 classes"):
        GRUSpeechRecognizer(**SMALL).fit([np.ones(800, np.float32) * 0.1] * 2, ["a", "a"], valid_fraction=0)
    with pytest.raises(ConfigError, match="task"):
        GRUSpeechRecognizer(task="dictate")
    with pytest.raises(ConfigError, match="decode"):
        classifier.predict([np.ones(800, np.float32) * 0.1], decode="viterbi")
    with pytest.raises(ConfigError, match="cannot stream"):
        classifier.stream()  # bidirectional


def test_save_load_round_trip(classifier, tmp_path):
    waves, _ = tone_words(2, seed=4)
    classifier.save(tmp_path / "m")
    back = GRUSpeechRecognizer.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(waves), classifier.predict_proba(waves))
    assert back.labels_ == classifier.labels_
    # the defaults that follow the task are saved resolved, so a later default cannot change
    # what a saved model computes
    saved = json.loads((tmp_path / "m" / "speech.json").read_text())["speech"]
    assert (saved["features"], saved["norm"], saved["bidirectional"]) == ("mfcc", "utterance", True)
    assert classifier.config.features is None and back.config.feature_kind == "mfcc"
    with pytest.raises(FileNotFoundError):
        GRUSpeechRecognizer.load(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "speech.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable speech model"):
        GRUSpeechRecognizer.load(tmp_path / "bad")


@pytest.fixture(scope="module")
def transcriber():
    waves, texts = tone_strings(160, seed=10)
    rec = GRUSpeechRecognizer(
        task="transcribe",
        train={"epochs": 30, "batch_size": 16, "lr": 1e-2, "progress": "off", "patience": None},
        spec_augment=False,
        **{**SMALL, "hidden_size": 32},
    )
    return rec.fit(waves, texts, valid_fraction=0.0)


def test_transcribe_learns_tone_strings(transcriber):
    waves, texts = tone_strings(30, seed=11)
    r = transcriber.evaluate(waves, texts)
    assert r["wer"] <= 0.1, (r["wer"], r["predictions"][:5], texts[:5])
    g = transcriber.evaluate(waves, texts, decode="greedy")
    assert g["wer"] <= 0.15
    assert transcriber.config.streamable


def test_transcript_confidence_is_the_ctc_probability(transcriber):
    """The confidence equals the sum over every alignment, enumerated here by brute force on a
    short recording's posteriors."""
    import itertools

    waves, _ = tone_strings(1, seed=12)
    piece = waves[0][800:2160]  # 0.17 s: 7 steps
    rec = transcriber.recognize([piece], decode="greedy")[0]
    post = transcriber.frame_posteriors(piece)  # (T', V)
    T, V = post.shape
    assert T <= 8
    ids = [transcriber.labels_.index(w) + 1 for w in rec.text.split()]
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if collapsed == ids:
            total += float(np.prod(post[np.arange(T), list(path)]))
    assert rec.confidence == pytest.approx(total, rel=1e-6)


def test_streaming_equals_whole_recording(transcriber):
    waves, _ = tone_strings(6, seed=13)
    offline = transcriber.predict(waves, decode="greedy")
    stream = transcriber.stream()
    rng = np.random.default_rng(0)
    for w, ref in zip(waves, offline):
        words, a = [], 0
        while a < len(w):
            n = int(rng.integers(1, 1200))
            words += stream.push(w[a : a + n])
            a += n
        words += stream.finish()
        assert " ".join(x.text for x in words) == ref
        times = [x.time for x in words]
        assert times == sorted(times) and (not times or times[-1] <= len(w) / RATE + 1e-9)
    with pytest.raises(DataError, match="1-D"):
        stream.push(np.zeros((2, 10)))


def test_stream_distributions_equal_the_whole_recordings(transcriber):
    """The stream's per-step distributions equal the network's forward over the whole recording
    (float32: the stream's compiled steps and the fused forward round differently)."""
    w = tone_strings(1, seed=14)[0][0]
    whole = torch.from_numpy(transcriber.frame_posteriors(w))
    stream = transcriber.stream()
    steps = []
    head = stream.net.head
    hook = head.register_forward_hook(lambda m, i, o: steps.append(torch.softmax(o.double(), -1)))
    try:
        for a in range(0, len(w), 333):
            stream.push(w[a : a + 333])
    finally:
        hook.remove()
    got = torch.cat(steps)
    assert got.shape == whole.shape
    torch.testing.assert_close(got, whole, atol=2e-5, rtol=0)


def test_transcribe_rejects_strings_too_long_for_their_audio():
    rec = GRUSpeechRecognizer(task="transcribe", stack=4, **SMALL)
    with pytest.raises(DataError, match="too few for"):
        rec.fit([np.ones(1000, np.float32) * 0.1], ["a b c d e f g h i"], valid_fraction=0.0)


def test_training_augmentation_draws_within_its_ranges():
    from grukit.apps.speech.batches import Recordings

    rng = np.random.default_rng(0)
    wave = tone(500.0, 0.5, rng, amp=0.5)
    data = Recordings([wave], [0], task="classify", augment=True, speed=0.1, volume=20.0)
    torch.manual_seed(0)
    gains, lengths = [], set()
    for _ in range(300):
        w, _ = data[0]
        lengths.add(len(w))
        if len(w) == len(wave):
            gains.append(20 * np.log10(np.sqrt(np.mean(w**2)) / np.sqrt(np.mean(wave**2))))
    assert len(lengths) == 3  # slower, unchanged, faster
    assert min(lengths) == pytest.approx(len(wave) / 1.1, abs=2) and max(lengths) == pytest.approx(
        len(wave) / 0.9, abs=2
    )
    assert -20 <= min(gains) < -15 and 15 < max(gains) <= 20  # uniform over [-20, 20] dB
    plain = Recordings([wave], [0], task="classify")  # no augmentation: the recording itself
    np.testing.assert_array_equal(plain[0][0], wave)
    with pytest.raises(ConfigError, match="volume_perturb"):
        GRUSpeechRecognizer(volume_perturb=60)


def test_frequency_masks_scale_with_the_feature_count_to_transcribe():
    """Each of SpecAugment's two frequency masks covers at most ``freq_mask`` features: by default
    a fifth of them to transcribe (8 of 40 log-mels, 3 of 13 MFCCs), 8 to classify. Counted on
    the masked channels of many training-mode draws."""
    from grukit.apps.speech.model import SpeechConfig, SpeechNet

    torch.manual_seed(0)
    for fields, F, widest in [
        ({"features": "logmel"}, 40, 8),
        ({"features": "mfcc"}, 13, 3),
        ({"features": "mfcc", "n_mfcc": 4}, 4, 1),
        ({"task": "classify"}, 13, 8),
        ({"freq_mask": 5}, 13, 5),
    ]:
        cfg = SpeechConfig(**{"task": "transcribe", **fields})
        assert cfg.resolved()["freq_mask"] == widest, fields
        aug = SpeechNet(cfg, 5).augment.train()
        feats = torch.ones(400, 1000, F)  # long enough that no time mask covers every frame
        out = aug(feats, torch.full((400,), 1000))
        zero_channels = (out == 0).all(1).sum(1)  # (400,) channels masked at every frame
        # two masks of at most widest each; 400 draws reach (nearly) that
        assert 2 * widest - 4 <= int(zero_channels.max()) <= min(2 * widest, F), fields
        assert int(zero_channels.min()) == 0, fields
    with pytest.raises(ConfigError, match="freq_mask must be None or a non-negative integer"):
        SpeechConfig(freq_mask=-1)


def test_feature_and_volume_defaults_and_explicit_choices_win():
    from grukit.apps.speech.model import VOLUME_DB, SpeechConfig, SpeechNet

    cases = [
        ({"task": "classify"}, "mfcc", 13),
        ({"task": "transcribe"}, "mfcc", 13),
        ({"task": "classify", "features": "logmel"}, "logmel", 40),
        ({"task": "transcribe", "features": "mfcc", "n_mfcc": 20}, "mfcc", 20),
    ]
    for fields, kind, dim in cases:
        cfg = SpeechConfig(**fields)
        assert cfg.feature_kind == kind, fields
        net = SpeechNet(cfg, 5)
        assert net.features.cfg.kind == kind and net.features.cfg.dim == dim, fields
        wave = torch.randn(2, 4000)
        f, n = net.features(wave, torch.tensor([4000, 3000]))
        assert f.shape[-1] == dim and n.tolist() == [48, 36]  # 1 + (S - 200) // 80
    with pytest.raises(ConfigError, match="features must be one of logmel, mfcc"):
        SpeechConfig(features="spectrogram")
    with pytest.raises(ConfigError, match=r"n_mfcc \(30\) cannot exceed n_mels \(20\)"):
        SpeechConfig(task="transcribe", n_mels=20, n_mfcc=30)  # mfcc by default
    SpeechConfig(features="logmel", n_mels=20, n_mfcc=30)  # log-mel: n_mfcc unused
    # volume perturbation where the level reaches the network: global statistics only
    assert VOLUME_DB == 20.0
    assert SpeechConfig(task="transcribe").volume_db == 20.0  # unidirectional: global statistics
    assert SpeechConfig(task="classify").volume_db == 0.0  # per-utterance statistics
    assert SpeechConfig(task="classify", norm="global").volume_db == 20.0
    assert SpeechConfig(task="transcribe", volume_perturb=0).volume_db == 0.0
    with pytest.raises(ConfigError, match=r"volume_perturb must be None or in \[0, 40\] dB"):
        SpeechConfig(volume_perturb=50)
