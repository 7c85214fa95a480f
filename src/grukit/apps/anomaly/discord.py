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

``save``/``load`` keep a fitted detector as one ``.safetensors`` file (the reference and, in its
metadata, the window, rate and threshold): ``grukit anomaly train`` writes it beside the GRU so
that ``grukit anomaly score`` can run the baseline on new data. A join compares every window of
the signal with every window of the reference; ``MAX_PAIRS`` bounds what ``score_baseline``
attempts (about 4e8 pairs a second on 2 cores of an AMD EPYC with stumpy 1.13).

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
    "score_baseline",
    "quiet_stumpy",
    "MAX_PAIRS",
]

FORMAT = "grukit-discord-1"
MAX_PAIRS = 4 * 10**10  # window pairs a join may compare in score_baseline: about 100 s here


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

    def save(self, path) -> None:
        """The fitted detector as one ``.safetensors`` file, written atomically."""
        from safetensors.numpy import save

        from grukit._io import atomic_write

        if not hasattr(self, "reference_"):
            from grukit.apps.contract import NotFittedError

            raise NotFittedError("this DiscordDetector is not fitted yet: call fit()")
        meta = {
            "format": FORMAT,
            "window": str(self.window),
            "false_alarm_rate": repr(self.false_alarm_rate),
            "threshold": repr(self.threshold_),
        }
        data = save({"reference": np.ascontiguousarray(self.reference_, np.float64)}, metadata=meta)
        atomic_write(path, lambda tmp: open(tmp, "wb").write(data))

    @classmethod
    def load(cls, path) -> DiscordDetector:
        """A detector written by ``save``; a damaged or foreign file raises ``DataError``. Reads
        no more memory than the file holds (safetensors checks every offset against it)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT or list(f.keys()) != ["reference"]:
                    raise DataError(f"{path}: not a discord baseline written by grukit ({FORMAT})")
                if f.get_slice("reference").get_dtype() != "F64":
                    raise DataError(f"{path}: the discord baseline's reference is not float64")
                ref = f.get_tensor("reference")
            det = cls(int(meta["window"]), false_alarm_rate=float(meta["false_alarm_rate"]))
            threshold = float(meta["threshold"])
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: cannot read the discord baseline: {exc}") from None
        x = _as_signal(ref, f"{path}: the reference")
        if det.window < 3 or len(x) < 4 * det.window or not np.isfinite(threshold):
            raise DataError(f"{path}: the discord baseline's window, reference or threshold is invalid")
        det.reference_, det.threshold_ = x, threshold
        return det


@dataclass
class BaselineRun:
    """One run of the discord baseline beside a GRU: what it scored, or why it did not run."""

    window: int
    skipped: str | None = None  # the reason (stumpy missing, too little normal data), else None
    threshold: float = float("nan")
    scores: np.ndarray | None = None  # (n,)
    flags: np.ndarray | None = None  # (n,) bool: scores above the threshold
    seconds: float = 0.0
    detector: DiscordDetector | None = None  # fitted (run_baseline), to save beside the GRU


def run_baseline(normal, signal, *, window: int, false_alarm_rate: float) -> BaselineRun:
    """Fit the discord baseline on ``normal`` and score ``signal``, timed; a missing ``stumpy`` or
    too little normal data is reported in ``skipped`` rather than raised (the GRU's results stand
    without the baseline). The one core of the CLI's and the demo's baseline."""
    from grukit._extras import MissingDependency

    t = time.perf_counter()
    try:
        det = DiscordDetector(window, false_alarm_rate=false_alarm_rate).fit(normal)
    except (MissingDependency, DataError) as exc:
        return BaselineRun(window, skipped=str(exc))
    return score_baseline(det, signal, started=t)


def score_baseline(det: DiscordDetector, signal, *, started: float | None = None) -> BaselineRun:
    """Score ``signal`` with a fitted discord detector, timed; a missing ``stumpy``, a signal the
    detector cannot score or a join over ``MAX_PAIRS`` is reported in ``skipped``."""
    from grukit._extras import MissingDependency

    t = time.perf_counter() if started is None else started
    n, m = len(signal), det.window
    pairs = max(0, n - m + 1) * max(0, len(det.reference_) - m + 1)
    if pairs > MAX_PAIRS:
        return BaselineRun(
            m,
            skipped=f"{n:,} points against a reference of {len(det.reference_):,} are {pairs:.2g} window "
            f"pairs to compare, over the {MAX_PAIRS:.0e} this command attempts (score a shorter stretch)",
        )
    try:
        scores = det.score(signal)
    except (MissingDependency, DataError) as exc:
        return BaselineRun(m, skipped=str(exc))
    return BaselineRun(
        m,
        threshold=det.threshold_,
        scores=scores,
        flags=scores > det.threshold_,
        seconds=round(time.perf_counter() - t, 1),
        detector=det,
    )
