"""The job-latency runbook notebook, executed by papermill (``sbqueue report job-latency``): its parameters are
pinned, it names a live latency cause, a dry run changes nothing, and a missing queue is NOT FOUND."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import papermill
import pytest
import redis

import sbqueue
from sbqueue import reports
from sbqueue.workbench import latency_scenarios
from tests.conftest import snapshot

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.notebook
PARAMETERS = ["redis_url", "prefix", "queue", "dry_run", "window_s", "max_wait_s", "sample_s", "concurrency",
              "watch_s"]  # fmt: skip


@pytest.fixture(autouse=True)
def _url_in_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBQUEUE_REDIS_URL", redis_url)  # kernels find the server through the environment


def run(tmp_path: Path, **params: Any) -> str:
    out = reports.run("job-latency", params, output=tmp_path / f"job-latency-{time.monotonic_ns()}.ipynb")
    return reports.verdict_of(out)


def test_parameters_are_pinned() -> None:
    found = papermill.inspect_notebook(str(ROOT / "sbqueue" / "workbench" / "runbooks" / "job-latency.ipynb"))
    assert list(found) == PARAMETERS
    assert found["redis_url"]["default"] == "None" and found["dry_run"]["default"] == "True"
    assert all(p["help"] for p in found.values())
    assert reports.parse_parameters("job-latency", [("window_s", "5m"), ("concurrency", "10")]) == {
        "window_s": 300.0, "concurrency": 10}  # fmt: skip


def test_report_names_a_live_cause(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    with latency_scenarios.under_provisioned(r, prefix, "q"):
        verdict = run(tmp_path, prefix=prefix, queue="q", window_s=60.0, max_wait_s=0.3, sample_s=1.0)
    assert verdict.startswith("ACTION NEEDED: add workers: arrival "), verdict
    assert "[job-latency] queue 'q': workers saturated" in verdict


def test_report_dry_run_changes_nothing_and_missing_queue(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("late", r, prefix=prefix)
    q.add_bulk([{"name": "reminder", "data": {"n": i}, "opts": {"delay": 1}} for i in range(3)])
    time.sleep(0.4)  # overdue by more than max_wait_s: a wall-clock fact, not a race
    before = snapshot(r, prefix)
    verdict = run(tmp_path, prefix=prefix, queue="late", max_wait_s=0.2, sample_s=0.2)
    assert verdict.startswith("ACTION NEEDED: start a worker"), verdict  # nothing promotes them: no worker
    assert snapshot(r, prefix) == before
    verdict = run(tmp_path, prefix=prefix, queue="no-such-queue", sample_s=0.0)
    assert verdict.startswith("NOT FOUND: queue 'no-such-queue' does not exist") and "late" in verdict.splitlines()[0]
