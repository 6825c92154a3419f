"""The job-latency runbook names each planted latency cause with its remedy, says OK when jobs start in time and
NOT FOUND for a queue that does not exist; diagnosing changes nothing, and the one automatic fix (promoting overdue
delayed jobs) is FIXED only once a worker fetches them."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

import sbqueue
from sbqueue.inspection import Inspector
from sbqueue.inspection.latency import _read_events, measure
from sbqueue.workbench import latency_scenarios
from sbqueue.workbench.runbook import diagnose_latency
from tests.conftest import snapshot

#: the incidents wait seconds within a few seconds of planting; a healthy queue starts jobs in milliseconds
INCIDENT_MAX_WAIT_S = 0.3
HEALTHY_MAX_WAIT_S = 2.0  # generous: a loaded 2-core box delays a fetch now and then
SAMPLE_S = 1.0
WATCH = 2.0


def ok_job(job: Any) -> dict[str, bool]:
    return {"ok": True}


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def ghost(r: redis.Redis, redis_url: str, prefix: str) -> Iterator[Any]:
    """A connection named like a worker of queue 'late' that never fetches (a hung worker)."""
    client = redis.Redis.from_url(redis_url, single_connection_client=True)
    client.client_setname(sbqueue.Queue("late", r, prefix=prefix).keys.client_name("hung"))
    yield client
    client.close()


#: incident -> (cause, words the remedy must contain)
INCIDENTS = {
    "under_provisioned": ("workers saturated", ["add ≥", "raise concurrency to", "1 worker x concurrency 2"]),
    "slow_job_name": ("slow job name", ["'render-pdf'", "own queue"]),
    "priority_starvation": ("priority starvation", ["priority-10 jobs", "add capacity"]),
    "rate_limit_caps": ("rate limit caps throughput", ["set_global_rate_limit(", "per 1000 ms"]),
    "global_concurrency_caps": ("global concurrency caps throughput", ["set_global_concurrency(", "raise it to"]),
}


@pytest.mark.parametrize("scenario", sorted(INCIDENTS))
def test_each_planted_incident_is_named(r: redis.Redis, prefix: str, scenario: str) -> None:
    cause, remedy = INCIDENTS[scenario]
    with latency_scenarios.LATENCY_SCENARIOS[scenario](r, prefix, "q") as incident:
        assert incident.expected["cause"] == cause
        finding = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=INCIDENT_MAX_WAIT_S, sample_s=SAMPLE_S)
        assert (finding.cause, finding.outcome) == (cause, "ACTION NEEDED"), finding.verdict()
        headline = finding.verdict().splitlines()[0]
        assert headline.startswith("ACTION NEEDED: ")
        assert all(word in headline for word in remedy), headline
        assert not finding.plan["automatic"].any()  # nothing here is safe to do automatically
        checks = finding.checks.set_index("check")["result"]
        assert checks["wait times high"] and checks[cause]
        finding.apply(confirm=True)
        assert finding.applied == []
        finding.verify()
        assert finding.outcome == "ACTION NEEDED" and "did not hold" not in finding.verdict()
    # stopped: the backlog stays; diagnosing it is read-only (once the rate limiter's key has expired by itself)
    _wait_for(lambda: not r.exists(f"{prefix}:q:limiter"), 10, "the limiter key to expire")
    before = snapshot(r, prefix)
    stopped = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=INCIDENT_MAX_WAIT_S, sample_s=0.2)
    assert snapshot(r, prefix) == before
    assert stopped.cause == "no workers" and "start a worker" in stopped.actions_needed()[0]


def test_under_provisioned_remedy_uses_the_given_concurrency(r: redis.Redis, prefix: str) -> None:
    with latency_scenarios.under_provisioned(r, prefix, "q", rate=40, run_s=0.1, concurrency=2) as incident:
        finding = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=INCIDENT_MAX_WAIT_S, sample_s=SAMPLE_S,
                                   concurrency=2)  # fmt: skip
        assert finding.cause == "workers saturated", finding.verdict()
        detail = finding.plan.iloc[0]["detail"]
        assert "(estimated)" not in detail and "1 worker x concurrency 2 all busy" in detail
        m = finding.measurements
        assert m is not None and m.arrival_per_s > m.service_per_s  # arrivals outpace the two slots
        assert m.service_per_s <= incident.expected["service"] * 1.5


def test_healthy_queue_is_ok(r: redis.Redis, prefix: str) -> None:
    with latency_scenarios.healthy(r, prefix, "q"):
        finding = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=HEALTHY_MAX_WAIT_S, sample_s=SAMPLE_S)
        assert (finding.cause, finding.outcome) == ("wait times fine", "OK"), finding.verdict()
        assert finding.verdict().startswith("OK: jobs start within 2 s")
        finding.apply(confirm=True)
        finding.verify()
        assert finding.outcome == "OK"


def test_queue_that_does_not_exist(r: redis.Redis, prefix: str) -> None:
    sbqueue.Queue("real", r, prefix=prefix).add("x", {})
    finding = diagnose_latency("no-such-queue", r, prefix)
    assert finding.outcome == "NOT FOUND"
    assert "'no-such-queue' does not exist" in finding.verdict().splitlines()[0]
    assert "real" in (finding.not_found or "")
    assert diagnose_latency(None, r, prefix + "-typo").outcome == "NOT FOUND"


def test_no_queue_given_covers_every_queue(r: redis.Redis, prefix: str) -> None:
    sbqueue.Queue("a-backlog", r, prefix=prefix).add_bulk([{"name": "x", "data": {}} for _ in range(3)])
    sbqueue.Queue("b-empty", r, prefix=prefix).add("x", {}, delay=3_600_000)
    time.sleep(0.3)  # the backlog must be older than max_wait_s (a wall-clock fact, not a race)
    finding = diagnose_latency(None, r, prefix, max_wait_s=0.2, sample_s=0)
    assert [p.queue for p in finding.parts] == ["a-backlog", "b-empty"]
    assert [(p.cause, p.outcome) for p in finding.parts] == [("no workers", "ACTION NEEDED"),
                                                             ("wait times fine", "OK")]  # fmt: skip
    assert finding.outcome == "ACTION NEEDED" and finding.actions_needed()[0].startswith("a-backlog: start a worker")


def _overdue(r: redis.Redis, prefix: str, jobs: int = 5) -> sbqueue.Queue:
    q = sbqueue.Queue("late", r, prefix=prefix)
    q.add_bulk([{"name": "reminder", "data": {"n": i}, "opts": {"delay": 1}} for i in range(jobs)])
    time.sleep(0.5)  # overdue by more than max_wait_s: a wall-clock fact, not a race
    return q


def test_overdue_delayed_jobs_dry_run_then_promote_without_a_fetching_worker(r: redis.Redis, prefix: str,
                                                                           ghost: Any) -> None:  # fmt: skip
    q = _overdue(r, prefix)
    before = snapshot(r, prefix)
    finding = diagnose_latency("late", r, prefix, max_wait_s=0.2, sample_s=0.2, watch_s=WATCH)
    assert finding.cause == "delayed jobs promoted late", finding.verdict()
    assert list(finding.plan["action"]) == ["promote overdue delayed jobs"] and finding.plan["automatic"].all()
    assert finding.outcome == "ACTION NEEDED" and "dry_run" in finding.actions_needed()[0]
    assert "planned (dry run, nothing changed)" in finding.verdict()
    assert snapshot(r, prefix) == before  # diagnosing changes nothing
    assert finding.apply(confirm=True) == ["promoted 5 of 5 overdue delayed jobs"]
    assert q.get_job_counts("delayed", "waiting") == {"delayed": 0, "waiting": 5}
    with Inspector(r, prefix, progress=False) as insp:  # each promotion is in the audit trail, as the runbook's
        trail = insp.audit()
    assert list(trail["action"]) == ["promote"] * 5 and set(trail["source"]) == {"runbook:job-latency"}
    fixed, seen = finding.verify()  # the hung worker fetches nothing: not fixed
    assert not fixed and "no job was fetched" in seen
    assert finding.outcome == "ACTION NEEDED" and "check the workers" in finding.actions_needed()[0]


def test_overdue_delayed_jobs_promoted_and_fetched_is_fixed(r: redis.Redis, prefix: str, ghost: Any) -> None:
    q = _overdue(r, prefix)
    finding = diagnose_latency("late", r, prefix, max_wait_s=0.2, sample_s=0.2, watch_s=WATCH)
    assert finding.cause == "delayed jobs promoted late"
    finding.apply(confirm=True)
    worker = sbqueue.Worker("late", ok_job, connection=r, prefix=prefix, concurrency=2).start()
    try:
        fixed, seen = finding.verify()
        assert fixed, seen
        assert finding.outcome == "FIXED" and finding.verdict().startswith("FIXED: promoted 5 of 5")
        _wait_for(lambda: q.get_job_counts("completed")["completed"] == 5, 30, "the promoted jobs to complete")
    finally:
        worker.close()


def test_measurements_are_read_only_and_wait_from_due_time(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("m", r, prefix=prefix)
    q.add("now", {})
    q.add("later", {}, delay=400)
    worker = sbqueue.Worker("m", ok_job, connection=r, prefix=prefix, concurrency=2).start()
    try:
        _wait_for(lambda: q.get_job_counts("completed")["completed"] == 2, 30, "both jobs to complete")
    finally:
        worker.close()
    before = snapshot(r, prefix)
    with Inspector(r, prefix, progress=False) as insp:
        m = measure(insp._ctx, "m", window_s=60, sample_s=0)
    assert snapshot(r, prefix) == before
    assert (m.arrivals, m.completed, m.failed, m.rate_source) == (2, 2, 0, "events")
    assert m.metrics is not None and (m.metrics["completed"], m.metrics["failed"]) == (2, 0)  # the worker's metrics
    later = m.finished.set_index("name").loc["later"]
    assert later["runnable_ms"] - later["created_ms"] == 400  # its wait counts from its due time
    assert later["wait_s"] == pytest.approx((later["processed_ms"] - later["runnable_ms"]) / 1000)
    assert set(m.by_name()["name"]) == {"now", "later"}


def test_bad_options(r: redis.Redis, prefix: str) -> None:
    for kwargs in ({"window_s": 0}, {"max_wait_s": -1}, {"sample_s": 61}, {"concurrency": 0}, {"history": 3}):
        sbqueue.Queue("q", r, prefix=prefix).add("x", {})
        with pytest.raises(sbqueue.InvalidOptionError):
            diagnose_latency("q", r, prefix, **{"sample_s": 0, **kwargs})


class _RecordedHistory:
    """Stands in for :class:`sbqueue.History`: what `sbqueue record` kept of the window."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    def throughput(self, queue: str, since: Any = None) -> pd.DataFrame:
        self.asked.append((queue, since))
        return pd.DataFrame({"completed": [40, 2], "failed": [1, 0]})


