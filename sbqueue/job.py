"""The :class:`Job` object returned by queues and handed to processors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from ._core.records import decode_job_hash


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
        """Delete this job (refused while a worker holds its lock)."""
        return self.queue.remove(self.id)

    def promote(self) -> Any:
        """Run this delayed job now."""
        return self.queue.promote_job(self.id)

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


def _dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
