"""Truncated back-propagation through time over contiguous streams (char-rnn, AWD-LSTM).

The token sequence (length M) is cut into S streams of equal length L = M // S (the last
M - S L tokens are dropped), stacked as rows of a (S, L) matrix. Window w holds the inputs
``data[:, w B : w B + B]`` and the targets one step later, B = ``bptt`` (the last window may
be shorter). Windows are read in order, the hidden state carried from each to the next and
detached at the boundary (the gradient is truncated, the state is not), so every row sees its
stream as one long sequence.

An epoch may be shorter than a pass: with ``windows_per_epoch`` k, epoch e reads windows
(e - 1) k ... e k - 1 modulo the number of windows W, so a pass over a large corpus spans several
epochs (each validated and checkpointed) and resuming at epoch e reads what an uninterrupted run
would. The state restarts from zeros at window 0 and at the start of every epoch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["StreamBatches", "TBPTTLoss"]


class StreamBatches(Dataset):
    """Ordered batches ``(x, y, first)`` of a token sequence: ``x``, ``y`` (S, T) int64, ``first``
    True for window 0 (the state starts over). See the module docstring."""

    ordered = True

    def __init__(self, ids: np.ndarray, streams: int, bptt: int, windows_per_epoch: int | None = None):
        ids = np.asarray(ids, dtype=np.int64)
        length = len(ids) // streams
        if length < 2:
            raise ValueError(f"{len(ids)} tokens cannot fill {streams} streams of at least 2 tokens")
        self._rows = ids[: streams * length].reshape(streams, length)  # (S, L)
        self.bptt = bptt
        self.windows = math.ceil((length - 1) / bptt)  # W
        self.windows_per_epoch = windows_per_epoch
        self._epoch = 1

    @property
    def streams(self) -> int:
        return self._rows.shape[0]

    @property
    def tokens(self) -> int:
        """The number of targets in one pass: S (L - 1)."""
        return self._rows.shape[0] * (self._rows.shape[1] - 1)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def shard(self, rank: int, world_size: int) -> StreamBatches:
        """Streams ``rank``, ``rank + world_size``, ... (a process's share under torchrun)."""
        if self.streams < world_size:
            raise ValueError(f"{self.streams} streams cannot be shared by {world_size} processes")
        part = StreamBatches.__new__(StreamBatches)
        part._rows = self._rows[rank::world_size]
        part.bptt, part.windows, part.windows_per_epoch, part._epoch = (
            self.bptt,
            self.windows,
            self.windows_per_epoch,
            self._epoch,
        )
        return part

    def __len__(self) -> int:
        return self.windows if self.windows_per_epoch is None else self.windows_per_epoch

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        w = (
            i
            if self.windows_per_epoch is None
            else ((self._epoch - 1) * self.windows_per_epoch + i) % self.windows
        )
        a = w * self.bptt
        b = min(a + self.bptt, self._rows.shape[1] - 1)
        x = torch.from_numpy(self._rows[:, a:b].copy())  # (S, T)
        y = torch.from_numpy(self._rows[:, a + 1 : b + 1].copy())  # (S, T)
        return x, y, w == 0 or i == 0


class TBPTTLoss:
    """The trainer's loss for :class:`StreamBatches`: mean cross-entropy in bits per token, the
    hidden state carried between the batches of a pass (``begin_pass`` and ``first`` reset it)."""

    def __init__(self) -> None:
        self.state: torch.Tensor | None = None

    def begin_pass(self, training: bool) -> None:
        self.state = None

    def __call__(self, net, batch):
        x, y, first = batch
        if first:
            self.state = None
        logits, h = net(x, self.state)  # (S, T, V), (L, S, H)
        self.state = h.detach()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) / math.log(2)
        return loss, y.numel()
