"""The Node side of the interop suite on its own: driver.js drives real BullMQ 6.7.6 on the test Redis.

These tests pin the driver's contract (what each action does and returns) before the cross-language
scenarios use it; assertions are made both through the driver and directly on the Redis keys.
"""

from __future__ import annotations

import itertools
import time

import pytest
import redis

from tests.interop import nodebridge
from tests.interop.nodebridge import NodeDriver

Q = "q"


def k(prefix: str, *parts: str) -> str:
    """The Redis key ``<prefix>:q:<parts...>``."""
    return ":".join((prefix, Q, *parts))


def by_name(inspected: dict) -> dict[str, dict]:
    """Jobs of an ``inspect`` result keyed by job name."""
    return {job["name"]: job for job in inspected["jobs"] if not job.get("missing")}


def test_node_available_fails_clearly_without_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """No node on PATH -> a RuntimeError telling to run `make node` (the suite errors, it never skips)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match=r"run make node"):
        nodebridge.node_available()


def test_unknown_action_reports_error(node: NodeDriver, prefix: str) -> None:
    """A failing action raises with the driver's error message."""
    with pytest.raises(nodebridge.NodeDriverError, match="unknown action"):
        node.run(prefix, Q, "no-such-action")


def test_unreachable_redis_fails_fast() -> None:
    """A wrong URL is an immediate error, not BullMQ's endless reconnect loop."""
    nodebridge.node_available()
    t0 = time.monotonic()
    with pytest.raises(nodebridge.NodeDriverError, match="cannot reach Redis"):
        nodebridge.run("redis://127.0.0.1:1/0", "sbqt-none", Q, "isPaused", timeout=20)
    assert time.monotonic() - t0 < 10


