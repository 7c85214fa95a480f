"""Where a training call's time goes in the cpu backend (docs/performance.md, issue 17's training target).

``parts``: one layer, float32, the input needing no gradient, ``out.sum().backward()`` as ``grukit
bench`` runs it; per call the forward, the backward, and of the backward the time inside the
kernel's launches (``_cpu_launch.launch``, the Numba loop over the steps) and the rest (the
weight gradients' products per chunk, in torch, and the Python around them). Medians of
``--rounds`` calls after two warm-up calls.

``wgrad``: the weight gradients' products alone, as the backward makes them for a chunk of K rows
(``dW_hh += dG^T h_prev`` with ``h_prev`` a strided view of the saved workspace, ``dW_ih += dG^T
x``), once as six products (the six gate blocks of a two-way feature split, each to its rows of
the gradients) and once as one product of all gate rows, in GFLOP/s.

    .venv/bin/python scripts/training_parts.py                       # N=64, T=200, I=256, H=512
    .venv/bin/python scripts/training_parts.py --case 256,50,128,128 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import grukit
from grukit.backends import _cpu_launch, cpu
from grukit.bench.report import cpu_features


def parts(N: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = grukit.GRU(I, H, reset_after=True, backend="cpu")
    x = torch.randn(T, N, I)  # (T, N, I)
    in_kernel = [0.0]
    real = _cpu_launch.launch

    def timed(kernel, p, args):
        t0 = time.perf_counter()
        real(kernel, p, args)
        if kernel.__name__ == "backward":
            in_kernel[0] += time.perf_counter() - t0

    cpu._cpu_launch.launch = timed
    try:
        rows: dict[str, list[float]] = {"forward": [], "backward": [], "backward kernel": []}
        for r in range(rounds + 2):
            model.zero_grad(set_to_none=True)
            in_kernel[0] = 0.0
            t0 = time.perf_counter()
            out, _ = model(x)
            t1 = time.perf_counter()
            out.sum().backward()
            t2 = time.perf_counter()
            if r >= 2:
                rows["forward"].append(t1 - t0)
                rows["backward"].append(t2 - t1)
                rows["backward kernel"].append(in_kernel[0])
    finally:
        cpu._cpu_launch.launch = real
    ms = {k: 1e3 * statistics.median(v) for k, v in rows.items()}
    ms["backward rest"] = ms["backward"] - ms["backward kernel"]
    return ms


def wgrad(I: int, H: int, K: int, reps: int) -> dict[str, float]:
    g = torch.randn(K, 3 * H)  # (K, 3H): a chunk's gate gradients
    ws = torch.randn(K, 5, H)  # the saved workspace's rows; h_prev is value 3
    h_prev, x = ws[:, 3], torch.randn(K, I)
    dw_hh, dw_ih = torch.zeros(3 * H, H), torch.zeros(3 * H, I)
    blocks = [slice(k * H // 2, (k + 1) * H // 2) for k in range(6)]

    def six():
        for rows in blocks:
            gk = g[:, rows]
            dw_hh[rows].addmm_(gk.t(), h_prev)
            dw_ih[rows].addmm_(gk.t(), x)

    def one():
        dw_hh.addmm_(g.t(), h_prev)
        dw_ih.addmm_(g.t(), x)

    flops = 2 * K * 3 * H * (H + I)
    result = {}
    for name, f in (("six products", six), ("one product", one)):
        f()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        result[name] = flops / statistics.median(times) / 1e9
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="64,200,256,512", help="N,T,I,H")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rows", type=int, nargs="+", default=[512, 2048], help="chunk rows K for wgrad")
    args = ap.parse_args()
    N, T, I, H = (int(v) for v in args.case.split(","))
    torch.set_num_threads(args.threads)
    cpu_name, flags = cpu_features()
    print(f"CPU: {cpu_name} ({', '.join(flags)}); torch {torch.__version__}; {args.threads} threads; float32")
    ms = parts(N, T, I, H, args.rounds)
    print(f"\nN={N} T={T} I={I} H={H}, ms per call (medians of {args.rounds}):")
    for k, v in ms.items():
        print(f"  {k:16s} {v:8.1f}")
    print("\nweight-gradient products of a chunk of K rows, GFLOP/s:")
    for K in args.rows:
        r = wgrad(I, H, K, max(5, args.rounds))
        print(f"  K={K}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
