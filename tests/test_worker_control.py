"""Worker control against a real Redis: pause/resume, processing jobs by hand, cancelling jobs in flight.

Timing is load-proof: waits are polls with generous deadlines; "nothing happens while paused" is checked over
a window in which an unpaused worker would have fetched many times over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import InvalidOptionError, JobCancelledError, JobStateError, LockMismatchError, UnrecoverableError
from sbqueue.engine.worker import Worker
from tests.processors import stream_events, wait_for

Q = "cq"


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
    made: list[Worker] = []

    def make(processor: Any, *, start: bool = True, **kw: Any) -> Worker:
        kw.setdefault("concurrency", 1)
        w = Worker(Q, processor, r, prefix, **kw)
        made.append(w)
        return w.start() if start and processor is not None else w

    yield make
    for w in made:
        w.close(timeout=1)
        assert not w.running


def record(w: Worker, *names: str) -> list[tuple[str, tuple[Any, ...]]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    for name in names:
        w.on(name, lambda *args, name=name: seen.append((name, args)))
    return seen


def state(q: sbqueue.Queue, job_id: str) -> str:
    return str(q.get_job_state(job_id))


def lock_of(r: redis.Redis, prefix: str, job_id: str) -> str | None:
    return r.get(f"{prefix}:{Q}:{job_id}:lock")


# --- pause / resume ----------------------------------------------------------------------------------------------


def test_pause_waits_for_the_job_in_flight_then_nothing_is_fetched_until_resume(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event, r: redis.Redis, prefix: str
) -> None:
    started = threading.Event()

    def slow(job: sbqueue.Job) -> str:
        started.set()
        release.wait(30)
        return job.name

    w = make_worker(slow, drain_delay=0.2)
    seen = record(w, "paused", "resumed")
    first = q.add("first", {})
    assert started.wait(10)
    returned: list[bool] = []
    pauser = threading.Thread(target=lambda: returned.append(w.pause()))
    pauser.start()
    second = q.add("second", {})
    time.sleep(0.3)
    assert pauser.is_alive() and w.is_paused()  # still waiting for `first`
    release.set()
    pauser.join(10)
    assert returned == [True] and state(q, first.id) == "completed"  # recorded in Redis when pause() returns
    assert [name for name, _ in seen] == ["paused"]
    time.sleep(1.0)  # an unpaused worker would have fetched `second` many times over
    assert state(q, second.id) == "waiting"
    assert not r.hexists(f"{prefix}:{Q}:meta", "paused") and not q.is_paused()  # the queue's pause is untouched
    w.resume()
    wait_for(lambda: state(q, second.id) == "completed", 10, what="second completed after resume")
    assert [name for name, _ in seen] == ["paused", "resumed"] and not w.is_paused()
    w.resume()  # not paused: no second event
    assert [name for name, _ in seen] == ["paused", "resumed"]


def test_pause_without_waiting_returns_at_once_and_a_timeout_says_jobs_are_still_running(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event
) -> None:
    started = threading.Event()

    def slow(job: sbqueue.Job) -> None:
        started.set()
        release.wait(30)

    w = make_worker(slow)
    job = q.add("a", {})
    assert started.wait(10)
    t0 = time.monotonic()
    assert w.pause(wait_for_active=False) is True
    assert w.pause(timeout=0.2) is False  # a second pause: still paused, the job still runs
    assert time.monotonic() - t0 < 5 and state(q, job.id) == "active"
    release.set()
    assert w.pause(timeout=10) is True


def test_a_stopped_worker_pauses_at_once_and_starts_paused(
    q: sbqueue.Queue, make_worker: Callable[..., Worker]
) -> None:
    w = make_worker(lambda job: 1, start=False, drain_delay=0.2)
    assert w.pause() is True and w.is_paused()
    job = q.add("a", {})
    w.start()
    time.sleep(0.8)
    assert state(q, job.id) == "waiting"
    w.resume()
    wait_for(lambda: state(q, job.id) == "completed", 10, what="completed after resume")


def test_a_processor_thread_pauses_its_worker_waiting_for_the_others_not_itself(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event
) -> None:
    other_started = threading.Event()
    holder: list[Worker] = []
    paused_after: list[str] = []

    def proc(job: sbqueue.Job) -> str:
        if job.name == "other":
            other_started.set()
            release.wait(30)
            return "other"
        assert other_started.wait(10)
        holder[0].pause()  # waits for `other`, not for this job
        paused_after.append(str(job.queue.get_job_state(other.id)))
        return "pauser"

    w = make_worker(proc, concurrency=3, start=False, drain_delay=0.2)
    holder.append(w)
    other = q.add("other", {})
    pauser = q.add("pauser", {})
    w.start()
    wait_for(lambda: state(q, pauser.id) == "active", 10, what="pauser running")
    time.sleep(0.3)
    assert not paused_after  # still waiting for `other`
    release.set()
    wait_for(lambda: state(q, pauser.id) == "completed", 10, what="pauser completed")
    assert paused_after == ["completed"] and w.is_paused()
    late = q.add("late", {})
    time.sleep(0.8)
    assert state(q, late.id) == "waiting"


def test_an_async_processor_awaits_pause_async_and_a_sync_pause_on_the_loop_does_not_block(
    q: sbqueue.Queue, make_worker: Callable[..., Worker]
) -> None:
    holder: list[Worker] = []
    outcome: list[Any] = []

    async def proc(job: sbqueue.Job) -> str:
        w = holder[0]
        outcome.append(w.pause())  # cannot block the loop this processor runs on: pauses; only itself in flight
        assert w.is_paused()
        w.resume()
        outcome.append(await w.pause_async())  # waits for the other jobs: there are none
        return "ok"

    w = make_worker(proc, start=False, drain_delay=0.2)
    holder.append(w)
    job = q.add("a", {})
    w.start()
    wait_for(lambda: state(q, job.id) == "completed", 10, what="completed")
    assert outcome == [True, True] and w.is_paused()


def test_a_listener_pauses_the_worker_as_in_node(q: sbqueue.Queue, make_worker: Callable[..., Worker]) -> None:
    w = make_worker(lambda job: job.name, start=False, drain_delay=0.2)
    paused: list[bool] = []
    w.on("completed", lambda job, result: paused.append(w.pause()))  # runs on the worker's loop: no blocking
    first = q.add("first", {})
    w.start()
    wait_for(lambda: paused, 10, what="the listener's pause")
    second = q.add("second", {})
    time.sleep(0.8)
    assert state(q, first.id) == "completed" and state(q, second.id) == "waiting" and paused == [True]


def test_pause_from_a_notebook_cell_blocks_the_cell_not_the_worker(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event
) -> None:
    def slow(job: sbqueue.Job) -> str:
        release.wait(30)
        return "done"

    w = make_worker(slow)  # start(): its own thread and loop, as in a notebook
    job = q.add("a", {})
    wait_for(lambda: state(q, job.id) == "active", 10, what="active")
    threading.Timer(0.3, release.set).start()

    async def cell() -> bool:  # Jupyter runs cells inside its own running loop
        return w.pause(timeout=20)

    assert asyncio.run(cell()) is True and state(q, job.id) == "completed"


def test_pause_async_in_the_loop_that_runs_the_worker(q: sbqueue.Queue, make_worker: Callable[..., Worker]) -> None:
    async def proc(job: sbqueue.Job) -> str:
        await asyncio.sleep(0.3)
        return "done"

    w = make_worker(proc, start=False, drain_delay=0.2)
    job = q.add("a", {})

    async def main() -> tuple[bool, str]:
        run = asyncio.ensure_future(w.run_async())
        while state(q, job.id) != "active":
            await asyncio.sleep(0.02)
        paused = await w.pause_async()
        seen = state(q, job.id)
        w.close()
        await run
        return paused, seen

    assert asyncio.run(main()) == (True, "completed")


# --- processing jobs by hand -------------------------------------------------------------------------------------


def test_manual_processing_moves_jobs_as_the_worker_does(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    w = make_worker(None, name="by-hand", lock_duration=20_000)
    seen = record(w, "active", "drained", "completed")
    a, b = q.add("a", {"n": 1}), q.add("b", {"n": 2})
    job = w.get_next_job("my-token")
    assert job is not None and job.id == a.id and job.token == "my-token" and job.data == {"n": 1}
    assert lock_of(r, prefix, a.id) == "my-token" and 15_000 < r.pttl(f"{prefix}:{Q}:{a.id}:lock") <= 20_000
    raw = r.hgetall(f"{prefix}:{Q}:{a.id}")
    assert raw["pb"] == "by-hand" and raw["ats"] == "1" and "processedOn" in raw and state(q, a.id) == "active"
    nxt = job.move_to_completed({"ok": 1}, "my-token", fetch_next=True)
    assert job.returnvalue == {"ok": 1} and job.attempts_made == 1 and job.token is None
    assert nxt is not None and nxt.id == b.id and lock_of(r, prefix, b.id) == "my-token"
    assert nxt.move_to_completed("two", "my-token", fetch_next=True) is None
    assert q.get_job(a.id).returnvalue == {"ok": 1} and q.get_job(b.id).returnvalue == "two"  # type: ignore[union-attr]
    assert w.processed == 2
    assert [name for name, _ in seen] == ["active", "active", "drained"]  # as Node: no completed event here
    events = [(e["event"], e.get("jobId")) for e in stream_events(r, prefix, Q)]
    assert ("completed", a.id) in events and ("completed", b.id) in events


def test_get_next_job_blocks_on_the_marker_up_to_drain_delay(
    q: sbqueue.Queue, make_worker: Callable[..., Worker]
) -> None:
    w = make_worker(None, drain_delay=0.5)
    t0 = time.monotonic()
    assert w.get_next_job("t", block=False) is None
    assert w.get_next_job("t") is None
    assert time.monotonic() - t0 >= 0.45
    w2 = make_worker(None, drain_delay=20)
    threading.Timer(0.3, lambda: q.add("late", {})).start()
    t0 = time.monotonic()
    job = w2.get_next_job("t")
    assert job is not None and job.name == "late" and time.monotonic() - t0 < 10  # woken by the marker
    delayed = q.add("delayed", {}, delay=400)
    job.move_to_completed(None, "t")
    got = w2.get_next_job("t")  # sleeps until the delayed job is due, not for drain_delay
    assert got is not None and got.id == delayed.id


def test_move_to_failed_retries_with_backoff_then_fails_for_good(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    w = make_worker(None, drain_delay=5)
    added = q.add("x", {}, attempts=3, backoff={"type": "fixed", "delay": 300})
    job = w.get_next_job("t")
    assert job is not None
    assert job.move_to_failed(ValueError("first"), "t") is None
    assert state(q, added.id) == "delayed" and job.attempts_made == 1 and job.failed_reason == "first"
    raw = r.hgetall(f"{prefix}:{Q}:{added.id}")
    assert raw["atm"] == "1" and raw["failedReason"] == "first" and "ValueError: first" in raw["stacktrace"]
    t0 = time.monotonic()
    again = w.get_next_job("t")  # the retry comes due after its backoff
    assert again is not None and again.id == added.id and time.monotonic() - t0 >= 0.1
    again.move_to_failed("as a string", "t")
    third = w.get_next_job("t")
    assert third is not None and third.attempts_made == 2
    third.move_to_failed(ValueError("last"), "t")
    assert state(q, added.id) == "failed" and w.failed_count == 1
    failed = q.get_job(added.id)
    assert failed is not None and failed.attempts_made == 3 and failed.failed_reason == "last"
    unrec = q.add("u", {}, attempts=5)
    job = w.get_next_job("t")
    assert job is not None and job.id == unrec.id
    job.move_to_failed(UnrecoverableError("never"), "t")
    assert state(q, unrec.id) == "failed"


def test_a_wrong_token_is_refused_and_changes_nothing(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    w = make_worker(None)
    added = q.add("x", {}, attempts=2)
    job = w.get_next_job("right")
    assert job is not None
    before = r.hgetall(f"{prefix}:{Q}:{added.id}")
    for move in (lambda: job.move_to_completed(1, "wrong"), lambda: job.move_to_failed(ValueError("e"), "wrong"),
                 lambda: job.extend_lock("wrong", 5000)):  # fmt: skip
        with pytest.raises(LockMismatchError) as info:
            move()
        assert info.value.job_id == added.id
    assert r.hgetall(f"{prefix}:{Q}:{added.id}") == before and lock_of(r, prefix, added.id) == "right"
    assert state(q, added.id) == "active" and job.attempts_made == 0 and job.token == "right"
    for bad in ("", "0", None):
        with pytest.raises(InvalidOptionError, match="token"):
            w.get_next_job(bad)  # type: ignore[arg-type]
    with pytest.raises(JobStateError, match="get_next_job"):
        q.get_job(added.id).move_to_completed(1, "right")  # type: ignore[union-attr]
    job.move_to_completed(1, "right")
    assert state(q, added.id) == "completed"


def test_no_processor_means_no_run(make_worker: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    w = make_worker(None)
    for call in (w.start, w.run):
        with pytest.raises(InvalidOptionError, match="get_next_job"):
            call()
    with pytest.raises(InvalidOptionError, match="get_next_job"):
        asyncio.run(w.run_async())
    with pytest.raises(InvalidOptionError, match="get_next_job"):
        Worker(Q, None, r, prefix, autorun=True)
    with pytest.raises(InvalidOptionError, match="callable"):
        Worker(Q, "not callable", r, prefix)  # type: ignore[arg-type]


def test_extend_lock_keeps_a_job_from_the_stalled_check_and_a_lapsed_lock_is_recovered(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    w = make_worker(None, lock_duration=1000, stalled_interval=300)
    seen = record(w, "stalled")
    w.start_stalled_check_timer()
    added = q.add("x", {})
    job = w.get_next_job("t")
    assert job is not None
    deadline = time.monotonic() + 2.5  # 2.5 lock durations, 8 checks
    while time.monotonic() < deadline:
        job.extend_lock("t", 1000)
        time.sleep(0.2)
    assert state(q, added.id) == "active" and not seen
    # stop extending: the lock lapses, the check puts the job back (lock expiry + up to two intervals)
    wait_for(lambda: state(q, added.id) == "waiting", 15, interval=0.05, what="the stalled job back in wait")
    wait_for(lambda: seen, 10, what="the stalled event")  # emitted once the check's script has returned
    assert seen == [("stalled", (added.id,))] and r.hget(f"{prefix}:{Q}:{added.id}", "stc") == "1"
    with pytest.raises(LockMismatchError):
        job.move_to_completed(1, "t")
    again = w.get_next_job("t2")
    assert again is not None and again.id == added.id
    again.move_to_completed("rescued", "t2")
    assert state(q, added.id) == "completed"


# --- cancellation ------------------------------------------------------------------------------------------------


def test_cancelling_an_async_job_cancels_its_task_and_fails_it_for_good(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    cleanup: list[str] = []

    async def proc(job: sbqueue.Job) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cleanup.append(str(job.cancellation.reason))
            raise
        return "never"

    w = make_worker(proc)
    seen = record(w, "failed", "completed")
    added = q.add("x", {}, attempts=3)
    wait_for(lambda: state(q, added.id) == "active", 10, what="active")
    assert w.cancel_job("nope") is False
    # Redis shows "active" a moment before the worker has started the job's run: until then it is not cancellable
    wait_for(lambda: w.cancel_job(added.id, "user asked"), 10, what="the job cancelled")
    wait_for(lambda: state(q, added.id) == "failed", 10, what="failed")
    assert cleanup == ["user asked"]
    job = q.get_job(added.id)
    assert job is not None and job.failed_reason == "user asked" and job.attempts_made == 1
    wait_for(lambda: seen, 10, what="the failed event")  # emitted once Redis has recorded the failure
    ((name, (fjob, err)),) = seen
    assert name == "failed" and fjob.id == added.id
    assert isinstance(err, JobCancelledError) and err.reason == "user asked"
    assert w.cancel_job(added.id) is False  # finished


def test_cancelling_a_sync_job_fails_it_at_once_and_its_late_result_is_ignored(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event
) -> None:
    returned = threading.Event()

    def ignores_the_token(job: sbqueue.Job) -> str:
        release.wait(30)
        returned.set()
        return "late"

    w = make_worker(ignores_the_token, concurrency=1, drain_delay=0.2)
    seen = record(w, "failed", "completed")
    first = q.add("x", {})
    wait_for(lambda: state(q, first.id) == "active", 10, what="active")
    wait_for(lambda: w.cancel_job(first.id), 10, what="the job cancelled")  # once its run has started
    wait_for(lambda: state(q, first.id) == "failed", 10, what="failed while its thread still runs")
    assert not returned.is_set()
    job = q.get_job(first.id)
    assert job is not None and job.failed_reason == "job cancelled"
    # the abandoned thread holds no slot: the next job runs (and the late result changes nothing)
    second = q.add("y", {})
    release.set()
    assert returned.wait(10)
    wait_for(lambda: state(q, second.id) == "completed", 10, what="the next job")
    assert state(q, first.id) == "failed"
    wait_for(lambda: len(seen) >= 2, 10, what="the completed event")  # emitted after Redis recorded it
    assert [(name, args[0].id) for name, args in seen] == [("failed", first.id), ("completed", second.id)]


def test_a_sync_processor_sees_the_token_and_retry_true_counts_an_ordinary_attempt(
    q: sbqueue.Queue, make_worker: Callable[..., Worker]
) -> None:
    tokens: list[tuple[bool, str | None]] = []

    def cooperative(job: sbqueue.Job) -> str:
        if job.attempts_made == 0:
            job.cancellation.wait(30)  # an interruptible sleep
            tokens.append((job.cancellation.is_set(), job.cancellation.reason))
            job.cancellation.raise_if_cancelled()
        return f"attempt {job.attempts_made + 1}"

    w = make_worker(cooperative)
    added = q.add("x", {}, attempts=2)
    wait_for(lambda: state(q, added.id) == "active", 10, what="active")
    wait_for(lambda: w.cancel_job(added.id, "try again", retry=True), 10, what="the job cancelled")  # once started
    wait_for(lambda: state(q, added.id) == "completed", 10, what="completed on the retry")
    job = q.get_job(added.id)
    assert job is not None and job.returnvalue == "attempt 2" and job.attempts_made == 2
    assert tokens == [(True, "try again")]


def test_cancel_all_jobs_from_another_thread_and_from_a_processor(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], release: threading.Event
) -> None:
    holder: list[Worker] = []

    def proc(job: sbqueue.Job) -> int:
        if job.name == "canceller":
            return holder[0].cancel_all_jobs("shutting down")  # cancels the others, and itself
        job.cancellation.wait(30)
        return 0

    w = make_worker(proc, concurrency=4, start=False, drain_delay=0.2)
    holder.append(w)
    ids = [q.add("sleeper", {}).id for _ in range(3)]
    w.start()
    wait_for(lambda: all(state(q, i) == "active" for i in ids), 10, what="three active")
    canceller = q.add("canceller", {})
    wait_for(lambda: all(state(q, i) == "failed" for i in [*ids, canceller.id]), 10, what="all cancelled")
    reasons = {q.get_job(i).failed_reason for i in [*ids, canceller.id]}  # type: ignore[union-attr]
    assert reasons == {"shutting down"}
    assert w.cancel_all_jobs() == 0
    for bad in ("", 7):
        with pytest.raises(InvalidOptionError, match="reason"):
            w.cancel_job(ids[0], bad)  # type: ignore[arg-type]
    w.close()
    assert w.cancel_job(ids[0]) is False  # a stopped worker runs nothing


def test_an_async_processor_that_swallows_the_cancel_still_ends_its_attempt_once(
    q: sbqueue.Queue, make_worker: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    async def proc(job: sbqueue.Job) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"  # a processor that swallows the cancel: the attempt is over all the same
        return "never"

    w = make_worker(proc)
    seen = record(w, "failed", "completed", "error")
    added = q.add("x", {}, timeout=30_000)
    wait_for(lambda: state(q, added.id) == "active", 10, what="active")
    wait_for(lambda: w.cancel_job(added.id, "stop"), 10, what="the job cancelled")  # once its run has started
    wait_for(lambda: state(q, added.id) == "failed", 10, what="failed")
    wait_for(lambda: seen, 10, what="the failed event")
    time.sleep(0.3)
    assert [name for name, _ in seen] == ["failed"]
    assert [e["event"] for e in stream_events(r, prefix, Q, added.id)].count("failed") == 1
