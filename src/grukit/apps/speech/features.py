"""Acoustic features in torch: log-mel filterbank energies or MFCCs, computed batched inside the
model (so they run on its device, in its forward), per-utterance normalisation, SpecAugment
masking, and the same features for audio that arrives in chunks.

Shapes: N utterances, S samples, W = win_length, n_fft FFT size, K = n_fft / 2 + 1 frequency
bins, T frames, M mel bands, F features per frame (M, or n_mfcc for MFCCs).

Frame t covers samples ``[t hop, t hop + W)`` (no centring, no padding), so an utterance of S
samples has ``T = 1 + (S - W) // hop`` frames (0 when S < W):

    x_t[m] = w[m] s[t hop + m],  m < W         w: periodic Hann of length W
    P_t[k] = |sum_m x_t[m] exp(-2 pi i k (m + a) / n_fft)|^2,  k < K   (a = (n_fft - W) // 2:
             the window zero-padded to n_fft and centred, as librosa does; a changes only phase)
    E_t    = P_t B                                    B (K, M): Slaney mel filterbank
    logmel = ln(E_t + LOG_EPS)
    mfcc   = (10 log10(max(E_t, 1e-10)) C)[:n_mfcc]   C (M, M): orthonormal DCT-II

The Slaney mel scale is linear below 1 kHz and logarithmic above,

    mel(f) = 3 f / 200                          f < 1000 Hz
           = 15 + 27 ln(f / 1000) / ln(6.4)     f >= 1000 Hz,

with M + 2 edges equally spaced in mel between fmin and fmax; filter i is the triangle on
edges (i, i + 1, i + 2) scaled to area-normalise, ``2 / (f_{i+2} - f_i)`` (librosa's
``filters.mel(htk=False, norm="slaney")``, the defaults). The log-mel matches
``np.log(librosa.feature.melspectrogram(..., center=False) + LOG_EPS)`` of the wave padded by
``a`` zeros in front (librosa's frames are n_fft long, with the window in their middle), and
the MFCC matches ``librosa.feature.mfcc(S=power_to_db(mel, ref=1, amin=1e-10, top_db=None))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from grukit.data.series import DataError
from grukit.train.config import ConfigError

__all__ = [
    "LOG_EPS",
    "AMIN",
    "KINDS",
    "FeatureConfig",
    "num_frames",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "dct_matrix",
    "Features",
    "utterance_norm",
    "SpecAugment",
    "FeatureStream",
]

LOG_EPS = 1e-6  # log-mel floor: about 60 dB below a full-scale tone's band energy; keeps silence finite
AMIN = 1e-10  # the MFCC's power floor (librosa.power_to_db's amin): -100 dB
KINDS = ("logmel", "mfcc")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    )


@dataclass(frozen=True)
class FeatureConfig:
    """The acoustic features. Defaults are the usual ones for speech recognition.

    Attributes:
        kind: "logmel" (natural log of mel band energies) or "mfcc" (their cepstrum).
        sample_rate: Hz of the audio given (8 kHz: telephone speech and FSDD).
        win_ms: window length: 25 ms, long enough to resolve the pitch harmonics' envelope,
            short enough that speech is stationary within it.
        hop_ms: frame step: 10 ms, 100 frames a second.
        n_mels: mel bands: 40, the usual count for 8-16 kHz speech.
        n_mfcc: cepstral coefficients kept (kind="mfcc"): 13, the classic count.
        fmin: lowest band edge (Hz): 20 Hz, below hearing and mains hum.
        fmax: highest band edge (Hz); None: the Nyquist frequency, sample_rate / 2.
    """

    kind: str = "logmel"
    sample_rate: int = 8000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 40
    n_mfcc: int = 13
    fmin: float = 20.0
    fmax: float | None = None

    def __post_init__(self) -> None:
        def bad(field: str, expected: str, given) -> ConfigError:
            return ConfigError(f"FeatureConfig.{field}: expected {expected}, got {given!r}")

        if self.kind not in KINDS:
            raise bad("kind", "'logmel' or 'mfcc'", self.kind)
        if not _is_int(self.sample_rate) or self.sample_rate <= 0:
            raise bad("sample_rate", "a positive integer (Hz)", self.sample_rate)
        for name in ("win_ms", "hop_ms"):
            v = getattr(self, name)
            if not _is_real(v) or v <= 0:
                raise bad(name, "a positive number of milliseconds", v)
        if self.win_length < 2:
            raise bad(
                "win_ms",
                f"a window of at least 2 samples ({2000 / self.sample_rate:g} ms at {self.sample_rate} Hz)",
                self.win_ms,
            )
        if self.hop_length < 1:
            raise bad(
                "hop_ms",
                f"a step of at least 1 sample ({1000 / self.sample_rate:g} ms at {self.sample_rate} Hz)",
                self.hop_ms,
            )
        for name in ("n_mels", "n_mfcc"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise bad(name, "a positive integer", v)
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise bad(
                "n_mfcc", f"at most n_mels = {self.n_mels} (the cepstrum of {self.n_mels} bands)", self.n_mfcc
            )
        nyquist = self.sample_rate / 2
        if not _is_real(self.fmin) or not 0 <= self.fmin < nyquist:
            raise bad("fmin", f"a frequency in [0, {nyquist:g}) Hz", self.fmin)
        if self.fmax is not None and (not _is_real(self.fmax) or not self.fmin < self.fmax <= nyquist):
            raise bad("fmax", f"None or a frequency in ({self.fmin:g}, {nyquist:g}] Hz", self.fmax)

    @property
    def win_length(self) -> int:
        """Window length in samples, W."""
        return int(round(self.win_ms * self.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        """Frame step in samples."""
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def n_fft(self) -> int:
        """FFT size: the smallest power of 2 >= W."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def dim(self) -> int:
        """Features per frame, F."""
        return self.n_mels if self.kind == "logmel" else self.n_mfcc

    @property
    def upper(self) -> float:
        """fmax resolved (Hz)."""
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)


