"""Truthful outcomes: every runbook ends in OK, FIXED, ACTION NEEDED or NOT FOUND — FIXED only when the cause is
gone and jobs are actually fetched; a queue or prefix that does not exist is NOT FOUND (never OK)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import embedded, runbook, scenarios
from tests.conftest import snapshot

WATCH = 2.0


def ok_job(job: Any) -> dict[str, bool]:
    return {"ok": True}


def bad_data(job: Any) -> None:
    raise ValueError(f"invalid email address: user{job.data.get('n')}@example.invalid")


@pytest.fixture
def worker_for(r: redis.Redis, prefix: str) -> Iterator[Any]:
    started: list[sbqueue.Worker] = []

    def start(queue: str, fn: Any = ok_job) -> sbqueue.Worker:
        w = sbqueue.Worker(queue, fn, connection=r, prefix=prefix, concurrency=2).start()
        started.append(w)
        deadline = time.monotonic() + 10
        while not sbqueue.Queue(queue, r, prefix=prefix).get_workers():
            assert time.monotonic() < deadline, "the worker never connected"
            time.sleep(0.05)
        return w

    yield start
    for w in started:
        w.close()


def test_outcome_words_are_fixed() -> None:
    assert runbook.OUTCOMES == ("OK", "FIXED", "ACTION NEEDED", "NOT FOUND")


def test_resumed_queue_without_a_worker_is_not_fixed(r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "p", jobs=5)
    before = snapshot(r, prefix)
    finding = runbook.diagnose_stuck("p", r, prefix, watch_s=WATCH)
    assert finding.cause == "paused" and finding.outcome == "ACTION NEEDED"
    assert "dry_run" in finding.actions_needed()[0]  # a dry run: apply the plan, and start a worker
    assert any("start a worker" in a for a in finding.actions_needed())
    assert snapshot(r, prefix) == before  # diagnosing changes nothing
    finding.apply(confirm=True)
    fixed, seen = finding.verify()
    assert not fixed and "no worker" in seen
    assert finding.outcome == "ACTION NEEDED"
    assert finding.verdict().startswith("ACTION NEEDED: ") and "start a worker" in finding.verdict().splitlines()[0]
    assert not sbqueue.Queue("p", r, prefix=prefix).is_paused()


def test_resumed_queue_with_a_worker_is_fixed(r: redis.Redis, prefix: str, worker_for: Any) -> None:
    scenarios.paused(r, prefix, "p", jobs=5)
    worker_for("p")  # connected, but the queue is paused: nothing moves
    finding = runbook.diagnose_stuck("p", r, prefix, watch_s=WATCH)
    assert finding.cause == "paused"
    finding.apply(confirm=True)
    fixed, seen = finding.verify()
    assert fixed and "fetched" in seen, seen
    assert finding.outcome == "FIXED"
    assert finding.verdict().startswith("FIXED: resumed p")


@pytest.mark.parametrize(
    ("scenario", "cause", "outcome"),
    [("stuck_no_workers", "no workers", "ACTION NEEDED"), ("rate_limited", "rate limited", "ACTION NEEDED"),
     ("delayed_pileup", "delayed not due", "OK")],
)  # fmt: skip
def test_stuck_causes_and_outcomes(r: redis.Redis, prefix: str, scenario: str, cause: str, outcome: str) -> None:
    scenarios.SCENARIOS[scenario](r, prefix, "q", jobs=6)
    finding = runbook.diagnose_stuck("q", r, prefix)
    assert (finding.cause, finding.outcome) == (cause, outcome)
    assert finding.verdict().startswith(f"{outcome}: ")
    finding.apply(confirm=True)  # nothing automatic to apply: the verdict stays the diagnosis
    finding.verify()
    assert finding.outcome == outcome and "did not hold" not in finding.verdict()
    if cause == "no workers":
        assert finding.verdict().startswith("ACTION NEEDED: start a worker: sbqueue worker q MODULE:FUNCTION")


def test_queue_that_does_not_exist(r: redis.Redis, prefix: str) -> None:
    scenarios.stuck_no_workers(r, prefix, "real", jobs=2)
    for finding in [runbook.diagnose_stuck("no-such-queue", r, prefix),
                    runbook.diagnose_stalled("no-such-queue", r, prefix),
                    runbook.diagnose_failed("no-such-queue", r, prefix),
                    runbook.diagnose_memory(r, prefix, queue="no-such-queue")]:  # fmt: skip
        assert finding.outcome == "NOT FOUND", finding.runbook
        assert "'no-such-queue' does not exist" in finding.verdict().splitlines()[0]
        assert "queues under" in finding.not_found and "real" in finding.not_found  # what does exist
        assert prefix in finding.not_found  # and the prefixes on the server


def test_wrong_prefix_lists_the_prefixes(r: redis.Redis, prefix: str) -> None:
    scenarios.stuck_no_workers(r, prefix, "real", jobs=2)
    finding = runbook.diagnose_stuck("real", r, prefix + "-typo")
    assert finding.outcome == "NOT FOUND"
    assert f"no queue under '{prefix}-typo'" in finding.not_found and prefix in finding.not_found
    everything = runbook.diagnose_failed(None, r, prefix + "-typo")  # no queue given: every queue of no prefix
    assert everything.outcome == "NOT FOUND" and f"no queue exists under prefix '{prefix}-typo'" in everything.verdict()


def test_empty_server(tmp_path: Path) -> None:
    info = embedded.ensure_server(tmp_path / "empty")
    try:
        finding = runbook.diagnose_stuck(None, info.url, "bull")
        assert finding.outcome == "NOT FOUND"
        assert "no queues on this server at all" in finding.verdict().splitlines()[0]
    finally:
        embedded.stop(tmp_path / "empty")


def test_no_queue_given_covers_every_queue(r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "a-paused", jobs=3)
    scenarios.delayed_pileup(r, prefix, "b-delayed", jobs=3)
    finding = runbook.diagnose_stuck(None, r, prefix)
    assert [p.queue for p in finding.parts] == ["a-paused", "b-delayed"]
    assert [p.outcome for p in finding.parts] == ["ACTION NEEDED", "OK"]
    assert finding.outcome == "ACTION NEEDED"
    assert finding.actions_needed()[0].startswith("a-paused: ")
    assert "[stuck-jobs] queue 'a-paused': paused" in finding.verdict()


def test_nothing_stalled_is_ok(r: redis.Redis, prefix: str) -> None:
    scenarios.stuck_no_workers(r, prefix, "calm", jobs=2)
    finding = runbook.diagnose_stalled("calm", r, prefix)
    assert finding.outcome == "OK" and finding.cause == "no stalled jobs"
    finding.apply(confirm=True)
    finding.verify()
    assert finding.outcome == "OK" and "fixed" not in finding.verdict()


def test_stalled_requeued_without_a_worker_needs_one(r: redis.Redis, prefix: str) -> None:
    scenarios.stalled(r, prefix, "st", jobs=2, lock_duration=800)
    time.sleep(1.0)
    finding = runbook.diagnose_stalled("st", r, prefix, watch_s=WATCH)
    assert finding.cause == "stalled jobs" and finding.outcome == "ACTION NEEDED"
    finding.apply(confirm=True)
    fixed, seen = finding.verify()
    assert not fixed and "0 of the 2 targeted jobs still active" in seen
    assert finding.outcome == "ACTION NEEDED" and "start a worker" in finding.actions_needed()[0]


def test_failures_are_classified() -> None:
    assert runbook.classify_failure("TimeoutError: upstream payment API timed out after 30 s") == "transient"
    assert runbook.classify_failure("RuntimeError: HTTP 429 Too Many Requests") == "transient"
    assert runbook.classify_failure("ConnectionError: connection reset by peer") == "transient"
    assert runbook.classify_failure("ValueError: invalid email address") == "permanent"
    assert runbook.classify_failure("KeyError: 'customer_id'") == "permanent"
    assert runbook.classify_failure("RuntimeError: upstream timed out", every_attempt=True) == "permanent"


def test_permanent_failures_are_not_retried_by_default(r: redis.Redis, prefix: str) -> None:
    scenarios.failing(r, prefix, "f", jobs=40)
    q = sbqueue.Queue("f", r, prefix=prefix)
    before = snapshot(r, prefix)
    finding = runbook.diagnose_failed("f", r, prefix, signature="invalid email")
    assert not finding.plan["automatic"].any()
    assert finding.outcome == "ACTION NEEDED"
    why = finding.plan.iloc[0]["detail"]
    assert "permanent" in why and "retrying would fail again" in why
    finding.apply(confirm=True)
    assert snapshot(r, prefix) == before  # nothing was retried
    finding.verify()
    assert finding.outcome == "ACTION NEEDED"
    nothing = runbook.diagnose_failed("f", r, prefix, signature="no such error")
    assert nothing.outcome == "ACTION NEEDED" and "choose a signature" in nothing.actions_needed()[0]
    # the default plan retries the transient signature (HTTP 429) only
    default = runbook.diagnose_failed("f", r, prefix)
    auto = default.plan[default.plan["automatic"]]
    n429 = sum(1 for j in q.get_failed() if "429" in (j.failed_reason or ""))
    assert list(auto["action"]) == ["retry"] and int(auto["jobs"].iloc[0]) == n429 > 0
    assert set(default.plan[~default.plan["automatic"]]["action"]) == {"fix the cause"}
    assert snapshot(r, prefix) == before


def test_retrying_bad_data_is_never_fixed(r: redis.Redis, prefix: str, worker_for: Any) -> None:
    scenarios.failing(r, prefix, "f", jobs=40)
    finding = runbook.diagnose_failed("f", r, prefix, signature="invalid email", retry_permanent=True, watch_s=WATCH)
    assert finding.plan["automatic"].all()
    finding.apply(confirm=True)
    fixed, seen = finding.verify()  # no worker: they are merely waiting to fail again
    assert not fixed and finding.outcome == "ACTION NEEDED" and "no worker" in seen
    scenarios.failing(r, prefix, "g", jobs=40)
    worker_for("g", bad_data)  # a worker that fails them again, the same way
    again = runbook.diagnose_failed("g", r, prefix, signature="invalid email", retry_permanent=True, watch_s=WATCH)
    again.apply(confirm=True)
    fixed, seen = again.verify()
    assert not fixed and "failed again" in seen, seen
    assert again.outcome == "ACTION NEEDED" and "fix the cause" in again.actions_needed()[0]


def test_retrying_transient_failures_with_a_worker_is_fixed(r: redis.Redis, prefix: str, worker_for: Any) -> None:
    scenarios.failing(r, prefix, "f", jobs=40)
    finding = runbook.diagnose_failed("f", r, prefix, signature="Too Many Requests", watch_s=WATCH)
    worker_for("f")
    finding.apply(confirm=True)
    fixed, seen = finding.verify()
    assert fixed, seen
    assert finding.outcome == "FIXED" and finding.verdict().startswith("FIXED: retry ")


def test_memory_nothing_to_clean_is_ok(r: redis.Redis, prefix: str) -> None:
    scenarios.stuck_no_workers(r, prefix, "fresh", jobs=2)
    finding = runbook.diagnose_memory(r, prefix, queue="fresh")
    assert finding.outcome == "OK"
    bloat = scenarios.memory_bloat(r, prefix, "bloat", jobs=5, payload_bytes=100)
    finding = runbook.diagnose_memory(r, prefix, queue=bloat.queue, max_age=__import__("datetime").timedelta(0))
    assert finding.outcome == "ACTION NEEDED"
    finding.apply(confirm=True)
    finding.verify()
    assert finding.outcome == "FIXED"


#: scenario -> the outcome (and cause) of each runbook on its queue; diagnosing is read-only
MATRIX = {
    "stuck_no_workers": {"stuck": ("ACTION NEEDED", "no workers"), "stalled": ("OK", "no stalled jobs"),
                         "failed": ("OK", "no failed jobs")},
    "paused": {"stuck": ("ACTION NEEDED", "paused"), "stalled": ("OK", "no stalled jobs"),
               "failed": ("OK", "no failed jobs")},
    "rate_limited": {"stuck": ("ACTION NEEDED", "rate limited"), "stalled": ("OK", "no stalled jobs"),
                     "failed": ("OK", "no failed jobs")},
    "delayed_pileup": {"stuck": ("OK", "delayed not due"), "stalled": ("OK", "no stalled jobs"),
                       "failed": ("OK", "no failed jobs")},
    "failing": {"stuck": ("OK", "delayed not due"), "stalled": ("OK", "no stalled jobs"),
                "failed": ("ACTION NEEDED", "3 failure signatures")},
    "stalled": {"stuck": ("OK", "nothing waiting"), "stalled": ("ACTION NEEDED", "stalled jobs"),
                "failed": ("OK", "no failed jobs")},
    "memory_bloat": {"stuck": ("OK", "nothing waiting"), "stalled": ("OK", "no stalled jobs"),
                     "failed": ("OK", "no failed jobs")},
}  # fmt: skip


@pytest.mark.parametrize("scenario", sorted(MATRIX))
def test_every_runbook_on_every_planted_incident(r: redis.Redis, prefix: str, scenario: str) -> None:
    kwargs: dict[str, Any] = {"jobs": 20} if scenario != "stalled" else {"jobs": 2}
    scenarios.SCENARIOS[scenario](r, prefix, "q", **kwargs)
    before = snapshot(r, prefix)
    found = {
        "stuck": runbook.diagnose_stuck("q", r, prefix),
        "stalled": runbook.diagnose_stalled("q", r, prefix),
        "failed": runbook.diagnose_failed("q", r, prefix),
    }
    for name, (outcome, cause) in MATRIX[scenario].items():
        finding = found[name]
        assert (finding.outcome, finding.cause) == (outcome, cause), (scenario, name, finding.verdict())
        assert finding.verdict().startswith(f"{outcome}: ")
    memory = runbook.diagnose_memory(r, prefix, queue="q")  # nothing finished a day ago
    assert memory.outcome == "OK", memory.verdict()
    assert snapshot(r, prefix) == before  # diagnosing (a dry run) changes nothing
