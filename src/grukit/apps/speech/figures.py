"""Figures of the speech application, each written as a PNG (atomically) whose path is returned:

* :func:`confusion_figure`: the confusion matrix, counts in the cells, accuracy in the title;
* :func:`per_speaker_figure`: accuracy per speaker, one group of bars per speaker and one bar per
  model, the first model's worst speaker marked;
* :func:`alignment_figure`: a transcription over time, the waveform, its log-mel spectrogram and
  the CTC posteriors of each word (blank dashed grey), the emitted words written at their peaks;
* :func:`posterior_figure`: the same for a word classifier, the class posteriors over time;
* :func:`robustness_figure`: a score per condition (clean, noise levels, speeds) for each model.

Time axes are in seconds and shared: the spectrogram's T frames are spread over the recording's
duration; posterior step k (of ``step_seconds``) is drawn at its centre, (k + 1/2) step_seconds.

Shapes: S samples, T spectrogram frames, F mel bands, T2 model steps, V outputs (CTC: blank at 0,
then the V - 1 words), C classes. matplotlib is imported when a figure is drawn (the ``apps``
extra), on the Agg backend. Bad shapes raise ``DataError`` naming what was expected.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from grukit.data.series import DataError

__all__ = [
    "confusion_figure",
    "per_speaker_figure",
    "alignment_figure",
    "posterior_figure",
    "robustness_figure",
]

TOP_CLASSES = 3  # classes named in the posterior figure's legend (the highest peaks)


def _plt():
    from grukit.train.plots import pyplot

    return pyplot()


def _save(fig, path) -> Path:
    from grukit.train.plots import save_figure

    path = Path(path)
    save_figure(fig, path, dpi=110)
    return path


# -- checks ----------------------------------------------------------------------------------------


def _array(x, ndim: int, what: str, expected: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != ndim or x.dtype.kind not in "fiub":
        raise DataError(f"{what}: expected {expected}, got a {x.ndim}-D {x.dtype} array of shape {x.shape}")
    if x.size == 0:
        raise DataError(f"{what}: expected {expected}, got an empty array of shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: expected finite values, got NaN or inf")
    return x.astype(np.float64)


def _scores(table, what: str) -> dict[str, dict[str, float]]:
    """A {model: {key: score}} table checked: non-empty, finite numbers."""
    if not isinstance(table, dict) or not table:
        raise DataError(f"{what}: expected a non-empty dict {{model: {{name: value}}}}, got {table!r}")
    out = {}
    for model, row in table.items():
        if not isinstance(row, dict) or not row:
            raise DataError(f"{what}[{model!r}]: expected a non-empty dict {{name: value}}, got {row!r}")
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise DataError(f"{what}[{model!r}][{k!r}]: expected a finite number, got {v!r}")
        out[str(model)] = {str(k): float(v) for k, v in row.items()}
    return out


def _keys(table: dict[str, dict[str, float]]) -> list[str]:
    """The inner keys of every row, in order of first appearance (the first model's order first)."""
    return list(dict.fromkeys(k for row in table.values() for k in row))


def _lower_bound(values) -> float:
    """A round lower limit for a 0-1 axis a little under the smallest value (0 at worst)."""
    lo = min(values)
    return max(0.0, math.floor((lo - 0.02) * 10) / 10)


def _time_panels(wave, rate, logmel, posteriors, names, step_seconds):
    """Checked inputs of the two time figures."""
    wave = _array(wave, 1, "wave", "a 1-D array of samples")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise DataError(f"rate: expected a positive integer sample rate in Hz, got {rate!r}")
    logmel = _array(logmel, 2, "logmel", "a 2-D (frames, mel bands) array")
    posteriors = _array(posteriors, 2, "posteriors", "a 2-D (steps, outputs) array")
    if not isinstance(step_seconds, (int, float, np.number)) or not step_seconds > 0:
        raise DataError(f"step_seconds: expected a positive number of seconds, got {step_seconds!r}")
    names = [str(n) for n in names]
    return wave, logmel, posteriors, names, float(step_seconds)


def _draw_audio(axes, wave, rate, logmel) -> float:
    """Waveform and spectrogram in the first two panels; returns the duration (s)."""
    duration = len(wave) / rate
    ax_w, ax_s = axes
    ax_w.plot(np.arange(len(wave)) / rate, wave, lw=0.5, color="tab:blue")  # (S,)
    ax_w.set_ylabel("waveform")
    ax_w.set_xlim(0, duration)
    ax_s.imshow(
        logmel.T,
        origin="lower",
        aspect="auto",
        cmap="magma",  # (F, T)
        extent=(0, duration, 0, logmel.shape[1]),
        interpolation="nearest",
    )
    ax_s.set_ylabel("log-mel band")
    return duration


# -- figures ---------------------------------------------------------------------------------------


def confusion_figure(confusion, classes, path: str | os.PathLike, title: str = "") -> Path:
    """The (C, C) ``confusion`` counts (rows: truth, columns: prediction, in ``classes`` order)
    as a heatmap with the count in every cell and the accuracy, trace / total, in the title."""
    classes = [str(c) for c in classes]
    m = _array(confusion, 2, "confusion", "a 2-D (classes, classes) array of counts")
    if m.shape[0] != m.shape[1]:
        raise DataError(f"confusion: expected a square (C, C) matrix, got shape {m.shape}")
    if m.shape[0] != len(classes):
        raise DataError(
            f"confusion: expected ({len(classes)}, {len(classes)}) for the {len(classes)} classes, "
            f"got {m.shape}"
        )
    if (m < 0).any() or m.sum() <= 0:
        raise DataError("confusion: expected non-negative counts with a positive total")
    C = len(classes)
    correct, total = float(np.trace(m)), float(m.sum())
    plt = _plt()
    size = min(14.0, max(4.5, 0.5 * C + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="recordings")
    ax.set_xticks(range(C), classes, rotation=90 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(range(C), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    half = m.max() / 2
    for i in range(C):
        for j in range(C):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:g}",
                    ha="center",
                    va="center",
                    fontsize=8 if C <= 20 else 5,
                    color="white" if m[i, j] > half else "black",
                )
    head = f"accuracy {correct / total:.4f} ({correct:g}/{total:g})"
    ax.set_title(f"{title}\n{head}" if title else head)
    return _save(fig, path)


def per_speaker_figure(accuracy, path: str | os.PathLike, title: str = "") -> Path:
    """Grouped bars: for each speaker, one bar per model of ``accuracy`` ({model: {speaker:
    accuracy}}); the first model's worst speaker is marked. The y axis runs from a round value
    under the lowest accuracy to 1."""
    table = _scores(accuracy, "accuracy")
    speakers = _keys(table)
    models = list(table)
    first = table[models[0]]
    worst = min(first, key=first.get)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.5 * len(speakers) * (1 + len(models) / 2)), 4.2))
    x = np.arange(len(speakers))  # (P,)
    width = 0.8 / len(models)
    for k, name in enumerate(models):
        values = [table[name].get(s, np.nan) for s in speakers]  # (P,) NaN: not measured
        mean = np.nanmean(values)
        bars = ax.bar(x - 0.4 + (k + 0.5) * width, values, width, label=f"{name} (mean {mean:.3f})")
        if k == 0:
            bars[speakers.index(worst)].set(edgecolor="tab:red", linewidth=2)
    w = speakers.index(worst)
    ax.annotate(
        f"worst for {models[0]}: {worst} {first[worst]:.3f}",
        xy=(x[w] - 0.4 + 0.5 * width, first[worst]),
        xytext=(0, 14),
        textcoords="offset points",
        ha="center",
        fontsize=8,
        arrowprops=dict(arrowstyle="->", color="tab:red"),
        color="tab:red",
    )
    ax.set_xticks(x, speakers, rotation=30 if len(speakers) > 8 else 0)
    ax.set_xlabel("speaker")
    ax.set_ylabel("accuracy")
    ax.set_ylim(_lower_bound([v for row in table.values() for v in row.values()]), 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(3, len(models)))
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _emitted(posteriors: np.ndarray) -> list[tuple[int, int]]:
    """Best-path words: (symbol, step of its peak) for each run of one non-blank argmax."""
    best = posteriors.argmax(1)  # (T2,)
    out, start = [], 0
    for t in range(1, len(best) + 1):
        if t == len(best) or best[t] != best[start]:
            if best[start] != 0:
                v = int(best[start])
                out.append((v, start + int(posteriors[start:t, v].argmax())))
            start = t
    return out


