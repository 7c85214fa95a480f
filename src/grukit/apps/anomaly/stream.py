"""Scoring a signal that arrives in chunks, in memory bounded by the chunk.

``SignalStream(det)`` is fed consecutive chunks of one signal (``feed``) and returns the scores
that are final so far; ``finish`` returns the rest. Concatenated, they equal
``det.score(whole signal)`` (to float rounding: the networks see other batches), for either
signal model, every aggregate, smoothing and ensemble:

- gaps (NaN) are filled as ``score`` fills them, by linear interpolation between the values on
  either side (ends held): rows wait until every channel's gap has closed, so a gap costs memory
  for its length;
- the forecaster is causal: its GRU carries its state and its last ``horizon`` predictions from
  chunk to chunk (``scoring.ForecastErrors``), so a point's score is final when it is read;
- the window autoencoder is not: a point's score needs the windows that start up to ``W - 1``
  points after it, and the signal's end changes the last ``W`` points' (``scoring.window_errors``).
  The stream keeps the last points and scores overlapping stretches whose first window starts
  on the global grid of window starts (multiples of ``stride``); of each stretch it keeps the
  points at least ``W`` from either end, whose covering windows are exactly the whole signal's.
  The signal's true ends are scored at the start and in ``finish``;
- the causal smoothing carries the last ``smooth - 1`` errors of each network.

Memory: the chunk, plus ``2 W + stride`` points of the autoencoder's overlap, plus any open gap.

Shapes: chunks (m, C) or (m,) for one channel; scores (m',) float64.
"""

from __future__ import annotations

import numpy as np
import torch

from grukit.apps.anomaly.robust import combine
from grukit.apps.anomaly.scoring import ForecastErrors, causal_smooth, forecast_step, window_errors
from grukit.data.series import DataError

__all__ = ["SignalStream"]


