"""Short inference calls: the streaming kernel as ``GRU._short_call`` runs it
(``grukit.streaming.short_call``) against the same weights through the fused sequence kernels
(``backend="cpu"``), and what ``backend="auto"`` does (the short path where ``_short_call`` takes
the call), interleaved, medians of 9 rounds, at 1 and 2 threads. fused / short above 1: the
streaming kernel is faster (docs/performance.md; the bounds in grukit/modules.py).

    .venv/bin/python scripts/short_calls.py
"""

from __future__ import annotations

import statistics
import time

import torch

import grukit
import grukit.streaming

CASES = [
    (1, 200, 128, 256),
    (1, 250, 32, 64),
    (8, 32, 64, 128),
    (32, 8, 64, 256),
    (1, 10, 64, 64),
    (1, 100, 256, 512),
    (1, 1, 64, 64),
    (1, 1, 256, 256),
]  # (N, T, I, H)


def _ms(model, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        model(x)
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    from grukit.bench.report import cpu_features

    cpu, flags = cpu_features()
    print(f"{cpu} ({' '.join(flags)}), torch {torch.__version__}; medians of 9 rounds")
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for N, T, I, H in CASES:
                torch.manual_seed(0)
                auto, fused = grukit.GRU(I, H), grukit.GRU(I, H, backend="cpu")
                fused.load_state_dict(auto.state_dict())
                x = torch.randn(T, N, I)  # (T, N, I)
                h0 = torch.zeros(1, N, H)  # (L, N, H)
                models = {
                    "short": lambda x: grukit.streaming.short_call(auto, x, h0),
                    "fused": fused,
                    "auto": auto,
                }
                times = {name: [] for name in models}
                with torch.inference_mode():
                    for m in models.values():
                        for _ in range(5):
                            m(x)
                    calls = max(3, int(0.03 / max(1e-6, _ms(fused, x, 1) / 1e3)))
                    for _ in range(9):
                        for name, m in models.items():
                            times[name].append(_ms(m, x, calls))
                s, f, a = (statistics.median(times[k]) for k in models)
                print(
                    f"{threads} thread(s)  N={N:<3} T={T:<4} I={I:<4} H={H:<4} short {s:8.3f} ms  "
                    f"fused {f:8.3f} ms  fused/short {f / s:5.2f}  auto {a:8.3f} ms",
                    flush=True,
                )
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":
    main()
