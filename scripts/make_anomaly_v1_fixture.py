"""Write tests/fixtures/anomaly_v1/: two tiny anomaly detectors saved by the OLD code, in format
``grukit.GRUAnomalyDetector/1``, with the scores that old code gave on fixed inputs.

The test ``test_a_detector_saved_by_the_first_format_still_loads`` loads these folders with the
current code and requires the same scores, so the migration from /1 is checked against files the
old writer really wrote (not against a /1 folder rebuilt by the new loader's own rules).

Format /1 was last written by commit e699771 (the parent of 2865a68, which introduced /2; find it
with ``git log -S "GRUAnomalyDetector/2" --oneline``). To reproduce:

    git worktree add /tmp/old e699771
    .venv/bin/python scripts/make_anomaly_v1_fixture.py /tmp/old
    git worktree remove /tmp/old

The script imports grukit from ``<old checkout>/src`` (it refuses to run on a grukit that writes
another format). The data are generated here with NumPy from fixed seeds; training is the old
trainer's, deterministic on one CPU thread (torch's and NumPy's generators seeded by the fit).
Folders: ``signal/`` (window autoencoder, aggregate "window", smoothing) and ``sequences/``
(one-class autoencoder; /1 had no decoder clock, so loading it must not add one). Each holds the
old ``detector.json`` and ``model.safetensors`` as written, and ``scores.json``: the input and the
old scores (floats written by ``json`` as their shortest round-trip form, so exact).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TRAIN = {
    "epochs": 3,
    "batch_size": 16,
    "steps_per_epoch": 8,
    "lr": 1e-2,
    "patience": None,
    "progress": "off",
    "seed": 0,
}


def signal(n: int, seed: int) -> np.ndarray:
    """A noisy sine of period 16 (n,)."""
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 16) + 0.05 * np.random.default_rng(seed).standard_normal(n)


def cases() -> dict[str, tuple[str, dict, np.ndarray, np.ndarray]]:
    """name -> (mode, hyperparameters, training data, data to score)."""
    scored = signal(200, seed=2)
    scored[60:63] += 2.5  # a spike
    scored[120:150] = 0.3  # a flat stretch
    beats = signal(24 * 30, seed=3).reshape(30, 24)  # (N, T)
    odd = beats[:6].copy()
    odd[:3, 8:14] = 0.0  # three sequences with a notch
    return {
        "signal": ("signal", dict(window=16, hidden_size=4, smooth=3), signal(400, seed=1), scored),
        "sequences": ("sequences", dict(hidden_size=4, latent_size=2), beats, odd),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path, help="a checkout of the commit that wrote format /1 (e699771)")
    p.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/anomaly_v1"
    )
    args = p.parse_args()
    sys.path.insert(0, str(args.old.resolve() / "src"))
    import torch

    from grukit.apps import anomaly

    if anomaly.FORMAT != "grukit.GRUAnomalyDetector/1":
        raise SystemExit(f"{anomaly.__file__} writes {anomaly.FORMAT!r}, expected the old format /1")
    torch.set_num_threads(1)
    for name, (mode, hyper, train, scored) in cases().items():
        det = anomaly.GRUAnomalyDetector(mode, train=TRAIN, **hyper).fit(train)
        det.save(args.out / name)
        record = {
            "written_by": f"scripts/make_anomaly_v1_fixture.py with {anomaly.__file__}",
            "input": scored.tolist(),
            "scores": det.score(scored).tolist(),
            "threshold": det.threshold_,
        }
        (args.out / name / "scores.json").write_text(json.dumps(record) + "\n")
        print(f"{args.out / name}: {mode}, scores {np.round(record['scores'][:4], 3)} ...")


if __name__ == "__main__":
    main()
