"""A training run's learning curve as a Markdown table, from the ``history.json`` the trainer
writes into its output folder (docs/text.md's tables of long runs come from it).

    .venv/bin/python scripts/history_table.py RUN_DIR [--every K] [--unit bpc]

One row per epoch (or every K-th, the last always kept): the epoch, the items seen so far (for
the language model, characters), the seconds summed over the epochs so far (the trainer's
per-epoch clock: training, validation and the checkpoint, pauses included), the training and
validation loss (``--unit`` names it), the learning rate at the epoch's last step and the
epoch's rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(history: list[dict], every: int) -> list[dict]:
    """The epochs to show: every ``every``-th and the last, each with running totals."""
    out, seen, seconds = [], 0, 0.0
    for k, h in enumerate(history):
        seen += h["samples"]
        seconds += h["seconds"]
        if (k + 1) % every == 0 or k == len(history) - 1:
            out.append({**h, "seen": seen, "elapsed": seconds})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run's output folder (holding history.json)")
    p.add_argument("--every", type=int, default=1, help="show every K-th epoch (and the last)")
    p.add_argument("--unit", default="loss", help="what the losses are, for the header (e.g. bpc)")
    args = p.parse_args()
    if args.every < 1:
        p.error(f"--every: expected a positive number of epochs, got {args.every}")
    path = args.run / "history.json"
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        p.error(f"cannot read {path}: {exc}")
    if not history:
        p.error(f"{path} holds no epoch yet")
    u = args.unit
    print(f"| epoch | seen | seconds | train {u} | valid {u} | learning rate | per second |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows(history, args.every):
        valid = "" if r["val_loss"] is None else f"{r['val_loss']:.3f}"
        print(
            f"| {r['epoch']} | {r['seen'] / 1e6:.1f}M | {r['elapsed']:,.0f} | {r['train_loss']:.3f} | "
            f"{valid} | {r['lr']:.2e} | {r['samples_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
