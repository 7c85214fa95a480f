"""Where recordings come from: FSDD (the shared copy when it is there; the cache's download with
a served fake archive), a user's folder, a CSV manifest; the splits; connected-digit strings."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grukit.data import speech
from grukit.data.series import DataError
from grukit.data.speech import (
    FSDD_ENV,
    FSDD_RECORDINGS_SHA256,
    FSDD_SPEAKERS,
    Utterance,
    connected_digits,
    from_folder,
    from_manifest,
    fsdd,
    fsdd_folder,
    load_utterances,
    official_split,
    recordings_digest,
    speaker_split,
    speakers,
)

sf = pytest.importorskip("soundfile", reason="the speech extra (soundfile) is part of the test extra")

RATE = 8000
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


def _wav(path: Path, seconds: float = 0.05, value: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(seconds * RATE), value, np.float32), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def shared_fsdd():
    for root in (os.environ.get(FSDD_ENV), SHARED):
        if root and (Path(root) / "recordings").is_dir():
            return Path(root)
    pytest.skip(f"FSDD is not beside the checkout ({SHARED}) nor in ${FSDD_ENV}")


@pytest.fixture
def no_fsdd_env(monkeypatch, tmp_path):
    """No $GRUKIT_FSDD and an empty cache folder in tmp_path; returns the cache."""
    monkeypatch.delenv(FSDD_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRUKIT_CACHE", str(cache))
    return cache


# -- FSDD, the shared copy ---------------------------------------------------------------------


def test_fsdd_has_3000_recordings_50_per_digit_and_speaker(shared_fsdd):
    utts = fsdd(shared_fsdd, download=False)
    assert len(utts) == 3000
    assert speakers(utts) == sorted(FSDD_SPEAKERS)
    counts: dict = {}
    for u in utts:
        counts[u.speaker, u.text] = counts.get((u.speaker, u.text), 0) + 1
        assert Path(u.path).is_absolute() and Path(u.path).name == f"{u.text}_{u.speaker}_{u.index}.wav"
    assert set(counts.values()) == {50} and len(counts) == 60
    assert {u.text for u in utts} == {str(d) for d in range(10)}
    assert utts == sorted(utts, key=lambda u: (u.speaker, int(u.text), u.index))


def test_fsdd_speakers_constant_matches_speakers_csv(shared_fsdd):
    with open(shared_fsdd / "speakers.csv", newline="") as f:
        assert sorted(row["speaker"] for row in csv.DictReader(f)) == list(FSDD_SPEAKERS)


def test_official_and_speaker_splits_on_fsdd(shared_fsdd):
    utts = fsdd(shared_fsdd, download=False)
    train, test = official_split(utts)
    assert (len(train), len(test)) == (2700, 300)
    assert {u.index for u in test} == set(range(5)) and min(u.index for u in train) == 5
    train, test = speaker_split(utts, "theo")
    assert (len(train), len(test)) == (2500, 500)
    assert {u.speaker for u in test} == {"theo"} and "theo" not in {u.speaker for u in train}


def test_shared_copy_matches_the_checksum_constant(shared_fsdd):
    assert recordings_digest(shared_fsdd / "recordings") == FSDD_RECORDINGS_SHA256
    assert recordings_digest(shared_fsdd) == FSDD_RECORDINGS_SHA256  # the root is accepted too


def test_fsdd_env_is_honoured_root_or_recordings(shared_fsdd, no_fsdd_env, monkeypatch):
    monkeypatch.setenv(FSDD_ENV, str(shared_fsdd))
    assert fsdd_folder() == shared_fsdd / "recordings"
    monkeypatch.setenv(FSDD_ENV, str(shared_fsdd / "recordings"))
    assert fsdd_folder() == shared_fsdd / "recordings"
    assert len(fsdd()) == 3000


# -- FSDD, small synthetic copies -----------------------------------------------------------------


def test_fsdd_sorts_by_speaker_digit_index_and_skips_stray_files(tmp_path, no_fsdd_env, monkeypatch):
    rec = tmp_path / "fsdd" / "recordings"
    for name in ("1_bob_0.wav", "0_bob_10.wav", "0_bob_9.wav", "3_amy_2.wav", "notes.wav", "0_bob_x.wav"):
        _wav(rec / name)
    (rec / "README.txt").write_text("not audio")
    monkeypatch.setenv(FSDD_ENV, str(tmp_path / "fsdd"))
    with pytest.warns(UserWarning, match="skipped 2 file"):
        utts = fsdd()
    assert [Path(u.path).name for u in utts] == ["3_amy_2.wav", "0_bob_9.wav", "0_bob_10.wav", "1_bob_0.wav"]
    assert utts[1] == Utterance(str(rec / "0_bob_9.wav"), "0", "bob", 9)
    # --data wins over the environment
    other = tmp_path / "other"
    _wav(other / "7_cid_1.wav")
    assert [u.text for u in fsdd(other)] == ["7"]


def test_fsdd_folder_without_recordings_names_it(tmp_path, no_fsdd_env):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}.*no FSDD recordings"):
        fsdd_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder"):
        fsdd_folder(tmp_path / "absent")


def test_offline_cache_gives_one_clear_error_and_leaves_nothing(no_fsdd_env, monkeypatch):
    calls = []

    def offline(url, dest):
        calls.append(url)
        Path(dest).write_bytes(b"partial")  # a download that dies half-way
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(speech, "_download", offline)
    with pytest.raises(DataError) as e:
        fsdd()
    message = str(e.value)
    assert "--data DIR" in message and "$GRUKIT_FSDD" in message and str(no_fsdd_env / "fsdd") in message
    assert "no network" in message and len(message.splitlines()) == 1
    assert calls == [speech.FSDD_URL] and speech.FSDD_COMMIT in calls[0]
    assert list(no_fsdd_env.iterdir()) == []  # no archive, no half-made folder
    with pytest.raises(DataError, match="not in the cache"):
        fsdd(download=False)
    assert len(calls) == 1


def _archive(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A zip shaped like GitHub's archive of FSDD: recordings/ plus files that must not be kept."""
    files = {}
    for name in ("0_amy_0.wav", "0_amy_1.wav", "5_bob_0.wav"):
        buf = io.BytesIO()
        sf.write(buf, np.full(80, 0.2, np.float32), RATE, format="WAV", subtype="PCM_16")
        files[name] = buf.getvalue()
    path = tmp_path / "served.zip"
    top = f"free-spoken-digit-dataset-{speech.FSDD_COMMIT}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{top}/README.md", "FSDD")
        z.writestr(f"{top}/recordings/", "")
        for name, data in files.items():
            z.writestr(f"{top}/recordings/{name}", data)
        z.writestr(f"{top}/acquire_data/spoken.wav", files["0_amy_0.wav"])
    return path, files


