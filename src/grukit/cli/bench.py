"""``grukit bench``: GRU speed side by side with torch.nn.GRU, ONNX Runtime and OpenVINO.

Every provider runs at each thread count of --threads (default 1 and all cores) and is judged at
its fastest. By default each (provider, threads) runs in a process of its own, so no runtime's
thread pool sits beside another's, and each sample starts after a 0.1 s pause, so that the
previous process's spinning threads are asleep, and one untimed call (the first call after an
idle pause runs slowly); rounds rotate over all of them, so the machine's
drift touches each alike. --interleaved runs them all in this process instead (ONNX Runtime then does not
spin), as an application mixing them would. The table shows medians, spread ((max - min) /
median), GFLOP/s, the share of this machine's float32 matrix-product peak measured in the same
run at the same thread count, and speed-ups over each peer at its best thread count. Results,
the CPU model, its vector extensions, versions and thread counts go to --out as bench.csv and
bench.json, and a summary table as bench.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grukit.cli._errors import UserError


def add_parser(sub) -> None:
    from grukit.bench.cases import FORMULATIONS, GRIDS, MODES
    from grukit.bench.providers import DEFAULT, PROVIDERS, VARIANTS

    p = sub.add_parser(
        "bench",
        help="benchmark grukit against torch.nn.GRU and ONNX Runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--grid", choices=sorted(GRIDS), default="standard", help="named grid of cases (default: %(default)s)"
    )
    p.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="N,T,I,H[,L][,bi]",
        help="a case instead of the grid (repeatable), e.g. 8,500,64,128 or 4,50,32,64,2,bi",
    )
    p.add_argument(
        "--providers",
        nargs="+",
        choices=sorted(PROVIDERS),
        default=DEFAULT,
        help=f"default: {' '.join(DEFAULT)}",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=[],
        help="also run grukit-cpu with these options of grukit.GRU (zoneout=0.1, "
        "recurrent_dropout=0.25, weight_dropout=0.5; all = every one), each "
        "beside the plain GRU: the table's 'vs plain' is its time over the plain one's",
    )
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument(
        "--formulations",
        nargs="+",
        choices=list(FORMULATIONS),
        default=list(FORMULATIONS),
        help="after = reset_after=True (PyTorch), before = the spec",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="rounds over all providers; each keeps its median (default: %(default)s)",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="a sample repeats calls until it has lasted this long and keeps the mean "
        "per call (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        nargs="+",
        default=["1", "all"],
        metavar="N|all",
        help="thread counts every provider runs at; its fastest is its result "
        "(default: 1 all; all = the cores this process may use)",
    )
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="run every provider in this one process instead of one process each",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="also measure training peak memory, each in a fresh process (slower)",
    )
    p.add_argument("--out", default="bench-results", help="folder for bench.csv / bench.json")
    p.add_argument(
        "--generate",
        action="store_true",
        help="instead: text generation at batch 1 in characters per second (grukit's "
        "sampler, torch.nn step by step, the weight-reading floor) into "
        "generate.md / generate.json; uses --rounds, --dtype and --out",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from grukit._io import atomic_write_text
    from grukit.bench import report, runner
    from grukit.bench.cases import GRIDS, parse_case
    from grukit.bench.providers import PROVIDERS, variant_provider

    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {args.rounds}")
    if not args.min_time >= 0:  # also refuses NaN
        raise UserError(f"--min-time must be 0 or more seconds, got {args.min_time}")
    if args.generate:
        return _generate(args)
    try:
        cases = [parse_case(c) for c in args.case] or GRIDS[args.grid]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    cases = [replace(c, dtype=args.dtype) for c in cases]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror}") from None
    if args.variants:  # each variant beside the plain grukit-cpu
        plain = [] if "grukit-cpu" in args.providers else ["grukit-cpu"]
        args.providers = plain + list(args.providers) + [variant_provider(v) for v in args.variants]
    for name in args.providers:
        missing = PROVIDERS[name].missing()
        if missing:
            print(f"skipping {name}: {missing}", file=sys.stderr)

    threads = _thread_counts(args.threads)
    peaks = _peaks(threads)
    env = report.environment(peaks, threads, not args.interleaved)
    v = env["versions"]
    rates = ", ".join(f"{k} {g:.0f}" for k, g in peaks.items())
    print(
        f"{env['cpu']} ({' '.join(env['vector_extensions']) or 'no vector extensions listed'}), "
        f"{env['cores']} cores; torch {v['torch']}, onnxruntime {v['onnxruntime']}, openvino "
        f"{v['openvino']}, numba {v['numba']}; threads {' '.join(map(str, threads))}; "
        f"{'interleaved' if args.interleaved else 'isolated'}\n"
        f"matrix-product peak GFLOP/s (dtype@threads): {rates}",
        flush=True,
    )
    warning = busy_warning(peaks, threads)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    def progress(r):
        if r.skipped is None:
            print(
                f"  {r.case.label:<24} {r.formulation:<6} {r.mode:<9} {r.provider:<16} "
                f"{r.threads:>2} thr {r.median * 1e3:9.2f} ms",
                file=sys.stderr,
                flush=True,
            )

    config = runner.GridConfig(
        tuple(cases),
        tuple(args.providers),
        tuple(args.modes),
        tuple(args.formulations),
        tuple(threads),
        rounds=args.rounds,
        min_time=args.min_time,
        memory=args.memory,
        isolated=not args.interleaved,
    )
    results = runner.run_grid(config, on_result=progress)
    print(report.table(results, {t: peaks[f"float32@{t}"] for t in threads}))
    command = (
        "grukit " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("grukit") else "grukit bench"
    )
    atomic_write_text(out / "bench.csv", report.to_csv(results))
    atomic_write_text(out / "bench.json", report.to_json(results, env, command))
    md = report.markdown(results)
    if args.variants:
        md += "\n\n" + report.variants_markdown(results)
    atomic_write_text(out / "bench.md", md + "\n")
    print(f"\nwrote {out / 'bench.csv'}, {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


def _thread_counts(values: list[str]) -> list[int]:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = set()
    for v in values:
        if v == "all":
            counts.add(cores)
        elif v.isdigit() and int(v) >= 1:
            counts.add(int(v))
        else:
            raise UserError(f"--threads takes positive integers or 'all', got {v!r}")
    return sorted(counts)


def busy_warning(peaks: dict[str, float], threads: list[int]) -> str | None:
    """A warning where more threads multiplied more slowly than fewer (float32): something else
    was using the cores while the peak was measured, and may be while the providers are timed
    (a bench started while an earlier one's workers were exiting measured 114 GFLOP/s on 2
    threads against 149 on 1, and about 300 on 2 when restarted). None otherwise."""
    counts = sorted(threads)
    for few, many in zip(counts, counts[1:]):
        a, b = peaks.get(f"float32@{few}"), peaks.get(f"float32@{many}")
        if a is not None and b is not None and b < a:
            return (
                f"warning: the float32 matrix-product rate on {many} threads ({b:.0f} GFLOP/s) is "
                f"below the rate on {few} ({a:.0f}): something else is using the cores; the "
                "timings may be too (rerun with nothing else running)"
            )
    return None


def _peaks(threads: list[int]) -> dict[str, float]:
    """Matrix-product rates at each thread count in float32, and in bfloat16 where the CPU
    multiplies it in hardware (GFLOP/s, keyed dtype@threads)."""
    import torch

    from grukit.backends import _bf16
    from grukit.bench import runner

    before = torch.get_num_threads()
    bf16 = _bf16.hardware()
    peaks = {}
    try:
        for t in threads:
            torch.set_num_threads(t)
            peaks[f"float32@{t}"] = runner.matmul_peak()
            if bf16:
                peaks[f"bfloat16@{t}"] = runner.matmul_peak(dtype=torch.bfloat16)
    finally:
        torch.set_num_threads(before)
    return peaks


def _generate(args: argparse.Namespace) -> int:
    from grukit.bench import generate

    config = generate.GenerateConfig(generate.CASES, generate.TOKENS, rounds=args.rounds, dtype=args.dtype)
    out = Path(args.out)

    def progress(r):
        print(
            f"  {r.case.label:<18} {r.provider:<10} {r.chars_per_s(config.tokens):12,.0f} chars/s",
            file=sys.stderr,
            flush=True,
        )

    try:
        md = generate.write(out, config, "grukit " + " ".join(sys.argv[1:]), progress)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror}") from None
    print(md)
    print(f"\nwrote {out / 'generate.md'} and {out / 'generate.json'}")
    return 0
