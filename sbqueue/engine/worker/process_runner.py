"""The :class:`ProcessRunner`: each job runs in a worker child process (``Worker(..., processes=n)``).

For CPU-bound processors (the GIL lets threads run Python one at a time) and for code that crashes, leaks or
hangs: a child that dies takes only its job with it, a timed-out job's child is stopped (so the job never runs
beside its retry, unlike a thread, which can only be abandoned), and a child can be recycled after
``max_jobs_per_child`` jobs or capped at ``max_memory_per_child`` MB. The pool is
:class:`~sbqueue.engine.worker.process_pool.ProcessPool`; this module turns what happened in a child into what
the worker's job runs expect from any runner: the result, the processor's exception (the same class when it can
be rebuilt, with the child's traceback as its cause), :class:`JobTimeoutError`, :class:`JobCancelledError`, or
:class:`~sbqueue.engine.worker.process_wire.WorkerChildDiedError`.

The runner is ``on_loop``: the jobs' queue calls, which children send to the worker, run on the worker's loop
through its asyncio queue handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sbqueue._core import options as _opts
from sbqueue.engine.job import Job
from sbqueue.engine.worker.process_pool import ProcessPool
from sbqueue.engine.worker.process_target import ProcessorTarget, processor_target
from sbqueue.engine.worker.process_wire import ChildRaised, decode_error
from sbqueue.engine.worker.runners import JobCancelledError, JobTimeoutError, cancel_run
from sbqueue.errors import InvalidOptionError

#: the smallest max_memory_per_child (MB) accepted: an interpreter with sbqueue imported needs more than this
MIN_MEMORY_MB = 64


def process_options(
    processor: Any, processes: Any, max_jobs: Any, max_memory: Any
) -> tuple[int | None, int | None, int | None, ProcessorTarget | None]:
    """``Worker(processes=, max_jobs_per_child=, max_memory_per_child=)`` checked before anything connects (the
    processor must import in a child): ``(processes, max_jobs, max_memory_mb, target)``, all None in thread mode."""
    if processes is None:
        for option, value in (("max_jobs_per_child", max_jobs), ("max_memory_per_child", max_memory)):
            if value is not None:
                raise InvalidOptionError(f"{option} needs processes=n (it applies to child processes)",
                                         option=option)  # fmt: skip
        return None, None, None, None
    size = _opts.validate_count(processes, "processes", minimum=1, maximum=1024)
    jobs = None if max_jobs is None else _opts.validate_count(max_jobs, "max_jobs_per_child", minimum=1)
    memory = None
    if max_memory is not None:
        memory = _opts.validate_count(max_memory, "max_memory_per_child (MB)", minimum=MIN_MEMORY_MB, maximum=2**40)
        if not memory_limit_supported():
            raise InvalidOptionError("max_memory_per_child needs RLIMIT_AS, which this platform lacks",
                                     option="max_memory_per_child")  # fmt: skip
    return size, jobs, memory, processor_target(processor)


def memory_limit_supported() -> bool:
    """Whether ``max_memory_per_child`` can be enforced here (``RLIMIT_AS``: Linux, macOS, BSDs)."""
    try:
        import resource
    except ImportError:
        return False
    return hasattr(resource, "RLIMIT_AS")


class ProcessRunner:
    """Runs jobs in a pool of ``processes`` child processes (see the module docstring)."""

    on_loop = True

    def __init__(
        self,
        target: ProcessorTarget,
        processes: int,
        *,
        max_jobs_per_child: int | None = None,
        max_memory_mb: int | None = None,
        emit: Callable[..., None],
    ) -> None:
        self._max_memory_mb = max_memory_mb
        self._waiting: dict[str, asyncio.Task[Any]] = {}  # job id -> its run, waiting for a free child
        self._cancelled: dict[str, JobCancelledError] = {}  # cancelled while waiting
        self._pool = ProcessPool(target, processes, max_jobs=max_jobs_per_child, max_memory_mb=max_memory_mb,
                                 on_error=lambda exc: emit("error", exc))  # fmt: skip

    @property
    def pool(self) -> ProcessPool:
        return self._pool

    async def start(self) -> None:
        """Start the children; raises :class:`~sbqueue.errors.WorkerProcessError` if they cannot start."""
        await self._pool.start()

    async def run(self, job: Job) -> Any:
        pool = self._pool
        child = await self._child_for(job)
        retire = False
        try:
            result = pool.submit(child, job)
            timeout = job.timeout
            if timeout:
                done, _ = await asyncio.wait({result}, timeout=timeout / 1000)
                if not done:
                    # stopped, not abandoned: the job raises this once the child is dead, so its retry can
                    # never run beside it
                    pool.stop(child, JobTimeoutError(
                        f"job {job.id} timed out after {timeout} ms (its worker child process {child.pid} was stopped)"
                    ), graceful=True)  # fmt: skip
            try:
                return await result
            except ChildRaised as raised:
                exc = decode_error(raised.payload)
                if isinstance(exc, MemoryError):  # the child's heap may be in any state: start a fresh one
                    retire = True
                    exc = self._out_of_memory(job, child.pid, exc)
                raise exc from exc.__cause__
        except asyncio.CancelledError:
            # the worker put the job back (shutdown deadline) or stopped: it must not keep running here
            pool.stop(child, None, graceful=False)
            raise
        finally:
            pool.release(child, retire=retire)

    async def _child_for(self, job: Job) -> Any:
        """A child for ``job``, waiting for one (with ``concurrency`` above ``processes``) — cancellable."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting[job.id] = task
        try:
            return await self._pool.acquire()
        except asyncio.CancelledError:
            cancelled = self._cancelled.pop(job.id, None)
            if cancelled is None or task.uncancel() > 0:  # not (only) ours: the worker's shutdown wins
                raise
            raise cancelled from None
        finally:
            del self._waiting[job.id]

    def cancel(self, job: Job, reason: str) -> bool:
        """Stop the child running ``job`` (SIGTERM, then SIGKILL): its run raises :class:`JobCancelledError` once
        the child is dead. A job still waiting for a child raises it at once. False if ``job`` is not here."""
        child = self._pool.running(job.id)
        if child is not None:
            job.cancellation.cancel(reason)
            self._pool.stop(child, JobCancelledError(reason), graceful=True)
            return True
        return cancel_run(self._waiting.get(job.id), self._cancelled, job, reason)

    def shutdown(self) -> None:
        """Stop and wait for the children (in-flight jobs were put back and their children killed already)."""
        self._pool.shutdown()

    def _out_of_memory(self, job: Job, pid: int, exc: BaseException) -> MemoryError:
        limit = f" (max_memory_per_child is {self._max_memory_mb} MB)" if self._max_memory_mb else ""
        detail = f": {exc}" if str(exc) else ""
        error = MemoryError(f"job {job.id}: out of memory in worker child process {pid}{limit}{detail}")
        error.__cause__ = exc
        return error
