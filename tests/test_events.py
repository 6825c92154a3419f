"""Events: the ``<queue>:events`` stream field by field (spec §10), and QueueEvents as its consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.engine.events import QueueEvents, decode_event
from sbqueue.engine.worker import Worker
from tests.processors import stream_events, strip_ms, wait_for

Q = "evq"


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(Q, r, prefix=prefix)


@pytest.fixture
def worker(r: redis.Redis, prefix: str) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(processor: Callable[..., Any], **kw: Any) -> Worker:
        kw.setdefault("concurrency", 1)
        w = Worker(Q, processor, r, prefix, **kw)
        made.append(w)
        return w.start()

    yield make
    for w in made:
        w.close(timeout=1)


@pytest.fixture
def events(r: redis.Redis, prefix: str) -> Iterator[Callable[..., QueueEvents]]:
    made: list[QueueEvents] = []

    def make(**kw: Any) -> QueueEvents:
        ev = QueueEvents(Q, r, prefix, **kw)
        made.append(ev)
        return ev

    yield make
    for ev in made:
        ev.close()


def settled(r: redis.Redis, prefix: str) -> Callable[[], bool]:
    return lambda: any(e["event"] == "drained" for e in stream_events(r, prefix, Q))


# --- the stream, field by field ---------------------------------------------------------------------------------


def test_completed_job_events(q: sbqueue.Queue, worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    def proc(job: Any) -> Any:
        job.update_progress(42)
        return {"sum": 3}

    job = q.add("ok", {"a": 1})
    worker(proc)
    wait_for(settled(r, prefix), what="drained")
    assert strip_ms(stream_events(r, prefix, Q)) == [
        {"event": "added", "jobId": job.id, "name": "ok"},
        {"event": "waiting", "jobId": job.id},
        {"event": "active", "jobId": job.id, "prev": "waiting"},
        {"event": "progress", "jobId": job.id, "data": "42"},
        {"event": "completed", "jobId": job.id, "returnvalue": '{"sum":3}', "prev": "active"},
        {"event": "drained"},
    ]


def test_failed_job_with_retries_events(q: sbqueue.Queue, worker: Callable[..., Worker], r: redis.Redis,
                                        prefix: str) -> None:  # fmt: skip
    calls: list[int] = []

    def proc(job: Any) -> None:
        calls.append(1)
        raise RuntimeError(f"boom attempt {len(calls)}")

    job = q.add("flaky", attempts=2, backoff=100)
    worker(proc)
    wait_for(settled(r, prefix), what="drained")
    got = stream_events(r, prefix, Q)
    delayed = next(e for e in got if e["event"] == "delayed")
    assert 50 <= int(delayed["delay"]) - delayed["_ms"] <= 150  # absolute due timestamp, ms
    assert strip_ms(got) == [
        {"event": "added", "jobId": job.id, "name": "flaky"},
        {"event": "waiting", "jobId": job.id},
        {"event": "active", "jobId": job.id, "prev": "waiting"},
        {"event": "delayed", "jobId": job.id, "delay": delayed["delay"]},
        {"event": "waiting", "jobId": job.id, "prev": "delayed"},
        {"event": "active", "jobId": job.id, "prev": "waiting"},
        {"event": "failed", "jobId": job.id, "failedReason": "boom attempt 2", "prev": "active"},
        {"event": "retries-exhausted", "jobId": job.id, "attemptsMade": "2"},
        {"event": "drained"},
    ]


def test_delayed_job_events(q: sbqueue.Queue, worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    worker(lambda job: "later")
    t0 = int(time.time() * 1000)
    job = q.add("later", delay=150)
    wait_for(settled(r, prefix), what="drained")
    got = stream_events(r, prefix, Q)
    due = int(got[1]["delay"])
    assert t0 + 150 <= due <= int(time.time() * 1000)
    assert strip_ms(got) == [
        {"event": "added", "jobId": job.id, "name": "later"},
        {"event": "delayed", "jobId": job.id, "delay": str(due)},
        {"event": "waiting", "jobId": job.id, "prev": "delayed"},
        {"event": "active", "jobId": job.id, "prev": "waiting"},
        {"event": "completed", "jobId": job.id, "returnvalue": '"later"', "prev": "active"},
        {"event": "drained"},
    ]
    assert got[2]["_ms"] >= due  # promoted when due, not before


def test_drained_only_when_empty(q: sbqueue.Queue, worker: Callable[..., Worker], r: redis.Redis,
                                 prefix: str) -> None:  # fmt: skip
    q.add_bulk([{"name": f"j{i}"} for i in range(5)])
    worker(lambda job: None)
    wait_for(settled(r, prefix), what="drained")
    time.sleep(0.05)
    names = [e["event"] for e in stream_events(r, prefix, Q)]
    assert names.count("drained") == 1 and names[-1] == "drained"
    assert names.count("completed") == 5


def test_events_stream_is_trimmed(r: redis.Redis, prefix: str, worker: Callable[..., Worker]) -> None:
    q = sbqueue.Queue(Q, r, prefix=prefix, max_len_events=10)  # meta opts.maxLenEvents, read by every script
    q.add_bulk([{"name": f"j{i}"} for i in range(150)])
    worker(lambda job: None, concurrency=10)
    wait_for(lambda: r.zcard(f"{prefix}:{Q}:completed") == 150, timeout=10, what="150 completed")
    assert r.xlen(f"{prefix}:{Q}:events") < 300  # approximate MAXLEN ~, but trimmed (150 jobs = 600+ events)


# --- QueueEvents ----------------------------------------------------------------------------------------------


def test_queue_events_listeners(q: sbqueue.Queue, worker: Callable[..., Worker], events: Callable[..., QueueEvents],
                                r: redis.Redis, prefix: str) -> None:  # fmt: skip
    q.add("before")  # older than the QueueEvents: not delivered with last_event_id="$"
    ev = events()
    got: dict[str, list[dict[str, Any]]] = {}
    lock = threading.Lock()

    def collect(name: str) -> Callable[[dict[str, Any]], None]:
        def fn(e: dict[str, Any]) -> None:
            with lock:
                got.setdefault(name, []).append(e)

        return fn

    for name in ("added", "active", "progress", "completed", "failed", "delayed", "retries-exhausted"):
        ev.on(name, collect(name))

    def proc(job: Any) -> Any:
        if job.name == "bad":
            raise ValueError("bad job")
        job.update_progress({"pct": 50})
        return {"echo": job.data}

    good = q.add("good", {"x": [1, 2]})
    ev.on(f"completed:{good.id}", collect("completed-one"))
    ev.start()
    bad = q.add("bad", attempts=2, backoff=50)
    worker(proc)
    wait_for(lambda: "retries-exhausted" in got and len(got.get("completed", [])) >= 2, what="events delivered")
    added = [e["jobId"] for e in got["added"]]
    assert added[:2] == [good.id, bad.id] and "1" not in added  # "before" (id 1) was not replayed
    completed = {e["jobId"]: e for e in got["completed"]}
    assert completed[good.id]["returnvalue"] == {"echo": {"x": [1, 2]}}  # JSON-decoded, as Node's QueueEvents
    assert completed[good.id]["prev"] == "active" and completed[good.id]["id"].count("-") == 1
    assert got["completed-one"] == [completed[good.id]]
    assert {"pct": 50} in [e["data"] for e in got["progress"]]
    (delayed,) = got["delayed"]
    assert isinstance(delayed["delay"], int) and delayed["jobId"] == bad.id
    assert got["failed"][0]["failedReason"] == "bad job"
    assert got["retries-exhausted"][0]["attemptsMade"] == "2"
    # the first job ("before") also ran, but only its post-start events were delivered
    assert "1" in completed


def test_queue_events_iteration(q: sbqueue.Queue, worker: Callable[..., Worker], events: Callable[..., QueueEvents],
                                r: redis.Redis, prefix: str) -> None:  # fmt: skip
    ev = events(block_ms=200)
    job = q.add("it", {"v": 1})  # added after the QueueEvents was made: must be seen ("$" = from creation)
    worker(lambda job: job.data["v"] + 1)
    seen = []
    deadline = time.monotonic() + 5
    for e in ev:
        seen.append(e)
        if e["event"] == "completed" or time.monotonic() > deadline:
            break
    assert [e["event"] for e in seen] == ["added", "waiting", "active", "completed"]
    assert seen[-1]["returnvalue"] == 2 and seen[-1]["jobId"] == job.id
    assert ev.last_event_id == seen[-1]["id"]
    # breaking out mid-batch loses nothing: iterating again continues right after "completed"
    assert next(iter(ev))["event"] == "drained"


def test_queue_events_from_start_replays(q: sbqueue.Queue, events: Callable[..., QueueEvents]) -> None:
    job = q.add("old")
    ev = events(last_event_id="0")
    batch = ev.read(block_ms=100)
    assert [(e["event"], e["jobId"]) for e in batch] == [("added", job.id), ("waiting", job.id)]
    assert ev.read(block_ms=50) == []


def test_queue_events_on_empty_stream(events: Callable[..., QueueEvents], q: sbqueue.Queue) -> None:
    ev = events()
    assert ev.read(block_ms=50) == []
    job = q.add("first")
    assert [e["event"] for e in ev.read(block_ms=100)] == ["added", "waiting"]
    assert job.id


def test_queue_events_close_is_prompt_and_named(events: Callable[..., QueueEvents], q: sbqueue.Queue,
                                                r: redis.Redis) -> None:  # fmt: skip
    ev = events().start()
    names = wait_for(lambda: [c["name"] for c in r.client_list() if c["name"].endswith(":qe")], what="qe client")
    assert f"{q.keys.prefix}:{q.keys.encoded_name}:qe" in names
    t0 = time.monotonic()
    ev.close()
    assert time.monotonic() - t0 < 2
    assert ev._thread is not None and not ev._thread.is_alive()


def test_decode_event() -> None:
    assert decode_event("1-0", {"event": "delayed", "jobId": "3", "delay": "1795819929332"})["delay"] == 1795819929332
    assert decode_event("1-0", {"event": "progress", "jobId": "3", "data": '{"a":1}'})["data"] == {"a": 1}
    assert decode_event("1-0", {"event": "completed", "jobId": "3", "returnvalue": "not json"})["returnvalue"] == (
        "not json"
    )
    assert decode_event("1-0", {"event": "failed", "jobId": "3", "failedReason": "42"})["failedReason"] == "42"
