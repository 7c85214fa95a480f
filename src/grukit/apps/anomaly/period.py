"""The signal mode's window chosen from the data: the dominant period of the autocorrelation.

For a standardised, linearly detrended channel ``z`` of ``n`` points the (biased) sample
autocorrelation is

    r(k) = sum_{t < n - k} z_t z_{t+k} / sum_t z_t^2,

computed for all lags at once through the FFT. Averaged over channels, the dominant period is the
first lag ``k`` in ``[lo, hi]`` whose local maximum of ``r`` reaches ``NEAR_TOP`` of the highest
peak: multiples of the period make peaks about as high (the biased estimate shrinks them by only
``(n - k) / n``) and noise may lift one above the period's own. A peak counts when it reaches
``min_acf`` and rises ``PROMINENCE`` above the lowest ``r`` at smaller lags (the wiggles of a
slowly decaying autocorrelation are no period). ``hi`` is at most ``n // 3``: three cycles must
be visible. A signal without such a peak (noise, a random walk, a trend) has no period.

The window is then the smallest multiple of the period that reaches ``MIN_WINDOW`` points (a few
points are no shape to learn), at most ``MAX_WINDOW``; without a period it is ``FALLBACK``; and it
is never longer than the training data allow (``limit``).

Shapes: a signal (n, C).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dominant_period", "window_from_period", "MIN_WINDOW", "MAX_WINDOW", "FALLBACK"]

MIN_WINDOW = 16
MAX_WINDOW = 256
FALLBACK = 64  # no period: half the old fixed default, room for short recordings
PROMINENCE = 0.1  # a peak must rise this far above the lowest autocorrelation before it
NEAR_TOP = 0.9  # the first peak within this share of the highest: the period, not a multiple


def dominant_period(x: np.ndarray, *, lo: int = 2, hi: int | None = None, min_acf: float = 0.2) -> int | None:
    """The dominant period of ``x`` (n,) or (n, C) in points, or None (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = len(x)
    hi = n // 3 if hi is None else min(hi, n // 3)
    if hi < max(lo, 2):
        return None
    t = np.arange(n) - (n - 1) / 2
    x = x - x.mean(0)
    x = x - np.outer(t, (t @ x) / (t @ t))  # the least-squares line removed
    power = (x**2).sum(0)
    x = x[:, power > 1e-12 * n]  # constant channels carry no period
    if x.shape[1] == 0:
        return None
    f = np.fft.rfft(x, n=2 * n, axis=0)  # zero-padded: a linear, not circular, correlation
    r = np.fft.irfft(f * f.conj(), n=2 * n, axis=0)[: hi + 2]  # (hi + 2, C)
    r = (r / r[0]).mean(1)  # (hi + 2,)
    k = np.arange(max(lo, 1), hi + 1)
    dip = np.minimum.accumulate(r)[k - 1]  # the lowest autocorrelation below each lag
    peak = (r[k] >= r[k - 1]) & (r[k] > r[k + 1]) & (r[k] >= min_acf) & (r[k] - dip >= PROMINENCE)
    if not peak.any():
        return None
    k = k[peak]
    return int(k[np.argmax(r[k] >= NEAR_TOP * r[k].max())])  # the first of the near-highest peaks


def window_from_period(period: int | None, limit: int) -> int:
    """The window for a signal of dominant period ``period`` (None: none found), at most
    ``limit`` points (see the module docstring)."""
    if period is None:
        w = FALLBACK
    else:
        w = min(period * -(-MIN_WINDOW // period), MAX_WINDOW)  # ceil(MIN_WINDOW / period) periods
    return int(max(1, min(w, limit)))
