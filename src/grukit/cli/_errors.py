"""How ``grukit`` reports a failure: the user's mistake in one line, a bug with its traceback.

A *user error* is about what the user asked for or the machine it runs on: a :class:`UserError`
raised by the command line, the library's typed input errors (``DataError``, ``ConfigError``,
``CheckpointError``, ``TrainingError``, ``ConversionError``, ``InputError``), a missing optional
package (``MissingDependency``, whose message names the extra to install), and an ``OSError``
about the user's files (no such file, permission denied, disk full). It is printed as one line,
exit status 2.

Anything else is a bug in grukit: exit status 1, one line that says so and where the traceback
was written (a new file in the system's temporary folder), and the traceback itself on stderr
with ``grukit --debug`` or ``GRUKIT_DEBUG=1``.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
import tempfile
import time
import traceback

__all__ = ["UserError", "user_error_types", "is_user_error", "one_line", "debug_from_env", "report"]


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


# OSErrors about the user's files and disks, whatever their errno says of the file
_FILE_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_FILE_ERRNOS = {
    getattr(errno, name)
    for name in (
        "ENOENT",
        "EEXIST",
        "EACCES",
        "EPERM",
        "EISDIR",
        "ENOTDIR",
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "ENAMETOOLONG",
        "ENOTEMPTY",
        "EFBIG",
    )
    if hasattr(errno, name)
}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes that are always about the user's input or environment."""
    from grukit._extras import MissingDependency
    from grukit._validate import InputError  # ConversionError is one
    from grukit.data.series import DataError
    from grukit.train.checkpoint import CheckpointError
    from grukit.train.config import ConfigError
    from grukit.train.trainer import TrainingError

    return (
        UserError,
        DataError,
        ConfigError,
        CheckpointError,
        TrainingError,
        InputError,
        MissingDependency,
        *_FILE_ERRORS,
    )


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, user_error_types()):
        return True
    return isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS


def one_line(exc: BaseException) -> str:
    """The message of a user error on one line (its first), with its notes (``add_note``)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return "; ".join([text, *getattr(exc, "__notes__", ())])


def debug_from_env() -> bool:
    return os.environ.get("GRUKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def report(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as a user error (returns 2) or as a bug (returns 1)."""
    from grukit._extras import as_missing

    shown = as_missing(exc) or exc  # also an optional package imported without require()
    if is_user_error(shown):
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"grukit: error: {one_line(shown)}", file=sys.stderr)
        return 2
    text = "".join(traceback.format_exception(exc))
    path, why_not = _write_traceback(text)
    if debug or path is None:
        sys.stderr.write(text)
    summary = next(iter(str(exc).splitlines()), "")
    where = (
        f"the traceback is in {path}"
        if path is not None
        else f"the traceback is printed above (it could not be written to a file: {why_not})"
    )
    notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
    print(
        f"grukit: internal error: {type(exc).__name__}{': ' + summary if summary else ''}. This is a "
        f"bug in grukit, not a mistake in what you asked for; {where}; please report it to "
        f"{_report_to()} with that traceback and the command you ran.{notes}",
        file=sys.stderr,
    )
    return 1


def _write_traceback(text: str) -> tuple[str | None, str | None]:
    """``(path, None)`` of a new file holding the traceback and the versions, or ``(None, why)``;
    never raises."""
    try:
        from grukit import __version__

        head = (
            f"grukit {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
            f"command: {' '.join(sys.argv)}\ntime: {time.strftime('%Y-%m-%dT%H:%M:%S')}\n\n"
        )
        fd, path = tempfile.mkstemp(prefix="grukit-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(head + text)
        return path, None
    except Exception as exc:  # a full disk or an unwritable temporary folder: report, never crash
        return None, f"{type(exc).__name__}: {exc}"


def _report_to() -> str:
    """The issue tracker named in the package's metadata (``[project.urls]``), if any."""
    try:
        from importlib.metadata import metadata

        for entry in metadata("grukit").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() in ("issues", "bug tracker", "tracker", "bugs"):
                return url.strip()
    except Exception:  # metadata missing or malformed: fall back to words
        pass
    return "grukit's maintainers"
