"""Anomaly-detection runs as ``grukit anomaly`` does them: the ECG5000 demos (one-class heartbeats
beside a 1-NN baseline; a long signal of concatenated beats scored point by point) and training /
scoring on a user's CSV, each writing metrics, scores and plots into one folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grukit._io import atomic_write, atomic_write_text
from grukit.apps.anomaly import GRUAnomalyDetector
from grukit.apps.anomaly_metrics import events, measures, segments

__all__ = [
    "ecg_one_class",
    "ecg_long_signal",
    "build_long_signal",
    "plot_signal",
    "nearest_neighbour",
    "signal_detector",
]

ECG_BEAT = 140
# The long-signal demo's model for each signal model (detector settings, training settings).
# The forecaster: warm-up one beat, predicting one beat ahead, errors averaged over 35 points
# (a quarter beat); 20 epochs of 50 batches of 32 stretches of 3 * 140 points. The window
# autoencoder is the demo's model before the forecaster (docs/anomaly.md compares them).
SIGNAL_SETTINGS = {
    "forecaster": (
        {"model": "forecaster", "window": ECG_BEAT, "horizon": ECG_BEAT, "hidden_size": 128, "smooth": 35},
        {"epochs": 20, "batch_size": 32, "steps_per_epoch": 50, "patience": None},
    ),
    "autoencoder": (
        {"model": "autoencoder", "window": ECG_BEAT, "latent_size": 32},
        {"epochs": 15, "batch_size": 64, "steps_per_epoch": 50, "patience": 10},
    ),
}


def nearest_neighbour(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Euclidean distance of each test row to its nearest training row (the 1-NN baseline)."""
    from scipy.spatial.distance import cdist

    out = np.empty(len(test))
    for i in range(0, len(test), 1024):
        out[i : i + 1024] = cdist(test[i : i + 1024], train).min(1)
    return out


def _plot_hist(path, scores: dict, labels: np.ndarray, thresholds: dict) -> None:
    from grukit.train.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(scores), figsize=(5.5 * len(scores), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items()):
        bins = np.linspace(np.percentile(s, 0.5), np.percentile(s, 99.5), 60)
        ax.hist(s[labels == 0], bins, alpha=0.6, label="normal beats", density=True)
        ax.hist(s[labels == 1], bins, alpha=0.6, label="abnormal beats", density=True)
        ax.axvline(thresholds[name], color="black", ls="--", lw=1, label="threshold")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("anomaly score")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_scores(
    path, scores: np.ndarray, labels: np.ndarray | None, threshold: float, title: str = "scores"
) -> None:
    """Histogram of sequence scores (normal and anomalous apart when labels are given) and the
    threshold."""
    from grukit.train.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(np.percentile(scores, 0.5), np.percentile(scores, 99.5), 50)
    if labels is None:
        ax.hist(scores, bins, alpha=0.7, label="sequences")
    else:
        ax.hist(scores[labels == 0], bins, alpha=0.6, label="labelled normal")
        ax.hist(scores[labels == 1], bins, alpha=0.6, label="labelled anomalous")
    ax.axvline(threshold, color="black", ls="--", lw=1, label="threshold")
    ax.set_xlabel("anomaly score")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def ecg_one_class(out: Path, detector: GRUAnomalyDetector, log=print) -> dict:
    """Fit on the normal beats of ECG5000's train split, score the 4,500 test beats."""
    from grukit.data.ucr import load_ucr

    x_tr, y_tr, x_te, y_te = load_ucr("ECG5000")
    normal = x_tr[y_tr == 1]
    labels = (y_te != 1).astype(int)
    log(
        f"ECG5000 one-class: fit on {len(normal)} normal train beats, score {len(x_te)} test beats "
        f"({labels.mean():.1%} abnormal)"
    )
    detector.fit(normal, log=log)
    s = detector.score(x_te)
    # 1-NN: distance to the nearest normal training beat; its threshold from leave-one-out
    # distances among the normal training beats, at the same false-alarm rate
    nn = nearest_neighbour(normal, x_te)
    from scipy.spatial.distance import cdist

    d = cdist(normal, normal)
    np.fill_diagonal(d, np.inf)
    nn_thr = float(np.quantile(d.min(1), 1 - detector.config.false_alarm_rate))
    rows = {
        "GRU autoencoder": measures(labels, s, s > detector.threshold_),
        "1-NN distance (baseline)": measures(labels, nn, nn > nn_thr),
    }
    _plot_hist(
        out / "ecg_scores.png",
        {"GRU autoencoder": s, "1-NN distance": nn},
        labels,
        {"GRU autoencoder": detector.threshold_, "1-NN distance": nn_thr},
    )
    detector.save(out / "one_class_model")
    return {
        "task": "ECG5000 one-class",
        "train_normal_beats": len(normal),
        "test_beats": len(x_te),
        "abnormal_share": float(labels.mean()),
        "methods": rows,
        "false_alarm_rate": detector.config.false_alarm_rate,
        "training": {
            "ensemble": detector.config.ensemble,
            "bidirectional": detector.config.bidirectional,
            "hidden_size": detector.config.hidden_size,
            "latent_size": detector.config.latent_size,
            "time_features": detector.config.time_features,
            "epochs_run": [r.epochs_run for r in detector.results_],
            "best_epoch": [r.best_epoch for r in detector.results_],
        },
    }


