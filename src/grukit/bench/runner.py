"""Run a benchmark grid, medians kept. Every provider runs at each thread count asked for, and
rounds rotate over all of them, so slow drift of the machine touches each alike. Isolated (the
default): each (provider, threads) in a process of its own, driven over a pipe, so no runtime's
thread pool lives beside another's; interleaved: all in this process, as an application that
mixes them would run them."""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from grukit.bench.cases import FORMULATIONS, Case
from grukit.bench.providers import PROVIDERS, Job


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
    threads: int = 1

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


def matmul_peak(n: int = 1024, reps: int = 7, dtype: torch.dtype = torch.float32) -> float:
    """Measured matrix-product rate of this machine at the current thread count (GFLOP/s,
    median of ``reps`` products of two n x n matrices of ``dtype``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


@dataclass(frozen=True)
class GridConfig:
    """What ``run_grid`` measures and how."""

    cases: tuple[Case, ...]
    providers: tuple[str, ...]
    modes: tuple[str, ...] = ("inference",)
    formulations: tuple[str, ...] = ("after",)
    threads: tuple[int, ...] = (1,)  # each provider runs at every one; the report keeps its best
    rounds: int = 5
    min_time: float = 0.02  # a sample repeats calls until it has lasted this long (seconds)
    memory: bool = False  # training peak memory, each in a fresh process
    isolated: bool = True  # each (provider, threads) in its own process
    # isolated: the pause before each sample, so that the previous process's OpenMP workers,
    # which spin for a while after their last parallel region, are asleep before the next
    # provider starts (docs/performance.md: without it grukit's training, whose threads meet
    # at a barrier every step, ran 15-40% slower right after torch.nn.GRU's). After the pause
    # one untimed call starts each sample: the first call after 0.1 s idle ran at a fraction of
    # the speed (2.9 ms against 1.2 for grukit at N = 1, H = 64, 1.9 against 1.2 for ONNX
    # Runtime, 0.2 ms for a one-element torch add; docs/performance.md), which would otherwise
    # weigh on every sample of a small case and on the providers unevenly.
    settle: float = 0.1


def run_grid(config: GridConfig, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Every (case, formulation, mode): build each provider at each thread count, warm up, then
    ``rounds`` rounds in which every one runs once (order rotated each round). A sample repeats a
    call until it has lasted at least ``min_time`` and keeps the mean per call."""
    entries = [
        (name, t) for name in config.providers for t in config.threads if PROVIDERS[name].missing() is None
    ]
    make = _Worker if config.isolated else _Local
    handles = {}
    try:
        for name, threads in entries:
            handles[name, threads] = make(name, threads)
        results: list[Result] = []
        for case in config.cases:
            for formulation in config.formulations:
                for mode in config.modes:
                    job = Job(case, FORMULATIONS[formulation], mode, shared=not config.isolated)
                    batch = _measure(job, formulation, handles, config)
                    if config.memory and mode == "training":
                        _add_peak_memory(batch, job)
                    for r in batch:
                        results.append(r)
                        if on_result is not None:
                            on_result(r)
        return results
    finally:
        for handle in handles.values():
            handle.close()


def _measure(job: Job, formulation: str, handles: dict, config: GridConfig) -> list[Result]:
    results, live = [], []
    for name in config.providers:
        provider = PROVIDERS[name]
        for threads in config.threads:
            result = Result(job.case, formulation, job.mode, name, threads=threads)
            results.append(result)
            result.skipped = provider.missing() or provider.supports(job)
            if result.skipped is None:
                handle = handles[name, threads]
                result.first_call_s = handle.prepare(replace(job, threads=threads), config.min_time)
                live.append((handle, result))
    for round_ in range(config.rounds):
        k = round_ % max(len(live), 1)
        for handle, result in live[k:] + live[:k]:
            settled = config.isolated and config.settle > 0
            if settled:
                time.sleep(config.settle)
            result.times.append(handle.sample(warm_up=settled))
    return results


