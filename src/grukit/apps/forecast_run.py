"""One forecasting run, as ``grukit forecast train``, ``demo`` and ``benchmark`` do it: hold out
the last ``horizon`` points of every series (or take a competition's official split), train the
GRU on the rest, forecast the holdout, run the baselines on the same split, and write the model,
``metrics.json``, the forecast CSV and plots into one folder (rank 0 only under ``torchrun``)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import grukit
from grukit._io import atomic_write, atomic_write_text
from grukit.apps.evaluation import BaselinePlan, beaten, compare, format_table, plot_forecasts, run_baselines
from grukit.apps.forecast import GRUForecaster
from grukit.data.series import DataError, SeriesSet

__all__ = [
    "holdout_run",
    "split_holdout",
    "benchmark_run",
    "m3_demo",
    "summary",
    "PUBLISHED_M3_MONTHLY",
    "DEMO_ARIMA_SERIES",
]

# sMAPE on the 1428 monthly series, Makridakis & Hibon (2000), "The M3-Competition: results,
# conclusions and implications", International Journal of Forecasting 16(4), Table 13
PUBLISHED_M3_MONTHLY = {"Naive2": 16.91, "Theta": 13.85}


def split_holdout(series: SeriesSet, h: int, need: int) -> tuple[SeriesSet, list[np.ndarray]]:
    """The series without their last ``h`` points, and those points. Every series needs at least
    ``need`` points in all (``min_input`` + 2 x ``h``; with the default ``min_input``, chosen
    at fit time, at least 1)."""
    short = series.shorter_than(need)
    if short:
        raise DataError(
            f"{short}; training and checking a horizon of {h} needs "
            f"at least {need} (min_input + 2 x horizon): use a shorter --horizon or --min-input"
        )
    train = SeriesSet(
        ids=list(series.ids),
        values=[v[:-h] for v in series.values],
        timestamps=[t[:-h] for t in series.timestamps] if series.timestamps is not None else None,
        freq=series.freq,
        report=series.report,
    )
    return train, [v[-h:] for v in series.values]


def holdout_run(
    series: SeriesSet,
    forecaster: GRUForecaster,
    out: Path,
    *,
    resume: bool = False,
    run_config: dict | None = None,
    published: dict | None = None,
    test: tuple[SeriesSet, list[np.ndarray]] | None = None,
    title: str = "forecast",
    log=print,
    is_main: bool = True,
    shown_as: Path | None = None,
    baselines: BaselinePlan = BaselinePlan(),
) -> dict:
    """Train, evaluate and write everything; returns the metrics. ``test`` is a split already
    made (M3's official one, or ``split_holdout``'s) instead of holding out the last ``horizon``
    points here. ``shown_as`` is the folder named in messages when ``out`` is a temporary one
    that will be renamed. ``baselines`` says which statsforecast models run, where, and on how
    many processes."""
    cfg = forecaster.config
    h, m = cfg.horizon, cfg.season
    if test is None:
        train, actuals = split_holdout(series, h, (cfg.min_input or 1) + 2 * h)
    else:
        train, actuals = test
    t0 = time.perf_counter()
    forecaster.fit(train, out_dir=out, resume=resume, log=log)
    fit_seconds = time.perf_counter() - t0
    if not is_main:
        return {}
    fc = forecaster.predict(h, train)
    histories = [np.asarray(v, float) for v in train.values]
    base = run_baselines(histories, h, m, baselines, log=log)
    result = compare(actuals, list(fc.point), histories, m, base, ids=train.ids)
    # the share of actual values inside the forecast interval
    qs = sorted(fc.quantiles)
    if len(qs) >= 3:
        lo, hi = fc.quantiles[qs[0]], fc.quantiles[qs[-1]]
        inside = np.mean([np.mean((a >= lo[i]) & (a <= hi[i])) for i, a in enumerate(actuals)])
        result["interval"] = {
            "quantiles": [qs[0], qs[-1]],
            "nominal": qs[-1] - qs[0],
            "coverage": float(inside),
        }
    metrics = {
        "title": title,
        **result,
        "baselines_skipped": base.skipped,
        "baseline_seconds": base.seconds,
        "baseline_cpu_seconds": base.cpu_seconds,
        "published": published or {},
        "forecaster": dict(forecaster.config_.__dict__),  # as fitted (min_input from the data)
        "split": {
            "horizon": h,
            "season": m,
            "series": len(train),
            "test_points": int(sum(len(a) for a in actuals)),
        },
        "data": series.report,
        "training": {
            "epochs_run": forecaster.result_.epochs_run,
            "best_epoch": forecaster.result_.best_epoch,
            "best_val_loss": forecaster.result_.best_val_loss,
            "stopped": forecaster.result_.stopped,
            "seconds": round(fit_seconds, 1),
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "grukit": grukit.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "config": run_config or {},
    }
    forecaster.save(out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    frame = fc.to_frame()
    frame["actual"] = np.concatenate(actuals)
    atomic_write(out / "holdout_forecast.csv", lambda tmp: frame.to_csv(tmp, index=False))
    plot_forecasts(
        out / "holdout.png", train.ids, histories, fc, actuals, title=f"{title}: last {h} points held out"
    )
    log("")
    for line in summary(result, published, base.skipped):
        log(line)
    if "interval" in result:
        iv = result["interval"]
        log(f"{iv['nominal']:.0%} interval covers {iv['coverage']:.1%} of the held-out points")
    log(
        f"wrote {shown_as or out}/: model, metrics.json, holdout_forecast.csv, holdout.png, learning_curves.png"
    )
    return metrics


def summary(result: dict, published: dict | None, skipped: dict) -> list[str]:
    """The printed report: the table, what the GRU beats, the sample's table where a baseline
    ran on a sample, and the skipped baselines."""
    lines = [format_table(result["methods"], {f"{k} (published)": v for k, v in (published or {}).items()})]
    for measure in ("sMAPE", "MASE"):
        lines.append(f"GRU beats on {measure}: {beaten(result['gru_beats'], measure)}")
    sample = result.get("sample")
    if sample is not None:
        lines += [
            "",
            f"On {sample['series']} evenly spaced series of {sample['of']}, where "
            f"{', '.join(sample['models'])} ran (too slow for all of them here):",
            format_table(sample["methods"]),
        ]
        for measure in ("sMAPE", "MASE"):
            lines.append(f"GRU beats on {measure} there: {beaten(sample['gru_beats'], measure)}")
    for name, why in skipped.items():
        lines.append(f"skipped {name}: {why}")
    return lines


# the demo's share for AutoARIMA on M3 monthly: on all 1428 series it took 942 s on the 2-core
# development machine, and on 100 series 68 s, which with AutoETS (74 s) and AutoTheta (13 s)
# added 155 s to the demo; 50 series keep the addition near the 2 minutes it may take
# (`grukit forecast benchmark` runs it on every series; docs/forecasting.md)
DEMO_ARIMA_SERIES = 50


def benchmark_run(
    name: str,
    out: Path,
    train_config,
    *,
    hidden_size: int = 64,
    num_layers: int = 1,
    deseasonalize: bool = True,
    input_len: int | None = None,
    members: int = 1,
    input_lens: Sequence[int] | None = None,
    limit: int | None = None,
    baselines: BaselinePlan = BaselinePlan(),
    resume: bool = False,
    run_config: dict | None = None,
    log=print,
    is_main: bool = True,
    shown_as: Path | None = None,
) -> dict:
    """A competition subset (``data.m3.BENCHMARKS``: M3 or M1, monthly, quarterly, yearly,
    other): train on the official training parts of its series (or the first ``limit``),
    forecast the official test parts with the competition's horizon and season, and compare with
    every baseline on the same split (and, for M3 monthly in full, the published results).
    ``members`` > 1 trains that many forecasters (seeds seed, seed + 1, ...) and median-combines
    them (``ForecasterEnsemble``), each reading ``input_lens[k % len(input_lens)]`` points when
    ``input_lens`` is given."""
    from grukit.data.m3 import load_benchmark

    b = load_benchmark(name, limit=limit)
    hyper = dict(
        train=train_config,
        hidden_size=hidden_size,
        num_layers=num_layers,
        deseasonalize=deseasonalize,
        input_len=input_len,
    )
    if members > 1:
        from grukit.apps.forecast_ensemble import ForecasterEnsemble

        forecaster = ForecasterEnsemble(b.horizon, b.season, members=members, input_lens=input_lens, **hyper)
    else:
        forecaster = GRUForecaster(b.horizon, b.season, **hyper)
    log(
        f"{b.name}: {len(b.history)} series, horizon {b.horizon}, season {b.season}, "
        "the official train/test split"
        + (f"; an ensemble of {members} GRU forecasters" if members > 1 else "")
        + (f" reading {', '.join(map(str, input_lens))} points" if members > 1 and input_lens else "")
    )
    published = PUBLISHED_M3_MONTHLY if name == "m3-monthly" and limit is None else None
    return holdout_run(
        b.history,
        forecaster,
        out,
        resume=resume,
        run_config=run_config,
        published=published,
        test=(b.history, b.actuals),
        title=b.name,
        log=log,
        is_main=is_main,
        shown_as=shown_as,
        baselines=baselines,
    )


def m3_demo(
    out: Path, train_config, *, limit: int | None = None, arima_series: int | None = DEMO_ARIMA_SERIES, **kw
) -> dict:
    """The M3 monthly benchmark as the demo runs it: AutoARIMA on ``arima_series`` evenly spaced
    series only (None: all), everything else on all 1428 series (or the first ``limit``)."""
    limits = {} if arima_series is None else {"AutoARIMA": arima_series}
    return benchmark_run(
        "m3-monthly", out, train_config, limit=limit, baselines=BaselinePlan(limits=limits), **kw
    )
