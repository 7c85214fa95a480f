"""The network a detector's config asks for: one member of its ensemble."""

from __future__ import annotations

from torch import nn

from grukit.apps.anomaly.autoencoder import SeqAutoencoder
from grukit.apps.anomaly.config import DetectorConfig
from grukit.apps.anomaly.forecaster import SignalForecaster

__all__ = ["build_network"]


def build_network(C: int, cfg: DetectorConfig) -> nn.Module:
    """A fresh ``SignalForecaster`` or ``SeqAutoencoder`` for C channels (drawing its initial
    weights from torch's global generator)."""
    return SignalForecaster(C, cfg) if cfg.model == "forecaster" else SeqAutoencoder(C, cfg)
