"""The ECG5000 long-signal measurements behind docs/anomaly.md: the demo's signal-mode detector
(or a variant) fitted once on the normal train beats laid end to end, then scored on several
long signals built the demo's way (`build_long_signal`: 300 test beats, 9 abnormal) from
different construction seeds (the demo uses seed 0).

    .venv/bin/python scripts/ecg_long_signal_study.py [--aggregate window|point|min]
        [--smooth N] [--stride N] [--epochs 15] [--constructions 0 1 2]

About a minute at 15 epochs on the 2-core development machine.
"""

import argparse

import numpy as np


def main() -> None:
    from grukit.apps.anomaly import AGGREGATES, GRUAnomalyDetector
    from grukit.apps.anomaly_metrics import events, ranking
    from grukit.apps.anomaly_run import ECG_BEAT, build_long_signal
    from grukit.data.ucr import load_ucr
    from grukit.train.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aggregate", choices=AGGREGATES, default="window")
    p.add_argument("--smooth", type=int, default=1)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--constructions", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()

    x_tr, y_tr, x_te, y_te = load_ucr("ECG5000")
    det = GRUAnomalyDetector(  # the demo's signal settings, but for the options above
        "signal", window=ECG_BEAT, latent_size=32, false_alarm_rate=0.01, aggregate=args.aggregate,
        smooth=args.smooth, stride=args.stride,
        train=TrainConfig(epochs=args.epochs, batch_size=64, steps_per_epoch=50, patience=10, seed=0,
                          progress="off"))
    det.fit(np.concatenate(x_tr[y_tr == 1]), log=lambda s: None)
    for seed in args.constructions:
        signal, labels = build_long_signal(x_te, y_te, beats=300, seed=seed)
        s = det.score(signal)
        ev = events(labels, s > det.threshold_, tolerance=ECG_BEAT, min_gap=ECG_BEAT // 2)
        r = ranking(labels, s)
        print(f"construction {seed}: detected {ev['detected']} of {ev['events']}, "
              f"{ev['false_alarms_per_1000']:.2f} false alarms per 1,000 points, "
              f"point ROC-AUC {r['ROC-AUC']:.3f}", flush=True)


if __name__ == "__main__":
    main()
