"""Dead-lettering: a job that failed for good is also added to its dead-letter queue (DLQ).

Before each round trip sends its finishes, :meth:`DeadLetters.write` adds one letter (an ordinary BullMQ
job, :mod:`sbqueue._core.dead_letters`) for every final failure in the batch whose job has a DLQ — its own
``opts.deadLetterQueue`` or the worker's ``dead_letter_queue`` — in one pipelined round trip, which also
names a DLQ the worker has not written to before in the registry of DLQs (``SADD``, best effort). Final
failures are attempts exhausted, :class:`~sbqueue.errors.UnrecoverableError`, a job the stalled check
flagged (stalled more than ``max_stalled_count``), a parent whose failed child forbids it to complete.

Order of the two writes: the letter first, then the finish. A letter's id is derived from the source queue,
job id, creation time and attempt, so writing it again is a no-op duplicate: a round trip that failed (and is
retried), or a worker that died between the two writes (the job stays active, the stalled check puts it back,
and its next final failure at the same attempt writes the same id), never makes a second letter, and no job
leaves ``active`` for ``failed`` without its letter in Redis. What this cannot rule out: after such a crash the
re-run may *succeed*, or a lock lost mid-run may let another worker take the job over; then a letter exists
for an attempt that did not end failed (its ``opts.deadLetter`` names the source job and attempt: check it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from sbqueue._core import dead_letters as _dead
from sbqueue._core.finish import FinishKind
from sbqueue._version import __version__
from sbqueue.connection import full as _full
from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine.job import Job
from sbqueue.engine.worker.state import Settlement
from sbqueue.errors import InvalidOptionError, SbqueueError

#: errors after which the letter is retried with the whole round trip (the finish waits for it); a full Redis too
RETRIED = (redis.ConnectionError, redis.TimeoutError, OSError)


class DeadLetters:
    """Writes the letters of one worker run (see the module docstring)."""

    def __init__(self, client: Any, source: AsyncQueue, default: str | None, emit: Callable[..., None]) -> None:
        self._client = client
        self._source = source
        self._default = default
        self._emit = emit
        self._queues: dict[str, AsyncQueue] = {}
        self._registered: set[str] = set()  # DLQs this worker named in the registry (_dead.registry_key)

    def _target(self, job: Job) -> AsyncQueue | None:
        name = _dead.target_of(job.opts, self._default, self._source.name)
        own = job.opts.get(_dead.OPTION)
        if own is not None and name != own:
            self._emit("error", InvalidOptionError(
                f"job {job.id}: opts.{_dead.OPTION}={own!r} is not a queue this job can be dead-lettered to; "
                f"using {name!r}" if name else f"job {job.id}: opts.{_dead.OPTION}={own!r} is not a valid "
                "dead-letter queue (not a queue name, or the job's own queue): no letter written",
                option=_dead.OPTION, job_id=job.id))  # fmt: skip
        if name is None:
            return None
        queue = self._queues.get(name)
        if queue is None:
            try:
                queue = self._queues[name] = AsyncQueue(name, self._client, self._source.prefix)
            except SbqueueError as exc:  # e.g. a DLQ in another cluster slot: reported, the job fails as before
                self._emit("error", exc)
                return None
        return queue

    async def write(self, batch: list[Settlement], now: int) -> None:
        """Add the letters of the final failures in ``batch`` (before the batch's finishes are sent)."""
        letters: list[tuple[Job, AsyncQueue, str, list[Any]]] = []
        for finish, job, _event, _payload in batch:
            if finish.kind is FinishKind.FAILED:
                queue = self._target(job)
                if queue is not None:
                    letters.append((job, queue, *letter_for(job, self._source.prefix, self._source.name, now)))
        if not letters:
            return
        new = {id(q): q for _job, q, _id, _args in letters if not q._meta_written}.values()
        unregistered = sorted({q.name for _job, q, _id, _args in letters} - self._registered)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                if unregistered:  # best effort (see below): first, so its reply is replies[0]
                    pipe.sadd(_dead.registry_key(self._source.prefix), *unregistered)
                for queue in new:  # as AsyncQueue._ensure_meta, in the same round trip
                    pipe.hset(queue.keys.key("meta"), mapping={"version": f"sbqueue:{__version__}",
                                                               "opts.maxLenEvents": queue.max_len_events})  # fmt: skip
                for _job, queue, _id, args in letters:
                    await queue._run("add_job", args, client=pipe)
                replies = await pipe.execute(raise_on_error=False)
            # the registry only speeds up recognising DLQs (an ACL without SADD, say): its failure is no error
            for reply in replies[1:] if unregistered else replies:
                if isinstance(reply, Exception):
                    raise reply
        except Exception as exc:
            if isinstance(exc, RETRIED) or _full.is_full(exc):
                raise  # the round trip puts its batch back: letters and finishes are retried together
            # refused for good (an ACL without the DLQ's keys, a broken key): reported; the jobs fail as before
            self._emit("error", exc)
            return
        for queue in new:
            queue._meta_written = True
        if unregistered and not isinstance(replies[0], Exception):
            self._registered.update(unregistered)
        for job, queue, letter, _args in letters:
            self._emit("dead-lettered", job, queue.name, letter)


def letter_for(job: Job, prefix: str, queue: str, now: int) -> tuple[str, list[Any]]:
    """The letter of ``job`` (of ``queue``), which failed for good: its id and its ``add_job`` ARGV."""
    return _dead.letter_argv(
        prefix=prefix, queue=queue, job_id=job.id, name=job.name, data=job.data, opts=job.opts,
        failed_reason=job.failed_reason or "", stacktrace=job.stacktrace, attempts_made=job.attempts_made,
        timestamp=job.timestamp, processed_on=job.processed_on, now=now,
    )  # fmt: skip

