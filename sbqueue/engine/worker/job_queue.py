"""The queue a processor's job talks through: the worker's queue, plus what the worker must learn.

A progress update also fires the worker's ``progress`` event; a job that moves itself to delayed stops
having its lock renewed; one that moves to waiting-children drops its token. Sync processors call from job
threads, so their notices reach the worker on its event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sbqueue.engine.job import Job
from sbqueue.engine.worker.state import WorkerState


class JobQueue:
    """Wraps the worker's sync or asyncio queue for the jobs it runs (see the module docstring)."""

    def __init__(self, queue: Any, emit: Callable[..., None], state: WorkerState) -> None:
        self._queue = queue
        self._emit = emit
        self._state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def _set_job_field(self, job: Job, field: str, value: Any) -> Any:
        result = self._queue._set_job_field(job, field, value)
        if field != "progress":
            return result
        if inspect.isawaitable(result):

            async def then() -> None:
                await result
                self._emit("progress", job, value)

            return then()
        loop = self._state.loop  # sync processors run on job threads: emit on the worker's loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._emit, "progress", job, value)
            except RuntimeError:  # the worker has stopped (an abandoned job still reporting)
                pass
        return result

    def _move_to_delayed(self, job: Job, timestamp_ms: int) -> Any:
        # once moved, the job is no longer ours: its lock is not renewed any more. The token is kept, so a
        # processor that raises (or returns) afterwards settles with the lock check, as Node does: the lock
        # is gone (or another worker's), so that changes nothing and the worker emits `error`
        result = self._queue._move_to_delayed(job, timestamp_ms)
        if inspect.isawaitable(result):

            async def then() -> None:
                await result
                self._state.moved.add(job.id)

            return then()
        loop = self._state.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._state.moved.add, job.id)
            except RuntimeError:
                pass
        return result

    def _move_to_waiting_children(self, job: Job, child: str | None) -> Any:
        # once moved, the job is no longer ours (as _move_to_delayed): drop the token
        result = self._queue._move_to_waiting_children(job, child)
        if inspect.isawaitable(result):

            async def then() -> bool:
                moved = bool(await result)
                if moved:
                    job.token = None
                return moved

            return then()
        if result:
            job.token = None
        return result
