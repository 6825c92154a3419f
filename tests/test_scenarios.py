"""Planted incidents leave Redis in exactly the state they describe."""

from __future__ import annotations

import redis

import sbqueue
from sbqueue import embedded, scenarios


def counts(r: redis.Redis, prefix: str, queue: str) -> dict[str, int]:
    return sbqueue.Queue(queue, r, prefix=prefix).get_job_counts()


def test_stuck_paused_delayed(r: redis.Redis, prefix: str) -> None:
    stuck = scenarios.stuck_no_workers(r, prefix, "stuck", jobs=20)
    assert counts(r, prefix, "stuck")["waiting"] == 20 and len(stuck.job_ids) == 20
    assert sbqueue.Queue("stuck", r, prefix=prefix).get_workers() == []
    scenarios.paused(r, prefix, "paused", jobs=7)
    q = sbqueue.Queue("paused", r, prefix=prefix)
    assert q.is_paused() and q.get_job_counts()["waiting"] == 7
    pile = scenarios.delayed_pileup(r, prefix, "delayed", jobs=25)
    assert counts(r, prefix, "delayed")["delayed"] == 25 and pile.expected["cause"] == "delayed_not_due"


def test_failing_has_distinct_signatures_and_retries_left(r: redis.Redis, prefix: str) -> None:
    planted = scenarios.failing(r, prefix, "failing", jobs=40, seed=3)
    q = sbqueue.Queue("failing", r, prefix=prefix)
    failed = q.get_failed()
    assert sorted(j.id for j in failed) == sorted(planted.expected["failed_ids"])
    reasons = {j.failed_reason.split(":")[0] for j in failed if j.failed_reason}
    assert len(reasons) >= 3
    retrying = [q.get_job(i) for i in planted.expected["retrying_ids"]]
    assert retrying and all(j is not None and j.attempts_made == 1 and j.max_attempts == 3 for j in retrying)
    assert {q.get_job_state(i) for i in planted.expected["retrying_ids"]} == {"delayed"}


def test_failing_is_deterministic(r: redis.Redis, prefix: str) -> None:
    first = scenarios.failing(r, prefix, "a", jobs=30, seed=11)
    second = scenarios.failing(r, prefix, "b", jobs=30, seed=11)
    assert first.expected["failed_ids"] == second.expected["failed_ids"]


def test_rate_limited(r: redis.Redis, prefix: str) -> None:
    planted = scenarios.rate_limited(r, prefix, "rl", jobs=10)
    q = sbqueue.Queue("rl", r, prefix=prefix)
    assert q.get_job_counts("completed", "waiting") == {"completed": 2, "waiting": 8}
    assert q.get_global_rate_limit() == {"max": 2, "duration": planted.expected["duration"]}
    assert r.pttl(f"{prefix}:rl:limiter") > 0


def test_stalled_worker_killed(r: redis.Redis, prefix: str) -> None:
    planted = scenarios.stalled(r, prefix, "stalled", jobs=2, lock_duration=1500)
    q = sbqueue.Queue("stalled", r, prefix=prefix)
    assert sorted(q.get_job_ids("active")) == sorted(planted.expected["active_ids"])
    assert q.get_workers() == []  # the worker is gone (killed -9) ...
    assert all(r.exists(f"{prefix}:stalled:{i}:lock") for i in planted.job_ids)  # ... its locks not yet expired


def test_memory_bloat(r: redis.Redis, prefix: str) -> None:
    planted = scenarios.memory_bloat(r, prefix, "bloat", jobs=20, payload_bytes=5000)
    assert counts(r, prefix, "bloat")["completed"] == 20
    assert r.memory_usage(f"{prefix}:bloat:{planted.job_ids[0]}", samples=0) > 5000


def test_evicting_policy_only_on_an_embedded_server(r: redis.Redis, prefix: str) -> None:
    if not embedded.started_by_sbqueue(r):
        try:
            scenarios.evicting_policy(r, prefix, "ev")
        except sbqueue.ConfigurationError as exc:
            assert "only changes a server sbqueue started itself" in str(exc)
        else:
            raise AssertionError("evicting_policy changed a server sbqueue did not start")
        return
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        scenarios.evicting_policy(r, prefix, "ev")
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    finally:
        r.config_set("maxmemory-policy", before)
