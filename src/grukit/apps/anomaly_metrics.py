"""Detection measures: ranking (ROC-AUC, PR-AUC from scikit-learn), the flags at the calibrated
threshold (precision, recall, F1), and events for segments in a long signal.

Event level (the UCR anomaly archive's convention, with a tolerance): a labelled anomalous range
counts as detected when a flagged point lies inside it widened by ``tolerance`` points on each
side; a flagged segment that touches no widened labelled range is a false alarm, reported per
1,000 points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ranking", "at_threshold", "measures", "segments", "events"]


def ranking(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from grukit._extras import require

    metrics = require("sklearn.metrics", "apps", what="ROC-AUC and PR-AUC (scikit-learn)")
    average_precision_score, roc_auc_score = metrics.average_precision_score, metrics.roc_auc_score
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        return {"ROC-AUC": float("nan"), "PR-AUC": float("nan")}
    return {
        "ROC-AUC": float(roc_auc_score(labels, scores)),
        "PR-AUC": float(average_precision_score(labels, scores)),
    }


def at_threshold(labels: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    labels, flags = np.asarray(labels).astype(bool), np.asarray(flags).astype(bool)
    tp = int(np.sum(labels & flags))
    fp = int(np.sum(~labels & flags))
    fn = int(np.sum(labels & ~flags))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "F1": f1,
        "flagged": int(flags.sum()),
        "false_alarm_rate": fp / max(int((~labels).sum()), 1),
    }


def measures(labels: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """``ranking`` of the scores and ``at_threshold`` of the flags, in one dict."""
    return {**ranking(labels, scores), **at_threshold(labels, flags)}


def segments(flags: np.ndarray, min_gap: int = 0) -> list[tuple[int, int]]:
    """Runs of flagged points as ``(start, end)`` (end exclusive); runs separated by at most
    ``min_gap`` unflagged points are merged."""
    flags = np.asarray(flags).astype(bool)
    if not flags.any():
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(np.int8), 0]))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
    merged = [runs[0]]
    for s, e in runs[1:]:
        if s - merged[-1][1] <= min_gap:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def events(labels: np.ndarray, flags: np.ndarray, tolerance: int = 100, min_gap: int = 0) -> dict:
    """Event-level detection of labelled ranges and false alarms per 1,000 points."""
    labels = np.asarray(labels).astype(bool)
    truth = segments(labels)
    found = segments(flags, min_gap)
    n = len(labels)
    widened = [(max(0, s - tolerance), min(n, e + tolerance)) for s, e in truth]
    flags = np.asarray(flags).astype(bool)
    detected = sum(bool(flags[s:e].any()) for s, e in widened)
    false = sum(1 for s, e in found if not any(s < we and e > ws for ws, we in widened))
    return {
        "events": len(truth),
        "detected": detected,
        "event_recall": detected / len(truth) if truth else float("nan"),
        "flagged_segments": len(found),
        "false_alarm_segments": false,
        "false_alarms_per_1000": 1000 * false / max(n, 1),
        "tolerance": tolerance,
    }
