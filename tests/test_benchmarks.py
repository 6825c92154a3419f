"""The benchmark harness runs end to end (a smoke run: no timing assertion, ever), and the README's
Performance table is the published run (benchmarks/latest.json), not numbers typed by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "-n", "300", "--engines", "sbqueue,node,rq"]
    cmd += ["--slow-n", "200"]
    cmd += ["--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "sbqueue/node" in res.stdout
    saved = json.loads(next(tmp_path.glob("throughput-*.json")).read_text())
    rows = saved["rows"]
    assert {r["engine"] for r in rows} == {"sbqueue", "node", "rq"}
    assert all(r["median"] > 0 for r in rows)
    assert len(rows) == 12  # 4 operations x 3 engines
    rq_process = [r for r in rows if r["engine"] == "rq" and r["operation"].startswith("process")]
    assert [r["n"] for r in rq_process] == [200, 200] and all("one job at a time" in r["note"] for r in rq_process)
    assert "sbqueue/rq" in res.stdout
    machine = saved["machine"]
    assert machine["n"] == 300 and machine["repeats"] == 1 and machine["cores"] >= 1
    assert machine["redis"].count(".") == 2 and machine["node"].startswith("v")
    assert next(tmp_path.glob("throughput-*.csv")).read_text().startswith("operation,engine,median")


def _ratio_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_readme_performance_table_is_the_published_run() -> None:
    published = json.loads((ROOT / "benchmarks" / "latest.json").read_text())
    by = {(r["operation"], r["engine"]): r["median"] for r in published["rows"]}
    assert published["machine"]["n"] >= 20_000 and published["machine"]["repeats"] >= 3
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    labels = {"add one by one": "add one by one", "add_bulk, 1000 per batch": "add_bulk (1000/batch)",
              "process, 1 worker, concurrency 10": "process, c=10",
              "process, 1 worker, concurrency 100": "process, c=100"}  # fmt: skip
    seen = 0
    for line in section.splitlines():
        cells = _ratio_cells(line)
        if not line.startswith("|") or cells[0] not in labels:
            continue
        op = labels[cells[0]]
        ours, node, py, rq = (int(re.sub(r"[^\d]", "", c.split("/s")[0])) for c in cells[1:5])
        assert ours == round(by[(op, "sbqueue")]) and node == round(by[(op, "node")]), line
        assert py == round(by[(op, "bullmq-py")]) and rq == round(by[(op, "rq")]), line
        assert cells[5] == f"{by[(op, 'sbqueue')] / by[(op, 'node')]:.2f}\N{MULTIPLICATION SIGN}", line
        seen += 1
    assert seen == 4
    assert published["machine"]["date"][:10] in section  # the README says when the numbers were taken


def test_latency_benchmark_runs(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.bench_latency", "--quick", "-n", "15", "--out", str(tmp_path)]
    cmd += ["--engines", "sbqueue-threads,sbqueue-asyncio,sbqueue-processes,node"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "p99 vs node" in res.stdout
    rows = json.loads(next(tmp_path.glob("latency-*.json")).read_text())["rows"]
    assert [r["engine"] for r in rows] == ["sbqueue-threads", "sbqueue-asyncio", "sbqueue-processes", "node"]
    for r in rows:
        assert r["n"] == 15 and 0 < r["p50"] <= r["p90"] <= r["p99"] <= r["max"] < 30_000


def test_process_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.bench_processes", "--quick", "--cpu-n", "20", "--noop-n", "100"]
    res = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "processes/threads" in res.stdout
    saved = json.loads(next(tmp_path.glob("processes-*.json")).read_text())
    assert [row["scenario"] for row in saved["rows"]] == ["cpu", "noop"]
    assert all(row["threads_median"] > 0 and row["processes_median"] > 0 for row in saved["rows"])
