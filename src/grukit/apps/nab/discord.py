"""The matrix-profile discord as a causal NAB detector (``stumpy``, imported on first use).

Per file of n records, P = the probationary length (``scoring.probation_length(n)``):

1. The window ``m`` is chosen from the probationary records as the signal mode chooses it
   (``anomaly.period``: whole periods of the dominant autocorrelation period, 16 to 256 points,
   64 without a period, at most P / 4).
2. Record t's error is the *left* matrix-profile value of the subsequence of the ``m`` records
   ending at t: its z-normalised distance to the nearest subsequence that starts before it
   (trivial matches excluded), a discord among everything seen so far.
3. The errors are scored by ``detectors.ErrorScorer`` as the GRU's are, one record at a time;
   the second half of the probationary records' errors seed it (the first windows have little
   before them, so their nearest earlier neighbours are far: seeded with them, the scorer ranked
   every later discord low).

The left profile is computed for the whole file in one ``stumpy.stump`` pass (its left nearest
neighbour indices; the distances from them), because stumpy's incremental ``stumpi`` took about
30 ms a record on the 2-core machine, hours for the benchmark. The value at record t depends on
the records up to t only, which is what an online detector computes; a test changes a file's
future and checks that no earlier score moves. This is the one NAB detector here that is not
driven record by record by ``detectors.run_online``.
"""

from __future__ import annotations

import numpy as np

from grukit.apps.nab.detectors import ErrorScorer
from grukit.apps.nab.scoring import probation_length

__all__ = ["Discord", "left_profile"]


def left_profile(v: np.ndarray, m: int) -> np.ndarray:
    """(n,) -> (n - m + 1,): each subsequence's z-normalised distance to its nearest subsequence
    starting before it outside the exclusion zone (inf where there is none)."""
    from grukit._extras import require
    from grukit.apps.anomaly.discord import quiet_stumpy

    stumpy = require("stumpy", "apps", what="the discord detector")
    with quiet_stumpy():
        left = stumpy.stump(v, m)[:, 2].astype(np.int64)  # (L,): the left nearest neighbour, -1 if none
    w = np.lib.stride_tricks.sliding_window_view(v, m)  # (L, m)
    sd = w.std(1, keepdims=True)
    z = np.where(sd > 0, (w - w.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0), 0.0)  # constant: 0
    out = np.full(len(w), np.inf)
    has = left >= 0
    out[has] = np.sqrt(((z[has] - z[left[has]]) ** 2).sum(1))
    return out


class Discord:
    """See the module docstring."""

    name = "discord"

    def score_file(self, values: np.ndarray) -> np.ndarray:
        """(n,) scores in [0, 1] of one file's records (0 in the probationary period)."""
        from grukit.apps.anomaly.period import dominant_period, window_from_period

        v = np.asarray(values, dtype=np.float64)
        n, P = len(v), probation_length(len(values))
        out = np.zeros(n)
        m = max(3, window_from_period(dominant_period(v[:P]), P // 4))
        if n < 2 * m:
            return out
        err = np.full(n, np.nan)
        err[m - 1 :] = left_profile(v, m)  # err[t]: the subsequence ending at record t
        err[~np.isfinite(err)] = np.nan
        seed = err[P // 2 : P]  # the first windows have little before them: their distances are no norm
        scorer = ErrorScorer(seed=list(seed[~np.isnan(seed)]))
        for t in range(P, n):
            out[t] = scorer.update(0.0 if np.isnan(err[t]) else float(err[t]))
        return out
