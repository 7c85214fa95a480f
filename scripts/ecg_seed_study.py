"""The ECG5000 one-class measurements behind docs/anomaly.md: the demo's autoencoder trained from
several seeds, each scored on the 4,500 test beats; the averages of their normalised scores (an
ensemble assembled offline); and other summaries of each model's reconstruction error.

    .venv/bin/python scripts/ecg_seed_study.py --seeds 0 1 2 3 4 [--epochs 100] [--bidirectional]
        [--latent-size 16] [--time-features 4] [--calibration-share 0.2] [--hidden-size 128]

The defaults are the demo's settings (``grukit anomaly demo``); ``--time-features 0
--latent-size 32`` is the demo's autoencoder before the decoder had a clock.

About 1.5 minutes per seed on the 2-core development machine (100 epochs). Prints one line per
seed and, for two or more seeds, the ROC-AUC of every average of k of them.
"""

import argparse
import itertools

import numpy as np
import torch


def _robust_z(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    med = np.median(ref)
    return (v - med) / (1.4826 * np.median(np.abs(ref - med)))


def main() -> None:
    from scipy.spatial.distance import cdist
    from sklearn.metrics import average_precision_score, roc_auc_score

    from grukit.apps.anomaly import GRUAnomalyDetector
    from grukit.data.ucr import load_ucr
    from grukit.train.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--latent-size", type=int, default=16)
    p.add_argument("--time-features", type=int, default=None, help="default: the sequences mode's, 4")
    p.add_argument("--calibration-share", type=float, default=0.2)
    args = p.parse_args()

    x_tr, y_tr, x_te, y_te = load_ucr("ECG5000")
    normal, labels = x_tr[y_tr == 1], (y_te != 1).astype(int)
    # the 1-NN's squared distance per point: what "as close as the nearest normal beat" means
    nn = cdist(x_te, normal).min(1) ** 2 / x_te.shape[1]
    print(
        f"1-NN distance: ROC-AUC {roc_auc_score(labels, nn):.4f}, PR-AUC {average_precision_score(labels, nn):.4f}"
    )
    print(
        f"1-NN squared distance per point (median): normal test beats {np.median(nn[labels == 0]):.4f}, "
        f"abnormal {np.median(nn[labels == 1]):.4f}",
        flush=True,
    )
    scores = {}
    for seed in args.seeds:
        det = GRUAnomalyDetector(  # the demo's one-class settings
            "sequences",
            hidden_size=args.hidden_size,
            latent_size=args.latent_size,
            false_alarm_rate=0.05,
            bidirectional=args.bidirectional,
            time_features=args.time_features,
            calibration_share=args.calibration_share,
            train=TrainConfig(epochs=args.epochs, batch_size=32, patience=None, seed=seed, progress="off"),
        )
        det.fit(normal, log=lambda s: None)
        scores[seed] = det.score(x_te)
        net = det.net_[0]

        @torch.no_grad()
        def run(x, net=net, det=det):
            z = torch.from_numpy(((x - det.mean_) / det.std_).astype(np.float32))[:, :, None]
            _, h = net.encoder(z)
            last = h[-2:].transpose(0, 1).flatten(1) if net.encoder.bidirectional else h[-1]
            return (net(z) - z)[:, :, 0].double().numpy(), torch.tanh(net.to_latent(last)).double().numpy()

        err, lat = run(x_te)
        err_tr, lat_tr = run(normal)
        sq = err**2
        kernel = np.ones(15) / 15
        summaries = {
            "mean squared error (the detector's)": sq.mean(1),
            "mean absolute error": np.abs(err).mean(1),
            "largest 15-point moving average of the squared error": np.array(
                [np.convolve(r, kernel, "same") for r in sq]
            ).max(1),
            "90th percentile of the squared error": np.quantile(sq, 0.9, axis=1),
            "latent-space distance to the nearest normal train beat": cdist(lat, lat_tr).min(1),
        }
        # the sum of two robust z's, each normalised on the normal training beats
        sq_tr, lat_nn_tr = (err_tr**2).mean(1), np.sort(cdist(lat_tr, lat_tr), 1)[:, 1]
        summaries["mean squared error + latent distance (robust z each)"] = _robust_z(
            summaries["mean squared error (the detector's)"], sq_tr
        ) + _robust_z(summaries["latent-space distance to the nearest normal train beat"], lat_nn_tr)
        mse = sq.mean(1)
        print(
            f"seed {seed}: ROC-AUC {roc_auc_score(labels, scores[seed]):.4f}, PR-AUC "
            f"{average_precision_score(labels, scores[seed]):.4f}; squared error per point "
            f"(median): normal test beats {np.median(mse[labels == 0]):.4f}, abnormal "
            f"{np.median(mse[labels == 1]):.4f}",
            flush=True,
        )
        for name, s in summaries.items():
            print(f"    {name}: {roc_auc_score(labels, s):.4f}", flush=True)
    seeds = list(scores)
    for k in range(2, len(seeds) + 1):
        aucs = [
            roc_auc_score(labels, np.mean([scores[s] for s in c], 0))
            for c in itertools.combinations(seeds, k)
        ]
        print(
            f"average of {k} seeds' scores: ROC-AUC {min(aucs):.4f} - {max(aucs):.4f} (mean {np.mean(aucs):.4f}, "
            f"{len(aucs)} combinations)"
        )


if __name__ == "__main__":
    main()
