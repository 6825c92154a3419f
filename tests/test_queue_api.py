"""Behaviour of Queue/AsyncQueue and Job on a real Redis, run once per flavour (sync and async).

Exact Redis contents are asserted with the raw client ``r``; every scenario follows the BullMQ 6.7
recordings (spec §2-§18). Jobs reach active/completed/failed through the ``finish_and_fetch``
script (helpers in ``tests/queue_flavours.py``), not through the Worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import sbqueue
from sbqueue import JobNotFoundError, JobStateError
from tests.conftest import snapshot
from tests.queue_flavours import (
    QueueFactory,
    add_and_finish,
    complete,
    fetch,
    finish_group,
    now_ms,
    queue_factory_fixture,  # noqa: F401  (fixture `queue_factory`: sync and async flavours)
    run_finish,
)

PRIO = 2**32


@pytest.fixture
def q(queue_factory: QueueFactory) -> Any:
    return queue_factory("q")


@pytest.fixture
def k(prefix: str) -> Callable[[str], str]:
    """Key of queue ``q``: ``k("wait")`` -> ``<prefix>:q:wait``."""
    return lambda suffix: f"{prefix}:q:{suffix}"


def events(r: redis.Redis, key: str) -> list[dict[str, str]]:
    return [fields for _id, fields in r.xrange(key)]


def job_keys(r: redis.Redis, prefix: str, queue: str = "q") -> set[str]:
    return {key[len(f"{prefix}:{queue}:") :] for key in r.scan_iter(match=f"{prefix}:{queue}:*", count=1000)}


# --- add ---------------------------------------------------------------------------------------------


def test_add_plain_writes_bullmq_fields_events_marker_and_meta(q: Any, r: redis.Redis, k: Any) -> None:
    before = now_ms()
    job = q.add("send", {"to": "a@example.com", "n": 1})
    second = q.add("send", {"n": 2})
    assert (job.id, second.id) == ("1", "2")
    assert isinstance(job, sbqueue.Job) and job.data == {"to": "a@example.com", "n": 1}
    raw = r.hgetall(k("1"))
    assert set(raw) == {"name", "data", "opts", "timestamp", "delay", "priority"}
    assert raw["name"] == "send" and raw["data"] == '{"to":"a@example.com","n":1}'
    assert json.loads(raw["opts"]) == {"attempts": 1}
    assert before <= int(raw["timestamp"]) <= now_ms() and raw["delay"] == "0" and raw["priority"] == "0"
    assert r.lrange(k("wait"), 0, -1) == ["2", "1"]  # LPUSH: head = newest, tail runs next
    assert events(r, k("events")) == [
        {"event": "added", "jobId": "1", "name": "send"}, {"event": "waiting", "jobId": "1"},
        {"event": "added", "jobId": "2", "name": "send"}, {"event": "waiting", "jobId": "2"},
    ]  # fmt: skip
    assert r.zrange(k("marker"), 0, -1, withscores=True) == [("0", 0.0)]
    assert r.hgetall(k("meta")) == {"version": f"sbqueue:{sbqueue.__version__}", "opts.maxLenEvents": "10000"}
    assert r.get(k("id")) == "2"
    assert r.type(k("pc")) == "none" and r.type(k("delayed")) == "none"


def test_add_keeps_unicode_data_verbatim_and_none_as_empty_object(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("u", {"nested": {"u": "é"}})
    q.add("none")
    assert r.hget(k("1"), "data") == '{"nested":{"u":"\\u00e9"}}'  # json.dumps escapes, as py-bullmq
    assert r.hget(k("2"), "data") == "{}"
    assert q.get_job("1").data == {"nested": {"u": "é"}}


def test_lifo_add_goes_to_the_tail(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("a")
    q.add("b")
    q.add("c", lifo=True)
    assert r.lrange(k("wait"), 0, -1) == ["2", "1", "3"]
    assert json.loads(r.hget(k("3"), "opts")) == {"lifo": True, "attempts": 1}


def test_priority_score_is_priority_times_2_32_plus_counter(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("p1", priority=1)
    q.add("p5a", priority=5)
    q.add("p5b", priority=5)
    q.add("pmax", priority=2**21 - 1)
    assert r.zrange(k("prioritized"), 0, -1, withscores=True) == [
        ("1", 1 * PRIO + 1), ("2", 5 * PRIO + 2), ("3", 5 * PRIO + 3), ("4", (2**21 - 1) * PRIO + 4),
    ]  # fmt: skip
    assert r.get(k("pc")) == "4"
    assert r.hget(k("2"), "priority") == "5"
    assert json.loads(r.hget(k("2"), "opts")) == {"priority": 5, "attempts": 1}
    assert r.type(k("wait")) == "none"
    assert r.zscore(k("marker"), "0") == 0
    assert events(r, k("events"))[:2] == [
        {"event": "added", "jobId": "1", "name": "p1"},
        {"event": "waiting", "jobId": "1"},
    ]


def test_delay_score_seq_marker_and_absolute_delayed_event(q: Any, r: redis.Redis, k: Any) -> None:
    jobs = q.add_bulk([{"name": f"d{i}", "opts": {"delay": 60_000}} for i in range(3)])  # one timestamp
    stamp = int(r.hget(k("1"), "timestamp"))
    due = stamp + 60_000
    assert [j.id for j in jobs] == ["1", "2", "3"]
    assert r.zrange(k("delayed"), 0, -1, withscores=True) == [
        ("1", due * 4096 + 0), ("2", due * 4096 + 1), ("3", due * 4096 + 2),
    ]  # fmt: skip
    assert r.hget(k("1"), "delay") == "60000"  # relative in the hash
    assert json.loads(r.hget(k("1"), "opts")) == {"delay": 60000, "attempts": 1}
    assert r.zrange(k("marker"), 0, -1, withscores=True) == [("1", float(due))]  # no "0": nothing runnable
    evs = events(r, k("events"))
    assert evs[:2] == [
        {"event": "added", "jobId": "1", "name": "d0"},
        {"event": "delayed", "jobId": "1", "delay": str(due)},
    ]
    # an earlier job moves the "1" marker to its due time
    early = q.add("early", delay=1_000)
    early_due = int(r.hget(k(early.id), "timestamp")) + 1_000
    assert r.zscore(k("marker"), "1") == early_due
    assert q.get_job_state(early.id) == "delayed"


def test_delay_accepts_timedelta_and_rounds_float_ms(q: Any, r: redis.Redis, k: Any) -> None:
    import datetime as dt

    q.add("td", delay=dt.timedelta(seconds=2))
    q.add("fl", delay=1500.4)
    assert r.hget(k("1"), "delay") == "2000" and r.hget(k("2"), "delay") == "1500"


def test_custom_id_duplicate_is_a_no_op_that_advances_the_counter(q: Any, r: redis.Redis, k: Any) -> None:
    first = q.add("custom", {"first": True}, job_id="my-custom-id")
    again = q.add("custom", {"first": False}, job_id="my-custom-id")
    assert first.id == again.id == "my-custom-id"
    assert r.hget(k("my-custom-id"), "data") == '{"first":true}'
    assert json.loads(r.hget(k("my-custom-id"), "opts")) == {"jobId": "my-custom-id", "attempts": 1}
    assert r.get(k("id")) == "2"  # both attempts consumed a counter value
    assert r.lrange(k("wait"), 0, -1) == ["my-custom-id"]
    assert events(r, k("events"))[-1] == {"event": "duplicated", "jobId": "my-custom-id"}
    assert q.add("next").id == "3"
    assert q.add("three-part", job_id="a:b:c").id == "a:b:c"


def test_dedup_with_ttl(q: Any, r: redis.Redis, k: Any) -> None:
    owner = q.add("dedup", {"v": 1}, deduplication={"id": "dedup-A", "ttl": 600_000})
    rejected = q.add("dedup", {"v": 2}, deduplication={"id": "dedup-A", "ttl": 600_000})
    assert owner.id == rejected.id == "1"
    assert r.get(k("de:dedup-A")) == "1" and 590_000 < r.pttl(k("de:dedup-A")) <= 600_000
    assert r.hget(k("1"), "deid") == "dedup-A" and r.hget(k("1"), "data") == '{"v":1}'
    assert json.loads(r.hget(k("1"), "opts"))["de"] == {"id": "dedup-A", "ttl": 600000}
    assert r.get(k("id")) == "2" and not r.exists(k("2"))
    assert events(r, k("events"))[-1] == {
        "event": "deduplicated", "jobId": "1", "deduplicationId": "dedup-A", "deduplicatedJobId": "2",
    }  # fmt: skip
    assert r.lrange(k("wait"), 0, -1) == ["1"]


def test_dedup_ttl_window_outlives_the_job(q: Any, r: redis.Redis, k: Any) -> None:
    """As BullMQ: finishing the job leaves a ttl'd key; only its expiry (or removing the job) ends it."""
    owner = q.add("dedup", deduplication={"id": "w", "ttl": 60_000})
    ((job_id, token),) = fetch(q)
    assert complete(q, job_id, token) == 1
    assert r.get(k("de:w")) == owner.id and r.pttl(k("de:w")) > 0
    assert q.add("dedup", deduplication={"id": "w", "ttl": 60_000}).id == owner.id
    r.set(k("de:gone"), "ghost", px=60_000)  # a window whose job hash is gone still holds
    assert q.add("dedup", deduplication={"id": "gone", "ttl": 60_000}).id == "ghost"
    assert q.remove(owner.id) is True  # removing the job ends its window
    assert not r.exists(k("de:w"))
    assert q.add("dedup", deduplication={"id": "w", "ttl": 60_000}).id == "4"


