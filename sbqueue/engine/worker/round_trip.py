"""One ``finish_and_fetch`` call: send the finished jobs, act on each one's code, start the jobs fetched.

Settling every job finished since the last call *and* fetching as many new jobs as there are free slots in
one script call is where the worker's throughput comes from. A call that fails puts its finishes back, first
in line for the next call. Final failures whose job has a dead-letter queue get their letters first
(:mod:`.dead_letters`). A code of 1 fires the finish's event (``completed`` / ``failed``); a parent that
cannot complete yet fails instead; any other code is emitted as ``error``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from sbqueue._core.finish import (
    FAILED_CHILDREN,
    FINISHED,
    PENDING_CHILDREN,
    FetchReply,
    FetchRequest,
    finish_and_fetch_argv,
)
from sbqueue._core.records import pairs_to_dict
from sbqueue.engine.job import Job
from sbqueue.engine.worker.dead_letters import DeadLetters
from sbqueue.engine.worker.job_runs import JobRuns
from sbqueue.engine.worker.outcomes import Settler
from sbqueue.engine.worker.state import Settlement, WorkerState
from sbqueue.errors import error_from_code


class TripResult(NamedTuple):
    """What the fetch loop learns from one call."""

    fetched: int  # jobs started
    rate_limit_ttl: int  # ms the rate limit still holds (0 = not limited)
    next_delayed_ms: int  # due time of the next delayed job (0 = none)


class RoundTrip:
    """Makes ``finish_and_fetch`` calls for one worker run (see the module docstring)."""

    def __init__(
        self,
        run: Callable[..., Any],
        state: WorkerState,
        settler: Settler,
        jobs: JobRuns,
        emit: Callable[..., None],
        *,
        worker_id: str,
        worker_name: str,
        lock_ms: int,
        limiter: tuple[int, int],
        metrics_points: int,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self._run = run  # the queue's script runner
        self._state = state
        self._settler = settler
        self._jobs = jobs
        self._emit = emit
        self._worker_id = worker_id
        self._worker_name = worker_name
        self._lock_ms = lock_ms
        self._limit_max, self._limit_ms = limiter
        self._metrics_points = metrics_points
        self._dead_letters = dead_letters  # writes the letters of final failures before their finishes

    async def __call__(self, batch: list[Settlement], fetch: int) -> TripResult:
        """Settle ``batch`` and fetch up to ``fetch`` jobs (0: settle only)."""
        now = int(time.time() * 1000)
        request = FetchRequest(now, self._worker_id, self._worker_name, self._lock_ms, fetch, self._limit_max,
                               self._limit_ms, self._metrics_points)  # fmt: skip
        try:
            if self._dead_letters is not None:
                await self._dead_letters.write(batch, now)
            argv = finish_and_fetch_argv(request, [finish for finish, _job, _event, _payload in batch])
            reply = FetchReply.parse(await self._run("finish_and_fetch", argv))
        except BaseException:
            self._state.put_back(batch)
            raise
        emit = self._emit
        for code, (_finish, job, event, payload) in zip(reply.codes, batch, strict=True):
            if code != FINISHED:
                self._refused(code, job, event)
            elif event:
                emit(event, job, payload)
        for job_id, token, flat_hash in reply.jobs:
            self._jobs.start(Job.from_hash(None, str(job_id), pairs_to_dict(flat_hash), token=str(token)), now)
        return TripResult(len(reply.jobs), reply.rate_limit_ttl, reply.next_delayed_ms)

    def _refused(self, code: int, job: Job, event: str) -> None:
        if code in (PENDING_CHILDREN, FAILED_CHILDREN) and event == "completed":
            self._settler.completion_refused(job, code)
            self._state.wake_up()
        else:
            self._emit("error", error_from_code(code, job_id=job.id, command=f"finish ({event or 'move'})"))