class _Local:
    """One provider at one thread count, run in this process."""

    def __init__(self, name: str, threads: int):
        self.name, self.threads = name, threads
        self.run, self.reps = None, 1

    def prepare(self, job: Job, min_time: float) -> float:
        """Build for ``job``, make the first call (returns its seconds) and choose how many calls
        make one sample."""
        torch.set_num_threads(self.threads)
        self.run = None  # the previous job's model goes before the next is built
        self.run = PROVIDERS[self.name].build(job)
        start = time.perf_counter()
        self.run()
        first = time.perf_counter() - start
        start = time.perf_counter()
        self.run()
        self.reps = max(1, math.ceil(min_time / max(time.perf_counter() - start, 1e-9)))
        return first

    def sample(self, warm_up: bool = False) -> float:
        """Seconds per call, the mean over ``reps`` calls (after one untimed call where
        ``warm_up``)."""
        torch.set_num_threads(self.threads)  # interleaved: the previous entry may have changed it
        if warm_up:
            self.run()
        start = time.perf_counter()
        for _ in range(self.reps):
            self.run()
        return (time.perf_counter() - start) / self.reps

    def close(self) -> None:
        self.run = None


class _Worker:
    """The same in a process of its own (spawned, so it shares nothing with this one), driven
    over a pipe. An exception there is raised here with the worker's traceback."""

    def __init__(self, name: str, threads: int):
        import multiprocessing as mp

        self.name, self.threads = name, threads
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, name, threads), daemon=True)
        self._proc.start()
        child.close()

    def _call(self, *message):
        try:
            self._conn.send(message)
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(
                f"the bench worker for {self.name} at {self.threads} threads died "
                f"(exit code {self._proc.exitcode})"
            ) from None
        if status == "error":
            raise RuntimeError(f"{self.name} at {self.threads} threads failed in its worker:\n{value}")
        return value

    def prepare(self, job: Job, min_time: float) -> float:
        return self._call("prepare", job, min_time)

    def sample(self, warm_up: bool = False) -> float:
        return self._call("sample", warm_up)

    def close(self) -> None:
        try:
            self._conn.send(("close",))
        except (OSError, ValueError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()


def _serve(conn, name: str, threads: int) -> None:
    """A worker's loop: ("prepare", job, min_time) | ("sample", warm_up) | ("close",)."""
    import traceback

    torch.set_num_threads(threads)
    local = _Local(name, threads)
    while True:
        message = conn.recv()
        if message[0] == "close":
            return
        try:
            value = local.prepare(*message[1:]) if message[0] == "prepare" else local.sample(*message[1:])
            conn.send(("ok", value))
        except Exception:  # noqa: BLE001 - sent to the parent, which raises it
            conn.send(("error", traceback.format_exc()))


def _add_peak_memory(batch: list[Result], job: Job) -> None:
    """Training peak memory for each provider at its fastest thread count."""
    best: dict[str, Result] = {}
    for r in batch:
        if r.skipped is None and (r.provider not in best or r.median < best[r.provider].median):
            best[r.provider] = r
    for r in best.values():
        r.peak_mb = peak_memory(r.provider, replace(job, threads=r.threads))


def peak_memory(provider: str, job: Job) -> float | None:
    """Peak resident memory (MB) one call adds, measured in a fresh process (Linux only)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(provider, job, queue))
    proc.start()
    proc.join(600)
    return queue.get() if proc.exitcode == 0 and not queue.empty() else None


def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _peak_child(provider: str, job: Job, queue) -> None:
    """Warm up on a tiny case of the same kind (compiled kernels, lazy initialisation), then
    measure the first call at the real size: what it adds to the resident set at its peak."""
    case = job.case
    torch.set_num_threads(job.threads)
    tiny = replace(case, N=4, T=3, I=min(case.I, 4), H=min(case.H, 16))
    split = None
    if provider.startswith("grukit"):  # the multi-threaded launcher loads on its first use
        from grukit.backends import cpu

        plan = cpu.thread_plan(case.T, case.N, case.H, getattr(torch, case.dtype))
        # the warm-up runs the real size's kind of plan, so that the threads' compiled
        # callbacks (loaded on their first launch) are not counted as the call's memory
        split = "features" if plan.feature_blocks > 1 else "rows" if plan.row_blocks > 1 else "none"
    saved = os.environ.get("GRUKIT_CPU_SPLIT")
    if split is not None:
        os.environ["GRUKIT_CPU_SPLIT"] = split
    try:
        PROVIDERS[provider].build(replace(job, case=tiny))()
    finally:
        if saved is None:
            os.environ.pop("GRUKIT_CPU_SPLIT", None)
        else:
            os.environ["GRUKIT_CPU_SPLIT"] = saved
    run = PROVIDERS[provider].build(job)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = _rss_kb("VmRSS")
    run()
    queue.put((_rss_kb("VmHWM") - base) / 1024)
