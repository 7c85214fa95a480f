"""Checkpoints that are never corrupt and never overwritten in place.

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` holding

- ``model.safetensors``: the model's weights (no pickle);
- ``trainer.pt``: optimizer, schedule, random states, history (tensors, numbers, strings only;
  read back with ``torch.load(weights_only=True)``);
- ``meta.json``: epoch, losses, time.

It is written under a temporary name and renamed into place when complete. ``last.json`` and
``best.json`` point at checkpoint folders and are replaced atomically after the folder exists;
folders no pointer names are deleted afterwards. A crash at any moment leaves ``last.json``
naming a complete checkpoint (or no pointer at all before the first one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from grukit._io import atomic_write_text, save_weights, updating_folder

__all__ = ["CheckpointError", "save", "load_pointer", "load"]


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be read."""


def save(
    root: str | os.PathLike,
    *,
    epoch: int,
    model: torch.nn.Module,
    trainer_state: dict,
    meta: dict,
    best: bool,
) -> Path:
    """Write checkpoint ``epoch`` under ``root`` and point ``last`` (and ``best`` if ``best``) at
    it. Returns the checkpoint folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    # the whole folder appears at once (a rerun of the same epoch after a resume replaces it)
    with updating_folder(root / name) as stage:
        save_weights(model, stage / "model.safetensors")
        torch.save(trainer_state, stage / "trainer.pt")
        (stage / "meta.json").write_text(json.dumps(meta, indent=1))
    pointer = json.dumps({"checkpoint": name, **meta}, indent=1)
    atomic_write_text(root / "last.json", pointer)
    if best:
        atomic_write_text(root / "best.json", pointer)
    _prune(root)
    return root / name


def load_pointer(root: str | os.PathLike, which: str = "last") -> dict | None:
    """The ``last`` / ``best`` pointer's content, or None when there is none yet."""
    path = Path(root) / f"{which}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        folder = Path(root) / data["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint pointer ({exc})") from None
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{path} names {folder}, which is missing or incomplete")
    return data


def load(root: str | os.PathLike, which: str = "last") -> tuple[dict[str, torch.Tensor], dict, dict] | None:
    """``(model_state, trainer_state, meta)`` of the ``which`` checkpoint, or None."""
    from safetensors.torch import load_file

    from grukit._safeload import load_tensors, require_safe_torch_load

    require_safe_torch_load()
    pointer = load_pointer(root, which)
    if pointer is None:
        return None
    folder = Path(root) / pointer["checkpoint"]
    try:
        weights = load_file(str(folder / "model.safetensors"))
        state = load_tensors(folder / "trainer.pt")
        meta = json.loads((folder / "meta.json").read_text())
    except Exception as exc:  # safetensors, pickle-safety and JSON errors alike
        raise CheckpointError(f"{folder}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    return weights, state, meta


def _prune(root: Path) -> None:
    keep = set()
    for which in ("last", "best"):
        p = root / f"{which}.json"
        if p.exists():
            try:
                keep.add(json.loads(p.read_text())["checkpoint"])
            except (ValueError, KeyError):
                return  # never delete anything while a pointer is unreadable
    for child in root.iterdir():
        if (
            child.is_dir()
            and child.name not in keep
            and (child.name.startswith("epoch-") or child.name.startswith("."))
        ):
            shutil.rmtree(child, ignore_errors=True)
