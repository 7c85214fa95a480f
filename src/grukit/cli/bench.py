"""``grukit bench``: GRU speed side by side with torch.nn.GRU and ONNX Runtime.

Providers run interleaved round by round in one process (ONNX Runtime with spinning disabled);
the table shows medians, spread ((max - min) / median), GFLOP/s, the share of this machine's
measured float32 matrix-product peak, and speed-ups over torch.nn.GRU and ONNX Runtime.
Results, the machine, versions and thread counts go to --out as bench.csv and bench.json, and a
summary table as bench.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grukit.cli._errors import UserError


def add_parser(sub) -> None:
    from grukit.bench.cases import FORMULATIONS, GRIDS, MODES
    from grukit.bench.providers import DEFAULT, PROVIDERS, VARIANTS

    p = sub.add_parser("bench", help="benchmark grukit against torch.nn.GRU and ONNX Runtime",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", choices=sorted(GRIDS), default="standard",
                   help="named grid of cases (default: %(default)s)")
    p.add_argument("--case", action="append", default=[], metavar="N,T,I,H[,L][,bi]",
                   help="a case instead of the grid (repeatable), e.g. 8,500,64,128 or 4,50,32,64,2,bi")
    p.add_argument("--providers", nargs="+", choices=sorted(PROVIDERS), default=DEFAULT,
                   help=f"default: {' '.join(DEFAULT)}")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=[],
                   help="also run grukit-cpu with these options of grukit.GRU (zoneout=0.1, "
                        "recurrent_dropout=0.25, weight_dropout=0.5; all = every one), each "
                        "beside the plain GRU: the table's 'vs plain' is its time over the plain one's")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--formulations", nargs="+", choices=list(FORMULATIONS),
                   default=list(FORMULATIONS), help="after = reset_after=True (PyTorch), before = the spec")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--memory", action="store_true",
                   help="also measure training peak memory, each in a fresh process (slower)")
    p.add_argument("--out", default="bench-results", help="folder for bench.csv / bench.json")
    p.add_argument("--generate", action="store_true",
                   help="instead: text generation at batch 1 in characters per second (grukit's "
                        "sampler, torch.nn step by step, the weight-reading floor) into "
                        "generate.md / generate.json; uses --rounds, --dtype and --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from grukit._io import atomic_write_text
    from grukit.bench import report, runner
    from grukit.bench.cases import GRIDS, parse_case
    from grukit.bench.providers import PROVIDERS, variant_provider

    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {args.rounds}")
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

    peak = runner.matmul_peak()
    env = report.environment(peak)
    print(f"{env['cpu']}, {env['cores']} cores, torch {env['versions']['torch']} "
          f"({env['torch_threads']} threads), onnxruntime {env['versions']['onnxruntime']}, "
          f"numba {env['versions']['numba']}; fp32 matmul peak {peak:.0f} GFLOP/s", flush=True)

    def progress(r):
        if r.skipped is None:
            print(f"  {r.case.label:<24} {r.formulation:<6} {r.mode:<9} {r.provider:<16} "
                  f"{r.median * 1e3:9.2f} ms", file=sys.stderr, flush=True)

    results = runner.run_grid(cases, args.providers, args.modes, args.formulations,
                              rounds=args.rounds, memory=args.memory, on_result=progress)
    print(report.table(results, peak))
    command = "grukit " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("grukit") else "grukit bench"
    atomic_write_text(out / "bench.csv", report.to_csv(results))
    atomic_write_text(out / "bench.json", report.to_json(results, env, command))
    md = report.markdown(results)
    if args.variants:
        md += "\n\n" + report.variants_markdown(results)
    atomic_write_text(out / "bench.md", md + "\n")
    print(f"\nwrote {out / 'bench.csv'}, {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from grukit.bench import generate

    config = generate.GenerateConfig(generate.CASES, generate.TOKENS, rounds=args.rounds, dtype=args.dtype)
    out = Path(args.out)

    def progress(r):
        print(f"  {r.case.label:<18} {r.provider:<10} {r.chars_per_s(config.tokens):12,.0f} chars/s",
              file=sys.stderr, flush=True)

    try:
        md = generate.write(out, config, "grukit " + " ".join(sys.argv[1:]), progress)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror}") from None
    print(md)
    print(f"\nwrote {out / 'generate.md'} and {out / 'generate.json'}")
    return 0