def alignment_figure(
    wave,
    rate: int,
    logmel,
    posteriors,
    symbols,
    step_seconds: float,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """Three panels sharing time: ``wave`` (S,) at ``rate``, ``logmel`` (T, F), and the CTC
    ``posteriors`` (T2, V) of blank (index 0, dashed grey) and of each of the V - 1 ``symbols``,
    one step every ``step_seconds``; each word of the best path is written at its peak."""
    wave, logmel, post, symbols, step = _time_panels(wave, rate, logmel, posteriors, symbols, step_seconds)
    if post.shape[1] != len(symbols) + 1:
        raise DataError(
            f"posteriors: expected {len(symbols) + 1} columns (blank, then the {len(symbols)} "
            f"symbols), got {post.shape[1]}"
        )
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [1, 1.4, 1.6]})
    _draw_audio(axes[:2], wave, rate, logmel)
    ax = axes[2]
    t = (np.arange(post.shape[0]) + 0.5) * step  # (T2,)
    ax.plot(t, post[:, 0], ls="--", color="grey", lw=1, label="blank")
    emitted = _emitted(post)
    shown = sorted({v for v, _ in emitted})
    colors = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    for v in range(1, post.shape[1]):
        if v in shown:
            ax.plot(t, post[:, v], lw=1.4, color=colors(shown.index(v) % colors.N), label=symbols[v - 1])
        else:
            ax.plot(t, post[:, v], lw=0.6, color="0.75")
    for v, k in emitted:
        ax.annotate(
            symbols[v - 1],
            (t[k], post[k, v]),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
            color=colors(shown.index(v) % colors.N),
        )
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("posterior")
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[0].set_title(title or f"emitted: {' '.join(symbols[v - 1] for v, _ in emitted) or '(nothing)'}")
    return _save(fig, path)


