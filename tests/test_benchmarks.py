"""The benchmark harness runs end to end (a smoke run: no timing assertion, ever)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "-n", "300", "--engines", "sbqueue,node"]
    cmd += ["--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "sbqueue/node" in res.stdout
    rows = json.loads(next(tmp_path.glob("throughput-*.json")).read_text())
    assert {r["engine"] for r in rows} == {"sbqueue", "node"}
    assert all(r["median"] > 0 for r in rows)
    assert len(rows) == 8  # 4 operations x 2 engines
