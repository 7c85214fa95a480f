"""What the training subcommands (``forecast``, ``anomaly``) share: the help formatter, the
training options, the progress log, and reading a trained model's folder. (Their output folders
and files: :mod:`grukit.cli._folders`.)"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from grukit.cli._errors import UserError, is_user_error, one_line


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and an option's default in its help where that says something:
    not where the help already gives it in words ("default: from the data"), not for a default of
    None or "" (the option is off or chosen from the data), and not for an on/off flag, whose stored
    default belongs to the pair it is in (``--unidirectional`` would read "default: True")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default in (None, "")
            or isinstance(action.default, bool)
            or re.search(r"\bdefault\b", text, re.IGNORECASE)
        ):
            return action.help
        return super()._get_help_string(action)


def add_train_args(p, epochs: int = 30, helps: dict[str, str] | None = None) -> None:
    """The training options, in their own group; ``helps`` replaces an option's help by its
    ``dest`` (what a batch or an epoch is differs between applications)."""
    helps = dict(helps or {})  # a copy: the names are ticked off as their options are added
    g = p.add_argument_group("training")

    def add(*flags, **kw):
        action = g.add_argument(*flags, **kw)  # argparse names its dest
        action.help = helps.pop(action.dest, action.help)

    add("--epochs", type=int, default=epochs, help="most epochs (early stopping may end sooner)")
    add("--batch-size", type=int, default=256, help="windows per batch (per process)")
    add("--lr", type=float, default=3e-3, help="AdamW learning rate (cosine decay)")
    add("--patience", type=int, default=5, help="early stopping patience in epochs (0: off)")
    add("--steps-per-epoch", type=int, default=None, help="cap on batches per epoch (0: all)")
    add(
        "--warmup-steps",
        type=int,
        default=0,
        help="linear learning-rate warm-up over this many optimizer steps (0: off)",
    )
    add("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    add("--seed", type=int, default=0, help="random seed")
    add("--deterministic", action="store_true", help="deterministic kernels (slower)")
    add(
        "--precision",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: bfloat16 mixed precision (autocast; pays on CPUs with AVX512-BF16 or AMX)",
    )
    add("--quiet", action="store_true", help="no progress output")
    add("--resume", action="store_true", help="continue the interrupted run in --out")
    if helps:
        raise ValueError(f"add_train_args: no training option named {sorted(helps)}")


def train_config(args):
    from grukit.train.config import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience or None,
        steps_per_epoch=args.steps_per_epoch or None,
        clip_grad_norm=args.clip or None,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        deterministic=args.deterministic,
        progress="off" if args.quiet else "auto",
        precision=args.precision,
    )


def log_fn(args):
    from grukit.train.distributed import context

    quiet = getattr(args, "quiet", False) or not context().is_main
    return (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))


def load_model(cls, folder: str):
    """``cls.load(folder)`` and the run's saved ``config.json`` (empty when absent or unreadable)."""
    try:
        model = cls.load(folder)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        raise UserError(f"cannot read the model: {one_line(exc)}") from None
    saved = {}  # the run's config.json; empty when absent or unreadable
    path = Path(folder) / "config.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            pass
    return model, saved