def posterior_figure(
    wave,
    rate: int,
    logmel,
    posteriors,
    classes,
    step_seconds: float,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """Three panels sharing time: ``wave`` (S,) at ``rate``, ``logmel`` (T, F), and the class
    ``posteriors`` (T2, C) over time, one step every ``step_seconds``; the classes with the highest
    peaks are named, the others drawn thin and grey."""
    wave, logmel, post, classes, step = _time_panels(wave, rate, logmel, posteriors, classes, step_seconds)
    if post.shape[1] != len(classes):
        raise DataError(f"posteriors: expected {len(classes)} columns (one per class), got {post.shape[1]}")
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [1, 1.4, 1.6]})
    _draw_audio(axes[:2], wave, rate, logmel)
    ax = axes[2]
    t = (np.arange(post.shape[0]) + 0.5) * step  # (T2,)
    top = np.argsort(-post.max(0), kind="stable")[:TOP_CLASSES]  # (<= 3,)
    for c in range(post.shape[1]):
        if c not in top:
            ax.plot(t, post[:, c], lw=0.6, color="0.75")
    for rank, c in enumerate(top):
        ax.plot(t, post[:, c], lw=1.6, color=f"C{rank}", label=f"{classes[c]} (peak {post[:, c].max():.2f})")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("posterior")
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=8, loc="upper left")
    final = int(post[-1].argmax())
    axes[0].set_title(title or f"final: {classes[final]} ({post[-1, final]:.2f})")
    return _save(fig, path)


def robustness_figure(curves, path: str | os.PathLike, title: str = "", ylabel: str = "accuracy") -> Path:
    """One line per model of ``curves`` ({model: {condition: score}}) across the conditions (in
    order of first appearance), a marker and the value at each. When every score lies in [0, 1]
    the y axis runs from a round value under the lowest to 1."""
    table = _scores(curves, "curves")
    conditions = _keys(table)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(conditions) + 2), 4.2))
    x = np.arange(len(conditions))  # (K,)
    for k, (name, row) in enumerate(table.items()):
        values = np.array([row.get(c, np.nan) for c in conditions])  # (K,) NaN: not measured
        ax.plot(x, values, marker="o", color=f"C{k}", label=name)
        for xi, v in zip(x, values):
            if np.isfinite(v):
                ax.annotate(
                    f"{v:.3g}",
                    (xi, v),
                    xytext=(0, 5 if k % 2 == 0 else -6),
                    textcoords="offset points",
                    ha="center",
                    va="bottom" if k % 2 == 0 else "top",
                    fontsize=7,
                    color=f"C{k}",
                )
    everything = [v for row in table.values() for v in row.values()]
    if min(everything) >= 0 and max(everything) <= 1:
        ax.set_ylim(_lower_bound(everything), 1.0 + 0.06)
    ax.set_xticks(x, conditions, rotation=30 if len(conditions) > 6 else 0)
    ax.set_xlabel("condition")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)
