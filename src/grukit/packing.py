"""Between ``PackedSequence`` and the padded + lengths form every backend works on.

A packed batch stores its rows time-major, at step ``t`` the ``batch_sizes[t]`` longest sequences
(in ``sorted_indices`` order). Backends instead take a padded (T, N, F) tensor in the caller's
batch order with per-sequence ``lengths`` (N,); these helpers convert exactly, keeping the
``PackedSequence`` metadata so the output packs the same way the input did.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

__all__ = ["packed_index", "unpack", "repack", "flip_within"]


def packed_index(packed: PackedSequence) -> tuple[Tensor, Tensor, Tensor]:
    """``(t_idx, b_idx, lengths)``: packed row ``k`` is step ``t_idx[k]`` of sequence ``b_idx[k]``
    (caller's batch order); ``lengths`` (N,) int64 on the data's device."""
    batch_sizes = packed.batch_sizes  # (T,) int64 on CPU
    T, N = batch_sizes.numel(), int(batch_sizes[0])
    t_idx = torch.repeat_interleave(torch.arange(T), batch_sizes)  # (rows,)
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes  # (T,)
    rank = torch.arange(t_idx.numel()) - starts[t_idx]  # (rows,) position in sorted order
    b_idx = rank if packed.sorted_indices is None else packed.sorted_indices.cpu()[rank]
    lengths = torch.zeros(N, dtype=torch.int64)
    lengths[b_idx] = t_idx + 1  # the last write per sequence is its longest step
    device = packed.data.device
    return t_idx.to(device), b_idx.to(device), lengths.to(device)


def unpack(packed: PackedSequence) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(padded, lengths, t_idx, b_idx)`` with ``padded``: (T, N, F), zero past each length."""
    t_idx, b_idx, lengths = packed_index(packed)
    data = packed.data  # (rows, F)
    T, N = packed.batch_sizes.numel(), lengths.numel()
    padded = data.new_zeros(T, N, data.shape[-1])  # (T, N, F)
    padded = padded.index_put((t_idx, b_idx), data)
    return padded, lengths, t_idx, b_idx


def repack(padded: Tensor, like: PackedSequence, t_idx: Tensor, b_idx: Tensor) -> PackedSequence:
    """Pack ``padded`` (T, N, F) with the layout of ``like``."""
    data = padded[t_idx, b_idx]  # (rows, F)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def flip_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, N, F) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    src = torch.where(t < lengths, lengths - 1 - t, t)  # (T, N)
    return x.gather(0, src.unsqueeze(-1).expand_as(x))  # (T, N, F)
