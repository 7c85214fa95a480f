"""Training windows sampled across many series, scaled per window.

A window ending at ``e`` in series ``s`` is the input ``x[s][e-L:e]`` (left-padded with zeros and
a mask when the series starts later) and the target ``x[s][e:e+h]``. Both are divided by the
window's scale, the mean absolute value of its valid input points (1 where that is 0), so one
model serves series of any level.

Shapes: B windows, L input steps, h target steps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["WindowDataset", "make_inputs", "window_ends"]


def make_inputs(series: list[np.ndarray], which: np.ndarray, ends: np.ndarray, L: int, flat=None):
    """Scaled, masked input windows: x (B, L), mask (B, L), scale (B,), for windows ending at
    ``ends`` (exclusive) of ``series[which]``."""
    if flat is None:
        flat, offsets = _flatten(series)
    else:
        flat, offsets = flat
    pos = ends[:, None] - L + np.arange(L)[None, :]  # (B, L)
    mask = pos >= 0
    idx = offsets[which][:, None] + np.where(mask, pos, 0)
    x = np.where(mask, flat[idx], 0.0)  # (B, L)
    count = np.maximum(mask.sum(1), 1)
    scale = np.abs(x).sum(1) / count  # (B,)
    scale = np.where(scale > 0, scale, 1.0)
    return x / scale[:, None], mask.astype(np.float64), scale


def _flatten(series: list[np.ndarray]):
    offsets = np.zeros(len(series), dtype=np.int64)
    np.cumsum([len(s) for s in series[:-1]], out=offsets[1:])
    return np.concatenate(series).astype(np.float64), offsets


def window_ends(lengths: list[int], h: int, min_input: int, last_end: list[int] | None = None):
    """(M, 2) array of (series, end) for every window with at least ``min_input`` input points
    and its whole target before ``last_end[s]`` (default: the series' length)."""
    rows = []
    for s, n in enumerate(lengths):
        stop = (n if last_end is None else last_end[s]) - h  # last valid end
        if stop >= min_input:
            e = np.arange(min_input, stop + 1)
            rows.append(np.stack([np.full_like(e, s), e], 1))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


class WindowDataset(Dataset):
    """Windows ``(series, end)`` over ``series``; a batch is ``(x, mask, y, scale)`` tensors
    (B, L), (B, L), (B, h), (B,), fetched in one vectorised step."""

    def __init__(
        self,
        series: list[np.ndarray],
        windows: np.ndarray,
        L: int,
        h: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.series = series
        self.windows = windows
        self.L, self.h, self.dtype = L, h, dtype
        self._flat = _flatten(series)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitems__(self, indices):
        w = self.windows[np.asarray(indices, dtype=np.int64)]
        which, ends = w[:, 0], w[:, 1]
        x, mask, scale = make_inputs(self.series, which, ends, self.L, self._flat)
        flat, offsets = self._flat
        idx = offsets[which][:, None] + ends[:, None] + np.arange(self.h)[None, :]  # (B, h)
        y = flat[idx] / scale[:, None]
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.dtype)  # noqa: E731
        return t(x), t(mask), t(y), t(scale)

    def __getitem__(self, i):
        return tuple(a[0] for a in self.__getitems__([i]))

    @staticmethod
    def collate(batch):
        return batch