def test_add_every_kind_then_inspect(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Plain, lifo, priority, delayed, custom-id (x2) and dedup (x2) adds land where BullMQ puts them."""
    res = node.run(
        prefix,
        Q,
        "add",
        jobs=[
            {"name": "plain-a", "data": {"n": 1}},
            {"name": "plain-b", "data": {"n": 2}},
            {"name": "lifo", "data": {"n": 3}, "opts": {"lifo": True}},
            {"name": "prio-1", "data": {"n": 4}, "opts": {"priority": 1}},
            {"name": "prio-5", "data": {"n": 5}, "opts": {"priority": 5}},
            {"name": "delayed", "data": {"n": 6}, "opts": {"delay": 600_000}},
            {"name": "custom", "data": {"first": True}, "opts": {"jobId": "my-id"}},
            {"name": "custom", "data": {"second": True}, "opts": {"jobId": "my-id"}},
            {"name": "dedup", "data": {"v": 1}, "opts": {"deduplication": {"id": "D", "ttl": 60_000}}},
            {"name": "dedup", "data": {"v": 2}, "opts": {"deduplication": {"id": "D", "ttl": 60_000}}},
            {"name": "retrying", "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": 100}}},
        ],
    )
    # the id counter advances on every add, including the duplicate custom id and the dedup hit
    assert res["ids"] == ["1", "2", "3", "4", "5", "6", "my-id", "my-id", "9", "9", "11"]
    assert r.get(k(prefix, "id")) == "11"

    info = node.run(prefix, Q, "inspect")
    assert info["counts"] == {
        "active": 0,
        "completed": 0,
        "delayed": 1,
        "failed": 0,
        "prioritized": 2,
        "waiting": 6,
        "waiting-children": 0,
    }
    assert info["countsAll"]["paused"] == 0
    assert info["countsAll"]["wait"] == 6
    assert info["isPaused"] is False
    # next to run first: the lifo job (tail of wait), then FIFO; prioritized by priority
    assert info["ranges"]["wait"] == ["3", "1", "2", "my-id", "9", "11"]
    assert info["ranges"]["prioritized"] == ["4", "5"]
    assert info["ranges"]["delayed"] == ["6"]
    assert r.lrange(k(prefix, "wait"), 0, -1) == ["11", "9", "my-id", "2", "1", "3"]
    assert r.get(k(prefix, "de", "D")) == "9"

    jobs = by_name(info)
    assert jobs["custom"]["data"] == {"first": True}
    assert jobs["prio-5"]["priority"] == 5
    assert jobs["prio-5"]["state"] == "prioritized"
    assert jobs["delayed"]["delay"] == 600_000
    assert jobs["delayed"]["state"] == "delayed"
    assert jobs["dedup"]["deduplicationId"] == "D"
    assert jobs["retrying"]["opts"]["attempts"] == 3
    assert jobs["retrying"]["opts"]["backoff"] == {"type": "fixed", "delay": 100}
    assert jobs["plain-a"]["attemptsMade"] == 0
    assert info["meta"]["version"] == "bullmq:6.7.6"
    assert r.hget(k(prefix, "meta"), "version") == "bullmq:6.7.6"

    one = node.run(prefix, Q, "inspect", ids=["4", "nope"])
    assert [j["id"] for j in one["jobs"]] == ["4", "nope"]
    assert one["jobs"][1] == {"id": "nope", "missing": True, "state": "unknown"}


def test_work_processes_in_bullmq_order(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """One worker, concurrency 1: lifo, then wait FIFO, then prioritized by priority; results readable."""
    names = ["prio-2", "prio-1", "plain-a", "plain-b", "lifo-c", "prio-1b"]
    opts = [{"priority": 2}, {"priority": 1}, {}, {}, {"lifo": True}, {"priority": 1}]
    node.run(
        prefix,
        Q,
        "add",
        jobs=[{"name": n, "data": {"n": n}, "opts": o} for n, o in zip(names, opts, strict=True)],
    )
    res = node.run(
        prefix,
        Q,
        "work",
        count=6,
        returnValue="echo",
        progress=True,
        workerOpts={"name": "node-w"},
    )
    assert res["stoppedBy"] == "count"
    assert [p["name"] for p in res["processed"]] == [
        "lifo-c",
        "plain-a",
        "plain-b",
        "prio-1",
        "prio-1b",
        "prio-2",
    ]
    assert res["order"] == [p["id"] for p in res["processed"]]
    assert all(p["state"] == "completed" and p["final"] and p["attemptsMade"] == 1 for p in res["processed"])
    assert all(p["startedAt"] <= p["finishedAt"] for p in res["processed"])
    assert [e["event"] for e in res["events"]] == ["completed"] * 6
    assert res["worker"]["name"] == "node-w"

    info = node.run(prefix, Q, "inspect")
    assert info["counts"]["completed"] == 6
    assert info["counts"]["waiting"] == info["counts"]["prioritized"] == 0
    job = by_name(info)["plain-a"]
    assert job["returnvalue"] == {"n": "plain-a"}
    assert job["progress"] == 50
    assert job["logs"] == ["node log line"]
    assert job["processedBy"] == "node-w"
    assert job["state"] == "completed"
    assert r.hget(k(prefix, job["id"]), "pb") == "node-w"


def test_failures_attempts_and_retry(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """failWith + attempts/backoff, UnrecoverableError, then retryJobs -> a clean worker completes them."""
    ids = node.run(
        prefix,
        Q,
        "add",
        jobs=[
            {"name": "bad", "data": {}, "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": 50}}},
            {"name": "unrec", "data": {}, "opts": {"attempts": 5}},
            {"name": "flaky", "data": {}, "opts": {"attempts": 2}},
            {"name": "fine", "data": {}},
        ],
    )["ids"]
    res = node.run(
        prefix,
        Q,
        "work",
        count=4,
        failWith={"bad": "boom", "flaky": {"message": "first time only", "times": 1}},
        unrecoverable=["unrec"],
    )
    assert res["stoppedBy"] == "count"
    finals = {p["name"]: p for p in res["processed"] if p["final"]}
    assert set(finals) == {"bad", "unrec", "flaky", "fine"}
    assert finals["bad"]["state"] == "failed"
    assert finals["bad"]["attemptsMade"] == 3
    assert finals["unrec"]["attemptsMade"] == 1
    assert finals["flaky"]["state"] == "completed"
    assert finals["flaky"]["attemptsMade"] == 2
    assert res["order"].count(ids[0]) == 3
    retried = [p for p in res["processed"] if not p["final"]]
    assert sorted(p["name"] for p in retried) == ["bad", "bad", "flaky"]

    info = node.run(prefix, Q, "inspect", states=["failed"])
    assert info["counts"]["failed"] == 2
    jobs = by_name(info)
    assert jobs["bad"]["failedReason"] == "boom"
    assert jobs["bad"]["attemptsMade"] == 3
    assert jobs["bad"]["attemptsStarted"] == 3
    assert jobs["bad"]["stacktrace"] and "boom" in jobs["bad"]["stacktrace"][-1]
    assert jobs["unrec"]["failedReason"] == "unrecoverable unrec"
    assert "UnrecoverableError" in jobs["unrec"]["stacktrace"][0]
    assert r.hget(k(prefix, ids[0]), "failedReason") == "boom"
    assert r.hget(k(prefix, ids[0]), "atm") == "3"

    node.run(prefix, Q, "retryJobs", state="failed")
    assert node.run(prefix, Q, "inspect", ids=[])["counts"]["waiting"] == 2
    again = node.run(prefix, Q, "work", count=2)
    assert sorted(p["name"] for p in again["processed"]) == ["bad", "unrec"]
    assert all(p["state"] == "completed" for p in again["processed"])

    # single-job retry of a completed job
    retry = node.run(prefix, Q, "retryJob", jobId=ids[3])
    assert retry["before"] == "completed"
    assert retry["state"] == "waiting"


def test_hang_then_kill9_leaves_locked_active_job(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """A hung Node worker killed with -9 leaves its job active and locked; a Node rescuer recovers it."""
    (job_id,) = node.run(prefix, Q, "add", jobs=[{"name": "victim", "data": {"v": 1}}])["ids"]
    with node.spawn(
        prefix,
        Q,
        "work",
        hang=True,
        workerOpts={"name": "victim-w", "lockDuration": 2500, "stalledInterval": 500},
    ) as proc:
        ready = proc.wait_ready(timeout=20)
        assert ready["active"] == [job_id]
        proc.kill9()
        assert proc.returncode == -9
    assert r.lrange(k(prefix, "active"), 0, -1) == [job_id]
    assert r.exists(k(prefix, job_id, "lock")) == 1
    assert 0 < r.pttl(k(prefix, job_id, "lock")) <= 2500
    info = node.run(prefix, Q, "inspect", ids=[job_id])
    assert info["counts"]["active"] == 1
    assert info["jobs"][0]["state"] == "active"
    assert info["jobs"][0]["processedBy"] == "victim-w"

    t0 = time.monotonic()
    res = node.run(
        prefix,
        Q,
        "work",
        count=1,
        timeoutMs=8000,
        workerOpts={"name": "rescuer", "lockDuration": 1500, "stalledInterval": 300},
    )
    assert res["stoppedBy"] == "count", res
    assert time.monotonic() - t0 < 8
    assert {"event": "stalled", "id": job_id, "prev": "active"} in res["events"]
    assert [p["id"] for p in res["processed"]] == [job_id]
    job = node.run(prefix, Q, "inspect", ids=[job_id])["jobs"][0]
    assert job["state"] == "completed"
    assert job["stalledCounter"] == 1
    assert job["attemptsStarted"] == 2
    assert job["processedBy"] == "rescuer"


def test_events_see_added_active_completed(node: NodeDriver, prefix: str) -> None:
    """QueueEvents from the stream start: fields as BullMQ parses them (returnvalue/progress as JSON)."""
    ids = node.run(prefix, Q, "add", jobs=[{"name": "e1", "data": {"x": 1}}, {"name": "e2", "data": {"x": 2}}])["ids"]
    node.run(prefix, Q, "work", count=2, returnValue={"ok": True}, progress=True)
    res = node.run(prefix, Q, "events", until={"completed": 2}, ms=5000)
    assert res["satisfied"] is True
    events = res["events"]
    added = [e for e in events if e["event"] == "added"]
    assert [(e["jobId"], e["name"]) for e in added] == [(ids[0], "e1"), (ids[1], "e2")]
    completed = [e for e in events if e["event"] == "completed"]
    assert [e["jobId"] for e in completed] == ids
    assert all(e["returnvalue"] == {"ok": True} and e["prev"] == "active" for e in completed)
    assert {"event", "eventId", "jobId", "data"} <= set(next(e for e in events if e["event"] == "progress"))
    assert [e["event"] for e in events if e.get("jobId") == ids[0]] == [
        "added",
        "waiting",
        "active",
        "progress",
        "completed",
    ]
    assert all("-" in e["eventId"] for e in events)


def test_events_live_from_now(node: NodeDriver, prefix: str) -> None:
    """A spawned reader with lastEventId "$" sees only what happens after it is ready."""
    node.run(prefix, Q, "add", jobs=[{"name": "before"}])
    with node.spawn(prefix, Q, "events", lastEventId="$", until=["added"], ms=5000) as proc:
        proc.wait_ready(timeout=20)
        node.run(prefix, Q, "add", jobs=[{"name": "after"}])
        res = proc.result(timeout=20)
    assert res["satisfied"] is True
    assert [e["name"] for e in res["events"] if e["event"] == "added"] == ["after"]


def test_pause_resume_clean_drain_remove(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Queue maintenance actions and what they leave in Redis."""
    assert node.run(prefix, Q, "pause") == {"ok": True, "isPaused": True}
    assert r.hget(k(prefix, "meta"), "paused") == "1"
    ids = node.run(
        prefix,
        Q,
        "add",
        jobs=[
            {"name": "w1"},
            {"name": "w2"},
            {"name": "d", "opts": {"delay": 600_000}},
            {"name": "p", "opts": {"priority": 3}},
        ],
    )["ids"]
    assert node.run(prefix, Q, "isPaused") == {"isPaused": True}
    paused = node.run(prefix, Q, "work", idleMs=300)
    assert paused["processed"] == [] and paused["stoppedBy"] == "idle"
    info = node.run(prefix, Q, "inspect", ids=[])
    assert info["counts"]["waiting"] == 2 and info["isPaused"] is True

    assert node.run(prefix, Q, "promote", jobId=ids[2]) == {"ok": True, "state": "waiting"}
    assert node.run(prefix, Q, "removeJob", jobId=ids[0]) == {"removed": 1}
    assert r.exists(k(prefix, ids[0])) == 0
    assert node.run(prefix, Q, "resume") == {"ok": True, "isPaused": False}
    done = node.run(prefix, Q, "work", count=3)
    assert [p["name"] for p in done["processed"]] == ["w2", "d", "p"]

    cleaned = node.run(prefix, Q, "clean", grace=0, limit=2, type="completed")
    assert len(cleaned["ids"]) == 2
    assert node.run(prefix, Q, "inspect", ids=[])["counts"]["completed"] == 1

    node.run(prefix, Q, "add", jobs=[{"name": "x"}, {"name": "y", "opts": {"delay": 600_000}}])
    node.run(prefix, Q, "drain")
    counts = node.run(prefix, Q, "inspect", ids=[])["counts"]
    assert counts["waiting"] == 0 and counts["delayed"] == 1
    node.run(prefix, Q, "drain", delayed=True)
    assert node.run(prefix, Q, "inspect", ids=[])["counts"]["delayed"] == 0

    node.run(prefix, Q, "obliterate", force=True)
    assert not r.exists(k(prefix, "meta"), k(prefix, "completed"), k(prefix, "events"), k(prefix, "id"))


def test_schedulers_every_and_pattern(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """upsertScheduler (every + cron pattern), a Node worker runs iterations, removeScheduler stops it."""
    first = node.run(
        prefix,
        Q,
        "upsertScheduler",
        schedulerId="tick",
        repeat={"every": 400},
        template={"name": "tick-job", "data": {"t": 1}, "opts": {"attempts": 2}},
    )
    assert first["id"].startswith("repeat:tick:")
    cron = node.run(
        prefix,
        Q,
        "upsertScheduler",
        schedulerId="nightly",
        repeat={"pattern": "0 30 2 * * *", "tz": "UTC"},
        template={"name": "report"},
    )
    assert cron["id"].startswith("repeat:nightly:")
    assert int(cron["id"].rsplit(":", 1)[1]) % 60_000 == 0
    schedulers = {s["key"]: s for s in node.run(prefix, Q, "getSchedulers")["schedulers"]}
    assert set(schedulers) == {"tick", "nightly"}
    assert schedulers["tick"]["every"] == 400
    assert schedulers["nightly"]["pattern"] == "0 30 2 * * *"
    assert r.hget(k(prefix, "repeat", "tick"), "every") == "400"

    res = node.run(prefix, Q, "work", count=2, timeoutMs=5000)
    assert res["stoppedBy"] == "count"
    assert [p["name"] for p in res["processed"]] == ["tick-job", "tick-job"]
    assert all(p["id"].startswith("repeat:tick:") for p in res["processed"])
    assert res["processed"][0]["data"] == {"t": 1}

    assert node.run(prefix, Q, "removeScheduler", schedulerId="tick") == {"removed": True}
    left = node.run(prefix, Q, "getSchedulers")["schedulers"]
    assert [s["key"] for s in left] == ["nightly"]
    assert not r.exists(k(prefix, "repeat", "tick"))


def test_worker_limiter_spaces_jobs(node: NodeDriver, prefix: str) -> None:
    """A Worker ``limiter`` (passed through workerOpts) runs at most ``max`` jobs per window."""
    node.run(prefix, Q, "add", jobs=[{"name": f"rl{i}"} for i in range(4)])
    res = node.run(
        prefix,
        Q,
        "work",
        count=4,
        concurrency=4,
        timeoutMs=8000,
        workerOpts={"limiter": {"max": 2, "duration": 800}},
    )
    assert res["stoppedBy"] == "count"
    starts = sorted(p["startedAt"] for p in res["processed"])
    assert starts[1] - starts[0] < 500
    assert starts[2] - starts[0] >= 700  # the second pair waited for the next window


def test_global_rate_limit_and_concurrency(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """setGlobalRateLimit / setGlobalConcurrency write meta and a Node worker honours them."""
    assert node.run(prefix, Q, "setGlobalRateLimit", max=2, duration=800) == {"ok": True}
    assert node.run(prefix, Q, "setGlobalConcurrency", concurrency=1) == {"ok": True}
    meta = r.hgetall(k(prefix, "meta"))
    assert (meta["concurrency"], meta["max"], meta["duration"]) == ("1", "2", "800")

    node.run(prefix, Q, "add", jobs=[{"name": f"g{i}"} for i in range(4)])
    res = node.run(prefix, Q, "work", count=4, concurrency=4, sleepMs=100, timeoutMs=8000)
    assert res["stoppedBy"] == "count"
    runs = sorted((p["startedAt"], p["finishedAt"]) for p in res["processed"])
    # global concurrency 1: no two jobs overlap although the worker allows 4
    assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(runs))
    # global rate limit 2 per 800 ms: the third job starts in the next window
    assert runs[2][0] - runs[0][0] >= 700


def test_large_batches_go_through_stdin_and_pipes(node: NodeDriver, prefix: str) -> None:
    """Requests over the argv limit use stdin; a long spawned run's big result is read without blocking."""
    payload = "x" * 200
    jobs = [{"name": "bulk", "data": {"i": i, "pad": payload}} for i in range(600)]
    ids = node.run(prefix, Q, "addBulk", jobs=jobs)["ids"]
    assert len(ids) == len(set(ids)) == 600
    with node.spawn(prefix, Q, "work", concurrency=20, idleMs=400, returnValue="echo") as proc:
        proc.wait_ready(timeout=20)
        res = proc.result(timeout=60)
    assert sorted(p["id"] for p in res["processed"]) == sorted(ids)
    assert {p["data"]["i"] for p in res["processed"]} == set(range(600))