def _digest(files: dict[str, bytes]) -> str:
    lines = "".join(f"{n} {hashlib.sha256(files[n]).hexdigest()}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_download_is_checked_then_renamed_into_place(tmp_path, no_fsdd_env, monkeypatch):
    served, files = _archive(tmp_path)
    monkeypatch.setattr(speech, "_download", lambda url, dest: Path(dest).write_bytes(served.read_bytes()))
    with pytest.raises(DataError, match="does not match its checksum"):
        fsdd()
    assert list(no_fsdd_env.iterdir()) == []
    # the same archive, with the constant set to its digest: accepted, and only recordings kept
    monkeypatch.setattr(speech, "FSDD_RECORDINGS_SHA256", _digest(files))
    utts = fsdd()
    assert [(u.text, u.speaker, u.index) for u in utts] == [("0", "amy", 0), ("0", "amy", 1), ("5", "bob", 0)]
    rec = no_fsdd_env / "fsdd" / "recordings"
    assert sorted(p.name for p in (no_fsdd_env / "fsdd").iterdir()) == ["recordings"]
    assert {p.name: p.read_bytes() for p in rec.iterdir()} == files
    assert sorted(p.name for p in no_fsdd_env.iterdir()) == ["fsdd"]  # no staging folder left
    # found in the cache from now on: no second download
    monkeypatch.setattr(speech, "_download", lambda url, dest: pytest.fail("downloaded twice"))
    assert fsdd_folder() == rec and len(fsdd()) == 3


def test_download_that_is_not_a_zip(tmp_path, no_fsdd_env, monkeypatch):
    monkeypatch.setattr(
        speech, "_download", lambda url, dest: Path(dest).write_text("<html>rate limited</html>")
    )
    with pytest.raises(DataError, match="not a zip"):
        fsdd()
    assert list(no_fsdd_env.iterdir()) == []


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRUKIT_CACHE", str(tmp_path / "a"))
    assert speech.cache_folder() == tmp_path / "a"
    monkeypatch.delenv("GRUKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speech.cache_folder() == tmp_path / "xdg" / "grukit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert speech.cache_folder() == tmp_path / "home" / ".cache" / "grukit"


# -- splits -------------------------------------------------------------------------------------


def _utts():
    return [
        Utterance(f"/x/{d}_{s}_{i}.wav", str(d), s, i)
        for s in ("amy", "bob", "cid")
        for d in range(2)
        for i in range(7)
    ]


def test_splits_by_hand():
    utts = _utts()
    train, test = official_split(utts)
    assert len(test) == 3 * 2 * 5 and len(train) == 3 * 2 * 2
    assert all(u.index <= 4 for u in test) and all(u.index >= 5 for u in train)
    train, test = speaker_split(utts, "bob")
    assert len(test) == 14 and len(train) == 28 and speakers(train) == ["amy", "cid"]


def test_split_errors_name_what_is_missing():
    with pytest.raises(DataError, match="amy, bob, cid.*'nobody'"):
        speaker_split(_utts(), "nobody")
    no_speakers = [Utterance("/x/a.wav", "a")]
    with pytest.raises(DataError, match="needs speakers"):
        speaker_split(no_speakers, "amy")
    with pytest.raises(DataError, match="only speaker"):
        speaker_split(_utts()[:14], "amy")
    with pytest.raises(DataError, match="index"):
        official_split(no_speakers)


# -- a user's folder ----------------------------------------------------------------------------


def test_class_subfolders(tmp_path):
    root = tmp_path / "words"
    _wav(root / "yes" / "a.wav")
    sf.write(root / "yes" / "b.flac", np.zeros(100, np.float32), RATE)
    (root / "yes" / "b.flac").rename(root / "yes" / "B.FLAC")
    _wav(root / "no" / "no_amy_3.wav")
    _wav(root / "no" / "session2" / "c.wav")
    (root / "no" / "notes.txt").write_text("x")
    (root / "empty").mkdir()
    utts = from_folder(root)
    got = {(Path(u.path).relative_to(root).as_posix(), u.text, u.speaker, u.index) for u in utts}
    assert got == {
        ("yes/a.wav", "yes", None, None),
        ("yes/B.FLAC", "yes", None, None),
        ("no/no_amy_3.wav", "no", "amy", 3),
        ("no/session2/c.wav", "no", None, None),
    }
    assert all(Path(u.path).is_absolute() for u in utts)
    assert load_utterances(root) == (utts, "classify")


def test_fsdd_style_names_in_one_folder(tmp_path):
    root = tmp_path / "flat"
    for name in ("up_ann_0.wav", "up_ann_1.WAV", "down_bob_12.wav", "stray.wav"):
        _wav(root / name)
    with pytest.warns(UserWarning, match="skipped 1 file"):
        utts = from_folder(root)
    assert [(u.text, u.speaker, u.index) for u in utts] == [
        ("up", "ann", 0),
        ("up", "ann", 1),
        ("down", "bob", 12),
    ]
    assert official_split(utts) == (utts[2:], utts[:2])


def test_folder_errors(tmp_path):
    bad = tmp_path / "bad"
    _wav(bad / "hello.wav")
    _wav(bad / "world.wav")
    with pytest.raises(DataError, match="class subfolders.*manifest") as e:
        from_folder(bad)
    assert "hello.wav" in str(e.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no audio files"):
        from_folder(tmp_path / "empty")
    _wav(tmp_path / "spaces" / "two words" / "a.wav")
    with pytest.raises(DataError, match="one word"):
        from_folder(tmp_path / "spaces")
    with pytest.raises(DataError, match="no such"):
        load_utterances(tmp_path / "absent")
    (tmp_path / "list.txt").write_text("a.wav")
    with pytest.raises(DataError, match=r"\.csv manifest"):
        load_utterances(tmp_path / "list.txt")


# -- manifests ----------------------------------------------------------------------------------


def _manifest(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_manifest_with_labels(tmp_path):
    a = _wav(tmp_path / "audio" / "a.wav")
    b = _wav(tmp_path / "elsewhere" / "b.wav")
    m = _manifest(tmp_path / "m.csv", f"path,label,speaker,notes\naudio/a.wav,yes,amy,x\n{b},no,,\n")
    utts, task = from_manifest(m)
    assert task == "classify"
    assert utts == [Utterance(str(a), "yes", "amy"), Utterance(str(b), "no", None)]
    assert load_utterances(m) == (utts, "classify")


def test_manifest_with_transcripts(tmp_path):
    a = _wav(tmp_path / "a.wav")
    m = _manifest(tmp_path / "m.csv", 'Path,Transcript\na.wav," one  two\tthree "\n\na.wav,four\n')
    utts, task = from_manifest(m)
    assert task == "transcribe"
    assert [u.text for u in utts] == ["one two three", "four"]
    assert all(u.path == str(a) and u.speaker is None for u in utts)


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,label\na.wav,yes\n", "line 1: expected a 'path' column"),
        ("path,speaker\na.wav,amy\n", "line 1: .*got neither"),
        ("path,label,transcript\na.wav,yes,yes\n", "line 1: .*got both"),
        ("path,label\na.wav,yes\na.wav,\n", "line 3, column 'label': empty"),
        ("path,label\na.wav,yes\na.wav\n", "line 3, column 'label': empty"),
        ("path,transcript\n,one two\n", "line 2, column 'path': empty"),
        ("path,label\na.wav,yes\nmissing.wav,no\n", "line 3, column 'path': no such file"),
        ("path,label\na.wav,two words\n", "line 2, column 'label': expected one word"),
        ("path,label\n", "no rows"),
        ("", "empty file"),
    ],
)
def test_manifest_errors_name_line_and_column(tmp_path, text, message):
    _wav(tmp_path / "a.wav")
    m = _manifest(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as e:
        from_manifest(m)
    assert "bad.csv" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        from_manifest(tmp_path / "absent.csv")


# -- connected digits ---------------------------------------------------------------------------

CLIP_RATE = 1000
VALUES = {"0": 0.1, "1": 0.2, "2": 0.3, "3": 0.4}  # each label's clip is constant at its value
LENGTHS = {"0": 120, "1": 60, "2": 200, "3": 90}  # samples


def _clips():
    labels = list(VALUES)
    return [np.full(LENGTHS[k], VALUES[k], np.float32) for k in labels], labels


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def test_connected_digits_transcripts_lengths_and_silences():
    clips, labels = _clips()
    pairs = connected_digits(clips, labels, count=200, rate=CLIP_RATE, seed=3)
    assert len(pairs) == 200
    by_value = {v: k for k, v in VALUES.items()}
    seen_lengths = set()
    for wave, text in pairs:
        assert wave.dtype == np.float32 and wave.ndim == 1
        runs = _runs(wave != 0)
        words = []
        for a, b in runs:
            v = float(wave[a])
            label = min(by_value, key=lambda x: abs(x - v))
            assert np.all(wave[a:b] == np.float32(label)) and b - a == LENGTHS[by_value[label]]
            words.append(by_value[label])
        assert text == " ".join(words)
        seen_lengths.add(len(words))
        assert 50 <= runs[0][0] <= 200 and 50 <= len(wave) - runs[-1][1] <= 200  # edges, samples
        gaps = [runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1)]
        assert all(50 <= g <= 400 for g in gaps)  # pauses, samples
    assert seen_lengths == {3, 4, 5, 6, 7}
    assert {w for _, t in pairs for w in t.split()} == set(labels)


def test_connected_digits_other_ranges():
    clips, labels = _clips()
    for wave, text in connected_digits(
        clips, labels, count=30, rate=CLIP_RATE, lengths=(1, 2), pause=(0.5, 0.5), edge=(0.0, 0.0), seed=1
    ):
        runs = _runs(wave != 0)
        assert len(text.split()) == len(runs) in (1, 2)
        assert runs[0][0] == 0 and runs[-1][1] == len(wave)
        assert all(runs[i + 1][0] - runs[i][1] == 500 for i in range(len(runs) - 1))


def test_connected_digits_are_deterministic_for_a_seed():
    clips, labels = _clips()
    a = connected_digits(clips, labels, count=5, rate=CLIP_RATE, seed=7)
    b = connected_digits(clips, labels, count=5, rate=CLIP_RATE, seed=7)
    c = connected_digits(clips, labels, count=5, rate=CLIP_RATE, seed=8)
    assert [t for _, t in a] == [t for _, t in b]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(a, b))
    assert [t for _, t in a] != [t for _, t in c]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"clips": []}, "at least one clip"),
        ({"labels": ["0", "1"]}, "4 clips and 2 labels"),
        ({"labels": ["0", "1", "two words", "3"]}, "label 2"),
        ({"clips": [np.zeros((2, 3))] * 4}, "clip 0"),
        ({"count": 0}, "count"),
        ({"rate": 0}, "rate"),
        ({"lengths": (0, 3)}, "lengths"),
        ({"lengths": (5, 3)}, "lengths"),
        ({"lengths": (1.5, 3)}, "lengths"),
        ({"pause": (-0.1, 0.2)}, "pause"),
        ({"edge": (0.3, 0.2)}, "edge"),
        ({"snr_db": float("nan")}, "snr_db"),
    ],
)
def test_connected_digits_validates(kw, message):
    clips, labels = _clips()
    args = {"clips": clips, "labels": labels, "count": 2, "rate": CLIP_RATE, **kw}
    with pytest.raises(DataError, match=message):
        connected_digits(args.pop("clips"), args.pop("labels"), **args)