class _GapFill:
    """Linear interpolation of NaN gaps across chunk boundaries (ends held), as
    ``GRUAnomalyDetector._as_array`` fills a whole signal."""

    def __init__(self, C: int) -> None:
        self.C = C
        self.pending = np.empty((0, C))  # rows read but not yet filled
        self.start = 0  # global index of pending[0]
        self.left = np.full(C, np.nan)  # each channel's last value before pending, and its index
        self.left_at = np.full(C, -1)

    def feed(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """(m, C) rows -> the filled rows that no open gap holds back (all of them when ``last``)."""
        p = np.concatenate([self.pending, x]) if len(self.pending) else x
        n = len(p)
        ready = n
        if not last:
            for c in range(self.C):  # rows after a channel's last value wait for the gap to close
                ok = np.flatnonzero(~np.isnan(p[:, c]))
                ready = min(ready, ok[-1] + 1 if len(ok) else 0)
        out = p[:ready].copy()
        idx = self.start + np.arange(ready)
        for c in range(self.C):
            col = p[:ready, c]
            bad = np.isnan(col)
            if not bad.any():
                continue
            xs, ys = idx[~bad], col[~bad]
            if self.left_at[c] >= 0:  # the gap began in an earlier chunk
                xs, ys = np.r_[self.left_at[c], xs], np.r_[self.left[c], ys]
            if not len(xs):
                raise DataError(f"channel {c} has no values (all NaN)")
            out[bad, c] = np.interp(idx[bad], xs, ys)
        for c in range(self.C):
            ok = np.flatnonzero(~np.isnan(p[:ready, c]))
            if len(ok):
                self.left[c], self.left_at[c] = p[ok[-1], c], self.start + ok[-1]
        self.pending, self.start = p[ready:], self.start + ready
        return out


class _Smooth:
    """``scoring.causal_smooth`` over consecutive (K, m) pieces: the last ``m - 1`` errors carried."""

    def __init__(self, K: int, m: int) -> None:
        self.m, self.tail = m, np.empty((K, 0))

    def __call__(self, err: np.ndarray) -> np.ndarray:
        if self.m <= 1:
            return err
        e = np.concatenate([self.tail, err], axis=1)
        self.tail = e[:, max(0, e.shape[1] - (self.m - 1)) :]
        return causal_smooth(e, self.m)[:, e.shape[1] - err.shape[1] :]


class _WindowStream:
    """The window autoencoder's point errors over overlapping stretches (see the module docstring)."""

    def __init__(self, nets, W: int, stride: int, aggregate: str, chunk: int) -> None:
        self.nets, self.W, self.stride, self.aggregate, self.chunk = nets, W, stride, aggregate, chunk
        self.buf = np.empty((0, 0), dtype=np.float32)
        self.g0 = 0  # global index of buf[0]: 0 or a window start (a multiple of stride)
        self.done = 0  # points whose errors are out

    def feed(self, z: np.ndarray, last: bool = False) -> np.ndarray:
        """(m, C) float32 -> (K, m') the errors that are final."""
        self.buf = np.concatenate([self.buf, z]) if len(self.buf) else z
        g1 = self.g0 + len(self.buf)
        W = self.W
        if last:
            upto = g1
        else:
            upto = g1 - W  # points at least W before the stretch's end
            if upto - self.done < self.chunk or g1 <= 2 * W:  # the signal's first points: its first
                # W // stride windows (at most 2W points), which they take at the start, all read
                return np.empty((len(self.nets), 0))
        err = window_errors(
            self.nets, self.buf, W, self.stride, self.aggregate, self.chunk, False
        )  # (K, len)
        out = err[:, self.done - self.g0 : upto - self.g0]
        self.done = upto
        # the next stretch starts on the grid at least W before the first point it must score
        g0 = max(0, (self.done - W) // self.stride * self.stride)
        self.buf, self.g0 = self.buf[g0 - self.g0 :], g0
        return out


class SignalStream:
    """Feed a fitted signal-mode ``GRUAnomalyDetector`` one signal in chunks; see the module
    docstring.

    >>> stream = SignalStream(det)
    >>> parts = [stream.feed(chunk) for chunk in chunks] + [stream.finish()]
    >>> scores = np.concatenate(parts)  # == det.score(np.concatenate(chunks))
    """

    def __init__(self, det, *, chunk: int = 65536) -> None:
        det._check_fitted()
        cfg = det.config
        if cfg.mode != "signal":
            raise ValueError(f"SignalStream scores a signal; this detector's mode is {cfg.mode!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be a positive number of points; got {chunk}")
        self.det, self.cfg = det, cfg
        C, K = det.channels_, len(det.net_)
        self.fill = _GapFill(C)
        self.smooth = _Smooth(K, cfg.smooth)
        if cfg.model == "forecaster":
            self.members = [ForecastErrors(net, cfg.window, cfg.steps_ahead, C) for net in det.net_]
            self.step = forecast_step(chunk, cfg.steps_ahead, C)
            self.windows = None
        else:
            self.windows = _WindowStream(det.net_, cfg.window, cfg.window_stride, cfg.aggregate, chunk)
        self.count = 0  # points read
        self.finished = False

    def _check(self, x) -> np.ndarray:
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("expected numbers") from None
        if x.ndim == 1:
            x = x[:, None]
        C = self.det.channels_
        if x.ndim != 2:
            raise DataError(f"expected a chunk of shape (m, {C}) or (m,), got {x.shape}")
        if x.shape[1] != C:
            raise DataError(f"the model was trained on {C} channel(s); got {x.shape[1]}")
        if np.isinf(x).any():
            raise DataError("the data contains infinite values")
        return x

    def _errors(self, x: np.ndarray, last: bool) -> np.ndarray:
        """Filled rows -> (K, m') errors that are final."""
        z = ((x - self.det.mean_) / self.det.std_).astype(np.float32)
        if self.windows is not None:
            return self.windows.feed(z, last)
        if not len(z):
            return np.empty((len(self.members), 0))
        return np.stack(
            [
                np.concatenate([m.feed(z[i : i + self.step]) for i in range(0, len(z), self.step)])
                for m in self.members
            ]
        )

    def _scores(self, err: np.ndarray) -> np.ndarray:
        d = self.det
        s = (combine(self.smooth(err), d.member_center_, d.member_spread_) - d.center_) / d.spread_
        return np.nan_to_num(s, nan=0.0)

    @torch.no_grad()
    def feed(self, chunk) -> np.ndarray:
        """The scores made final by this chunk (the forecaster: one per point read; the window
        autoencoder: those at least one window from the end read so far)."""
        if self.finished:
            raise RuntimeError("this SignalStream is finished; start a new one")
        x = self._check(chunk)
        self.count += len(x)
        return self._scores(self._errors(self.fill.feed(x), last=False))

    @torch.no_grad()
    def finish(self) -> np.ndarray:
        """The remaining scores (the open gaps' ends held, the signal's end scored)."""
        if self.finished:
            raise RuntimeError("this SignalStream is finished already")
        self.finished = True
        if self.count < self.cfg.window:
            raise DataError(
                f"the signal has {self.count} points; scoring needs at least one window of {self.cfg.window}"
            )
        return self._scores(
            self._errors(self.fill.feed(np.empty((0, self.det.channels_)), last=True), last=True)
        )
