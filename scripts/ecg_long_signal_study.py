"""The ECG5000 long-signal measurements behind docs/anomaly.md: the demo's signal-mode detector
(or a variant) fitted once on the normal train beats laid end to end, then scored on several
long signals built the demo's way (`build_long_signal`: 300 test beats, 9 abnormal) from
different construction seeds (the demo uses seed 0).

    .venv/bin/python scripts/ecg_long_signal_study.py [--model forecaster|autoencoder|discord]
        [--horizon N] [--aggregate window|point|min] [--smooth N] [--stride N] [--epochs N]
        [--batch-size N] [--false-alarm-rate R] [--seed N] [--constructions 0 1 2]

The defaults are the demo's forecaster; `--model autoencoder` the window autoencoder the demo
used before it (`grukit.apps.anomaly_run.SIGNAL_SETTINGS`); `--model discord` the matrix-profile
discord baseline the demo runs beside the GRU (window one beat; `--false-alarm-rate` applies).
A few minutes on the 2-core development machine.
"""

import argparse
from dataclasses import replace

import numpy as np


def main() -> None:
    from grukit.apps.anomaly import AGGREGATES, MODELS
    from grukit.apps.anomaly_metrics import events, ranking
    from grukit.apps.anomaly_run import ECG_BEAT, SIGNAL_SETTINGS, build_long_signal, signal_detector
    from grukit.data.ucr import load_ucr

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=[*MODELS, "discord"], default="forecaster")
    p.add_argument("--horizon", type=int, default=None, help="forecaster (default: the demo's, 140)")
    p.add_argument("--aggregate", choices=AGGREGATES, default="window", help="autoencoder")
    p.add_argument("--stride", type=int, default=None, help="autoencoder (default: window / 4)")
    p.add_argument("--smooth", type=int, default=None, help="default: the model's demo setting")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's demo setting")
    p.add_argument("--batch-size", type=int, default=None, help="default: the model's demo setting")
    p.add_argument("--false-alarm-rate", type=float, default=None, help="default: 0.01")
    p.add_argument("--seed", type=int, default=0, help="the model's seed")
    p.add_argument("--constructions", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()

    x_tr, y_tr, x_te, y_te = load_ucr("ECG5000")
    if args.model == "discord":
        return _discord(args, x_tr, y_tr, x_te, y_te)
    smooth = SIGNAL_SETTINGS[args.model][0].get("smooth", 1) if args.smooth is None else args.smooth
    changes = {"smooth": smooth}
    if args.false_alarm_rate is not None:
        changes["false_alarm_rate"] = args.false_alarm_rate
    if args.model == "forecaster":
        if args.horizon is not None:
            changes["horizon"] = args.horizon
    else:
        changes.update(aggregate=args.aggregate, stride=args.stride)
    det = signal_detector(args.model, epochs=args.epochs, seed=args.seed, progress="off", **changes)
    if args.batch_size is not None:
        det.train_config = replace(det.train_config, batch_size=args.batch_size)
    print(f"{det.config}\n{det.train_config}", flush=True)
    det.fit(np.concatenate(x_tr[y_tr == 1]), log=lambda s: None)
    for seed in args.constructions:
        signal, labels = build_long_signal(x_te, y_te, beats=300, seed=seed)
        s = det.score(signal)
        ev = events(labels, s > det.threshold_, tolerance=ECG_BEAT, min_gap=ECG_BEAT // 2)
        r = ranking(labels, s)
        print(
            f"construction {seed}: detected {ev['detected']} of {ev['events']}, "
            f"{ev['false_alarms_per_1000']:.2f} false alarms per 1,000 points, "
            f"point ROC-AUC {r['ROC-AUC']:.3f}",
            flush=True,
        )


def _discord(args, x_tr, y_tr, x_te, y_te) -> None:
    from grukit.apps.anomaly_run import ECG_BEAT, build_long_signal, discord_baseline

    for seed in args.constructions:
        signal, labels = build_long_signal(x_te, y_te, beats=300, seed=seed)
        d = discord_baseline(
            np.concatenate(x_tr[y_tr == 1]),
            signal,
            labels,
            window=ECG_BEAT,
            tolerance=ECG_BEAT,
            false_alarm_rate=args.false_alarm_rate or 0.01,
            log=lambda s: None,
        )
        ev = d["events"]
        print(
            f"construction {seed}: detected {ev['detected']} of {ev['events']}, "
            f"{ev['false_alarms_per_1000']:.2f} false alarms per 1,000 points, "
            f"point ROC-AUC {d['point']['ROC-AUC']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
