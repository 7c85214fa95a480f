"""``grukit.backends._numba_cache``: a module's Numba cache is dropped when a file it compiles in
changes (Numba itself only watches the module's own file)."""

from __future__ import annotations

from grukit.backends import _numba_cache


def _cache_files(folder):
    return sorted(p.name for p in folder.glob("kern.*.nb[ic]"))


def test_the_cache_is_dropped_exactly_when_the_module_or_a_dependency_changes(tmp_path, monkeypatch):
    (tmp_path / "dep.py").write_text("X = 1\n")
    module = tmp_path / "kern.py"
    module.write_text("def f(): pass\n")
    cache = tmp_path / "__pycache__"
    monkeypatch.setattr(_numba_cache, "_HERE", str(tmp_path))

    def compiled():  # what Numba leaves after compiling
        cache.mkdir(exist_ok=True)
        for name in ("kern.f-1.py311.nbi", "kern.f-1.py311.1.nbc"):
            (cache / name).write_bytes(b"machine code")
        (cache / "other.f-1.py311.nbi").write_bytes(b"another module's")

    compiled()
    _numba_cache.refresh(str(module), "dep")  # no record yet: the cache's origin is unknown
    assert _cache_files(cache) == []
    compiled()
    _numba_cache.refresh(str(module), "dep")  # nothing changed: kept
    assert _cache_files(cache) == ["kern.f-1.py311.1.nbc", "kern.f-1.py311.nbi"]
    (tmp_path / "dep.py").write_text("X = 2\n")
    _numba_cache.refresh(str(module), "dep")  # a dependency changed: dropped
    assert _cache_files(cache) == []
    compiled()
    module.write_text("def f(): return 1\n")
    _numba_cache.refresh(str(module), "dep")  # the module itself changed: dropped
    assert _cache_files(cache) == []
    assert (cache / "other.f-1.py311.nbi").exists()  # other modules' caches are not touched


def test_an_unreadable_dependency_leaves_everything_alone(tmp_path, monkeypatch):
    module = tmp_path / "kern.py"
    module.write_text("def f(): pass\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "kern.f-1.py311.nbi").write_bytes(b"x")
    monkeypatch.setattr(_numba_cache, "_HERE", str(tmp_path))
    _numba_cache.refresh(str(module), "missing")
    assert _cache_files(tmp_path / "__pycache__") == ["kern.f-1.py311.nbi"]
