"""Where a one-step streaming call's time goes at H = 256 (issue 14's 5x target, docs/performance.md).

Prints, as medians of interleaved rounds (microseconds per step, float32, batch 1, input size =
hidden size = H):

1. ``stream(x)`` as a user calls it, at 1 and 2 threads (2: the units split over both cores);
2. the stream's kernel call alone (``lane.chunk``, the Numba dispatch included, no Python
   around it), for chunks of 1 and of 10 steps: the difference is the parallel region's fork
   and join and the dispatch, paid once per call;
3. the step's two products (``x W_ih^T`` and ``h W_hh^T``, 2 x 0.75 MiB of weights read once
   each) by the kernels' dot products (``_small_mm.rows_nt``) in a compiled loop on one thread,
   with the weights in ordinary memory (4 KiB pages) and in 2 MiB pages (an anonymous mapping
   with ``madvise(MADV_HUGEPAGE)``; Linux only, and only where transparent huge pages are not
   "never"), alone and with a stream call of an H = 16 GRU between steps (the Python and torch
   work of a call, with weights too small to matter): how much of a step is the
   weights' placement in the core's L2 cache (4 KiB pages land on its sets unevenly) and how
   much is what the interpreter's own memory evicts.

    .venv/bin/python scripts/stream_parts.py [--rounds 9] [--size 256]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import statistics
import time

import numpy as np
import torch
from numba import njit

import grukit
from grukit.backends._small_mm import rows_nt

_FLAGS = dict(cache=False, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
_MADV_HUGEPAGE = 14
_HUGE = 2 << 20


@njit(**_FLAGS)
def _products(x, w_ih, w_hh, gi, gh, n):
    """n steps of the two products, as the stream kernel makes them on one thread."""
    for _ in range(n):
        rows_nt(x, w_ih, gi, 0.0)
        rows_nt(x, w_hh, gh, 0.0)


def _huge_pages(nbytes: int):
    """A float32 buffer of ``nbytes`` advised into 2 MiB pages (whether the kernel gave them is
    :func:`_anon_huge_kib`'s to say) and the mapping that holds it (keep it alive); None where
    madvise is unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    size = (nbytes + 2 * _HUGE - 1) // _HUGE * _HUGE
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(region, np.uint8)
    start = (-raw.ctypes.data) % _HUGE
    rc = libc.madvise(ctypes.c_void_p(raw.ctypes.data + start), ctypes.c_size_t(size - start), _MADV_HUGEPAGE)
    if rc != 0:
        return None
    buf = raw[start : start + nbytes]
    buf[:] = 0  # fault the pages in now
    return buf.view(np.float32), region


def _anon_huge_kib() -> int:
    """KiB of this process's anonymous memory in huge pages (0 where Linux does not say)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=256, help="H (= input size)")
    args = parser.parse_args()
    H, n = args.size, 200
    from grukit.bench.report import cpu_features

    cpu, flags = cpu_features()
    print(f"{cpu} ({' '.join(flags)}), torch {torch.__version__}, H = {H}, medians of {args.rounds} rounds")

    torch.manual_seed(0)
    gru = grukit.GRU(H, H, reset_after=True).eval()
    entries = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for T in (1, 10):
            stream = gru.stream()
            x = torch.randn(T, 1, H)
            with torch.inference_mode():
                stream(x)
            lane = stream._lane
            assert lane is not None and lane.threads == threads, (threads, lane and lane.threads)
            y = np.empty((T, 1, H), np.float32)
            if T == 1:
                entries[f"stream(x), {threads} thread(s)"] = (threads, 1, lambda s=stream, x=x: s(x))
            entries[f"kernel call alone, {T}-step chunks, {threads} thread(s)"] = (
                threads,
                T,
                lambda lane=lane, x=x, y=y, T=T: lane.chunk(x.data_ptr(), y, T, 1, 0.0),
            )

    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3 * H, H), dtype=np.float32)  # W_ih, W_hh
    xs = rng.standard_normal((1, H), dtype=np.float32)
    gi, gh = np.empty((1, 3 * H), np.float32), np.empty((1, 3 * H), np.float32)
    placements = {"4 KiB pages": w}
    before = _anon_huge_kib()
    huge = _huge_pages(w.nbytes)
    if huge is not None:
        hw = huge[0].reshape(w.shape)
        hw[:] = w
        got = _anon_huge_kib() - before
        print(f"2 MiB pages: {got} KiB of the {w.nbytes // 1024} KiB buffer's mapping in huge pages")
        if got > 0:
            placements["2 MiB pages"] = hw
    else:
        print("2 MiB pages: madvise unavailable here; only ordinary memory measured")
    _products(xs, w[0], w[1], gi, gh, 1)
    np.testing.assert_allclose(gi, xs @ w[0].T, rtol=1e-4, atol=1e-3)
    # a stream call's Python and torch work, with weights too small to matter (H = 16)
    python_stream = grukit.GRU(16, 16).eval().stream()
    x1 = torch.randn(1, 1, 16)
    for name, ww in placements.items():
        entries[f"two products, compiled loop, {name}"] = (
            1,
            n,
            lambda ww=ww: _products(xs, ww[0], ww[1], gi, gh, n),
        )

        def with_python(ww=ww):
            _products(xs, ww[0], ww[1], gi, gh, 1)
            python_stream(x1)  # a stream call's Python and memory between steps

        entries[f"two products + a H=16 stream call between steps, {name}"] = (1, 1, with_python)
    torch.set_num_threads(1)
    with torch.inference_mode():
        python_stream(x1)
        entries["the H=16 stream call alone (subtract it from the lines above)"] = (
            1,
            1,
            lambda: python_stream(x1),
        )

    times: dict[str, list[float]] = {name: [] for name in entries}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, (threads, steps, fn) in entries.items():
                torch.set_num_threads(threads)
                fn()  # warm
                calls = max(1, n // steps) if steps < n else 10
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[name].append((time.perf_counter() - start) / (calls * steps) * 1e6)
    for name, t in times.items():
        print(f"{name:78s} {statistics.median(t):8.2f} us/step")


if __name__ == "__main__":
    main()
