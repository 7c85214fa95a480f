"""Learning-curve plots (matplotlib, imported on first use, headless backend)."""

from __future__ import annotations

import os

from grukit._io import atomic_write


def pyplot():
    """matplotlib's pyplot on the Agg backend, or an ImportError naming the extra."""
    from grukit._extras import require

    matplotlib = require("matplotlib", "apps", what="plots")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    """Lay out ``fig``, write it to ``path`` as PNG atomically, and close it."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    pyplot().close(fig)


def learning_curves(history: list[dict], path: str | os.PathLike, title: str = "learning curves") -> None:
    """Training and validation loss per epoch (log scale when the losses are positive), and the
    learning rate, as a PNG written atomically."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax, ax_lr) = plt.subplots(
        2, 1, figsize=(6.4, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot(epochs, [h["train_loss"] for h in history], marker=".", label="train")
    if any(h.get("val_loss") is not None for h in history):
        ax.plot(epochs, [h.get("val_loss") for h in history], marker=".", label="validation")
        best = min((h for h in history if h.get("val_loss") is not None), key=lambda h: h["val_loss"])
        ax.axvline(best["epoch"], color="grey", lw=0.8, ls=":", label=f"best (epoch {best['epoch']})")
    losses = [h["train_loss"] for h in history] + [
        h["val_loss"] for h in history if h.get("val_loss") is not None
    ]
    if losses and min(losses) > 0:
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    ax_lr.plot(epochs, [h["lr"] for h in history], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    ax_lr.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)
