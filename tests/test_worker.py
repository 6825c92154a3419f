"""The Worker against a real Redis: fetch order, results, retries, timeouts, limits, locks, metrics."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import DelayedError, LockMismatchError, RateLimitError, UnrecoverableError
from sbqueue.engine.worker import Worker
from sbqueue.engine.worker.fetch_loop import FetchLoop
from sbqueue.engine.worker.round_trip import RoundTrip, TripResult
from tests.processors import stream_events, wait_for

Q = "wq"


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def q(r: redis.Redis, prefix: str) -> sbqueue.Queue:
    return sbqueue.Queue(Q, r, prefix=prefix)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown so blocked sync processors never outlive their test."""
    ev = threading.Event()
    yield ev
    ev.set()


@pytest.fixture
def make_worker(r: redis.Redis, prefix: str) -> Iterator[Callable[..., Worker]]:
    """Build workers on the test queue (concurrency 1 unless given); all are closed at teardown."""
    made: list[Worker] = []

    def make(processor: Callable[..., Any], *, start: bool = True, cls: type[Worker] = Worker, **kw: Any) -> Worker:
        kw.setdefault("concurrency", 1)
        w = cls(Q, processor, r, prefix, **kw)
        made.append(w)
        return w.start() if start else w

    yield make
    for w in made:
        w.close(timeout=1)
        assert not w.running


def jhash(r: redis.Redis, prefix: str, job_id: str) -> dict[str, str]:
    return r.hgetall(f"{prefix}:{Q}:{job_id}")


def finished(r: redis.Redis, prefix: str, n: int, timeout: float = 5.0) -> None:
    """Wait until ``n`` jobs are completed or failed."""
    wait_for(
        lambda: r.zcard(f"{prefix}:{Q}:completed") + r.zcard(f"{prefix}:{Q}:failed") >= n,
        timeout, what=f"{n} finished jobs",
    )  # fmt: skip


