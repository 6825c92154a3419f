"""Steering a running Worker from any thread: pause and resume its fetching, cancel jobs in flight.

:class:`WorkerControl` is a part of :class:`~sbqueue.engine.worker.lifecycle.Worker` (a mixin). Its methods may
be called from any thread — the caller's own, a processor's job thread, a notebook cell — or from the worker's
event loop (an ``async def`` processor, or a program that runs the worker with ``run_async``). What must happen
on the worker's loop is handed to it; nothing here blocks that loop:

- ``pause(wait_for_active=True)`` blocks its caller until the jobs in flight have ended (their outcome recorded);
  on the worker's loop (a listener, an ``async def`` processor) it must not block, so it only pauses there:
  ``await worker.pause_async()`` waits. A processor that pauses its own worker waits for the other jobs, not
  for itself.
- ``cancel_job`` / ``cancel_all_jobs`` return once the attempts are ended (the runner's ``cancel`` ran).

``paused`` / ``resumed`` are emitted in the caller's thread, before ``pause`` / ``resume`` return (the
worker's other events come from its loop). A paused worker fetches nothing and skips the stalled check (as
Node's); jobs in flight run on and settle, and their locks are renewed. It is the worker's own switch: the
queue's global pause is :meth:`sbqueue.Queue.pause`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sbqueue.engine.worker.runners import running_job_id
from sbqueue.engine.worker.state import WorkerState
from sbqueue.errors import InvalidOptionError

T = TypeVar("T")

#: the reason (and failedReason) of a job cancelled without one
CANCELLED = "job cancelled"


class WorkerControl:
    """Pause, resume and cancellation of a :class:`~sbqueue.Worker` (see the module docstring)."""

    _state: WorkerState
    emit: Callable[..., None]

    # --- pausing --------------------------------------------------------------------------------------
    def pause(self, wait_for_active: bool = True, *, timeout: float | None = None) -> bool:
        """Stop fetching jobs (this worker only; BullMQ's ``worker.pause``). With ``wait_for_active``, block until
        the jobs in flight have ended (up to ``timeout`` s). Emits ``paused`` when it pauses a worker that was not
        paused. Returns False if jobs (other than the caller's own) are still in flight: ``timeout`` passed — the
        worker is paused all the same — or the caller is on the worker's own event loop (an event listener, an
        ``async def`` processor), which it must not block: there it pauses without waiting, as a Node listener's
        un-awaited ``worker.pause()`` does; ``await`` :meth:`pause_async` to wait."""
        on_loop = self._on_worker_loop()
        changed = self._switch(True)
        ended = True
        if wait_for_active and on_loop:
            own = self._own_jobs()
            ended = not self._state.pending and all(job_id in own for job_id in self._state.inflight)
        elif wait_for_active:
            done = threading.Event()
            ended = self._wait_idle(done.set, lambda: done.wait(timeout))
        if changed:
            self.emit("paused")
        return ended

    async def pause_async(self, wait_for_active: bool = True, *, timeout: float | None = None) -> bool:
        """:meth:`pause` for a caller on an event loop (an ``async def`` processor, a program running the worker
        with ``run_async``, a notebook's loop): awaits the jobs in flight instead of blocking."""
        changed = self._switch(True)
        ended = True
        if wait_for_active:
            loop = asyncio.get_running_loop()
            done = asyncio.Event()

            def notify() -> None:
                if asyncio.get_running_loop() is loop:
                    done.set()
                else:
                    loop.call_soon_threadsafe(done.set)

            async def wait() -> bool:
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                except asyncio.TimeoutError:
                    return False
                return True

            ended = await self._wait_idle_async(notify, wait)
        if changed:
            self.emit("paused")
        return ended

    def resume(self) -> None:
        """Fetch jobs again after :meth:`pause`; emits ``resumed`` if the worker was paused."""
        if self._switch(False):
            self.emit("resumed")

    def is_paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._state.gate.paused

    def _switch(self, paused: bool) -> bool:
        changed = self._state.gate.set(paused)
        self._call_soon(self._state.wake_up)  # the fetch loop looks again (resume: fetch; pause: check waiters)
        return changed

    def _own_jobs(self) -> frozenset[str]:
        """The jobs whose processor is the caller (a processor pausing its worker cannot wait for itself)."""
        own = set()
        if (job_id := running_job_id()) is not None:
            own.add(job_id)
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop here
            task = None
        if task is not None:
            own.update(job.id for job, job_task in list(self._state.inflight.values()) if job_task is task)
        return frozenset(own)

    def _wait_idle(self, notify: Callable[[], None], wait: Callable[[], bool]) -> bool:
        gate = self._state.gate
        gate.add_waiter(self._own_jobs(), notify)
        if self._state.loop is None:  # stopped (or never started): nothing is in flight
            gate.release_all()
        self._call_soon(self._state.wake_up)
        if wait():
            return True
        gate.discard_waiter(notify)
        return False

    async def _wait_idle_async(self, notify: Callable[[], None], wait: Callable[[], Any]) -> bool:
        gate = self._state.gate
        gate.add_waiter(self._own_jobs(), notify)
        if self._state.loop is None:
            gate.release_all()
        self._call_soon(self._state.wake_up)
        if await wait():
            return True
        gate.discard_waiter(notify)
        return False

    # --- cancelling -----------------------------------------------------------------------------------
    def cancel_job(self, job_id: str, reason: str | None = None, *, retry: bool = False) -> bool:
        """End the attempt of job ``job_id`` if this worker is running it (BullMQ's ``worker.cancelJob``).

        The job's :attr:`~sbqueue.Job.cancellation` token is set; an ``async def`` processor's task is cancelled;
        a sync processor is abandoned (it should check the token: what it returns later is ignored). The job
        fails with ``reason`` as its ``failedReason`` (``"job cancelled"`` if none) and a ``failed`` event — for
        good, as BullMQ's documented pattern (the processor throws ``UnrecoverableError``), or as an ordinary
        failed attempt, retried while attempts remain, with ``retry=True``. False if the job is not in flight
        here (finished already, or another worker's)."""
        why = _reason(reason)
        return self._on_loop(lambda: self._cancel(str(job_id), why, retry), False)

    def cancel_all_jobs(self, reason: str | None = None, *, retry: bool = False) -> int:
        """:meth:`cancel_job` for every job this worker is running (BullMQ's ``cancelAllJobs``); how many."""
        why = _reason(reason)

        def cancel_all() -> int:
            return sum(self._cancel(job_id, why, retry) for job_id in list(self._state.inflight))

        return self._on_loop(cancel_all, 0)

    def _cancel(self, job_id: str, reason: str, retry: bool) -> bool:
        cancel = self._state.cancel_job
        return cancel is not None and cancel(job_id, reason, retry)

    # --- the worker's loop ----------------------------------------------------------------------------
    def _on_worker_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._state.loop
        except RuntimeError:
            return False

    def _call_soon(self, fn: Callable[[], None]) -> None:
        loop = self._state.loop
        if loop is None:
            return
        if self._on_worker_loop():
            fn()
            return
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _on_loop(self, fn: Callable[[], T], stopped: T) -> T:
        """``fn()`` run on the worker's loop (here if this is it), its result; ``stopped`` if it is not running."""
        loop = self._state.loop
        if loop is None:
            return stopped
        if self._on_worker_loop():
            return fn()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:  # handed to the caller
                result.set_exception(exc)

        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # closed meanwhile
            return stopped
        while True:  # a loop that stops before running `call` never answers: look again now and then
            try:
                return result.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if self._state.loop is not loop:
                    return stopped


def _reason(reason: Any) -> str:
    if reason is None:
        return CANCELLED
    if not isinstance(reason, str) or not reason:
        raise InvalidOptionError(f"reason must be a non-empty string or None, got {reason!r}", option="reason")
    return reason