def test_dedup_without_ttl_lives_until_the_job_finishes(q: Any, r: redis.Redis, k: Any) -> None:
    owner = q.add("dedup", deduplication={"id": "dedup-B"})
    assert r.get(k("de:dedup-B")) == owner.id and r.pttl(k("de:dedup-B")) == -1
    assert q.add("dedup", deduplication={"id": "dedup-B"}).id == owner.id
    ((job_id, token),) = fetch(q)
    assert complete(q, job_id, token) == 1
    assert not r.exists(k("de:dedup-B"))
    assert q.add("dedup", deduplication={"id": "dedup-B"}).id == "3"
    assert r.get(k("de:dedup-B")) == "3"


def test_stale_dedup_key_is_taken_over(q: Any, r: redis.Redis, k: Any) -> None:
    r.set(k("de:gone"), "ghost")  # its job hash does not exist
    job = q.add("dedup", deduplication={"id": "gone"})
    assert job.id == "1" and r.get(k("de:gone")) == "1" and r.lrange(k("wait"), 0, -1) == ["1"]


def test_stored_options_use_bullmq_names(q: Any, r: redis.Redis, k: Any) -> None:
    q.add(
        "with-opts", {"x": 1}, keep_logs=20, remove_on_fail={"age": 3600, "count": 100}, stack_trace_limit=3,
        remove_on_complete={"count": 10}, backoff={"type": "exponential", "delay": 1000}, attempts=5, timeout=5000,
    )  # fmt: skip
    q.add("fixed", backoff=250, remove_on_complete=True, remove_on_fail=7)
    assert json.loads(r.hget(k("1"), "opts")) == {
        "kl": 20, "removeOnFail": {"age": 3600, "count": 100}, "stackTraceLimit": 3,
        "removeOnComplete": {"count": 10}, "backoff": {"type": "exponential", "delay": 1000}, "attempts": 5,
        "timeout": 5000,
    }  # fmt: skip
    assert json.loads(r.hget(k("2"), "opts")) == {
        "backoff": {"type": "fixed", "delay": 250}, "removeOnComplete": True, "removeOnFail": 7, "attempts": 1,
    }  # fmt: skip


def test_default_job_options_apply_and_are_overridden(queue_factory: QueueFactory, r: redis.Redis, prefix: str) -> None:
    q = queue_factory("d", default_job_options={"attempts": 3, "removeOnComplete": True})
    q.add("a")
    q.add("b", attempts=1)
    assert json.loads(r.hget(f"{prefix}:d:1", "opts")) == {"attempts": 3, "removeOnComplete": True}
    assert json.loads(r.hget(f"{prefix}:d:2", "opts")) == {"attempts": 1, "removeOnComplete": True}


def test_marker_zero_written_only_for_runnable_adds(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("later", delay=5_000)
    assert r.zscore(k("marker"), "0") is None
    q.add("now")
    assert r.zscore(k("marker"), "0") == 0


def test_global_concurrency_reached_means_no_marker(q: Any, r: redis.Redis, k: Any) -> None:
    q.set_global_concurrency(1)
    q.add("a")
    fetch(q)
    r.delete(k("marker"))  # a worker popped it
    q.add("b")
    assert r.zscore(k("marker"), "0") is None  # 1 active >= concurrency 1
    assert r.lrange(k("wait"), 0, -1) == ["2"]


def test_add_bulk_is_one_round_trip(redis_url: str, prefix: str, r: redis.Redis,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    q = sbqueue.Queue("bulk", connection=redis_url, prefix=prefix)
    try:
        q.add("warm-up")  # writes meta once
        q.add_bulk([{"name": "warm-up"}])  # the server has loaded the script (else: NOSCRIPT, load, send again)
        sends: list[int] = []
        original = redis.connection.AbstractConnection.send_packed_command
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command",
                            lambda self, command, *a, **kw: sends.append(command) or original(self, command, *a,
                                                                                                  **kw))  # fmt: skip
        jobs = q.add_bulk([{"name": "b", "data": {"i": i}, "opts": {"priority": i % 3}} for i in range(50)])
        assert len(sends) == 1  # every packed call written at once: one round trip
        assert [j.id for j in jobs] == [str(i) for i in range(3, 53)]
        assert r.llen(f"{prefix}:bulk:wait") == 2 + 17 and r.zcard(f"{prefix}:bulk:prioritized") == 33
    finally:
        q.close()


def test_add_bulk_reports_duplicates_and_accepts_camel_case(q: Any, r: redis.Redis, k: Any) -> None:
    jobs = q.add_bulk([
        {"name": "a", "data": {"i": 1}, "opts": {"jobId": "x-1"}},
        {"name": "a", "data": {"i": 2}, "opts": {"job_id": "x-1"}},
        {"name": "b", "opts": {"removeOnComplete": 5, "stackTraceLimit": 2, "keepLogs": 3}},
    ])  # fmt: skip
    assert [j.id for j in jobs] == ["x-1", "x-1", "3"]
    assert r.hget(k("x-1"), "data") == '{"i":1}'
    assert json.loads(r.hget(k("3"), "opts")) == {"removeOnComplete": 5, "stackTraceLimit": 2, "kl": 3, "attempts": 1}
    assert q.add_bulk([]) == []


def test_the_latest_queue_sets_max_len_events(queue_factory: QueueFactory, r: redis.Redis, prefix: str) -> None:
    queue_factory("m").add("a")
    assert r.hget(f"{prefix}:m:meta", "opts.maxLenEvents") == "10000"
    queue_factory("m", max_len_events=500).add("b")  # as Node's Queue constructor: written, not kept
    assert r.hget(f"{prefix}:m:meta", "opts.maxLenEvents") == "500"


def test_events_stream_is_trimmed_to_max_len_events(queue_factory: QueueFactory, r: redis.Redis, prefix: str) -> None:
    q = queue_factory("trim", max_len_events=10)
    q.add_bulk([{"name": "e"} for _ in range(600)])  # 1200 events
    assert r.hget(f"{prefix}:trim:meta", "opts.maxLenEvents") == "10"
    assert r.xlen(f"{prefix}:trim:events") < 400  # MAXLEN ~ trims whole stream nodes


def test_hash_tagged_queue_keys_share_one_slot(queue_factory: QueueFactory, r: redis.Redis, prefix: str) -> None:
    q = queue_factory("{tagged}")
    q.add("a", deduplication={"id": "d"})
    q.add("b", delay=1000, priority=2)
    q.upsert_job_scheduler("s", every=60_000)
    fetch(q)
    keys = list(r.scan_iter(match=f"{prefix}:{{tagged}}:*"))
    assert len(keys) > 8
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"tagged")}
    q.keys.check_cluster_slot()
    with pytest.raises(sbqueue.ClusterKeyError, match="hash tag"):
        sbqueue._core.keys.QueueKeys(prefix, "plain").check_cluster_slot()


