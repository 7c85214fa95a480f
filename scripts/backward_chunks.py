"""Training time (forward + backward) with the cpu backward's gate gradients kept in chunks of
16 MiB and of 4 MiB (``grukit.backends.cpu._CHUNK_BYTES``), interleaved in one process, medians
of 7 rounds, at PyTorch's thread count; ``grukit bench --memory`` gives the peak memory of the
default (docs/performance.md).

    .venv/bin/python scripts/backward_chunks.py
"""

from __future__ import annotations

import statistics
import time

import torch

import grukit
from grukit.backends import cpu

CASES = [(64, 200, 256, 512), (16, 100, 1024, 1024), (256, 50, 128, 128), (32, 100, 64, 256)]
SIZES_MIB = (16, 4)


def main() -> None:
    default = cpu._CHUNK_BYTES
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per training call")
    try:
        for N, T, I, H in CASES:
            torch.manual_seed(0)
            model = grukit.GRU(I, H, reset_after=True)
            x = torch.randn(T, N, I)  # (T, N, I)

            def step():
                model.zero_grad(set_to_none=True)
                out, _ = model(x)
                out.sum().backward()

            times: dict[int, list[float]] = {mib: [] for mib in SIZES_MIB}
            for mib in SIZES_MIB:
                cpu._CHUNK_BYTES = mib << 20
                step()  # warm up
            for _ in range(7):
                for mib in SIZES_MIB:
                    cpu._CHUNK_BYTES = mib << 20
                    start = time.perf_counter()
                    step()
                    times[mib].append(time.perf_counter() - start)
            cells = "  ".join(f"{mib} MiB {statistics.median(t) * 1e3:8.1f}" for mib, t in times.items())
            print(f"N={N:<4} T={T:<4} I={I:<5} H={H:<5} {cells}", flush=True)
    finally:
        cpu._CHUNK_BYTES = default


if __name__ == "__main__":
    main()
