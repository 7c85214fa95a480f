"""Figures of a gate trace (``grukit inspect`` and the ``grukit demo`` report): heatmaps of the
update and reset gates over time beside the input, and the histogram of hold durations.

Shapes: T time steps, C input channels, H hidden units. matplotlib is imported when a figure is
drawn (the ``apps`` extra).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_gates", "plot_holds", "unit_order"]


def _pyplot():
    from grukit._extras import require

    matplotlib = require("matplotlib", "apps", what="gate figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def unit_order(z: np.ndarray) -> np.ndarray:
    """(T, H) -> (H,): the units from the one holding most (highest mean z) to the least."""
    return np.argsort(-z.mean(0), kind="stable")


def plot_gates(
    path,
    signal: np.ndarray,
    panels: list[tuple[str, np.ndarray]],
    *,
    units: np.ndarray | None = None,
    title: str,
    signal_label: str = "input",
    channel_names: list[str] | None = None,
    markers: list[int] | None = None,
    first: int = 0,
    x_label: str = "time step",
    tick_labels: list[str] | None = None,
) -> None:
    """The input ``signal`` (T, C) on top, then one heatmap per ``(label, gate)`` panel, each gate
        (T, H) drawn units x time with its units in the order given (``units`` (H,): their numbers,
        for the axis), values 0 (dark) to 1 (bright); ``markers``: steps drawn as dashed lines across
        every panel; ``first``: the number of the first step on the time axis; ``tick_labels``: a label
    per step for the time axis (a text's characters). Written as PNG."""
    plt = _pyplot()
    T = signal.shape[0]
    H = max(g.shape[1] for _, g in panels)
    heights = [1.2] + [max(1.0, min(3.0, H / 16))] * len(panels)
    fig, axes = plt.subplots(
        len(panels) + 1,
        1,
        figsize=(10, 1.2 + 1.6 * sum(heights)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    axes = axes[:, 0]
    steps = first + np.arange(T)
    for c in range(signal.shape[1]):
        name = channel_names[c] if channel_names else None
        axes[0].plot(steps, signal[:, c], lw=1, label=name)
    if channel_names and len(channel_names) > 1:
        axes[0].legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel(signal_label)
    axes[0].set_title(title)
    for ax, (label, gate) in zip(axes[1:], panels):
        extent = (first - 0.5, first + T - 0.5, -0.5, gate.shape[1] - 0.5)  # cells on the steps
        image = ax.imshow(
            gate.T,
            aspect="auto",
            origin="lower",
            vmin=0,
            vmax=1,
            cmap="viridis",
            interpolation="nearest",
            extent=extent,
        )
        ax.set_ylabel(label)
        if units is not None and len(units) <= 16:
            ax.set_yticks(np.arange(len(units)), [str(u) for u in units], fontsize=7)
    for ax in axes:
        ax.set_xlim(first - 0.5, first + T - 0.5)
        for m in markers or []:
            ax.axvline(m, color="red", ls="--", lw=1)
    axes[-1].set_xlabel(x_label)
    if tick_labels is not None:
        axes[-1].set_xticks(steps, tick_labels, fontsize=7, fontfamily="monospace")
    fig.tight_layout(rect=(0, 0, 0.92, 1))  # room on the right for the one colour scale, 0 to 1
    fig.colorbar(image, cax=fig.add_axes((0.93, 0.1, 0.012, 0.6)), label="gate value")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_holds(path, lengths: np.ndarray, *, threshold: float, steps: int, title: str) -> None:
    """Histogram of hold durations (runs of steps with z > ``threshold``) over ``steps`` steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if len(lengths):
        bins = np.arange(1, max(int(lengths.max()), 1) + 2) - 0.5 if lengths.max() <= 60 else 40
        ax.hist(lengths, bins=bins, color="tab:blue")
    else:
        ax.text(0.5, 0.5, f"no unit ever has z > {threshold:g}", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"hold duration: consecutive steps with z > {threshold:g} (of {steps})")
    ax.set_ylabel("runs (all units)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