def test_recorded_history_adds_its_counts(r: redis.Redis, prefix: str) -> None:
    sbqueue.Queue("q", r, prefix=prefix).add("x", {})
    history = _RecordedHistory()
    finding = diagnose_latency("q", r, prefix, sample_s=0, history=history)
    evidence = finding.checks.set_index("check").loc["recorded history", "evidence"]
    assert evidence == "history: 42 completed, 1 failed in the window"
    assert [q for q, _ in history.asked] == ["q"]


def test_without_an_events_stream_the_metrics_count(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("m", r, prefix=prefix)
    q.add_bulk([{"name": "x", "data": {"n": i}} for i in range(6)])
    worker = sbqueue.Worker("m", ok_job, connection=r, prefix=prefix, concurrency=2).start()
    try:
        _wait_for(lambda: q.get_job_counts("completed")["completed"] == 6, 30, "the jobs to complete")
    finally:
        worker.close()
    r.delete(f"{prefix}:m:events")  # as on a queue whose events are switched off (maxLenEvents 0)
    with Inspector(r, prefix, progress=False) as insp:
        m = measure(insp._ctx, "m", window_s=60, sample_s=0)
    assert (m.rate_source, m.completed, m.span_s) == ("metrics", 6, 60.0)
    assert m.arrival_per_s == pytest.approx(m.service_per_s)  # nothing waits: arrivals ~ completions


def test_readme_example_runs(r: redis.Redis, prefix: str, redis_url: str) -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("its planted incidents keep running") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    code = code.replace('prefix="demo"', f"connection={redis_url!r}, prefix={prefix!r}")
    assert code.count(prefix) == 2, code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README latency", "exec"), {"__name__": "readme"})  # our own README
    assert out.getvalue().startswith("ACTION NEEDED: add workers: arrival "), out.getvalue()


def test_waits_that_have_passed_are_named_as_such(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("q", r, prefix=prefix)
    q.add_bulk([{"name": "x", "data": {"n": i}} for i in range(5)])
    time.sleep(0.4)  # they wait longer than max_wait_s before any worker comes: a wall-clock fact
    worker = sbqueue.Worker("q", ok_job, connection=r, prefix=prefix, concurrency=5).start()
    try:
        _wait_for(lambda: q.get_job_counts("completed")["completed"] == 5, 30, "the jobs to complete")
    finally:
        worker.close()
    finding = diagnose_latency("q", r, prefix, window_s=60, max_wait_s=0.2, sample_s=0)
    assert (finding.cause, finding.outcome) == ("wait times were high earlier in the window", "ACTION NEEDED")
    assert "the incident has passed" in finding.actions_needed()[0]


def test_event_reads_are_capped_at_the_newest(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("m", r, prefix=prefix)
    q.add_bulk([{"name": "x", "data": {"n": i}} for i in range(30)])
    with Inspector(r, prefix, progress=False) as insp:
        events = _read_events(insp._ctx, f"{prefix}:m:events", 0, cap=25)
        whole = _read_events(insp._ctx, f"{prefix}:m:events", 0)
    assert sum(events.counts.values()) == 25 and sum(whole.counts.values()) == r.xlen(f"{prefix}:m:events")
    newest_25 = r.xrevrange(f"{prefix}:m:events", count=25)
    assert events.first_ms == int(newest_25[-1][0].split("-")[0])
