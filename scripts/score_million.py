"""Score a 1,000,000-point signal with a small signal-mode GRUAnomalyDetector and report the
time and whether scoring raised the process's peak memory (it streams the signal in chunks:
windows for the autoencoder, the GRU's state carried from chunk to chunk for the forecaster).

    .venv/bin/python scripts/score_million.py [--model autoencoder|forecaster]
"""

import argparse
import resource
import time

import numpy as np

from grukit.apps.anomaly import GRUAnomalyDetector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["autoencoder", "forecaster"], default="autoencoder")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    t = np.arange(20_000)
    train = np.sin(2 * np.pi * t / 50) + 0.05 * rng.standard_normal(len(t))
    det = GRUAnomalyDetector(
        "signal", window=128, model=args.model, train={"epochs": 1, "steps_per_epoch": 20, "progress": "off"}
    ).fit(train)
    n = 1_000_000
    x = np.sin(2 * np.pi * np.arange(n) / 50) + 0.05 * rng.standard_normal(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    det.score(x)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.model}: scored {n:,} points in {seconds:.1f} s; peak RSS {after:.0f} MB "
        f"(before scoring {before:.0f} MB)"
    )


if __name__ == "__main__":
    main()
