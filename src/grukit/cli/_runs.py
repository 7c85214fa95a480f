"""What the training subcommands (``forecast``, ``anomaly``) share: the help formatter and
training options, the run folder (new or empty; ``--resume`` with the same settings), model
folders and output files, and the errors reported in one line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every option's default in its help."""


def add_train_args(p, epochs: int = 30) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help="most epochs (early stopping may end sooner)")
    g.add_argument("--batch-size", type=int, default=256, help="windows per batch (per process)")
    g.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (cosine decay)")
    g.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (0: off)")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="cap on batches per epoch (0: all)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")


def train_config(args):
    from grukit.train.config import TrainConfig

    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        patience=args.patience or None, steps_per_epoch=args.steps_per_epoch or None,
        clip_grad_norm=args.clip or None, seed=args.seed, deterministic=args.deterministic,
        progress="off" if args.quiet else "auto",
    )


def prepare_out(out: Path, resume: bool, config: dict, ctx) -> None:
    """A new or empty folder; with --resume, the same folder with the same configuration. Every
    process checks before rank 0 writes anything."""
    from grukit.train.distributed import barrier

    check_out(out, resume, config)
    barrier(ctx)
    if not resume and ctx.is_main:
        from grukit._io import atomic_write_text

        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config, indent=1))
    barrier(ctx)


def check_out(out: Path, resume: bool, config: dict) -> None:
    from grukit.cli.main import UserError

    saved = out / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run to resume (no config.json)")
        try:
            old = json.loads(saved.read_text())
        except ValueError as exc:
            raise UserError(f"--resume: {saved} is unreadable ({exc})") from None
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k)
                         and k not in ("resume", "quiet"))
        if changed:
            raise UserError(f"--resume: the settings differ from the run in {out}: {', '.join(changed)}")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty; choose a new --out (nothing is overwritten) "
                        "or pass --resume to continue the run in it")


def log_fn(args):
    from grukit.train.distributed import context

    quiet = getattr(args, "quiet", False) or not context().is_main
    return (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))


def errors():
    from grukit.data.series import DataError
    from grukit.train.checkpoint import CheckpointError
    from grukit.train.config import ConfigError
    from grukit.train.trainer import TrainingError

    return (DataError, ConfigError, TrainingError, CheckpointError, ImportError)


def check_output_file(out: Path, force: bool) -> None:
    """An output file that may be written: new (or ``--force``), in an existing folder."""
    from grukit.cli.main import UserError

    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"no such folder: {out.parent}")


def load_model(cls, folder: str):
    """``cls.load(folder)`` and the run's saved ``config.json`` (empty when absent or unreadable)."""
    from grukit.cli.main import UserError

    try:
        model = cls.load(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot read the model: {exc}") from None
    saved = {}
    path = Path(folder) / "config.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
    return model, saved


