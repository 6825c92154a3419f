"""Runbooks executed by papermill against planted incidents: the verdict names the cause, dry runs change
nothing, and with ``dry_run=False`` Redis is fixed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import papermill
import pytest
import redis

import sbqueue
from sbqueue import embedded, reports, scenarios
from sbqueue._core import audit as audit_record
from tests.conftest import snapshot
from tests.processors import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.notebook

PARAMETERS = {
    "stuck-jobs": ["redis_url", "prefix", "queue", "dry_run", "watch_s"],
    "stalled-jobs": ["redis_url", "prefix", "queue", "dry_run", "mode", "force", "watch_s"],
    "failed-jobs": [
        "redis_url",
        "prefix",
        "queue",
        "dry_run",
        "signature",
        "name",
        "since",
        "action",
        "retry_permanent",
        "watch_s",
        "dead_letter_queue",
        "replay_name",
    ],
    "redis-memory": ["redis_url", "prefix", "queue", "dry_run", "max_age_hours", "top"],
    "redis-health": ["redis_url", "prefix", "queue", "dry_run", "window_s"],
    "queue-report": ["redis_url", "prefix", "queue", "window_min", "history", "history_hours"],
}


@pytest.fixture(autouse=True)
def _url_in_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # kernels find the server through the environment: no URL (or password) is written into a notebook
    monkeypatch.setenv("SBQUEUE_REDIS_URL", redis_url)


def run(tmp_path: Path, runbook: str, **params: Any) -> str:
    out = reports.run(runbook, params, output=tmp_path / f"{runbook}-{time.monotonic_ns()}.ipynb")
    return reports.verdict_of(out)


def assert_dry_run(r: redis.Redis, prefix: str, before: dict[str, Any]) -> None:
    """Nothing of the queues changed; the only write is the audit trail's record of the dry run (mode dry-run)."""
    trail_key = audit_record.key(prefix)
    after = snapshot(r, prefix)
    recorded = len(before.get(trail_key, ("stream", []))[1] or [])  # the trail only grows during a test
    assert {k: v for k, v in after.items() if k != trail_key} == {k: v for k, v in before.items() if k != trail_key}
    added = [fields for _entry_id, fields in r.xrange(trail_key)][recorded:]
    assert all(fields["mode"] == "dry-run" for fields in added), added


def test_parameters_are_pinned() -> None:
    for runbook, names in PARAMETERS.items():
        found = papermill.inspect_notebook(str(ROOT / "sbqueue" / "workbench" / "runbooks" / f"{runbook}.ipynb"))
        assert list(found) == names, runbook
        assert found["redis_url"]["default"] == "None"
        if "dry_run" in found:
            assert found["dry_run"]["default"] == "True"  # destructive steps are opt-in
        assert all(p["help"] for p in found.values()), f"{runbook}: every parameter has a comment"


def test_notebooks_are_built_and_stripped() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "build_notebooks.py"), "--check"],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout
    for path in [*ROOT.glob("sbqueue/workbench/runbooks/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")]:
        nb = json.loads(path.read_text())
        assert not any(c.get("outputs") for c in nb["cells"]), f"{path.name} is committed with outputs"
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert "import redis" not in code and "redis.Redis" not in code, f"{path.name} uses raw redis"


def test_stuck_paused_found_and_fixed(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "paused-q", jobs=5)
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "stuck-jobs", prefix=prefix, queue="paused-q")
    assert "paused-q': paused" in verdict and "dry run" in verdict
    assert_dry_run(r, prefix, before)  # a dry run changes nothing (it only records itself in the audit trail)
    assert [e["action"] for _i, e in r.xrange(audit_record.key(prefix))] == ["resume"]  # what it would have done
    verdict = run(tmp_path, "stuck-jobs", prefix=prefix, queue="paused-q", dry_run=False)
    # resumed, but no worker is connected: not fixed, a human must start one
    assert verdict.startswith("ACTION NEEDED: start a worker") and "done: resumed paused-q" in verdict
    assert "verified: NOT fixed" in verdict
    assert not sbqueue.Queue("paused-q", r, prefix=prefix).is_paused()


