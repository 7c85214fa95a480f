"""A/B of a cpu-backend switch that is read at every call, on the standard grid (docs/performance.md).

The backend reads a few environment variables at every call, for measuring (``GRUKIT_CPU_PROJECT=0``:
the whole input projection first instead of the kernel's chunks; ``GRUKIT_CPU_PACKED=0``: the
recurrent products through plain sgemm). This script times ``grukit.GRU`` calls (``backend="cpu"``,
float32, inference under ``no_grad``, training = forward + backward of ``out.sum()`` with the
input needing no gradient, as ``grukit bench`` runs them) with the variable at each of two values,
alternating call by call in one process (the order flips every round), so a slow spell of the
machine touches both alike. It prints each value's median and the median of the per-round ratios
(first value's time / second's: above 1 means the second is faster).

    .venv/bin/python scripts/env_ab.py                                  # GRUKIT_CPU_PROJECT 0 vs 1
    .venv/bin/python scripts/env_ab.py --var GRUKIT_CPU_PACKED --threads 1 --modes inference
    .venv/bin/python scripts/env_ab.py --var GRUKIT_CPU_POOL --modes training --threads 2 \
        --case 64,200,256,512 --variants plain layer_norm zoneout

``--variants``: also (or instead) with ``layer_norm=True`` or ``zoneout=0.1`` (in training, its
masks drawn per call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import grukit
from grukit.bench.cases import STANDARD, parse_case
from grukit.bench.report import cpu_features

VARIANTS = {"plain": {}, "layer_norm": {"layer_norm": True}, "zoneout": {"zoneout": 0.1}}


def measure(
    case, reset_after: bool, mode: str, var: str, values: tuple[str, str], rounds: int, variant: str = "plain"
) -> dict:
    torch.manual_seed(0)
    model = grukit.GRU(case.I, case.H, reset_after=reset_after, backend="cpu", **VARIANTS[variant])
    x = torch.randn(case.T, case.N, case.I)  # (T, N, I)

    def run():
        if mode == "inference":
            with torch.no_grad():
                model(x)
        else:
            model.zero_grad(set_to_none=True)
            out, _ = model(x)
            out.sum().backward()

    times: dict[str, list[float]] = {v: [] for v in values}
    ratios = []
    for r in range(rounds + 1):  # round 0 warms both up
        pair = {}
        for v in values if r % 2 else values[::-1]:
            os.environ[var] = v
            t0 = time.perf_counter()
            run()
            pair[v] = time.perf_counter() - t0
        if r:
            for v in values:
                times[v].append(pair[v])
            ratios.append(pair[values[0]] / pair[values[1]])
    return {
        "ms": {v: 1e3 * statistics.median(t) for v, t in times.items()},
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--var", default="GRUKIT_CPU_PROJECT", help="the environment variable to switch")
    ap.add_argument("--values", default="0,1", help="its two values, comma-separated")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument(
        "--modes", nargs="+", default=["inference", "training"], choices=["inference", "training"]
    )
    ap.add_argument(
        "--case", action="append", type=parse_case, help="N,T,I,H instead of the standard grid (repeatable)"
    )
    ap.add_argument("--variants", nargs="+", default=["plain"], choices=list(VARIANTS))
    ap.add_argument(
        "--rounds", type=int, default=11, help="rounds on small cases (a third, at least 5, on large)"
    )
    args = ap.parse_args()
    a, b = args.values.split(",")
    saved = os.environ.get(args.var)
    cpu, flags = cpu_features()
    print(f"CPU: {cpu} ({', '.join(flags)}); torch {torch.__version__}; float32; {args.var} = {a} vs {b}")
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for mode, variant in ((m, v) for m in args.modes for v in args.variants):
                print(f"\n## {mode}, {variant}, {threads} thread(s)\n")
                print(f"| case (N, T, I, H) | form | {a} (ms) | {b} (ms) | {a} / {b} |")
                print("|---|---|---:|---:|---:|")
                for case in args.case or STANDARD:
                    large = case.N * case.T * case.H >= 3_000_000
                    rounds = max(5, args.rounds // 3) if large else args.rounds
                    for reset_after in (True, False):
                        m = measure(case, reset_after, mode, args.var, (a, b), rounds, variant)
                        form = "after" if reset_after else "before"
                        print(
                            f"| {case.N}, {case.T}, {case.I}, {case.H} | {form} | {m['ms'][a]:.2f} | "
                            f"{m['ms'][b]:.2f} | {m['ratio']:.3f} |",
                            flush=True,
                        )
    finally:
        if saved is None:
            os.environ.pop(args.var, None)
        else:
            os.environ[args.var] = saved


if __name__ == "__main__":
    main()
