"""``grukit demo``: what the spec claims, shown on a generated task.

The adding problem (see :mod:`grukit.demos.adding`): grukit's GRU in both formulations and a plain
``torch.nn.RNN`` trained with the same budget at several sequence lengths. Prints a table of final
test MSE beside the 0.167 baseline and writes ``adding.png`` and ``adding.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    from grukit.demos.adding import AddingConfig

    d = AddingConfig()
    p = sub.add_parser(
        "demo",
        help="show a GRU learning long-range dependencies where a plain RNN does not",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo-report", help="output folder (default: %(default)s)")
    p.add_argument(
        "--lengths", type=int, nargs="+", default=list(d.lengths), metavar="T",
        help="sequence lengths (default: %(default)s)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="training steps per model and length (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grukit._io import atomic_write, atomic_write_text
    from grukit.cli.main import UserError
    from grukit.demos import adding

    for name in ("steps", "batch_size", "hidden_size"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if any(T < 2 for T in args.lengths):
        raise UserError(f"--lengths must all be at least 2, got {args.lengths}")
    if not args.lr > 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    try:
        import matplotlib  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the demo needs {exc.name}: pip install 'grukit[demo]'") from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror}") from None

    cfg = adding.AddingConfig(
        lengths=tuple(args.lengths),
        steps=args.steps,
        batch_size=args.batch_size,
        hidden_size=args.hidden_size,
        lr=args.lr,
        seed=args.seed,
    )
    print(
        f"Adding problem: predict the sum of two marked values in a sequence of length T.\n"
        f"Same budget for every model: {cfg.steps} steps of batch {cfg.batch_size}, "
        f"hidden size {cfg.hidden_size}, Adam lr {cfg.lr}.",
        flush=True,
    )
    results = adding.run(cfg, progress=not args.quiet and sys.stderr.isatty())
    print()
    print("Final test MSE (lower is better; 0.167 = always predicting 1.0):")
    print(adding.format_table(results))
    print()
    print("\n".join(adding.verdicts(results)))
    plot_path, json_path = out / "adding.png", out / "adding.json"
    atomic_write(plot_path, lambda tmp: adding.plot(results, tmp))
    atomic_write_text(json_path, json.dumps(adding.summary(cfg, results), indent=2))
    print(f"\nLearning curves: {plot_path}\nResults: {json_path}")
    return 0
