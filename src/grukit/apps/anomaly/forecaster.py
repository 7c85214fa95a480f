"""The signal forecaster: a causal GRU that predicts the next ``horizon`` points at every step.

Shapes: N signals of T points and C channels; H the hidden size, L layers, Hz the horizon.
"""

from __future__ import annotations

import torch
from torch import nn

import grukit
from grukit.apps.anomaly.config import DetectorConfig

__all__ = ["SignalForecaster"]


class SignalForecaster(nn.Module):
    """A causal GRU with a head predicting the next ``horizon`` points at every step:
    (N, T, C), state -> (N, T, horizon, C), state. ``out[:, t, j - 1]`` predicts ``x[:, t + j]``."""

    def __init__(self, C: int, cfg: DetectorConfig) -> None:
        super().__init__()
        self.horizon = cfg.steps_ahead
        self.gru = grukit.GRU(
            C, cfg.hidden_size, cfg.num_layers, batch_first=True, reset_after=cfg.reset_after
        )
        self.head = nn.Linear(cfg.hidden_size, self.horizon * C)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.gru(x, h)  # (N, T, H), (L, N, H)
        return self.head(out).unflatten(-1, (self.horizon, x.shape[-1])), h  # (N, T, Hz, C)
