"""Optional dependencies: a missing one names the extra to install; a broken one is not hidden."""

import sys

import pytest

from grukit._extras import MissingDependency, as_missing, require


def test_a_missing_package_names_the_extra_and_is_still_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` sees when it is not installed
    with pytest.raises(ImportError) as info:
        require("pandas", "apps", what="reading CSV files")
    exc = info.value
    assert type(exc) is MissingDependency
    assert str(exc) == "reading CSV files needs pandas: pip install 'grukit[apps]'"
    assert (exc.name, exc.extra) == ("pandas", "apps")


def test_a_missing_parent_package_counts_as_missing(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("statsmodels.")]:
        monkeypatch.delitem(sys.modules, name)  # imported by earlier tests: forget every submodule
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    with pytest.raises(MissingDependency, match=r"needs statsmodels: pip install 'grukit\[apps\]'"):
        require("statsmodels.tsa.holtwinters", "apps")


def test_an_installed_but_broken_package_raises_its_own_error(tmp_path, monkeypatch):
    pkg = tmp_path / "grukit_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import grukit_no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("grukit_broken_pkg", "apps")
    assert not isinstance(info.value, MissingDependency)
    assert info.value.name == "grukit_no_such_module_xyz"


def test_a_plain_import_of_an_optional_package_is_recognised():
    missing = as_missing(ModuleNotFoundError("No module named 'sklearn'", name="sklearn.metrics"))
    assert isinstance(missing, MissingDependency) and "pip install 'grukit[apps]'" in str(missing)
    assert as_missing(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert as_missing(ImportError("cannot import name 'x' from 'pandas'", name="pandas")) is None
