"""BullMQ 6 getters of issue 19 — counts per priority, rate-limit TTL, deduplication owners: the same answers
as Node's Queue on the same Redis state."""

from __future__ import annotations

import pytest
import redis

import sbqueue
from sbqueue.errors import InvalidOptionError
from tests.interop.nodebridge import NodeDriver


def test_counts_per_priority_match_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("cp", r, prefix=prefix)
    for i in range(4):
        q.add("plain", {"i": i})
    for p, n in ((1, 3), (5, 2), (2_097_151, 1)):
        for i in range(n):
            q.add("urgent", {"i": i}, priority=p)
    asked = [0, 1, 5, 7, 2_097_151, 1]
    ours = q.get_counts_per_priority(asked)
    theirs = node.run(prefix, "cp", "getters", priorities=asked)["countsPerPriority"]
    assert ours == {0: 4, 1: 3, 5: 2, 7: 0, 2_097_151: 1}
    assert {str(p): n for p, n in ours.items()} == theirs
    q.pause()  # BullMQ 6 keeps a paused queue's jobs in wait: priority 0 still counts them
    paused = node.run(prefix, "cp", "getters", priorities=[0])["countsPerPriority"]
    assert q.get_counts_per_priority([0]) == {0: 4} and paused == {"0": 4}


def test_rate_limit_ttl_matches_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("rl", r, prefix=prefix)
    limiter = q.keys.key("limiter")
    got = node.run(prefix, "rl", "getters", maxJobs=5)
    assert q.get_rate_limit_ttl() == got["rateLimitTtl"] == -2  # no window open
    assert q.get_rate_limit_ttl(5) == got["rateLimitTtlFor"] == 0
    r.set(limiter, 5, px=60_000)  # five jobs ran in a window of one minute
    got = node.run(prefix, "rl", "getters", maxJobs=5)
    assert 55_000 < q.get_rate_limit_ttl(5) <= 60_000 and 55_000 < got["rateLimitTtlFor"] <= 60_000
    assert q.get_rate_limit_ttl(6) == node.run(prefix, "rl", "getters", maxJobs=6)["rateLimitTtlFor"] == 0
    q.set_global_rate_limit(5, 60_000)  # without max_jobs, the queue's global limit decides
    assert 55_000 < q.get_rate_limit_ttl() <= 60_000
    assert 55_000 < node.run(prefix, "rl", "getters")["rateLimitTtl"] <= 60_000
    q.set_global_rate_limit(10, 60_000)
    assert q.get_rate_limit_ttl() == node.run(prefix, "rl", "getters")["rateLimitTtl"] == 0


def test_deduplication_owner_matches_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("dd", r, prefix=prefix)
    job = q.add("once", {}, deduplication={"id": "order-7"})
    got = node.run(prefix, "dd", "getters", dedupIds=["order-7", "nope"])["dedupJobIds"]
    assert q.get_deduplication_job_id("order-7") == got["order-7"] == job.id
    assert q.get_deduplication_job_id("nope") is got["nope"] is None


@pytest.mark.parametrize("bad", [5, "0", [0, -1], [2_097_152], [1.5], [True]])
def test_bad_priorities_are_refused(r: redis.Redis, prefix: str, bad: object) -> None:
    with pytest.raises(InvalidOptionError):
        sbqueue.Queue("cp", r, prefix=prefix).get_counts_per_priority(bad)  # type: ignore[arg-type]


def test_bad_getter_arguments_are_refused(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("cp", r, prefix=prefix)
    for call in (lambda: q.get_rate_limit_ttl(-1), lambda: q.get_rate_limit_ttl("5"),  # type: ignore[arg-type]
                 lambda: q.get_deduplication_job_id(""), lambda: q.get_deduplication_job_id(7)):  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError):
            call()


def test_remove_deduplication_key_matches_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("rd", r, prefix=prefix)
    first = q.add("once", {}, deduplication={"id": "a"})
    assert q.add("once", {}, deduplication={"id": "a"}).id == first.id  # deduplicated while the key stands
    assert q.remove_deduplication_key("a") == 1 and q.remove_deduplication_key("a") == 0
    assert q.add("once", {}, deduplication={"id": "a"}).id != first.id  # released: a new job
    q.add("once", {}, deduplication={"id": "b"})
    assert node.run(prefix, "rd", "removeDeduplicationKey", dedupId="b")["removed"] == 1
    assert node.run(prefix, "rd", "removeDeduplicationKey", dedupId="b")["removed"] == 0
    assert q.get_deduplication_job_id("b") is None


def test_trim_events_matches_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("te", r, prefix=prefix)
    key = q.keys.key("events")
    q.add_bulk([{"name": "n", "data": {"i": i}} for i in range(3_000)])
    total = r.xlen(key)
    assert q.trim_events(1_000, approximate=False) == total - 1_000 and r.xlen(key) == 1_000
    trimmed = node.run(prefix, "te", "trimEvents", maxLength=100)["trimmed"]  # approximate: whole blocks
    assert 100 <= r.xlen(key) < 1_000 and trimmed == 1_000 - r.xlen(key)
    left = r.xlen(key)
    assert q.trim_events(10) == left - r.xlen(key) and 10 <= r.xlen(key) <= left
    with pytest.raises(InvalidOptionError):
        q.trim_events(-1)
    with pytest.raises(InvalidOptionError):
        q.remove_deduplication_key("")
