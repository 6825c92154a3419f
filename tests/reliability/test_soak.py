"""The soak benchmark (:mod:`benchmarks.soak`) in its short CI form: jobs through one worker process; the
worker's RSS grows at most 10 % after the warm-up and its open files and Redis connections stay constant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--jobs", "10000", "--url", redis_url,
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    print(res.stdout[-600:])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    verdict = json.loads(out.read_text())["verdict"]
    assert verdict["ok"] and verdict["rss_growth"] <= 0.10
    assert len(verdict["fds"]) == 1 and len(verdict["connections"]) == 1 and verdict["connections"][0] >= 1
    assert "SOAK jobs=10000" in res.stdout and res.stdout.rstrip().endswith("OK")


def test_short_soak_through_a_process_pool(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--jobs", "5000", "--url", redis_url,
                          "--processes", "2", "--concurrency", "4", "--samples", "10", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    print(res.stdout[-800:])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    result = json.loads(out.read_text())
    verdict = result["verdict"]
    assert verdict["ok"] and verdict["processes"] == 2 and verdict["children"] == [2]
    assert verdict["children_replaced"] == 0 and verdict["children_rss_growth"] <= 0.10
    assert all(row["children"] == 2 and row["children_rss_kib"] > 0 for row in result["rows"])
    assert "children_replaced=0" in res.stdout and res.stdout.rstrip().endswith("OK")