# --- getters -----------------------------------------------------------------------------------------


def _one_job_per_state(q: Any, r: redis.Redis, k: Any) -> dict[str, str]:
    """Returns state -> job id for every state (the queue is left with exactly these jobs)."""
    ids = {"completed": add_and_finish(q, "completed", "c"), "failed": add_and_finish(q, "failed", "f")}
    ids["active"] = q.add("a").id
    fetch(q)
    ids["waiting"] = q.add("w").id
    ids["delayed"] = q.add("d", delay=60_000).id
    ids["prioritized"] = q.add("p", priority=3).id
    r.hset(
        k("parent"), mapping={"name": "p", "data": "{}", "opts": "{}", "timestamp": now_ms(), "delay": 0, "priority": 0}
    )
    r.zadd(k("waiting-children"), {"parent": now_ms()})
    ids["waiting-children"] = "parent"
    r.hset(k("legacy"), mapping={"name": "l", "data": "{}", "opts": "{}", "timestamp": now_ms()})
    r.rpush(k("paused"), "legacy")
    ids["paused"] = "legacy"
    return ids


def test_get_job_state_for_every_state(q: Any, r: redis.Redis, k: Any) -> None:
    ids = _one_job_per_state(q, r, k)
    for state, job_id in ids.items():
        assert q.get_job_state(job_id) == state
        assert q.get_job(job_id).get_state() == state
    assert q.get_job_state("nope") == "unknown"
    assert q.get_job("nope") is None


def test_get_job_counts_defaults_and_explicit_states(q: Any, r: redis.Redis, k: Any) -> None:
    _one_job_per_state(q, r, k)
    q.add("w2")
    assert q.get_job_counts() == {
        "active": 1, "completed": 1, "delayed": 1, "failed": 1, "prioritized": 1, "waiting": 2, "waiting-children": 1,
    }  # fmt: skip
    assert q.get_job_counts("paused", "wait") == {"paused": 1, "wait": 2}
    assert q.get_job_counts("waiting", sbqueue.JobState.DELAYED) == {"waiting": 2, "delayed": 1}
    assert q.get_job_count_by_state("completed") == 1


def test_get_job_reads_every_field(q: Any, r: redis.Redis, k: Any) -> None:
    job_id = add_and_finish(q, "failed", "f", {"x": 1}, attempts=2, priority=4)
    job = q.get_job(job_id)
    assert (job.id, job.name, job.data, job.priority, job.delay) == ("1", "f", {"x": 1}, 4, 0)
    assert job.opts == {"attempts": 2, "priority": 4} and job.max_attempts == 2
    assert job.failed_reason == "boom" and job.stacktrace == ["Error: boom"]
    assert job.attempts_made == 1 and job.attempts_started == 1
    assert job.timestamp <= job.processed_on <= job.finished_on
    assert job.finished_at is not None and job.parse_error is None
    done = q.get_job(add_and_finish(q, "completed", "c"))
    assert done.returnvalue == "ok" and done.failed_reason is None


def test_get_jobs_ordering_and_paging(q: Any, r: redis.Redis, k: Any) -> None:
    for i in range(5):
        q.add(f"w{i}")  # ids 1..5; wait (head first) = 5 4 3 2 1
    q.add("lifo", lifo=True)  # id 6 runs next
    assert [j.id for j in q.get_jobs("waiting")] == ["5", "4", "3", "2", "1", "6"]  # newest first
    assert [j.id for j in q.get_jobs(["wait"], asc=True)] == ["6", "1", "2", "3", "4", "5"]
    assert [j.id for j in q.get_jobs("waiting", 0, 1)] == ["5", "4"]
    assert [j.id for j in q.get_jobs("waiting", 1, 2, asc=True)] == ["1", "2"]
    assert [j.id for j in q.get_waiting()] == ["6", "1", "2", "3", "4", "5"]  # next to run first, as BullMQ
    assert q.get_job_ids("waiting", asc=True) == ["6", "1", "2", "3", "4", "5"]
    for prio in (3, 1, 2):
        q.add(f"p{prio}", priority=prio)  # ids 7, 8, 9
    assert [j.id for j in q.get_prioritized()] == ["8", "9", "7"]  # lowest score (most urgent) first
    assert [j.id for j in q.get_jobs("prioritized")] == ["7", "9", "8"]
    q.add("d-late", delay=90_000)
    q.add("d-soon", delay=30_000)
    assert [j.id for j in q.get_delayed()] == ["11", "10"]
    # several states, and an id named twice is returned once
    assert [j.id for j in q.get_jobs(["prioritized", "delayed"], asc=True)] == ["8", "9", "7", "11", "10"]
    assert [j.id for j in q.get_jobs(["waiting", "wait"], 0, 0)] == ["5"]


def test_get_completed_failed_active_newest_first(q: Any, r: redis.Redis, k: Any) -> None:
    done = [add_and_finish(q, "completed", f"c{i}") for i in range(3)]
    for i, job_id in enumerate(done):
        r.zadd(k("completed"), {job_id: 1000 + i})  # distinct finish times
    add_and_finish(q, "failed", "f")
    assert [j.id for j in q.get_completed()] == ["3", "2", "1"]
    assert [j.id for j in q.get_failed()] == ["4"]
    q.add("a1")
    q.add("a2")
    fetch(q, 2)
    assert [j.id for j in q.get_active()] == ["5", "6"]  # longest-running first, as BullMQ


