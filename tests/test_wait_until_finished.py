"""Job.wait_until_finished — BullMQ's waitUntilFinished: the return value, the failed reason, a timeout, a job
that ended before the wait began, and the asyncio flavour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.errors import InvalidOptionError, JobFailedError, JobNotFoundError, WaitTimeoutError


def process(job: Any) -> Any:
    if job.name == "boom":
        raise ValueError(f"invalid email address: {job.data['to']}")
    if job.name == "slow":
        time.sleep(0.3)
    return job.data["answer"]


@pytest.fixture
def served(redis_url: str, prefix: str) -> Iterator[None]:
    worker = sbqueue.Worker("w", process, connection=redis_url, prefix=prefix, concurrency=4)
    worker.start()
    yield
    worker.close()


@pytest.fixture
def events(redis_url: str, prefix: str) -> Iterator[sbqueue.QueueEvents]:
    ev = sbqueue.QueueEvents("w", redis_url, prefix=prefix, block_ms=200)
    yield ev
    ev.close()


def test_returns_the_return_value(r: redis.Redis, prefix: str, served: None, events: sbqueue.QueueEvents) -> None:
    q = sbqueue.Queue("w", r, prefix=prefix)
    assert q.add("slow", {"answer": {"rows": [1, 2]}}).wait_until_finished(events, timeout=30) == {"rows": [1, 2]}
    # a string that looks like JSON stays the string it was
    assert q.add("slow", {"answer": "42"}).wait_until_finished(events, timeout=30) == "42"


def test_a_failed_job_raises_with_its_reason(r: redis.Redis, prefix: str, served: None,
                                              events: sbqueue.QueueEvents) -> None:
    job = sbqueue.Queue("w", r, prefix=prefix).add("boom", {"to": "x@y"}, attempts=2)
    with pytest.raises(JobFailedError) as caught:
        job.wait_until_finished(events, timeout=30)
    assert caught.value.failed_reason == "invalid email address: x@y" and caught.value.job_id == job.id
    assert job.get_state() == "failed"  # only the final failure ends the wait, not the first attempt's


def test_a_job_that_already_ended_is_answered_at_once(r: redis.Redis, prefix: str, served: None,
                                                       events: sbqueue.QueueEvents) -> None:
    q = sbqueue.Queue("w", r, prefix=prefix)
    job = q.add("fast", {"answer": 7})
    deadline = time.monotonic() + 30
    while job.get_state() != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
    late = sbqueue.QueueEvents("w", r, prefix=prefix)  # made after the job completed: it never sees the event
    try:
        started = time.monotonic()
        assert job.wait_until_finished(late, timeout=5) == 7
        assert time.monotonic() - started < 1
    finally:
        late.close()


def test_timeout_leaves_the_job_alone(r: redis.Redis, prefix: str, events: sbqueue.QueueEvents) -> None:
    job = sbqueue.Queue("w", r, prefix=prefix).add("fast", {"answer": 1})  # no worker: it never runs
    with pytest.raises(WaitTimeoutError, match=r"did not finish within 0\.3 s"):
        job.wait_until_finished(events, timeout=0.3)
    assert job.get_state() == "waiting"
    assert isinstance(WaitTimeoutError("x"), TimeoutError)


def test_bad_arguments_are_refused(r: redis.Redis, prefix: str, events: sbqueue.QueueEvents) -> None:
    q = sbqueue.Queue("w", r, prefix=prefix)
    job = q.add("fast", {"answer": 1})
    other = sbqueue.QueueEvents("other", r, prefix=prefix)
    try:
        for args in ((object(), 1), (other, 1), (events, 0), (events, -1), (events, float("nan")), (events, True)):
            with pytest.raises(InvalidOptionError):
                job.wait_until_finished(*args)
    finally:
        other.close()
    job.remove()
    with pytest.raises(JobNotFoundError):
        job.wait_until_finished(events, timeout=1)


def test_asyncio_flavour(redis_url: str, prefix: str, served: None, events: sbqueue.QueueEvents) -> None:
    async def main() -> None:
        q = sbqueue.AsyncQueue("w", redis_url, prefix=prefix)
        try:
            ok = await q.add("slow", {"answer": [1]})
            bad = await q.add("boom", {"to": "z"})
            assert await ok.wait_until_finished(events, timeout=30) == [1]
            with pytest.raises(JobFailedError, match="invalid email address: z"):
                await bad.wait_until_finished(events, timeout=30)
            never = await q.add("fast", {"answer": 0}, delay=60_000)
            with pytest.raises(WaitTimeoutError):
                await never.wait_until_finished(events, timeout=0.2)
        finally:
            await q.close()

    asyncio.run(main())