def test_missing_queue_is_not_found(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "there", jobs=1)
    for name in ["stuck-jobs", "stalled-jobs", "failed-jobs", "redis-memory"]:
        verdict = run(tmp_path, name, prefix=prefix, queue="no-such-queue")
        assert verdict.startswith("NOT FOUND: queue 'no-such-queue' does not exist"), verdict
        assert "there" in verdict.splitlines()[0]
    verdict = run(tmp_path, "stuck-jobs", prefix=prefix + "x")  # no queue given, wrong prefix
    assert verdict.startswith(f"NOT FOUND: no queue exists under prefix '{prefix}x'") and prefix in verdict


def test_no_queue_runs_over_every_queue(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "one", jobs=2)
    scenarios.delayed_pileup(r, prefix, "two", jobs=2)
    verdict = run(tmp_path, "stuck-jobs", prefix=prefix)
    assert verdict.startswith("ACTION NEEDED: one: ")
    assert "queue 'one': paused" in verdict and "queue 'two': delayed not due" in verdict


@pytest.mark.parametrize(
    ("scenario", "cause"),
    [("stuck_no_workers", "no workers"), ("rate_limited", "rate limited"), ("delayed_pileup", "delayed not due")],
)
def test_stuck_names_the_cause(tmp_path: Path, r: redis.Redis, prefix: str, scenario: str, cause: str) -> None:
    scenarios.SCENARIOS[scenario](r, prefix, "q", jobs=6)
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "stuck-jobs", prefix=prefix, queue="q")
    assert f"queue 'q': {cause}" in verdict
    assert_dry_run(r, prefix, before)


def test_stalled_found_and_requeued(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    planted = scenarios.stalled(r, prefix, "st", jobs=2, lock_duration=800)
    time.sleep(1.0)  # the dead worker's locks expire
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "stalled-jobs", prefix=prefix, queue="st")
    assert "stalled jobs" in verdict and "2 active jobs have lost their worker" in verdict
    assert_dry_run(r, prefix, before)
    verdict = run(tmp_path, "stalled-jobs", prefix=prefix, queue="st", dry_run=False, watch_s=1.0)
    assert verdict.startswith("ACTION NEEDED: start a worker"), verdict  # requeued, but nobody fetches them
    q = sbqueue.Queue("st", r, prefix=prefix)
    assert q.get_job_ids("active") == []
    assert sorted(q.get_job_ids("waiting")) == sorted(planted.job_ids)
    assert all(q.get_job(i).stalled_count == 1 for i in planted.job_ids)


def test_failed_signature_retried(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.failing(r, prefix, "f", jobs=40)
    q = sbqueue.Queue("f", r, prefix=prefix)
    chosen = [j.id for j in q.get_failed() if "invalid email" in (j.failed_reason or "")]
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "failed-jobs", prefix=prefix, queue="f", signature="invalid email")
    assert "failure signatures" in verdict and "invalid email" in verdict
    assert verdict.startswith("ACTION NEEDED: fix the cause: permanent failure")
    assert_dry_run(r, prefix, before)
    verdict = run(tmp_path, "failed-jobs", prefix=prefix, queue="f", signature="invalid email", dry_run=False)
    assert verdict.startswith("ACTION NEEDED: fix the cause") and "done:" not in verdict
    assert_dry_run(r, prefix, before)  # a permanent failure is not retried by default
    verdict = run(tmp_path, "failed-jobs", prefix=prefix, queue="f", signature="invalid email", dry_run=False,
                  retry_permanent=True, watch_s=1.0)  # fmt: skip
    assert verdict.startswith("ACTION NEEDED: start a worker"), verdict  # retried, waiting to fail again
    failed = set(q.get_job_ids("failed"))
    assert chosen and not failed & set(chosen)
    assert all(q.get_job_state(i) == "waiting" for i in chosen)
    assert failed  # the other signatures were left alone


