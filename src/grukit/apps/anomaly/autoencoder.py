"""The sequence autoencoder: a GRU encoder squeezes a window or sequence to a latent vector, from
which a GRU decoder, also fed a clock of the step, reconstructs it.

Shapes: N sequences (or windows) of T steps and C channels; H the hidden size, L layers, D = 2
for a bidirectional encoder (else 1), d the latent size, k the clock's sine/cosine pairs.
"""

from __future__ import annotations

import torch
from torch import nn

import grukit
from grukit.apps.anomaly.config import DetectorConfig

__all__ = ["SeqAutoencoder", "clock"]


def clock(T: int, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(T, 2k): ``sin`` then ``cos`` of ``2 pi j t / T`` for ``j = 1 .. k`` at steps ``t = 0 .. T-1``."""
    angle = (
        torch.arange(T, dtype=torch.float64)[:, None] * torch.arange(1, k + 1, dtype=torch.float64)[None, :]
    )
    angle = angle * (2 * torch.pi / T)  # (T, k)
    return torch.cat([torch.sin(angle), torch.cos(angle)], 1).to(dtype)


class SeqAutoencoder(nn.Module):
    """GRU encoder -> latent (N, d) -> GRU decoder fed the latent and a clock at every step:
    (N, T, C) -> (N, T, C).

    ``z = tanh(A [h_fwd; h_bwd] + a)`` from the encoder's last layer's final state(s); the decoder
    reads ``[z, clock(T)[t]]`` at step ``t``; a linear head maps its outputs back to C channels.
    """

    def __init__(self, C: int, cfg: DetectorConfig) -> None:
        super().__init__()
        H = cfg.hidden_size
        D = 2 if cfg.bidirectional else 1
        self.time_features = cfg.time_features
        self.encoder = grukit.GRU(
            C,
            H,
            cfg.num_layers,
            batch_first=True,
            reset_after=cfg.reset_after,
            bidirectional=cfg.bidirectional,
        )
        self.to_latent = nn.Linear(D * H, cfg.latent_size)
        self.decoder = grukit.GRU(
            cfg.latent_size + 2 * self.time_features,
            H,
            cfg.num_layers,
            batch_first=True,
            reset_after=cfg.reset_after,
        )
        self.head = nn.Linear(H, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, T = x.shape[:2]
        _, h_n = self.encoder(x)  # (L * D, N, H)
        last = h_n[-2:].transpose(0, 1).flatten(1) if self.encoder.bidirectional else h_n[-1]  # (N, D * H)
        z = torch.tanh(self.to_latent(last))  # (N, d)
        inp = z[:, None, :].expand(-1, T, -1)  # (N, T, d)
        if self.time_features:
            inp = torch.cat(
                [inp, clock(T, self.time_features, x.dtype)[None].expand(N, -1, -1)], 2
            )  # (N, T, d + 2k)
        out, _ = self.decoder(inp)  # (N, T, H)
        return self.head(out)  # (N, T, C)
