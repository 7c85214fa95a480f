"""``grukit inspect``: what a trained model's GRU gates do over time.

  grukit inspect --model DIR [--input FILE.csv] --out DIR [--series ID] [--start ROW] [--length N]
                 [--layer K] [--network encoder|decoder] [--threshold 0.5]

DIR is a folder written by `grukit forecast train`, `grukit anomaly train`, `grukit text train` or
`grukit speech train`.
The model reads one input the way it does when it forecasts, scores or generates (a forecaster:
the last --length points of --series, scaled, default its input window; a signal forecaster:
--length rows from --start, its state carried from row 0; a window autoencoder: the window
starting at row --start; a sequence autoencoder: row --start; a language model: --text, drawn
under the bits it spends on each character; a speech recognizer: the recording --input, drawn
under its loudness per step), and the gates of one layer (--layer) are written
to --out:

  gates.png     the input, then heatmaps of the update gate z_t (the share of the previous state
                carried forward) and the reset gate r_t, units x time, units sorted by mean z
  holds.png     how long units hold their state: runs of consecutive steps with z_t > --threshold
  summary.json  the numbers printed: mean gates, hold durations, the most-holding units

The gates are computed by the model's backend where it exposes them, else by `reference`
(summary.json says which); docs/inspect.md explains what they mean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from grukit.cli._errors import UserError
from grukit.cli._runs import Formatter, load_model

FILES = ("gates.png", "holds.png", "summary.json")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="heatmaps of a trained model's GRU gates over time",
        description=__doc__,
        formatter_class=Formatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="a folder written by `forecast train` or `anomaly train`",
    )
    p.add_argument(
        "--input",
        default=None,
        metavar="FILE",
        help="the data to read: a CSV (a forecaster: default the series it was fitted "
        "on), or an audio file for a speech recognizer",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for gates.png, holds.png, summary.json"
    )
    p.add_argument("--series", default=None, metavar="ID", help="forecaster: the series (default: the first)")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        metavar="ROW",
        help="anomaly detector: the first row shown (signals) or the row read (sequences)",
    )
    p.add_argument(
        "--length",
        type=int,
        default=None,
        metavar="N",
        help="steps read: a forecaster's window (default: its input length), a signal "
        "forecaster's stretch (default: 400 rows or to the end)",
    )
    p.add_argument(
        "--text", default=None, help="language model: the text read (default: a sentence of news text)"
    )
    p.add_argument(
        "--layer", type=int, default=0, metavar="K", help="the GRU layer shown (0: the one reading the input)"
    )
    p.add_argument(
        "--network", choices=["encoder", "decoder"], default="encoder", help="an autoencoder's GRU to inspect"
    )
    p.add_argument("--member", type=int, default=0, help="an ensemble's member")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="a unit holds its state at the steps where z_t exceeds this",
    )
    p.add_argument("--force", action="store_true", help="replace the files in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from grukit import inspect
    from grukit._inspect_plots import plot_gates, plot_holds, unit_order
    from grukit._io import atomic_write, atomic_write_text

    for name in ("layer", "start", "member"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    if args.length is not None and args.length < 1:
        raise UserError(f"--length must be a positive integer, got {args.length}")
    if not 0 <= args.threshold < 1:
        raise UserError(f"--threshold must be in [0, 1), got {args.threshold}")
    folder = Path(args.model)
    if (folder / "forecaster.json").is_file() or (folder / "ensemble.json").is_file():
        what = _forecaster(args)
    elif (folder / "detector.json").is_file():
        what = _detector(args)
    elif (folder / "lm.json").is_file():
        what = _language_model(args)
    elif (folder / "speech.json").is_file():
        what = _speech(args)
    else:
        raise UserError(
            f"{folder} is not a model folder written by `grukit forecast train`, "
            "`grukit anomaly train`, `grukit text train` or `grukit speech train` (no "
            "forecaster.json, detector.json, lm.json or speech.json)"
        )
    gru, forward = what["gru"], what["forward"]
    if args.layer >= gru.num_layers:
        raise UserError(f"--layer must be below the GRU's {gru.num_layers} layer(s), got {args.layer}")
    out = Path(args.out)
    taken = [name for name in FILES if (out / name).exists()]
    if taken and not args.force:
        raise UserError(f"{out / taken[0]} exists; pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)

    with inspect.recording(gru) as traces, torch.no_grad():
        forward()
    trace = traces[-1]
    z = trace.z[args.layer, :, :, 0].double().numpy()  # (D, T, H), the one sequence read
    r = trace.r[args.layer, :, :, 0].double().numpy()  # (D, T, H)
    D, T, H = z.shape
    order = unit_order(z[0])  # (H,) most-holding units first, by the forward direction
    names = ["forward", "reverse"][:D]
    panels = []
    for d in range(D):
        suffix = f" ({names[d]})" if D > 1 else ""
        panels += [
            (f"z{suffix}, units\nby mean z", z[d][:, order]),
            (f"r{suffix}, units\nby mean z", r[d][:, order]),
        ]
    title = f"{what['title']}: layer {args.layer} gates, {T} steps (gates by {trace.backend})"
    atomic_write(
        out / "gates.png",
        lambda tmp: plot_gates(
            tmp,
            what["signal"],
            panels,
            units=order,
            title=title,
            signal_label=what["signal_label"],
            channel_names=what.get("channels"),
            first=what.get("first", 0),
            x_label=what.get("x_label", "time step"),
            tick_labels=what.get("tick_labels"),
        ),
    )
    holds = [inspect.hold_durations(torch.from_numpy(z[d]), args.threshold).length for d in range(D)]
    lengths = torch.cat(holds).numpy()
    atomic_write(
        out / "holds.png",
        lambda tmp: plot_holds(
            tmp,
            lengths,
            threshold=args.threshold,
            steps=T,
            title=f"{what['title']}: how long the {D * H} units of layer {args.layer} hold their state",
        ),
    )
    summary = _summary(what, trace, args, z, r, lengths)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print("\n".join(_lines(summary)))
    print(f"wrote {out}/: {', '.join(FILES)}")
    return 0


# -- what each kind of model reads -----------------------------------------------------------------


def _forecaster(args) -> dict:
    """The forecaster's GRU reading the window it forecasts from (scaled, deseasonalised)."""
    from grukit.apps.forecast import GRUForecaster, _seasonal
    from grukit.data.series import read_csv
    from grukit.data.windows import make_inputs

    about = {}
    if (Path(args.model) / "ensemble.json").is_file():  # one member of a ForecasterEnsemble
        from grukit.apps.forecast_ensemble import ForecasterEnsemble

        ensemble, saved = load_model(ForecasterEnsemble, args.model)
        members = len(ensemble.members)
        if args.member >= members:
            raise UserError(f"--member must be below the ensemble's {members} member(s), got {args.member}")
        model, about = ensemble.members[args.member], {"member": args.member}
    else:
        model, saved = load_model(GRUForecaster, args.model)
    series = model.series_
    if args.input is not None:
        series = read_csv(
            args.input,
            id_col=saved.get("id_col"),
            time_col=saved.get("time_col"),
            value_col=saved.get("value_col"),
        )
    ids = [str(i) for i in series.ids]
    if args.series is None:
        pick = 0
    elif args.series in ids:
        pick = ids.index(args.series)
    else:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise UserError(f"--series {args.series!r} is not in the data; its series are {shown}")
    cfg = model.config
    L = args.length or cfg.input_len
    values, _ = _seasonal([np.asarray(series.values[pick], dtype=np.float64)], cfg, 1)
    x, mask, _ = make_inputs(values, np.array([0]), np.array([len(values[0])]), L)  # (1, L) each
    dtype = model.net_.head.weight.dtype
    inputs = torch.from_numpy(x).to(dtype), torch.from_numpy(mask).to(dtype)
    shown = np.where(mask[0] > 0, x[0], np.nan)[:, None]  # (L, 1): padding left blank
    return {
        "title": f"forecaster, series {ids[pick]}",
        "kind": "forecaster",
        "gru": model.net_.gru,
        "forward": lambda: model.net_(*inputs),
        "signal": shown,
        "signal_label": "input / scale"
        + (" (deseasonalised)" if cfg.deseasonalize and cfg.season > 1 else ""),
        "read": {"series": ids[pick], "points": L} | about,
    }


