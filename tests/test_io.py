"""Atomic, durable writes (grukit._io) and the safe torch.load floor (grukit._safeload)."""

import os
import stat
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from grukit import _io, _safeload


@pytest.fixture
def events(monkeypatch):
    """Every fsync and rename, in order, with the path each one touched."""
    seen = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        seen.append(("replace", str(a), str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(_io.os, "fsync", fsync)
    monkeypatch.setattr(_io.os, "replace", replace)
    return seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, events):
    target = tmp_path / "a.json"
    _io.atomic_write_text(target, "{}")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    tmp_name = events[1][1]
    assert events[0][1] == tmp_name and events[1][2] == str(target)  # the file, then renamed
    assert events[2][1] == str(tmp_path)  # then the folder holding the new entry
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["a.json"]


def test_the_umask_is_read_without_being_changed(tmp_path, monkeypatch):
    """Setting the umask to read it would, for a moment, give other threads' new files mode 0o666."""
    old = os.umask(0o027)
    try:
        _io._umask.cache_clear()
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask was called"))
        _io.atomic_write_text(tmp_path / "f.txt", "x")
        monkeypatch.undo()
        with open(tmp_path / "plain.txt", "w"):
            pass  # what an ordinary open gives under this umask
        mode = stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode)
        assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == 0o640
    finally:
        os.umask(old)
        _io._umask.cache_clear()


def test_a_failed_write_leaves_the_old_file_and_no_litter(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def write(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write(target, write)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_updating_folder_swaps_in_new_files_and_keeps_the_others(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    folder = tmp_path / "model"
    with _io.updating_folder(folder) as stage:  # a new folder
        (stage / "weights").write_text("fit 1")
        (stage / "meta.json").write_text("fit 1")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~_io._umask()
    (folder / "config.json").write_text("run")  # a run's own files beside the estimator's
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.json").write_text("epoch 3")
    with _io.updating_folder(folder) as stage:
        (stage / "weights").write_text("fit 2")
        (stage / "meta.json").write_text("fit 2")
    assert _tree(folder) == {
        "checkpoints/last.json": "epoch 3",
        "config.json": "run",
        "meta.json": "fit 2",
        "weights": "fit 2",
    }
    assert os.listdir(tmp_path) == ["model"]  # no staging or old folder left behind


def test_updating_folder_changes_nothing_when_the_writer_fails(tmp_path):
    folder = tmp_path / "model"
    with _io.updating_folder(folder) as stage:
        (stage / "weights").write_text("fit 1")
        (stage / "meta.json").write_text("fit 1")
    before = _tree(folder)
    with pytest.raises(RuntimeError, match="crash"):
        with _io.updating_folder(folder) as stage:
            (stage / "weights").write_text("fit 2")  # the weights of a new fit, then a crash
            raise RuntimeError("crash between two files")
    assert _tree(folder) == before and os.listdir(tmp_path) == ["model"]


def test_updating_folder_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        with _io.updating_folder(tmp_path / "model") as stage:
            (stage / "weights").write_text("x")
    assert (tmp_path / "model").read_text() == "not a folder" and os.listdir(tmp_path) == ["model"]


def test_package_requires_a_torch_whose_weights_only_load_is_safe():
    """CVE-2025-32434: torch.load(weights_only=True) before 2.6 can run code."""
    from packaging.requirements import Requirement

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in meta["project"]["dependencies"]]
    torch_req = next(r for r in reqs if r.name == "torch")
    assert "2.5.1" not in torch_req.specifier and "2.6.0" in torch_req.specifier
    assert meta["project"]["license"] == "MIT" and meta["project"]["license-files"] == ["LICENSE"]
    assert "MIT License" in (Path(__file__).parents[1] / "LICENSE").read_text()


@pytest.mark.parametrize(
    "version, safe",
    [("2.5.1+cpu", False), ("2.6.0", True), ("2.13.0+cpu", True), ("1.13.1", False), ("3.0.0a0", True)],
)
def test_torch_load_refuses_an_unsafe_torch(tmp_path, monkeypatch, version, safe):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.ones(2)}, path)
    monkeypatch.setattr(_safeload.torch, "__version__", version)
    if safe:
        assert torch.equal(_safeload.load_tensors(path)["w"], torch.ones(2))
    else:
        with pytest.raises(ImportError, match="CVE-2025-32434.*pip install 'torch>=2.6'"):
            _safeload.load_tensors(path)


def test_model_folder_reading_names_every_unreadable_folder(tmp_path):
    """``apps.model_folder.reading``: no description is FileNotFoundError; a description that is
    not an object, of another format, or missing what the estimator needs is one DataError."""
    from grukit.apps import model_folder
    from grukit.data.series import DataError

    with pytest.raises(FileNotFoundError, match="no lm.json"):
        with model_folder.reading(tmp_path, "lm.json", "grukit-lm/1", "language model"):
            pass
    for text, message in (
        ("[1, 2]", "format 'list'"),
        ('{"format": "other/1"}', "format 'other/1'"),
        ("{not json", "JSONDecodeError"),
    ):
        (tmp_path / "lm.json").write_text(text)
        with pytest.raises(DataError, match=message):
            with model_folder.reading(tmp_path, "lm.json", "grukit-lm/1", "language model"):
                pass
    (tmp_path / "lm.json").write_text('{"format": "grukit-lm/1"}')
    with pytest.raises(DataError, match="not a readable language model .KeyError"):
        with model_folder.reading(tmp_path, "lm.json", "grukit-lm/1", "language model") as (meta, _):
            meta["lm"]
    with pytest.raises(DataError, match="not a readable language model"):  # no weights file
        with model_folder.reading(tmp_path, "lm.json", "grukit-lm/1", "language model") as (_, weights):
            weights()
