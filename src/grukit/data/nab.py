"""The Numenta Anomaly Benchmark (NAB): 58 labelled series, their anomaly windows, the scoring
profiles and the published scoreboard.

Found at ``--data DIR``, ``$GRUKIT_NAB`` or the cache folder (``cache_folder() / "nab"``, filled
once by a download of the files below from the public repository numenta/NAB, pinned to
:data:`NAB_COMMIT`). A folder is NAB's own layout: ``data/<category>/<name>.csv``
(``timestamp,value``), ``labels/combined_windows.json`` and, for the scoreboard,
``results/final_results.json``. A published detector's raw scores, where present,
are ``results/<detector>/<category>/<detector>_<name>.csv`` with an ``anomaly_score`` column.

Shapes: each file has n records; its windows are inclusive index ranges ``(lo, hi)`` into them.
Needs pandas (the ``apps`` extra), imported when a file is read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grukit.data.series import DataError
from grukit.data.speech import cache_folder

__all__ = ["NAB_ENV", "NAB_COMMIT", "NABFile", "NABCorpus", "nab_folder", "load_nab", "published_scores"]

NAB_ENV = "GRUKIT_NAB"
NAB_COMMIT = "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140"
NAB_RAW_URL = f"https://raw.githubusercontent.com/numenta/NAB/{NAB_COMMIT}/"
WINDOWS = "labels/combined_windows.json"
PROFILES = "config/profiles.json"  # the scoring profiles (grukit.apps.nab.scoring.PROFILES)
SCOREBOARD = "results/final_results.json"


@dataclass(frozen=True)
class NABFile:
    """One series: ``name`` as NAB writes it (``realKnownCause/nyc_taxi.csv``), ``timestamps``
    (n,) datetime64, ``values`` (n,) float64, ``windows`` its anomaly windows as inclusive index
    ranges ``(lo, hi)``, in time order."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]

    @property
    def labels(self) -> np.ndarray:
        """(n,) bool: inside an anomaly window."""
        out = np.zeros(len(self.values), bool)
        for lo, hi in self.windows:
            out[lo : hi + 1] = True
        return out


@dataclass(frozen=True)
class NABCorpus:
    """Every file (in name order) and the folder."""

    files: tuple[NABFile, ...]
    folder: Path

    @property
    def n_windows(self) -> int:
        return sum(len(f.windows) for f in self.files)


def nab_folder(path=None, *, download: bool = True) -> Path:
    """NAB's folder: ``path``, else ``$GRUKIT_NAB``, else the cache, downloaded (pinned to
    :data:`NAB_COMMIT`) when absent and ``download``."""
    given = path if path is not None else (os.environ.get(NAB_ENV) or None)
    if given is not None:
        folder = Path(given).expanduser()
        what = "--data" if path is not None else f"${NAB_ENV}"
        if not (folder / WINDOWS).is_file():
            raise DataError(f"{what} {folder} is not a NAB folder (no {WINDOWS} in it)")
        return folder
    target = cache_folder() / "nab"
    if (target / WINDOWS).is_file():
        return target
    if not download:
        raise DataError(
            f"NAB is not in the cache ({target}): give its folder with --data DIR or "
            f"${NAB_ENV}=DIR, or allow the download"
        )
    _fill_cache(target)
    return target


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f)


def _fill_cache(target: Path) -> None:
    """Download the labels, the scoreboard and every labelled series into a staging
    folder beside ``target``, then move it into place (a failed download leaves nothing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".nab-download-", dir=target.parent))
    try:
        try:
            for rel in (WINDOWS, SCOREBOARD):
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                _download(NAB_RAW_URL + rel, stage / rel)
            for rel in sorted(json.loads((stage / WINDOWS).read_text())):
                (stage / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
                _download(NAB_RAW_URL + "data/" + rel, stage / "data" / rel)
        except OSError as exc:
            raise DataError(
                f"NAB is not on this machine and could not be downloaded ({exc}): give its folder "
                f"with --data DIR, set ${NAB_ENV}=DIR, or run once on a machine online to fill "
                f"{target}"
            ) from None
        except ValueError as exc:
            raise DataError(f"the NAB download is damaged ({exc}); run again") from None
        os.replace(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _read_series(path: Path):
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=0)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if list(frame.columns[:2]) != ["timestamp", "value"]:
        raise DataError(f"{path}: expected the columns timestamp,value, got {','.join(frame.columns)}")
    stamps = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]")
    return stamps, frame["value"].to_numpy(dtype=np.float64)


def _window_indices(name: str, stamps: np.ndarray, limits) -> tuple[tuple[int, int], ...]:
    """Each window's (start, end) timestamps as indices; both must be records of the file."""
    import pandas as pd

    out = []
    for start, end in limits:
        idx = []
        for t in (start, end):
            v = np.datetime64(pd.Timestamp(t).to_datetime64(), "ns")
            i = int(np.searchsorted(stamps, v))
            if i >= len(stamps) or stamps[i] != v:
                raise DataError(f"{WINDOWS}: window limit {t} of {name} is not a timestamp of the file")
            idx.append(i)
        out.append((idx[0], idx[1]))
    return tuple(out)


def load_nab(path=None, *, download: bool = True) -> NABCorpus:
    """The benchmark at :func:`nab_folder`'s folder: every file named in its windows file."""
    folder = nab_folder(path, download=download)
    try:
        windows = json.loads((folder / WINDOWS).read_text())
    except ValueError as exc:
        raise DataError(f"{folder / WINDOWS} is not JSON: {exc}") from None
    files = []
    for name in sorted(windows):
        csv = folder / "data" / name
        if not csv.is_file():
            raise DataError(f"{folder} lacks data/{name}, which {WINDOWS} labels")
        stamps, values = _read_series(csv)
        files.append(NABFile(name, stamps, values, _window_indices(name, stamps, windows[name])))
    return NABCorpus(tuple(files), folder)


def published_scores(folder) -> dict[str, dict[str, float]]:
    """The published scoreboard (``results/final_results.json``): detector -> profile -> score;
    empty when the folder has none."""
    path = Path(folder) / SCOREBOARD
    return json.loads(path.read_text()) if path.is_file() else {}
