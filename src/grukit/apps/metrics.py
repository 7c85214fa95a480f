"""Forecast accuracy measures, as the M competitions define them.

For one series with actuals ``y`` (h,), forecasts ``f`` (h,) and in-sample history ``x`` (n,):

    MAE   = mean |y - f|
    RMSE  = sqrt(mean (y - f)^2)
    sMAPE = mean 200 |y - f| / (|y| + |f|)                        (percent; M3/M4 definition)
    MASE  = MAE / mean_{t > m} |x_t - x_{t-m}|                    (m = the season, 1 if none)

Over many series the M3 convention averages sMAPE over all forecasts (every horizon of every
series); MAE, RMSE and MASE are averaged over series.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "rmse", "smape", "mase_scale", "evaluate"]


def mae(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(np.abs(y - f)))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - f) ** 2)))


def smape(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-point sMAPE in percent (0 where both are 0)."""
    denom = np.abs(y) + np.abs(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 200.0 * np.abs(y - f) / denom
    return np.where(denom == 0, 0.0, out)


def mase_scale(x: np.ndarray, season: int) -> float:
    """The in-sample mean absolute error of the seasonal naive forecast (naive if the history
    is shorter than two seasons)."""
    m = season if season > 1 and len(x) > season else 1
    if len(x) <= m:
        return float("nan")
    return float(np.mean(np.abs(x[m:] - x[:-m])))


def evaluate(
    actuals: list[np.ndarray], forecasts: list[np.ndarray], histories: list[np.ndarray], season: int
) -> dict[str, float]:
    """MAE, RMSE, sMAPE (over all forecasts) and MASE (series with a zero scale are left out of
    MASE and counted) for lists of per-series arrays."""
    maes, rmses, smapes, mases = [], [], [], []
    for y, f, x in zip(actuals, forecasts, histories):
        maes.append(mae(y, f))
        rmses.append(rmse(y, f))
        smapes.append(smape(y, f))
        scale = mase_scale(x, season)
        if scale > 0 and np.isfinite(scale):
            mases.append(maes[-1] / scale)
    return {
        "MAE": float(np.mean(maes)),
        "RMSE": float(np.mean(rmses)),
        "sMAPE": float(np.mean(np.concatenate(smapes))),
        "MASE": float(np.mean(mases)) if mases else float("nan"),
        "series": len(actuals),
        "mase_series_left_out": len(actuals) - len(mases),
    }
