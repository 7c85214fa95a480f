"""Reading ``torch.save`` files without running code from them.

``torch.load(weights_only=True)`` restricts unpickling to tensors and plain containers, but before
PyTorch 2.6 that restriction could be bypassed to execute code (CVE-2025-32434). grukit requires
``torch>=2.6`` for this reason; this module also refuses at run time, so an older torch that
slipped in (``pip install --no-deps``, a pinned environment) cannot be used to open a file.
"""

from __future__ import annotations

import os
import re
import zipfile

import torch

from grukit._extras import MissingDependency

SAFE_FROM = (2, 6)


class UnsafeTorch(MissingDependency):
    """The installed PyTorch is older than the one whose ``weights_only`` loading is safe: like a
    missing package, something the user's environment must fix (the message says how)."""


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise RuntimeError(f"cannot read PyTorch's version {text!r}")
    return int(match.group(1)), int(match.group(2))


def require_safe_torch_load() -> None:
    """Raise unless this PyTorch's ``torch.load(weights_only=True)`` is safe to use."""
    if _version(torch.__version__) < SAFE_FROM:
        raise UnsafeTorch(
            f"refusing to read a torch.save file with PyTorch {torch.__version__}: before 2.6 "
            "torch.load(weights_only=True) can be made to run code (CVE-2025-32434); "
            "pip install 'torch>=2.6'",
            name="torch",
            extra="",
        )


def load_tensors(path: str | os.PathLike):
    """``torch.load(path, weights_only=True)`` on the CPU, after the version check above.

    Only the zip format ``torch.save`` has written since PyTorch 1.6 is read: there every tensor's
    bytes are a record of the archive, so what is allocated is bounded by the file's size. The
    legacy format allocates each storage at the size its pickle declares before reading it (a
    file of a kilobyte can ask for gigabytes), so it is refused with a ``ValueError``."""
    require_safe_torch_load()
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: expected a torch.save file (a zip archive, PyTorch >= 1.6), got "
            f"{_what_it_is(path)}; the legacy format is not read because it declares its sizes "
            "before its data: load it with torch.load and save it again"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _what_it_is(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "an empty file"
    if head[:2] == b"\x80\x02":  # a pickle, protocol 2: what the legacy format starts with
        return "a pickle (the legacy format, PyTorch < 1.6)"
    return f"a file starting with {head!r}"
