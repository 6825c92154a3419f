"""One fetched job from start to outcome: a task per job, whose end becomes a settlement.

:meth:`JobRuns.start` gives the job its queue handle and starts its task: the next run of a job
scheduler is scheduled, a job that must fail without running (flagged by the stalled check, or data a peer
wrote that is not JSON) fails, else the runner runs the processor and the
:class:`~sbqueue.engine.worker.outcomes.Settler` records how that ended. :meth:`JobRuns.release_all` puts
unfinished jobs back at the shutdown deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis

from sbqueue._core import options as _opts
from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.job import Job
from sbqueue.engine.worker.job_queue import JobQueue
from sbqueue.engine.worker.outcomes import Settler
from sbqueue.engine.worker.runners import JobCancelledError, JobRunner, JobTimeoutError
from sbqueue.engine.worker.state import WorkerState
from sbqueue.errors import DataError, DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError


class JobRuns:
    """Starts and ends the tasks of the jobs in flight (see the module docstring)."""

    def __init__(
        self,
        state: WorkerState,
        settler: Settler,
        runner: JobRunner,
        emit: Callable[..., None],
        *,
        queue: Queue,
        aqueue: AsyncQueue,
    ) -> None:
        self._state = state
        self._settler = settler
        self._runner = runner
        self._emit = emit
        self._aqueue = aqueue
        self._job_queue = aqueue if runner.on_loop else queue  # what the processor's job talks through
        self._retry_cancelled: set[str] = set()  # ids cancelled with retry=True

    def cancel(self, job_id: str, reason: str, retry: bool) -> bool:
        """End the attempt of job ``job_id`` now (``Worker.cancel_job``); False if it is not in flight here."""
        entry = self._state.inflight.get(job_id)
        if entry is None or not self._runner.cancel(entry[0], reason):
            return False
        if retry:
            self._retry_cancelled.add(job_id)
        return True

    def start(self, job: Job, fetched_at: int) -> None:
        job.queue = JobQueue(self._job_queue, self._emit, self._state)
        self._state.inflight[job.id] = (job, asyncio.ensure_future(self._process(job, fetched_at)))

    def release_all(self) -> None:
        """At the shutdown deadline: put unfinished jobs back (no attempt counted) and stop them."""
        for job, task in list(self._state.inflight.values()):
            task.cancel()
            self._settler.requeue(job)
        self._state.inflight.clear()

    async def _process(self, job: Job, fetched_at: int) -> None:
        settler = self._settler
        try:
            if job.scheduler_id:
                try:
                    await self._aqueue._schedule_next(job, fetched_at)
                except redis.RedisError as exc:
                    self._emit("error", exc)
            if job.deferred_failure:  # flagged by the stalled check (or a flow): fail without running
                settler.failed(job, UnrecoverableError(job.deferred_failure), final=True)
                return
            if job.parse_error and ("data:" in job.parse_error or "opts:" in job.parse_error):
                # what a peer wrote cannot be read: the processor would run on wrong data or options
                what = "data" if "data:" in job.parse_error else "opts"
                settler.failed(job, DataError(f"job {what} is not valid JSON ({job.parse_error})"), final=True)
                return
            self._emit("active", job)
            try:
                result = await self._runner.run(job)
                returnvalue = _opts.dumps(result, "return value")
            except (DelayedError, WaitingChildrenError):
                return  # the job moved itself to delayed / to waiting-children
            except RateLimitError:
                settler.requeue(job, rate_limited=True)
                return
            except JobTimeoutError as exc:
                settler.failed(job, exc, final=False)
                return
            except JobCancelledError as exc:  # for good, unless cancelled with retry=True
                settler.failed(job, exc, final=job.id not in self._retry_cancelled)
                return
            except UnrecoverableError as exc:
                settler.failed(job, exc, final=True)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                settler.failed(job, exc, final=False)
                return
            settler.completed(job, result, returnvalue)
        finally:
            state = self._state
            self._retry_cancelled.discard(job.id)
            state.inflight.pop(job.id, None)
            state.moved.discard(job.id)
            state.wake_up()