def num_frames(samples, cfg: FeatureConfig):
    """Frames in ``samples`` samples: 0 when fewer than W, else ``1 + (samples - W) // hop``.
    An int for an int; elementwise for a tensor or array of lengths (same type back)."""
    W, hop = cfg.win_length, cfg.hop_length
    if isinstance(samples, Tensor):
        return torch.where(
            samples < W, torch.zeros_like(samples), 1 + torch.div(samples - W, hop, rounding_mode="floor")
        )
    if isinstance(samples, np.ndarray):
        return np.where(samples < W, 0, 1 + (samples - W) // hop)
    samples = int(samples)
    return 0 if samples < W else 1 + (samples - W) // hop


# -- the fixed matrices (numpy float64) -------------------------------------------------------

_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15
_LOGSTEP = math.log(6.4) / 27.0  # ln(Hz ratio) per mel above 1 kHz


def hz_to_mel(f) -> np.ndarray:
    """Slaney mel of frequencies ``f`` (Hz), float64 array."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(
        f >= _MIN_LOG_HZ,
        _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
        f / _F_SP,
    )


def mel_to_hz(m) -> np.ndarray:
    """Frequencies (Hz) of Slaney mels ``m``, float64 array: the inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """The (K, M) float64 matrix B taking a power spectrum to mel band energies (module
    docstring): triangles on M + 2 edges equally spaced in Slaney mel, area-normalised."""
    K, M = cfg.n_fft // 2 + 1, cfg.n_mels
    bins = np.linspace(0.0, cfg.sample_rate / 2, K)  # (K,) Hz of each FFT bin
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.upper), M + 2))  # (M + 2,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rise = (bins[None, :] - lo) / (mid - lo)  # (M, K)
    fall = (hi - bins[None, :]) / (hi - mid)  # (M, K)
    tri = np.maximum(0.0, np.minimum(rise, fall))  # (M, K)
    return (tri * (2.0 / (hi - lo))).T  # (K, M)


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_in, n_out) orthonormal DCT-II: ``y = x C`` with
    ``C[m, k] = sqrt(2 / n_in) cos(pi k (2m + 1) / (2 n_in))``, column 0 times ``1 / sqrt(2)``."""
    m = np.arange(n_in)[:, None]  # (n_in, 1)
    k = np.arange(n_out)[None, :]  # (1, n_out)
    C = math.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * m + 1) / (2 * n_in))  # (n_in, n_out)
    C[:, 0] /= math.sqrt(2.0)
    return C


def _window(cfg: FeatureConfig) -> np.ndarray:
    """Periodic Hann of length W zero-padded, centred, to n_fft: (n_fft,) float64."""
    W, n_fft = cfg.win_length, cfg.n_fft
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(W) / W)  # (W,)
    a = (n_fft - W) // 2
    return np.pad(w, (a, n_fft - W - a))


def _check_lengths(lengths, N: int, limit: int, what: str, device) -> Tensor:
    if (
        not isinstance(lengths, Tensor)
        or lengths.dim() != 1
        or lengths.shape[0] != N
        or lengths.dtype.is_floating_point
        or lengths.dtype.is_complex
        or lengths.dtype == torch.bool
    ):
        got = (
            f"{tuple(lengths.shape)} {lengths.dtype}"
            if isinstance(lengths, Tensor)
            else type(lengths).__name__
        )
        raise DataError(f"lengths: expected an integer tensor of shape ({N},), got {got}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if N and (int(lengths.min()) < 0 or int(lengths.max()) > limit):
        raise DataError(
            f"lengths: expected values in [0, {limit}] ({what}), got "
            f"[{int(lengths.min())}, {int(lengths.max())}]"
        )
    return lengths


def _valid(lengths: Tensor, T: int) -> Tensor:
    """(N,) counts -> (N, T) True on each row's first counts[i] steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


