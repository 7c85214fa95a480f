"""Audio files as mono float32 waves, resampling, and the two waveform perturbations that speech
training and robustness tests use.

* :func:`read_audio`: one file (WAV, FLAC, OGG, through soundfile) -> ``(wave, rate)``: channels
  mixed to mono by their mean, resampled when asked. A file that cannot be used (missing,
  unreadable, empty, silent, non-finite) raises :class:`AudioError` naming it.
* :func:`read_many`: many files; a bad file is skipped and reported, not fatal.
* :func:`resample`: polyphase resampling (``scipy.signal.resample_poly``) by ``rate / orig`` in
  lowest terms: upsample by ``up``, low-pass (Kaiser-windowed FIR), downsample by ``down``.
* :func:`add_noise`: white Gaussian noise at a signal-to-noise ratio,

      P(x) = mean(x^2),   n ~ N(0, sigma^2),   sigma^2 = P(wave) / 10^(snr_db / 10),

  so that ``10 log10(P(wave) / E[P(n)]) = snr_db``.
* :func:`change_speed`: speed perturbation (Ko et al., "Audio augmentation for speech
  recognition", Interspeech 2015; Kaldi's ``sox speed``): the wave resampled by ``1 / factor``
  and played at the original rate, so it lasts ``S / factor`` samples and every frequency
  (pitch included) is multiplied by ``factor``.

Shapes: S samples, C channels.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from grukit._extras import require
from grukit.data.series import DataError

__all__ = [
    "AudioError",
    "SILENCE",
    "FORMATS",
    "read_audio",
    "resample",
    "read_many",
    "add_noise",
    "change_speed",
]

SILENCE = 1e-4  # peak |sample| below this (of full scale, 1.0) is a silent file: ~ -80 dBFS
FORMATS = ("WAV", "FLAC", "OGG")  # the formats grukit reads (soundfile reads more; these are tested)
SPEED_DENOMINATOR = 100  # speed factors as p/q with q <= 100: 1.1 -> 11/10, short polyphase filters


class AudioError(DataError):
    """An audio file that cannot be used; the message names the file."""


def _soundfile():
    return require("soundfile", "speech", what="reading audio")


def read_audio(path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """The samples of the audio file ``path`` as a mono float32 wave (S,) in [-1, 1] and its rate.

    Channels are mixed to mono by their mean; with ``rate`` given and different from the file's,
    the wave is resampled (:func:`resample`) and ``rate`` is returned. Raises
    :class:`AudioError` (message starting with the path) for a missing file, one soundfile
    cannot read (corrupt, or not WAV / FLAC / OGG), no samples, non-finite samples, or silence
    (peak below :data:`SILENCE`).
    """
    if rate is not None:
        _check_rate("rate", rate)
    sf = _soundfile()
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: no such file")
    if p.is_dir():
        raise AudioError(f"{path}: a folder, not an audio file")
    try:
        data, orig = sf.read(str(p), dtype="float32", always_2d=True)  # (S, C)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
        raise AudioError(
            f"{path}: cannot read it as audio ({reason.rstrip('.')}); "
            f"expected a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} file"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty (0 samples)")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]  # (S,)
    if not np.isfinite(wave).all():
        bad = int(np.flatnonzero(~np.isfinite(wave))[0])
        raise AudioError(f"{path}: non-finite samples (the first at sample {bad})")
    peak = float(np.abs(wave).max())
    if peak < SILENCE:
        raise AudioError(
            f"{path}: silent (peak amplitude {peak:.3g} of full scale, expected at least {SILENCE:g})"
        )
    if rate is not None and rate != orig:
        wave, orig = resample(wave, orig, rate), rate
    return np.ascontiguousarray(wave, dtype=np.float32), int(orig)


def _check_rate(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise DataError(f"{name}: expected a positive integer sample rate (Hz), got {v!r}")


def resample(wave: np.ndarray, orig: int, rate: int) -> np.ndarray:
    """``wave`` (S,) sampled at ``orig`` Hz resampled to ``rate`` Hz: ceil(S * rate / orig)
    samples, float32 (polyphase FIR, ``scipy.signal.resample_poly``, with ``up / down`` =
    ``rate / orig`` in lowest terms). The same array's float32 copy when the rates are equal."""
    _check_rate("orig", orig)
    _check_rate("rate", rate)
    wave = _wave(wave)
    if orig == rate:
        return wave.copy()
    g = math.gcd(int(orig), int(rate))
    return _poly(wave, int(rate) // g, int(orig) // g)


def _wave(wave, dtype=np.float32) -> np.ndarray:
    x = np.asarray(wave, dtype=dtype)
    if x.ndim != 1:
        raise DataError(f"wave: expected 1-D samples (S,), got shape {x.shape}")
    return x


def _poly(wave: np.ndarray, up: int, down: int) -> np.ndarray:
    signal = require("scipy.signal", "speech", what="resampling audio")
    return np.asarray(signal.resample_poly(wave, up, down), dtype=np.float32)  # (ceil(S up / down),)


def read_many(paths, rate: int, *, log=None) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Every file of ``paths`` read at ``rate`` (:func:`read_audio`), skipping the bad ones.

    Returns ``(waves, kept, skipped)``: the waves of the files read, their indices in
    ``paths``, and ``(path, reason)`` for each file skipped. When some were skipped, says so
    through ``log`` (one line; default: printed to stderr). Raises :class:`AudioError` when
    every file fails.
    """
    _check_rate("rate", rate)
    paths = list(paths)
    waves, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            wave, _ = read_audio(path, rate)
        except AudioError as exc:
            skipped.append((str(path), str(exc)))
            continue
        waves.append(wave)
        kept.append(i)
    if skipped and not waves:
        raise AudioError(f"none of the {len(paths)} files could be read, e.g. {skipped[0][1]}")
    if skipped:
        (log or _stderr)(
            f"skipped {len(skipped)} of {len(paths)} files that could not be read, e.g. {skipped[0][1]}"
        )
    return waves, kept, skipped


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def add_noise(wave, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``wave`` (S,) plus white Gaussian noise at ``snr_db`` dB below its power (module
    docstring), float32. A wave of zeros gets no noise (its power is 0)."""
    if (
        isinstance(snr_db, bool)
        or not isinstance(snr_db, (int, float, np.floating, np.integer))
        or not math.isfinite(snr_db)
    ):
        raise DataError(f"snr_db: expected a finite number of decibels, got {snr_db!r}")
    x = _wave(wave, np.float64)  # (S,)
    power = float(np.mean(x * x)) if x.size else 0.0
    sigma = math.sqrt(power / 10.0 ** (float(snr_db) / 10.0))
    return (x + sigma * rng.standard_normal(x.shape)).astype(np.float32)  # (S,)


def change_speed(wave, factor: float) -> np.ndarray:
    """``wave`` (S,) played ``factor`` times faster (module docstring): about ``S / factor``
    samples, float32, frequencies times ``factor``. ``factor`` is taken as the nearest fraction
    ``p / q`` with ``q <= 100`` (1.1 -> 11/10) and the wave resampled by ``q / p``."""
    if (
        isinstance(factor, bool)
        or not isinstance(factor, (int, float, np.floating, np.integer))
        or not math.isfinite(factor)
        or factor <= 0
    ):
        raise DataError(f"factor: expected a positive speed factor (1.1 = 10% faster), got {factor!r}")
    f = Fraction(float(factor)).limit_denominator(SPEED_DENOMINATOR)
    if f == 0:
        raise DataError(f"factor: expected a speed factor of at least 1/{SPEED_DENOMINATOR}, got {factor!r}")
    wave = _wave(wave)
    if f == 1:
        return wave.copy()
    return _poly(wave, f.denominator, f.numerator)  # (ceil(S q / p),)
