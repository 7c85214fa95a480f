"""The model-agnostic training loop every application uses.

    result = Trainer(model, TrainConfig(epochs=20), loss_fn, out_dir="runs/x").fit(train, val)

``loss_fn(model, batch) -> (loss, n)`` returns the mean loss of a batch (a scalar tensor) and the
number of items it averages over. ``train`` and ``val`` are ``torch.utils.data.Dataset``s
(a ``collate`` attribute, if present, is the collate function; ``__getitems__`` is used for
batched fetching as ``DataLoader`` does).

Per epoch: a shuffled pass (the order depends only on the seed and the epoch, so a resumed run
sees the data a fresh run would), gradient clipping, the learning-rate schedule, validation,
a checkpoint (``out_dir/checkpoints``, see :mod:`grukit.train.checkpoint`), ``history.json`` and
``learning_curves.png``. Early stopping restores the best weights. Under ``torchrun`` the model
is wrapped in ``DistributedDataParallel`` and each process trains on its shard; only rank 0
writes files or prints. ``TrainConfig.max_time`` ends a run on a wall-clock budget, at a
checkpoint.

*Ordered* datasets (an ``ordered = True`` attribute) serve whole batches in a fixed order, as
truncated back-propagation through time over contiguous streams needs: each item is a batch, an
epoch reads them in order (``set_epoch(epoch)`` is called first, if the dataset has it, so an
epoch may be any slice of a longer pass), and under ``torchrun`` ``shard(rank, world_size)``
gives each process its own streams. A ``loss_fn`` with a ``begin_pass(training)`` method is told
when each training epoch and each evaluation pass starts (to reset a state it carries from batch
to batch).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from grukit._io import atomic_write_text
from grukit.train import checkpoint
from grukit.train.config import TrainConfig
from grukit.train.distributed import (
    Context,
    all_reduce_sum,
    broadcast_flag,
    broadcast_value,
    context,
    lost_peer,
    peer_loss_reason,
)

__all__ = ["Trainer", "TrainResult", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the model)."""


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int | None
    best_val_loss: float | None
    stopped: str  # "epochs", "early stopping", "time budget", "already complete"
    seconds: float
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        loss_fn: Callable,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        ctx: Context | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.loss_fn = loss_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume = resume
        self.ctx = ctx or context()
        self._log = log or (lambda s: print(s, file=sys.stderr, flush=True))

    # -- helpers -------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.ctx.is_main and self.config.progress != "off":
            self._log(text)

    def _bars(self) -> bool:
        if not self.ctx.is_main or self.config.progress == "off":
            return False
        return self.config.progress == "on" or sys.stderr.isatty()

    def _loader(self, data: Dataset, epoch: int, train: bool) -> DataLoader:
        c, ctx = self.config, self.ctx
        if getattr(data, "ordered", False):
            if train and hasattr(data, "set_epoch"):
                data.set_epoch(epoch)
            return DataLoader(
                data,
                batch_size=None,
                sampler=SequentialSampler(data),
                collate_fn=getattr(data, "collate", None),
            )
        if train and ctx.distributed:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(data, ctx.world_size, ctx.rank, shuffle=True, seed=c.seed)
            sampler.set_epoch(epoch)
        elif train:
            g = torch.Generator().manual_seed(c.seed * 100_003 + epoch)
            sampler = RandomSampler(data, generator=g)
        else:
            sampler = SequentialSampler(data)
        collate = getattr(data, "collate", None)
        return DataLoader(data, batch_size=c.batch_size, sampler=sampler, collate_fn=collate)

    def _schedule(self, optimizer):
        c = self.config
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(e, c.epochs) / c.epochs))
            )
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return None

    # -- the loop ------------------------------------------------------------------------------

    def fit(self, train: Dataset, val: Dataset | None = None) -> TrainResult:
        try:
            return self._fit(train, val)
        except RuntimeError as exc:
            if not self.ctx.distributed or isinstance(exc, TrainingError) or not lost_peer(exc):
                raise
            why = peer_loss_reason(exc)
            raise TrainingError(
                f"process {self.ctx.rank} of this {self.ctx.world_size}-process torchrun job lost another "
                f"process (stopped, killed or disconnected: {why}); the job cannot go on without it"
            ) from None

    def _fit(self, train: Dataset, val: Dataset | None) -> TrainResult:
        c, ctx = self.config, self.ctx
        if ctx.distributed and getattr(train, "ordered", False):
            train = train.shard(ctx.rank, ctx.world_size)
        if len(train) == 0:
            raise TrainingError("no training examples")
        random.seed(c.seed)
        np.random.seed(c.seed % 2**32)
        torch.manual_seed(c.seed)
        if c.deterministic:
            torch.use_deterministic_algorithms(True)
        model = self.model.to(ctx.device)
        net = model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = self._schedule(optimizer)

        ckpt_dir = self.out_dir / "checkpoints" if self.out_dir is not None else None
        history: list[dict] = []
        best_val, best_epoch, bad_epochs, start = math.inf, None, 0, 1
        best_state = None
        spent = 0.0  # seconds of earlier runs of this training (resumes)
        t0 = time.perf_counter()
        if self.resume and ckpt_dir is not None:
            restored = checkpoint.load(ckpt_dir, "last")
            if restored is not None:
                weights, state, meta = restored
                self._restore(model, weights, "last")
                optimizer.load_state_dict(state["optimizer"])
                if scheduler is not None and state.get("scheduler") is not None:
                    scheduler.load_state_dict(state["scheduler"])
                torch.set_rng_state(state["torch_rng"])
                history = json.loads(state["history"])
                best_val = state["best_val"]
                best_epoch = state["best_epoch"]
                bad_epochs = state["bad_epochs"]
                start = meta["epoch"] + 1
                spent = float(state.get("elapsed", sum(h["seconds"] for h in history)))
                best = checkpoint.load(ckpt_dir, "best")
                if best is not None:
                    best_state = best[0]
                more_time = state.get("stopped") == "time budget" and (
                    c.max_time is None or c.max_time > spent
                )
                if state.get("finished") and not more_time:
                    if best_state is not None:
                        self._restore(model, best_state, "best")
                    self.log(f"resume: the run in {self.out_dir} is already complete")
                    return TrainResult(
                        len(history), best_epoch, _finite(best_val), "already complete", 0.0, history
                    )
                self.log(f"resume: continuing after epoch {meta['epoch']} from {ckpt_dir / meta_name(meta)}")

        stopped = "epochs"
        deadline = None if c.max_time is None else t0 + c.max_time - spent
        for epoch in range(start, c.epochs + 1):
            e0 = time.perf_counter()
            if deadline is not None and e0 >= deadline:
                stopped = "time budget"
                self.log(f"time budget: {c.max_time:g} s spent before epoch {epoch}")
                break
            train_loss, seen, out_of_time = self._train_epoch(net, model, optimizer, train, epoch, deadline)
            val_loss = self._evaluate(model, val) if val is not None and len(val) else None
            lr = optimizer.param_groups[0]["lr"] * _budget_scale(c, deadline)  # the last step's
            if scheduler is not None:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(val_loss if val_loss is not None else train_loss)
                else:
                    scheduler.step()
            score = val_loss if val_loss is not None else train_loss
            improved = score < best_val
            if improved:
                best_val, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            seconds = time.perf_counter() - e0
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": lr,
                    "seconds": round(seconds, 3),
                    "samples": seen,
                    "samples_per_s": round(seen / seconds, 1),
                }
            )
            done = epoch == c.epochs or (c.patience is not None and bad_epochs >= c.patience) or out_of_time
            if out_of_time:
                stopped = "time budget"
            elif done and epoch < c.epochs:
                stopped = "early stopping"
            self._save(
                ckpt_dir,
                epoch,
                model,
                optimizer,
                scheduler,
                history,
                best_val,
                best_epoch,
                bad_epochs,
                improved,
                done,
                stopped,
                spent + time.perf_counter() - t0,
            )
            eta = (c.epochs - epoch) * (time.perf_counter() - t0) / (epoch - start + 1)
            if deadline is not None:
                eta = min(eta, max(deadline - time.perf_counter(), 0.0))
            self.log(
                f"epoch {epoch:>3}/{c.epochs}  train {train_loss:.4f}"
                + (f"  val {val_loss:.4f}" if val_loss is not None else "")
                + (" *" if improved else "  ")
                + f"  lr {lr:.2e}  {seconds:.1f}s  {seen / seconds:,.0f} samples/s"
                + ("" if done else f"  ETA {eta:.0f}s")
            )
            if done:
                break
        if best_state is not None and val is not None:
            self._restore(model, best_state, "best")
        if stopped == "early stopping":
            self.log(
                f"early stopping: no better validation loss for {c.patience} epochs; best epoch {best_epoch}"
            )
        elif stopped == "time budget":
            self.log(f"time budget of {c.max_time:g} s reached; best epoch {best_epoch}")
        return TrainResult(
            len(history), best_epoch, _finite(best_val), stopped, time.perf_counter() - t0, history
        )

    def _autocast(self):
        """``precision="bf16"``: bfloat16 autocast around one step's forward pass and loss, and
        only that, as PyTorch's mixed-precision recipe has it (backward and optimizer step
        outside). In an exploratory run (not kept as a script), one autocast region around a
        whole ``fit`` of the character language model gave a validation loss inside the run far
        below what the same weights scored after it; per-step regions agreed."""
        return torch.autocast(
            self.ctx.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )

    def _begin_pass(self, training: bool) -> None:
        hook = getattr(self.loss_fn, "begin_pass", None)
        if hook is not None:
            hook(training)

    def _train_epoch(self, net, model, optimizer, data, epoch, deadline) -> tuple[float, int, bool]:
        """The epoch's mean loss, its item count, and whether the time budget ended it early."""
        c, ctx = self.config, self.ctx
        loader = self._loader(data, epoch, train=True)
        steps = len(loader) if c.steps_per_epoch is None else min(len(loader), c.steps_per_epoch)
        bar = None
        if self._bars():
            from grukit._extras import require

            tqdm = require("tqdm.auto", "apps", what="progress bars (progress='on')").tqdm
            bar = tqdm(
                total=steps,
                desc=f"epoch {epoch}/{c.epochs}",
                unit="batch",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        net.train()
        self._begin_pass(True)
        done = (epoch - 1) * steps  # optimizer steps before this epoch: the warm-up's clock
        total, count, t = 0.0, 0, time.perf_counter()
        out_of_time = False
        try:
            for step, batch in enumerate(loader):
                if step >= steps:
                    break
                optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    loss, n = self.loss_fn(net, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                        "try a lower learning rate or a smaller clip_grad_norm"
                    )
                loss.backward()
                if c.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_grad_norm)
                warm = min(1.0, (done + step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
                budget = _budget_scale(c, deadline)
                if c.schedule == "budget":  # rank 0's clock: every process steps at one rate
                    budget = broadcast_value(budget, ctx)
                _step(optimizer, warm * budget)
                total += loss.item() * n
                count += n
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{total / count:.4f}", rate=f"{count / (time.perf_counter() - t):,.0f}/s"
                    )
                if deadline is not None and step + 1 < steps:
                    # every process stops after the same step (rank 0's clock decides)
                    out_of_time = broadcast_flag(time.perf_counter() >= deadline, ctx)
                    if out_of_time:
                        break
        finally:
            if bar is not None:
                bar.close()
        total, count = all_reduce_sum([total, count], ctx)
        return total / max(count, 1), int(count), out_of_time

    @torch.no_grad()
    def _evaluate(self, model, data) -> float:
        """Every process evaluates the whole validation set: the same number everywhere."""
        model.eval()
        self._begin_pass(False)
        total, count = 0.0, 0
        for batch in self._loader(data, 0, train=False):
            with self._autocast():
                loss, n = self.loss_fn(model, batch)
            total += loss.item() * n
            count += n
        return total / max(count, 1)

    def _save(
        self,
        ckpt_dir,
        epoch,
        model,
        optimizer,
        scheduler,
        history,
        best_val,
        best_epoch,
        bad_epochs,
        improved,
        finished,
        stopped,
        elapsed,
    ) -> None:
        if ckpt_dir is None or not self.ctx.is_main:
            return
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(history),
            "best_val": best_val,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
            "finished": finished,
            "stopped": stopped,
            "elapsed": elapsed,
        }
        meta = {
            "epoch": epoch,
            "train_loss": history[-1]["train_loss"],
            "val_loss": history[-1]["val_loss"],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        checkpoint.save(ckpt_dir, epoch=epoch, model=model, trainer_state=state, meta=meta, best=improved)
        atomic_write_text(self.out_dir / "history.json", json.dumps(history, indent=1))
        from grukit._extras import MissingDependency
        from grukit.train.plots import learning_curves

        try:
            learning_curves(history, self.out_dir / "learning_curves.png")
        except MissingDependency:
            pass  # plots are optional; history.json has the numbers

    def _restore(self, model, weights: dict, which: str) -> None:
        try:
            model.load_state_dict({k: v.to(self.ctx.device) for k, v in weights.items()})
        except RuntimeError as exc:
            raise TrainingError(
                f"the {which} checkpoint does not fit this model: {str(exc).splitlines()[0]}"
            ) from None


def meta_name(meta: dict) -> str:
    return f"epoch-{meta['epoch']:04d}"


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def _budget_scale(c, deadline: float | None) -> float:
    """The "budget" schedule's factor on the learning rate now: the share of ``max_time`` still
    left (1 at the start of the run, resumes included, 0 when it runs out); 1 for the others."""
    if c.schedule != "budget" or deadline is None:
        return 1.0
    return min(1.0, max(0.0, (deadline - time.perf_counter()) / c.max_time))


def _step(optimizer, scale: float) -> None:
    """``optimizer.step()`` at ``scale`` times each group's learning rate (the warm-up), which is
    then restored: the schedulers own the unscaled value (ReduceLROnPlateau multiplies it)."""
    if scale >= 1.0:
        optimizer.step()
        return
    groups = optimizer.param_groups
    saved = [g["lr"] for g in groups]
    for g in groups:
        g["lr"] = g["lr"] * scale
    try:
        optimizer.step()
    finally:
        for g, lr in zip(groups, saved):
            g["lr"] = lr
