"""The matrix-profile discord baseline for the signal mode (``stumpy``, imported on first use).

A discord is a subsequence far from its nearest neighbour (Yeh et al. 2016; simple discords
rival most deep detectors on the UCR anomaly archive, Wu & Keogh 2021). For a window of ``m``
points the subsequence ``s_i = x[i:i+m]`` has the matrix-profile value

    P(i) = min_j || zn(s_i) - zn(r_j) ||_2,

``zn`` z-normalising a subsequence, ``r_j`` the subsequences of a reference: here, as for the GRU,
the normal training data (an AB-join: the distance from each new subsequence to the most similar
normal one), or the signal itself with trivial matches excluded (a self-join) when no reference
is given. Channels are joined one by one and their profiles averaged. A point's score is the mean
``P`` of the windows covering it (as many at the ends as inside: ``scoring.window_errors``).

``DiscordDetector`` is used like ``GRUAnomalyDetector``: ``fit`` keeps the normal data as the
reference and sets the threshold at the ``1 - false_alarm_rate`` quantile of the normal data's
own scores in a self-join (each normal window against the other normal windows): every normal
point calibrates, none is held out. (A held-out fifth gave too few, strongly correlated scores:
on a clean periodic test signal a 99% quantile of them flagged 23% of the points.)

Shapes: a signal (n,) or (n, C); ``m`` points per window.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

import numpy as np

from grukit._extras import require
from grukit.apps.anomaly.scoring import over_windows
from grukit.data.series import DataError

__all__ = [
    "matrix_profile",
    "discord_scores",
    "DiscordDetector",
    "BaselineRun",
    "run_baseline",
    "quiet_stumpy",
]


@contextlib.contextmanager
def quiet_stumpy():
    """stumpy warns when many profile values are near 0 (repeated shapes, flat stretches, a
    reference that holds the signal's windows), suggesting a self-join setting: expected here,
    not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A large number of values in `P` are smaller")
        yield


def _as_signal(x, what: str) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected numbers") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{what}: expected a signal of shape (n,) or (n, C), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: the discord baseline needs finite values (fill gaps first)")
    return x


def matrix_profile(x, m: int, reference=None) -> np.ndarray:
    """(n, C) -> (n - m + 1,): each subsequence's distance to its nearest neighbour in
    ``reference`` (or in ``x`` itself, trivial matches excluded), averaged over channels."""
    stumpy = require("stumpy", "apps", what="the matrix-profile discord baseline")
    x = _as_signal(x, "signal")
    ref = None if reference is None else _as_signal(reference, "reference")
    if ref is not None and ref.shape[1] != x.shape[1]:
        raise DataError(f"the reference has {ref.shape[1]} channel(s), the signal {x.shape[1]}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 3:
        raise DataError(f"the discord window must be an integer of at least 3 points, got {m!r}")
    shortest = len(x) if ref is None else min(len(x), len(ref))
    if shortest < (2 * m if ref is None else m):
        raise DataError(
            f"a discord window of {m} points needs at least {2 * m if ref is None else m} points "
            f"in the signal{'' if ref is None else ' and the reference'}; got {shortest}"
        )
    profiles = []
    for c in range(x.shape[1]):
        with quiet_stumpy():
            if ref is None:
                out = stumpy.stump(x[:, c], int(m))
            else:
                out = stumpy.stump(x[:, c], int(m), ref[:, c], ignore_trivial=False)
        profiles.append(out[:, 0].astype(np.float64))
    return np.mean(profiles, axis=0)  # (n - m + 1,)


def discord_scores(x, m: int, reference=None) -> np.ndarray:
    """(n,) or (n, C) -> (n,): each point's mean matrix-profile value over the windows covering
    it (see the module docstring)."""
    p = matrix_profile(x, m, reference)  # (L,)
    n = len(p) + m - 1
    return over_windows(p[None], np.arange(len(p)), n, m, 1, "window")[0]


class DiscordDetector:
    """The discord baseline with a calibrated threshold (see the module docstring).

    >>> d = DiscordDetector(window=140).fit(normal)
    >>> scores, flags = d.score(signal), d.predict(signal)
    """

    def __init__(self, window: int, *, false_alarm_rate: float = 0.01) -> None:
        self.window = window
        self.false_alarm_rate = false_alarm_rate

    def fit(self, X) -> DiscordDetector:
        x = _as_signal(X, "normal data")
        m = self.window
        if len(x) < 4 * m:
            raise DataError(
                f"the discord baseline with a window of {m} needs at least {4 * m} points of "
                f"normal data; got {len(x)}"
            )
        self.reference_ = x
        normal = discord_scores(x, m)  # each normal window against the others: a self-join
        self.threshold_ = float(np.quantile(normal, 1 - self.false_alarm_rate))
        return self

    def score(self, X) -> np.ndarray:
        """(n,) scores: the mean distance of the windows covering each point to their nearest
        normal subsequence."""
        if not hasattr(self, "reference_"):
            from grukit.apps.contract import NotFittedError

            raise NotFittedError("this DiscordDetector is not fitted yet: call fit()")
        return discord_scores(X, self.window, self.reference_)

    def predict(self, X) -> np.ndarray:
        return self.score(X) > self.threshold_


@dataclass
class BaselineRun:
    """One run of the discord baseline beside a GRU: what it scored, or why it did not run."""

    window: int
    skipped: str | None = None  # the reason (stumpy missing, too little normal data), else None
    threshold: float = float("nan")
    scores: np.ndarray | None = None  # (n,)
    flags: np.ndarray | None = None  # (n,) bool: scores above the threshold
    seconds: float = 0.0


def run_baseline(normal, signal, *, window: int, false_alarm_rate: float) -> BaselineRun:
    """Fit the discord baseline on ``normal`` and score ``signal``, timed; a missing ``stumpy`` or
    too little normal data is reported in ``skipped`` rather than raised (the GRU's results stand
    without the baseline). The one core of the CLI's and the demo's baseline."""
    from grukit._extras import MissingDependency

    t = time.perf_counter()
    try:
        det = DiscordDetector(window, false_alarm_rate=false_alarm_rate).fit(normal)
        scores = det.score(signal)
    except (MissingDependency, DataError) as exc:
        return BaselineRun(window, skipped=str(exc))
    return BaselineRun(
        window,
        threshold=det.threshold_,
        scores=scores,
        flags=scores > det.threshold_,
        seconds=round(time.perf_counter() - t, 1),
    )
