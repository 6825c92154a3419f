"""The :class:`Job` object returned by queues and handed to processors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import math
import threading
from collections.abc import Mapping
from typing import Any

from sbqueue._core.records import decode_job_hash
from sbqueue.engine import waiting
from sbqueue.errors import JobCancelledError, JobStateError

_CANCELLATION_LOCK = threading.Lock()


class Cancellation:
    """A job's cancellation token (``job.cancellation``): set when the worker cancels the attempt
    (``Worker.cancel_job``). Sync processors check it (``is_set()``, ``raise_if_cancelled()``) or wait on
    it (``wait(timeout)``, a :class:`threading.Event` underneath); an ``async def`` processor's task is
    cancelled as well. Once set, the attempt has ended: what the processor does afterwards is ignored."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        #: what the canceller gave as the reason (None: none given)
        self.reason: str | None = None

    def __repr__(self) -> str:
        return f"<Cancellation set={self.is_set()} reason={self.reason!r}>"

    def cancel(self, reason: str | None = None) -> None:
        """Set the token (the worker does; the first reason stays)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        """True once the attempt was cancelled."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds passed; True if cancelled (an interruptible sleep)."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~sbqueue.JobCancelledError` if the attempt was cancelled."""
        if self._event.is_set():
            raise JobCancelledError(self.reason)


@dataclasses.dataclass(eq=False, repr=False)
class Job:
    """One job, as read from Redis.

    Methods act through the queue the job came from: with :class:`sbqueue.Queue` they run at once;
    with :class:`sbqueue.AsyncQueue` they return awaitables. Attributes mirror BullMQ's job hash in
    snake_case (``attempts_made`` is ``atm``, ``processed_by`` is ``pb``, …); times are epoch ms.
    """

    queue: Any
    id: str
    name: str = ""
    data: Any = None
    opts: dict[str, Any] = dataclasses.field(default_factory=dict)
    progress: Any = 0
    returnvalue: Any = None
    failed_reason: str | None = None
    stacktrace: list[str] = dataclasses.field(default_factory=list)
    timestamp: int | None = None
    processed_on: int | None = None
    finished_on: int | None = None
    delay: int = 0
    priority: int = 0
    attempts_made: int = 0
    attempts_started: int = 0
    stalled_count: int = 0
    processed_by: str | None = None
    parent_key: str | None = None
    parent: Any = None
    scheduler_id: str | None = None
    dedup_id: str | None = None
    deferred_failure: str | None = None
    parse_error: str | None = None
    #: the lock token while a worker processes this job
    token: str | None = None

    @classmethod
    def from_hash(cls, queue: Any, job_id: str, raw: Mapping[str, str], token: str | None = None) -> Job:
        """Build a job from its hash (tolerating anything a peer may have written)."""
        return cls(queue=queue, id=job_id, token=token, **decode_job_hash(raw))

    def __repr__(self) -> str:
        return f"<Job {self.id!r} name={self.name!r} queue={getattr(self.queue, 'name', '?')!r}>"

    @property
    def cancellation(self) -> Cancellation:
        """This attempt's :class:`Cancellation` token (made on first use: most jobs never need one)."""
        token = self.__dict__.get("_cancellation")
        if token is None:
            with _CANCELLATION_LOCK:  # the processor's thread and the canceller may ask at once
                token = self.__dict__.setdefault("_cancellation", Cancellation())
        return token

    # --- derived ---------------------------------------------------------------------------
    @property
    def max_attempts(self) -> int:
        """``opts.attempts`` (BullMQ treats 0/absent as 1)."""
        value = self.opts.get("attempts") or 1
        return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else 1

    @property
    def timeout(self) -> int | None:
        """Per-job timeout in ms (sbqueue extension), or None."""
        value = self.opts.get("timeout")
        return int(value) if isinstance(value, (int, float)) and 0 < value < 2**53 else None

    @property
    def created_at(self) -> dt.datetime | None:
        return _dt(self.timestamp)

    @property
    def processed_at(self) -> dt.datetime | None:
        return _dt(self.processed_on)

    @property
    def finished_at(self) -> dt.datetime | None:
        return _dt(self.finished_on)

    # --- actions (delegated to the queue: sync or awaitable) ---------------------------------
    def get_state(self) -> Any:
        """The job's current state name (``"waiting"``, ``"active"``, …, ``"unknown"``)."""
        return self.queue.get_job_state(self.id)

    def retry(self, state: str = "failed", *, reset_attempts: bool = False) -> Any:
        """Move this failed (or completed) job back to run again."""
        return self.queue.retry_job(self.id, state, reset_attempts=reset_attempts)

    def remove(self) -> Any:
        """Delete this job and its children (refused while a worker holds its lock or a pending child's)."""
        return self.queue.remove(self.id)

    def promote(self) -> Any:
        """Run this delayed job now."""
        return self.queue._promote(self)

    def update_data(self, data: Any) -> Any:
        """Replace the job's data."""
        return self.queue._set_job_field(self, "data", data)

    def update_progress(self, progress: Any) -> Any:
        """Store progress (a number or JSON object) and emit a ``progress`` event."""
        return self.queue._set_job_field(self, "progress", progress)

    def log(self, line: str) -> Any:
        """Append a line to the job's logs (kept to ``opts.kl`` lines when set)."""
        return self.queue.add_job_log(self.id, line, keep_logs=self.opts.get("kl") or 0)

    def change_priority(self, priority: int, *, lifo: bool = False) -> Any:
        """Change the priority (re-sorting the job if it is waiting)."""
        return self.queue._change_priority(self, priority, lifo)

    def change_delay(self, delay: Any) -> Any:
        """Set a delayed job's delay to ``delay`` ms (or timedelta) from now."""
        return self.queue._change_delay(self, delay)

    def move_to_delayed(self, timestamp_ms: int) -> Any:
        """From a processor: park this job until ``timestamp_ms``; then raise :class:`DelayedError`."""
        return self.queue._move_to_delayed(self, timestamp_ms)

    # --- manual processing (jobs from Worker.get_next_job) ------------------------------------------
    def extend_lock(self, token: str, duration: int) -> Any:
        """Keep the lock ``token`` holds for ``duration`` ms more (BullMQ's ``extendLock``); the job also stops
        being a stalled candidate. :class:`~sbqueue.LockMismatchError` if ``token`` does not hold the lock."""
        return self.queue._extend_lock(self, token, duration)

    def move_to_completed(self, value: Any, token: str, *, fetch_next: bool = False) -> Any:
        """Complete this job fetched with :meth:`sbqueue.Worker.get_next_job` (``value`` is its return value).
        With ``fetch_next``, the same call fetches the next job, locked with ``token``, and returns it (or
        None). :class:`~sbqueue.LockMismatchError` if ``token`` no longer holds the lock (nothing changes)."""
        return self._manual_queue()._move_to_completed(self, value, token, fetch_next)

    def move_to_failed(self, error: BaseException | str, token: str, *, fetch_next: bool = False) -> Any:
        """Fail this attempt of a job fetched with :meth:`sbqueue.Worker.get_next_job`, as the worker fails an
        attempt whose processor raised ``error``: retried (now or after its backoff) while attempts remain,
        unless ``error`` is an :class:`~sbqueue.UnrecoverableError`. ``fetch_next`` as in
        :meth:`move_to_completed`."""
        return self._manual_queue()._move_to_failed(self, error, token, fetch_next)

    def _manual_queue(self) -> Any:
        if not hasattr(self.queue, "_move_to_completed"):
            raise JobStateError(
                f"job {self.id} was not fetched with Worker.get_next_job: only such jobs are moved by hand",
                job_id=self.id,
            )
        return self.queue

    # --- flows (parent/child) ------------------------------------------------------------------
    def wait_until_finished(self, queue_events: Any, timeout: float | None = None) -> Any:
        """Wait for this job to end, as BullMQ's ``waitUntilFinished``: its return value, or
        :class:`~sbqueue.JobFailedError` (``.failed_reason``) when it ends failed for good; past ``timeout``
        seconds, :class:`~sbqueue.WaitTimeoutError`. ``queue_events`` is a :class:`~sbqueue.QueueEvents` of the
        job's queue (started if it is not). A job that already ended is answered at once.

        Example: ``job = q.add("resize", {...}); job.wait_until_finished(QueueEvents("images"), timeout=30)``
        """
        if inspect.iscoroutinefunction(self.queue.get_job):
            return waiting.wait_async(self, queue_events, timeout)
        return waiting.wait_sync(self, queue_events, timeout)

    def get_children_values(self) -> Any:
        """Return values of this job's completed children: ``{child job key: value}``."""
        return self.queue.get_children_values(self.id)

    def get_ignored_children_failures(self) -> Any:
        """Failed reasons of children whose failure this job ignores: ``{child job key: reason}``."""
        return self.queue.get_ignored_children_failures(self.id)

    def get_failed_children_values(self) -> Any:
        """The same as :meth:`get_ignored_children_failures` (BullMQ's older name)."""
        return self.queue.get_ignored_children_failures(self.id)

    def get_dependencies(
        self, *, processed: Any = None, unprocessed: Any = None, failed: Any = None, ignored: Any = None
    ) -> Any:
        """This job's children by kind (see :meth:`sbqueue.Queue.get_dependencies`)."""
        return self.queue.get_dependencies(
            self.id, processed=processed, unprocessed=unprocessed, failed=failed, ignored=ignored
        )

    def get_dependencies_count(
        self, *, processed: bool = False, unprocessed: bool = False, ignored: bool = False, failed: bool = False
    ) -> Any:
        """How many children of each kind (see :meth:`sbqueue.Queue.get_dependencies_count`)."""
        return self.queue.get_dependencies_count(
            self.id, processed=processed, unprocessed=unprocessed, ignored=ignored, failed=failed
        )

    def remove_child_dependency(self) -> Any:
        """Detach this job from its parent (the parent stops waiting for it); True if it was pending."""
        return self.queue._remove_child_dependency(self)

    def remove_unprocessed_children(self) -> Any:
        """Delete this job's children that have not started (:meth:`sbqueue.Queue.remove_unprocessed_children`)."""
        return self.queue.remove_unprocessed_children(self.id)

    def move_to_waiting_children(self, token: str | None = None, child: str | None = None) -> Any:
        """From a processor (the step pattern): wait for this job's pending children (or the child job key
        ``child``). True if the job moved to waiting-children — then raise :class:`WaitingChildrenError`;
        False if nothing is pending. ``token`` defaults to the worker's lock token."""
        if token is not None and token != self.token:
            return self.queue.move_to_waiting_children(self.id, token, child)
        return self.queue._move_to_waiting_children(self, child)


@dataclasses.dataclass(eq=False)
class JobNode:
    """A job of a flow and the nodes of its children (``FlowProducer.add`` and ``Queue.get_flow``)."""

    job: Job
    children: list[JobNode] = dataclasses.field(default_factory=list)

    def __repr__(self) -> str:
        return f"<JobNode {self.job.id!r} children={len(self.children)}>"


def _dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
