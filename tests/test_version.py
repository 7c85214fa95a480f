"""One version: ``grukit.__version__`` is the source; the installed distribution's metadata
(pyproject's dynamic version), ``grukit --version`` and the changelog's latest entry agree with it."""

import importlib.metadata
import re
from pathlib import Path

import pytest

import grukit
from grukit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_pep440_release():
    assert re.fullmatch(r"\d+\.\d+\.\d+", grukit.__version__)


def test_distribution_metadata_matches_package_version():
    assert importlib.metadata.version("grukit") == grukit.__version__


def test_cli_version_prints_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"grukit {grukit.__version__}"


def test_pyproject_takes_version_from_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'version = {attr = "grukit.__version__"}' in text


def test_changelog_latest_version_is_package_version():
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    released = [h for h in headings if h != "Unreleased"]
    assert released and released[0] == grukit.__version__
