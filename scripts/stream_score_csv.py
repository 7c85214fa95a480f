"""Peak memory of `grukit anomaly score` on a long signal CSV (issue 19: 10 million points).

Writes a one-channel CSV of ``--points`` points (a noisy sine with a few spikes; about 21 bytes
a row), fits a small signal-mode detector (the default model, the forecaster, or ``--model``) on
its first 20,000 points, saves it, then runs ``grukit anomaly score`` on the whole file in a
child process, with and without ``--label-col``, and reports each run's wall time and peak
resident memory (the child's ``ru_maxrss``), beside the file's size and a bare Python process
that imports grukit's CLI and pandas, for scale.

    .venv/bin/python scripts/stream_score_csv.py                      # 10,000,000 points
    .venv/bin/python scripts/stream_score_csv.py --points 1000000 --model autoencoder
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_csv(path: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` rows of ``value,label`` in blocks (the writer itself stays small)."""
    rng = np.random.default_rng(seed)
    block = 1_000_000
    with open(path, "w") as f:
        f.write("value,label\n")
        for i in range(0, n, block):
            t = np.arange(i, min(n, i + block))
            x = np.sin(2 * np.pi * t / 50) + 0.05 * rng.standard_normal(len(t))
            lab = np.zeros(len(t), dtype=np.int8)
            spikes = rng.choice(len(t), size=max(1, len(t) // 200_000), replace=False)
            x[spikes] += 4.0
            lab[spikes] = 1
            np.savetxt(f, np.c_[x, lab], fmt=["%.6f", "%d"], delimiter=",")


_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(r.returncode)"
)


def child(args: list[str]) -> tuple[float, float, int]:
    """Run ``args`` in a grandchild; (seconds, its peak resident MiB, exit status). An
    intermediate process waits for it alone, so its RUSAGE_CHILDREN maximum is this run's."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
    return time.perf_counter() - t, int(proc.stdout.split()[-1]) / 1024, proc.returncode


def _cpu() -> str:
    """The CPU model and its vector extensions, as `grukit bench` records them."""
    from grukit.bench.report import cpu_features

    cpu, flags = cpu_features()
    return f"{cpu} ({', '.join(flags)})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=10_000_000)
    p.add_argument("--model", choices=["forecaster", "autoencoder"], default="forecaster")
    p.add_argument("--chunk", type=int, default=65536)
    args = p.parse_args()

    import torch

    from grukit.apps.anomaly import GRUAnomalyDetector

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "signal.csv"
        t0 = time.perf_counter()
        write_csv(data, args.points)
        print(
            f"wrote {args.points:,} points: {data.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t0:.0f} s"
        )
        train = np.loadtxt(data, delimiter=",", skiprows=1, max_rows=20_000)[:, 0]
        det = GRUAnomalyDetector(
            "signal",
            model=args.model,
            hidden_size=32,
            train={"epochs": 1, "steps_per_epoch": 20, "progress": "off"},
        ).fit(train)
        det.save(tmp / "model")
        (tmp / "model" / "config.json").write_text('{"value_cols": ["value"]}')
        print(
            f"model: {args.model}, window {det.config.window}, hidden size 32; CPU {_cpu()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        base = [
            sys.executable,
            "-m",
            "grukit",
            "anomaly",
            "score",
            "--model",
            str(tmp / "model"),
            "--data",
            str(data),
            "--chunk",
            str(args.chunk),
        ]
        rows = [
            (
                "a bare `python -c 'import grukit.cli.main, pandas, torch'`",
                child([sys.executable, "-c", "import grukit.cli.main, pandas, torch"]),
            )
        ]
        rows.append(
            ("`anomaly score` (scores written as they come)", child([*base, "--out", str(tmp / "a.csv")]))
        )
        rows.append(
            (
                "`anomaly score --label-col label` (keeps values, scores, labels)",
                child([*base, "--out", str(tmp / "b.csv"), "--label-col", "label"]),
            )
        )
        print("\n| run | seconds | peak resident MiB | exit |\n|---|---:|---:|---:|")
        for name, (sec, mib, rc) in rows:
            print(f"| {name} | {sec:.1f} | {mib:.0f} | {rc} |")


if __name__ == "__main__":
    main()
