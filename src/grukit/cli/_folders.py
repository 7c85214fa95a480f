"""Where the subcommands write: run folders, output files, and folders swapped in once complete.

A run folder (the ``--out`` of ``forecast train``, ``anomaly train`` and ``forecast demo``) must
be new, empty, or one that a run left before its first checkpoint (its own ``config.json`` and
nothing else but folders and hidden temporary files: a run that was killed); with ``--resume``,
the folder of an earlier run with the same settings. A run that fails before its first checkpoint
removes what it wrote, so the corrected command can use the same ``--out``; one that fails after
keeps its checkpoints, and its message says to rerun with ``--resume``. Under ``torchrun`` every
process checks the folder; only rank 0 writes and cleans up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from grukit.cli._errors import UserError

__all__ = ["RUN_COMMANDS", "run_folder", "check_out", "check_output_file", "into_fresh_folder"]

# the commands whose config.json marks a run folder as grukit's
RUN_COMMANDS = (
    "anomaly train",
    "forecast train",
    "forecast demo",
    "text train",
    "text demo",
    "speech train",
    "speech demo",
)


@contextmanager
def run_folder(out: Path, resume: bool, config: dict, ctx):
    """Check ``out`` (every process), write ``config.json`` (rank 0), run the body; if the body
    fails, remove what it wrote when no checkpoint was made, or say how to resume when one was."""
    from grukit._io import atomic_write_text
    from grukit.train.distributed import barrier

    abandoned = check_out(out, resume, config)
    created = not out.exists()
    barrier(ctx)
    if not resume and ctx.is_main:
        if abandoned:
            _empty(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config, indent=1))
    barrier(ctx)
    try:
        yield
    except BaseException as exc:
        if ctx.is_main:
            _after_failure(out, created, resume, exc)
        elif not any("keeps the checkpoint" in n for n in getattr(exc, "__notes__", ())):
            _name_checkpoint(out, exc)  # another rank: rank 0 owns the folder; say what it holds
        raise


# settings a resumed run may change: how it reports and how long it may go on, not what it trains
_FREE_ON_RESUME = ("resume", "quiet", "max_time", "progress")


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The settings (dotted paths into nested sections) that differ between two run configs,
    except those in ``_FREE_ON_RESUME``."""
    out = []
    for k in sorted(set(old) | set(new)):
        if k in _FREE_ON_RESUME:
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(prefix + k)
    return out


def check_out(out: Path, resume: bool, config: dict) -> bool:
    """Whether ``out`` may hold this run (else a ``UserError`` saying why not); True when it is a
    killed run's folder whose leftovers are to be removed first."""
    saved = out / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run to resume (no config.json)")
        try:
            old = json.loads(saved.read_text())
        except ValueError as exc:
            raise UserError(f"--resume: {saved} is unreadable ({exc})") from None
        changed = _changed(old, config)
        if changed:
            raise UserError(f"--resume: the settings differ from the run in {out}: {', '.join(changed)}")
        return False
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return False
    if out.is_dir() and _abandoned(out):
        return True
    raise UserError(
        f"{out} exists and is not empty; choose a new --out (nothing is overwritten) "
        "or pass --resume to continue the run in it"
    )


def check_output_file(out: Path, force: bool) -> None:
    """An output file that may be written: new (or ``--force``), in an existing folder."""
    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"no such folder: {out.parent}")


def into_fresh_folder(out: Path, name: str, run):
    """``run(tmp)`` into a new hidden folder under ``out``, swapped in as ``out/name`` only once
    it is complete: a failed or interrupted run keeps the last result. Returns what ``run``
    returns."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}-"))
    try:
        result = run(tmp)
        final = out / name
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=out, prefix=f".old-{name}-"))
            final.rename(old / name)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


# -- after a failure ---------------------------------------------------------------------------


def _abandoned(out: Path) -> bool:
    """A folder a run left before its first checkpoint: grukit's config.json, and otherwise
    only folders and hidden temporary files (a checkpoint being written when it was killed)."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or saved.get("command") not in RUN_COMMANDS:
        return False
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        if rel == Path("config.json") or any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink() or not path.is_dir():
            return False
    return True


def _after_failure(out: Path, created: bool, resume: bool, exc: BaseException) -> None:
    """Clean up after ``exc`` (or add a note saying why not); never raises."""
    try:
        kept = _last_checkpoint(out)
        if kept is not None:
            _note(
                exc,
                f"{out} keeps the checkpoint of {kept}: rerun the same command with --resume "
                "to continue from it",
            )
        elif not resume:  # nothing worth keeping: leave the folder as the run found it
            if created:
                shutil.rmtree(out)
            else:
                _empty(out)
    except OSError as err:
        _note(exc, f"{out} could not be cleaned up ({err})")


def _name_checkpoint(out: Path, exc: BaseException) -> None:
    """Note on ``exc`` the checkpoint ``out`` keeps, if any; never raises."""
    try:
        kept = _last_checkpoint(out)
    except OSError:
        return
    if kept is not None:
        _note(
            exc,
            f"{out} keeps the checkpoint of {kept}: rerun the same command with --resume to continue from it",
        )


def _last_checkpoint(out: Path) -> str | None:
    """The newest checkpoint under ``out`` ("epoch N"; ensembles have one per member), or None."""
    pointers = list(out.glob("**/checkpoints/last.json")) if out.is_dir() else []
    if not pointers:
        return None
    newest = max(pointers, key=lambda p: p.stat().st_mtime_ns)
    try:
        return f"epoch {int(json.loads(newest.read_text())['epoch'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{newest.parent}"


def _empty(out: Path) -> None:
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:  # Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", ()), text]
