"""Where speech recordings come from: the Free Spoken Digit Dataset, a user's folder or CSV
manifest, the splits that evaluate on them, and connected-digit strings made from single words.

Every source gives :class:`Utterance` records (a file path and its text) without reading audio;
``grukit.data.audio`` reads the files.

* FSDD (Jackson et al., https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0):
  3,000 recordings ``recordings/{digit}_{speaker}_{index}.wav``, 6 speakers x 10 digits x 50,
  8 kHz mono. Found at ``--data DIR``, ``$GRUKIT_FSDD`` or the cache folder (filled once by a
  download pinned to one commit and checked against :data:`FSDD_RECORDINGS_SHA256`). The
  dataset's own split: index 0-4 test, 5-49 train (2,700 / 300); a speaker split holds out one
  speaker (2,500 / 500).
* A folder: class subfolders ``DIR/<label>/*.wav``, or FSDD-style names
  ``DIR/{label}_{speaker}_{index}.wav`` (.wav, .flac or .ogg).
* A manifest CSV: columns ``path`` and ``label`` (classification) or ``transcript`` (strings of
  words), optionally ``speaker``.

Connected digits (:func:`connected_digits`): n ~ U{lengths} word clips drawn with replacement,

    edge_0  clip_1  pause_1  clip_2  ...  pause_{n-1}  clip_n  edge_1
    pause_i ~ U[pause] s,  edge_j ~ U[edge] s  (zeros),

plus white noise at ``snr_db`` when given; the transcript is the clips' labels joined by spaces.

Shapes: S samples.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grukit.data.series import DataError

__all__ = [
    "Utterance",
    "FSDD_ENV",
    "FSDD_SPEAKERS",
    "FSDD_URL",
    "FSDD_RECORDINGS_SHA256",
    "AUDIO_EXTENSIONS",
    "cache_folder",
    "fsdd_folder",
    "recordings_digest",
    "fsdd",
    "official_split",
    "speaker_split",
    "speakers",
    "from_folder",
    "from_manifest",
    "load_utterances",
    "connected_digits",
]

FSDD_ENV = "GRUKIT_FSDD"  # a folder holding FSDD (the dataset root or its recordings/ folder)
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"  # 2024-05-02, the commit SOURCE.md names
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.zip"
# sha256 of the sorted lines "name sha256(bytes)\n" of the 3,000 recordings (recordings_digest),
# computed once from /work/shared/data/fsdd/recordings, a copy of FSDD_COMMIT
FSDD_RECORDINGS_SHA256 = "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f"
FSDD_TEST_INDICES = range(0, 5)  # the dataset's documented split: recordings 0-4 of each test, 5-49 train
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")

_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
_STYLE_NAME = re.compile(r"^([^_\s]+)_([^_\s]+)_(\d+)$")  # a folder's FSDD-style stem: label_speaker_index


@dataclass(frozen=True)
class Utterance:
    """One recording: ``path`` (absolute) and ``text``, the class label (one word) or the
    transcript (words separated by single spaces); ``speaker`` and FSDD's recording ``index``
    where the source gives them."""

    path: str
    text: str
    speaker: str | None = None
    index: int | None = None


def _sort_key(u: Utterance):
    return (u.speaker or "", u.text, -1 if u.index is None else u.index, u.path)


# -- FSDD ------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """grukit's cache: ``$GRUKIT_CACHE``, else ``$XDG_CACHE_HOME/grukit``, else ``~/.cache/grukit``."""
    if os.environ.get("GRUKIT_CACHE"):
        return Path(os.environ["GRUKIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "grukit"


def _wav_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.wav") if p.is_file()), key=lambda p: p.name)


def _recordings_in(folder: Path) -> Path | None:
    """The folder of FSDD's WAVs: ``folder/recordings`` or ``folder`` itself; None if neither."""
    for candidate in (folder / "recordings", folder):
        if candidate.is_dir() and _wav_files(candidate):
            return candidate
    return None


def recordings_digest(folder) -> str:
    """sha256 (hex) over the sorted lines ``"<name> <sha256 of the file's bytes>\\n"`` of the
    ``*.wav`` files in ``folder`` (FSDD's root or its recordings folder)."""
    folder = Path(folder)
    where = _recordings_in(folder) or folder
    h = hashlib.sha256()
    for p in _wav_files(where):
        h.update(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    """Save ``url`` to the file ``dest`` (network errors are OSErrors)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)


def _fill_cache(target: Path) -> None:
    """Download FSDD's archive, keep ``recordings/*.wav``, check them and rename them into
    ``target`` in one step; on any failure nothing is left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if any(target.iterdir()):
            raise DataError(
                f"{target} exists but holds no recordings/*.wav: remove it and run again "
                f"to download FSDD there"
            )
        target.rmdir()
    stage = Path(tempfile.mkdtemp(prefix=".fsdd-download-", dir=target.parent))
    try:
        archive = stage / "fsdd.zip"
        try:
            _download(FSDD_URL, archive)
        except OSError as exc:
            raise DataError(
                f"FSDD is not on this machine and could not be downloaded ({exc}): give its folder with "
                f"--data DIR, set ${FSDD_ENV}=DIR, or run once on a machine online to fill {target}"
            ) from None
        recordings = stage / "fsdd" / "recordings"
        recordings.mkdir(parents=True)
        try:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    parts = info.filename.split("/")
                    if (
                        len(parts) >= 2
                        and parts[-2] == "recordings"
                        and parts[-1].endswith(".wav")
                        and not info.is_dir()
                    ):
                        (recordings / parts[-1]).write_bytes(z.read(info))
        except zipfile.BadZipFile as exc:
            raise DataError(
                f"the FSDD download from {FSDD_URL} is not a zip archive ({exc}); run again"
            ) from None
        archive.unlink()
        digest = recordings_digest(recordings)
        if digest != FSDD_RECORDINGS_SHA256:
            raise DataError(
                f"the FSDD download from {FSDD_URL} does not match its checksum (expected "
                f"{FSDD_RECORDINGS_SHA256}, got {digest}); nothing was kept"
            )
        try:
            os.replace(stage / "fsdd", target)
        except OSError:
            if _recordings_in(target) is None:  # not another process that filled it first
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def fsdd_folder(path=None, *, download: bool = True) -> Path:
    """The folder holding FSDD's ``*.wav`` recordings: under ``path`` (``--data``) when given,
    else ``$GRUKIT_FSDD``, else ``cache_folder() / "fsdd"``, which is downloaded (pinned to
    FSDD_COMMIT, checked against FSDD_RECORDINGS_SHA256) when absent and ``download``. ``path``
    and ``$GRUKIT_FSDD`` may name the dataset's root (holding ``recordings/``) or the recordings
    folder itself."""
    given = path if path is not None else (os.environ.get(FSDD_ENV) or None)
    if given is not None:
        what = "--data" if path is not None else f"${FSDD_ENV}"
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise DataError(f"no such folder: {folder} (FSDD's folder, from {what})")
        found = _recordings_in(folder)
        if found is None:
            raise DataError(
                f"{folder} (from {what}) holds no FSDD recordings: expected "
                f"recordings/{{digit}}_{{speaker}}_{{index}}.wav or the .wav files themselves"
            )
        return found
    target = cache_folder() / "fsdd"
    found = _recordings_in(target) if target.is_dir() else None
    if found is not None:
        return found
    if not download:
        raise DataError(
            f"FSDD is not in the cache ({target}): give its folder with --data DIR or "
            f"${FSDD_ENV}=DIR, or allow the download"
        )
    _fill_cache(target)
    return target / "recordings"


def fsdd(path=None, *, download: bool = True) -> list[Utterance]:
    """Every FSDD recording (see :func:`fsdd_folder` for where they are found), sorted by
    (speaker, digit, index); ``text`` is the digit, "0".."9". A ``.wav`` not named
    ``{digit}_{speaker}_{index}.wav`` is skipped, with a warning that counts them."""
    folder = fsdd_folder(path, download=download)
    utts, stray = [], []
    for p in _wav_files(folder):
        m = _FSDD_NAME.match(p.name)
        if m is None:
            stray.append(p.name)
            continue
        utts.append(Utterance(os.path.abspath(p), m.group(1), m.group(2), int(m.group(3))))
    if stray:
        warnings.warn(
            f"{folder}: skipped {len(stray)} file(s) not named {{digit}}_{{speaker}}_{{index}}.wav, "
            f"e.g. {stray[0]}",
            stacklevel=2,
        )
    if not utts:
        raise DataError(f"{folder}: no file named {{digit}}_{{speaker}}_{{index}}.wav")
    utts.sort(key=lambda u: (u.speaker, int(u.text), u.index))
    return utts


# -- splits ----------------------------------------------------------------------------------


def official_split(utts) -> tuple[list[Utterance], list[Utterance]]:
    """FSDD's documented split: (train = recordings with index 5 and above, test = index 0-4)."""
    utts = list(utts)
    missing = [u.path for u in utts if u.index is None]
    if missing:
        raise DataError(
            f"the official split needs FSDD's recording index ({{label}}_{{speaker}}_{{index}}.wav "
            f"names); {len(missing)} recording(s) have none, e.g. {missing[0]}"
        )
    train = [u for u in utts if u.index not in FSDD_TEST_INDICES]
    test = [u for u in utts if u.index in FSDD_TEST_INDICES]
    return train, test


def speakers(utts) -> list[str]:
    """The distinct speakers of ``utts``, sorted (recordings without one are left out)."""
    return sorted({u.speaker for u in utts if u.speaker is not None})


def speaker_split(utts, speaker: str) -> tuple[list[Utterance], list[Utterance]]:
    """(train = every other speaker's recordings, test = ``speaker``'s)."""
    utts = list(utts)
    present = speakers(utts)
    if not present:
        raise DataError(
            "a speaker split needs speakers: name files {label}_{speaker}_{index}.wav or give a "
            "'speaker' column in the manifest"
        )
    if speaker not in present:
        raise DataError(f"expected a speaker among {', '.join(present)}, got {speaker!r}")
    train = [u for u in utts if u.speaker != speaker]
    test = [u for u in utts if u.speaker == speaker]
    if not train:
        raise DataError(f"{speaker!r} is the only speaker: nothing is left to train on")
    return train, test


# -- a user's recordings ---------------------------------------------------------------------


def _is_audio(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()


_LAYOUTS = (
    "expected class subfolders DIR/<label>/*.wav or files named {label}_{speaker}_{index}.wav "
    "(.wav, .flac or .ogg), or give a CSV manifest with columns path,label or path,transcript"
)


def from_folder(folder) -> list[Utterance]:
    """The recordings in ``folder`` (not read): class subfolders ``DIR/<label>/...`` (label = the
    subfolder's name, audio found at any depth below it), or, when no subfolder holds audio,
    FSDD-style files ``DIR/{label}_{speaker}_{index}.<ext>``. Speaker and index come from
    FSDD-style names wherever they match. Sorted by (speaker, label, index, path)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder}")
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if _is_audio(p))
        if files:
            classes[sub.name] = files
    top = sorted(p for p in folder.iterdir() if _is_audio(p))
    utts = []
    if classes:
        for label, files in classes.items():
            if label.split() != [label]:
                raise DataError(
                    f"{folder / label}: expected a class folder named with one word, got {label!r}"
                )
            for p in files:
                m = _STYLE_NAME.match(p.stem)
                utts.append(Utterance(os.path.abspath(p), label, m and m.group(2), m and int(m.group(3))))
        if top:
            warnings.warn(
                f"{folder}: {len(top)} audio file(s) beside the class subfolders were left out, "
                f"e.g. {top[0].name}",
                stacklevel=2,
            )
    else:
        if not top:
            raise DataError(f"{folder}: no audio files (.wav, .flac, .ogg) in it or its subfolders")
        stray = []
        for p in top:
            m = _STYLE_NAME.match(p.stem)
            if m is None:
                stray.append(p.name)
            else:
                utts.append(Utterance(os.path.abspath(p), m.group(1), m.group(2), int(m.group(3))))
        if not utts:
            raise DataError(f"{folder}: the audio files have no labels (e.g. {stray[0]}): {_LAYOUTS}")
        if stray:
            warnings.warn(
                f"{folder}: skipped {len(stray)} file(s) not named {{label}}_{{speaker}}_{{index}}, "
                f"e.g. {stray[0]}",
                stacklevel=2,
            )
    utts.sort(key=_sort_key)
    return utts


def from_manifest(csv_path) -> tuple[list[Utterance], str]:
    """The recordings a CSV manifest lists, in its order, and their task: columns ``path`` and
    either ``label`` (one word; task "classify") or ``transcript`` (words; task "transcribe",
    whitespace collapsed to single spaces), optionally ``speaker``; other columns are ignored.
    Relative paths are relative to the CSV's folder. Errors name the line (1 = the header) and
    column."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DataError(f"no such file: {csv_path}")
    base = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(
                f"{csv_path}: empty file; expected a header line with path and label or transcript"
            )
        columns = [h.strip().lower() for h in header]
        if "path" not in columns:
            raise DataError(f"{csv_path} line 1: expected a 'path' column, got columns {columns}")
        kinds = [c for c in ("label", "transcript") if c in columns]
        if len(kinds) != 1:
            got = "both" if kinds else "neither"
            raise DataError(
                f"{csv_path} line 1: expected a 'label' column (classification) or a 'transcript' "
                f"column (strings of words), got {got}"
            )
        kind = kinds[0]
        col = {name: columns.index(name) for name in ("path", kind, "speaker") if name in columns}
        utts = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line

            def cell(name, required=True):
                value = row[col[name]].strip() if col[name] < len(row) else ""
                if required and not value:
                    raise DataError(f"{csv_path} line {line}, column '{name}': empty")
                return value or None

            raw, text = cell("path"), cell(kind)
            p = Path(raw).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise DataError(f"{csv_path} line {line}, column 'path': no such file: {p}")
            if kind == "label" and len(text.split()) != 1:
                raise DataError(
                    f"{csv_path} line {line}, column 'label': expected one word, got {text!r} "
                    f"(strings of words go in a 'transcript' column)"
                )
            speaker = cell("speaker", required=False) if "speaker" in col else None
            utts.append(Utterance(os.path.abspath(p), " ".join(text.split()), speaker))
    if not utts:
        raise DataError(f"{csv_path}: no rows after the header")
    return utts, ("classify" if kind == "label" else "transcribe")


def load_utterances(source) -> tuple[list[Utterance], str | None]:
    """(recordings, task) from a folder (task "classify") or a ``.csv`` manifest."""
    p = Path(source).expanduser()
    if p.is_dir():
        return from_folder(p), "classify"
    if not p.exists():
        raise DataError(f"no such file or folder: {p}")
    if p.suffix.lower() == ".csv":
        return from_manifest(p)
    raise DataError(f"expected a folder of recordings or a .csv manifest, got {p}")


# -- connected digits ------------------------------------------------------------------------


def _interval(value, name: str, integer: bool = False) -> tuple:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if ok:
        kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        ok = (
            all(isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            and 0 <= value[0] <= value[1]
        )
    if not ok or (integer and value[0] < 1):
        least = "1 <= lo" if integer else "0 <= lo"
        raise DataError(f"expected {name}=(lo, hi) with {least} <= hi, got {value!r}")
    return (int(value[0]), int(value[1])) if integer else (float(value[0]), float(value[1]))


def connected_digits(
    clips: list[np.ndarray],
    labels: list[str],
    *,
    count: int,
    rate: int,
    lengths=(3, 7),
    pause=(0.05, 0.4),
    edge=(0.05, 0.2),
    snr_db: float | None = None,
    seed: int = 0,
    segments: bool = False,
) -> list[tuple]:
    """``count`` strings of words (see the module docstring): [(wave float32 (S,), transcript)].
    Each has a length drawn uniformly from ``lengths`` (inclusive), that many clips drawn with
    replacement from ``clips`` (1-D waves at ``rate`` Hz), silences of U[pause] seconds between
    them and U[edge] before and after, and, when ``snr_db`` is given, white noise at that
    signal-to-noise ratio (``grukit.data.audio.add_noise``). Deterministic for ``seed``: the
    strings come from one random stream and the noise from another, so a seed gives the same
    strings with or without noise. With ``segments``, each string also gives where its words
    are: [(first sample, end sample), ...] (end exclusive), for measuring emission delays."""
    if isinstance(clips, np.ndarray) or isinstance(labels, str):
        raise DataError("expected clips and labels as lists (one wave and one label per clip)")
    clips, labels = list(clips), list(labels)
    if not clips:
        raise DataError("expected at least one clip, got none")
    if len(clips) != len(labels):
        raise DataError(f"expected one label per clip, got {len(clips)} clips and {len(labels)} labels")
    waves = []
    for i, (c, lab) in enumerate(zip(clips, labels)):
        w = np.asarray(c)
        if w.ndim != 1 or w.size == 0 or w.dtype.kind not in "fiu":
            raise DataError(f"clip {i}: expected a non-empty 1-D numeric wave, got shape {w.shape} {w.dtype}")
        if not isinstance(lab, str) or len(lab.split()) != 1:
            raise DataError(f"label {i}: expected one word, got {lab!r}")
        waves.append(w.astype(np.float32, copy=False))
    for name, v in (("count", count), ("rate", rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"expected {name} a positive integer, got {v!r}")
    lo, hi = _interval(lengths, "lengths", integer=True)
    pause, edge = _interval(pause, "pause"), _interval(edge, "edge")
    if snr_db is not None and (
        isinstance(snr_db, bool)
        or not isinstance(snr_db, (int, float, np.number))
        or not math.isfinite(snr_db)
    ):
        raise DataError(f"expected snr_db a finite number or None, got {snr_db!r}")
    if snr_db is not None:
        from grukit.data.audio import add_noise
    structure, noise = np.random.SeedSequence(seed).spawn(2)
    rng, noise_rng = np.random.default_rng(structure), np.random.default_rng(noise)
    out = []
    for _ in range(count):
        n = int(rng.integers(lo, hi + 1))
        picks = rng.integers(0, len(waves), size=n)  # (n,)
        gaps = rng.uniform(*pause, size=n - 1)  # (n-1,) seconds
        ends = rng.uniform(*edge, size=2)  # (2,) seconds
        silence = [round(s * rate) for s in (ends[0], *gaps, ends[1])]
        parts = [np.zeros(silence[0], np.float32)]
        where, at = [], silence[0]
        for k, i in enumerate(picks):
            parts += [waves[i], np.zeros(silence[k + 1], np.float32)]
            where.append((at, at + len(waves[i])))
            at += len(waves[i]) + silence[k + 1]
        wave = np.concatenate(parts)  # (S,)
        if snr_db is not None:
            wave = np.asarray(add_noise(wave, snr_db, noise_rng), dtype=np.float32)
        text = " ".join(labels[i] for i in picks)
        out.append((wave, text, where) if segments else (wave, text))
    return out
