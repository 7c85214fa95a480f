"""Reused memory for the ``cpu`` backend's largest per-call array: the training workspace.

glibc serves every allocation over 32 MiB (its largest mmap threshold on 64-bit) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so such an array is page-faulted in again,
4 KiB at a time, at every call: the saved workspace (T, N, 5H..7H) is 131 MB at N=64, T=200,
H=512, and profiles of a training call there spent about a quarter of its time in the kernel's
page-fault handling (``docs/performance.md``). :func:`empty` hands out such arrays from blocks it
keeps: a block is leased to one tensor and comes back to the pool when that tensor (and every
view of it) is gone, so its pages stay mapped and warm between calls.

A lease is an object exposing ``__array_interface__`` over the block's memory: NumPy keeps it as
the base of the array it makes, ``torch.from_numpy`` keeps that array alive for as long as the
tensor's storage lives, and the lease's ``__del__`` returns the block. At most
:data:`KEEP_BYTES` of free blocks are kept (the largest first); :func:`release` drops them all.
``GRUKIT_CPU_POOL=0`` turns the pool off (fresh tensors, as before).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch
from torch import Tensor

__all__ = ["MIN_BYTES", "KEEP_BYTES", "empty", "release", "free_bytes"]

MIN_BYTES = 32 << 20  # smaller arrays come from glibc's heap, whose pages stay mapped anyway
KEEP_BYTES = 1 << 30  # free blocks kept at most

_lock = threading.RLock()  # re-entrant: a garbage collection inside may free a lease
_free: list[np.ndarray] = []  # free blocks (uint8), largest first


class _Lease:
    """One block leased as an array of ``shape`` and ``dtype``; returns it when collected."""

    __slots__ = ("block", "__array_interface__")

    def __init__(self, block: np.ndarray, shape: tuple[int, ...], dtype: np.dtype):
        self.block = block
        self.__array_interface__ = {
            "data": (block.ctypes.data, False),
            "shape": shape,
            "typestr": dtype.str,
            "version": 3,
        }

    def __del__(self):
        try:
            _give_back(self.block)
        except Exception:  # at interpreter shutdown the module may be half gone: let it go
            pass


def _give_back(block: np.ndarray) -> None:
    with _lock:
        _free.append(block)
        _free.sort(key=lambda b: -b.nbytes)
        while sum(b.nbytes for b in _free) > KEEP_BYTES:
            _free.pop()  # the smallest goes first


def _take(nbytes: int) -> np.ndarray:
    """A free block of at least ``nbytes`` and under twice that, or a new one."""
    with _lock:
        fits = [b for b in _free if nbytes <= b.nbytes < 2 * nbytes]
        if fits:
            best = fits[-1]  # the smallest that fits
            _free[:] = [b for b in _free if b is not best]
            return best
    return np.empty(nbytes, np.uint8)


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor of ``shape`` and ``dtype`` (float32 or float64), from the pool when
    it is at least :data:`MIN_BYTES` (else a fresh one). Its storage cannot be resized."""
    if dtype not in (torch.float32, torch.float64) or not _on():
        return torch.empty(shape, dtype=dtype)
    np_dtype = np.dtype(np.float32 if dtype == torch.float32 else np.float64)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if nbytes < MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.asarray(_Lease(_take(nbytes), tuple(shape), np_dtype)))


def release() -> None:
    """Drop every free block (leased ones come back, and are kept, when their tensors go)."""
    with _lock:
        _free.clear()


def free_bytes() -> int:
    with _lock:
        return sum(b.nbytes for b in _free)


def _on() -> bool:
    return os.environ.get("GRUKIT_CPU_POOL", "1") != "0"
