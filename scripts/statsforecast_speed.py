"""How fast statsforecast's AutoETS, AutoARIMA and AutoTheta forecast M3 monthly series, three ways:
one series at a time through each model's ``forecast(y=..., h=...)`` (a Python loop), batched
through ``StatsForecast(...).forecast(df=..., h=...)`` in this process, and batched in grukit's
spawned worker processes (``grukit.apps.auto_baselines.forecast_auto``, what a run uses). Prints
the wall and CPU seconds of each (CPU: this process's, or the workers' summed; on a machine that
other work shares, the wall time stretches and the CPU time hardly does) and the largest
difference between the loop's forecasts and the others'.

    python scripts/statsforecast_speed.py [--series 100] [--arima-series 30] [--jobs 2]

The series are evenly spaced over the 1428 (horizon 18, season 12); the first model also pays
for compiling statsforecast's Numba functions unless they are cached.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100, help="series for AutoETS and AutoTheta")
    p.add_argument("--arima-series", type=int, default=30, help="series for AutoARIMA (the slow one)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes for the third way")
    args = p.parse_args()

    from statsforecast import models

    from grukit.apps import auto_baselines as A
    from grukit.apps.evaluation import even_sample
    from grukit.data.m3 import load_benchmark

    b = load_benchmark("m3-monthly")
    h, m = b.horizon, b.season
    print(f"M3 monthly, horizon {h}, season {m}")
    print("seconds, wall / CPU")
    print(f"{'model':<10}{'series':>7}{'loop':>14}{'batched':>14}{'processes':>14}{'max |diff|':>12}")
    A.SERIES_PER_JOB = 1  # this script compares the ways at any size
    for name in A.AUTO_MODELS:
        count = args.arima_series if name == "AutoARIMA" else args.series
        xs = [b.history.values[i] for i in even_sample(len(b.history), count)]
        t, c = time.perf_counter(), time.process_time()
        loop = np.array([getattr(models, name)(season_length=m).forecast(y=x, h=h)["mean"] for x in xs])
        t_loop = f"{time.perf_counter() - t:.1f} / {time.process_time() - c:.1f}"
        t, c = time.perf_counter(), time.process_time()
        batched = A.forecast_share(name, xs, h, m)
        t_batched = f"{time.perf_counter() - t:.1f} / {time.process_time() - c:.1f}"
        t = time.perf_counter()
        spawned, times = A.forecast_auto(xs, h, m, [name], n_jobs=args.jobs)
        t_spawned = f"{time.perf_counter() - t:.1f} / {times[name]['cpu_seconds']:.1f}"
        diff = max(np.max(np.abs(batched - loop)), np.max(np.abs(np.array(spawned[name]) - loop)))
        print(f"{name:<10}{len(xs):>7}{t_loop:>14}{t_batched:>14}{t_spawned:>14}{diff:>12.3g}")


if __name__ == "__main__":
    main()
