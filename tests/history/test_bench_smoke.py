"""The history benchmark runs end to end (a smoke run with small numbers; no timing assertion)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_history_benchmark_runs() -> None:
    cmd = [sys.executable, "-m", "benchmarks.bench_history", "--recorded", "2000", "--events", "24000"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [line for line in res.stdout.splitlines() if " | " in line]
    assert len(lines) == 5  # header + 4 measurements, each with a figure and its target
    assert "events/s" in lines[1] and "MB" in lines[2] and lines[3].rstrip().endswith("<= 1 s")
    assert "one hour" in lines[3] and "over a day" in lines[4]
