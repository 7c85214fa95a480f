"""One forecasting run, as ``grukit forecast train`` and ``grukit forecast demo`` do it: hold out
the last ``horizon`` points of every series, train the GRU on the rest, forecast the holdout,
run the baselines on the same split, and write the model, ``metrics.json``, the forecast CSV
and plots into one folder (rank 0 only under ``torchrun``)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import grukit
from grukit._io import atomic_write, atomic_write_text
from grukit.apps.evaluation import compare, format_table, plot_forecasts, run_baselines
from grukit.apps.forecast import GRUForecaster
from grukit.data.series import DataError, SeriesSet

__all__ = ["holdout_run", "split_holdout", "m3_demo", "PUBLISHED_M3_MONTHLY"]

# sMAPE on the 1428 monthly series, Makridakis & Hibon (2000), "The M3-Competition: results,
# conclusions and implications", International Journal of Forecasting 16(4), Table 13
PUBLISHED_M3_MONTHLY = {"Naive2": 16.91, "Theta": 13.85}


def split_holdout(series: SeriesSet, h: int, need: int) -> tuple[SeriesSet, list[np.ndarray]]:
    """The series without their last ``h`` points, and those points. Every series needs at least
    ``need`` points in all."""
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
) -> dict:
    """Train, evaluate and write everything; returns the metrics. ``test`` is a split already
    made (M3's official one, or ``split_holdout``'s) instead of holding out the last ``horizon``
    points here. ``shown_as`` is the folder named in messages when ``out`` is a temporary one
    that will be renamed."""
    cfg = forecaster.config
    h, m = cfg.horizon, cfg.season
    if test is None:
        train, actuals = split_holdout(series, h, cfg.min_input + 2 * h)
    else:
        train, actuals = test
    t0 = time.perf_counter()
    forecaster.fit(train, out_dir=out, resume=resume, log=log)
    fit_seconds = time.perf_counter() - t0
    if not is_main:
        return {}
    fc = forecaster.predict(h, train)
    histories = [np.asarray(v, float) for v in train.values]
    base, skipped = run_baselines(histories, h, m, log=log)
    result = compare(actuals, list(fc.point), histories, m, base)
    # the share of actual values inside the forecast interval
    qs = sorted(fc.quantiles)
    if len(qs) >= 3:
        lo, hi = fc.quantiles[qs[0]], fc.quantiles[qs[-1]]
        inside = np.mean([np.mean((a >= lo[i]) & (a <= hi[i])) for i, a in enumerate(actuals)])
        result["interval"] = {"quantiles": [qs[0], qs[-1]], "nominal": qs[-1] - qs[0],
                              "coverage": float(inside)}
    metrics = {
        "title": title,
        **result,
        "baselines_skipped": skipped,
        "published": published or {},
        "split": {"horizon": h, "season": m, "series": len(train), "test_points": int(sum(len(a) for a in actuals))},
        "data": series.report,
        "training": {
            "epochs_run": forecaster.result_.epochs_run,
            "best_epoch": forecaster.result_.best_epoch,
            "best_val_loss": forecaster.result_.best_val_loss,
            "stopped": forecaster.result_.stopped,
            "seconds": round(fit_seconds, 1),
        },
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "grukit": grukit.__version__, "threads": torch.get_num_threads(),
                    "platform": platform.platform()},
        "config": run_config or {},
    }
    forecaster.save(out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    frame = fc.to_frame()
    frame["actual"] = np.concatenate(actuals)
    atomic_write(out / "holdout_forecast.csv", lambda tmp: frame.to_csv(tmp, index=False))
    plot_forecasts(out / "holdout.png", train.ids, histories, fc, actuals,
                   title=f"{title}: last {h} points held out")
    log("")
    log(format_table(result["methods"], {f"{k} (published)": v for k, v in (published or {}).items()}))
    beaten = [n for n, b in result["gru_beats"].items() if b["sMAPE"]]
    log(f"GRU beats on sMAPE: {', '.join(beaten) if beaten else 'none of the baselines'}")
    if "interval" in result:
        iv = result["interval"]
        log(f"{iv['nominal']:.0%} interval covers {iv['coverage']:.1%} of the held-out points")
    log(f"wrote {shown_as or out}/: model, metrics.json, holdout_forecast.csv, holdout.png, learning_curves.png")
    return metrics


def m3_demo(out: Path, train_config, *, hidden_size: int = 64, num_layers: int = 1,
            deseasonalize: bool = True,
            limit: int | None = None, resume: bool = False, run_config: dict | None = None,
            log=print, is_main: bool = True, shown_as: Path | None = None) -> dict:
    """The M3 monthly benchmark: train on the official training parts of the 1428 series (or the
    first ``limit``), forecast the 18-month test parts, compare with the baselines and the
    published results (which apply to the full set only)."""
    from grukit.data.m3 import load_m3

    history, actuals = load_m3("monthly", limit=limit)
    forecaster = GRUForecaster(18, 12, train=train_config, hidden_size=hidden_size,
                               num_layers=num_layers, deseasonalize=deseasonalize)
    log(f"M3 monthly: {len(history)} series, horizon 18, the official train/test split")
    return holdout_run(history, forecaster, out, resume=resume, run_config=run_config,
                       published=PUBLISHED_M3_MONTHLY if limit is None else None,
                       test=(history, actuals), title="M3 monthly", log=log, is_main=is_main,
                       shown_as=shown_as)