def test_memory_cleaned(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.memory_bloat(r, prefix, "bloat", jobs=20, payload_bytes=2000)
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "redis-memory", prefix=prefix, queue="bloat", max_age_hours=0.0)
    assert "old finished jobs kept" in verdict
    assert_dry_run(r, prefix, before)
    verdict = run(tmp_path, "redis-memory", prefix=prefix, queue="bloat", max_age_hours=0.0, dry_run=False)
    assert "cleaned 20 completed jobs of bloat" in verdict and "verified: fixed" in verdict
    assert verdict.startswith("FIXED: cleaned 20 completed jobs of bloat")
    assert sbqueue.Queue("bloat", r, prefix=prefix).get_job_counts("completed") == {"completed": 0}


def test_health_fixes_an_evicting_policy(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    if not embedded.started_by_sbqueue(r):
        with pytest.raises(sbqueue.ConfigurationError):
            scenarios.evicting_policy(r, prefix, "ev")  # never changes a server sbqueue did not start
        verdict = run(tmp_path, "redis-health", prefix=prefix, window_s=0.2)
        assert "[redis-health]" in verdict
        return
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        scenarios.evicting_policy(r, prefix, "ev")
        verdict = run(tmp_path, "redis-health", prefix=prefix, window_s=0.2)
        assert "evicting maxmemory-policy (allkeys-lru)" in verdict
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"  # dry run
        verdict = run(tmp_path, "redis-health", prefix=prefix, window_s=0.2, dry_run=False)
        assert "verified: fixed" in verdict
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        r.config_set("maxmemory-policy", before)


def test_queue_report_renders_html(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    scenarios.failing(r, prefix, "rep", jobs=20)
    out = reports.run("queue-report", {"prefix": prefix, "queue": "rep"}, output=tmp_path / "rep.ipynb",
                      html_path=tmp_path / "rep.html")  # fmt: skip
    page = (tmp_path / "rep.html").read_text()
    assert "Queue report" in page and "rep" in page and "image/svg+xml" in page  # static charts, offline
    assert out.exists()


def test_unknown_parameter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sbqueue.InvalidOptionError, match="has no parameter"):
        reports.run("stuck-jobs", {"queeue": "x"}, output=tmp_path / "x.ipynb")
    with pytest.raises(sbqueue.InvalidOptionError, match="unknown runbook"):
        reports.find_runbook("no-such-runbook")


def test_failed_jobs_replays_dead_letters(tmp_path: Path, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("src", r, prefix=prefix)
    ids = [q.add("charge", {"n": i}, remove_on_fail=True).id for i in range(3)]
    worker = sbqueue.Worker("src", lambda job: 1 / 0, r, prefix, dead_letter_queue="src-dlq").start()
    try:
        wait_for(lambda: r.llen(f"{prefix}:src-dlq:wait") == 3, what="3 letters")
    finally:
        worker.close(timeout=2)
    before = snapshot(r, prefix)
    verdict = run(tmp_path, "failed-jobs", prefix=prefix, queue="src", dead_letter_queue="src-dlq")
    assert verdict.startswith("ACTION NEEDED: src-dlq: apply the plan (replay dead letters)"), verdict
    assert_dry_run(r, prefix, before)
    verdict = run(tmp_path, "failed-jobs", prefix=prefix, queue="src", dead_letter_queue="src-dlq", dry_run=False)
    assert verdict.startswith("FIXED"), verdict
    assert "replayed 3 of 3 letters" in verdict
    assert r.llen(f"{prefix}:src-dlq:wait") == 0 and r.llen(f"{prefix}:src:wait") == 3
    assert sorted(
        json.loads(r.hget(f"{prefix}:src:{i}", "data"))["n"] for i in r.lrange(f"{prefix}:src:wait", 0, -1)
    ) == [0, 1, 2]
    assert ids
