"""``grukit``: the command-line entry point. Subcommands are thin wrappers around the library.

Exit status 0 on success; 2 for a user error (one line on stderr: what the user asked for, their
files, a missing optional package); 1 for a bug in grukit (one line saying so and where its
traceback was written; ``--debug`` or ``GRUKIT_DEBUG=1`` also prints it); 130 when interrupted
(Ctrl-C), 143 when stopped by SIGTERM (``kill``; ``torchrun`` stopping the job's other processes
when one fails), each with one line and, for a training run, the checkpoint it keeps.
See :mod:`grukit.cli._errors`.

Imports run one way: this module imports the subcommands, the subcommands import the shared
helpers (``_errors``, ``_folders``, ``_runs``), and nothing imports this module.
"""

from __future__ import annotations

import argparse
import os
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that runs end as on Ctrl-C: cleaned up or their
    checkpoint kept and named."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _sigterm_raises():
    """Make SIGTERM raise ``_Terminated`` in the main thread; returns the handler to restore, or
    None where no handler can be set (another thread)."""
    import signal

    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread of the main interpreter
        return None


def main(argv: list[str] | None = None) -> int:
    import signal

    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    debug = debug or debug_from_env()
    before = _sigterm_raises()
    try:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))
        if isinstance(exc, _Terminated):
            why = (
                " (torchrun stops every process of a job when one of them fails)" if _under_torchrun() else ""
            )
            print(f"grukit: stopped by SIGTERM{why}{notes}", file=sys.stderr)
            return 143
        print(f"grukit: interrupted{notes}", file=sys.stderr)
        return 130
    except Exception as exc:
        return report(exc, debug=debug)
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
        _leave_process_group()


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _leave_process_group() -> None:
    """Under ``torchrun``, leave the process group before the interpreter exits: one left to the
    interpreter's teardown can abort the process ("terminate called without an active
    exception") after its work is done. Never raises: a peer may be gone already."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except Exception:  # the job is over either way; its result is written or reported
        pass
