"""Malformed data found in Redis (a buggy peer wrote it): garbage JSON in data/opts/returnvalue/progress, missing
fields, non-numeric timestamps, ids without hashes in wait/active/delayed/prioritized, keys of the wrong type,
bytes that are not UTF-8.

* the Worker fails an unreadable job with a clear reason (data/opts), runs what it can read, drops ids without a
  hash (an id whose key is not a hash is dropped with a ``failed`` event saying so), and keeps running — also
  when a queue key itself has the wrong type (it reports errors and backs off: no crash, no busy loop);
* ``Inspector.jobs()`` flags every malformed row in ``parse_error``;
* the Queue getters return what they can and never crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.inspection import Inspector
from sbqueue.inspection.schemas import check_frame
from tests.processors import stream_events, wait_for

Q = "mal"
DEEP = "[" * 5000 + "]" * 5000  # valid JSON, deeper than Python's parser goes


def plant(r: redis.Redis, prefix: str) -> dict[str, str]:
    """Write the malformed jobs; returns id -> what the worker must do with it (completed/failed/dropped)."""
    k = f"{prefix}:{Q}:"
    now = int(time.time() * 1000)
    hashes: dict[str, dict[str, Any]] = {
        "garbage-data": {"name": "g", "data": "{not json", "opts": "{}", "timestamp": now},
        "garbage-opts": {"name": "g", "data": "{}", "opts": "[1, 2", "timestamp": now},
        "opts-list": {"name": "g", "data": "{}", "opts": "[1]", "timestamp": now},
        "nan-opts": {"name": "g", "data": "{}", "opts": '{"attempts": NaN, "timeout": Infinity}'},
        "deep-data": {"name": "g", "data": DEEP, "opts": "{}"},
        "garbage-returnvalue": {"name": "ok", "data": '{"n": 1}', "opts": "{}", "returnvalue": "nope{"},
        "garbage-progress": {"name": "ok", "data": "{}", "opts": "{}", "progress": "{", "stacktrace": "oops"},
        "name-only": {"name": "ok"},
        "bad-numbers": {"name": "ok", "data": "{}", "timestamp": "yesterday", "processedOn": "x", "atm": "many",
                        "ats": "-", "stc": "1e999", "delay": "soon", "priority": "high", "finishedOn": "inf"},
        "huge-numbers": {"name": "ok", "data": "{}", "opts": '{"attempts": 1e400, "timeout": 1e300}',
                         "timestamp": "1e400"},
    }  # fmt: skip
    for job_id, fields in hashes.items():
        r.hset(k + job_id, mapping=fields)
    r.hset(k + "not-utf8", mapping={"name": b"ok", "data": b'{"x": "\xff\xfe"}', "opts": b"{}"})
    r.set(k + "string-key", "a string where a hash should be")
    r.rpush(k + "list-key", "a", "list")
    r.rpush(k + "wait", *hashes, "not-utf8", "no-hash", "string-key", "list-key", "0:legacy")
    # ids in the other state keys: due delayed, prioritized, active (stalled check)
    r.hset(k + "delayed-ok", mapping={"name": "ok", "data": "{}", "opts": '{"delay": 1}'})
    r.set(k + "delayed-string", "x")
    r.zadd(k + "delayed", {"delayed-ok": 4096, "delayed-nohash": 4096, "delayed-string": 4096})
    r.hset(k + "prio-ok", mapping={"name": "ok", "data": "{}", "opts": '{"priority": 2}', "priority": "2"})
    r.set(k + "prio-string", "x")
    r.zadd(k + "prioritized", {"prio-ok": 2 * 2**32, "prio-nohash": 2 * 2**32 + 1, "prio-string": 2 * 2**32 + 2})
    r.hset(k + "active-ok", mapping={"name": "ok", "data": "{}", "opts": "{}"})
    r.set(k + "active-string", "x")
    r.rpush(k + "active", "active-ok", "active-nohash", "active-string")  # locks gone: their worker died
    expected = {job_id: "failed" for job_id in ("garbage-data", "garbage-opts", "opts-list", "nan-opts", "deep-data")}
    expected |= {job_id: "completed" for job_id in ("garbage-returnvalue", "garbage-progress", "name-only",
                                                    "bad-numbers", "huge-numbers", "not-utf8", "delayed-ok",
                                                    "prio-ok", "active-ok")}  # fmt: skip
    expected |= {job_id: "dropped" for job_id in ("no-hash", "string-key", "list-key", "0:legacy", "delayed-nohash",
                                                  "delayed-string", "prio-nohash", "prio-string", "active-nohash",
                                                  "active-string")}  # fmt: skip
    return expected


@pytest.fixture
def worker_factory(r: redis.Redis, prefix: str) -> Iterator[Any]:
    made: list[sbqueue.Worker] = []

    def make(queue: str = Q, **kw: Any) -> tuple[sbqueue.Worker, list[BaseException]]:
        errors: list[BaseException] = []
        w = sbqueue.Worker(queue, lambda job: job.data, r, prefix, **{"drain_delay": 0.3, **kw})
        w.on("error", errors.append)
        made.append(w)
        return w.start(), errors

    yield make
    for w in made:
        w.close(timeout=2)


def test_worker_fails_drops_and_keeps_running(r: redis.Redis, redis_url: str, prefix: str,
                                              worker_factory: Any) -> None:  # fmt: skip
    expected = plant(r, prefix)
    q = sbqueue.Queue(Q, redis_url, prefix=prefix)
    worker, errors = worker_factory(stalled_interval=150, max_stalled_count=5)
    done = {"completed", "failed"}

    def settled() -> bool:
        return all(q.get_job_state(i) in done for i, what in expected.items() if what != "dropped")

    wait_for(settled, 15, interval=0.05, what="every readable job to settle")
    wait_for(lambda: not q.get_job_ids("active"), 5, interval=0.05, what="active to empty")
    assert worker.running, "the worker stopped"
    for job_id, what in expected.items():
        state = q.get_job_state(job_id)
        if what == "dropped":
            assert state == "unknown", (job_id, state)
        else:
            assert state == what, (job_id, state, q.get_job(job_id))
    reasons = {i: q.get_job(i).failed_reason for i, what in expected.items() if what == "failed"}
    assert all("not valid JSON" in (reason or "") for reason in reasons.values()), reasons
    assert "data" in reasons["garbage-data"] and "opts" in reasons["garbage-opts"] and "NaN" in reasons["nan-opts"]
    assert "nested too deeply" in reasons["deep-data"]
    assert q.get_job("garbage-returnvalue").returnvalue == {"n": 1}  # the garbage was overwritten
    assert "\ufffd" in q.get_job("not-utf8").returnvalue["x"]
    events = stream_events(r, prefix, Q)
    dropped = {e["jobId"]: e["failedReason"] for e in events if e["event"] == "failed" and "not a hash" in
               e.get("failedReason", "")}  # fmt: skip
    assert dropped == {"string-key": "job key is a string, not a hash: dropped",
                       "list-key": "job key is a list, not a hash: dropped",
                       "delayed-string": "job key is a string, not a hash: dropped",
                       "prio-string": "job key is a string, not a hash: dropped"}  # fmt: skip
    assert r.get(f"{prefix}:{Q}:string-key") == "a string where a hash should be"  # the peer's key is left alone
    q.add("after", {"still": "working"})
    wait_for(lambda: q.get_job_state(q.get_job_ids("completed", 0, 0)[0]) == "completed"
             and q.get_job_counts("waiting")["waiting"] == 0, 5, what="a normal job after all that")  # fmt: skip
    assert worker.running and not errors, errors


def test_inspector_flags_every_malformed_row(r: redis.Redis, prefix: str) -> None:
    plant(r, prefix)
    with Inspector(r, prefix, progress=False) as insp:
        jobs = insp.jobs(Q)
        check_frame("jobs", jobs)
        rows = jobs.set_index("id")
        for job_id, part in (("garbage-data", "data: invalid JSON"), ("garbage-opts", "opts: invalid JSON"),
                             ("opts-list", "opts: not a JSON object"), ("deep-data", "data: invalid JSON"),
                             ("garbage-returnvalue", "returnvalue"), ("garbage-progress", "progress"),
                             ("bad-numbers", "timestamp: not a number"), ("huge-numbers", "timestamp"),
                             ("no-hash", "hash missing"), ("string-key", "WRONGTYPE"), ("list-key", "WRONGTYPE"),
                             ("prio-nohash", "hash missing"), ("active-string", "WRONGTYPE")):  # fmt: skip
            error = rows.loc[job_id].parse_error
            assert isinstance(error, str) and part in error, (job_id, error)
        assert rows.parse_error.isna()["name-only"] and rows.parse_error.isna()["active-ok"]
        assert "\ufffd" in rows.loc["not-utf8"].data["x"]
        for method, args in (("failures", (Q,)), ("stalled", (Q,)), ("consistency", (Q,)), ("events", (Q,)),
                             ("timeline", (Q, "deep-data")), ("queues", ()), ("memory_by_queue", ()),
                             ("schedulers", (Q,))):  # fmt: skip
            check_frame(method, getattr(insp, method)(*args))


def test_queue_getters_never_crash(r: redis.Redis, redis_url: str, prefix: str) -> None:
    """Getters of a Queue made from a URL (sbqueue's client decodes non-UTF-8 bytes as U+FFFD; a redis client
    passed in keeps its own ``encoding_errors``)."""
    plant(r, prefix)
    k = f"{prefix}:{Q}:"
    r.hset(k + "metrics:completed", mapping={"count": "lots", "prevTS": "soon", "prevCount": "1e999"})
    r.rpush(k + "metrics:completed:data", "1", "many", "")
    r.hset(k + "meta", mapping={"concurrency": "many", "max": "ten", "duration": "1e999", "paused": "yes"})
    r.zadd(k + "repeat", {"broken": 5, "stringy": 6})
    r.hset(k + "repeat:broken", mapping={"every": "soon", "data": DEEP, "opts": "]", "limit": "x"})
    r.set(k + "repeat:stringy", "not a hash")
    r.set(k + "no-hash:logs", "not a list")
    q = sbqueue.Queue(Q, redis_url, prefix=prefix)
    jobs = q.get_jobs()
    assert {j.id for j in jobs} >= {"garbage-data", "deep-data", "name-only", "not-utf8"}
    assert "string-key" not in {j.id for j in jobs}  # no hash: skipped
    for job_id in ("garbage-data", "deep-data", "nan-opts", "bad-numbers", "huge-numbers", "not-utf8"):
        job = q.get_job(job_id)
        assert job is not None and job.id == job_id
        assert isinstance(job.max_attempts, int) and (job.timeout is None or job.timeout < 2**53)
        assert job.created_at is None or job.created_at.year > 1970
    assert q.get_job("string-key") is None and q.get_job("list-key") is None
    assert q.get_job_state("string-key") == "waiting"
    assert q.get_job_counts()["waiting"] == 15
    assert q.get_metrics("completed")["meta"]["count"] == 0
    assert q.get_metrics("completed")["data"] == [1, 0, 0]
    assert q.get_global_concurrency() is None and q.get_global_rate_limit() is None
    assert q.is_paused() and q.get_meta()["concurrency"] == "many"
    schedulers = {s["id"]: s for s in q.get_job_schedulers()}
    assert schedulers["broken"]["every"] == "soon" and schedulers["stringy"]["template"] == {"data": {}, "opts": {}}
    assert q.get_job_scheduler("stringy") is not None
    assert q.get_job_logs("no-hash") == {"logs": [], "count": 0}
    q.close()


def test_wrong_type_queue_keys_do_not_stop_the_worker(r: redis.Redis, prefix: str, worker_factory: Any) -> None:
    """``wait`` and ``marker`` of the wrong type: every round trip fails — the worker reports it, backs off
    (no busy loop) and carries on once the key is repaired."""
    k = f"{prefix}:broken:"
    r.set(k + "wait", "not a list")
    r.set(k + "marker", "not a zset")
    worker, errors = worker_factory("broken")
    time.sleep(2.0)
    assert worker.running
    assert 1 <= len(errors) <= 6, f"{len(errors)} errors in 2 s: no backoff?"
    assert all("WRONGTYPE" in str(e) for e in errors)
    r.delete(k + "wait", k + "marker")
    q = sbqueue.Queue("broken", r, prefix=prefix)
    job = q.add("fixed", {"ok": True})
    wait_for(lambda: q.get_job_state(job.id) == "completed", 15, interval=0.05, what="the job after the repair")
    assert worker.running


# --- a job key of another type must not block the tools an operator reaches for -----------------------------------
def _queue_with_foreign_job(r: redis.Redis, prefix: str, name: str, state: str) -> tuple[sbqueue.Queue, str, str]:
    """A queue with two jobs in ``state``; the first job's key was overwritten by a peer with a string."""
    q = sbqueue.Queue(name, r, prefix=prefix)
    delay = 60_000 if state == "delayed" else None
    bad, good = q.add("x", 1, delay=delay).id, q.add("x", 2, delay=delay).id
    if state in ("failed", "completed"):
        for job_id, finished in ((bad, 1), (good, 2)):
            r.lrem(q.keys.key("wait"), 0, job_id)
            r.zadd(q.keys.key(state), {job_id: finished})
            r.hset(q.keys.key(job_id), "finishedOn", finished)
    r.delete(q.keys.key(bad))
    r.set(q.keys.key(bad), "garbage from a peer")
    return q, bad, good