def _detector(args) -> dict:
    """One member of the detector's ensemble reading what it scores (standardised)."""
    from grukit.apps.anomaly import GRUAnomalyDetector

    det, saved = load_model(GRUAnomalyDetector, args.model)
    if args.input is None:
        raise UserError(
            "--input is needed for an anomaly detector: the CSV to read (the model folder keeps no data)"
        )
    if args.member >= len(det.net_):
        raise UserError(f"--member must be below the ensemble's {len(det.net_)} member(s), got {args.member}")
    channels, values = _read_values(args.input, saved)
    x = det._as_array(values, fitting=False)  # (n, C) or (N, T, C); the model's checks
    z = ((x - det.mean_) / det.std_).astype(np.float32)
    net, cfg = det.net_[args.member], det.config
    n = len(z)
    if args.start >= n:
        what = "rows" if cfg.mode == "signal" else "sequences (rows)"
        raise UserError(f"--start must be below the data's {n} {what}, got {args.start}")
    start = args.start
    autoencoder = cfg.mode == "sequences" or cfg.model == "autoencoder"
    if autoencoder and args.length is not None:
        raise UserError("--length applies to forecasters; an autoencoder reads its whole window or sequence")
    if not autoencoder and args.network != "encoder":
        raise UserError("--network applies to autoencoders; a signal forecaster has one GRU")
    if cfg.mode == "sequences":
        read = torch.from_numpy(z[start : start + 1])  # (1, T, C)
        about = {"row": start}
        title = f"sequence autoencoder, row {start}"
    elif cfg.model == "autoencoder":
        W = cfg.window
        if start + W > n:
            raise UserError(
                f"the window of {W} rows from --start {start} passes the end of the "
                f"signal ({n} rows); use --start {n - W} or less"
            )
        read = torch.from_numpy(z[None, start : start + W])  # (1, W, C)
        about = {"rows": [start, start + W]}
        title = f"window autoencoder, rows {start}-{start + W - 1}"
    else:
        stop = min(n, start + (args.length or 400))
        h = None
        if start > 0:  # the state scoring carries into the stretch, from a plain pass
            with torch.no_grad():
                _, h = net.gru(torch.from_numpy(z[None, :start]))  # (L, 1, H)
        window = torch.from_numpy(z[None, start:stop])  # (1, T, C)
        about = {"rows": [start, stop]}
        title = f"signal forecaster, rows {start}-{stop - 1}"
        return {
            "title": title,
            "kind": "anomaly detector (signal, forecaster)",
            "gru": net.gru,
            "forward": lambda: net(window, h),
            "signal": z[start:stop],
            "channels": channels,
            "first": start,
            "x_label": "row",
            "signal_label": "input (standardised)",
            "read": about,
        }
    gru = net.encoder if args.network == "encoder" else net.decoder
    return {
        "title": f"{title}, {args.network}",
        "kind": f"anomaly detector ({cfg.mode}, autoencoder)",
        "gru": gru,
        "forward": lambda: net(read),
        "signal": read[0].numpy(),
        "channels": channels if cfg.mode == "signal" else None,
        "first": start if cfg.mode == "signal" else 0,
        "x_label": "row" if cfg.mode == "signal" else "time step (column)",
        "signal_label": "input (standardised)",
        "read": about | {"network": args.network},
    }


