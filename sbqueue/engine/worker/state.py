"""What the worker's parts share: the jobs in flight, the finishes waiting to be sent, and the wake-up call.

One :class:`WorkerState` lives as long as its Worker. The fetch loop, the job runs, lock renewal and the
round trips read and change it on the worker's event loop; ``closing`` and ``close_timeout`` are also set
from the thread that calls ``close()``, the pause gate from the thread that calls ``pause()``. A
``Settlement`` is one finished job waiting for the next ``finish_and_fetch`` call, with the event to emit
once Redis has recorded it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sbqueue._core.finish import Finish
from sbqueue.engine.job import Job
from sbqueue.engine.worker.pausing import PauseGate

#: A finished job waiting to be sent, and the worker event its recording fires: ``(finish, job, event,
#: payload)`` — ``event`` is "completed", "failed" or "" (none: a requeue), ``payload`` the event's second
#: argument (the result or the error). A plain tuple: one is made per job, and a NamedTuple costs 6x more.
Settlement = tuple[Finish, Job, str, Any]


class WorkerState:
    """Mutable state of one worker, shared by its parts (see the module docstring)."""

    def __init__(self) -> None:
        self.inflight: dict[str, tuple[Job, asyncio.Future[Any]]] = {}  # job id -> (job, its task)
        self.pending: list[Settlement] = []  # finished since the last round trip, in order
        self.moved: set[str] = set()  # ids a processor moved to delayed: their locks are no longer renewed
        self.processed = 0  # completed jobs
        self.failed_count = 0  # final failures (not retried attempts)
        self.closing = False
        self.close_timeout: float | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the running worker's loop, None when stopped
        self.wake: asyncio.Event | None = None  # set to make the fetch loop look again
        self.gate = PauseGate()  # Worker.pause: no fetching while paused, and who waits for the jobs in flight
        #: ends a job's attempt, on the loop: (job id, reason, retry) -> cancelled? (None while stopped)
        self.cancel_job: Callable[[str, str, bool], bool] | None = None

    def wake_up(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def take_pending(self) -> list[Settlement]:
        """The finishes to send now (the list starts afresh)."""
        batch, self.pending = self.pending, []
        return batch

    def put_back(self, batch: list[Settlement]) -> None:
        """A round trip failed: its finishes go first in the next one."""
        self.pending = batch + self.pending
