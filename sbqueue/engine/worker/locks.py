"""The worker's background duties on locks: renew the locks of jobs in flight, and run the stalled check.

Locks are renewed in bulk every ``lock_renew_time`` (one ``extend_locks`` call for every job in flight),
emitting Node's ``locks-renewed`` / ``lock-renewal-failed`` and an ``error`` per lost lock. The stalled
check (``stalled_check``, throttled across workers by the ``stalled-check`` key) runs every
``stalled_interval`` and emits ``stalled`` for each job it put back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis

from sbqueue.engine.worker.outage import RedisOutage
from sbqueue.engine.worker.state import WorkerState
from sbqueue.errors import LockMismatchError


class LockKeeper:
    """Two loops, each run as a task for as long as the worker runs (see the module docstring)."""

    def __init__(
        self,
        run: Callable[..., Any],
        state: WorkerState,
        emit: Callable[..., None],
        outage: RedisOutage,
        *,
        lock_ms: int,
        renew_ms: int,
        stalled_interval_ms: int,
        max_stalled_count: int,
    ) -> None:
        self._run = run  # the queue's script runner
        self._state = state
        self._emit = emit
        self._outage = outage
        self._lock_ms = lock_ms
        self._renew_ms = renew_ms
        self._stalled_interval_ms = stalled_interval_ms
        self._max_stalled_count = max_stalled_count

    async def renew_locks_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_ms / 1000)
            await self.renew_locks()

    async def renew_locks(self) -> None:
        inflight, moved = self._state.inflight, self._state.moved
        held = [(job.id, job.token) for job, _ in inflight.values() if job.token and job.id not in moved]
        if not held:
            return
        flat = [v for pair in held for v in pair]
        try:
            lost = await self._run("extend_locks", [self._lock_ms, len(held), *flat])
        except redis.RedisError as exc:
            self._outage.report(exc)
            return
        still_held = dict(held)
        failed: list[str] = []
        for job_id in map(str, lost):
            current = inflight.get(job_id)
            # a job that finished (or moved itself) while the renewal was in flight is not a lost lock
            if current is None or current[0].token != still_held.get(job_id):
                continue
            failed.append(job_id)
        lost_ids = {str(job_id) for job_id in lost}
        renewed = [job_id for job_id, _token in held if job_id not in lost_ids]
        # as Node's lockRenewalFailed / locksRenewed (then one `error` per lost lock, as Node)
        if failed:
            self._emit("lock-renewal-failed", failed)
        for job_id in failed:
            self._emit("error", LockMismatchError(f"lock for job {job_id} was lost while processing", job_id=job_id))
        if renewed:
            self._emit("locks-renewed", {"count": len(renewed), "job_ids": renewed})

    async def check_stalled_forever(self) -> None:
        while True:
            recovered: list[Any] = []
            if not self._state.gate.paused:  # a paused worker checks nothing, as Node's
                try:
                    recovered, _flagged = await self._run(
                        "stalled_check", stalled_check_argv(self._stalled_interval_ms, self._max_stalled_count)
                    )
                except redis.RedisError as exc:
                    self._outage.report(exc)
            for job_id in recovered:
                self._emit("stalled", str(job_id))
            if recovered:
                self._state.wake_up()
            await asyncio.sleep(self._stalled_interval_ms / 1000)


def stalled_check_argv(stalled_interval_ms: int, max_stalled_count: int) -> list[int]:
    """ARGV of one ``stalled_check`` call, now."""
    return [int(time.time() * 1000), stalled_interval_ms, max_stalled_count]
