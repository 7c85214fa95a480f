"""grukit.apps.speech.features against librosa (the filterbank, log-mel and MFCC), hand-worked
framing and mel values, and the properties: a padded batch equals each utterance alone, chunks
streamed equal one pass, normalisation statistics, SpecAugment's masks, gradients."""

import math
import os
import subprocess
import sys
from pathlib import Path

import librosa  # the test extra's oracle: imported directly, so its absence fails loudly
import numpy as np
import pytest
import torch

from grukit.apps.speech.features import (
    LOG_EPS,
    FeatureConfig,
    Features,
    FeatureStream,
    SpecAugment,
    dct_matrix,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    num_frames,
    utterance_norm,
)
from grukit.data.series import DataError
from grukit.train.config import ConfigError

SHARED_FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"
CONFIGS = [
    FeatureConfig(),
    FeatureConfig(sample_rate=16000, n_mels=80, fmin=0.0, fmax=7600.0),
    FeatureConfig(sample_rate=22050, win_ms=20.0, hop_ms=5.0, n_mels=64, fmin=50.0),
]


def noise_and_tones(cfg, seconds=0.5, seed=0):
    """White noise plus three tones (float64), so every band has power well above LOG_EPS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * cfg.sample_rate)) / cfg.sample_rate
    y = 0.05 * rng.standard_normal(t.size)
    for f, a in ((300.0, 0.3), (1234.0, 0.2), (0.37 * cfg.sample_rate, 0.1)):
        y += a * np.sin(2 * np.pi * f * t)
    return y


def librosa_mel_power(y, cfg):
    """librosa's mel power spectrogram (M, T) of our frames: librosa's center=False frames are
    n_fft long with the W-sample window in their middle, so the wave gets a = (n_fft - W) // 2
    zeros in front (and the rest behind): its frame t then windows y[t hop : t hop + W]."""
    W, n_fft = cfg.win_length, cfg.n_fft
    a = (n_fft - W) // 2
    return librosa.feature.melspectrogram(
        y=np.pad(y, (a, n_fft - W - a)),
        sr=cfg.sample_rate,
        n_fft=n_fft,
        hop_length=cfg.hop_length,
        win_length=W,
        window="hann",
        center=False,
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.upper,
        dtype=np.float64,
    )


def fsdd_wave():
    path = SHARED_FSDD / "recordings" / "3_theo_7.wav"
    if not path.is_file():
        pytest.skip(f"FSDD is not beside the checkout ({SHARED_FSDD})")
    import soundfile as sf

    y, rate = sf.read(path, dtype="float64")
    assert rate == 8000
    return y


# -- configuration ------------------------------------------------------------------------------


def test_config_lengths_by_hand():
    c = FeatureConfig()
    assert (c.win_length, c.hop_length, c.n_fft, c.dim) == (200, 80, 256, 40)
    c = FeatureConfig(kind="mfcc", sample_rate=16000, n_mfcc=20)
    assert (c.win_length, c.hop_length, c.n_fft, c.dim) == (400, 160, 512, 20)
    assert FeatureConfig(sample_rate=8000, win_ms=32.0).n_fft == 256  # W = 256 exactly


@pytest.mark.parametrize(
    "field, value",
    [
        ("kind", "spectrogram"),
        ("sample_rate", 0),
        ("sample_rate", 8000.0),
        ("sample_rate", True),
        ("win_ms", 0.0),
        ("win_ms", float("nan")),
        ("win_ms", 0.1),
        ("hop_ms", -10.0),
        ("hop_ms", 0.01),
        ("n_mels", 0),
        ("n_mels", 40.0),
        ("n_mfcc", -1),
        ("fmin", -1.0),
        ("fmin", 4000.0),
        ("fmax", 4001.0),
        ("fmax", 10.0),
        ("fmax", float("inf")),
    ],
)
def test_config_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"FeatureConfig\.{field}: expected .*, got "):
        FeatureConfig(**{field: value})


def test_config_mfcc_cannot_exceed_mels():
    with pytest.raises(ConfigError, match=r"n_mfcc: expected at most n_mels = 10"):
        FeatureConfig(kind="mfcc", n_mels=10, n_mfcc=13)
    FeatureConfig(kind="logmel", n_mels=10, n_mfcc=13)  # n_mfcc unused by log-mel


def test_num_frames_by_hand():
    c = FeatureConfig()  # W 200, hop 80
    assert [num_frames(s, c) for s in (0, 199, 200, 279, 280, 8000)] == [0, 0, 1, 1, 2, 98]
    got = num_frames(torch.tensor([0, 199, 200, 279, 280, 8000]), c)
    assert got.dtype == torch.long and got.tolist() == [0, 0, 1, 1, 2, 98]


# -- the filterbank -----------------------------------------------------------------------------


def test_slaney_mel_scale_by_hand_and_against_librosa():
    np.testing.assert_allclose(hz_to_mel([0.0, 200.0, 1000.0, 6400.0]), [0.0, 3.0, 15.0, 42.0], rtol=1e-12)
    f = np.array([0.0, 20.0, 999.0, 1000.0, 1001.0, 3999.0, 11025.0])
    np.testing.assert_allclose(hz_to_mel(f), librosa.hz_to_mel(f), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["8k", "16k-80", "22k-64"])
def test_mel_filterbank_matches_librosa(cfg):
    ours = mel_filterbank(cfg)
    ref = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.upper,
        dtype=np.float64,
    ).T  # (K, M)
    assert ours.shape == (cfg.n_fft // 2 + 1, cfg.n_mels) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12 * ref.max())


def test_dct_matrix_is_orthonormal_and_matches_scipy():
    import scipy.fft

    C = dct_matrix(40, 40)
    np.testing.assert_allclose(C.T @ C, np.eye(40), atol=1e-12)
    x = np.random.default_rng(0).standard_normal((5, 40))
    np.testing.assert_allclose(
        x @ dct_matrix(40, 13), scipy.fft.dct(x, type=2, norm="ortho")[:, :13], atol=1e-12
    )


# -- features against librosa -------------------------------------------------------------------

# Tolerances. float64: 1e-9 (both sides are float64 FFTs of the same frames; seen: ~1e-14).
# float32: the FFT's power errors are ~1e-7 of a frame's energy, and LOG_EPS bounds the log's
# sensitivity (d ln(E + eps) = dE / (E + eps)), so the log-mel is compared everywhere, quiet
# bands included, at atol 1e-4 (seen: <= 8e-6 on FSDD); the MFCC (10 log10, no eps, floor
# 1e-10) at atol 1e-3 on values of a few hundred (seen: <= 1e-4).


@pytest.mark.parametrize("cfg", CONFIGS, ids=["8k", "16k-80", "22k-64"])
def test_logmel_matches_librosa_float64(cfg):
    y = noise_and_tones(cfg)
    ref = np.log(librosa_mel_power(y, cfg) + LOG_EPS).T  # (T, M)
    got, counts = Features(cfg)(torch.from_numpy(y)[None])
    assert (
        got.dtype == torch.float64
        and got.shape == (1, num_frames(len(y), cfg), cfg.n_mels) == (1,) + ref.shape
    )
    assert counts.tolist() == [ref.shape[0]]
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["8k", "16k-80", "22k-64"])
def test_logmel_matches_librosa_float32(cfg):
    y = noise_and_tones(cfg)
    ref = np.log(librosa_mel_power(y, cfg) + LOG_EPS).T  # (T, M)
    got, _ = Features(cfg)(torch.from_numpy(y).float()[None])
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=0, atol=1e-4)


def test_logmel_matches_librosa_on_an_fsdd_recording():
    cfg = FeatureConfig()
    y = fsdd_wave()
    ref = np.log(librosa_mel_power(y, cfg) + LOG_EPS).T  # (T, M)
    assert ref.shape == (num_frames(len(y), cfg), cfg.n_mels)
    got64, _ = Features(cfg)(torch.from_numpy(y)[None])
    np.testing.assert_allclose(got64[0].numpy(), ref, rtol=0, atol=1e-9)
    got32, _ = Features(cfg)(torch.from_numpy(y).float()[None])
    np.testing.assert_allclose(got32[0].numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("source", ["synthetic", "fsdd"])
def test_mfcc_matches_librosa(source):
    cfg = FeatureConfig(kind="mfcc")
    y = noise_and_tones(cfg) if source == "synthetic" else fsdd_wave()
    db = librosa.power_to_db(librosa_mel_power(y, cfg), ref=1.0, amin=1e-10, top_db=None)
    ref = librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho").T  # (T, 13)
    got64, _ = Features(cfg)(torch.from_numpy(y)[None])
    assert got64.shape == (1,) + ref.shape
    np.testing.assert_allclose(got64[0].numpy(), ref, rtol=0, atol=1e-9)
    got32, _ = Features(cfg)(torch.from_numpy(y).float()[None])
    np.testing.assert_allclose(got32[0].numpy(), ref, rtol=0, atol=1e-3)


# -- batches, lengths and streaming -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_padded_batch_equals_each_utterance_alone(kind):
    cfg = FeatureConfig(kind=kind)
    feats = Features(cfg)
    rng = np.random.default_rng(1)
    lengths = [1000, 4321, 199, 200, 2999]
    S = max(lengths)
    wave = torch.from_numpy(rng.standard_normal((len(lengths), S))).float()  # padding holds noise too
    got, counts = feats(wave, torch.tensor(lengths))
    T = num_frames(S, cfg)
    assert got.shape == (len(lengths), T, cfg.dim)
    assert counts.tolist() == [num_frames(n, cfg) for n in lengths] == [11, 52, 0, 1, 35]
    for i, n in enumerate(lengths):
        c = counts[i]
        if n >= cfg.win_length:
            alone, _ = feats(wave[i : i + 1, :n])
            torch.testing.assert_close(got[i, :c], alone[0], rtol=1e-5, atol=1e-5)
        assert (got[i, c:] == 0).all()


def test_batch_shorter_than_a_window_raises_naming_win_length():
    feats = Features(FeatureConfig())
    with pytest.raises(DataError, match=r"win_length = 200 samples \(25 ms at 8000 Hz\), got 150"):
        feats(torch.zeros(3, 150))
    with pytest.raises(DataError, match=r"shape \(N, S\), got 1-D"):
        feats(torch.zeros(400))
    with pytest.raises(DataError, match=r"lengths: expected values in \[0, 400\]"):
        feats(torch.zeros(2, 400), torch.tensor([400, 401]))
    with pytest.raises(DataError, match=r"lengths: expected an integer tensor of shape \(2,\)"):
        feats(torch.zeros(2, 400), torch.tensor([400.0, 300.0]))


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_stream_in_random_chunks_equals_one_pass(kind):
    cfg = FeatureConfig(kind=kind)
    feats = Features(cfg)
    wave = noise_and_tones(cfg, seconds=0.7, seed=2).astype(np.float32)
    whole, _ = feats(torch.from_numpy(wave)[None])
    stream = FeatureStream(feats)
    rng = np.random.default_rng(3)
    for trial in range(3):
        stream.reset()
        got, at = [], 0
        while at < len(wave):
            size = int(rng.choice([0, 1, 2, 79, 80, 81, 199, 200, 333, 1200]))
            chunk = wave[at : at + size]
            got.append(stream.push(torch.from_numpy(chunk) if trial == 1 else chunk))
            at += size
        got = torch.cat(got)  # (T, F)
        assert got.shape == whole[0].shape
        torch.testing.assert_close(got, whole[0], rtol=1e-5, atol=1e-5)


def test_stream_with_a_hop_longer_than_the_window():
    cfg = FeatureConfig(win_ms=10.0, hop_ms=25.0)  # W 80, hop 200: samples between frames are skipped
    feats = Features(cfg)
    wave = noise_and_tones(cfg, seconds=0.3).astype(np.float32)
    whole, _ = feats(torch.from_numpy(wave)[None])
    stream = FeatureStream(feats)
    got = torch.cat([stream.push(wave[a : a + 37]) for a in range(0, len(wave), 37)])
    torch.testing.assert_close(got, whole[0], rtol=1e-5, atol=1e-5)


# -- normalisation and augmentation -------------------------------------------------------------


def test_utterance_norm_statistics_on_valid_frames_only():
    g = torch.Generator().manual_seed(4)
    feats = 3.0 + 2.0 * torch.randn(3, 50, 8, generator=g, dtype=torch.float64)
    lengths = torch.tensor([50, 17, 0])
    feats[1, 17:] = 1e6  # whatever is past the end must not count
    out = utterance_norm(feats, lengths)
    for i, n in enumerate(lengths.tolist()):
        valid = out[i, :n]
        if n:
            torch.testing.assert_close(valid.mean(0), torch.zeros(8, dtype=torch.float64), rtol=0, atol=1e-12)
            x = feats[i, :n]
            expected_var = x.var(0, unbiased=False) / (x.var(0, unbiased=False) + 1e-5)
            torch.testing.assert_close(valid.var(0, unbiased=False), expected_var, rtol=1e-10, atol=0)
            assert (valid.var(0, unbiased=False) - 1).abs().max() < 1e-4
        assert (out[i, n:] == 0).all()


def test_spec_augment_eval_is_identity():
    aug = SpecAugment().eval()
    feats = torch.randn(2, 30, 40)
    assert aug(feats, torch.tensor([30, 10])) is feats


def test_spec_augment_masks_within_lengths_and_within_widths():
    torch.manual_seed(5)
    aug = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=0.2).train()
    N, T, F = 64, 100, 40
    lengths = torch.randint(0, T + 1, (N,))
    lengths[0] = T
    valid = (torch.arange(T)[None, :] < lengths[:, None]).float()[..., None]  # (N, T, 1)
    feats = torch.ones(N, T, F) * valid
    out = aug(feats, lengths)
    masked_any = 0
    for i in range(N):
        n = int(lengths[i])
        assert (out[i, n:] == 0).all()
        v = out[i, :n]  # (n, F)
        if n == 0:
            continue
        zero_rows = (v == 0).all(1)  # frames masked
        zero_cols = (v == 0).all(0)  # channels masked
        # every zero lies on a masked frame or channel; everything else is untouched
        assert ((v == 0) == (zero_rows[:, None] | zero_cols[None, :])).all()
        assert int(zero_cols.sum()) <= 2 * 8
        if not zero_cols.all():
            assert int(zero_rows.sum()) <= 2 * math.floor(0.2 * n)
        masked_any += int(zero_rows.any()) + int(zero_cols.any())
    assert masked_any > N  # masks of width 0 happen, but most utterances get some


def test_spec_augment_is_reproducible_with_a_seed():
    aug = SpecAugment(time_width=0.2).train()
    feats, lengths = torch.randn(8, 60, 40), torch.full((8,), 60)
    torch.manual_seed(6)
    a = aug(feats, lengths)
    torch.manual_seed(6)
    b = aug(feats, lengths)
    c = aug(feats, lengths)
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.mark.parametrize("kwargs", [dict(freq_masks=-1), dict(freq_width=2.5), dict(time_width=1.5)])
def test_spec_augment_bad_settings(kwargs):
    with pytest.raises(ConfigError, match="SpecAugment"):
        SpecAugment(**kwargs)


# -- gradients, devices, imports ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_gradient_flows_to_the_wave(kind):
    feats = Features(FeatureConfig(kind=kind))
    wave = torch.randn(2, 600, requires_grad=True)
    out, _ = feats(wave, torch.tensor([600, 400]))
    out.square().sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()
    assert wave.grad[0].abs().sum() > 0
    assert (wave.grad[1, 400:] == 0).all()  # samples past the end do not reach the output


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_gradcheck(kind):
    cfg = FeatureConfig(kind=kind, sample_rate=1000, n_mels=8, n_mfcc=5, fmin=0.0)  # W 25, hop 10
    feats = Features(cfg)
    wave = torch.randn(2, 60, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: feats(w, torch.tensor([60, 45]))[0], (wave,))


def test_features_import_neither_librosa_nor_soundfile():
    code = (
        "import sys, grukit.apps.speech.features, grukit.data.audio; "
        "bad = [m for m in ('librosa', 'soundfile', 'scipy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_precision_follows_the_wave_and_ignores_autocast():
    cfg = FeatureConfig()
    feats = Features(cfg)
    y = noise_and_tones(cfg, seconds=0.2)
    ref = np.log(librosa_mel_power(y, cfg) + LOG_EPS).T  # (T, M)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = feats(torch.from_numpy(y).float()[None])
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=0, atol=1e-4)
    half, _ = feats(torch.from_numpy(y).to(torch.bfloat16)[None])  # computed in float32
    assert half.dtype == torch.float32
    np.testing.assert_allclose(half[0].numpy(), ref, rtol=0, atol=0.05)  # bfloat16 samples: 3 digits
    feats.double()  # constants stay float64
    got64, _ = feats(torch.from_numpy(y)[None])
    np.testing.assert_allclose(got64[0].numpy(), ref, rtol=0, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    cfg = FeatureConfig()
    feats = Features(cfg)
    wave = torch.from_numpy(noise_and_tones(cfg, seconds=0.4)).float()[None].repeat(2, 1)
    lengths = torch.tensor([3200, 2000])
    cpu, n_cpu = feats(wave, lengths)
    feats.cuda()
    gpu, n_gpu = feats(wave.cuda(), lengths.cuda())
    assert gpu.is_cuda and torch.equal(n_gpu.cpu(), n_cpu)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)
    stream = FeatureStream(feats)
    got = torch.cat([stream.push(wave[0, a : a + 123].numpy()) for a in range(0, 3200, 123)])
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), cpu[0], rtol=0, atol=1e-4)
    aug = SpecAugment(time_width=0.2).train()
    torch.manual_seed(7)
    a = aug(cpu, n_cpu)
    torch.manual_seed(7)
    b = aug(cpu.cuda(), n_cpu.cuda())
    assert torch.equal(a, b.cpu())
