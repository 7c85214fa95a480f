"""``grukit``: the command-line entry point. Subcommands are thin wrappers around the library.

Exit status 0 on success; 2 for a user error (one line on stderr: what the user asked for, their
files, a missing optional package); 1 for a bug in grukit (one line saying so and where its
traceback was written; ``--debug`` or ``GRUKIT_DEBUG=1`` also prints it); 130 when interrupted.
See :mod:`grukit.cli._errors`.

Imports run one way: this module imports the subcommands, the subcommands import the shared
helpers (``_errors``, ``_folders``, ``_runs``), and nothing imports this module.
"""

from __future__ import annotations

import argparse
import sys

from grukit import __version__
from grukit.cli import anomaly, bench, convert, demo, forecast, inspect, speech, text
from grukit.cli._errors import debug_from_env, report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grukit",
        description="grukit: the Gated Recurrent Unit for PyTorch. Demos, training and tools.",
        epilog="Set GRUKIT_DEBUG=1 to print the traceback of an internal error, as --debug does.",
    )
    parser.add_argument("--version", action="version", version=f"grukit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of any error (also a user error)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.add_parser(sub)
    forecast.add_parser(sub)
    anomaly.add_parser(sub)
    text.add_parser(sub)
    speech.add_parser(sub)
    inspect.add_parser(sub)
    bench.add_parser(sub)
    convert.add_parser(sub)
    return parser


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` anywhere on the line (``grukit anomaly train ... --debug`` too), not only
    before the subcommand where the parser declares it; nothing after a ``--`` is looked at."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--debug" in argv[:end]
    return [a for i, a in enumerate(argv) if not (i < end and a == "--debug")], found


def main(argv: list[str] | None = None) -> int:
    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    debug = debug or debug_from_env()
    try:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))
        print(f"grukit: interrupted{notes}", file=sys.stderr)
        return 130
    except Exception as exc:
        return report(exc, debug=debug)
