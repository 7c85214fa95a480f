"""grukit.data.audio: reading files (against the samples written), resampling and speed change
(against the frequency and amplitude of a pure tone), noise at a signal-to-noise ratio (measured),
and every way a file can be unusable."""

import math

import numpy as np
import pytest
import soundfile as sf

from grukit.data.audio import SILENCE, AudioError, add_noise, change_speed, read_audio, read_many, resample
from grukit.data.series import DataError


def tone(freq, rate, seconds=1.0, amp=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave, rate):
    """Frequency of the largest spectral peak, to within rate / (16 len) Hz (Hann window, FFT
    zero-padded 16 times)."""
    n = 16 * len(wave)
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave)), n=n))
    return np.argmax(spec) * rate / n


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# -- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subtype, tol", [("PCM_U8", 1 / 128), ("PCM_16", 1 / 2**15), ("PCM_24", 1 / 2**23), ("FLOAT", 0.0)]
)
def test_wav_sample_formats_read_as_written(tmp_path, subtype, tol):
    wave = tone(300, 8000, 0.25)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, wave, 8000, subtype=subtype)
    got, rate = read_audio(path)
    assert rate == 8000 and got.dtype == np.float32 and got.shape == wave.shape
    np.testing.assert_allclose(got, wave, rtol=0, atol=tol + 1e-7)


def test_pcm16_values_are_the_integers_over_32768(tmp_path):
    ints = np.array([16384, -16384, 32767, -32768, 1, 0], dtype=np.int16)
    path = tmp_path / "ints.wav"
    sf.write(path, ints, 16000, subtype="PCM_16")
    got, rate = read_audio(path)
    assert rate == 16000
    np.testing.assert_array_equal(got, np.array([0.5, -0.5, 32767 / 32768, -1.0, 1 / 32768, 0.0], np.float32))


