"""Classical forecasting baselines, run on the same split as the GRU.

- ``naive``: the last value, repeated.
- ``seasonal_naive``: the last season, repeated.
- ``naive2``: the M3 competition's Naive2 - the naive forecast of the seasonally adjusted series
  (classical multiplicative decomposition), reseasonalised; seasonality is used only when the
  autocorrelation at the seasonal lag passes a 90% test, as in the M3/M4 benchmarks.
- ``ses``, ``theta``, ``ets``: from statsmodels (imported on first use): simple exponential
  smoothing and the Theta method on the Naive2-adjusted series, and damped-trend exponential
  smoothing (additive damped trend on the seasonally adjusted series).

Each takes the history ``x`` (n,), the horizon ``h`` and the season ``m`` and returns (h,).
"""

from __future__ import annotations

import warnings

import numpy as np

from grukit._extras import require

__all__ = ["BASELINES", "naive", "seasonal_naive", "naive2", "theta", "ets", "seasonality_test"]


def naive(x: np.ndarray, h: int, m: int) -> np.ndarray:
    return np.full(h, x[-1], dtype=np.float64)


def seasonal_naive(x: np.ndarray, h: int, m: int) -> np.ndarray:
    if m <= 1 or len(x) < m:
        return naive(x, h, m)
    last = x[-m:]
    return np.array([last[i % m] for i in range(h)], dtype=np.float64)


def seasonality_test(x: np.ndarray, m: int) -> bool:
    """The M4 benchmarks' test: the autocorrelation at lag m exceeds 1.645 times its standard
    error (computed from the autocorrelations below it)."""
    if m <= 1 or len(x) < 3 * m:
        return False
    xc = x - x.mean()
    denom = np.sum(xc**2)
    if denom == 0:
        return False
    acf = np.array([np.sum(xc[k:] * xc[: len(x) - k]) / denom for k in range(m + 1)])
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(acf[1:m] ** 2)) / len(x))
    return bool(abs(acf[m]) > limit)


def seasonal_indices(x: np.ndarray, m: int) -> np.ndarray | None:
    """Classical multiplicative decomposition: (m,) indices aligned so that index ``i`` belongs
    to positions ``t`` with ``t % m == i``; None when the series is not seasonal or not positive."""
    if not seasonality_test(x, m) or np.any(x <= 0):
        return None
    # centred moving average of order m (2xm for even m)
    if m % 2 == 0:
        kernel = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        kernel = np.ones(m) / m
    trend = np.convolve(x, kernel, mode="valid")  # (n - 2*(m//2),)
    offset = m // 2
    ratios = x[offset : offset + len(trend)] / trend
    idx = np.zeros(m)
    for i in range(m):
        vals = ratios[(np.arange(len(ratios)) + offset) % m == i]
        idx[i] = vals.mean() if len(vals) else 1.0
    idx *= m / idx.sum()
    return idx


def _adjusted(x: np.ndarray, h: int, m: int):
    idx = seasonal_indices(x, m) if m > 1 else None
    if idx is None:
        return x, np.ones(h)
    n = len(x)
    past = idx[np.arange(n) % m]
    future = idx[np.arange(n, n + h) % m]
    return x / past, future


def naive2(x: np.ndarray, h: int, m: int) -> np.ndarray:
    adj, future = _adjusted(x, h, m)
    return np.full(h, adj[-1]) * future


def _holtwinters():
    return require("statsmodels.tsa.holtwinters", "apps", what="the Theta and ETS baselines")


def theta(x: np.ndarray, h: int, m: int) -> np.ndarray:
    """The standard Theta method (theta=2 line, SES, drift = half the linear trend), applied to
    the Naive2-deseasonalised series, as in the M3 competition."""
    SimpleExpSmoothing = _holtwinters().SimpleExpSmoothing

    adj, future = _adjusted(x, h, m)
    n = len(adj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SimpleExpSmoothing(adj, initialization_method="estimated").fit()
    ses = fit.forecast(h)
    alpha = fit.params["smoothing_level"]
    b = np.polyfit(np.arange(n), adj, 1)[0]  # slope of the linear trend
    drift = 0.5 * b * (np.arange(1, h + 1) - 1 + 1 / max(alpha, 1e-6) - ((1 - alpha) ** n) / max(alpha, 1e-6))
    return (ses + drift) * future


def ets(x: np.ndarray, h: int, m: int) -> np.ndarray:
    """Exponential smoothing with an additive damped trend on the deseasonalised series (the
    "damped" benchmark of the M competitions)."""
    ExponentialSmoothing = _holtwinters().ExponentialSmoothing

    adj, future = _adjusted(x, h, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(
            adj, trend="add", damped_trend=True, initialization_method="estimated"
        ).fit()
    return np.asarray(fit.forecast(h)) * future


BASELINES = {
    "naive": naive,
    "seasonal naive": seasonal_naive,
    "Naive2": naive2,
    "Theta": theta,
    "ETS (damped)": ets,
}