def build_long_signal(
    x_te: np.ndarray, y_te: np.ndarray, beats: int = 300, abnormal_share: float = 0.03, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A long signal of concatenated test beats: ``beats`` beats, of which ``abnormal_share``
    (rounded, at least one) are abnormal ones placed at random positions, the rest normal;
    returns the signal (beats * 140,) and point labels (1 inside an abnormal beat)."""
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y_te == 1)
    abnormal = np.flatnonzero(y_te != 1)
    k = max(1, int(round(beats * abnormal_share)))
    where = set(rng.choice(np.arange(5, beats), size=k, replace=False).tolist())  # 5 normal beats first
    picks_n = rng.choice(normal, size=beats - k, replace=False)
    picks_a = rng.choice(abnormal, size=k, replace=False)
    order, ni, ai, labels = [], 0, 0, []
    for b in range(beats):
        if b in where:
            order.append(picks_a[ai])
            ai += 1
            labels.append(1)  # noqa: E702
        else:
            order.append(picks_n[ni])
            ni += 1
            labels.append(0)  # noqa: E702
    signal = np.concatenate([x_te[i] for i in order])
    point_labels = np.repeat(np.array(labels), x_te.shape[1])
    return signal, point_labels


def plot_signal(
    path,
    x: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    flags: np.ndarray,
    labels: np.ndarray | None = None,
    start: int = 0,
    stop: int | None = None,
    title: str = "signal",
) -> None:
    """Signal, score, threshold, flagged segments and labels over [start, stop)."""
    from grukit.train.plots import pyplot, save_figure

    plt = pyplot()
    stop = len(x) if stop is None else stop
    t = np.arange(start, stop)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 4.8), sharex=True)
    xs = x[start:stop] if x.ndim == 1 else x[start:stop, 0]
    a1.plot(t, xs, lw=0.7, color="black")
    for s, e in segments(flags[start:stop]):
        a1.axvspan(start + s, start + e, color="tab:red", alpha=0.25, lw=0)
    if labels is not None:
        for s, e in segments(labels[start:stop]):
            a1.axvspan(start + s, start + e, ymin=0.92, ymax=1.0, color="tab:orange", alpha=0.9, lw=0)
    a1.set_title(f"{title}: flagged segments (red), labelled anomalies (orange bar)", fontsize=9)
    a2.plot(t, scores[start:stop], lw=0.7)
    a2.axhline(threshold, color="tab:red", ls="--", lw=1, label="threshold")
    a2.set_ylabel("anomaly score")
    a2.set_yscale("symlog")
    a2.legend(fontsize=7)
    save_figure(fig, path)


def ecg_long_signal(
    out: Path, detector: GRUAnomalyDetector, log=print, beats: int = 300, tolerance: int = ECG_BEAT
) -> dict:
    """Fit the signal mode on the normal train beats laid end to end; score a long signal of test
    beats with 3% abnormal beats, point by point."""
    from grukit.data.ucr import load_ucr

    x_tr, y_tr, x_te, y_te = load_ucr("ECG5000")
    train = np.concatenate(x_tr[y_tr == 1])
    signal, labels = build_long_signal(x_te, y_te, beats=beats)
    log(
        f"ECG5000 long signal: fit on {len(train):,} points of normal beats, score {len(signal):,} "
        f"points with {int(labels.sum() / ECG_BEAT)} abnormal beats"
    )
    detector.fit(train, log=log)
    s = detector.score(signal)
    flags = s > detector.threshold_
    ev = events(labels, flags, tolerance=tolerance, min_gap=ECG_BEAT // 2)
    c = detector.config
    what = (
        f"GRU forecaster: state carried through the signal, {c.steps_ahead} points predicted at "
        f"each step, errors averaged over {c.smooth} points"
        if c.model == "forecaster"
        else f"window autoencoder: windows of {c.window} points, aggregate {c.aggregate!r}"
    )
    metrics = {
        "task": "ECG5000 long signal",
        "model": what,
        "points": len(signal),
        "beats": beats,
        "construction": "test beats laid end to end, 3% abnormal at random positions, seed 0",
        "point": measures(labels, s, flags),
        "events": ev,
        "false_alarm_rate": detector.config.false_alarm_rate,
    }
    metrics["discord"] = discord_baseline(
        train,
        signal,
        labels,
        window=ECG_BEAT,
        tolerance=tolerance,
        false_alarm_rate=detector.config.false_alarm_rate,
        log=log,
    )
    first = int(np.flatnonzero(labels)[0]) if labels.any() else 0
    lo = max(0, first - 6 * ECG_BEAT)
    plot_signal(
        out / "ecg_signal.png",
        signal,
        s,
        detector.threshold_,
        flags,
        labels,
        lo,
        min(len(signal), lo + 20 * ECG_BEAT),
        title="ECG5000 long signal",
    )
    atomic_write(
        out / "ecg_signal_scores.csv",
        lambda tmp: np.savetxt(
            tmp,
            np.c_[signal, s, flags, labels],
            delimiter=",",
            header="value,score,flag,label",
            comments="",
            fmt=["%.6g", "%.6g", "%d", "%d"],
        ),
    )
    detector.save(out / "signal_model")
    return metrics


def discord_baseline(
    normal: np.ndarray,
    signal: np.ndarray,
    labels: np.ndarray | None,
    *,
    window: int,
    tolerance: int,
    false_alarm_rate: float,
    log=print,
) -> dict:
    """The matrix-profile discord baseline (``anomaly.discord``) fitted on the same normal data
    and scored on the same signal as the GRU: its point and event measures (labels given), or
    the reason it did not run."""
    from grukit.apps.anomaly.discord import run_baseline

    run = run_baseline(normal, signal, window=window, false_alarm_rate=false_alarm_rate)
    if run.skipped is not None:
        log(f"discord baseline skipped: {run.skipped}")
        return {"skipped": run.skipped}
    out = {
        "model": f"matrix-profile discord (stumpy): z-normalised windows of {window} points against "
        "the normal data",
        "window": window,
        "seconds": run.seconds,
        "flagged": int(run.flags.sum()),
    }
    if labels is not None:
        out["point"] = measures(labels, run.scores, run.flags)
        out["events"] = events(labels, run.flags, tolerance=tolerance, min_gap=max(1, window // 2))
    log(f"discord baseline: {run.seconds}s")
    return out


def signal_detector(
    model: str = "forecaster", *, epochs: int | None = None, seed: int = 0, progress: str = "auto", **changes
) -> GRUAnomalyDetector:
    """The long-signal demo's detector for ``model`` (SIGNAL_SETTINGS), 1% false-alarm rate;
    ``changes`` override detector settings."""
    from grukit.train.config import TrainConfig

    hyper, train = SIGNAL_SETTINGS[model]
    train = {**train, "seed": seed, "progress": progress, **({} if epochs is None else {"epochs": epochs})}
    return GRUAnomalyDetector(
        "signal", false_alarm_rate=0.01, train=TrainConfig(**train), **{**hyper, **changes}
    )


def write_metrics(out: Path, metrics: dict) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))


def format_one_class(m: dict) -> str:
    lines = [f"{'method':<26}{'ROC-AUC':>9}{'PR-AUC':>9}{'precision':>11}{'recall':>8}{'F1':>7}"]
    for name, r in m["methods"].items():
        lines.append(
            f"{name:<26}{r['ROC-AUC']:>9.4f}{r['PR-AUC']:>9.4f}{r['precision']:>11.3f}"
            f"{r['recall']:>8.3f}{r['F1']:>7.3f}"
        )
    return "\n".join(lines)


def format_signal(m: dict) -> str:
    e, p = m["events"], m["point"]
    return (
        f"abnormal beats detected: {e['detected']} of {e['events']} (tolerance {e['tolerance']} points); "
        f"false alarms: {e['false_alarm_segments']} segments = {e['false_alarms_per_1000']:.3f} per "
        f"1,000 points\npoint level: ROC-AUC {p['ROC-AUC']:.4f}, PR-AUC {p['PR-AUC']:.4f}, "
        f"precision {p['precision']:.3f}, recall {p['recall']:.3f}, F1 {p['F1']:.3f}"
    )


def anomaly_demo(
    out: Path,
    *,
    epochs: int = 100,
    signal_epochs: int | None = None,
    seed: int = 0,
    quiet: bool = False,
    shown_as: Path | None = None,
    hidden_size: int = 128,
    latent_size: int = 16,
    patience: int | None = None,
    signal_model: str = "forecaster",
    ensemble: int = 1,
    bidirectional: bool = False,
    time_features: int | None = None,
) -> dict:
    """Both ECG5000 demos into ``out``; prints their tables and returns the metrics."""
    import sys

    from grukit.train.config import TrainConfig

    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    progress = "off" if quiet else "auto"
    # 100 full epochs without early stopping: the 58 held-out beats make a noisy validation
    # loss (patience 15 stopped a 200-epoch run at epoch 50 with ROC-AUC 0.960; docs/anomaly.md)
    one = GRUAnomalyDetector(
        "sequences",
        hidden_size=hidden_size,
        latent_size=latent_size,
        false_alarm_rate=0.05,
        ensemble=ensemble,
        bidirectional=bidirectional,
        time_features=time_features,
        train=TrainConfig(epochs=epochs, batch_size=32, patience=patience, seed=seed, progress=progress),
    )
    m1 = ecg_one_class(out, one, log=log)
    print("ECG5000 one-class (test beats; threshold for a 5% false-alarm rate on normal beats):")
    print(format_one_class(m1), flush=True)
    two = signal_detector(signal_model, epochs=signal_epochs, seed=seed, progress=progress)
    m2 = ecg_long_signal(out, two, log=log)
    print("\nECG5000 long signal (300 test beats, 3% abnormal, scored point by point):")
    print(format_signal(m2), flush=True)
    if "events" in m2["discord"]:
        print("matrix-profile discord baseline, same data:\n" + format_signal(m2["discord"]), flush=True)
    metrics = {"one_class": m1, "long_signal": m2}
    write_metrics(out, metrics)
    print(
        f"\nwrote {shown_as or out}/: metrics.json, ecg_scores.png, ecg_signal.png, ecg_signal_scores.csv, models"
    )
    return metrics