# -- the module ---------------------------------------------------------------------------------


class Features(nn.Module):
    """Log-mel or MFCC features of a batch of waves (module docstring), differentiable.

    ``forward(wave (N, S) float, lengths (N,) long | None)`` -> ``(feats (N, T, F), counts (N,))``
    with ``T = num_frames(S)`` and ``counts = num_frames(lengths)``: frames past each
    utterance's end are 0. Float64 waves give float64 features; any other float type is computed
    in float32 (the FFT needs it), outside autocast.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        if not isinstance(cfg, FeatureConfig):
            raise ConfigError(f"Features: expected a FeatureConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        # float64 constants (rebuilt from cfg, not saved), cast to the wave's precision per call
        self.register_buffer("window", torch.from_numpy(_window(cfg)), persistent=False)  # (n_fft,)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(cfg)), persistent=False)  # (K, M)
        dct = dct_matrix(cfg.n_mels, cfg.n_mfcc) if cfg.kind == "mfcc" else np.zeros((cfg.n_mels, 0))
        self.register_buffer("dct", torch.from_numpy(dct), persistent=False)  # (M, n_mfcc)

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"kind={c.kind!r}, sample_rate={c.sample_rate}, win_length={c.win_length}, "
            f"hop_length={c.hop_length}, n_fft={c.n_fft}, dim={c.dim}"
        )

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        if not isinstance(wave, Tensor) or wave.dim() != 2 or not wave.dtype.is_floating_point:
            got = f"{wave.dim()}-D {wave.dtype}" if isinstance(wave, Tensor) else type(wave).__name__
            raise DataError(f"wave: expected a float tensor of shape (N, S), got {got}")
        N, S = wave.shape
        W, hop, n_fft = cfg.win_length, cfg.hop_length, cfg.n_fft
        if S < W:
            raise DataError(
                f"wave: expected at least one window of win_length = {W} samples "
                f"({cfg.win_ms:g} ms at {cfg.sample_rate} Hz), got {S} samples"
            )
        lengths = (
            torch.full((N,), S, dtype=torch.long, device=wave.device)
            if lengths is None
            else _check_lengths(lengths, N, S, "samples in wave", wave.device)
        )
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = wave.to(dtype)
            a = (n_fft - W) // 2
            x = F_.pad(x, (a, n_fft - W - a))  # (N, S + n_fft - W): frame t's window on s[t hop:t hop + W]
            X = torch.stft(
                x, n_fft, hop_length=hop, window=self.window.to(dtype), center=False, return_complex=True
            )  # (N, K, T)
            P = X.real.square() + X.imag.square()  # (N, K, T) power
            E = P.transpose(1, 2) @ self.mel.to(dtype)  # (N, T, M)
            if cfg.kind == "logmel":
                f = torch.log(E + LOG_EPS)  # (N, T, M)
            else:
                db = 10.0 * torch.log10(E.clamp(min=AMIN))  # (N, T, M)
                f = db @ self.dct.to(dtype)  # (N, T, n_mfcc)
        counts = num_frames(lengths, cfg)  # (N,)
        return f * _valid(counts, f.shape[1])[..., None], counts


def utterance_norm(feats: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Each utterance's features to mean 0 and variance 1, per feature, over its valid frames:
    ``(f - mean) / sqrt(var + eps)`` (var the biased variance), padded frames left at 0.
    ``feats`` (N, T, F), ``lengths`` (N,) -> (N, T, F)."""
    if not isinstance(feats, Tensor) or feats.dim() != 3:
        got = f"{feats.dim()}-D" if isinstance(feats, Tensor) else type(feats).__name__
        raise DataError(f"feats: expected a tensor of shape (N, T, F), got {got}")
    N, T, _ = feats.shape
    lengths = _check_lengths(lengths, N, T, "frames in feats", feats.device)
    valid = _valid(lengths, T)[..., None].to(feats.dtype)  # (N, T, 1)
    n = lengths.clamp(min=1).to(feats.dtype)[:, None, None]  # (N, 1, 1)
    mean = (feats * valid).sum(1, keepdim=True) / n  # (N, 1, F)
    centred = (feats - mean) * valid  # (N, T, F)
    var = centred.square().sum(1, keepdim=True) / n  # (N, 1, F)
    return centred / torch.sqrt(var + eps)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., "SpecAugment", Interspeech 2019), without time
    warping. In training mode, for each utterance i with n_i valid frames of F features:

        freq_masks times:  f ~ U{0, ..., min(freq_width, F)},  f0 ~ U{0, ..., F - f}:
                           channels [f0, f0 + f) set to 0
        time_masks times:  t ~ U{0, ..., floor(time_width n_i)},  t0 ~ U{0, ..., n_i - t}:
                           frames [t0, t0 + t) set to 0

    (0 is the mean after normalisation). Draws from torch's global generator on the CPU, so
    ``torch.manual_seed`` reproduces a mask on any device. Identity in eval mode.
    ``forward(feats (N, T, F), lengths (N,))`` -> (N, T, F).
    """

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: float = 0.05
    ) -> None:
        super().__init__()
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks)):
            if not _is_int(v) or v < 0:
                raise ConfigError(f"SpecAugment.{name}: expected a non-negative integer, got {v!r}")
        if not _is_real(time_width) or not 0 <= time_width <= 1:
            raise ConfigError(
                f"SpecAugment.time_width: expected a fraction of the frames in [0, 1], got {time_width!r}"
            )
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), float(time_width)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width:g}"
        )

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        if not isinstance(feats, Tensor) or feats.dim() != 3:
            got = f"{feats.dim()}-D" if isinstance(feats, Tensor) else type(feats).__name__
            raise DataError(f"feats: expected a tensor of shape (N, T, F), got {got}")
        N, T, F = feats.shape
        lengths = _check_lengths(lengths, N, T, "frames in feats", feats.device)
        if not self.training:
            return feats
        n = lengths.cpu()  # (N,)
        # channel masks: (N, freq_masks) widths and starts -> (N, F)
        u = torch.rand(N, self.freq_masks, 2)
        fw = min(self.freq_width, F)
        width = (u[..., 0] * (fw + 1)).floor().clamp(max=fw)  # (N, fm) in 0..fw
        start = (u[..., 1] * (F - width + 1)).floor().clamp(max=F - width)  # (N, fm) in 0..F-width
        ch = torch.arange(F)
        fmask = ((ch >= start[..., None]) & (ch < (start + width)[..., None])).any(1)  # (N, F)
        # frame masks: (N, time_masks) -> (N, T), within each utterance's n_i frames
        u = torch.rand(N, self.time_masks, 2)
        tw = (self.time_width * n.double()).floor()[:, None]  # (N, 1)
        width = (u[..., 0] * (tw + 1)).floor().clamp(max=tw)  # (N, tm) in 0..tw
        room = n[:, None].double() - width  # (N, tm)
        start = (u[..., 1] * (room + 1)).floor().clamp(max=room)  # (N, tm) in 0..n-width
        fr = torch.arange(T)
        tmask = ((fr >= start[..., None]) & (fr < (start + width)[..., None])).any(1)  # (N, T)
        mask = (fmask[:, None, :] | tmask[:, :, None]).to(feats.device)  # (N, T, F)
        return feats.masked_fill(mask, 0.0)


class FeatureStream:
    """Features of audio that arrives in chunks, equal to Features of the whole signal.

    Keeps the samples not yet in a complete frame; :meth:`push` returns the frames that a chunk
    completes (T_new, F), float32 (as Features of a float32 wave), on the features' device (at
    :meth:`reset`), without gradients.
    """

    def __init__(self, features: Features) -> None:
        if not isinstance(features, Features):
            raise ConfigError(f"FeatureStream: expected a Features module, got {type(features).__name__}")
        self.features = features
        self.reset()

    def reset(self) -> None:
        """Forget the samples held: the next push starts a new signal."""
        self._held = torch.zeros(0, device=self.features.window.device)  # (S_held,) float32
        self._skip = 0  # samples still to drop before the next frame starts (hop > W only)

    @torch.no_grad()
    def push(self, chunk) -> Tensor:
        """Read ``chunk`` (S_chunk,) (numpy or torch, any length including 0); the frames it
        completes, (T_new, F)."""
        x = (
            chunk.detach()
            if isinstance(chunk, Tensor)
            else torch.from_numpy(np.asarray(chunk, dtype=np.float32))
        )
        if x.dim() != 1:
            raise DataError(f"chunk: expected 1-D samples (S_chunk,), got shape {tuple(x.shape)}")
        x = x.to(device=self._held.device, dtype=torch.float32)
        if self._skip:
            drop = min(self._skip, len(x))
            x, self._skip = x[drop:], self._skip - drop
        held = torch.cat([self._held, x])  # (S_held,)
        cfg = self.features.cfg
        n = num_frames(len(held), cfg)
        if n == 0:
            self._held = held
            return held.new_zeros(0, cfg.dim)
        f, _ = self.features(held[None, : (n - 1) * cfg.hop_length + cfg.win_length])  # (1, n, F)
        self._held = held[n * cfg.hop_length :].clone()
        self._skip = max(0, n * cfg.hop_length - len(held))
        return f[0]