def test_stereo_is_mixed_to_the_channel_mean(tmp_path):
    left, right = tone(200, 8000, 0.2, 0.6), tone(700, 8000, 0.2, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    got, _ = read_audio(path)
    np.testing.assert_allclose(got, (left.astype(np.float64) + right) / 2, rtol=0, atol=1e-7)


def test_flac_round_trip_is_lossless(tmp_path):
    wave = tone(440, 16000, 0.3)
    path = tmp_path / "a.flac"
    sf.write(path, wave, 16000, subtype="PCM_16")
    got, rate = read_audio(path)
    assert rate == 16000
    np.testing.assert_allclose(got, wave, rtol=0, atol=1 / 2**15)


def test_ogg_round_trip_is_close(tmp_path):
    wave = tone(440, 16000, 1.0)
    path = tmp_path / "a.ogg"
    sf.write(path, wave, 16000)  # Vorbis: lossy
    got, rate = read_audio(path)
    assert rate == 16000 and abs(len(got) - len(wave)) <= 16
    n = min(len(got), len(wave))
    assert rms(got[:n] - wave[:n]) < 0.05 * rms(wave)
    assert abs(peak_hz(got, rate) - 440) < 1.0


def test_read_audio_resamples_to_the_rate_asked(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, tone(440, 16000, 1.0), 16000, subtype="FLOAT")
    got, rate = read_audio(path, 8000)
    assert rate == 8000 and len(got) == 8000
    assert abs(peak_hz(got, 8000) - 440) < 0.5


# -- resampling ---------------------------------------------------------------------------------


def test_downsampled_tone_keeps_frequency_length_and_amplitude():
    wave = tone(440, 16000, 1.0, amp=0.5)
    out = resample(wave, 16000, 8000)
    assert out.dtype == np.float32 and len(out) == 8000
    assert abs(peak_hz(out, 8000) - 440) < 0.5
    middle = out[400:-400]  # away from the filter's edge transients
    assert rms(middle) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    # sample by sample: the 8 kHz tone itself (same phase: resample_poly is zero-phase)
    np.testing.assert_allclose(middle, tone(440, 8000, 1.0)[400:-400], rtol=0, atol=0.01)


def test_upsampled_tone_keeps_frequency_length_and_amplitude():
    out = resample(tone(1000, 8000, 1.0, amp=0.3), 8000, 16000)
    assert len(out) == 16000
    assert abs(peak_hz(out, 16000) - 1000) < 0.5
    np.testing.assert_allclose(out[800:-800], tone(1000, 16000, 1.0, amp=0.3)[800:-800], rtol=0, atol=0.01)


def test_resample_to_a_non_multiple_rate_has_ceil_length():
    out = resample(np.ones(441, np.float32), 44100, 16000)  # up 160, down 441
    assert len(out) == math.ceil(441 * 160 / 441)


def test_resample_equal_rates_is_identity():
    wave = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    out = resample(wave, 8000, 8000)
    np.testing.assert_array_equal(out, wave)
    assert out is not wave


@pytest.mark.parametrize("orig, rate", [(0, 8000), (8000, -1), (8000.0, 16000), (True, 8000)])
def test_resample_rejects_bad_rates(orig, rate):
    with pytest.raises(DataError, match="positive integer sample rate"):
        resample(np.zeros(10, np.float32), orig, rate)


# -- unusable files -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as e:
        read_audio(path)
    assert str(e.value).startswith(str(path))


def test_corrupt_file(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as e:
        read_audio(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "cannot read" in msg and "WAV, FLAC or OGG" in msg


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not samples\n" * 20)
    with pytest.raises(AudioError, match="Format not recognised") as e:
        read_audio(path)
    assert str(e.value).startswith(str(path))


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty") as e:
        read_audio(path)
    assert str(e.value).startswith(str(path))


def test_silent_wav_names_its_peak(tmp_path):
    path = tmp_path / "quiet.wav"
    wave = np.zeros(800, np.float32)
    wave[10] = 5e-5  # below SILENCE
    sf.write(path, wave, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"silent \(peak amplitude 5e-05") as e:
        read_audio(path)
    assert str(e.value).startswith(str(path))
    wave[10] = 2 * SILENCE  # just loud enough
    sf.write(path, wave, 8000, subtype="FLOAT")
    assert read_audio(path)[0][10] == pytest.approx(2 * SILENCE)


def test_non_finite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    wave = tone(300, 8000, 0.1)
    wave[7] = np.nan
    sf.write(path, wave, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite samples .*sample 7") as e:
        read_audio(path)
    assert str(e.value).startswith(str(path))


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        read_audio(tmp_path)


# -- many files ---------------------------------------------------------------------------------


def test_read_many_skips_and_reports_a_bad_file(tmp_path):
    paths = []
    for i, f in enumerate([300, 500, 700]):
        p = tmp_path / f"{i}.wav"
        sf.write(p, tone(f, 16000, 0.1), 16000, subtype="PCM_16")
        paths.append(p)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    paths.insert(1, bad)
    lines = []
    waves, kept, skipped = read_many(paths, 8000, log=lines.append)
    assert kept == [0, 2, 3] and len(waves) == 3
    assert all(len(w) == 800 for w in waves)
    assert [p for p, _ in skipped] == [str(bad)] and skipped[0][1].startswith(str(bad))
    assert lines == [f"skipped 1 of 4 files that could not be read, e.g. {skipped[0][1]}"]


def test_read_many_logs_to_stderr_by_default(tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, tone(300, 8000, 0.1), 8000)
    read_many([good, tmp_path / "missing.wav"], 8000)
    assert "skipped 1 of 2 files" in capsys.readouterr().err
    read_many([good], 8000)
    assert capsys.readouterr().err == ""


def test_read_many_all_bad_raises(tmp_path):
    with pytest.raises(AudioError, match=r"none of the 2 files could be read, e\.g\. .*a\.wav: no such file"):
        read_many([tmp_path / "a.wav", tmp_path / "b.wav"], 8000)


# -- perturbations ------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [20.0, 5.0, -3.0])
def test_add_noise_measured_snr(snr_db):
    wave = tone(440, 8000, 20.0, amp=0.3)  # 160k samples
    noisy = add_noise(wave, snr_db, np.random.default_rng(2))
    assert noisy.dtype == np.float32 and noisy.shape == wave.shape
    noise = noisy.astype(np.float64) - wave
    measured = 10 * math.log10(rms(wave) ** 2 / rms(noise) ** 2)
    assert abs(measured - snr_db) < 0.2
    assert abs(np.mean(noise)) < 5 * rms(noise) / math.sqrt(len(noise))  # zero mean


def test_add_noise_is_reproducible_and_leaves_zeros_alone():
    wave = tone(440, 8000, 0.1)
    a = add_noise(wave, 10, np.random.default_rng(3))
    b = add_noise(wave, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(add_noise(np.zeros(50, np.float32), 10, np.random.default_rng(3)), 0)
    with pytest.raises(DataError, match="snr_db"):
        add_noise(wave, float("nan"), np.random.default_rng(3))


def test_change_speed_shortens_and_raises_pitch():
    rate = 8000
    wave = tone(440, rate, 1.0)
    fast = change_speed(wave, 1.1)
    assert fast.dtype == np.float32 and len(fast) == math.ceil(8000 * 10 / 11)
    assert abs(peak_hz(fast, rate) - 484.0) < 1.0
    slow = change_speed(wave, 0.9)
    assert len(slow) == math.ceil(8000 * 10 / 9)
    assert abs(peak_hz(slow, rate) - 396.0) < 1.0
    np.testing.assert_array_equal(change_speed(wave, 1.0), wave)


@pytest.mark.parametrize("factor", [0.0, -1.1, float("inf"), 0.001])
def test_change_speed_rejects_bad_factors(factor):
    with pytest.raises(DataError, match="factor"):
        change_speed(np.zeros(10, np.float32), factor)
