"""The worker's main loop: when to call ``finish_and_fetch``, for how many jobs, and what to wait for between.

Up to :data:`MAX_TRIPS` calls are in flight at once, each fetching about ``concurrency / MAX_TRIPS`` jobs:
Redis runs one batch's script while Python runs the other batch's jobs, so neither waits for the other.
Between calls the loop waits for a reply, a finished job (the state's wake-up), the queue's marker
(BZPOPMIN on the blocking connection, when idle), the end of the rate-limit window, or the close deadline.
Each of those concerns is one small class here: :class:`Trips`, :class:`FetchSizing`, :class:`RateWindow`,
:class:`CloseDeadline`; :class:`FetchLoop` combines them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from sbqueue.engine.worker.job_runs import JobRuns
from sbqueue.engine.worker.outage import RedisOutage
from sbqueue.engine.worker.round_trip import RoundTrip, TripResult
from sbqueue.engine.worker.state import WorkerState
from sbqueue.engine.worker.tasks import cancel_all

log = logging.getLogger(__name__)

MAX_TRIPS = 2  # finish_and_fetch calls in flight at once
MIN_SHARE = 3  # below 2 x this concurrency, one call at a time fetches every free slot (tiny batches don't pay)
#: failures of a round trip the loop waits out and retries (a ResponseError too: OOM, NOPERM, a key of the
#: wrong type... must not end the worker either)
RETRIED = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


class Trips:
    """``finish_and_fetch`` calls in flight, each with the number of jobs it asked for."""

    def __init__(self) -> None:
        self._asked: dict[asyncio.Future[TripResult], int] = {}

    def __len__(self) -> int:
        return len(self._asked)

    def futures(self) -> list[asyncio.Future[TripResult]]:
        return list(self._asked)

    def asked(self) -> int:
        """Jobs asked for and not yet answered (their slots are taken)."""
        return sum(self._asked.values())

    def start(self, call: Awaitable[TripResult], fetch: int) -> None:
        self._asked[asyncio.ensure_future(call)] = fetch

    def landed(self) -> list[tuple[asyncio.Future[TripResult], int]]:
        """The calls that have answered (or failed), removed from those in flight."""
        return [(trip, self._asked.pop(trip)) for trip in [t for t in self._asked if t.done()]]


class FetchSizing:
    """How many jobs the next call asks for: the free slots, at most a share, and none while the queue is
    known to be empty (until a marker, a timer or a full fetch says jobs may be waiting again)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        # small batches would cost more in per-call overhead than the overlap saves
        self.share = concurrency if concurrency < 2 * MIN_SHARE else -(-concurrency // MAX_TRIPS)
        self.maybe_jobs = True

    def free(self, inflight: int, asked: int) -> int:
        return self.concurrency - inflight - asked

    def size(self, free: int) -> int:
        return min(free, self.share) if self.maybe_jobs else 0

    def learn(self, fetched: int, asked_for: int) -> None:
        """A call fetched ``fetched`` of ``asked_for``: a full fetch means more may be waiting."""
        self.maybe_jobs = fetched >= asked_for > 0 or (self.maybe_jobs and asked_for == 0)


class RateWindow:
    """Until when the rate limiter holds this worker's fetching (wall clock, as the limiter key's ttl)."""

    def __init__(self, max_delay_ms: int) -> None:
        self._max_delay_ms = max_delay_ms
        self.until = 0.0

    def hold(self, ttl_ms: int) -> None:
        if ttl_ms > 0:
            self.until = time.time() + min(ttl_ms, self._max_delay_ms) / 1000

    def holds(self, now_s: float) -> bool:
        return now_s < self.until


class CloseDeadline:
    """When a ``close(timeout)`` stops waiting for the jobs in flight (set when the loop first sees the close)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def arm(self, timeout: float | None) -> None:
        if self.at is None and timeout is not None:
            self.at = time.monotonic() + timeout

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def remaining(self) -> float:
        assert self.at is not None
        return max(self.at - time.monotonic(), 0.0)


class FetchLoop:
    """One run of the main loop, until the worker closes (see the module docstring)."""

    def __init__(
        self,
        state: WorkerState,
        round_trip: RoundTrip,
        jobs: JobRuns,
        outage: RedisOutage,
        emit: Callable[..., None],
        *,
        concurrency: int,
        max_rate_limit_delay: int,
        blocking_client: Any,
        marker_key: str,
        drain_delay: float,
    ) -> None:
        self._state = state
        self._round_trip = round_trip
        self._jobs = jobs
        self._outage = outage
        self._emit = emit
        self._bclient = blocking_client  # its socket timeout exceeds drain_delay
        self._marker_key = marker_key
        self._drain_delay = drain_delay
        self._trips = Trips()
        self._sizing = FetchSizing(concurrency)
        self._rate = RateWindow(max_rate_limit_delay)
        self._deadline = CloseDeadline()
        self._next_delayed = 0  # ms due time of the next delayed job (0 = none), from the last reply
        self._retry_delay = 0.5

    async def run(self) -> None:
        state, trips, sizing = self._state, self._trips, self._sizing
        marker: asyncio.Future[Any] | None = None
        drained_sent = False
        while True:
            if state.closing and self._close_done():
                break
            paused = state.gate.paused
            if paused:  # Worker.pause: no fetching; tell who waits once the jobs in flight have ended
                state.gate.check(state.inflight.keys(), busy=bool(state.pending or trips))
            now_s = time.time()
            rate_held = self._rate.holds(now_s)
            free = 0 if state.closing or paused or rate_held else sizing.free(len(state.inflight), trips.asked())
            fetch = sizing.size(free)
            if len(trips) < MAX_TRIPS and (state.pending or fetch > 0):
                trips.start(self._round_trip(state.take_pending(), fetch), fetch)
                continue
            if not trips and not state.inflight and not drained_sent and not state.closing and not paused:
                drained_sent = True
                self._emit("drained")
            # wait for a trip's reply, a finished job, a marker, a due delayed job or the limiter
            assert state.wake is not None
            state.wake.clear()
            wake = asyncio.ensure_future(state.wake.wait())
            waiters: set[asyncio.Future[Any]] = {wake, *trips.futures()}
            timeout = None
            if state.closing and self._deadline.at is not None:
                timeout = self._deadline.remaining()
            elif free > 0 and not state.closing and not trips:
                if marker is None:
                    marker = asyncio.ensure_future(self._wait_marker(self._block_timeout()))
                waiters.add(marker)
            elif rate_held and not trips:
                timeout = self._rate.until - now_s
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            if marker is not None and marker in done:
                marker = None
                sizing.maybe_jobs = True
            if timeout is not None and not done:
                sizing.maybe_jobs = True
            for trip, asked_for in trips.landed():
                try:
                    result = trip.result()
                except RETRIED as exc:
                    await self._after_failure(exc)
                    continue
                self._after_success(result.fetched)
                self._rate.hold(result.rate_limit_ttl)
                self._next_delayed = result.next_delayed_ms
                sizing.learn(result.fetched, asked_for)
                if result.fetched:
                    drained_sent = False
        if marker is not None:
            await cancel_all([marker])

    def _close_done(self) -> bool:
        """Closing: True once nothing is left to finish; past the deadline, unfinished jobs are put back."""
        state = self._state
        self._deadline.arm(state.close_timeout)
        if not state.inflight and not state.pending and not self._trips:
            return True
        if self._deadline.passed():
            self._jobs.release_all()
            if not state.pending and not self._trips:
                return True
        return False

    async def _wait_marker(self, timeout: float) -> None:
        try:
            await self._bclient.bzpopmin(self._marker_key, timeout=timeout)
        except redis.RedisError as exc:  # also e.g. WRONGTYPE on a marker key a peer broke: no busy loop
            log.debug("marker wait failed: %s", exc)
            await asyncio.sleep(0.5)

    def _block_timeout(self) -> float:
        timeout = self._drain_delay
        if self._next_delayed:
            timeout = min(timeout, max((self._next_delayed - time.time() * 1000) / 1000, 0.002))
        return max(timeout, 0.002)

    async def _after_failure(self, exc: BaseException) -> None:
        if self._outage.report(exc):  # Redis full: reported once; finished jobs wait in the pending list
            await asyncio.sleep(min(self._retry_delay, 2.0))
        else:
            what = "refused the call" if isinstance(exc, redis.ResponseError) else "unavailable"
            log.warning("Redis %s (%s); retrying in %.1f s", what, exc, self._retry_delay)
            await asyncio.sleep(self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2, 10.0)

    def _after_success(self, fetched: int) -> None:
        # on a full Redis a trip that only records finished jobs succeeds (it deletes before it adds), while every
        # other write is still refused: only a trip that fetched a job (its lock written) shows Redis accepts
        # writes again — else the lock keeper's next refusal would report the same full Redis a second time
        if self._outage.full_since is not None and not fetched:
            self._retry_delay = 0.5
            return
        if not self._outage.resumed() and self._retry_delay > 0.5:
            log.info("Redis reachable again; processing resumes")
        self._retry_delay = 0.5
