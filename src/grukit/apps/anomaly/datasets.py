"""The training data the trainer reads: windows of a standardised signal, or whole sequences.

Both return whole batches from ``__getitems__`` (one gather instead of a Python loop per item)
and pass them through ``collate`` unchanged. Shapes: a signal (n, C), B items per batch, W points
per window.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["WindowDataset", "SequenceDataset"]


class WindowDataset(Dataset):
    """Random-access windows of ``length`` points starting at ``starts`` of a (n, C) signal."""

    def __init__(self, x: np.ndarray, starts: np.ndarray, length: int) -> None:
        self.x = torch.from_numpy(x.astype(np.float32))  # (n, C)
        self.starts, self.length = starts, length

    def __len__(self):
        return len(self.starts)

    def __getitems__(self, idx):
        s = torch.from_numpy(self.starts[np.asarray(idx)])
        pos = s[:, None] + torch.arange(self.length)[None, :]  # (B, W)
        return (self.x[pos],)  # (B, W, C)

    @staticmethod
    def collate(batch):
        return batch


class SequenceDataset(Dataset):
    """Random-access sequences of a (N, T, C) array."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.from_numpy(x.astype(np.float32))  # (N, T, C)

    def __len__(self):
        return len(self.x)

    def __getitems__(self, idx):
        return (self.x[torch.as_tensor(idx)],)  # (B, T, C)

    @staticmethod
    def collate(batch):
        return batch
