"""Check that every table of results in README.md and docs/ says where its numbers came from.

The project's rule (issue 19): every number in the README and the docs is traceable to a command
that anyone can rerun, and says which machine it came from. This makes it checkable, table by
table:

* A **table** (a Markdown pipe table) is a result unless the line right above it is the comment
  ``<!-- not a measurement: why -->`` (a table of options, file formats, equations, published
  numbers). Such a table may not hold a timing (a decimal number of ``us``, ``µs``, ``ms`` or
  ``s``), since that is always a measurement.
* A result needs, **near it** (from the heading above it down to the table, and the lines after
  it up to the next heading or ``AFTER`` lines), a **command** (a line of a fenced code block, or an
  inline code span, that starts with ``grukit``, ``make``, ``python``, ``torchrun``, ``.venv/bin/``
  or ``scripts/``) and a **machine** (a CPU named: AMD EPYC, Intel Xeon, ...). A machine named in
  the file's preamble (above its first ``##`` heading) holds for the whole file, one named in a
  section's introduction (between its ``##`` heading and its first subheading) for the section. A table generated
  by ``grukit bench`` (``docs/bench/NAME.md``) has both in ``NAME.json`` beside it.
* Every command found is **checked against the repository**: a ``grukit`` command line must parse
  with grukit's own argument parser (subcommands and options as they are today; synopses with
  ``[...]`` or ``...`` are skipped), a ``make`` target must exist in the Makefile, a
  ``scripts/*.py`` file must exist.

    python scripts/check_provenance.py        # prints each problem as FILE:LINE: what; exit 1
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AFTER = 15  # lines after a table that still count as its caption
EXEMPT = re.compile(r"^<!--\s*not a measurement\b.*-->\s*$")
MACHINE = re.compile(r"\b(EPYC|Xeon|Ryzen|Core i[3579]|Apple M\d|Graviton|Neoverse)\b")
TIMING = re.compile(r"\d\.\d+\s*(us|µs|ms|s)\b")  # a measured time (a setting has no decimals)
LAUNCHERS = ("grukit ", "make ", "python ", "python3 ", "torchrun ", ".venv/bin/", "scripts/")
HEADING = re.compile(r"^#{1,6}\s")
DIVIDER = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


@dataclass
class Problem:
    path: Path
    line: int  # 1-based
    what: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}: {self.what}"


@dataclass
class Table:
    start: int  # 0-based index of the header row
    end: int  # one past the last row
    exempt: bool


def default_files(root: Path = ROOT) -> list[Path]:
    return [
        root / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted((root / "docs" / "bench").glob("*.md")),
    ]


def tables(lines: list[str]) -> list[Table]:
    """The pipe tables of a Markdown file, outside fenced code blocks."""
    found = []
    fenced = False
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("```"):
            fenced = not fenced
        elif not fenced and s.startswith("|") and i + 1 < len(lines) and DIVIDER.match(lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            found.append(Table(i, j, k >= 0 and bool(EXEMPT.match(lines[k].strip()))))
            i = j
            continue
        i += 1
    return found


def commands(lines: list[str]) -> list[tuple[int, str]]:
    """(0-based line, command) for every command in ``lines``: the lines of fenced code blocks
    (``\\`` continuations joined, a ``$ `` prompt dropped) and inline code spans that start with
    a launcher."""
    found = []
    fenced = False
    pending = ""
    pending_at = 0
    prose = []  # the lines outside fenced blocks (fenced lines blanked), for inline spans
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("```"):
            fenced = not fenced
            pending = ""
            prose.append("")
            continue
        prose.append("" if fenced else line)
        if not fenced:
            continue
        if s.startswith("$ "):
            s = s[2:]
        if pending:
            s = pending + " " + s
        else:
            pending_at = i
        if s.endswith("\\"):
            pending = s[:-1].strip()
            continue
        pending = ""
        for part in re.split(r"&&|;|\|\|", s.split(" #", 1)[0]):
            part = part.strip()
            if _is_command(part):
                found.append((pending_at, part))
    text = "\n".join(prose)
    for m in re.finditer(r"`([^`]+)`", text):  # a span may wrap onto the next line
        span = " ".join(m.group(1).split())
        if _is_command(span):
            found.append((text.count("\n", 0, m.start()), span))
    return sorted(found)


def _is_command(s: str) -> bool:
    """Whether ``s`` starts with a launcher, after any ``NAME=value`` environment settings."""
    return re.sub(r"^([A-Z_][A-Z0-9_]*=\S*\s+)+", "", s).startswith(LAUNCHERS)


@functools.lru_cache(maxsize=None)
def _make_targets(root: Path) -> frozenset[str]:
    """The Makefile's targets (read once per root)."""
    text = (root / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.M))


