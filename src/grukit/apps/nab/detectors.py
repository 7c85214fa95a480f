"""Online detectors for NAB: each sees one record at a time and scores it before seeing the next.

A detector is a factory: ``start(n)`` (the file's length, which NAB gives every detector for its
probationary period) returns a fresh per-file state whose ``step(value) -> score in [0, 1]`` is
called once per record, in order. :func:`run_online` drives it, so no detector can read a record
before it has scored every earlier one.

- :class:`NullDetector`: a constant 0.5 (the benchmark's floor: it never detects).
- :class:`WindowedGaussian`: NAB's windowed Gaussian, written from its description: the score is
  ``1 - Q(|x - mean| / std)``, Q the normal tail probability, mean and (population) std those of
  the window of past values; the window takes the first 6,400 values one at a time, then slides
  by 100 values at a time.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Protocol

import numpy as np

__all__ = [
    "OnlineDetector",
    "FileState",
    "NullDetector",
    "WindowedGaussian",
    "ErrorScorer",
    "Quiet",
    "WindowNovelty",
    "Persistence",
    "Novelty",
    "NoveltyScores",
    "NOVELTY",
    "run_online",
    "as_written",
    "SIMPLE",
]


class FileState(Protocol):
    def step(self, value: float) -> float: ...


class OnlineDetector(Protocol):
    name: str

    def start(self, n: int) -> FileState: ...


def run_online(detector: OnlineDetector, values: np.ndarray) -> np.ndarray:
    """The detector's score of every record of one file, (n,) float64 in [0, 1], the records fed
    one at a time (``values`` (n,)), as NAB's results files hold them (:func:`as_written`). A
    detector with a ``score_file(values)`` method computes a file at once instead (the discord:
    causal by construction and by test, see ``apps.nab.discord``)."""
    if hasattr(detector, "score_file"):
        return as_written(detector.score_file(values))
    state = detector.start(len(values))
    out = np.empty(len(values))
    for i, v in enumerate(values.tolist()):
        out[i] = state.step(v)
    return as_written(out)


def as_written(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to 12 significant digits, as NAB's results files hold them (its runner
    wrote them with Python 2's ``str``) and as its scorer read them back. It matters: a score
    of 1 - 1e-13 becomes 1.0, and the windowed Gaussian's best threshold is 1.0 (its published
    39.6 needs the rounding; unrounded scores give 40.1)."""
    return np.array([float(f"{v:.12g}") for v in np.asarray(scores, dtype=np.float64).tolist()])


class NullDetector:
    name = "null"

    def start(self, n: int) -> FileState:
        return self

    def step(self, value: float) -> float:
        return 0.5


class _GaussianState:
    def __init__(self, size: int, stride: int) -> None:
        self.size, self.stride = size, stride
        self.window = np.empty(size)  # the first values, then the sliding window
        self.count = 0
        self.pending: list[float] = []  # values waiting to slide in
        self.mean, self.std = 0.0, 1.0

    def _update(self, data: np.ndarray) -> None:
        self.mean = float(data.mean())
        self.std = float(data.std()) or 1e-6  # a flat window: any change is an anomaly

    def step(self, value: float) -> float:
        score = 0.0
        if self.count:
            # below the mean, reflected about it first, as NAB computes it
            v = value if value >= self.mean else 2.0 * self.mean - value
            z = (v - self.mean) / self.std
            score = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
        if self.count < self.size:
            self.window[self.count] = value
            self.count += 1
            self._update(self.window[: self.count])
        else:
            self.pending.append(value)
            if len(self.pending) == self.stride:
                self.window = np.concatenate((self.window[self.stride :], self.pending))
                self.pending = []
                self._update(self.window)
        return score


class WindowedGaussian:
    """NAB's windowed Gaussian detector (module docstring); ``size`` 6,400 and ``stride`` 100 are
    the values NAB tuned it with."""

    name = "windowedGaussian"

    def __init__(self, size: int = 6400, stride: int = 100) -> None:
        self.size, self.stride = size, stride

    def start(self, n: int) -> FileState:
        return _GaussianState(self.size, self.stride)


RANK_SHARE = 0.9  # the rank method's scores below the largest earlier error: [0, 0.9)


