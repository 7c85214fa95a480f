"""The language model's network: embedding -> ``grukit.GRU`` -> output layer.

Shapes: N streams (batch), T steps, V vocabulary, E embedding size, H hidden, L layers.

    e_t = Embedding(x_t)                      (N, T, E), dropout ``embed_dropout`` in training
    h_t = GRU(e_t, h_{t-1})                   (N, T, H), the variants of grukit.GRU
    o_t = dropout(h_t)                        ``output_dropout`` in training
    logits_t = W_out (P o_t) + b_out          (N, T, V); P (E, H) only when tying with E != H

With ``tie_weights`` the output matrix is the embedding matrix (Inan et al. 2017; Press & Wolf
2017): fewer parameters and, on small corpora, better bits per character.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from grukit.modules import GRU
from grukit.train.config import ConfigError

__all__ = ["LMConfig", "LMNet", "LEVELS"]

LEVELS = ("char", "byte")


@dataclass
class LMConfig:
    """The network and its token level. Every field is saved with the model.

    Attributes:
        level: "char" (the training text's characters) or "byte" (the 256 UTF-8 byte values).
        embedding_size: E; 0 means "the hidden size" (what weight tying wants).
        hidden_size: H of every layer.
        num_layers: L stacked GRU layers.
        reset_after: the GRU formulation (False: the spec's; True: PyTorch's and haste's).
        layer_norm, zoneout, recurrent_dropout, weight_dropout: grukit.GRU's variants.
        dropout: between GRU layers (torch.nn.GRU's ``dropout``).
        embed_dropout, output_dropout: on the embedding output and on the last layer's output.
        tie_weights: the output layer reuses the embedding matrix.
        bptt: steps per truncated back-propagation window in training.
        unknown: in char mode, the character that stands for characters unseen in training
            (None: an unseen character is an error).
    """

    level: str = "char"
    embedding_size: int = 0
    hidden_size: int = 512
    num_layers: int = 1
    reset_after: bool = False
    layer_norm: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0
    dropout: float = 0.0
    embed_dropout: float = 0.0
    output_dropout: float = 0.0
    tie_weights: bool = True
    bptt: int = 128
    unknown: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        for name in ("hidden_size", "num_layers", "bptt"):
            _positive_int(name, getattr(self, name))
        if (
            isinstance(self.embedding_size, bool)
            or not isinstance(self.embedding_size, int)
            or self.embedding_size < 0
        ):
            raise ConfigError(f"embedding_size must be a non-negative integer, got {self.embedding_size!r}")
        for name in (
            "zoneout",
            "recurrent_dropout",
            "weight_dropout",
            "dropout",
            "embed_dropout",
            "output_dropout",
        ):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or not 0 <= v < 1
            ):
                raise ConfigError(f"{name} must be a probability in [0, 1), got {v!r}")
        for name in ("reset_after", "layer_norm", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.unknown is not None and (not isinstance(self.unknown, str) or len(self.unknown) != 1):
            raise ConfigError(f"unknown must be one character or None, got {self.unknown!r}")
        if self.unknown is not None and self.level == "byte":
            raise ConfigError("unknown is for level='char'; level='byte' has no unknown symbols")

    @property
    def embed(self) -> int:
        """E, with 0 resolved to H."""
        return self.embedding_size or self.hidden_size


def _positive_int(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")


class LMNet(nn.Module):
    """The network of :class:`~grukit.apps.text.GRULanguageModel` for a vocabulary of V tokens."""

    def __init__(self, cfg: LMConfig, vocab_size: int) -> None:
        super().__init__()
        E, H = cfg.embed, cfg.hidden_size
        self.cfg = cfg
        self.embedding = nn.Embedding(vocab_size, E)
        self.gru = GRU(
            E,
            H,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout,
            reset_after=cfg.reset_after,
            layer_norm=cfg.layer_norm,
            zoneout=cfg.zoneout,
            recurrent_dropout=cfg.recurrent_dropout,
            weight_dropout=cfg.weight_dropout,
        )
        self.proj = nn.Linear(H, E, bias=False) if cfg.tie_weights and E != H else None
        self.head = nn.Linear(E if cfg.tie_weights else H, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        nn.init.zeros_(self.head.bias)
        self.embed_drop = nn.Dropout(cfg.embed_dropout)
        self.out_drop = nn.Dropout(cfg.output_dropout)

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x`` (N, T) token ids -> logits (N, T, V) and the state after the last step (L, N, H)."""
        e = self.embed_drop(self.embedding(x))  # (N, T, E)
        y, h_n = self.gru(e, h)  # (N, T, H), (L, N, H)
        y = self.out_drop(y)
        if self.proj is not None:
            y = self.proj(y)  # (N, T, E)
        return self.head(y), h_n  # (N, T, V)

    def init_state(self, n: int) -> Tensor:
        """Zeros (L, N, H) in the network's dtype."""
        w = self.embedding.weight
        return torch.zeros(self.cfg.num_layers, n, self.cfg.hidden_size, dtype=w.dtype, device=w.device)
