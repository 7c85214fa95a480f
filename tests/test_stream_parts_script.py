"""``scripts/stream_parts.py`` (docs/performance.md's breakdown of a streaming step) still runs
against the stream's internals it reaches into (``GRUStream._lane``, ``lane.chunk``) and prints
every line it promises. Timings are not checked: one round, numbers meaningless."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stream_parts.py"


def test_stream_parts_runs_and_reports_every_part():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for line in (
        "stream(x), 1 thread(s)",
        "stream(x), 2 thread(s)",
        "kernel call alone, 10-step chunks, 2 thread(s)",
        "two products, compiled loop, 4 KiB pages",
        "two products + a H=16 stream call between steps, 4 KiB pages",
        "the H=16 stream call alone",
    ):
        assert line in out, out
    assert "2 MiB pages" in out  # measured, or said to be unavailable
