"""An estimator's folder: its weights (``model.safetensors``) beside the JSON that describes
them (and any other files the estimator keeps), written together and read back with one error
for every way the folder can be unreadable. No pickle anywhere.

``write`` assembles the folder under a temporary name and swaps it in with one rename
(``grukit._io.updating_folder``), so a crash never leaves the weights of one fit beside the
description of another. ``reading`` checks the description's file and format and turns any
failure while the estimator rebuilds itself into a ``DataError`` naming the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import torch

from grukit._io import save_weights, updating_folder
from grukit.data.series import DataError

__all__ = ["write", "reading", "build", "WEIGHTS"]

WEIGHTS = "model.safetensors"


def write(
    path: str | os.PathLike, net, meta_file: str, meta: dict, extra: Callable[[Path], None] | None = None
) -> None:
    """Write ``net``'s weights and ``meta`` as ``path/meta_file`` in one step; ``extra(stage)``
    may add files to the folder being assembled. ``path``'s other entries stay."""
    with updating_folder(path) as stage:
        save_weights(net, stage / WEIGHTS)
        if extra is not None:
            extra(stage)
        (stage / meta_file).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")


@contextlib.contextmanager
def reading(
    path: str | os.PathLike, meta_file: str, fmt: str, what: str
) -> Iterator[tuple[dict, Callable[[], dict]]]:
    """``with reading(path, "lm.json", FORMAT, "language model") as (meta, weights):`` the
    description, its ``format`` checked, and ``weights()``, the state dict in the folder. A
    folder without ``meta_file`` is a ``FileNotFoundError``; anything unreadable inside the
    block (a missing key, a wrong type, weights that do not fit) a ``DataError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path / meta_file
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a {what} folder (no {meta_file})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != fmt:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DataError(f"format {found!r}, expected {fmt!r}")
        yield meta, lambda: load_file(str(path / WEIGHTS))
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        SafetensorError,
    ) as exc:
        # EOFError and BadZipFile: a damaged .npz beside the weights; SafetensorError: damaged weights
        raise DataError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def build(path: str | os.PathLike, factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``factory()`` holding the weights in ``path``, its sizes checked first: the module is built
    on the meta device (no memory) and every parameter's shape compared with the tensor the
    weights file holds, so a description that declares sizes the file does not hold (a damaged
    ``hidden_size=10**9``) is a ``ValueError`` before anything of that size is allocated. Call it
    inside :func:`reading`, which turns the error into a ``DataError`` naming the folder."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = str(Path(path) / WEIGHTS)
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
    with safe_open(weights, framework="pt") as f:
        held = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    for name, shape in want.items():
        if held.get(name, shape) != shape:
            raise ValueError(
                f"the description asks for {name} of shape {shape}, {WEIGHTS} holds {held[name]}"
            )
    net = factory()
    net.load_state_dict(load_file(weights))
    return net
