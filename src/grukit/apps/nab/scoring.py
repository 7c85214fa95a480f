"""The NAB score (Lavin & Ahmad 2015), written from the benchmark's rules.

Per file of n records with anomaly windows ``(lo, hi)`` (inclusive indices, width w = hi - lo + 1):

- the first ``min(floor(0.15 n), 750)`` records are the probationary period, never scored;
- a detection at record i inside a window scores ``tp * S(p) / S(-1)``, ``p = -(hi - i + 1) / w``
  (-1 at the window's first record, just below 0 at its last), with the scaled sigmoid
  ``S(p) = 2 / (1 + exp(5 p)) - 1`` (``-1`` for p > 3); only a window's best (earliest)
  detection counts, and a window with none costs ``-fn``;
- a detection outside every window scores ``fp * S(p)``, ``p = (i - hi) / (w - 1)`` after the
  last window that ended before it (so a detection just after a window costs little), and
  ``-fp`` before the file's first window.

A detector's anomaly scores (in [0, 1]) become detections at one threshold for the whole corpus,
the one that maximises the corpus's summed score (ties: the highest threshold), swept over every
distinct anomaly score. The raw score is normalised between the null detector (a constant score:
it never detects, raw ``-fn * windows``) and a perfect one (``tp * windows``):
``100 * (raw - null) / (perfect - null)``.

Shapes: per file, arrays of n records; a corpus is a list of files in one order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Profile",
    "PROFILES",
    "probation_length",
    "record_scores",
    "Sweep",
    "sweep",
    "CorpusScore",
    "score_corpus",
    "null_raw",
]

PROBATION = 0.15  # the share of each file for learning, never scored
PROBATION_CAP = PROBATION * 5000  # 750 records at most


@dataclass(frozen=True)
class Profile:
    """One scoring profile's weights of a true positive, a false positive, a missed window."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def probation_length(n: int) -> int:
    """Records of a file of ``n`` never scored."""
    return int(min(math.floor(PROBATION * n), PROBATION_CAP))


def _scaled_sigmoid(p: np.ndarray) -> np.ndarray:
    return np.where(p > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.minimum(5.0 * p, 700.0))) - 1.0)