SENTENCE = "the company said it expects to report a loss for the third quarter"


def _language_model(args) -> dict:
    """The language model's GRU reading ``--text`` (its embeddings), with the bits it spends on
    each character (the first has no context: not drawn) as the signal above the gates."""
    from grukit.apps.text import GRULanguageModel
    from grukit.apps.text.figures import surprisal

    if args.input is not None:
        raise UserError("--input is for forecasters and anomaly detectors; a language model reads --text")
    lm, _ = load_model(GRULanguageModel, args.model)
    text = args.text if args.text is not None else SENTENCE
    if args.length is not None:
        text = text[: args.length]
    ids = lm._tokens(text, "--text")
    if len(ids) < 2:
        raise UserError(f"--text must hold at least 2 tokens, got {len(ids)}")
    net = lm.net_
    x = torch.from_numpy(ids)[None]  # (1, T)
    labels = [
        lm.vocab_.decode(ids[t : t + 1]) if lm.vocab_.level == "char" else f"{ids[t]:02x}"
        for t in range(len(ids))
    ]
    return {
        "title": f"language model reading {len(ids)} tokens",
        "kind": "language model",
        "gru": net.gru,
        "forward": lambda: net(x),
        "signal": surprisal(lm, ids)[:, None],
        "signal_label": "bits",
        "x_label": "character" if lm.vocab_.level == "char" else "byte",
        "tick_labels": [("\u2423" if c == " " else c) for c in labels],
        "read": {"text": text},
    }


