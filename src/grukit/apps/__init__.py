"""Applications built on grukit's GRU, each an estimator with the same contract (DESIGN.md):
hyperparameters in the constructor, ``fit(data) -> self``, ``predict``, ``save`` / ``load``.

- :class:`GRUForecaster`: time-series forecasting (``grukit forecast``); :class:`ForecasterEnsemble`,
  several of them median-combined.
- :class:`GRUAnomalyDetector`: anomaly detection in signals and sequences (``grukit anomaly``).
- :class:`GRULanguageModel`: a character/byte language model that generates text (``grukit text``).
- :class:`GRUSpeechRecognizer`: spoken words and strings of words from audio (``grukit speech``).
"""

from grukit.apps.anomaly import DetectorConfig, GRUAnomalyDetector
from grukit.apps.contract import NotFittedError
from grukit.apps.forecast import Forecast, ForecasterConfig, GRUForecaster
from grukit.apps.forecast_ensemble import ForecasterEnsemble
from grukit.apps.speech.estimator import GRUSpeechRecognizer, Recognition
from grukit.apps.speech.model import SpeechConfig
from grukit.apps.text import GRULanguageModel, LMConfig

__all__ = [
    "GRUForecaster",
    "ForecasterConfig",
    "Forecast",
    "ForecasterEnsemble",
    "GRUAnomalyDetector",
    "DetectorConfig",
    "GRULanguageModel",
    "LMConfig",
    "GRUSpeechRecognizer",
    "SpeechConfig",
    "Recognition",
    "NotFittedError",
]
