"""Files and folders written atomically, durably, and with the permissions a plain ``open`` would
give them.

- ``atomic_write``: a temporary file in the same folder, flushed to disk (``fsync``), renamed over
  the target, then the folder itself flushed, so a reader, a killed process or a power loss never
  sees a half-written file and nothing existing is corrupted.
- ``updating_folder``: several files that belong together (an estimator's weights and the JSON
  that describes them) replace their predecessors all at once. The new folder is assembled under
  a temporary name beside the target (unchanged entries hard-linked, or copied where links are
  not allowed) and swapped in with one rename, so a crash never leaves weights of one fit next to
  the settings of another.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk; a no-op where the OS cannot."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # a platform that cannot open folders (Windows): nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=None)
def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would set it for a moment, and
    files that other threads create meanwhile would get the wrong mode)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # no /proc (macOS, Windows): ask the OS what a new file gets
    with tempfile.TemporaryDirectory() as d:
        probe = os.path.join(d, "probe")
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o777))
        return 0o777 & ~os.stat(probe).st_mode


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, flush it to disk, rename it over ``path``, flush the folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent, directory=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_weights(module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """A module's state dict as a ``.safetensors`` file (tensors on the CPU, no pickle), written
    atomically. Tied parameters (one tensor under two names, as a language model's embedding and
    output layer) are stored under each name: safetensors refuses shared memory."""
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for k, v in module.state_dict().items():
        v = v.detach().to("cpu").contiguous()
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        tensors[k] = v.clone() if key in seen and v.numel() else v
        seen.add(key)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


# -- folders ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _renameat2():
    """libc's ``renameat2`` (Linux 3.15+), or None."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the OS or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _link_entry(entry: Path, target: Path) -> None:
    """``target`` (absent) becomes a copy of ``entry`` made of hard links: folders recreated,
    files linked (copied where the file system refuses links). Nothing in ``entry`` changes."""
    if entry.is_symlink():
        os.symlink(os.readlink(entry), target)
    elif entry.is_dir():
        target.mkdir()
        for child in entry.iterdir():
            _link_entry(child, target / child.name)
        shutil.copystat(entry, target)
    else:
        try:
            os.link(entry, target)
        except OSError:
            shutil.copy2(entry, target)


@contextlib.contextmanager
def updating_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; when the block ends without an error, every file written into
    it replaces (or joins) the entry of the same name in ``path``, all in one step.

    ``path``'s other entries (a run's ``config.json``, its checkpoints) stay as they are. The
    folder is rebuilt beside ``path`` from hard links and swapped in with an atomic exchange
    (``renameat2``), or, where that is unsupported, two renames; a reader sees the old folder or
    the new one, never a mixture. Files written into the staging folder must be complete files
    (write with plain ``open``/``save_file``: the swap itself is the atomic step). On an error
    nothing in ``path`` changes. Not for folders that another process writes at the same time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new."))
    try:
        yield stage
        for f in stage.rglob("*"):
            if f.is_file():
                fsync_path(f)
        if path.exists():
            if not path.is_dir():
                raise NotADirectoryError(f"{path} exists and is not a folder")
            # the old entries not written anew join the staged ones, without copying their data
            for entry in path.iterdir():
                if not os.path.lexists(stage / entry.name):
                    _link_entry(entry, stage / entry.name)
            shutil.copystat(path, stage)
            if not _exchange(stage, path):
                aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
                os.replace(path, aside / "old")
                os.replace(stage, path)
                stage = aside
        else:
            os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes it private
            os.replace(stage, path)
            stage = None
        fsync_path(path.parent, directory=True)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
