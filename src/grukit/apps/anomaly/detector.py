"""``GRUAnomalyDetector``: fit the networks of normal behaviour, calibrate the scores and the
threshold, score new data (the package docstring describes the method).

Shapes: signal (n,) or (n, C); sequences (N, T) or (N, T, C); K networks.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from grukit.apps.anomaly.config import DetectorConfig
from grukit.apps.anomaly.datasets import SequenceDataset, WindowDataset
from grukit.apps.anomaly.networks import build_network
from grukit.apps.anomaly.period import dominant_period, window_from_period
from grukit.apps.anomaly.persistence import load_detector, save_detector
from grukit.apps.anomaly.robust import center_and_spread, combine
from grukit.apps.anomaly.scoring import member_errors
from grukit.apps.contract import NotFittedError
from grukit.data.series import DataError
from grukit.train.config import TrainConfig

__all__ = ["GRUAnomalyDetector"]


def _signal_minimums(model: str, window: int, horizon: int) -> tuple[int, int]:
    """The fewest points a signal model trains on (one window; the forecaster's warm-up, scored
    span and horizon) and calibrates its threshold on (two windows; the forecaster's stretch)."""
    if model == "forecaster":
        need = 2 * window + horizon
        return need, need
    return window, 2 * window


def _largest_window(model: str, horizon: int | None, n: int) -> int:
    """The largest window whose training and calibration minimums (``_signal_minimums``; the
    forecaster's horizon ``horizon``, or the window when None) fit in ``n`` points; 0 if none."""
    lo, hi = 0, n
    while lo < hi:  # the minimums grow with the window: bisect
        mid = (lo + hi + 1) // 2
        if sum(_signal_minimums(model, mid, horizon or mid)) <= n:
            lo = mid
        else:
            hi = mid - 1
    return lo


class GRUAnomalyDetector:
    """See the package docstring.

    >>> det = GRUAnomalyDetector(mode="sequences", train={"epochs": 30}).fit(normal_beats)
    >>> scores, flags = det.score(beats), det.predict(beats)
    """

    def __init__(self, mode: str = "signal", *, train: TrainConfig | dict | None = None, **hyper) -> None:
        self.config = DetectorConfig(mode=mode, **hyper)
        self._requested = self.config  # what fit starts from: a window None is chosen again on new data
        self.train_config = TrainConfig.coerce(train)

    # -- input checks ----------------------------------------------------------------------------

    def _as_array(self, X, *, fitting: bool) -> np.ndarray:
        """(n, C) for signals, (N, T, C) for sequences, as float64, NaNs handled."""
        try:
            x = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("expected numbers") from None
        seq = self.config.mode == "sequences"
        if seq:
            if x.ndim == 2:
                x = x[:, :, None]
            if x.ndim != 3:
                raise DataError(f"sequences mode expects (N, T) or (N, T, C), got shape {x.shape}")
        else:
            if x.ndim == 1:
                x = x[:, None]
            if x.ndim != 2:
                raise DataError(f"signal mode expects (n,) or (n, C), got shape {x.shape}")
        C = x.shape[-1]
        if not fitting and C != self.channels_:
            raise DataError(f"the model was trained on {self.channels_} channel(s); got {C}")
        if np.isinf(x).any():
            raise DataError("the data contains infinite values")
        flat = x.reshape(-1, C)
        for c in range(C):
            col = flat[:, c]
            if np.isnan(col).all():
                raise DataError(f"channel {c} has no values (all NaN)")
        if np.isnan(x).any():
            if seq:
                raise DataError("sequences contain NaN values; fill or drop them first")
            idx = np.arange(len(x))
            for c in range(C):  # interior and end gaps: linear interpolation, ends held
                col = x[:, c]
                bad = np.isnan(col)
                if bad.any():
                    col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
        return x

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, X, *, out_dir: str | os.PathLike | None = None, resume: bool = False, log=None):
        """Learn normal behaviour from ``X`` (assumed mostly normal) and calibrate the threshold."""
        from grukit.train.trainer import Trainer

        self.config = cfg = getattr(self, "_requested", self.config)
        x = self._as_array(X, fitting=True)
        C = x.shape[-1]
        flat = x.reshape(-1, C)
        mean, std = flat.mean(0), flat.std(0)
        const = np.flatnonzero(std == 0)
        if len(const):
            raise DataError(
                f"channel {int(const[0])} is constant in the training data: nothing to learn from it; drop it"
            )
        self.channels_ = C
        self.mean_, self.std_ = mean, std
        self.period_ = None
        z = (x - mean) / std
        if cfg.mode == "signal":
            n = len(z)
            if cfg.window is None:
                self.config = cfg = self._choose_window(z)
            forecast = cfg.model == "forecaster"
            W, Hz = cfg.window, cfg.steps_ahead
            need, cal_min = _signal_minimums(cfg.model, W, Hz)
            n_cal = max(int(round(n * cfg.calibration_share)), cal_min)
            n_fit = n - n_cal
            if n_fit < need:
                what = f"window {W} and horizon {Hz} need" if forecast else f"window {W} needs"
                raise DataError(
                    f"the training stretch has {n} points; {what} at least {need + cal_min} ({need} to "
                    f"train on, {cal_min} to calibrate the threshold on): give a longer normal stretch "
                    "or a smaller window"
                    + (
                        ""
                        if self.period_ is None
                        else f" (chosen from the data's period of {self.period_} points)"
                    )
                )
            train = WindowDataset(z[:n_fit], np.arange(n_fit - need + 1), need)
            val = WindowDataset(
                z[n_fit:], np.arange(0, n_cal - need + 1, W if forecast else cfg.window_stride), need
            )

            if forecast:

                def loss_fn(net, batch):
                    (w,) = batch  # (B, 2W + Hz, C)
                    pred, _ = net(w)  # (B, 2W + Hz, Hz, C): pred[:, t, j - 1] predicts w[:, t + j]
                    target = w.unfold(1, Hz, 1).transpose(2, 3)  # (B, W + Hz + 1, Hz, C) = w[:, t:t + Hz]
                    return ((pred[:, W : 2 * W] - target[:, W + 1 : 2 * W + 1]) ** 2).mean(), w.shape[0]
            else:

                def loss_fn(net, batch):
                    (w,) = batch  # (B, W, C)
                    return ((net(w) - w) ** 2).mean(), w.shape[0]
        else:
            N = len(z)
            n_cal = max(1, int(round(N * cfg.calibration_share)))
            if N - n_cal < 2:
                raise DataError(f"expected at least {n_cal + 2} training sequences, got {N}")
            perm = np.random.default_rng(self.train_config.seed).permutation(N)
            fit_idx, cal_idx = perm[n_cal:], perm[:n_cal]
            train, val = SequenceDataset(z[fit_idx]), SequenceDataset(z[cal_idx])

            def loss_fn(net, batch):
                (s,) = batch  # (B, T, C)
                return ((net(s) - s) ** 2).mean(), s.shape[0]

        K = cfg.ensemble
        nets, self.results_ = [], []
        for k in range(K):
            seed = self.train_config.seed + k
            torch.manual_seed(seed)
            net = build_network(C, cfg)
            where = out_dir
            if K > 1:
                if log is not None:
                    log(f"autoencoder {k + 1} of {K} (seed {seed})")
                where = None if out_dir is None else Path(out_dir) / f"member-{k}"
            tc = replace(self.train_config, seed=seed)
            self.results_.append(
                Trainer(net, tc, loss_fn, out_dir=where, resume=resume, log=log).fit(train, val)
            )
            nets.append(net.eval())
        self.net_ = nn.ModuleList(nets)
        self.result_ = self.results_[0]
        # calibration: errors on held-out normal data
        if cfg.mode == "sequences":
            errors = self._member_errors(x[cal_idx])  # (K, n)
        elif cfg.model == "forecaster":  # the state warmed up on the training part
            errors = self._member_errors(x)[:, n_fit:]
        else:
            errors = self._member_errors(x[n_fit:])
        stats = [center_and_spread(e) for e in errors]
        self.member_center_ = np.array([c for c, _ in stats])
        self.member_spread_ = np.array([d for _, d in stats])
        combined = combine(errors, self.member_center_, self.member_spread_)
        self.center_, self.spread_ = center_and_spread(combined)
        cal_scores = (combined - self.center_) / self.spread_
        self.threshold_ = float(np.quantile(cal_scores, 1 - cfg.false_alarm_rate))
        return self

    def _choose_window(self, z: np.ndarray) -> DetectorConfig:
        """The config with the window (and the forecaster's horizon, when None: one window) chosen
        from the standardised training signal ``z`` (n, C): see ``period``."""
        cfg = self.config
        self.period_ = dominant_period(z)
        fixed = cfg.horizon
        limit = _largest_window(cfg.model, fixed, len(z))
        W = max(window_from_period(self.period_, max(limit, 8)), fixed or 1)  # 8: too short data say so
        if cfg.model == "forecaster":
            return replace(cfg, window=W, horizon=fixed or W)
        return replace(cfg, window=W, stride=None if cfg.stride is None else min(cfg.stride, W))

    # -- scoring ---------------------------------------------------------------------------------

    def _member_errors(self, x: np.ndarray, chunk: int = 65536, progress: bool = False) -> np.ndarray:
        """Each network's errors: (K, n points) or (K, N sequences)."""
        z = ((x - self.mean_) / self.std_).astype(np.float32)  # the networks run in float32
        return member_errors(self.net_, self.config, z, chunk, progress)

    def _check_fitted(self):
        if not hasattr(self, "net_"):
            raise NotFittedError("this GRUAnomalyDetector is not fitted yet: call fit() or load()")

    def score(self, X, *, chunk: int = 65536, progress: bool = False) -> np.ndarray:
        """Normalised anomaly scores: one per point (signal) or per sequence (sequences)."""
        self._check_fitted()
        x = self._as_array(X, fitting=False)
        errors = self._member_errors(x, chunk, progress)  # (K, n)
        s = (combine(errors, self.member_center_, self.member_spread_) - self.center_) / self.spread_
        return np.nan_to_num(s, nan=0.0)  # the forecaster's warm-up: not scored

    def score_chunks(self, chunks, *, chunk: int = 65536):
        """Scores of one signal read in consecutive chunks ((m, C) or (m,) arrays), yielded as they
        become final, in memory bounded by the chunk: concatenated, ``score`` of the whole signal
        (``stream.SignalStream``; signal mode only)."""
        from grukit.apps.anomaly.stream import SignalStream

        stream = SignalStream(self, chunk=chunk)
        for part in chunks:
            s = stream.feed(part)
            if len(s):
                yield s
        s = stream.finish()
        if len(s):
            yield s

    def predict(self, X, **kw) -> np.ndarray:
        """Flags: score above the calibrated threshold."""
        return self.score(X, **kw) > self.threshold_

    # -- persistence -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``detector.json`` into the folder ``path``, both at once;
        the folder's other files stay."""
        self._check_fitted()
        save_detector(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GRUAnomalyDetector:
        """A fitted detector from a folder written by :meth:`save` (format /2, or /1)."""
        return load_detector(cls, path)