def test_get_job_logs(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("logged")
    for i in range(4):
        assert job.log(f"line {i}") == i + 1
    assert q.get_job_logs(job.id) == {"logs": ["line 0", "line 1", "line 2", "line 3"], "count": 4}
    assert q.get_job_logs(job.id, 0, 1) == {"logs": ["line 0", "line 1"], "count": 4}
    assert q.get_job_logs(job.id, 0, 1, asc=False) == {"logs": ["line 3", "line 2"], "count": 4}
    assert q.get_job_logs("missing") == {"logs": [], "count": 0}


def test_get_metrics_on_an_empty_queue(q: Any) -> None:
    empty = {"meta": {"count": 0, "prevTS": 0, "prevCount": 0}, "data": [], "count": 0}
    assert q.get_metrics("completed") == empty
    assert q.get_metrics("failed") == empty
    with pytest.raises(sbqueue.InvalidOptionError, match="kind"):
        q.get_metrics("waiting")


def test_get_metrics_after_finishes(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("m")
    ((job_id, token),) = fetch(q)
    run_finish(q, [finish_group(job_id, token)], metrics_points=10)
    got = q.get_metrics("completed")
    assert got["meta"]["count"] == 1 and got["data"] == [] and got["count"] == 0


def test_get_workers_and_meta_getters(q: Any, r: redis.Redis, k: Any) -> None:
    assert q.get_workers() == []
    q.set_global_concurrency(3)
    q.set_global_rate_limit(10, 2000)
    assert q.get_global_concurrency() == 3
    assert q.get_global_rate_limit() == {"max": 10, "duration": 2000}
    assert q.get_meta()["concurrency"] == "3"


# --- pause / resume -----------------------------------------------------------------------------------


def test_pause_keeps_jobs_in_wait_without_a_marker(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("before")
    q.pause()
    assert r.hget(k("meta"), "paused") == "1" and not r.exists(k("marker")) and q.is_paused()
    q.add("during")
    q.add("prio", priority=1)
    assert r.lrange(k("wait"), 0, -1) == ["2", "1"] and not r.exists(k("paused"))
    assert not r.exists(k("marker"))
    q.add("delayed", delay=60_000)
    assert r.zrange(k("marker"), 0, -1) == ["1"]  # the delay marker is still written
    assert {"event": "paused"} in events(r, k("events"))
    assert fetch(q) == []  # workers fetch nothing while paused
    assert q.get_job_counts()["waiting"] == 2


def test_resume_restores_marker_and_migrates_a_legacy_paused_list(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("a")
    q.pause()
    q.add("b")
    legacy = [f"legacy-{i}" for i in range(7005)]  # more than one 7000-id chunk; head = newest (v5 LPUSH)
    r.lpush(k("paused"), *reversed(legacy))
    assert r.lindex(k("paused"), 0) == "legacy-0"
    q.resume()
    assert not q.is_paused() and "paused" not in r.hgetall(k("meta"))
    wait = r.lrange(k("wait"), 0, -1)
    assert wait == ["2", "1", *legacy]  # appended behind the v6 jobs: the legacy tail runs first
    assert not r.exists(k("paused"))
    assert r.zscore(k("marker"), "0") == 0
    evs = events(r, k("events"))
    assert evs[-1] == {"event": "resumed"} and evs.count({"event": "resumed"}) == 1


def test_resume_with_only_a_legacy_list_renames_it(q: Any, r: redis.Redis, k: Any) -> None:
    q.pause()
    r.rpush(k("paused"), "x", "y")
    q.resume()
    assert r.lrange(k("wait"), 0, -1) == ["x", "y"] and r.zscore(k("marker"), "0") == 0


def test_resume_of_an_empty_queue_writes_only_the_delay_marker(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("d", delay=60_000)
    q.pause()
    assert not r.exists(k("marker"))
    q.resume()
    assert r.zrange(k("marker"), 0, -1) == ["1"]


# --- clean ----------------------------------------------------------------------------------------------


def test_clean_completed_and_failed_oldest_first_with_limit_and_event(q: Any, r: redis.Redis, k: Any) -> None:
    done = [add_and_finish(q, "completed", "c") for _ in range(3)]
    for i, job_id in enumerate(done):
        r.zadd(k("completed"), {job_id: now_ms() - 10_000 + i})
    q.get_job(done[0]).log("a log line")
    failed = add_and_finish(q, "failed", "f", deduplication={"id": "dd"})
    assert q.clean(0, 2, "completed") == done[:2]
    assert not r.exists(k(done[0])) and not r.exists(k(f"{done[0]}:logs"))
    assert r.zrange(k("completed"), 0, -1) == [done[2]]
    assert events(r, k("events"))[-1] == {"event": "cleaned", "count": "2"}
    assert q.clean(0, 0, "failed") == [failed]
    assert events(r, k("events"))[-1] == {"event": "cleaned", "count": "1"}
    assert q.clean(0, 10, "failed") == []
    assert events(r, k("events"))[-1] == {"event": "cleaned", "count": "1"}  # no event for nothing


def test_clean_honours_the_grace_period(q: Any, r: redis.Redis, k: Any) -> None:
    old, new = add_and_finish(q, "completed", "old"), add_and_finish(q, "completed", "new")
    r.zadd(k("completed"), {old: now_ms() - 60_000})
    r.hset(k(old), "finishedOn", now_ms() - 60_000)
    assert q.clean(30_000, 100, "completed") == [old]
    assert r.zrange(k("completed"), 0, -1) == [new]


@pytest.mark.parametrize("state", ["wait", "waiting", "delayed", "prioritized", "paused"])
def test_clean_waiting_states_by_timestamp(q: Any, r: redis.Redis, k: Any, state: str) -> None:
    opts: dict[str, Any] = {"delayed": {"delay": 60_000}, "prioritized": {"priority": 2}}.get(state, {})
    ids = [q.add(f"j{i}", deduplication={"id": f"d{i}"}, **opts).id for i in range(4)]
    key = {"waiting": "wait"}.get(state, state)
    if state == "paused":  # a legacy list: move the jobs there by hand
        r.rename(k("wait"), k("paused"))
    for job_id in ids[:3]:
        r.hset(k(job_id), "timestamp", now_ms() - 60_000)
    removed = q.clean(30_000, 2, state)
    assert removed == ids[:2]  # the oldest first
    assert not r.exists(k(ids[0])) and not r.exists(k("de:d0")) and r.exists(k("de:d2"))
    left = r.lrange(k(key), 0, -1) if state in ("wait", "waiting", "paused") else r.zrange(k(key), 0, -1)
    assert sorted(left) == sorted(ids[2:])
    assert q.clean(30_000, 0, state) == [ids[2]]


def test_clean_never_removes_locked_active_jobs(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("a")
    q.add("b")
    (first, _), (second, _) = fetch(q, 2)
    assert q.clean(0, 0, "active") == []
    r.delete(k(f"{second}:lock"))  # its worker died
    assert q.clean(0, 0, "active") == [second]
    assert r.lrange(k("active"), 0, -1) == [first] and r.exists(k(first))


def test_clean_skips_the_current_scheduler_iteration(q: Any, r: redis.Redis, k: Any) -> None:
    iteration = q.upsert_job_scheduler("s", every=60_000)
    q.add("plain")
    assert q.clean(0, 0, "wait") == ["2"]
    assert r.lrange(k("wait"), 0, -1) == [iteration.id]


def test_clean_walks_past_many_kept_entries_in_batches(q: Any, r: redis.Redis, k: Any) -> None:
    """1200 young jobs at the old end of wait (kept) and 300 old ones nearer the head."""
    now = now_ms()
    pipe = r.pipeline(transaction=False)
    for i in range(1500):
        young = i < 1200
        pipe.hset(
            k(f"j{i}"), mapping={"name": "x", "data": "{}", "opts": "{}", "timestamp": now if young else now - 60_000}
        )
        pipe.lpush(k("wait"), f"j{i}")  # j0 at the tail (oldest end)
        pipe.zadd(k("completed"), {f"c{i}": now - 60_000})
        pipe.hset(k(f"c{i}"), mapping={"name": "x", "finishedOn": now - 60_000})
    pipe.execute()
    removed = q.clean(30_000, 0, "wait")
    assert removed == [f"j{i}" for i in range(1200, 1500)]
    assert r.llen(k("wait")) == 1200
    removed = q.clean(0, 0, "completed")
    assert len(removed) == 1500 and not r.exists(k("completed")) and not r.exists(k("c0"))
    cleaned = [int(e["count"]) for e in events(r, k("events")) if e["event"] == "cleaned"]
    assert sum(cleaned) == 1800


# --- drain ----------------------------------------------------------------------------------------------


def test_drain_with_a_scheduler_iteration_at_the_head_of_wait(q: Any, r: redis.Redis, k: Any) -> None:
    """Spec §23: BullMQ 6.7 trims by count here and leaves an id without a hash."""
    for _ in range(3):
        q.add("n")
    iteration = q.upsert_job_scheduler("s", every=600_000, name="sjob")
    assert r.lrange(k("wait"), 0, -1) == [iteration.id, "3", "2", "1"]
    q.add("p", priority=1)
    q.add("d", delay=60_000)
    q.add("dd", deduplication={"id": "x"})
    assert q.drain() == 5
    assert r.lrange(k("wait"), 0, -1) == [iteration.id]
    assert all(r.exists(k(job_id)) for job_id in r.lrange(k("wait"), 0, -1))
    # ids: 1-3 plain, 4 consumed by the scheduler, 5 prioritized, 6 delayed, 7 deduplicated
    assert not any(r.exists(k(i)) for i in ("1", "2", "3", "5", "7")) and not r.exists(k("de:x"))
    assert not r.exists(k("prioritized")) and r.zrange(k("delayed"), 0, -1) == ["6"]
    assert r.exists(k("repeat:s")) and r.zscore(k("repeat"), "s") is not None
    assert q.drain(delayed=True) == 1 and not r.exists(k("delayed")) and not r.exists(k("6"))
    assert [e["event"] for e in events(r, k("events"))].count("removed") == 0  # drain emits nothing


def test_drain_also_empties_a_legacy_paused_list(q: Any, r: redis.Redis, k: Any) -> None:
    for job_id in ("legacy-1", "legacy-2"):
        r.hset(k(job_id), mapping={"name": "l", "data": "{}"})
        r.rpush(k("paused"), job_id)
    q.add("w")
    assert q.drain() == 3
    assert not r.exists(k("paused")) and not r.exists(k("legacy-1")) and not r.exists(k("wait"))


def test_drain_in_batches_keeps_iterations_anywhere(q: Any, r: redis.Redis, k: Any) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(2500):
        pipe.hset(k(f"j{i}"), mapping={"name": "x", "data": "{}"})
        pipe.lpush(k("wait"), f"j{i}")
    pipe.execute()
    first = q.upsert_job_scheduler("s1", every=600_000)
    r.lrem(k("wait"), 0, first.id)
    r.linsert(k("wait"), "BEFORE", "j1200", first.id)  # somewhere in the middle
    second = q.upsert_job_scheduler("s2", every=600_000)  # at the head
    assert q.drain() == 2500
    assert r.lrange(k("wait"), 0, -1) == [second.id, first.id]


# --- obliterate -------------------------------------------------------------------------------------------


def _populate(q: Any, r: redis.Redis, k: Any) -> None:
    add_and_finish(q, "completed", "c", deduplication={"id": "done"})
    q.get_job(add_and_finish(q, "failed", "f")).log("x")
    q.add("w", deduplication={"id": "dd"})
    q.add("p", priority=2)
    q.add("d", delay=60_000)
    q.add("ttl", deduplication={"id": "with-ttl", "ttl": 60_000})
    q.upsert_job_scheduler("s", pattern="0 0 * * *", tz="Europe/Paris")
    r.hset(k("parent"), mapping={"name": "p", "data": "{}"})
    r.sadd(k("parent:dependencies"), "elsewhere:1")
    r.zadd(k("waiting-children"), {"parent": 1})
    r.rpush(k("paused"), "legacy")
    r.hset(k("legacy"), "name", "l")
    r.set(k("limiter"), 3, px=60_000)
    r.hset(k("dn:dd"), "name", "next")
    r.hset(k("metrics:completed"), "count", 1)
    r.lpush(k("metrics:completed:data"), 1)


def test_obliterate_removes_everything_of_the_queue_only(
    queue_factory: QueueFactory, r: redis.Redis, prefix: str
) -> None:
    q = queue_factory("q")
    other = queue_factory("q2")  # a name that starts like ours
    k = lambda s: f"{prefix}:q:{s}"  # noqa: E731
    _populate(q, r, k)
    other.add("keep", deduplication={"id": "dd"})
    before_other = job_keys(r, prefix, "q2")
    q.obliterate()
    assert job_keys(r, prefix, "q") == set()
    assert job_keys(r, prefix, "q2") == before_other and r.get(f"{prefix}:q2:de:dd") == "1"
    q.add("again")  # the queue can be used again
    assert r.hget(k("meta"), "version") == f"sbqueue:{sbqueue.__version__}"


def test_obliterate_refuses_active_jobs_unless_forced(q: Any, r: redis.Redis, k: Any, prefix: str) -> None:
    q.add("a")
    ((job_id, _token),) = fetch(q)
    with pytest.raises(JobStateError, match="active"):
        q.obliterate()
    assert r.exists(k(job_id)) and r.exists(k(f"{job_id}:lock"))
    q.obliterate(force=True)
    assert job_keys(r, prefix) == set()


def test_obliterate_in_batches_and_with_glob_characters_in_the_name(
    queue_factory: QueueFactory,
    r: redis.Redis,
    prefix: str,
) -> None:
    q = queue_factory("odd[1]*")
    q.add_bulk([{"name": "x", "opts": {"deduplication": {"id": f"d{i}"}}} for i in range(2100)])
    q.obliterate()
    assert list(r.scan_iter(match=f"{prefix}:*", count=1000)) == []


# --- remove ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "prev"),
    [("wait", "wait"), ("delayed", "delayed"), ("prioritized", "prioritized"), ("completed", "completed"),
     ("failed", "failed")],
)  # fmt: skip
def test_remove_from_each_state_emits_removed_with_the_key_name(
    q: Any, r: redis.Redis, k: Any, prefix: str, how: str, prev: str
) -> None:
    if how in ("completed", "failed"):
        job_id = add_and_finish(q, how, "x", deduplication={"id": "dd"})
    else:
        opts = {"delayed": {"delay": 60_000}, "prioritized": {"priority": 1}}.get(how, {})
        job_id = q.add("x", deduplication={"id": "dd"}, **opts).id
    q.get_job(job_id).log("line")
    assert q.get_job(job_id).remove() is True
    assert events(r, k("events"))[-1] == {"event": "removed", "jobId": job_id, "prev": prev}
    assert {key for key in job_keys(r, prefix) if key.startswith(job_id)} == set()
    assert not r.exists(k("de:dd"))
    assert q.get_job_state(job_id) == "unknown"


def test_remove_refuses_a_locked_job(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("x")
    ((job_id, _token),) = fetch(q)
    assert q.remove(job_id) is False
    assert r.lrange(k("active"), 0, -1) == [job_id] and r.exists(k(job_id))
    r.delete(k(f"{job_id}:lock"))
    assert q.remove(job_id) is True
    assert events(r, k("events"))[-1] == {"event": "removed", "jobId": job_id, "prev": "active"}


def test_remove_refuses_the_current_scheduler_iteration(q: Any, r: redis.Redis, k: Any) -> None:
    iteration = q.upsert_job_scheduler("s", every=60_000)
    with pytest.raises(JobStateError) as info:
        q.remove(iteration.id)
    assert info.value.code == -8 and info.value.job_id == iteration.id
    assert r.lrange(k("wait"), 0, -1) == [iteration.id]


def test_remove_of_a_missing_job_drops_a_dangling_id(q: Any, r: redis.Redis, k: Any) -> None:
    r.lpush(k("wait"), "ghost")
    assert q.remove("ghost") is False
    assert not r.exists(k("wait"))
    assert q.remove("never") is False


# --- retry / promote -------------------------------------------------------------------------------------


def test_retry_failed_job_to_wait_and_prioritized(q: Any, r: redis.Redis, k: Any) -> None:
    plain = add_and_finish(q, "failed", "f")
    prio = add_and_finish(q, "failed", "p", priority=3)
    q.get_job(plain).retry()
    raw = r.hgetall(k(plain))
    assert not {"finishedOn", "processedOn", "failedReason"} & set(raw)
    assert raw["atm"] == "1" and raw["ats"] == "1" and raw["stacktrace"] == '["Error: boom"]'
    assert r.lrange(k("wait"), 0, -1) == [plain]
    assert events(r, k("events"))[-1] == {"event": "waiting", "jobId": plain, "prev": "failed"}
    q.retry_job(prio, reset_attempts=True)
    assert r.zscore(k("prioritized"), prio) == 3 * PRIO + int(r.get(k("pc")))
    assert "atm" not in r.hgetall(k(prio)) and not r.exists(k("failed"))
    assert r.zscore(k("marker"), "0") == 0


def test_retry_by_id_honours_lifo_bulk_retry_pushes_to_the_head(q: Any, r: redis.Redis, k: Any) -> None:
    """As BullMQ: reprocessJob RPUSHes a lifo job (it runs next); moveJobsToWait LPUSHes everything."""
    plain = add_and_finish(q, "failed", "plain")
    lifo = add_and_finish(q, "failed", "lifo", lifo=True)
    other_lifo = add_and_finish(q, "failed", "lifo2", lifo=True)
    q.get_job(plain).retry()
    q.get_job(lifo).retry()
    assert r.lrange(k("wait"), 0, -1) == [plain, lifo]  # tail = next to run
    assert q.retry_jobs() == 1
    assert r.lrange(k("wait"), 0, -1) == [other_lifo, plain, lifo]


def test_retry_completed_job(q: Any, r: redis.Redis, k: Any) -> None:
    job_id = add_and_finish(q, "completed", "c")
    q.get_job(job_id).retry("completed")
    assert "returnvalue" not in r.hgetall(k(job_id)) and q.get_job_state(job_id) == "waiting"
    assert events(r, k("events"))[-1] == {"event": "waiting", "jobId": job_id, "prev": "completed"}


def test_retry_errors(q: Any) -> None:
    job = q.add("w")
    with pytest.raises(JobStateError) as info:
        job.retry()
    assert info.value.code == -3
    with pytest.raises(JobNotFoundError):
        q.retry_job("nope")
    with pytest.raises(sbqueue.InvalidStateError):
        q.retry_job(job.id, "waiting")


def test_retry_jobs_in_batches_and_by_finish_time(q: Any, r: redis.Redis, k: Any) -> None:
    ids = [add_and_finish(q, "failed", f"f{i}") for i in range(5)]
    r.zadd(k("failed"), {ids[4]: now_ms() + 60_000})  # finished "later" than the cutoff
    r.zadd(k("failed"), {"ghost": 1})  # an id whose hash is gone does not stop the batches
    assert q.retry_jobs(count=2) == 4
    assert r.zrange(k("failed"), 0, -1) == [ids[4]]
    assert q.retry_jobs(timestamp=now_ms() + 120_000) == 1
    assert r.llen(k("wait")) == 5
    assert q.retry_jobs("completed") == 0


def test_promote_job_and_promote_jobs(q: Any, r: redis.Redis, k: Any) -> None:
    a = q.add("a", delay=60_000)
    b = q.add("b", delay=60_000, priority=2)
    a.promote()
    assert r.hget(k(a.id), "delay") == "0" and r.lrange(k("wait"), 0, -1) == [a.id]
    assert events(r, k("events"))[-1] == {"event": "waiting", "jobId": a.id, "prev": "delayed"}
    assert r.zscore(k("marker"), "0") == 0
    with pytest.raises(JobStateError):
        a.promote()
    with pytest.raises(JobNotFoundError):
        q.promote_job("nope")
    q.promote_job(b.id)
    assert r.zscore(k("prioritized"), b.id) == 2 * PRIO + 1
    for i in range(5):
        q.add(f"d{i}", delay=60_000 + i)
    r.zadd(k("delayed"), {"ghost": 0})  # an id whose hash is gone does not stop the batches
    assert q.promote_jobs(count=2) == 5
    assert not r.exists(k("delayed")) and r.llen(k("wait")) == 6


# --- per-job updates ----------------------------------------------------------------------------------------


def test_update_data_and_progress(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("u", {"a": 1})
    job.update_data({"a": 2, "b": [1, 2]})
    assert r.hget(k(job.id), "data") == '{"a":2,"b":[1,2]}' and job.data == {"a": 2, "b": [1, 2]}
    n_events = r.xlen(k("events"))
    job.update_progress(42)
    job.update_progress({"pct": 100, "stage": "done"})
    assert r.hget(k(job.id), "progress") == '{"pct":100,"stage":"done"}'
    assert events(r, k("events"))[n_events:] == [
        {"event": "progress", "jobId": job.id, "data": "42"},
        {"event": "progress", "jobId": job.id, "data": '{"pct":100,"stage":"done"}'},
    ]
    assert q.get_job(job.id).progress == {"pct": 100, "stage": "done"}
    gone = q.add("gone")
    q.remove(gone.id)
    with pytest.raises(JobNotFoundError):
        gone.update_data({})
    with pytest.raises(JobNotFoundError):
        gone.update_progress(1)
    with pytest.raises(JobNotFoundError):
        gone.log("x")


def test_log_keeps_only_keep_logs_lines(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("l", keep_logs=2)
    for i in range(5):
        kept = job.log(f"line {i}")
    assert kept == 2 and r.lrange(k(f"{job.id}:logs"), 0, -1) == ["line 3", "line 4"]
    assert q.get_job(job.id).log("again") == 2  # read back from the stored opts (kl)


def test_change_priority(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("c", priority=10)
    other = q.add("o", priority=1)
    job.change_priority(1)
    assert r.hget(k(job.id), "priority") == "1" and job.priority == 1
    assert r.zscore(k("prioritized"), job.id) == 1 * PRIO + 3
    assert json.loads(r.hget(k(job.id), "opts"))["priority"] == 10  # as BullMQ: opts untouched
    job.change_priority(1, lifo=True)  # ahead of its peers: counter 0
    assert r.zscore(k("prioritized"), job.id) == 1 * PRIO
    assert r.zrange(k("prioritized"), 0, -1) == [job.id, other.id]
    job.change_priority(0)
    assert r.lrange(k("wait"), 0, -1) == [job.id] and r.zrange(k("prioritized"), 0, -1) == [other.id]
    delayed = q.add("d", delay=60_000)
    delayed.change_priority(5)  # stays delayed; the priority is used when it is promoted
    assert r.hget(k(delayed.id), "priority") == "5" and q.get_job_state(delayed.id) == "delayed"
    delayed.promote()
    assert q.get_job_state(delayed.id) == "prioritized"
    with pytest.raises(sbqueue.InvalidOptionError, match="priority"):
        job.change_priority(-1)


def test_change_delay(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("d", delay=600_000)
    before = now_ms()
    job.change_delay(1000)
    due = r.zscore(k("delayed"), job.id) // 4096
    assert before + 1000 <= due <= now_ms() + 1000
    assert r.hget(k(job.id), "delay") == "1000" and job.delay == 1000
    assert events(r, k("events"))[-1] == {"event": "delayed", "jobId": job.id, "delay": str(int(due))}
    assert r.zscore(k("marker"), "1") == due
    waiting = q.add("w")
    with pytest.raises(JobStateError):
        waiting.change_delay(10)
    assert r.lrange(k("wait"), 0, -1) == [waiting.id]


# --- global limits ---------------------------------------------------------------------------------------------


def test_set_global_concurrency_and_rate_limit(q: Any, r: redis.Redis, k: Any) -> None:
    q.set_global_concurrency(4)
    q.set_global_rate_limit(100, 1000)
    assert r.hgetall(k("meta")) == {"concurrency": "4", "max": "100", "duration": "1000"}
    q.set_global_concurrency(None)
    q.set_global_rate_limit(None)
    assert not r.exists(k("meta"))
    with pytest.raises(sbqueue.InvalidOptionError, match="concurrency"):
        q.set_global_concurrency(0)
    with pytest.raises(sbqueue.InvalidOptionError, match="duration_ms"):
        q.set_global_rate_limit(1, -5)
    q.rate_limit(5000)
    assert r.get(k("limiter")) == "9007199254740991" and 0 < r.pttl(k("limiter")) <= 5000


# --- job schedulers ----------------------------------------------------------------------------------------------


def test_upsert_every_scheduler(q: Any, r: redis.Redis, k: Any) -> None:
    before = now_ms()
    job = q.upsert_job_scheduler("every-2s", every=2000, name="tick", data={"t": 1})
    millis = int(job.id.rsplit(":", 1)[1])
    assert job.id == f"repeat:every-2s:{millis}" and before <= millis <= now_ms()
    assert r.hgetall(k("repeat:every-2s")) == {
        "name": "tick", "every": "2000", "offset": str(millis % 2000), "ic": "1", "data": '{"t":1}',
    }  # fmt: skip
    assert r.zscore(k("repeat"), "every-2s") == millis
    raw = r.hgetall(k(job.id))
    assert raw["rjk"] == "every-2s" and raw["data"] == '{"t":1}' and raw["name"] == "tick"
    opts = json.loads(raw["opts"])
    assert opts["repeatJobKey"] == "every-2s" and opts["repeat"] == {"every": 2000, "count": 1}
    assert r.lrange(k("wait"), 0, -1) == [job.id] and r.get(k("id")) == "1"
    assert events(r, k("events")) == [
        {"event": "added", "jobId": job.id, "name": "tick"}, {"event": "waiting", "jobId": job.id},
    ]  # fmt: skip


def test_upsert_cron_scheduler_with_timezone(q: Any, r: redis.Redis, k: Any) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    job = q.upsert_job_scheduler(
        "nightly", pattern="0 30 2 * * *", tz="Asia/Kolkata", name="report", data={"kind": "nightly"},
        opts={"remove_on_complete": True, "attempts": 2},
    )  # fmt: skip
    due = int(job.id.rsplit(":", 1)[1])
    local = dt.datetime.fromtimestamp(due / 1000, ZoneInfo("Asia/Kolkata"))  # UTC+05:30, no DST
    assert (local.hour, local.minute, local.second) == (2, 30, 0) and 0 < due - now_ms() <= 86_400_000
    assert r.hgetall(k("repeat:nightly")) == {
        "name": "report", "pattern": "0 30 2 * * *", "tz": "Asia/Kolkata", "offset": "0", "ic": "1",
        "data": '{"kind":"nightly"}', "opts": '{"attempts":2,"removeOnComplete":true}',
    }  # fmt: skip
    assert r.zrange(k("delayed"), 0, -1, withscores=True) == [(job.id, due * 4096)]
    assert r.hget(k(job.id), "delay") == str(due - int(r.hget(k(job.id), "timestamp")))
    assert events(r, k("events"))[-1] == {"event": "delayed", "jobId": job.id, "delay": str(due)}
    opts = json.loads(r.hget(k(job.id), "opts"))
    assert opts["removeOnComplete"] is True and opts["attempts"] == 2
    # what a Node worker reads to compute the next run: pattern, tz, count, prevMillis
    assert opts["repeat"] == {"pattern": "0 30 2 * * *", "tz": "Asia/Kolkata", "count": 1}
    assert opts["prevMillis"] == due
    five = q.upsert_job_scheduler("five-field", pattern="*/5 * * * *")
    assert int(five.id.rsplit(":", 1)[1]) % 300_000 == 0


def test_upsert_again_replaces_the_pending_iteration(q: Any, r: redis.Redis, k: Any, prefix: str) -> None:
    first = q.upsert_job_scheduler("s", every=60_000, name="tick", data={"t": 1}, start_date=now_ms() + 30_000)
    assert q.get_job_state(first.id) == "delayed"
    n_events = r.xlen(k("events"))
    # same `every`: the pending slot is kept (an idempotent upsert does not run it early), data replaced
    same = q.upsert_job_scheduler("s", every=60_000, name="tick", data={"t": 2})
    assert same.id == first.id and r.hget(k(same.id), "data") == '{"t":2}'
    assert r.hget(k("repeat:s"), "ic") == "1" and r.hget(k("repeat:s"), "data") == '{"t":2}'
    assert r.hget(k("repeat:s"), "offset") == str(int(first.id.rsplit(":", 1)[1]) % 60_000)
    # a new `every` starts a new iteration now; the old one is deleted without a `removed` event
    changed = q.upsert_job_scheduler("s", every=5000, name="tick", data={"t": 3})
    assert changed.id != first.id and not r.exists(k(first.id))
    assert q.get_job_state(changed.id) == "waiting" and r.lrange(k("wait"), 0, -1) == [changed.id]
    assert not r.exists(k("delayed"))
    assert "removed" not in [e["event"] for e in events(r, k("events"))[n_events:]]
    assert r.hget(k("repeat:s"), "every") == "5000" and r.hget(k("repeat:s"), "ic") == "1"
    assert [key for key in job_keys(r, prefix) if key.startswith("repeat:s:")] == [changed.id]


def test_remove_job_scheduler(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.upsert_job_scheduler("nightly", pattern="0 30 2 * * *", tz="UTC")
    other = q.upsert_job_scheduler("keep", every=60_000)
    assert q.remove_job_scheduler("nightly") is True
    assert events(r, k("events"))[-1] == {"event": "removed", "jobId": job.id, "prev": "delayed"}
    assert not r.exists(k("repeat:nightly")) and not r.exists(k(job.id))
    assert r.zrange(k("repeat"), 0, -1) == ["keep"] and not r.exists(k("delayed"))
    assert q.remove_job_scheduler("nightly") is False
    assert [s["id"] for s in q.get_job_schedulers()] == ["keep"]
    assert r.exists(k(other.id))


def test_get_job_schedulers(q: Any, r: redis.Redis, k: Any) -> None:
    assert q.get_job_schedulers() == []
    start = now_ms() + 30_000
    q.upsert_job_scheduler("limited", every=60_000, name="lim", limit=3, start_date=start)
    q.upsert_job_scheduler("cron", pattern="0 30 2 * * *", tz="UTC", name="report", data={"kind": "n"},
                           opts={"attempts": 2})  # fmt: skip
    rows = {row["id"]: row for row in q.get_job_schedulers()}
    assert rows["limited"] == {
        "id": "limited", "key": "limited", "next": start, "name": "lim", "every": 60_000, "offset": start % 60_000,
        "limit": 3, "startDate": start, "ic": 1, "iteration_count": 1, "template": {"data": {}, "opts": {}},
    }  # fmt: skip
    assert rows["cron"]["pattern"] == "0 30 2 * * *" and rows["cron"]["tz"] == "UTC"
    iteration_opts = json.loads(r.hget(k(f"repeat:limited:{start}"), "opts"))
    assert iteration_opts["repeat"] == {"every": 60_000, "limit": 3, "startDate": start, "count": 1}
    assert rows["cron"]["template"] == {"data": {"kind": "n"}, "opts": {"attempts": 2}}
    assert q.get_job_scheduler("cron")["name"] == "report"
    assert q.get_job_scheduler("nope") is None


def test_add_with_repeat_creates_a_scheduler(q: Any, r: redis.Redis, k: Any) -> None:
    job = q.add("report", {"a": 1}, repeat={"every": 1000})
    assert job.id.startswith("repeat:") and q.get_job_state(job.id) == "waiting"
    (row,) = q.get_job_schedulers()
    assert row["every"] == 1000 and row["name"] == "report" and row["template"]["data"] == {"a": 1}
    again = q.add("report", {"a": 2}, repeat={"every": 1000})  # the same scheduler, updated
    assert len(q.get_job_schedulers()) == 1 and again.id == job.id
    named = q.add("report", job_id="rep", repeat={"pattern": "*/5 * * * *", "tz": "Europe/Paris"})
    assert named.id.startswith("repeat:rep:") and q.get_job_scheduler("rep")["tz"] == "Europe/Paris"


def test_scheduler_next_iteration_is_created_when_the_current_one_is_fetched(q: Any, r: redis.Redis, k: Any) -> None:
    first = q.upsert_job_scheduler("s", every=2000, name="tick", data={"t": 1})
    ((job_id, _token),) = fetch(q)
    assert job_id == first.id
    new_id = q._schedule_next(q.get_job(job_id), now_ms())
    millis = int(first.id.rsplit(":", 1)[1])
    assert new_id == f"repeat:s:{millis + 2000}"
    assert r.hget(k("repeat:s"), "ic") == "2" and r.zscore(k("repeat"), "s") == millis + 2000
    assert r.hget(k(new_id), "data") == '{"t":1}' and q.get_job_state(new_id) == "delayed"
    assert json.loads(r.hget(k(new_id), "opts"))["repeat"] == {"every": 2000, "count": 2}
    assert q._schedule_next(q.get_job(job_id), now_ms()) is None  # not the current iteration any more


# --- tolerant readers ---------------------------------------------------------------------------------------------


def test_readers_tolerate_whatever_peers_wrote(q: Any, r: redis.Redis, k: Any) -> None:
    r.hset(k("garbage"), mapping={"name": "g", "data": "{not json", "opts": "[1, 2", "timestamp": "soon", "atm": "x"})
    r.hset(k("bare"), "name", "only-a-name")
    r.hset(k("mangled"), mapping={"data": "{}", "opts": '{"empty":{},"big":9.007199254741e+15,"attempts":0}'})
    r.hset(k("opts-list"), mapping={"opts": "[1]", "stacktrace": '"oops"', "progress": "{"})
    r.lpush(k("wait"), "garbage", "no-hash", "bare", "mangled", "opts-list", "0:123")
    garbage = q.get_job("garbage")
    assert garbage.data == "{not json" and garbage.opts == {} and garbage.timestamp is None
    assert "data" in garbage.parse_error and "opts" in garbage.parse_error and "timestamp" in garbage.parse_error
    bare = q.get_job("bare")
    assert (bare.name, bare.data, bare.opts, bare.delay, bare.attempts_made, bare.parse_error) == (
        "only-a-name", {}, {}, 0, 0, None,
    )  # fmt: skip
    mangled = q.get_job("mangled")
    assert mangled.opts == {"empty": {}, "big": 9.007199254741e15, "attempts": 0} and mangled.max_attempts == 1
    odd = q.get_job("opts-list")
    assert odd.opts == {} and odd.stacktrace == ["oops"] and odd.parse_error
    jobs = q.get_jobs("waiting")
    assert [j.id for j in jobs] == ["opts-list", "mangled", "bare", "garbage"]  # ids without hashes skipped
    assert q.get_job_counts("waiting") == {"waiting": 6}
    assert q.get_job_state("no-hash") == "waiting"


def test_readers_skip_ids_that_name_the_queues_own_keys(q: Any, r: redis.Redis, k: Any) -> None:
    q.add("real")  # creates the events stream, the id string, the meta hash
    r.rpush(k("wait"), "events", "id", "meta")  # garbage a peer left: ids that are not job hashes
    assert q.get_job("events") is None and q.get_job("id") is None
    ids = [j.id for j in q.get_jobs("waiting", asc=True)]
    assert "events" not in ids and "id" not in ids and "1" in ids


def test_scheduler_reader_tolerates_garbage(q: Any, r: redis.Redis, k: Any) -> None:
    r.zadd(k("repeat"), {"bad": 5})
    r.hset(k("repeat:bad"), mapping={"every": "soon", "data": "{", "opts": "]"})
    (row,) = q.get_job_schedulers()
    assert (row["id"], row["every"], row["next"], row["iteration_count"]) == ("bad", "soon", 5, 0)
    assert row["template"] == {"data": "{", "opts": {}}


def test_scheduler_end_date_is_checked_against_now_and_keeps_the_scheduler(q: Any, r: redis.Redis, k: Any) -> None:
    """As Node 6.7.6's JobScheduler (``if (endDate && now > endDate) return``): while ``now`` is not past
    ``end_date`` the next run is made even if it falls after it; once past, no run is made and the scheduler
    stays listed (hash and zset entry unchanged). Observed in job-scheduler.js of the 6.7.6 package."""
    start = now_ms()
    first = q.upsert_job_scheduler("e", every=1000, name="e", end_date=start + 1500)
    ((job_id, _token),) = fetch(q)
    millis = int(first.id.rsplit(":", 1)[1])
    assert q._schedule_next(q.get_job(job_id), start + 1400) == f"repeat:e:{millis + 2000}"  # due after end_date
    ((next_id, _token2),) = fetch(q, now=millis + 2000)
    assert q._schedule_next(q.get_job(next_id), start + 1600) is None
    assert r.zscore(k("repeat"), "e") == millis + 2000 and r.exists(k("repeat:e")) == 1
    assert [s["key"] for s in q.get_job_schedulers()] == ["e"]


def test_add_bulk_entries_without_opts_share_the_queue_defaults(redis_url: str, prefix: str, r: redis.Redis) -> None:
    """Entries without ``opts`` are validated once (the queue's defaults) but keep their own name and data; a bad
    name after them still refuses the whole bulk before anything is written."""
    q = sbqueue.Queue("bulkdef", connection=redis_url, prefix=prefix, default_job_options={"attempts": 3})
    try:
        jobs = q.add_bulk([{"name": "a"}, {"name": "b", "opts": {"priority": 2}}, {"name": "c", "data": {"x": 1}}])
        stored = [r.hmget(f"{prefix}:bulkdef:{j.id}", "name", "data", "opts") for j in jobs]
        assert [(n, d, json.loads(o)) for n, d, o in stored] == [("a", "{}", {"attempts": 3}),
                                                                 ("b", "{}", {"attempts": 3, "priority": 2}),
                                                                 ("c", '{"x":1}', {"attempts": 3})]  # fmt: skip
        assert jobs[2].data == {"x": 1} and jobs[2].opts == {"attempts": 3} and jobs[0].opts is not jobs[2].opts
        before = snapshot(r, prefix)
        with pytest.raises(sbqueue.InvalidOptionError, match="job name"):
            q.add_bulk([{"name": "ok"}, {"name": "fine"}, {"name": 7}])
        assert snapshot(r, prefix) == before
    finally:
        q.close()