def record_scores(n: int, windows, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """What a detection at each record of a file would score, (n,) float64, and the record's
    window, (n,) int64: its index in ``windows``, -1 outside every window, -2 in the
    probationary period."""
    i = np.arange(n)
    score = np.full(n, -profile.fp)  # before the first window: the full false-positive cost
    window = np.full(n, -1, np.int64)
    max_tp = float(_scaled_sigmoid(np.array(-1.0)))
    for k, (lo, hi) in enumerate(windows):
        w = hi - lo + 1
        inside = slice(lo, hi + 1)
        score[inside] = _scaled_sigmoid(-(hi - i[inside] + 1) / w) * profile.tp / max_tp
        window[inside] = k
        end = windows[k + 1][0] if k + 1 < len(windows) else n
        after = slice(hi + 1, end)  # until the next window: measured from this one's end
        if w > 1:
            score[after] = _scaled_sigmoid((i[after] - hi) / (w - 1)) * profile.fp
        else:  # NAB divides by zero here; a one-record window has no width to measure by
            score[after] = -profile.fp
    window[: probation_length(n)] = -2
    return score, window


@dataclass(frozen=True)
class Sweep:
    """The corpus's summed score at every threshold: ``thresholds`` (M,) decreasing from 1.1
    (no detections) to the lowest anomaly score, ``scores`` (M,)."""

    thresholds: np.ndarray
    scores: np.ndarray

    @property
    def best(self) -> tuple[float, float]:
        """(threshold, score) of the highest score; ties go to the highest threshold."""
        k = int(np.argmax(self.scores))
        return float(self.thresholds[k]), float(self.scores[k])


def _check_scores(name: str, a: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected {n} anomaly scores, got shape {a.shape}")
    if not np.all((a >= 0) & (a <= 1)):
        bad = float(a[~((a >= 0) & (a <= 1))][0])
        raise ValueError(f"{name}: anomaly scores must lie in [0, 1], got {bad!r}")
    return a


def _records(files, anomaly_scores, profile: Profile) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per file: its anomaly scores (checked) and :func:`record_scores`' two arrays, (n,) each."""
    out = []
    for f, a in zip(files, anomaly_scores, strict=True):
        n = len(f.values)
        out.append((_check_scores(getattr(f, "name", "a file"), a, n), *record_scores(n, f.windows, profile)))
    return out


def sweep(files, anomaly_scores, profile: Profile) -> Sweep:
    """The summed score of ``files`` (each with ``values`` and ``windows``, e.g.
    :class:`grukit.data.nab.NABFile`) at every threshold, given each file's anomaly scores."""
    return _sweep(files, _records(files, anomaly_scores, profile), profile)


def _sweep(files, records, profile: Profile) -> Sweep:
    a_parts, s_parts, w_parts = [], [], []
    offset = 0
    for f, (a, s, w) in zip(files, records):
        keep = w != -2
        a_parts.append(a[keep])
        s_parts.append(s[keep])
        w_parts.append(np.where(w[keep] >= 0, w[keep] + offset, -1))
        offset += len(f.windows)
    a, s, w = np.concatenate(a_parts), np.concatenate(s_parts), np.concatenate(w_parts)
    n_windows = len(np.unique(w[w >= 0]))  # windows with a scorable record
    order = np.argsort(-a, kind="stable")  # detections join in decreasing anomaly score
    a, s, w = a[order], s[order], w[order]
    gain = np.where(w < 0, s, 0.0)  # a false positive adds its (negative) score
    # a window's contribution is its best detection so far (-fn before its first): per window,
    # the running maximum in detection order; each record adds the rise it causes
    inside = np.nonzero(w >= 0)[0]
    by_window = inside[np.argsort(w[inside], kind="stable")]
    ww, ss = w[by_window], s[by_window]
    lift = (2.0 * abs(profile.tp) + 1.0) * ww  # keeps windows apart in one running maximum
    best = np.maximum.accumulate(ss + lift) - lift
    first = np.r_[True, ww[1:] != ww[:-1]]
    before = np.where(first, -profile.fn, np.r_[0.0, best[:-1]])
    gain[by_window] = best - before
    total = -profile.fn * n_windows + np.cumsum(gain)
    last = np.r_[np.nonzero(a[1:] != a[:-1])[0], len(a) - 1]  # the end of each equal score
    return Sweep(np.r_[1.1, a[last]], np.r_[-profile.fn * n_windows, total[last]])


def null_raw(n_windows: int, profile: Profile) -> float:
    """The null detector's raw score: a constant anomaly score detects nothing at its best
    threshold, so every window is missed."""
    return -profile.fn * n_windows


@dataclass(frozen=True)
class CorpusScore:
    """A detector's result under one profile: the threshold, the raw and normalised scores, and
    each file's raw score at that threshold."""

    profile: str
    threshold: float
    raw: float
    score: float
    per_file: dict[str, float]


def _file_raw(a: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float, profile: Profile) -> float:
    """One file's raw score at ``threshold`` from its ``_records`` entry."""
    hit = (a >= threshold) & (w != -2)
    raw = float(s[hit & (w == -1)].sum())
    for k in np.unique(w[w >= 0]):
        mine = hit & (w == k)
        raw += float(s[mine].max()) if mine.any() else -profile.fn
    return raw


def score_corpus(files, anomaly_scores, profile: Profile, *, threshold: float | None = None) -> CorpusScore:
    """``files``' NAB score under ``profile`` at the corpus's best threshold (or ``threshold``)."""
    records = _records(files, anomaly_scores, profile)
    if threshold is None:
        threshold, _ = _sweep(files, records, profile).best
    names = [getattr(f, "name", str(k)) for k, f in enumerate(files)]
    if len(set(names)) != len(names):
        raise ValueError("the files' names must differ: each file's score is reported by name")
    per_file = {name: _file_raw(*r, threshold, profile) for name, r in zip(names, records)}
    raw = sum(per_file.values())
    n_windows = sum(len(f.windows) for f in files)
    null = null_raw(n_windows, profile)
    perfect = profile.tp * n_windows
    return CorpusScore(profile.name, threshold, raw, 100.0 * (raw - null) / (perfect - null), per_file)
