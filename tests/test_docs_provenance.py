"""Every table of results in README.md and docs/ names the command and the machine behind it
(issue 19), checked by ``scripts/check_provenance.py``; and that checker catches what it must."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "check_provenance", ROOT / "scripts" / "check_provenance.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cp = _load()


@pytest.fixture(scope="module")
def parser():
    p = cp.grukit_parser()
    assert p is not None
    return p


def _problems(tmp_path, text, parser, name="page.md"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return [p.what for p in cp.check_file(path, ROOT, parser)]


TABLE = "| case | ms |\n|---|---:|\n| N=1 | 1.84 |\n"


def test_the_repositorys_docs_pass(parser):
    files = cp.default_files(ROOT)
    assert ROOT / "README.md" in files and len(files) > 10
    problems = [str(p) for f in files for p in cp.check_file(f, ROOT, parser)]
    assert problems == []


def test_a_table_with_command_and_machine_passes(tmp_path, parser):
    text = "## Speed\n\n`grukit bench --case 1,200,128,256` on a 2-core AMD EPYC:\n\n" + TABLE
    assert _problems(tmp_path, text, parser) == []


def test_a_table_without_command_or_machine_is_reported(tmp_path, parser):
    assert _problems(tmp_path, "## Speed\n\nOn a 2-core AMD EPYC:\n\n" + TABLE, parser) == [
        "a table of results without the command that made it"
    ]
    assert _problems(tmp_path, "## Speed\n\n```bash\ngrukit bench\n```\n\n" + TABLE, parser) == [
        "a table of results without the machine it came from"
    ]


def test_the_caption_stops_at_headings(tmp_path, parser):
    # a command and a machine in another section do not count for this table
    text = "## A\n\n`grukit bench` on an Intel Xeon.\n\n## B\n\n" + TABLE + "\n## C\n\n`make bench`\n"
    assert len(_problems(tmp_path, text, parser)) == 2


def test_a_machine_in_the_preamble_or_section_intro_holds_below(tmp_path, parser):
    text = "# Page\n\nAll on an Intel Xeon.\n\n## A\n\n### a\n\n`grukit bench`\n\n" + TABLE
    assert _problems(tmp_path, text, parser) == []
    text = "# Page\n\n## A\n\nOn an AMD EPYC.\n\n### a\n\n`grukit bench`\n\n" + TABLE
    assert _problems(tmp_path, text, parser) == []


def test_commands_are_checked_against_the_repository(tmp_path, parser):
    text = (
        "`grukit bench --no-such-option 3` and `grukit nosuch` and `grukit speech train --out d`\n"
        "`make no-such-target` and `make test`\n"
        "```bash\n.venv/bin/python scripts/no_such_script.py --x\n"
        "grukit forecast train --data a.csv \\\n    --horizon 3 --bogus --out d\n```\n"
        "`.venv/bin/python scripts/stream_latency.py --quick`\n"
        "`grukit speech train --data DIR [--task classify|transcribe]` (a synopsis)\n"
    )
    problems = _problems(tmp_path, text, parser)
    assert len(problems) == 5, problems
    assert "`grukit bench` has no option --no-such-option" in problems
    assert any("has no command 'nosuch'" in p for p in problems)
    assert "make target 'no-such-target' is not in the Makefile" in problems
    assert "scripts/no_such_script.py does not exist" in problems
    assert "`grukit forecast train` has no option --bogus" in problems


def test_an_exempt_table_may_not_hold_timings(tmp_path, parser):
    ok = "<!-- not a measurement: options -->\n\n| option | default |\n|---|---|\n| hop | 20 ms |\n"
    assert _problems(tmp_path, ok, parser) == []
    bad = "<!-- not a measurement: options -->\n\n" + "| case | time |\n|---|---|\n| N=1 | 1.84 ms |\n"
    assert _problems(tmp_path, bad, parser) == ["marked 'not a measurement' but holds a timing"]


def test_tables_in_code_blocks_are_not_tables(tmp_path, parser):
    assert _problems(tmp_path, "```\n" + TABLE + "```\n", parser) == []


def test_generated_bench_tables_need_their_json(tmp_path, parser):
    md = "docs/bench/run.md"
    assert _problems(tmp_path, TABLE, parser, md) == [
        "a generated table without run.json naming its command and cpu"
    ]
    (tmp_path / "docs/bench/run.json").write_text(
        json.dumps({"command": "grukit bench", "environment": {"cpu": "AMD EPYC"}})
    )
    assert _problems(tmp_path, TABLE, parser, md) == []
