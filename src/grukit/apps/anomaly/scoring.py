"""The three ways a detector's networks turn data into errors, streamed in chunks.

- whole sequences: each sequence's mean squared reconstruction error;
- signal windows (autoencoder): windows every ``stride`` points reconstructed, a point's error
  aggregated over the windows covering it ("window", "point" or "min"; at the signal's ends over
  as many windows as an interior point has, so the ends hold no extreme scores of their own);
- signal forecasts (forecaster): the GRU carries its state through the signal; a point's error
  is the mean squared error of the predictions made for it 1 .. ``horizon`` steps earlier.

Signal errors are then smoothed by a causal moving average. The networks run in float32 (the
standardised data are cast once); errors are accumulated in float64. Chunking changes only which
windows or points share a batch, never the order in which a point's errors are summed.

Shapes: K networks; a signal (n, C) or sequences (N, T, C); B windows of W points; Hz the horizon.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from grukit.apps.anomaly.config import DetectorConfig
from grukit.data.series import DataError

__all__ = [
    "member_errors",
    "sequence_errors",
    "window_errors",
    "over_windows",
    "forecast_errors",
    "ForecastErrors",
    "forecast_step",
    "causal_smooth",
]


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _scoring_bar(progress: bool, **kw):
    """A tqdm progress bar for scoring (tqdm imported only when shown), or one that does nothing."""
    if not progress:
        return _NoBar()
    from grukit._extras import require

    return require("tqdm.auto", "apps", what="progress bars").tqdm(leave=False, desc="scoring", **kw)


@torch.no_grad()
def member_errors(
    nets: nn.ModuleList, cfg: DetectorConfig, z: np.ndarray, chunk: int = 65536, progress: bool = False
) -> np.ndarray:
    """Each network's errors on standardised float32 data: (K, n points) for a (n, C) signal,
    (K, N) for (N, T, C) sequences."""
    if cfg.mode == "sequences":
        return sequence_errors(nets, z)
    n, W = len(z), cfg.window
    if n < W:
        raise DataError(f"the signal has {n} points; scoring needs at least one window of {W}")
    if cfg.model == "forecaster":
        err = np.stack([forecast_errors(net, z, W, cfg.steps_ahead, chunk, progress) for net in nets])
    else:
        err = window_errors(nets, z, W, cfg.window_stride, cfg.aggregate, chunk, progress)
    return causal_smooth(err, cfg.smooth)


@torch.no_grad()
def sequence_errors(nets: nn.ModuleList, z: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, T, C) -> (K, N): each sequence's mean squared reconstruction error, ``batch`` at a time."""
    out = []
    for i in range(0, len(z), batch):
        s = torch.from_numpy(z[i : i + batch])  # (B, T, C)
        out.append(np.stack([((net(s) - s) ** 2).mean((1, 2)).double().numpy() for net in nets]))  # (K, B)
    return np.concatenate(out, axis=1)