def test_connected_digits_noise_at_the_snr_leaves_the_strings_unchanged():
    clips, labels = _clips()
    clean = connected_digits(clips, labels, count=20, rate=CLIP_RATE, seed=4)
    noisy = connected_digits(clips, labels, count=20, rate=CLIP_RATE, snr_db=10.0, seed=4)
    assert [t for _, t in clean] == [t for _, t in noisy]
    snrs = []
    for (c, _), (n, _) in zip(clean, noisy):
        assert n.dtype == np.float32 and n.shape == c.shape
        noise = n.astype(np.float64) - c
        assert abs(noise.mean()) < 0.02  # zero-mean white noise, everywhere including the silences
        assert np.std(noise[c == 0]) == pytest.approx(np.std(noise[c != 0]), rel=0.2)
        snrs.append(10 * np.log10(np.mean(c.astype(np.float64) ** 2) / np.mean(noise**2)))
    assert np.mean(snrs) == pytest.approx(10.0, abs=0.15)
    assert all(abs(s - 10.0) < 0.8 for s in snrs)


def test_connected_digits_segments_locate_each_word():
    rng = np.random.default_rng(5)
    clips = [np.full(int(rng.integers(300, 900)), float(k + 1), np.float32) for k in range(4)]
    labels = ["one", "two", "three", "four"]
    plain = connected_digits(clips, labels, count=20, rate=8000, seed=3)
    for (wave, text, where), (wave0, text0) in zip(
        connected_digits(clips, labels, count=20, rate=8000, seed=3, segments=True), plain
    ):
        np.testing.assert_array_equal(wave, wave0)  # the same strings with or without segments
        assert text == text0 and len(where) == len(text.split())
        for (a, b), word in zip(where, text.split()):
            k = labels.index(word)
            np.testing.assert_array_equal(wave[a:b], clips[k])
            assert wave[a - 1] == 0 and (b == len(wave) or wave[b] == 0)
