"""``DetectorConfig``: the anomaly detector's hyperparameters, checked when made."""

from __future__ import annotations

from dataclasses import dataclass

from grukit.train.config import ConfigError

__all__ = ["DetectorConfig", "MODES", "AGGREGATES", "MODELS"]

MODES = ("signal", "sequences")
AGGREGATES = ("window", "point", "min")
MODELS = ("autoencoder", "forecaster")


@dataclass
class DetectorConfig:
    """Hyperparameters.

    Attributes:
        mode: "signal" or "sequences" (see the package docstring).
        window: signal mode: the autoencoder's window (the forecaster's warm-up) in points; None
            (the default) chooses it from the training data when fitting (``period``: the
            dominant period of the autocorrelation, repeated to at least 16 points, at most 256,
            64 without a period) and stores the number, with the forecaster's ``horizon`` (None:
            one window ahead).
        hidden_size, num_layers: the GRU's size.
        latent_size: sequences mode: the autoencoder's bottleneck.
        reset_after: the formulation (False: the spec's).
        false_alarm_rate: the share of normal points / sequences flagged by the threshold.
        calibration_share: the share of the training data held out for validation and the
            threshold (the end of the training stretch; a random share of the sequences). In the
            signal mode the held-out end is at least the minimum that scores (two windows; the
            forecaster's warm-up, span and horizon), taken from a short recording's training
            part when the share gives less.
        smooth: signal mode: moving-average width (causal) of the point errors.
        aggregate: signal mode: "window" gives each point the mean error of the windows covering
            it (each window's error is its mean over its points: smooth, contiguous flags, fewer
            false-alarm segments); "point" the error at the point itself (sharper localisation);
            "min" the smallest error of the windows covering it (a point is anomalous when no
            window containing it looks normal: suits periodic signals, where some window lines
            up with each normal cycle).
        ensemble: the number of autoencoders, trained from seeds ``seed``, ``seed + 1``, ...,
            whose normalised errors are averaged.
        bidirectional: the encoder reads the sequence both ways (the latent sees both ends).
        stride: signal mode: points between the starts of scored windows; None = window // 4.
        model: None (the default): "forecaster" in the signal mode, "autoencoder" for sequences
            (resolved when the config is made; on three ECG5000 long signals the window
            autoencoder found 4, 1 and 0 of 9 abnormal beats, the forecaster 9, 9 and 9:
            docs/anomaly.md).
            Signal mode: "autoencoder" (windows reconstructed) or "forecaster" (a GRU reads
            the signal point by point, carrying its state, and predicts the next ``horizon``
            points at every step; a point's error is the mean squared error of the predictions
            made for it from 1 to ``horizon`` steps earlier). The forecaster's ``window`` is its
            warm-up: training stretches of ``2 * window + horizon`` points, whose predictions
            count after the first ``window``; the first ``window + horizon`` points of a scored
            signal score 0 (never flagged).
        horizon: forecaster: points predicted at each step; None = window // 2.
        time_features: autoencoder: the decoder reads, beside the latent, a clock of
            ``2 * time_features`` inputs, ``sin`` and ``cos`` of ``2 pi k t / T`` for
            ``k = 1 .. time_features`` at step ``t`` of ``T``, so it knows where in the sequence
            it is and the latent only has to carry the shape (on ECG5000 it cuts the median error
            on normal beats from about 0.085 to 0.035 and lifts the one-class ROC-AUC from 0.986
            to 0.991 on average: docs/anomaly.md). None is resolved when the config is made: 4 in
            the sequences mode, 0 (no clock) for the signal mode's windows, which start at any
            phase of the signal (on the tests' generated signal a clock raised the window
            autoencoder's false alarms); saved folders store the number. The forecaster keeps
            None. Folders saved before this field load as 0.
    """

    mode: str = "signal"
    window: int | None = None
    hidden_size: int = 64
    num_layers: int = 1
    latent_size: int = 16
    reset_after: bool = False
    false_alarm_rate: float = 0.01
    calibration_share: float = 0.2
    smooth: int = 1
    aggregate: str = "window"
    ensemble: int = 1
    bidirectional: bool = False
    stride: int | None = None
    model: str | None = None
    horizon: int | None = None
    time_features: int | None = None

    @property
    def steps_ahead(self) -> int:
        """The forecaster's horizon: ``horizon``, or ``window // 2`` when None."""
        return self.horizon or max(1, self._window() // 2)

    @property
    def window_stride(self) -> int:
        """Points between scored windows: ``stride``, or ``window // 4`` when None."""
        return self.stride or max(1, self._window() // 4)

    def _window(self) -> int:
        if self.window is None:
            raise ValueError(
                "the window is chosen from the data when the detector is fitted (bug: "
                "a config with window=None was used before fitting)"
            )
        return self.window

    def __post_init__(self) -> None:
        for name in ("reset_after", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        default_model = self.model is None
        if default_model:  # resolved here, so a saved config says what it ran
            self.model = "forecaster" if self.mode == "signal" else "autoencoder"
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.model == "forecaster":
            if self.mode != "signal":
                raise ConfigError("model 'forecaster' is for the signal mode; sequences use the autoencoder")
            for name, default in (
                ("aggregate", "window"),
                ("stride", None),
                ("bidirectional", False),
                ("time_features", None),
            ):
                if getattr(self, name) != default:
                    raise ConfigError(
                        f"{name} applies to the autoencoder, not to model 'forecaster'"
                        + (" (the signal mode's default: pass model='autoencoder')" if default_model else "")
                    )
        else:
            if self.horizon is not None:
                raise ConfigError("horizon applies to model 'forecaster', not to the autoencoder")
            if self.time_features is None:  # resolved here, so a saved config says what it ran
                self.time_features = 4 if self.mode == "sequences" else 0
        for name in ("window", "hidden_size", "num_layers", "latent_size", "smooth", "ensemble"):
            v = getattr(self, name)
            if name == "window" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(
                    f"{name} must be a positive integer{' or None' if name == 'window' else ''}, got {v!r}"
                )
        for name in ("stride", "horizon"):  # with window None, bounded when the window is chosen
            v = getattr(self, name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= (self.window or v)
            ):
                where = f"window ({self.window})" if self.window else "the window"
                raise ConfigError(f"{name} must be an integer from 1 to {where} or None, got {v!r}")
        if self.time_features is not None and (
            isinstance(self.time_features, bool)
            or not isinstance(self.time_features, int)
            or self.time_features < 0
        ):
            raise ConfigError(
                f"time_features must be a non-negative integer or None, got {self.time_features!r}"
            )
        for name, lo, hi in (("false_alarm_rate", 0.0, 0.5), ("calibration_share", 0.05, 0.5)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
                raise ConfigError(f"{name} must be in ({lo}, {hi}], got {v!r}")
