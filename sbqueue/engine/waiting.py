"""Waiting for a job's end: :meth:`sbqueue.Job.wait_until_finished`, as BullMQ's ``waitUntilFinished``.

The wait listens on a running :class:`~sbqueue.QueueEvents` for ``completed:<id>`` / ``failed:<id>``, then
looks once at the job itself: a job that ended before the listeners were in place is answered from Redis, so
no end is missed whatever the timing. The answer is the return value, or :class:`JobFailedError` with the
failed reason; past ``timeout`` seconds, :class:`WaitTimeoutError` (the job itself is left alone).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable
from typing import Any

from sbqueue.engine.events import QueueEvents
from sbqueue.errors import InvalidOptionError, JobFailedError, JobNotFoundError, WaitTimeoutError

#: what the one look at the job says: still running, or how it ended
_RUNNING = object()


def _check(job: Any, queue_events: Any, timeout: float | None) -> float | None:
    if not isinstance(queue_events, QueueEvents):
        raise InvalidOptionError(f"queue_events must be a sbqueue.QueueEvents, got {type(queue_events).__name__}",
                                 option="queue_events")  # fmt: skip
    if queue_events.keys.base != job.queue.keys.base:
        raise InvalidOptionError(f"queue_events follows {queue_events.keys.base!r}, the job is in "
                                 f"{job.queue.keys.base!r}", option="queue_events")  # fmt: skip
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):  # fmt: skip
        raise InvalidOptionError(f"timeout must be seconds > 0 or None, got {timeout!r}", option="timeout")
    if getattr(queue_events, "_thread", None) is None:
        queue_events.start()  # the listeners need the reader thread
    return None if timeout is None else float(timeout)


def _ending(found: list[Any], job_id: str) -> Any:
    """The outcome from ``EXISTS job``, ``ZSCORE completed``, ``ZSCORE failed``, ``HMGET returnvalue failedReason``."""
    exists, completed, failed, (value, reason) = found
    if not exists:
        raise JobNotFoundError(f"job {job_id!r} does not exist (removed, or never added)", job_id=job_id)
    if completed is not None:
        return ("completed-json", value)  # the hash holds the JSON text
    if failed is not None:
        return ("failed", reason)
    return _RUNNING


def _answer(job_id: str, outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "failed":
        raise JobFailedError(f"job {job_id!r} failed: {value}", failed_reason=str(value or ""), job_id=job_id)
    if kind == "completed-json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:  # a peer's non-JSON text is returned as it is
            return value
    return value  # from the completed event: QueueEvents already decoded it


def _listen(queue_events: QueueEvents, job_id: str, settle: Callable[[tuple[str, Any]], None]) -> Callable[[], None]:
    def completed(event: dict[str, Any]) -> None:
        settle(("completed", event.get("returnvalue")))

    def failed(event: dict[str, Any]) -> None:
        settle(("failed", event.get("failedReason")))

    queue_events.on(f"completed:{job_id}", completed)
    queue_events.on(f"failed:{job_id}", failed)

    def stop() -> None:
        queue_events.off(f"completed:{job_id}", completed)
        queue_events.off(f"failed:{job_id}", failed)

    return stop


def _timed_out(job: Any, timeout: float) -> WaitTimeoutError:
    return WaitTimeoutError(f"job {job.id!r} ({job.name}) did not finish within {timeout:g} s", job_id=job.id)


def _reads(pipe: Any, job: Any) -> None:
    keys = job.queue.keys
    pipe.exists(keys.job(job.id))
    pipe.zscore(keys.key("completed"), job.id)
    pipe.zscore(keys.key("failed"), job.id)
    pipe.hmget(keys.job(job.id), "returnvalue", "failedReason")


def wait_sync(job: Any, queue_events: Any, timeout: float | None) -> Any:
    """See :meth:`sbqueue.Job.wait_until_finished` (a job of a :class:`sbqueue.Queue`)."""
    limit = _check(job, queue_events, timeout)
    done = threading.Event()
    outcome: list[tuple[str, Any]] = []

    def settle(result: tuple[str, Any]) -> None:
        if not done.is_set():
            outcome.append(result)
            done.set()

    stop = _listen(queue_events, job.id, settle)
    try:
        with job.queue._client.pipeline(transaction=False) as pipe:
            _reads(pipe, job)
            now = _ending(pipe.execute(), job.id)
        if now is not _RUNNING:
            settle(now)
        if not done.wait(limit):
            raise _timed_out(job, limit or 0)
        return _answer(job.id, outcome[0])
    finally:
        stop()


async def wait_async(job: Any, queue_events: Any, timeout: float | None) -> Any:
    """See :meth:`sbqueue.Job.wait_until_finished` (a job of a :class:`sbqueue.AsyncQueue`)."""
    limit = _check(job, queue_events, timeout)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[str, Any]] = loop.create_future()

    def settle_here(result: tuple[str, Any]) -> None:
        if not future.done():
            future.set_result(result)

    def settle(result: tuple[str, Any]) -> None:  # listeners run on the events reader thread
        loop.call_soon_threadsafe(settle_here, result)

    stop = _listen(queue_events, job.id, settle)
    try:
        async with job.queue._client.pipeline(transaction=False) as pipe:
            _reads(pipe, job)
            now = _ending(await pipe.execute(), job.id)
        if now is not _RUNNING:
            settle_here(now)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), limit)
        except asyncio.TimeoutError:
            raise _timed_out(job, limit or 0) from None
        return _answer(job.id, result)
    finally:
        stop()
