"""The automatic statistical forecasters of ``statsforecast`` (Nixtla) as baselines: AutoETS,
AutoARIMA and AutoTheta, each choosing its form per series, with ``season_length`` = the run's
season.

- ``AutoETS``: the exponential-smoothing state-space model (error, trend, damping, season) with
  the lowest AICc, as R's ``forecast::ets``.
- ``AutoARIMA``: the Hyndman-Khandakar stepwise search, as R's ``forecast::auto.arima``.
- ``AutoTheta``: the best of four Theta variants (standard, optimised, dynamic standard, dynamic
  optimised) by in-sample MSE, on the series deseasonalised where a 90% test finds seasonality.

Every model runs through the batched interface, ``StatsForecast(models=[model], freq=1)
.forecast(df=..., h=...)``, on the series in order. With more than one job the series are dealt
round-robin to spawned worker processes (never forked: a fork copies torch's and Numba's thread
pools mid-state), each making the same call on its share; a series' forecast does not depend on
the share it lands in, so the job count never changes a result. ``statsforecast`` is imported
where it is used (the ``apps`` extra); without it :func:`forecast_auto` raises
``MissingDependency``.

Shapes: S series, h steps.
"""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

import numpy as np

from grukit._extras import require

__all__ = ["AUTO_MODELS", "forecast_auto", "default_jobs"]

AUTO_MODELS = ("AutoETS", "AutoARIMA", "AutoTheta")

# a spawned worker imports grukit and statsforecast (about 3 s); below this many series a job
# does not pay for it
SERIES_PER_JOB = 25


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _model(name: str, m: int):
    models = require("statsforecast.models", "apps", what=f"the {name} baseline")
    return getattr(models, name)(season_length=m)


def forecast_share(name: str, histories: list[np.ndarray], h: int, m: int) -> np.ndarray:
    """(S, h) forecasts of model ``name`` for ``histories``, through ``StatsForecast.forecast``
    in this process."""
    pd = require("pandas", "apps", what="the statsforecast baselines")
    model = _model(name, m)
    StatsForecast = require("statsforecast", "apps", what=f"the {name} baseline").StatsForecast
    lengths = [len(x) for x in histories]
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(len(histories)), lengths),  # (sum n_i,)
            "ds": np.concatenate([np.arange(n) for n in lengths]),  # integer time, step 1
            "y": np.concatenate(histories).astype(np.float64),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsforecast's notices about its own defaults
        out = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=df, h=h)
    out = out.sort_values(["unique_id", "ds"], kind="stable")
    return out[name].to_numpy(np.float64).reshape(len(histories), h)  # (S, h)


def _jobs_for(count: int, n_jobs: int | None) -> int:
    jobs = default_jobs() if n_jobs is None else n_jobs
    return max(1, min(jobs, count // SERIES_PER_JOB))


def _timed_share(name: str, histories: list[np.ndarray], h: int, m: int) -> tuple[np.ndarray, float]:
    """:func:`forecast_share` and the CPU seconds it took in its process."""
    t = time.process_time()
    fc = forecast_share(name, histories, h, m)  # (S, h)
    return fc, time.process_time() - t


def forecast_auto(
    histories: list[np.ndarray], h: int, m: int, names=AUTO_MODELS, *, n_jobs: int | None = None, log=None
) -> tuple[dict[str, list[np.ndarray]], dict[str, dict]]:
    """Forecasts ``{name: [(h,), ...]}`` of each model in ``names`` for every history, and
    ``{name: {"seconds": wall, "cpu_seconds": summed over the processes}}`` (a busy machine
    stretches the first, hardly the second; the pool's start-up counts for the first model's
    wall time). ``n_jobs`` processes (None: the cores), fewer when there are under
    ``SERIES_PER_JOB`` series a job. The workers are spawned: a script that calls this with
    more than one job must guard its own work with ``if __name__ == "__main__":``."""
    for name in names:
        _model(name, m)  # a missing statsforecast is found here, before a pool is started
    jobs = _jobs_for(len(histories), n_jobs)
    shares = [np.arange(j, len(histories), jobs) for j in range(jobs)]  # round-robin: similar lengths
    forecasts, times = {}, {}
    t = time.perf_counter()
    pool = _spawned_pool(jobs) if jobs > 1 else nullcontext()
    with pool:
        for name in names:
            if jobs == 1:
                fc, cpu = _timed_share(name, histories, h, m)  # (S, h)
            else:
                parts = list(
                    pool.map(
                        _timed_share,
                        [name] * jobs,
                        [[histories[i] for i in s] for s in shares],
                        [h] * jobs,
                        [m] * jobs,
                    )
                )
                fc, cpu = np.empty((len(histories), h)), sum(c for _, c in parts)
                for share, (part, _) in zip(shares, parts):
                    fc[share] = part
            forecasts[name] = list(fc)
            times[name] = {"seconds": round(time.perf_counter() - t, 1), "cpu_seconds": round(cpu, 1)}
            if log is not None:
                log(
                    f"baseline {name}: {times[name]['seconds']:.1f}s ({times[name]['cpu_seconds']:.1f}s of CPU; "
                    f"{len(histories)} series, {jobs} process{'es' if jobs > 1 else ''})"
                )
            t = time.perf_counter()
    return forecasts, times


def _spawned_pool(jobs: int) -> ProcessPoolExecutor:
    import multiprocessing

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
