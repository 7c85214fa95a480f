"""Holdout evaluation of a forecaster beside the baselines, on the same split, and its plots.

The baselines are the per-series functions of ``baselines.BASELINES`` (naive, seasonal naive,
Naive2, Theta, damped ETS) and statsforecast's AutoETS, AutoARIMA and AutoTheta
(``auto_baselines``), batched. A model too slow for every series may run on an evenly spaced
sample (``BaselinePlan.limits``); then every method is also scored on that sample alone, so the
GRU is compared with it on the same series."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from grukit._extras import MissingDependency
from grukit.apps import baselines as B
from grukit.apps.auto_baselines import AUTO_MODELS, forecast_auto
from grukit.apps.metrics import evaluate

__all__ = [
    "BaselinePlan",
    "BaselineRun",
    "run_baselines",
    "compare",
    "beaten",
    "even_sample",
    "plot_forecasts",
    "format_table",
]


@dataclass(frozen=True)
class BaselinePlan:
    """What a run computes beside the per-series baselines of ``baselines.BASELINES``.

    Attributes:
        auto: the statsforecast models to run (``auto_baselines.AUTO_MODELS`` by default).
        n_jobs: processes for them; None: the cores this process may use.
        limits: a model's name -> the number of evenly spaced series it runs on, for a model too
            slow for every series in the time a run has (the demo's AutoARIMA); the GRU and the
            other baselines are then also scored on those series alone.
    """

    auto: tuple[str, ...] = AUTO_MODELS
    n_jobs: int | None = None
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class BaselineRun:
    """The baselines' forecasts: ``forecasts`` {name: [(h,), ...]} on every series, ``sampled``
    {name: [(h,), ...]} on the series ``sample`` (k,) only, the seconds each took (``seconds``:
    wall; ``cpu_seconds``: summed over the processes, for the statsforecast models), and the
    skipped ones with the reason."""

    forecasts: dict[str, list[np.ndarray]]
    seconds: dict[str, float]
    skipped: dict[str, str]
    sample: np.ndarray | None = None
    sampled: dict[str, list[np.ndarray]] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def even_sample(count: int, k: int) -> np.ndarray:
    """(min(k, count),) indices spread evenly from the first series to the last."""
    return np.unique(np.linspace(0, count - 1, min(k, count)).round().astype(np.int64))


def run_baselines(
    histories: list[np.ndarray], h: int, season: int, plan: BaselinePlan = BaselinePlan(), log=None
) -> BaselineRun:
    """Every baseline on the same histories; a baseline whose package is missing is skipped and
    named in ``skipped`` with the package."""
    run = BaselineRun({}, {}, {})
    for name, fn in B.BASELINES.items():
        t = time.perf_counter()
        try:
            run.forecasts[name] = [fn(x, h, season) for x in histories]
        except MissingDependency as exc:
            run.skipped[name] = f"needs {exc.name} ({exc})"
            continue
        run.seconds[name] = round(time.perf_counter() - t, 1)
        if log is not None:
            log(f"baseline {name}: {run.seconds[name]:.1f}s")
    limited = {name: k for name, k in plan.limits.items() if name in plan.auto and k < len(histories)}
    everywhere = [name for name in plan.auto if name not in limited]
    try:
        if everywhere:
            fc, times = forecast_auto(histories, h, season, everywhere, n_jobs=plan.n_jobs, log=log)
            run.forecasts.update(fc)
            _add_times(run, times)
        for name, k in limited.items():
            sample = even_sample(len(histories), k)
            if run.sample is not None and not np.array_equal(sample, run.sample):
                raise ValueError(f"limited baselines must share one sample size, got {plan.limits}")
            run.sample = sample
            fc, times = forecast_auto(
                [histories[i] for i in sample], h, season, [name], n_jobs=plan.n_jobs, log=log
            )
            run.sampled.update(fc)
            _add_times(run, times)
    except MissingDependency as exc:
        for name in plan.auto:
            run.skipped[name] = f"needs {exc.name} ({exc})"
    return run


def _add_times(run: BaselineRun, times: dict) -> None:
    for name, t in times.items():
        run.seconds[name], run.cpu_seconds[name] = t["seconds"], t["cpu_seconds"]


def _compared(actuals, gru_forecasts, histories, season: int, baseline_forecasts: dict) -> dict:
    results = {"GRU": evaluate(actuals, gru_forecasts, histories, season)}
    for name, fc in baseline_forecasts.items():
        results[name] = evaluate(actuals, fc, histories, season)
    gru = results["GRU"]
    beats = {
        name: {"sMAPE": gru["sMAPE"] < r["sMAPE"], "MASE": gru["MASE"] < r["MASE"]}
        for name, r in results.items()
        if name != "GRU"
    }
    return {"methods": results, "gru_beats": beats}


def compare(actuals, gru_forecasts, histories, season: int, baselines: BaselineRun, ids=None) -> dict:
    """Metrics of the GRU and every baseline, and which baselines the GRU beats (on sMAPE and
    on MASE). With a sample (a limited baseline), ``sample`` holds the same for the sampled
    series, every method included, and their ``ids``."""
    result = _compared(actuals, gru_forecasts, histories, season, baselines.forecasts)
    if baselines.sample is not None:
        pick = lambda xs: [xs[i] for i in baselines.sample]  # noqa: E731
        on_sample = {name: pick(fc) for name, fc in baselines.forecasts.items()}
        on_sample.update(baselines.sampled)
        result["sample"] = {
            "series": len(baselines.sample),
            "of": len(actuals),
            "models": sorted(baselines.sampled),
            **_compared(pick(actuals), pick(list(gru_forecasts)), pick(histories), season, on_sample),
            "ids": pick(list(ids)) if ids is not None else [int(i) for i in baselines.sample],
        }
    return result


def beaten(gru_beats: dict, measure: str) -> str:
    names = [n for n, b in gru_beats.items() if b[measure]]
    return ", ".join(names) if names else "none of the baselines"


def format_table(methods: dict, published: dict | None = None) -> str:
    lines = [f"{'method':<22}{'sMAPE':>9}{'MASE':>9}{'MAE':>12}{'RMSE':>12}"]
    for name, r in methods.items():
        lines.append(f"{name:<22}{r['sMAPE']:>9.2f}{r['MASE']:>9.3f}{r['MAE']:>12.4g}{r['RMSE']:>12.4g}")
    for name, value in (published or {}).items():
        lines.append(f"{name:<22}{value:>9.2f}{'':>9}{'':>12}{'':>12}")
    return "\n".join(lines)


def plot_forecasts(
    path: str | os.PathLike,
    ids,
    histories,
    forecast,
    actuals=None,
    *,
    count: int = 4,
    title: str = "forecasts",
) -> None:
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
            ax.fill_between(
                steps, lo, hi, color="tab:blue", alpha=0.2, label=f"{qs[0]:g}-{qs[-1]:g} quantiles"
            )
        ax.plot(steps, forecast.point[i], color="tab:blue", lw=1.5, label="GRU forecast")
        if actuals is not None:
            ax.plot(steps, actuals[i], color="tab:orange", lw=1, ls="--", label="actual")
        ax.set_title(f"series {ids[i]}", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    if count:
        axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
