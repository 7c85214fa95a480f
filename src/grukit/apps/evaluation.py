"""Holdout evaluation of a forecaster beside the baselines, on the same split, and its plots."""

from __future__ import annotations

import os
import time

import numpy as np

from grukit._extras import MissingDependency
from grukit.apps import baselines as B
from grukit.apps.metrics import evaluate

__all__ = ["run_baselines", "compare", "plot_forecasts", "format_table"]


def run_baselines(histories: list[np.ndarray], h: int, season: int, log=None) -> tuple[dict, dict]:
    """Forecasts and the seconds each baseline took; a baseline whose package is missing is
    skipped and named in the returned ``skipped``."""
    out, skipped = {}, {}
    for name, fn in B.BASELINES.items():
        t = time.perf_counter()
        try:
            out[name] = [fn(x, h, season) for x in histories]
        except MissingDependency as exc:
            skipped[name] = f"needs statsmodels ({exc})"
            continue
        if log is not None:
            log(f"baseline {name}: {time.perf_counter() - t:.1f}s")
    return out, skipped


def compare(actuals, gru_forecasts, histories, season: int, baseline_forecasts: dict) -> dict:
    """Metrics of the GRU and every baseline, and which baselines the GRU beats (on sMAPE and
    on MASE)."""
    results = {"GRU": evaluate(actuals, gru_forecasts, histories, season)}
    for name, fc in baseline_forecasts.items():
        results[name] = evaluate(actuals, fc, histories, season)
    gru = results["GRU"]
    beats = {
        name: {"sMAPE": gru["sMAPE"] < r["sMAPE"], "MASE": gru["MASE"] < r["MASE"]}
        for name, r in results.items() if name != "GRU"
    }
    return {"methods": results, "gru_beats": beats}


def format_table(methods: dict, published: dict | None = None) -> str:
    lines = [f"{'method':<22}{'sMAPE':>9}{'MASE':>9}{'MAE':>12}{'RMSE':>12}"]
    for name, r in methods.items():
        lines.append(f"{name:<22}{r['sMAPE']:>9.2f}{r['MASE']:>9.3f}{r['MAE']:>12.4g}{r['RMSE']:>12.4g}")
    for name, value in (published or {}).items():
        lines.append(f"{name:<22}{value:>9.2f}{'':>9}{'':>12}{'':>12}")
    return "\n".join(lines)


def plot_forecasts(path: str | os.PathLike, ids, histories, forecast, actuals=None, *,
                   count: int = 4, title: str = "forecasts") -> None:
    """History, forecast and interval (and the actual values where known) for ``count``
    series, as a PNG written atomically."""
    from grukit.train.plots import pyplot, save_figure

    plt = pyplot()
    count = min(count, len(ids))
    picks = np.linspace(0, len(ids) - 1, count).astype(int) if count else []
    fig, axes = plt.subplots(count, 1, figsize=(7.5, 2.2 * count + 0.4), squeeze=False)
    qs = sorted(forecast.quantiles)
    for ax, i in zip(axes[:, 0], picks):
        x = histories[i]
        n, h = len(x), forecast.point.shape[1]
        ax.plot(np.arange(n), x, color="black", lw=1, label="history")
        steps = np.arange(n, n + h)
        if len(qs) >= 3:
            lo, hi = forecast.quantiles[qs[0]][i], forecast.quantiles[qs[-1]][i]
            ax.fill_between(steps, lo, hi, color="tab:blue", alpha=0.2,
                            label=f"{qs[0]:g}-{qs[-1]:g} quantiles")
        ax.plot(steps, forecast.point[i], color="tab:blue", lw=1.5, label="GRU forecast")
        if actuals is not None:
            ax.plot(steps, actuals[i], color="tab:orange", lw=1, ls="--", label="actual")
        ax.set_title(f"series {ids[i]}", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    if count:
        axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
