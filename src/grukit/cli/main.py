"""``grukit``: the command-line entry point. Subcommands are thin wrappers around the library.

User errors print one line on stderr and exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import sys

from grukit import __version__


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grukit",
        description="grukit: the Gated Recurrent Unit for PyTorch. Demos, training and tools.",
    )
    parser.add_argument("--version", action="version", version=f"grukit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from grukit.cli import anomaly, bench, convert, demo, forecast

    demo.add_parser(sub)
    forecast.add_parser(sub)
    anomaly.add_parser(sub)
    bench.add_parser(sub)
    convert.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"grukit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grukit: interrupted", file=sys.stderr)
        return 130
