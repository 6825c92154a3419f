"""Job runners: how the worker runs its processor on one job — the seam between scheduling and execution.

A :class:`JobRunner` takes a job and returns the processor's result (or raises what it raised, or
:class:`JobTimeoutError` past the job's ``timeout`` option). :class:`LoopRunner` awaits an ``async def``
processor on the worker's own event loop; :class:`ThreadRunner` runs a plain function on
:class:`~sbqueue.engine.worker.job_threads.JobThreads`. :func:`runner_for` picks one. Another way to run
jobs is one more class with the same members: :class:`~sbqueue.engine.worker.process_runner.ProcessRunner` runs
them in child processes.

Cancelling (:meth:`JobRunner.cancel`, called on the worker's loop) ends the attempt at once: ``run`` raises
:class:`JobCancelledError`. The job's :class:`~sbqueue.engine.job.Cancellation` token is set; an ``async def``
processor's task is cancelled; a sync processor's thread cannot be stopped, so it is abandoned (as at a
timeout: its late result is ignored, its thread no longer holds a slot) and should check the token; a process
job's child is stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sbqueue.engine.job import Job
from sbqueue.engine.worker.job_threads import JobThreads
from sbqueue.errors import JobCancelledError

__all__ = ["JobCancelledError", "JobRunner", "JobTimeoutError", "LoopRunner", "ThreadRunner", "runner_for",
           "running_job_id"]  # fmt: skip

_running = threading.local()  # the job a job thread is running now (its id), for Worker.pause


def running_job_id() -> str | None:
    """The id of the job this thread runs a sync processor for (None outside job threads)."""
    return getattr(_running, "job_id", None)


class JobTimeoutError(TimeoutError):
    """A job ran longer than its ``timeout`` option (distinct from a TimeoutError the processor raises)."""


def cancel_run(
    run: asyncio.Future[Any] | None, cancelled: dict[str, JobCancelledError], job: Job, reason: str
) -> bool:
    """Cancel ``run`` (the task or future ``job``'s run awaits), noting the reason in ``cancelled`` so that the run
    raises :class:`JobCancelledError` rather than CancelledError; sets the job's cancellation token. False when
    there is nothing (left) to cancel."""
    if run is None or run.done() or job.id in cancelled:
        return False
    job.cancellation.cancel(reason)
    cancelled[job.id] = JobCancelledError(reason)
    run.cancel()
    return True


class JobRunner(Protocol):
    """Runs the processor on one job (see the module docstring)."""

    #: the processor runs on the worker's loop, so its job talks to Redis through the asyncio queue
    on_loop: bool

    async def start(self) -> None:
        """Before the first job: start what the runner needs (raises if it cannot)."""
        ...

    async def run(self, job: Job) -> Any:
        """The processor's result for ``job``; raises what the processor raised, or JobTimeoutError."""
        ...

    def cancel(self, job: Job, reason: str) -> bool:
        """End ``job``'s attempt now (on the worker's loop): its ``run`` raises :class:`JobCancelledError` with
        ``reason``; False if the runner is not running it (or it has already ended)."""
        ...

    def shutdown(self) -> None:
        """The worker has stopped: release what the runner holds (jobs still running may finish)."""
        ...


def is_async_processor(processor: Callable[..., Any]) -> bool:
    # an object whose __call__ is `async def` counts as async too
    return inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
        type(processor).__call__  # type: ignore[operator]
    )


def runner_for(processor: Callable[[Job], Any], thread_name: str) -> JobRunner:
    """The runner for ``processor``: on the loop if it is ``async def``, else on job threads."""
    if is_async_processor(processor):
        return LoopRunner(processor)
    return ThreadRunner(processor, thread_name)


class LoopRunner:
    """An ``async def`` processor, awaited on the worker's loop; a timeout or a cancel cancels it."""

    on_loop = True

    def __init__(self, processor: Callable[[Job], Any]) -> None:
        self._processor = processor
        self._tasks: dict[str, asyncio.Task[Any]] = {}  # job id -> the task awaiting its processor
        self._cancelled: dict[str, JobCancelledError] = {}

    async def start(self) -> None:
        pass

    async def run(self, job: Job) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[job.id] = task
        try:
            if not job.timeout:
                result = await self._processor(job)  # the hot path: no extra task per job
            else:
                result = await within_timeout(asyncio.ensure_future(self._processor(job)), job, job.timeout)
        except BaseException as exc:  # once cancelled, however the processor ended, the attempt was cancelled
            cancelled = self._cancelled.pop(job.id, None)
            if cancelled is None:
                raise
            if task.uncancel() > 0 and isinstance(exc, asyncio.CancelledError):
                raise  # also cancelled from outside (the worker's shutdown): that wins
            raise cancelled from None
        finally:
            del self._tasks[job.id]
        cancelled = self._cancelled.pop(job.id, None)
        if cancelled is not None:  # the processor swallowed the CancelledError: the attempt is over all the same
            task.uncancel()
            raise cancelled
        return result

    def cancel(self, job: Job, reason: str) -> bool:
        return cancel_run(self._tasks.get(job.id), self._cancelled, job, reason)

    def shutdown(self) -> None:
        pass


class ThreadRunner:
    """A plain function, run on a job thread; a timeout or a cancel abandons it (threads cannot be killed)."""

    on_loop = False

    def __init__(self, processor: Callable[[Job], Any], thread_name: str) -> None:
        self._processor = processor
        self._threads = JobThreads(thread_name)
        self._work: dict[str, asyncio.Future[Any]] = {}  # job id -> its thread's result
        self._cancelled: dict[str, JobCancelledError] = {}

    async def start(self) -> None:
        pass

    async def run(self, job: Job) -> Any:
        work = self._submit(job)
        self._work[job.id] = work
        try:
            if not job.timeout:
                return await work
            return await within_timeout(work, job, job.timeout)
        except asyncio.CancelledError:
            cancelled = self._cancelled.get(job.id)
            task = asyncio.current_task()
            if cancelled is None or (task is not None and task.cancelling()):  # the task itself was cancelled
                raise
            raise cancelled from None
        finally:
            del self._work[job.id]
            self._cancelled.pop(job.id, None)

    def _submit(self, job: Job) -> asyncio.Future[Any]:
        """Start the processor on a job thread."""
        return self._threads.submit(asyncio.get_running_loop(), self._call, job)

    def _call(self, job: Job) -> Any:
        _running.job_id = job.id
        try:
            return self._processor(job)
        finally:
            _running.job_id = None

    def cancel(self, job: Job, reason: str) -> bool:
        # the awaiting run() wakes with the cancel; the thread runs on, its result ignored
        return cancel_run(self._work.get(job.id), self._cancelled, job, reason)

    def shutdown(self) -> None:
        self._threads.shutdown()


async def within_timeout(work: asyncio.Future[Any], job: Job, timeout_ms: int) -> Any:
    try:
        done, _ = await asyncio.wait({work}, timeout=timeout_ms / 1000)
    except asyncio.CancelledError:
        work.cancel()
        raise
    if not done:
        # an async processor is cancelled; a sync one is abandoned (threads cannot be killed) and
        # its thread no longer counts: the pool starts another for the next job
        work.cancel()
        raise JobTimeoutError(f"job {job.id} timed out after {timeout_ms} ms")
    return work.result()
