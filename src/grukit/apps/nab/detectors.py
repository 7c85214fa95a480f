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

import math
from collections import deque
from typing import Protocol

import numpy as np

__all__ = ["OnlineDetector", "FileState", "NullDetector", "WindowedGaussian", "ErrorScorer", "Persistence",
           "run_online", "as_written", "SIMPLE"]


class FileState(Protocol):
    def step(self, value: float) -> float: ...


class OnlineDetector(Protocol):
    name: str

    def start(self, n: int) -> FileState: ...


def run_online(detector: OnlineDetector, values: np.ndarray) -> np.ndarray:
    """The detector's score of every record of one file, (n,) float64 in [0, 1], the records fed
    one at a time (``values`` (n,)), as NAB's results files hold them (:func:`as_written`)."""
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


class ErrorScorer:
    """Scores a stream of prediction errors (one per record): how far the mean of the last
    ``short`` errors lies above the mean of the last ``history`` (the current one included), in
    standard deviations of those, as a Gaussian tail probability q; the score is
    ``log(q) / log(1e-10)`` clipped to [0, 1] (distinct down to q = 1e-10). Numenta's anomaly
    likelihood has this form. With ``quiet`` > 0 a score is reported only where it exceeds every
    one of the ``quiet`` scores before it, else 0: the first record of a burst of alarms speaks
    for the burst (NAB rewards only a window's earliest detection and charges every other
    alarm as a false positive)."""

    def __init__(self, short: int = 1, history: int = 8640, quiet: int = 100,
                 seed: list[float] | None = None) -> None:
        self.short, self.history, self.quiet = short, history, quiet
        self.errors: deque[float] = deque()
        self.recent: deque[float] = deque(maxlen=short)
        self.scores: deque[float] = deque(maxlen=quiet) if quiet else deque(maxlen=1)
        self.s1 = self.s2 = 0.0
        self.count = 0
        for e in seed or ():
            self._add(e)

    def _add(self, e: float) -> None:
        self.errors.append(e)
        self.s1 += e
        self.s2 += e * e
        if len(self.errors) > self.history:
            old = self.errors.popleft()
            self.s1 -= old
            self.s2 -= old * old
        self.recent.append(e)
        self.count += 1
        if self.count % 4096 == 0:  # refresh the running sums against drift
            self.s1 = math.fsum(self.errors)
            self.s2 = math.fsum(x * x for x in self.errors)

    def update(self, error: float) -> float:
        self._add(error)
        m = len(self.errors)
        mean = self.s1 / m
        std = math.sqrt(max(self.s2 / m - mean * mean, 1e-12))
        z = (sum(self.recent) / len(self.recent) - mean) / std
        q = 0.5 * math.erfc(z / math.sqrt(2.0)) if z > 0 else 1.0
        score = min(1.0, max(0.0, math.log(max(q, 1e-300)) / math.log(1e-10)))
        if not self.quiet:
            return score
        shown = score if score > max(self.scores, default=0.0) else 0.0
        self.scores.append(score)
        return shown


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


SIMPLE = {"null": NullDetector, "windowedGaussian": WindowedGaussian, "persistence": Persistence}