@torch.no_grad()
def window_errors(
    nets: nn.ModuleList, z: np.ndarray, W: int, stride: int, aggregate: str, chunk: int, progress: bool
) -> np.ndarray:
    """(n, C) -> (K, n): windows starting every ``stride`` points (and one ending at the end)
    reconstructed, about ``chunk`` points at a time; each point gets the mean over its covering
    windows of the window's mean error ("window") or of its own error ("point"), or the smallest
    covering window's mean error ("min").

    An interior point is covered by at least ``W // stride`` windows, a point near either end of
    the signal by fewer (the first point by one): the mean or minimum of fewer windows strays
    further, so the highest (or lowest) scores of a clean signal would gather at its ends. For
    "window" and "min" such a point takes the first (last) ``W // stride`` windows instead, the
    covering ones among them."""
    n, K = len(z), len(nets)
    starts = np.arange(0, n - W + 1, stride)
    if starts[-1] != n - W:
        starts = np.r_[starts, n - W]  # the last window reaches the end
    per_chunk = max(1, chunk // W)
    zt = torch.from_numpy(z)
    if aggregate == "point":
        total, count = np.zeros((K, n)), np.zeros(n)
    else:
        means = np.zeros((K, len(starts)))  # each window's mean error
    with _scoring_bar(progress, total=len(starts), unit="window") as bar:
        for i in range(0, len(starts), per_chunk):
            s = torch.from_numpy(starts[i : i + per_chunk])
            pos = s[:, None] + torch.arange(W)[None, :]  # (B, W)
            w, idx = zt[pos], pos.numpy()  # (B, W, C), (B, W)
            for k, net in enumerate(nets):
                e = ((net(w) - w) ** 2).mean(2).double().numpy()  # (B, W)
                if aggregate == "point":
                    np.add.at(total[k], idx, e)
                else:
                    means[k, i : i + len(s)] = e.mean(1)
            if aggregate == "point":
                np.add.at(count, idx, 1.0)
            bar.update(len(s))
    if aggregate == "point":
        return total / count  # (K, n)
    return over_windows(means, starts, n, W, stride, aggregate)


def over_windows(
    means: np.ndarray, starts: np.ndarray, n: int, W: int, stride: int, aggregate: str
) -> np.ndarray:
    """(K, L) window mean errors -> (K, n): each point's mean or minimum over its windows (the
    covering ones, widened at the signal's ends to ``W // stride``: ``window_errors``)."""
    L = len(starts)
    u = np.arange(n)
    a = np.searchsorted(starts, u - W + 1, "left")  # the first window covering u
    b = np.searchsorted(starts, u, "right") - 1  # the last
    k = min(max(1, W // stride), L)
    short = b - a + 1 < k
    b = np.where(short & (a == 0), k - 1, b)
    a = np.where(short & (b == L - 1), np.minimum(a, L - k), a)
    out = np.full((len(means), n), np.inf if aggregate == "min" else 0.0)
    for j in range(int((b - a).max()) + 1):  # a handful of windows per point
        ok = a + j <= b
        col = means[:, np.minimum(a + j, L - 1)]  # (K, n)
        if aggregate == "min":
            out = np.where(ok, np.minimum(out, col), out)
        else:
            out += np.where(ok, col, 0.0)
    return out if aggregate == "min" else out / (b - a + 1)


class ForecastErrors:
    """One forecaster's point errors, fed a (n, C) standardised signal chunk by chunk: ``feed``
    returns the errors of the chunk's points (``forecast_errors`` defines them), carrying the GRU's
    state and the last ``Hz`` steps' predictions to the next chunk."""

    def __init__(self, net: nn.Module, W: int, Hz: int, C: int) -> None:
        self.net, self.W, self.Hz = net, W, Hz
        self.h, self.prev = None, torch.empty(0, Hz, C)  # prev: predictions made at the last chunk's end
        self.seen = 0  # points fed so far

    @torch.no_grad()
    def feed(self, z: np.ndarray) -> np.ndarray:
        """(m, C) float32 -> (m,) float64: NaN where fewer than ``Hz`` post-warm-up predictions reach."""
        W, Hz, i = self.W, self.Hz, self.seen
        m = len(z)
        stop = i + m
        zt = torch.from_numpy(z)
        total, count = np.zeros(m), np.zeros(m)
        pred, self.h = self.net(zt[None], self.h)  # (1, m, Hz, C)
        P = torch.cat([self.prev, pred[0]])  # predictions made at points base .. stop - 1
        base = i - len(self.prev)
        for j in range(1, Hz + 1):  # the predictions j steps ahead of targets u in [lo, stop)
            lo = max(i, base + j, W + j)
            if lo < stop:
                e = ((P[lo - j - base : stop - j - base, j - 1] - zt[lo - i :]) ** 2).mean(-1)  # (stop-lo,)
                total[lo - i :] += e.double().numpy()
                count[lo - i :] += 1
        self.prev, self.seen = P[-Hz:], stop
        return np.where(count == Hz, total / Hz, np.nan)


def forecast_errors(net: nn.Module, z: np.ndarray, W: int, Hz: int, chunk: int, progress: bool) -> np.ndarray:
    """One forecaster's point errors over a (n, C) standardised signal: ``err[u]`` is the mean
    over ``j = 1 .. Hz`` (those made after the warm-up of ``W`` points) of the squared error of
    the prediction of ``x[u]`` made at ``u - j``; NaN for the first ``W + Hz`` points, which not all
    ``Hz`` predictions made after the warm-up reach (a mean of fewer strays further: the highest
    errors of a clean signal would gather right after the warm-up). The GRU reads
    the signal in chunks (``ForecastErrors``), carrying its state, and keeps the last ``Hz`` steps'
    predictions for the next chunk: memory beyond the output is bounded by the chunk."""
    n, C = z.shape
    step = forecast_step(chunk, Hz, C)
    fe, out = ForecastErrors(net, W, Hz, C), np.empty(n)
    with _scoring_bar(progress, total=n, unit="point", unit_scale=True) as bar:
        for i in range(0, n, step):
            out[i : i + step] = fe.feed(z[i : i + step])
            bar.update(min(step, n - i))
    return out  # (n,)


def forecast_step(chunk: int, Hz: int, C: int) -> int:
    """Points per forecaster call: ``chunk``, at most 4M predicted values."""
    return max(1, min(chunk, (1 << 22) // (Hz * C)))


def causal_smooth(err: np.ndarray, m: int) -> np.ndarray:
    """(K, n) -> (K, n): causal moving average over ``m`` points, NaNs (the forecaster's warm-up)
    left out of the averages."""
    n = err.shape[1]
    if m <= 1:
        return err
    ok = ~np.isnan(err)
    c = np.cumsum(np.pad(np.where(ok, err, 0.0), ((0, 0), (1, 0))), axis=1)  # (K, n + 1)
    k = np.cumsum(np.pad(ok, ((0, 0), (1, 0))), axis=1)  # (K, n + 1)
    lo = np.arange(1, n + 1) - np.minimum(np.arange(1, n + 1), m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[:, 1:] - c[:, lo]) / (k[:, 1:] - k[:, lo])