class Quiet:
    """The first alarm of a burst speaks for it: a score is passed on only where it exceeds every
    one of the ``size`` scores before it, else 0 (NAB rewards only a window's earliest detection
    and charges every other alarm as a false positive). ``size`` 0 passes every score."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self.scores: deque[float] = deque(maxlen=size)  # the last ``size`` scores

    def __call__(self, score: float) -> float:
        if not self.size:
            return score
        shown = score if score > max(self.scores, default=0.0) else 0.0
        self.scores.append(score)
        return shown


class WindowNovelty:
    """How new the last ``m`` values are: the Euclidean distance from the window of the last
    ``m`` values to the nearest window of ``m`` earlier values, without normalising either (a
    level or a scale never seen counts, unlike the z-normalised matrix profile), windows
    overlapping the current one by more than ``m - 1 - exclude`` values left out, where
    ``exclude = ceil(m / 4)`` as in stumpy's left matrix profile. ``update(x)`` takes the next
    value and returns the distance, NaN until there are two windows far enough apart. One
    record costs one pass over the earlier windows (O(t m))."""

    def __init__(self, m: int = 4) -> None:
        if m < 1:
            raise ValueError(f"WindowNovelty: expected a window m >= 1, got {m}")
        self.m, self.exclude = m, -(-m // 4)
        self.values = np.empty(1024)
        self.n = 0

    def update(self, x: float) -> float:
        if self.n == len(self.values):
            self.values = np.concatenate((self.values, np.empty(len(self.values))))
        self.values[self.n] = x
        self.n += 1
        m = self.m
        last = self.n - m  # the current window starts here
        earlier = last - self.exclude  # windows starting before this are compared
        if earlier <= 0:
            return math.nan
        v = self.values[: last + m]
        windows = np.lib.stride_tricks.sliding_window_view(v[: earlier - 1 + m], m)  # (earlier, m)
        d2 = ((windows - v[last:]) ** 2).sum(1)  # (earlier,)
        return math.sqrt(float(d2.min()))


class ErrorScorer:
    """Scores a stream of prediction errors (one per record), each against the errors before it.

    ``method="rank"`` (the default): the error's rank among every earlier error (the probationary
    ones seed them) as a conformal p-value, ``p = (1 + #{earlier >= e}) / (1 + N)``, and the
    score ``0.9 * log(p) / log(1 / (1 + N))``; an error above all N before it scores
    ``0.9 + 0.1 * (1 - largest / e)``, so a larger jump outranks a marginal new maximum. It makes
    no assumption on the errors' distribution, which on NAB's heavy-tailed series is what counts
    (docs/anomaly.md).
    ``method="gaussian"``: the form of Numenta's anomaly likelihood: how far the mean of the last
    ``short`` errors lies above the mean of the last ``history`` (the current one included), in
    their standard deviations, as a Gaussian tail probability q; the score
    ``log(q) / log(1e-10)`` clipped to [0, 1].

    With ``quiet`` > 0 a score is reported only where it exceeds every one of the ``quiet``
    scores before it, else 0: the first record of a burst of alarms speaks for the burst (NAB
    rewards only a window's earliest detection and charges every other alarm as a false
    positive)."""

    def __init__(
        self,
        short: int = 1,
        history: int = 8640,
        quiet: int = 100,
        seed: list[float] | None = None,
        method: str = "rank",
    ) -> None:
        if method not in ("rank", "gaussian"):
            raise ValueError(f"method must be 'rank' or 'gaussian', got {method!r}")
        self.short, self.history, self.quiet, self.method = short, history, quiet, method
        seed = list(seed or ())
        self.recent: deque[float] = deque(seed[-short:], maxlen=short)
        self.quieten = Quiet(quiet)
        # rank: every earlier error, sorted; gaussian: the last ``history`` and their sums
        self.ranked: list[float] = sorted(seed) if method == "rank" else []
        self.errors: deque[float] = deque()
        self.s1 = self.s2 = 0.0
        self.count = 0
        if method == "gaussian":
            for e in seed:
                self._add(e)

    def _add(self, e: float) -> None:
        """The gaussian method's window and running sums take ``e``."""
        self.errors.append(e)
        self.s1 += e
        self.s2 += e * e
        if len(self.errors) > self.history:
            old = self.errors.popleft()
            self.s1 -= old
            self.s2 -= old * old
        self.count += 1
        if self.count % 4096 == 0:  # refresh the running sums against drift
            self.s1 = math.fsum(self.errors)
            self.s2 = math.fsum(x * x for x in self.errors)

    def _gaussian(self) -> float:
        m = len(self.errors)
        mean = self.s1 / m
        std = math.sqrt(max(self.s2 / m - mean * mean, 1e-12))
        z = (sum(self.recent) / len(self.recent) - mean) / std
        q = 0.5 * math.erfc(z / math.sqrt(2.0)) if z > 0 else 1.0
        return min(1.0, max(0.0, math.log(max(q, 1e-300)) / math.log(1e-10)))

    def _rank(self, e: float) -> float:
        n = len(self.ranked)
        if n == 0:  # nothing to rank against yet (an empty seed): the first error starts the list
            bisect.insort(self.ranked, e)
            return 0.0
        v = sum(self.recent) / len(self.recent)
        above = n - bisect.bisect_left(self.ranked, v)  # earlier errors at least this large
        if above:
            score = RANK_SHARE * math.log((above + 1) / (n + 1)) / math.log(1.0 / (n + 1))
        else:  # above them all: how far above the largest decides among such records
            score = RANK_SHARE + (1.0 - RANK_SHARE) * (1.0 - self.ranked[-1] / v)
        bisect.insort(self.ranked, e)
        return score

    def update(self, error: float) -> float:
        self.recent.append(error)
        if self.method == "rank":
            score = self._rank(error)
        else:
            self._add(error)
            score = self._gaussian()
        return self.quieten(score)


class _PersistenceState:
    def __init__(self, n: int) -> None:
        from grukit.apps.nab.scoring import probation_length

        self.P, self.values, self.scorer = probation_length(n), [], None

    def step(self, value: float) -> float:
        self.values.append(value)
        t = len(self.values)
        if t < self.P or t < 3:
            return 0.0
        if self.scorer is None:  # the probationary period is complete
            v = np.asarray(self.values)
            self.scale = float(v.std()) or 1.0
            self.scorer = ErrorScorer(seed=list(np.abs(np.diff(v)) / self.scale))
            return 0.0
        return self.scorer.update(abs(value - self.values[-2]) / self.scale)


class Persistence:
    """Predicts each record by the one before it and scores the errors like the GRU detector
    (:class:`ErrorScorer`): what the GRU's predictions must beat."""

    name = "persistence"

    def start(self, n: int) -> FileState:
        return _PersistenceState(n)


NOVELTY = (1, 4)  # the default windows of the novelty scores (docs/anomaly.md)


class NoveltyScores:
    """The novelty scores of one file's standardised records (:class:`WindowNovelty`), one per
    window length in ``windows``, each ranked by its own scorer, ``scorer(seed)`` (an
    :class:`ErrorScorer` without quieting: the caller quietens the combined score), seeded by
    the second half of ``probation`` (the first windows have little before them, so their
    distances are no norm)."""

    def __init__(self, windows, probation: np.ndarray, scorer) -> None:
        self.parts = []
        for m in windows:
            novelty = WindowNovelty(m)
            seen = np.array([novelty.update(x) for x in probation.tolist()])[len(probation) // 2 :]
            self.parts.append((novelty, scorer(list(seen[~np.isnan(seen)]))))

    def total(self, z: float) -> float:
        """The next record's scores, summed."""
        total = 0.0
        for novelty, scorer in self.parts:
            d = novelty.update(z)
            total += scorer.update(0.0 if math.isnan(d) else d)
        return total


class _NoveltyState:
    def __init__(self, n: int, windows: tuple[int, ...]) -> None:
        from grukit.apps.nab.scoring import probation_length

        self.P, self.windows, self.values, self.scores = probation_length(n), windows, [], None
        self.quiet = Quiet()

    def step(self, value: float) -> float:
        self.values.append(value)
        t = len(self.values)
        if t < self.P or t < max(self.windows) + 2:
            return 0.0
        if self.scores is None:  # the probationary period is complete
            v = np.asarray(self.values)
            self.mean, self.scale = float(v.mean()), float(v.std()) or 1.0
            z = (v - self.mean) / self.scale
            self.scores = NoveltyScores(self.windows, z, lambda seed: ErrorScorer(quiet=0, seed=seed))
            return 0.0
        z = (value - self.mean) / self.scale
        return self.quiet(self.scores.total(z) / len(self.windows))


class Novelty:
    """The GRU detector's novelty scores alone (:class:`WindowNovelty`
    of the last m standardised values for each window length m, ranked, averaged and quietened
    as the GRU detector does: :class:`NoveltyScores`): what the GRU's predictions add to them."""

    name = "novelty"

    def __init__(self, windows: tuple[int, ...] | None = None) -> None:
        self.windows = tuple(windows or NOVELTY)

    def start(self, n: int) -> FileState:
        return _NoveltyState(n, self.windows)


SIMPLE = {
    "null": NullDetector,
    "windowedGaussian": WindowedGaussian,
    "persistence": Persistence,
    "novelty": Novelty,
}
