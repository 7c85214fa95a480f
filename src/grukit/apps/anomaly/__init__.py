"""``GRUAnomalyDetector``: a GRU model of normal behaviour, a scorer, and a calibrated threshold.

Two modes:

- ``"signal"`` (points and segments in a long signal, one or several channels; channels
  standardised on the training stretch), with one of two models:

  - ``model="autoencoder"`` (the default): a GRU autoencoder (below) learns windows of ``window``
    points. Windows every ``stride`` points (default ``window // 4``) are reconstructed; a point's
    error is the mean over the windows covering it of the window's mean squared error
    (``aggregate="window"``, the default), of the error at the point (``"point"``), or the
    smallest covering window's error (``"min"``). Scoring streams the windows in chunks.
  - ``model="forecaster"``: a causal GRU reads the signal point by point, carrying its state,
    and predicts the next ``horizon`` points at every step; a point's error is the mean squared
    error of the ``horizon`` predictions made for it. Scoring streams the signal in chunks,
    carrying the state and the last ``horizon`` predictions across chunks. (A next-point
    predictor, ``horizon=1`` in effect, found 0 of 9 abnormal ECG5000 beats: one-step errors
    follow local smoothness, not shape; predicting a beat ahead finds all of them.
    docs/anomaly.md.)

  Either way the point errors are then smoothed over ``smooth`` points (causal), memory beyond
  the output stays bounded, and chunked scoring equals one pass.
- ``"sequences"`` (one-class, whole sequences such as heartbeats): a GRU autoencoder - the encoder's
  final state is squeezed to ``latent_size`` numbers, from which a decoder GRU, also fed a clock
  (``time_features`` sine/cosine pairs of the step), reconstructs the sequence; the error is the
  mean squared reconstruction error of the sequence.

The scorer turns errors into scores normalised on held-out normal data (the last
``calibration_share`` of the training data, never trained on): ``score = (e - median) / (1.4826
MAD)``. With ``ensemble=K`` the model is K networks trained from seeds ``seed .. seed+K-1``;
each one's errors are normalised that way, the K normalised errors are averaged, and the average
is normalised again on the calibration data (a single autoencoder on a few hundred sequences is
a high-variance estimator; docs/anomaly.md measures it). The detector flags scores above the
threshold, the ``1 - false_alarm_rate`` quantile of the calibration scores, so on normal data
about ``false_alarm_rate`` of points (or sequences) are flagged. Estimator contract (DESIGN.md):
``fit(X) -> self``, ``score``, ``predict``, ``save`` / ``load``; fitted attributes end in ``_``.

Modules, each importing only those above it:

- ``config``: ``DetectorConfig`` and its checks;
- ``autoencoder`` (``SeqAutoencoder``, ``clock``), ``forecaster`` (``SignalForecaster``),
  ``networks`` (the one a config asks for);
- ``datasets``: the windows and sequences the trainer reads;
- ``robust``: median/MAD normalisation and the ensemble's combination;
- ``scoring``: sequence, window and forecast errors, streamed in chunks, and the smoothing;
- ``persistence``: the saved folder (format /2; /1 read);
- ``detector``: ``GRUAnomalyDetector``.

Shapes: signal (n,) or (n, C); sequences (N, T) or (N, T, C).
"""

from grukit.apps.anomaly.autoencoder import SeqAutoencoder, clock
from grukit.apps.anomaly.config import AGGREGATES, MODELS, MODES, DetectorConfig
from grukit.apps.anomaly.detector import GRUAnomalyDetector
from grukit.apps.anomaly.forecaster import SignalForecaster
from grukit.apps.anomaly.persistence import FORMAT, FORMATS

__all__ = [
    "GRUAnomalyDetector",
    "DetectorConfig",
    "SeqAutoencoder",
    "SignalForecaster",
    "clock",
    "AGGREGATES",
    "MODELS",
    "MODES",
    "FORMAT",
    "FORMATS",
]