def _speech(args) -> dict:
    """The speech recognizer's GRU reading the recording ``--input`` (its normalised, stacked
    features), under the recording's log-mel energy per step (mean over the bands)."""
    from grukit.apps.speech.estimator import GRUSpeechRecognizer
    from grukit.data.audio import read_audio

    if args.input is None:
        raise UserError("--input is needed for a speech recognizer: an audio file (WAV, FLAC, OGG)")
    rec, _ = load_model(GRUSpeechRecognizer, args.model)
    wave, _ = read_audio(args.input, rec.config.sample_rate)
    if len(wave) < rec.min_samples:
        raise UserError(
            f"{args.input} is shorter than one step of the model "
            f"({1000 * rec.min_samples / rec.config.sample_rate:g} ms)"
        )
    net = rec.net_.eval()
    x = torch.from_numpy(wave)[None]  # (1, S)
    n = torch.tensor([len(wave)])
    with torch.no_grad():
        f, counts = net.features(x, n)  # (1, T, F)
    k = rec.config.stack
    steps = int(counts[0]) // k
    energy = f[0, : steps * k].mean(1).reshape(steps, k).mean(1)  # (T',) log-mel, mean over bands
    seconds = k * rec.config.feature_config().hop_length / rec.config.sample_rate
    return {
        "title": f"speech recognizer reading {Path(args.input).name}",
        "kind": "speech recognizer",
        "gru": net.gru,
        "forward": lambda: net.sequence(*net.frames(x, n)),
        "signal": energy.double().numpy()[:, None],
        "signal_label": "log-mel\nenergy",
        "x_label": f"step ({1000 * seconds:g} ms)",
        "read": {"input": args.input},
    }


def _read_values(path: str, saved: dict):
    """The channel names and their values (n, C) from a CSV: the model's ``value_cols`` (from its
    run's config.json), else every numeric column but its time and label columns."""
    import pandas as pd

    from grukit.data.series import DataError, read_frame

    df = read_frame(path)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    names = saved.get("value_cols")
    if names:
        missing = [c for c in names if c not in cols]
        if missing:
            raise DataError(
                f"{path}: no column {missing[0]!r} (the model's channels are "
                f"{', '.join(names)}); the columns are {', '.join(cols)}"
            )
    else:
        skip = {saved.get("time_col"), saved.get("label_col")}
        names = [c for c in cols if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
        if not names:
            raise DataError(f"{path}: no numeric columns to read")
    values = df[names].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & df[names].notna()
    if bad.any().any():
        row, col = [int(i) for i in np.argwhere(bad.to_numpy())[0]]
        raise DataError(
            f"{path}: line {row + 2}: {names[col]}={str(df[names[col]].iloc[row])!r} is not a number"
        )
    return names, values.to_numpy(dtype=float)


# -- the summary -------------------------------------------------------------------------------------


def _summary(what: dict, trace, args, z: np.ndarray, r: np.ndarray, lengths: np.ndarray) -> dict:
    """The numbers behind the figures; ``z``, ``r``: (D, T, H)."""
    D, T, H = z.shape
    mean_z = z.mean(1)  # (D, H)
    top = np.argsort(-mean_z.ravel(), kind="stable")[:5]
    return {
        "model": what["kind"],
        "read": what["read"],
        "layer": args.layer,
        "steps": T,
        "units": H,
        "directions": D,
        "gates_backend": trace.backend,
        "model_backend": trace.model_backend,
        "reset_after": trace.reset_after,
        "mean_z": float(z.mean()),
        "mean_r": float(r.mean()),
        "threshold": args.threshold,
        "held_share": float((z > args.threshold).mean()),
        "holds": {
            "runs": int(len(lengths)),
            "median": float(np.median(lengths)) if len(lengths) else 0.0,
            "longest": int(lengths.max()) if len(lengths) else 0,
        },
        "most_holding_units": [
            {
                "unit": int(i % H),
                "direction": ["forward", "reverse"][i // H],
                "mean_z": float(mean_z.ravel()[i]),
                "time_constant": float(1 / max(1 - mean_z.ravel()[i], 1e-12)),
            }
            for i in top
        ],
    }


def _lines(s: dict) -> list[str]:
    h = s["holds"]
    units = ", ".join(
        f"{u['unit']}{' (rev)' if u['direction'] == 'reverse' else ''} "
        f"z {u['mean_z']:.2f} (~{u['time_constant']:.1f} steps)"
        for u in s["most_holding_units"][:3]
    )
    return [
        f"{s['model']}, layer {s['layer']}: {s['units']} units x {s['steps']} steps"
        f"{' x 2 directions' if s['directions'] == 2 else ''}; gates by the {s['gates_backend']!r} "
        f"backend (the model runs on {s['model_backend']!r})",
        f"mean z {s['mean_z']:.3f}, mean r {s['mean_r']:.3f}; z > {s['threshold']:g} at "
        f"{s['held_share']:.1%} of unit-steps",
        f"holds: {h['runs']} runs, median {h['median']:g} steps, longest {h['longest']}",
        f"most-holding units (mean z, time constant 1/(1-z)): {units}",
    ]
