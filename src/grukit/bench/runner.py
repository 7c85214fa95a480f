"""Run a benchmark grid: providers interleaved round by round in one process, medians kept."""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from grukit.bench.cases import FORMULATIONS, Case
from grukit.bench.providers import PROVIDERS


@dataclass
class Result:
    case: Case
    formulation: str  # "after" | "before"
    mode: str  # "inference" | "training"
    provider: str
    times: list[float] = field(default_factory=list)  # seconds per call, one per round
    skipped: str | None = None  # why the provider did not run
    peak_mb: float | None = None  # peak resident memory added by one call (training, --memory)
    first_call_s: float | None = None  # includes compilation or session set-up work

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median over the rounds: how noisy the measurement was."""
        return (max(self.times) - min(self.times)) / self.median

    @property
    def gflops(self) -> float:
        return self.case.flops(self.mode) / self.median / 1e9


def matmul_peak(n: int = 1024, reps: int = 7) -> float:
    """Measured float32 matrix-product rate of this machine (GFLOP/s, median of ``reps``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def run_grid(
    cases: Iterable[Case],
    providers: list[str],
    modes: Iterable[str],
    formulations: Iterable[str],
    rounds: int = 5,
    min_time: float = 0.02,
    memory: bool = False,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Every (case, formulation, mode): build each provider, warm up, then ``rounds`` rounds in
    which every provider runs once (order rotated each round). A sample repeats a call until it
    has lasted at least ``min_time`` and keeps the mean per call."""
    results: list[Result] = []
    for case in cases:
        for formulation in formulations:
            reset_after = FORMULATIONS[formulation]
            for mode in modes:
                batch = _measure(case, formulation, reset_after, mode, providers, rounds, min_time)
                if memory and mode == "training":
                    for r in batch:
                        if r.skipped is None:
                            r.peak_mb = peak_memory(r.provider, case, reset_after, mode)
                for r in batch:
                    results.append(r)
                    if on_result is not None:
                        on_result(r)
    return results


def _measure(case, formulation, reset_after, mode, providers, rounds, min_time) -> list[Result]:
    runs, reps, results = {}, {}, {}
    for name in providers:
        provider = PROVIDERS[name]
        result = Result(case, formulation, mode, name)
        results[name] = result
        result.skipped = provider.missing() or provider.supports(case, reset_after, mode)
        if result.skipped is not None:
            continue
        run = provider.build(case, reset_after, mode)
        start = time.perf_counter()
        run()
        result.first_call_s = time.perf_counter() - start
        start = time.perf_counter()
        run()
        reps[name] = max(1, math.ceil(min_time / max(time.perf_counter() - start, 1e-9)))
        runs[name] = run
    names = list(runs)
    for round_ in range(rounds):
        k = round_ % max(len(names), 1)
        for name in names[k:] + names[:k]:
            run, n = runs[name], reps[name]
            start = time.perf_counter()
            for _ in range(n):
                run()
            results[name].times.append((time.perf_counter() - start) / n)
    return [results[name] for name in providers]


def peak_memory(provider: str, case: Case, reset_after: bool, mode: str) -> float | None:
    """Peak resident memory (MB) one call adds, measured in a fresh process (Linux only)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(provider, case, reset_after, mode, queue))
    proc.start()
    proc.join(600)
    return queue.get() if proc.exitcode == 0 and not queue.empty() else None


def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _peak_child(provider: str, case: Case, reset_after: bool, mode: str, queue) -> None:
    """Warm up on a tiny case of the same kind (compiled kernels, lazy initialisation), then
    measure the first call at the real size: what it adds to the resident set at its peak."""
    import dataclasses

    tiny = dataclasses.replace(case, N=2, T=3, I=min(case.I, 4), H=min(case.H, 8))
    PROVIDERS[provider].build(tiny, reset_after, mode)()
    if provider.startswith("grukit"):  # the multi-threaded launcher loads on its first use
        from grukit.backends import cpu

        cpu.thread_plan(case.T, case.N, case.H, getattr(torch, case.dtype))
    run = PROVIDERS[provider].build(case, reset_after, mode)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = _rss_kb("VmRSS")
    run()
    queue.put((_rss_kb("VmHWM") - base) / 1024)
