"""Data-parallel training on PyTorch's own engine: ``torchrun --nproc_per_node=N`` sets
``RANK``/``WORLD_SIZE``; this module joins the process group (gloo on CPU, NCCL on GPU) and says
who may write files (rank 0 only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "Context",
    "context",
    "all_reduce_sum",
    "broadcast_flag",
    "broadcast_value",
    "barrier",
    "lost_peer",
    "peer_loss_reason",
]


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context(device: str | torch.device | None = None) -> Context:
    """The current process's place in the job; joins the process group on first call under
    ``torchrun`` (gloo for CPU, NCCL for CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() and world > 1 else "cpu"
    device = torch.device(device)
    if world <= 1:
        return Context(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Context(rank, dist.get_world_size(), device)


def all_reduce_sum(values: list[float], ctx: Context) -> list[float]:
    """Sums ``values`` over all processes (identity in a single process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's ``flag`` on every process (so all stop together)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor(
        [1 if flag else 0], dtype=torch.int64, device=ctx.device if ctx.device.type == "cuda" else "cpu"
    )
    dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_value(value: float, ctx: Context) -> float:
    """Rank 0's ``value`` on every process (a clock-driven quantity all must share)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return float(t.item())


def barrier(ctx: Context) -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


# what gloo's and the c10d store's errors say when another process of the job is gone
_PEER_GONE = ("gloo/transport", "Connection reset by peer", "Connection closed by peer", "Broken pipe")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc``, raised in a distributed job, says a collective failed because another
    process stopped (killed, crashed) or lost its connection."""
    dist_error = getattr(dist, "DistError", None)  # torch >= 2.1: NCCL's and the store's errors
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _PEER_GONE)


def peer_loss_reason(exc: BaseException) -> str:
    """What a ``lost_peer`` error says happened, in a few words: the socket's complaint, else
    its first line (at most 160 characters)."""
    text = str(exc)
    for sign in _PEER_GONE[1:]:
        if sign in text:
            return sign
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:160]