@pytest.mark.parametrize("state", ["wait", "delayed", "completed", "failed"])
def test_clean_drain_remove_obliterate_get_past_a_job_key_of_another_type(r: redis.Redis, prefix: str,
                                                                          state: str) -> None:  # fmt: skip
    q, bad, good = _queue_with_foreign_job(r, prefix, f"fx{state}", state)
    assert sorted(q.clean(0, 100, state)) == sorted([bad, good])  # no time to read: counts as old
    assert r.exists(q.keys.key(bad), q.keys.key(good)) == 0
    q, bad, good = _queue_with_foreign_job(r, prefix, f"fr{state}", state)
    assert q.remove(bad) is True and r.exists(q.keys.key(bad)) == 0
    assert q.get_job_state(good) == ("waiting" if state == "wait" else state)
    q, bad, good = _queue_with_foreign_job(r, prefix, f"fd{state}", state)
    if state in ("wait", "delayed"):
        assert q.drain(delayed=True) == 2
    q.obliterate(force=True)
    assert list(r.scan_iter(match=f"{prefix}:fd{state}:*")) == []


@pytest.mark.parametrize("state", ["completed", "failed"])
def test_retry_drops_an_unreadable_job_says_so_and_retries_the_rest(r: redis.Redis, prefix: str, state: str) -> None:
    q, bad, good = _queue_with_foreign_job(r, prefix, f"rt{state}", state)
    with pytest.raises(sbqueue.DataError, match=f"job {bad} is unreadable: its key is not a hash"):
        q.retry_job(bad, state)
    assert q.get_job_ids(state) == [good]  # dropped from the state; its key is left for inspection
    assert r.get(q.keys.key(bad)) == "garbage from a peer"
    assert q.retry_jobs(state) == 1 and q.get_job_state(good) == "waiting"
    q2, bad2, good2 = _queue_with_foreign_job(r, prefix, f"rb{state}", state)
    assert q2.retry_jobs(state, count=1) == 1  # the unreadable one costs an examined slot, not an endless loop
    assert q2.get_job_ids(state) == [] and q2.get_job_state(good2) == "waiting"
    failed_events = [e for e in stream_events(r, prefix, f"rb{state}") if e.get("event") == "failed"]
    assert [(e["jobId"], e["prev"]) for e in failed_events] == [(bad2, state)]
    assert "job key is a string, not a hash: dropped" in failed_events[0]["failedReason"]


