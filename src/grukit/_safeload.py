"""Reading ``torch.save`` files without running code from them.

``torch.load(weights_only=True)`` restricts unpickling to tensors and plain containers, but before
PyTorch 2.6 that restriction could be bypassed to execute code (CVE-2025-32434). grukit requires
``torch>=2.6`` for this reason; this module also refuses at run time, so an older torch that
slipped in (``pip install --no-deps``, a pinned environment) cannot be used to open a file.
"""

from __future__ import annotations

import os
import re

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
    """``torch.load(path, weights_only=True)`` on the CPU, after the version check above."""
    require_safe_torch_load()
    return torch.load(path, map_location="cpu", weights_only=True)