def check_command(cmd: str, root: Path, parser: argparse.ArgumentParser | None) -> str | None:
    """What is wrong with ``cmd`` as a command of this repository, or None."""
    if any(tok in cmd for tok in ("[", "...", "…", "<", ">")):
        return None  # a synopsis or a redirection: its form is not a command line to check
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value prefixes
    if not words:
        return None
    head = words[0]
    if head.endswith(("/python", "/python3")) or head in ("python", "python3"):
        if len(words) > 2 and words[1] == "-m" and words[2] == "grukit":
            words = ["grukit", *words[3:]]
        else:
            script = next((w for w in words[1:] if w.endswith(".py")), None)
            if script is not None and script.startswith("scripts/") and not (root / script).is_file():
                return f"{script} does not exist"
            return None
    if head.endswith("/grukit") or head == "grukit":
        return None if parser is None else _check_grukit(words[1:], parser)
    if head == "make":
        targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        known = _make_targets(root)
        missing = [t for t in targets if t not in known]
        return f"make target {missing[0]!r} is not in the Makefile" if missing else None
    if head.startswith("scripts/") and head.endswith(".py") and not (root / head).is_file():
        return f"{head} does not exist"
    return None


def _check_grukit(words: list[str], parser: argparse.ArgumentParser) -> str | None:
    """Whether ``grukit WORDS`` names existing (sub)commands and options. Required arguments may
    be left out (prose names ``grukit convert`` without its files); values are not checked."""
    path = ["grukit"]
    options: set[str] = set()
    for i, w in enumerate(words):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        options |= {o for a in parser._actions for o in a.option_strings}
        if w.startswith("-"):
            name = w.split("=", 1)[0]
            if name.startswith("--") and name not in options:
                return f"`{' '.join(path)}` has no option {name}"
            continue
        if subs and not any(words[j].startswith("-") for j in range(i)):
            choices = subs[0].choices
            if w not in choices:
                return f"`{' '.join(path)}` has no command {w!r} (it has {', '.join(choices)})"
            parser = choices[w]
            path.append(w)
            options = set()
    return None


def _window(lines: list[str], t: Table) -> list[str]:
    """The table's caption: from the heading above it to the table, and after it up to the next
    heading or ``AFTER`` lines."""
    i = t.start
    while i > 0 and not HEADING.match(lines[i - 1]):
        i -= 1
    j = t.end
    while j < min(len(lines), t.end + AFTER) and not HEADING.match(lines[j]):
        j += 1
    return lines[i : t.start] + lines[t.end : j]


def _intro(lines: list[str], t: Table) -> list[str]:
    """The text between the ``##`` heading of the table's section and the section's first
    subheading: a machine named there holds for the whole section."""
    a = t.start
    while a >= 0 and not lines[a].startswith("## "):
        a -= 1
    if a < 0:
        return []
    b = a + 1
    while b < len(lines) and not HEADING.match(lines[b]):
        b += 1
    return lines[a:b]


def check_file(path: Path, root: Path = ROOT, parser: argparse.ArgumentParser | None = None) -> list[Problem]:
    lines = path.read_text(encoding="utf-8").splitlines()
    problems = []
    for at, cmd in commands(lines):
        why = check_command(cmd, root, parser)
        if why:
            problems.append(Problem(path, at + 1, why))
    if path.parent.name == "bench" and path.parent.parent.name == "docs":
        meta = path.with_suffix(".json")
        try:
            data = json.loads(meta.read_text())
            ok = bool(data.get("command")) and bool(data.get("environment", {}).get("cpu"))
        except (OSError, ValueError, AttributeError):
            ok = False
        if tables(lines) and not ok:
            problems.append(
                Problem(path, 1, f"a generated table without {meta.name} naming its command and cpu")
            )
        return problems
    first_h2 = next((i for i, s in enumerate(lines) if s.startswith("## ")), len(lines))
    preamble_machine = any(MACHINE.search(s) for s in lines[:first_h2])
    for t in tables(lines):
        body = lines[t.start : t.end]
        if t.exempt:
            timed = [s for s in body[2:] if TIMING.search(s)]
            if timed:
                problems.append(Problem(path, t.start + 1, "marked 'not a measurement' but holds a timing"))
            continue
        near = _window(lines, t)
        if not commands(near):
            problems.append(Problem(path, t.start + 1, "a table of results without the command that made it"))
        if not (preamble_machine or any(MACHINE.search(s) for s in near + body + _intro(lines, t))):
            problems.append(Problem(path, t.start + 1, "a table of results without the machine it came from"))
    return problems


def grukit_parser() -> argparse.ArgumentParser | None:
    try:
        from grukit.cli.main import build_parser
    except ImportError:
        return None
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md, docs/)")
    args = ap.parse_args(argv)
    parser = grukit_parser()
    files = args.files or default_files()
    problems = [p for f in files for p in check_file(f.resolve(), ROOT, parser)]
    for p in problems:
        print(p)
    n_tables = sum(len(tables(f.read_text(encoding="utf-8").splitlines())) for f in files)
    print(f"{len(files)} files, {n_tables} tables: {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