def test_promote_drops_an_unreadable_delayed_job_and_promotes_the_rest(r: redis.Redis, prefix: str) -> None:
    q, bad, good = _queue_with_foreign_job(r, prefix, "pr", "delayed")
    with pytest.raises(sbqueue.DataError, match="promote dropped it"):
        q.promote_job(bad)
    assert q.get_job_ids("delayed") == [good]
    assert q.promote_jobs() == 1 and q.get_job_state(good) == "waiting"


def test_updates_of_an_unreadable_job_are_refused_and_change_nothing(r: redis.Redis, prefix: str) -> None:
    from tests.conftest import snapshot

    q, bad, _good = _queue_with_foreign_job(r, prefix, "up", "delayed")
    before = snapshot(r, prefix)
    for call in (lambda: q.update_job_data(bad, {"a": 1}), lambda: q.update_job_progress(bad, 50),
                 lambda: q.add_job_log(bad, "line")):  # fmt: skip
        with pytest.raises(sbqueue.DataError, match="refused, nothing changed"):
            call()
    assert snapshot(r, prefix) == before


def test_stalled_recovery_drops_an_unreadable_active_job(r: redis.Redis, prefix: str) -> None:
    """The runbook reports it under "hash missing" and recovers the rest; the script itself drops it (-13)."""
    from sbqueue import runbook

    q = sbqueue.Queue("stl", r, prefix=prefix)
    bad, good = q.add("x", 1).id, q.add("x", 2).id
    for job_id in (bad, good):  # both "active" with no worker and no lock
        r.lrem(q.keys.key("wait"), 0, job_id)
        r.lpush(q.keys.key("active"), job_id)
    r.delete(q.keys.key(bad))
    r.set(q.keys.key(bad), "garbage from a peer")
    finding = runbook.diagnose_stalled(q)
    assert finding.checks.set_index("check").loc["hash missing", "result"]
    assert finding.apply(confirm=True) == [f"requeued job {good}"]
    assert q.get_job_ids("active") == [bad] and q.get_job_state(good) == "waiting"
    codes = q._run("recover_stalled", [int(time.time() * 1000), "requeue", "1", "operator", 1, bad])
    assert [int(c) for c in codes] == [-13]
    assert q.get_job_ids("active") == [] and r.get(q.keys.key(bad)) == "garbage from a peer"