class Recorder:
    """Collects worker events: ``rec.events`` is a list of (name, args)."""

    def __init__(self, w: Worker, names: tuple[str, ...] = ("active", "completed", "failed", "drained", "error",
                                                             "progress", "stalled")) -> None:  # fmt: skip
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        for name in names:
            w.on(name, lambda *args, name=name: self._add(name, args))

    def _add(self, name: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self.events.append((name, args))

    def names(self, *only: str) -> list[str]:
        return [n for n, _ in self.events if not only or n in only]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [a for n, a in self.events if n == name]


# --- processing, order, results ------------------------------------------------------------------------


def test_fetch_order_matches_spec5(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                   prefix: str) -> None:  # fmt: skip
    # spec §5 observed order: lifo first, then the wait tail (FIFO), then prioritized by score;
    # a due delayed job is promoted into wait (not prioritized) and so runs before prioritized jobs
    q.add("prio-2", priority=2)
    q.add("prio-1", priority=1)
    q.add("plain-a")
    q.add("plain-b")
    q.add("lifo-c", lifo=True)
    q.add("prio-1b", priority=1)
    q.add("delayed-d", delay=30)
    time.sleep(0.05)
    seen: list[str] = []
    make_worker(lambda job: seen.append(job.name), name="order-w")
    finished(r, prefix, 7)
    assert seen == ["lifo-c", "plain-a", "plain-b", "delayed-d", "prio-1", "prio-1b", "prio-2"]


@pytest.mark.parametrize("value", [{"sum": 3, "list": [1, 2]}, "plain string", 7, None, [1, "é"]])
def test_return_value_and_job_fields(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                     prefix: str, value: Any) -> None:  # fmt: skip
    job = q.add("j", {"a": 1})
    make_worker(lambda job: value, name="w-alpha")
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert h["returnvalue"] == json.dumps(value, separators=(",", ":"))
    assert json.loads(h["returnvalue"]) == value
    assert h["pb"] == "w-alpha"
    assert h["ats"] == "1" and h["atm"] == "1"
    assert int(h["timestamp"]) <= int(h["processedOn"]) <= int(h["finishedOn"]) <= now_ms()
    assert r.zscore(f"{prefix}:{Q}:completed", job.id) == int(h["finishedOn"])
    assert r.llen(f"{prefix}:{Q}:active") == 0
    assert not r.exists(f"{prefix}:{Q}:{job.id}:lock")
    got = q.get_job(job.id)
    assert got is not None and got.returnvalue == value and got.processed_by == "w-alpha"


def test_unnamed_worker_writes_no_pb(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                     prefix: str) -> None:  # fmt: skip
    job = q.add("j")
    make_worker(lambda job: 1)
    finished(r, prefix, 1)
    assert "pb" not in jhash(r, prefix, job.id)


def sync_progress(job: Any) -> str:
    job.update_progress(50)
    job.log("half way")
    job.update_progress({"pct": 100, "stage": "done"})
    job.log("done")
    return "ok"


async def async_progress(job: Any) -> str:
    await job.update_progress(50)
    await job.log("half way")
    await asyncio.sleep(0)
    await job.update_progress({"pct": 100, "stage": "done"})
    await job.log("done")
    return "ok"


@pytest.mark.parametrize("processor", [sync_progress, async_progress], ids=["sync", "async"])
def test_progress_and_logs(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                           processor: Callable[..., Any]) -> None:  # fmt: skip
    job = q.add("j")
    w = make_worker(processor, start=False)
    rec = Recorder(w)
    w.start()
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert json.loads(h["progress"]) == {"pct": 100, "stage": "done"}
    assert h["returnvalue"] == '"ok"'
    assert r.lrange(f"{prefix}:{Q}:{job.id}:logs", 0, -1) == ["half way", "done"]
    assert q.get_job_logs(job.id)["logs"] == ["half way", "done"]
    progress = [e for e in stream_events(r, prefix, Q, job.id) if e["event"] == "progress"]
    assert [json.loads(e["data"]) for e in progress] == [50, {"pct": 100, "stage": "done"}]
    wait_for(lambda: len(rec.of("progress")) == 2, what="worker progress events")
    assert [args[1] for args in rec.of("progress")] == [50, {"pct": 100, "stage": "done"}]
    assert all(args[0].id == job.id for args in rec.of("progress"))


def test_worker_events(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    def proc(job: Any) -> Any:
        if job.name == "bad":
            raise ValueError("nope")
        return {"n": job.name}

    w = make_worker(proc, start=False)
    rec = Recorder(w)
    ok = q.add("good")
    bad = q.add("bad")
    w.start()
    finished(r, prefix, 2)
    wait_for(lambda: "drained" in rec.names(), what="drained")
    assert rec.names("active", "completed", "failed") == ["active", "completed", "active", "failed"]
    (job, result), = rec.of("completed")
    assert job.id == ok.id and result == {"n": "good"}
    (fjob, err), = rec.of("failed")
    assert fjob.id == bad.id and isinstance(err, ValueError) and str(err) == "nope"
    assert rec.of("error") == []
    assert w.processed == 1 and w.failed_count == 1
    closed: list[bool] = []
    w.on("closed", lambda: closed.append(True))
    w.close()
    assert closed == [True]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_concurrency_limit(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                           kind: str) -> None:  # fmt: skip
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    def sync_proc(job: Any) -> None:
        enter()
        time.sleep(0.04)
        leave()

    async def async_proc(job: Any) -> None:
        enter()
        await asyncio.sleep(0.04)
        leave()

    q.add_bulk([{"name": f"j{i}"} for i in range(24)])
    make_worker(sync_proc if kind == "sync" else async_proc, concurrency=4)
    finished(r, prefix, 24)
    assert state["max"] == 4
    assert r.zcard(f"{prefix}:{Q}:completed") == 24


def test_many_jobs_all_processed_once(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                      prefix: str) -> None:  # fmt: skip
    seen: list[int] = []
    lock = threading.Lock()

    async def proc(job: Any) -> int:
        with lock:
            seen.append(job.data["i"])
        return int(job.data["i"])

    q.add_bulk([{"name": "j", "data": {"i": i}} for i in range(300)])
    make_worker(proc, concurrency=20)
    make_worker(proc, concurrency=7)
    finished(r, prefix, 300, timeout=20)
    assert sorted(seen) == list(range(300))


# --- failures, retries, backoff ---------------------------------------------------------------------------


def delayed_events(r: redis.Redis, prefix: str, job_id: str) -> list[dict[str, Any]]:
    return [e for e in stream_events(r, prefix, Q, job_id) if e["event"] == "delayed"]


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [({"type": "fixed", "delay": 250}, [250, 250]), ({"type": "exponential", "delay": 150}, [150, 300])],
    ids=["fixed", "exponential"],
)
def test_retries_with_backoff(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                              backoff: dict[str, Any], expected: list[int]) -> None:  # fmt: skip
    calls: list[tuple[int, int]] = []  # (start ms, end ms)

    def proc(job: Any) -> None:
        start = now_ms()
        time.sleep(0.01)
        calls.append((start, now_ms()))
        raise ValueError(f"boom attempt {len(calls)}")

    job = q.add("flaky", attempts=3, backoff=backoff, stack_trace_limit=2)
    w = make_worker(proc, start=False)
    rec = Recorder(w)
    w.start()
    finished(r, prefix, 1, timeout=5)
    h = jhash(r, prefix, job.id)
    assert len(calls) == 3
    assert h["atm"] == "3" and h["ats"] == "3"
    assert h["failedReason"] == "boom attempt 3"  # raw string, not JSON
    stack = json.loads(h["stacktrace"])
    assert isinstance(stack, list) and len(stack) == 2  # capped by stackTraceLimit
    assert "boom attempt 2" in stack[0] and "boom attempt 3" in stack[1]
    assert "ValueError" in stack[1] and "Traceback" in stack[1]
    # the delayed events carry the absolute due time = time of failure + backoff
    delayed = delayed_events(r, prefix, job.id)
    assert len(delayed) == 2
    for ev, (_, end), backoff_ms in zip(delayed, calls, expected, strict=False):
        assert abs(int(ev["delay"]) - ev["_ms"] - backoff_ms) <= 50
        assert abs(int(ev["delay"]) - end - backoff_ms) <= 50
    # ... and the retries ran at those times: never early; late only by the wake-up (a server's BZPOPMIN timeout
    # fires on its event loop tick, up to 100 ms at hz 10, plus a shared VM's scheduling: 359 ms seen once in CI).
    # A worker that missed the due time would wait out its whole block timeout (seconds), far beyond this bound.
    for i, backoff_ms in enumerate(expected):
        gap = calls[i + 1][0] - calls[i][1]
        assert backoff_ms - 2 <= gap <= backoff_ms + 500, (i, gap)
    names = [e["event"] for e in stream_events(r, prefix, Q, job.id)]
    assert names == ["added", "waiting", "active", "delayed", "waiting", "active", "delayed", "waiting",
                     "active", "failed", "retries-exhausted"]  # fmt: skip
    exhausted = [e for e in stream_events(r, prefix, Q, job.id) if e["event"] == "retries-exhausted"]
    assert exhausted[0]["attemptsMade"] == "3"
    # the worker reports every failed attempt, as Node's Worker (emitted after the script returns)
    wait_for(lambda: len(rec.of("failed")) == 3, what="failed events")
    assert [(j.attempts_made, str(e)) for j, e in rec.of("failed")] == [
        (1, "boom attempt 1"), (2, "boom attempt 2"), (3, "boom attempt 3")]  # fmt: skip
    assert w.failed_count == 1  # counts final failures only


def test_retry_without_backoff_goes_back_to_wait(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                 r: redis.Redis, prefix: str) -> None:  # fmt: skip
    calls: list[int] = []

    def proc(job: Any) -> str:
        calls.append(job.attempts_made)
        if len(calls) < 2:
            raise RuntimeError("first fails")
        return "second works"

    job = q.add("j", attempts=2)
    make_worker(proc)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert calls == [0, 1]
    assert h["atm"] == "2" and h["ats"] == "2" and h["returnvalue"] == '"second works"'
    assert h["failedReason"] == "first fails"  # kept from the failed attempt, as BullMQ does
    waiting = [e for e in stream_events(r, prefix, Q, job.id) if e["event"] == "waiting"]
    assert waiting[-1].get("prev") == "active"  # as BullMQ 6.7.6 retryJob


def test_unrecoverable_error_fails_at_once(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                           prefix: str) -> None:  # fmt: skip
    calls = []

    def proc(job: Any) -> None:
        calls.append(1)
        raise UnrecoverableError("give up")

    job = q.add("j", attempts=5, backoff=100)
    make_worker(proc)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert len(calls) == 1
    assert h["atm"] == "1" and h["failedReason"] == "give up"
    assert r.zscore(f"{prefix}:{Q}:failed", job.id) is not None
    names = [e["event"] for e in stream_events(r, prefix, Q, job.id)]
    assert "retries-exhausted" not in names and names[-1] == "failed"


def test_single_attempt_failure(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                prefix: str) -> None:  # fmt: skip
    job = q.add("j")
    make_worker(lambda job: 1 / 0)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert h["failedReason"] == "division by zero"
    assert len(json.loads(h["stacktrace"])) == 1
    ev = [e for e in stream_events(r, prefix, Q, job.id) if e["event"] == "retries-exhausted"]
    assert ev and ev[0]["attemptsMade"] == "1"


def test_exception_without_message_uses_type_name(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                  r: redis.Redis, prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> None:
        raise KeyError

    job = q.add("j")
    make_worker(proc)
    finished(r, prefix, 1)
    assert jhash(r, prefix, job.id)["failedReason"] == "KeyError"


def test_stack_trace_limit_zero_keeps_none(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                           prefix: str) -> None:  # fmt: skip
    job = q.add("j", stack_trace_limit=0)
    make_worker(lambda job: 1 / 0)
    finished(r, prefix, 1)
    assert json.loads(jhash(r, prefix, job.id).get("stacktrace", "[]")) == []


def test_custom_backoff_strategy(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                 prefix: str) -> None:  # fmt: skip
    seen: list[tuple[int, str, str]] = []

    def strategy(attempts_made: int, err: BaseException, job: Any) -> int:
        seen.append((attempts_made, str(err), job.id))
        return 120 * attempts_made

    def proc(job: Any) -> None:
        raise ValueError(f"fail {job.attempts_made}")

    job = q.add("j", attempts=3, backoff={"type": "custom"})
    make_worker(proc, backoff_strategy=strategy)
    finished(r, prefix, 1)
    assert seen == [(1, "fail 0", job.id), (2, "fail 1", job.id)]
    delayed = delayed_events(r, prefix, job.id)
    assert [round((int(e["delay"]) - e["_ms"]) / 10) * 10 for e in delayed] == [120, 240]
    assert jhash(r, prefix, job.id)["atm"] == "3"


def test_custom_backoff_negative_fails_now(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                           prefix: str) -> None:  # fmt: skip
    job = q.add("j", attempts=5, backoff={"type": "custom"})
    make_worker(lambda job: 1 / 0, backoff_strategy=lambda a, e, j: -1)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert h["atm"] == "1" and r.zscore(f"{prefix}:{Q}:failed", job.id) is not None


def test_delayed_error_moves_without_attempt(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                             prefix: str) -> None:  # fmt: skip
    runs: list[int] = []
    due: list[int] = []
    seen_hash: list[dict[str, str]] = []

    def proc(job: Any) -> str:
        runs.append(now_ms())
        if len(runs) == 1:
            due.append(now_ms() + 300)
            job.move_to_delayed(due[0])
            seen_hash.append(jhash(r, prefix, job.id))
            raise DelayedError()
        return "later"

    job = q.add("j", attempts=1)
    w = make_worker(proc, start=False)
    rec = Recorder(w)
    w.start()
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert "atm" not in seen_hash[0] and seen_hash[0]["ats"] == "1"
    assert seen_hash[0]["delay"] in {"299", "300", "298"} or abs(int(seen_hash[0]["delay"]) - 300) <= 5
    assert h["ats"] == "2" and h["atm"] == "1" and h["returnvalue"] == '"later"'
    assert runs[1] >= due[0] - 2
    ev = delayed_events(r, prefix, job.id)
    assert len(ev) == 1 and int(ev[0]["delay"]) == due[0]
    assert rec.of("failed") == [] and rec.of("error") == []


def test_delayed_error_after_lock_renewal_reports_no_error(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                           r: redis.Redis, prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> str:
        if job.attempts_started == 1:
            job.move_to_delayed(now_ms() + 100)
            time.sleep(0.35)  # lock renewals (every 100 ms) run while the processor winds down
            raise DelayedError()
        return "ok"

    job = q.add("j")
    w = make_worker(proc, lock_duration=200, start=False)
    rec = Recorder(w)
    w.start()
    finished(r, prefix, 1)
    assert jhash(r, prefix, job.id)["returnvalue"] == '"ok"'
    assert rec.of("error") == []


async def async_delaying(job: Any) -> str:
    if job.attempts_started == 1:
        await job.move_to_delayed(now_ms() + 100)
        raise DelayedError()
    return "async later"


def test_delayed_error_async(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                             prefix: str) -> None:  # fmt: skip
    job = q.add("j")
    make_worker(async_delaying)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert h["ats"] == "2" and h["atm"] == "1" and h["returnvalue"] == '"async later"'


@pytest.mark.parametrize("limiter", [None, {"max": 100, "duration": 1000}], ids=["no-limiter", "limiter"])
def test_rate_limit_error_requeues_without_attempt(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                   r: redis.Redis, prefix: str, limiter: Any) -> None:  # fmt: skip
    runs: list[int] = []

    def proc(job: Any) -> str:
        runs.append(now_ms())
        if len(runs) == 1:
            job.queue.rate_limit(400)  # manual rate limit, as BullMQ's queue.rateLimit
            raise RateLimitError()
        return "done"

    job = q.add("j", attempts=1)
    make_worker(proc, limiter=limiter)
    finished(r, prefix, 1)
    h = jhash(r, prefix, job.id)
    assert h["ats"] == "2" and h["atm"] == "1" and h["returnvalue"] == '"done"'
    assert len(runs) == 2 and runs[1] - runs[0] >= 380
    events = stream_events(r, prefix, Q, job.id)
    assert {"event": "waiting", "jobId": job.id, "prev": "active"} in [
        {k: v for k, v in e.items() if k != "_ms"} for e in events
    ]


def test_rate_limited_prioritized_job_goes_ahead_of_its_peers(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                              r: redis.Redis, prefix: str) -> None:  # fmt: skip
    # spec §5/§9: moved back from active, a prioritized job re-enters `prioritized` with counter 0
    seen: list[str] = []

    def proc(job: Any) -> None:
        seen.append(job.name)
        if job.name == "p1a" and job.attempts_started == 1:
            q.add("plain")  # wait runs before prioritized: it goes next either way
            job.queue.rate_limit(100)
            raise RateLimitError()

    a = q.add("p1a", priority=1)
    q.add("p1b", priority=1)
    make_worker(proc)
    finished(r, prefix, 3)
    assert seen == ["p1a", "plain", "p1a", "p1b"]
    assert jhash(r, prefix, a.id)["atm"] == "1"


def test_lifo_retry_runs_next(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                              prefix: str) -> None:  # fmt: skip
    # BullMQ's retryJob pushes a lifo job back to the tail of wait (RPUSH): it runs again at once
    seen: list[str] = []

    def proc(job: Any) -> None:
        seen.append(job.name)
        if job.name.endswith("flaky") and job.attempts_started == 1:
            raise ValueError("fails once")

    q.add("plain-a")
    q.add("plain-b")
    q.add("lifo-flaky", lifo=True, attempts=2)
    q.add("fifo-flaky", attempts=2)
    make_worker(proc)
    finished(r, prefix, 4)
    assert seen == ["lifo-flaky", "lifo-flaky", "plain-a", "plain-b", "fifo-flaky", "fifo-flaky"]


def test_non_json_return_fails_job_and_worker_lives(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                    r: redis.Redis, prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> Any:
        if job.name == "bad":
            return {1, 2, 3}
        if job.name == "nan":
            return float("nan")
        return "fine"

    bad = q.add("bad")
    nan = q.add("nan")
    good = q.add("good")
    make_worker(proc)
    finished(r, prefix, 3)
    for job in (bad, nan):
        reason = jhash(r, prefix, job.id)["failedReason"]
        assert "return value" in reason and "JSON" in reason, reason
        assert r.zscore(f"{prefix}:{Q}:failed", job.id) is not None
    assert jhash(r, prefix, good.id)["returnvalue"] == '"fine"'


def test_invalid_data_fails_without_running(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                            prefix: str) -> None:  # fmt: skip
    job = q.add("j", {"x": 1})
    r.hset(f"{prefix}:{Q}:{job.id}", "data", "{not json")
    calls = []
    make_worker(lambda job: calls.append(1))
    finished(r, prefix, 1)
    assert calls == []
    assert "not valid JSON" in jhash(r, prefix, job.id)["failedReason"]


# --- timeout (sbqueue extension) ------------------------------------------------------------------------------


def test_timeout_async_cancelled_and_retried(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                             prefix: str) -> None:  # fmt: skip
    cancelled: list[int] = []

    async def proc(job: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(job.attempts_started)
            raise

    job = q.add("slow", timeout=150, attempts=2)
    w = make_worker(proc, start=False)
    rec = Recorder(w)
    t0 = time.monotonic()
    w.start()
    finished(r, prefix, 1)
    # both attempts cancelled at their 150 ms timeout: well under one uncancelled 5 s sleep, even on a loaded box
    assert time.monotonic() - t0 < 4.5
    h = jhash(r, prefix, job.id)
    assert cancelled == [1, 2]
    assert h["atm"] == "2" and h["ats"] == "2"
    assert "timed out" in h["failedReason"] and "150 ms" in h["failedReason"]
    assert not r.exists(f"{prefix}:{Q}:{job.id}:lock")
    failed = wait_for(lambda: len(rec.of("failed")) == 2 and rec.of("failed"), what="failed events")
    assert all(isinstance(err, TimeoutError) for _job, err in failed)


def test_timeout_sync_abandoned_and_slot_freed(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                               prefix: str, release: threading.Event) -> None:  # fmt: skip
    def proc(job: Any) -> str:
        if job.name == "stuck":
            release.wait(10)
            return "too late"
        return "quick"

    stuck = q.add("stuck", timeout=200)
    quick = q.add("quick")
    t0 = time.monotonic()
    make_worker(proc, concurrency=1)
    finished(r, prefix, 2, timeout=8)
    # the abandoned thread must not hold the only slot: the next job ran right after the timeout (it would
    # otherwise wait for the 10 s release)
    assert time.monotonic() - t0 < 5
    assert "timed out after 200 ms" in jhash(r, prefix, stuck.id)["failedReason"]
    assert jhash(r, prefix, quick.id)["returnvalue"] == '"quick"'


def test_processor_raising_timeout_error_is_not_a_job_timeout(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                              r: redis.Redis, prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> None:
        raise TimeoutError("upstream API timed out")

    job = q.add("j")
    make_worker(proc)
    finished(r, prefix, 1)
    assert jhash(r, prefix, job.id)["failedReason"] == "upstream API timed out"


# --- rate limits and global concurrency ------------------------------------------------------------------------


def start_times(r: redis.Redis, prefix: str, ids: list[str]) -> list[int]:
    """When each job became active, by the Redis clock (the one the limiter's TTL runs on)."""
    wanted = set(ids)
    return sorted(e["_ms"] for e in stream_events(r, prefix, Q) if e["event"] == "active" and e["jobId"] in wanted)


def test_worker_rate_limiter(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                             prefix: str) -> None:  # fmt: skip
    jobs = q.add_bulk([{"name": f"j{i}"} for i in range(15)])
    t0 = time.monotonic()
    make_worker(lambda job: None, concurrency=5, limiter={"max": 5, "duration": 1000})
    finished(r, prefix, 15, timeout=6)
    assert time.monotonic() - t0 >= 2.0
    starts = start_times(r, prefix, [j.id for j in jobs])
    assert starts[-1] - starts[0] >= 1950
    for i in range(len(starts) - 5):  # never more than 5 starts within one window
        assert starts[i + 5] - starts[i] >= 950, (i, starts)


def test_global_rate_limit(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                           prefix: str) -> None:  # fmt: skip
    q.set_global_rate_limit(3, 400)
    jobs = q.add_bulk([{"name": f"j{i}"} for i in range(9)])
    make_worker(lambda job: None, concurrency=4)
    make_worker(lambda job: None, concurrency=4)
    finished(r, prefix, 9, timeout=5)
    starts = start_times(r, prefix, [j.id for j in jobs])
    assert starts[-1] - starts[0] >= 780, [s - starts[0] for s in starts]
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 380, (i, starts)


def test_global_concurrency(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                            prefix: str) -> None:  # fmt: skip
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def proc(job: Any) -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1

    q.set_global_concurrency(2)
    q.add_bulk([{"name": f"j{i}"} for i in range(12)])
    t0 = time.monotonic()
    make_worker(proc, concurrency=5)
    make_worker(proc, concurrency=5)
    finished(r, prefix, 12, timeout=10)
    assert state["max"] == 2
    # capped, not stalled: 6 rounds of 50 ms, not a marker timeout (5 s) per round
    assert time.monotonic() - t0 < 2.5


def test_paused_queue_is_not_processed(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                       prefix: str) -> None:  # fmt: skip
    q.pause()
    q.add("j")
    seen: list[str] = []
    make_worker(lambda job: seen.append(job.id))
    time.sleep(0.3)
    assert seen == []
    q.resume()
    finished(r, prefix, 1)
    assert len(seen) == 1


# --- removeOnComplete / removeOnFail (spec §16) ------------------------------------------------------------------


def test_remove_on_complete_true_job_option(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                            prefix: str) -> None:  # fmt: skip
    def proc(job: Any) -> str:
        job.log("a line")
        return "x"

    job = q.add("j", remove_on_complete=True)
    make_worker(proc)
    wait_for(lambda: any(e["event"] == "completed" for e in stream_events(r, prefix, Q, job.id)), what="completed")
    wait_for(lambda: not r.exists(f"{prefix}:{Q}:{job.id}"), what="hash removed")
    assert not r.exists(f"{prefix}:{Q}:{job.id}:logs")
    assert r.zcard(f"{prefix}:{Q}:completed") == 0


def test_remove_on_complete_count(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                  prefix: str) -> None:  # fmt: skip
    jobs = [q.add(f"j{i}", remove_on_complete=2) for i in range(5)]
    make_worker(lambda job: None)
    wait_for(lambda: len([e for e in stream_events(r, prefix, Q) if e["event"] == "completed"]) == 5)
    kept = r.zrange(f"{prefix}:{Q}:completed", 0, -1)
    assert kept == [jobs[3].id, jobs[4].id]
    assert [bool(r.exists(f"{prefix}:{Q}:{j.id}")) for j in jobs] == [False, False, False, True, True]


def test_worker_option_and_job_override(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                        prefix: str) -> None:  # fmt: skip
    removed = q.add("removed")
    kept = q.add("kept", remove_on_complete=False)
    failed_a = q.add("fa")
    failed_b = q.add("fb")

    def proc(job: Any) -> None:
        if job.name.startswith("f"):
            raise ValueError("x")

    make_worker(proc, remove_on_complete=True, remove_on_fail=1)
    wait_for(lambda: len([e for e in stream_events(r, prefix, Q) if e["event"] in ("completed", "failed")]) == 4)
    assert not r.exists(f"{prefix}:{Q}:{removed.id}")
    assert r.exists(f"{prefix}:{Q}:{kept.id}")
    assert r.zrange(f"{prefix}:{Q}:completed", 0, -1) == [kept.id]
    assert r.zrange(f"{prefix}:{Q}:failed", 0, -1) == [failed_b.id]
    assert not r.exists(f"{prefix}:{Q}:{failed_a.id}")


def test_remove_on_fail_true(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                             prefix: str) -> None:  # fmt: skip
    job = q.add("j", remove_on_fail=True, attempts=2)
    make_worker(lambda job: 1 / 0)
    wait_for(lambda: any(e["event"] == "failed" for e in stream_events(r, prefix, Q, job.id)), what="failed")
    wait_for(lambda: not r.exists(f"{prefix}:{Q}:{job.id}"), what="hash removed")
    assert r.zcard(f"{prefix}:{Q}:failed") == 0
    # the retry kept the job: it ran twice before being removed
    assert len([e for e in stream_events(r, prefix, Q, job.id) if e["event"] == "active"]) == 2


def test_remove_by_age(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    # two finished jobs from the past: one older than the age limit, one younger
    old = q.add("old")
    young = q.add("young")
    for job, age_ms in ((old, 10_000), (young, 1_000)):
        r.lrem(f"{prefix}:{Q}:wait", 0, job.id)
        r.hset(f"{prefix}:{Q}:{job.id}", mapping={"finishedOn": now_ms() - age_ms, "returnvalue": "1"})
        r.zadd(f"{prefix}:{Q}:completed", {job.id: now_ms() - age_ms})
    fresh = q.add("fresh", remove_on_complete={"age": 5})
    make_worker(lambda job: None)
    wait_for(lambda: r.zscore(f"{prefix}:{Q}:completed", fresh.id) is not None, what="fresh completed")
    assert set(r.zrange(f"{prefix}:{Q}:completed", 0, -1)) == {young.id, fresh.id}
    assert not r.exists(f"{prefix}:{Q}:{old.id}")


# --- metrics (spec §12) ---------------------------------------------------------------------------------------------


def test_metrics_counters(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    q.add("ok")
    q.add("bad")
    t0 = now_ms()
    make_worker(lambda job: 1 / 0 if job.name == "bad" else 1)
    finished(r, prefix, 2)
    mc = r.hgetall(f"{prefix}:{Q}:metrics:completed")
    mf = r.hgetall(f"{prefix}:{Q}:metrics:failed")
    assert mc["count"] == "1" and mc["prevCount"] == "0" and t0 <= int(mc["prevTS"]) <= now_ms()
    assert mf["count"] == "1" and mf["prevCount"] == "0"
    assert not r.exists(f"{prefix}:{Q}:metrics:completed:data")


def test_metrics_data_after_minute_boundary(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                            prefix: str) -> None:  # fmt: skip
    # as if 5 jobs had completed, the last minute boundary recorded 2 of them, 2 minutes ago
    mkey = f"{prefix}:{Q}:metrics:completed"
    now = now_ms()
    r.hset(mkey, mapping={"count": 5, "prevTS": now - 120_000, "prevCount": 2})
    q.add("a")
    q.add("b")
    make_worker(lambda job: None)
    finished(r, prefix, 2)
    m = r.hgetall(mkey)
    assert m["count"] == "7"
    assert m["prevCount"] == "5"  # the count before this minute's first finish
    assert int(m["prevTS"]) >= now
    # the 3 jobs of the old minute go deepest, then one zero for the skipped minute (newest first)
    assert r.lrange(f"{mkey}:data", 0, -1) == ["0", "3"]
    got = q.get_metrics("completed")
    assert got["data"] == [0, 3] and got["meta"]["count"] == 7


def test_metrics_data_capped(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                             prefix: str) -> None:  # fmt: skip
    mkey = f"{prefix}:{Q}:metrics:completed"
    r.hset(mkey, mapping={"count": 1, "prevTS": now_ms() - 600_000, "prevCount": 0})
    q.add("a")
    make_worker(lambda job: None, metrics_points=4)
    finished(r, prefix, 1)
    assert r.lrange(f"{mkey}:data", 0, -1) == ["0", "0", "0", "1"]


# --- locks ----------------------------------------------------------------------------------------------------------


def test_lock_held_and_renewed(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                               prefix: str) -> None:  # fmt: skip
    job = q.add("long")
    started = threading.Event()

    def proc(job: Any) -> str:
        started.set()
        time.sleep(2.5)
        return "done"

    w = make_worker(proc, lock_duration=1000)
    assert started.wait(5)
    lock_key = f"{prefix}:{Q}:{job.id}:lock"
    assert r.get(lock_key) == f"{w.id}:1"
    ttls = []
    while not r.zscore(f"{prefix}:{Q}:completed", job.id):
        ttl = r.pttl(lock_key)
        if ttl == -2 and r.zscore(f"{prefix}:{Q}:completed", job.id):
            break
        ttls.append(ttl)
        time.sleep(0.05)
    assert len(ttls) > 30
    assert all(0 < t <= 1000 for t in ttls[:-1]), ttls  # PX lock_duration, renewed before it ran out
    assert max(ttls) >= 900
    assert jhash(r, prefix, job.id)["returnvalue"] == '"done"'
    assert not r.exists(lock_key)


def test_renewal_clears_stalled_candidate(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                          prefix: str, release: threading.Event) -> None:  # fmt: skip
    job = q.add("j")
    make_worker(lambda job: release.wait(5), lock_duration=400)
    wait_for(lambda: r.lrange(f"{prefix}:{Q}:active", 0, -1) == [job.id], what="active")
    r.sadd(f"{prefix}:{Q}:stalled", job.id)
    wait_for(lambda: not r.sismember(f"{prefix}:{Q}:stalled", job.id), timeout=2, what="renewal SREM")
    release.set()
    finished(r, prefix, 1)


def test_lost_lock_reports_error_and_keeps_result_out(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                                      r: redis.Redis, prefix: str,
                                                      release: threading.Event) -> None:  # fmt: skip
    job = q.add("j")
    w = make_worker(lambda job: release.wait(5) and "mine", lock_duration=10_000, start=False)
    rec = Recorder(w)
    w.start()
    wait_for(lambda: r.exists(f"{prefix}:{Q}:{job.id}:lock"), what="lock")
    r.delete(f"{prefix}:{Q}:{job.id}:lock")
    release.set()
    wait_for(lambda: rec.of("error"), what="error event")
    time.sleep(0.1)
    errors = [a[0] for a in rec.of("error")]
    assert all(isinstance(e, LockMismatchError) for e in errors)
    assert any(job.id in str(e) for e in errors)
    h = jhash(r, prefix, job.id)
    assert "returnvalue" not in h and "finishedOn" not in h
    assert r.zcard(f"{prefix}:{Q}:completed") == 0
    assert r.lrange(f"{prefix}:{Q}:active", 0, -1) == [job.id]  # left for the stalled checker
    assert not any(e["event"] == "completed" for e in stream_events(r, prefix, Q, job.id))
    assert rec.of("completed") == []


def test_lock_taken_by_other_token(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                   prefix: str, release: threading.Event) -> None:  # fmt: skip
    job = q.add("j")
    w = make_worker(lambda job: release.wait(5) and "mine", lock_duration=10_000, start=False)
    rec = Recorder(w)
    w.start()
    wait_for(lambda: r.exists(f"{prefix}:{Q}:{job.id}:lock"), what="lock")
    r.set(f"{prefix}:{Q}:{job.id}:lock", "someone-else:1", px=10_000)
    release.set()
    wait_for(lambda: rec.of("error"), what="error event")
    assert "owned by another worker" in str(rec.of("error")[0][0])
    assert "returnvalue" not in jhash(r, prefix, job.id)
    assert r.get(f"{prefix}:{Q}:{job.id}:lock") == "someone-else:1"


def test_stalled_in_process_recovery(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                     prefix: str) -> None:  # fmt: skip
    # a job left in active without a lock (its worker died) is recovered by the two-phase check
    job = q.add("j")
    r.lrem(f"{prefix}:{Q}:wait", 0, job.id)
    r.lpush(f"{prefix}:{Q}:active", job.id)
    r.hset(f"{prefix}:{Q}:{job.id}", mapping={"ats": 1, "processedOn": now_ms()})
    w = make_worker(lambda job: "rescued", stalled_interval=200, start=False)
    rec = Recorder(w)
    w.start()
    finished(r, prefix, 1, timeout=5)
    h = jhash(r, prefix, job.id)
    assert h["stc"] == "1" and h["ats"] == "2" and h["returnvalue"] == '"rescued"'
    assert rec.of("stalled") == [(job.id,)]
    assert r.exists(f"{prefix}:{Q}:stalled-check")


# --- close / shutdown ---------------------------------------------------------------------------------------------


def test_close_right_after_start(make_worker: Callable[..., Worker]) -> None:
    w = make_worker(lambda job: None)
    t0 = time.monotonic()
    w.close(timeout=5)
    assert time.monotonic() - t0 < 3
    assert not w.running


def test_close_waits_for_inflight_job(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                      prefix: str) -> None:  # fmt: skip
    started = threading.Event()

    def proc(job: Any) -> str:
        started.set()
        time.sleep(0.4)
        return "finished"

    job = q.add("j")
    q.add("not-started")
    w = make_worker(proc)
    assert started.wait(5)
    w.close()
    assert jhash(r, prefix, job.id)["returnvalue"] == '"finished"'
    assert r.llen(f"{prefix}:{Q}:wait") == 1  # no new fetch while closing


def test_close_timeout_releases_job(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                    prefix: str, release: threading.Event) -> None:  # fmt: skip
    job = q.add("j")
    w = make_worker(lambda job: release.wait(10))
    wait_for(lambda: r.exists(f"{prefix}:{Q}:{job.id}:lock"), what="lock")
    t0 = time.monotonic()
    w.close(timeout=0.3)
    assert time.monotonic() - t0 < 5  # the 0.3 s close timeout, not the job's 10 s wait (room for a loaded box)
    assert r.lrange(f"{prefix}:{Q}:wait", 0, -1) == [job.id]
    assert r.llen(f"{prefix}:{Q}:active") == 0
    assert not r.exists(f"{prefix}:{Q}:{job.id}:lock")
    assert "atm" not in jhash(r, prefix, job.id)


def test_run_async_in_existing_loop(q: sbqueue.Queue, r: redis.Redis, prefix: str) -> None:
    job = q.add("j")

    async def main() -> None:
        w = Worker(Q, lambda job: "from run_async", r, prefix, concurrency=1)
        task = asyncio.create_task(w.run_async())
        for _ in range(500):
            if r.zscore(f"{prefix}:{Q}:completed", job.id):
                break
            await asyncio.sleep(0.01)
        w.close()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert jhash(r, prefix, job.id)["returnvalue"] == '"from run_async"'


def test_named_worker_connection(q: sbqueue.Queue, make_worker: Callable[..., Worker]) -> None:
    make_worker(lambda job: None, name="w-named")
    workers = wait_for(lambda: q.get_workers(), what="worker connection")
    rawnames = {w["rawname"] for w in workers}
    assert f"{q.keys.prefix}:{q.keys.encoded_name}:w:w-named" in rawnames


# --- idle behaviour and delayed promotion ---------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the workers' finish_and_fetch calls and marker waits while the test runs."""
    counts = {"round_trips": 0, "marker_waits": 0}
    trip, wait = RoundTrip.__call__, FetchLoop._wait_marker

    async def counting_trip(self: RoundTrip, *args: Any) -> TripResult:
        counts["round_trips"] += 1
        return await trip(self, *args)

    async def counting_wait(self: FetchLoop, timeout: float) -> None:
        counts["marker_waits"] += 1
        await wait(self, timeout)

    monkeypatch.setattr(RoundTrip, "__call__", counting_trip)
    monkeypatch.setattr(FetchLoop, "_wait_marker", counting_wait)
    return counts


def _script_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval",
                                                                     "cmdstat_bzpopmin"))  # fmt: skip


def test_idle_worker_blocks(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                            request: pytest.FixtureRequest, counted: dict[str, int]) -> None:  # fmt: skip
    q.add("warm-up")
    make_worker(lambda job: None, stalled_interval=30_000)
    wait_for(lambda: q.get_job_counts()["completed"] == 1, what="warm-up")
    time.sleep(0.2)
    assert counted["round_trips"] >= 1 and counted["marker_waits"] >= 1  # the counters see this worker
    counted["round_trips"] = counted["marker_waits"] = 0
    before = _script_calls(r)
    time.sleep(1.0)
    assert counted["round_trips"] <= 2 and counted["marker_waits"] <= 2
    if request.config.getoption("--redis-url") is None:  # the embedded server is ours alone
        assert _script_calls(r) - before < 20


@pytest.mark.parametrize("delay_ms", [300, 700])
def test_idle_worker_promotes_delayed_on_time(q: sbqueue.Queue, make_worker: Callable[..., Worker],
                                              r: redis.Redis, prefix: str, delay_ms: int) -> None:  # fmt: skip
    make_worker(lambda job: None)
    time.sleep(0.2)  # the worker is idle, blocked on the marker
    job = q.add("later", delay=delay_ms)
    finished(r, prefix, 1, timeout=5)
    h = jhash(r, prefix, job.id)
    late = int(h["processedOn"]) - (int(h["timestamp"]) + delay_ms)
    assert 0 <= late <= 50, late


def test_delayed_job_while_busy_is_promoted(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis,
                                            prefix: str) -> None:  # fmt: skip
    # a delayed job comes due while every slot is busy: it runs as soon as a slot frees
    q.add("busy", {"t": 0.5})
    job = q.add("later", delay=100)
    make_worker(lambda job: time.sleep(job.data.get("t", 0)))
    finished(r, prefix, 2, timeout=5)
    h = jhash(r, prefix, job.id)
    assert int(h["processedOn"]) - int(h["timestamp"]) < 1200


# --- job schedulers (spec §13) ---------------------------------------------------------------------------------------


def scheduler_jobs_added(r: redis.Redis, prefix: str) -> list[str]:
    return [e["jobId"] for e in stream_events(r, prefix, Q) if e["event"] == "added"]


@pytest.mark.parametrize("n_workers", [1, 2])
def test_scheduler_iterations(q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str,
                              n_workers: int) -> None:  # fmt: skip
    ran: list[str] = []
    lock = threading.Lock()

    def proc(job: Any) -> None:
        with lock:
            ran.append(job.id)

    first = q.upsert_job_scheduler("tick", every=300, data={"t": 1})
    for _ in range(n_workers):
        make_worker(proc, concurrency=2)
    wait_for(lambda: len(ran) >= 4, timeout=5, what="4 iterations")
    q.remove_job_scheduler("tick")
    time.sleep(0.1)
    with lock:
        done = list(ran)
    assert done[0] == first.id
    assert len(done) == len(set(done)), done  # nobody ran an iteration twice
    millis = [int(i.rsplit(":", 1)[1]) for i in done]
    assert all(b - a == 300 for a, b in itertools.pairwise(millis)), millis
    added = scheduler_jobs_added(r, prefix)
    assert len(added) == len(set(added))  # each fetch created exactly one next iteration
    assert set(done) <= set(added) and len(added) - len(done) in (1, 2), (added, done)
    assert not [e for e in stream_events(r, prefix, Q) if e["event"] == "duplicated"]
    for job_id in done:
        assert jhash(r, prefix, job_id).get("rjk") == "tick" or not r.exists(f"{prefix}:{Q}:{job_id}")
