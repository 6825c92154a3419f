"""The Worker: fetches jobs, runs a processor, settles results — BullMQ 6 protocol, batched.

One asyncio loop drives everything. Each round trip to Redis is one ``finish_and_fetch`` script
call that settles every job finished since the last call *and* fetches as many new jobs as there
are free slots — this batching is where the throughput comes from. Idle workers block on the
queue's marker (BZPOPMIN) on a dedicated connection; locks are renewed in bulk; the stalled check
runs every ``stalled_interval`` (throttled across workers by the ``stalled-check`` key).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue as _queue
import random
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from . import _cluster
from . import connection as _connection
from ._async.queue import AsyncQueue
from ._core import options as _opts
from ._core.records import pairs_to_dict
from ._sync.queue import Queue
from .errors import (
    ClusterKeyError,
    DataError,
    DelayedError,
    InvalidOptionError,
    LockMismatchError,
    RateLimitError,
    UnrecoverableError,
    error_from_code,
)
from .events import EventEmitter
from .job import Job

log = logging.getLogger("sbqueue.worker")

MAX_TRIPS = 2  # finish_and_fetch calls in flight at once (see Worker._main)
MIN_SHARE = 3  # below 2 x this concurrency, one call at a time fetches every free slot (tiny batches don't pay)
WORKER_EVENTS = ("active", "completed", "failed", "progress", "stalled", "error", "drained", "closed")


class Worker(EventEmitter):
    """Process jobs of one queue with ``processor(job)`` (a plain function, run in a thread pool, or
    an ``async def``, run on the worker's loop). Its return value (JSON) becomes ``returnvalue``.

    Events (``w.on(name, fn)``): ``active(job)``, ``completed(job, result)``, ``failed(job, error)``
    (every failed attempt, as Node's Worker; the last one has ``job.attempts_made == job.max_attempts``
    or was unrecoverable), ``progress(job, value)``, ``stalled(job_id)``, ``error(exc)``, ``drained()``,
    ``closed()``.

    On Redis Cluster the queue needs a ``{hash tag}`` in its prefix or name (else :class:`ClusterKeyError`
    here); the worker blocks on one connection, to the master that owns the queue's slot.
    """

    def __init__(
        self,
        queue_name: str,
        processor: Callable[[Job], Any],
        connection: Any = None,
        prefix: str = "bull",
        *,
        concurrency: int = 10,
        lock_duration: int = 30_000,
        lock_renew_time: int | None = None,
        stalled_interval: int = 30_000,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        remove_on_complete: Any = None,
        remove_on_fail: Any = None,
        name: str | None = None,
        backoff_strategy: Callable[[int, BaseException, Job], int] | None = None,
        drain_delay: float = 5.0,
        metrics_points: int = 10_080,
        max_rate_limit_delay: int = 30_000,
        autorun: bool = False,
    ) -> None:
        super().__init__()
        if not callable(processor):
            raise InvalidOptionError(f"processor must be callable, got {processor!r}", option="processor")
        self.processor = processor
        # an object whose __call__ is `async def` counts as async too
        self._is_async = inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
            type(processor).__call__  # type: ignore[operator]
        )
        self.concurrency = _opts.validate_count(concurrency, "concurrency", minimum=1, maximum=100_000)
        self.lock_duration = _opts.to_ms(lock_duration, "lock_duration", allow_zero=False)
        self.lock_renew_time = _opts.to_ms(
            lock_renew_time or self.lock_duration / 2, "lock_renew_time", allow_zero=False
        )
        self.stalled_interval = _opts.to_ms(stalled_interval, "stalled_interval", allow_zero=False)
        self.max_stalled_count = _opts.validate_count(max_stalled_count, "max_stalled_count")
        self.limiter = _validate_limiter(limiter)
        self.keep_completed = _opts.validate_keep(remove_on_complete, "remove_on_complete")
        self.keep_failed = _opts.validate_keep(remove_on_fail, "remove_on_fail")
        if name is not None and (not isinstance(name, str) or not name or " " in name):
            raise InvalidOptionError(
                f"worker name must be a non-empty string without spaces, got {name!r}", option="name"
            )
        self.name = name
        if backoff_strategy is not None and not callable(backoff_strategy):
            raise InvalidOptionError(f"backoff_strategy must be callable, got {backoff_strategy!r}",
                                     option="backoff_strategy")  # fmt: skip
        self.backoff_strategy = backoff_strategy
        if isinstance(drain_delay, bool) or not isinstance(drain_delay, (int, float)) or not 0 < drain_delay <= 3600:
            raise InvalidOptionError(f"drain_delay must be seconds in (0, 3600], got {drain_delay!r}",
                                     option="drain_delay")  # fmt: skip
        self.drain_delay = float(drain_delay)
        self.metrics_points = _opts.validate_count(metrics_points, "metrics_points")
        self.max_rate_limit_delay = _opts.to_ms(max_rate_limit_delay, "max_rate_limit_delay")
        self.id = uuid.uuid4().hex
        base = _connection.coerce(connection)  # validates/reaches the server now, with a clear error
        self._base = base
        try:
            self.queue = Queue(queue_name, base, prefix)  # sync handle: for sync processors and callers
        except ClusterKeyError:  # keys that would span cluster slots: nothing was written
            if connection is None or isinstance(connection, str):
                base.close()
            raise
        self.keys = self.queue.keys
        self._closing = False
        self._close_timeout: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self._inflight: dict[str, tuple[Job, asyncio.Future[Any]]] = {}
        self._pending: list[list[Any]] = []
        self._pending_events: list[tuple[str, Job, Any]] = []
        self.processed = 0
        self.failed_count = 0
        if autorun:
            self.start()

    def __repr__(self) -> str:
        return f"<Worker {self.queue.name!r} name={self.name!r} concurrency={self.concurrency}>"

    # --- running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Process jobs until :meth:`close` or SIGTERM/SIGINT (blocking)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # inside Jupyter's loop: never asyncio.run there
            self.start()
            self._done.wait()
            return
        self._closing = False
        asyncio.run(self._run_async(install_signals=threading.current_thread() is threading.main_thread()))

    def start(self) -> Worker:
        """Run in a background thread (notebooks, experiments); returns self."""
        if self._thread is None or not self._thread.is_alive():
            self._done.clear()
            self._closing = False  # here, not in the thread: a close() right after start() must stick
            self._thread = threading.Thread(target=lambda: asyncio.run(self._run_async()), daemon=True,
                                            name=f"sbqueue-worker-{self.queue.name}")  # fmt: skip
            self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop fetching, let in-flight jobs finish (up to ``timeout`` s), put back what is left."""
        self._close_timeout = timeout
        self._closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:
                pass
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._done.wait(None if timeout is None else timeout + 10)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    async def run_async(self, *, install_signals: bool = False) -> None:
        """Process jobs inside an existing event loop until :meth:`close`."""
        self._closing = False
        await self._run_async(install_signals=install_signals)

    async def _run_async(self, *, install_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._done.clear()
        self._wake = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._signal_close)
        self._client = _connection.async_twin(self._base, encoding_errors="replace")  # a peer's non-UTF-8 bytes
        # blocking waits need a socket timeout longer than the block time
        # (on Redis Cluster: one connection, on the master that owns the marker's slot)
        self._bclient = _cluster.blocking_client(
            self._base, self.keys.key("marker"), socket_timeout=self.drain_delay + 30,
            client_name=self.keys.client_name(self.name),
        )  # fmt: skip
        self._aqueue = AsyncQueue(self.queue.name, self._client, self.keys.prefix)
        self._run = self._aqueue._run
        self._threads = _JobThreads(f"sbqueue-job-{self.queue.name}")
        background = [asyncio.create_task(self._renew_locks_loop()), asyncio.create_task(self._stalled_loop())]
        try:
            try:
                await self._bclient.ping()  # registers the named connection (dashboards see the worker)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                # Redis down or restarting: the main loop retries (the name is set on every connect)
                self.emit("error", exc)
            await self._main()
        finally:
            await _cancel_all(background)
            self._threads.shutdown()
            # the clients own their pools (async_twin): close them, or their sockets leak
            await self._client.aclose(close_connection_pool=True)
            await self._bclient.aclose(close_connection_pool=True)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
            self._loop = None
            self._done.set()
            self.emit("closed")

    def _signal_close(self) -> None:
        log.info("signal received: finishing in-flight jobs, then exiting")
        self._closing = True
        self._wake_up()

    def _wake_up(self) -> None:
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()

    # --- the main loop --------------------------------------------------------------------------
    async def _main(self) -> None:
        # Up to MAX_TRIPS finish_and_fetch calls are in flight at once, each fetching about
        # concurrency / MAX_TRIPS jobs: Redis runs one batch's script while Python runs the other batch's
        # jobs, so neither waits for the other.
        marker: asyncio.Future[Any] | None = None
        trips: dict[asyncio.Future[tuple[int, int, int]], int] = {}  # trip -> jobs it asked for
        maybe_jobs = True
        next_delayed = 0
        rate_until = 0.0
        drained_sent = False
        close_deadline: float | None = None
        retry_delay = 0.5
        # small batches would cost more in per-call overhead than the overlap saves
        share = self.concurrency if self.concurrency < 2 * MIN_SHARE else -(-self.concurrency // MAX_TRIPS)
        while True:
            if self._closing:
                if close_deadline is None and self._close_timeout is not None:
                    close_deadline = time.monotonic() + self._close_timeout
                if not self._inflight and not self._pending and not trips:
                    break
                if close_deadline is not None and time.monotonic() >= close_deadline:
                    self._release_inflight()
                    if not self._pending and not trips:
                        break
            now_s = time.time()
            asked = sum(trips.values())
            free = 0 if self._closing or now_s < rate_until else self.concurrency - len(self._inflight) - asked
            fetch = min(free, share) if maybe_jobs else 0
            if len(trips) < MAX_TRIPS and (self._pending or fetch > 0):
                groups, events = self._pending, self._pending_events
                self._pending, self._pending_events = [], []
                trips[asyncio.ensure_future(self._round_trip(groups, events, fetch))] = fetch
                continue
            if not trips and not self._inflight and not drained_sent and not self._closing:
                drained_sent = True
                self.emit("drained")
            # wait for a trip's reply, a finished job, a marker, a due delayed job or the limiter
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            waiters: set[asyncio.Future[Any]] = {wake, *trips}
            timeout = None
            if self._closing and close_deadline is not None:
                timeout = max(close_deadline - time.monotonic(), 0.0)
            elif free > 0 and not self._closing and not trips:
                if marker is None:
                    marker = asyncio.ensure_future(self._wait_marker(self._block_timeout(next_delayed)))
                waiters.add(marker)
            elif now_s < rate_until and not trips:
                timeout = rate_until - now_s
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            if marker is not None and marker in done:
                marker = None
                maybe_jobs = True
            if timeout is not None and not done:
                maybe_jobs = True
            for trip in [t for t in trips if t.done()]:
                asked_for = trips.pop(trip)
                try:
                    fetched, rate_ttl, next_delayed = trip.result()
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError) as exc:
                    # a ResponseError (OOM, NOPERM, a key of the wrong type...) must not end the worker either
                    self.emit("error", exc)
                    what = "refused the call" if isinstance(exc, redis.ResponseError) else "unavailable"
                    log.warning("Redis %s (%s); retrying in %.1f s", what, exc, retry_delay)
                    await asyncio.sleep(retry_delay)
                    retry_delay = min(retry_delay * 2, 10.0)
                    continue
                if retry_delay > 0.5:
                    log.info("Redis reachable again; processing resumes")
                retry_delay = 0.5
                if rate_ttl > 0:
                    rate_until = time.time() + min(rate_ttl, self.max_rate_limit_delay) / 1000
                maybe_jobs = fetched >= asked_for > 0 or (maybe_jobs and asked_for == 0)
                if fetched:
                    drained_sent = False
        if marker is not None:
            await _cancel_all([marker])

    def _block_timeout(self, next_delayed: int) -> float:
        timeout = self.drain_delay
        if next_delayed:
            timeout = min(timeout, max((next_delayed - time.time() * 1000) / 1000, 0.002))
        return max(timeout, 0.002)

    async def _wait_marker(self, timeout: float) -> None:
        try:
            await self._bclient.bzpopmin(self.keys.key("marker"), timeout=timeout)
        except redis.RedisError as exc:  # also e.g. WRONGTYPE on a marker key a peer broke: no busy loop
            log.debug("marker wait failed: %s", exc)
            await asyncio.sleep(0.5)

    async def _round_trip(
        self, groups: list[list[Any]], events: list[tuple[str, Job, Any]], fetch: int
    ) -> tuple[int, int, int]:
        flat = [value for group in groups for value in group]
        now = int(time.time() * 1000)
        limit_max, limit_ms = self.limiter
        try:
            codes, jobs, rate_ttl, next_delayed = await self._run(
                "finish_and_fetch",
                [now, self.id, self.name or "", self.lock_duration, fetch, limit_max, limit_ms,
                 self.metrics_points, len(groups), *flat],
            )  # fmt: skip
        except BaseException:
            self._pending, self._pending_events = groups + self._pending, events + self._pending_events
            raise
        for code, (event, job, value) in zip(codes, events, strict=True):
            code = int(code)
            if code == 1:
                if event:
                    self.emit(event, job, value)
            else:
                self.emit("error", error_from_code(code, job_id=job.id, command=f"finish ({event or 'move'})"))
        for job_id, token, flat_hash in jobs:
            self._start_job(Job.from_hash(None, str(job_id), pairs_to_dict(flat_hash), token=str(token)), now)
        return len(jobs), int(rate_ttl), int(next_delayed)

    # --- one job ------------------------------------------------------------------------------------
    def _start_job(self, job: Job, now: int) -> None:
        job.queue = _JobQueue(self._aqueue if self._is_async else self.queue, self)
        self._inflight[job.id] = (job, asyncio.ensure_future(self._process(job, now)))

    async def _process(self, job: Job, fetched_at: int) -> None:
        try:
            if job.scheduler_id:
                try:
                    await self._aqueue._schedule_next(job, fetched_at)
                except redis.RedisError as exc:
                    self.emit("error", exc)
            if job.deferred_failure:  # flagged by the stalled check (or a flow): fail without running
                self._settle_failed(job, UnrecoverableError(job.deferred_failure), final=True)
                return
            if job.parse_error and ("data:" in job.parse_error or "opts:" in job.parse_error):
                # what a peer wrote cannot be read: the processor would run on wrong data or options
                what = "data" if "data:" in job.parse_error else "opts"
                self._settle_failed(job, DataError(f"job {what} is not valid JSON ({job.parse_error})"), final=True)
                return
            self.emit("active", job)
            try:
                result = await self._call_processor(job)
                returnvalue = _opts.dumps(result, "return value")
            except DelayedError:
                return  # the job moved itself to delayed
            except RateLimitError:
                self._queue_group(job, "requeue", "", "", 0, (-1, 0), "", None, None)
                return
            except _JobTimeoutError as exc:
                self._settle_failed(job, exc, final=False)
                return
            except UnrecoverableError as exc:
                self._settle_failed(job, exc, final=True)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._settle_failed(job, exc, final=False)
                return
            keep = _opts.keep_policy(job.opts.get("removeOnComplete", self.keep_completed))
            self._queue_group(job, "completed", returnvalue, "", 0, keep, "", "completed", result)
        finally:
            self._inflight.pop(job.id, None)
            self._wake_up()

    async def _call_processor(self, job: Job) -> Any:
        assert self._loop is not None
        if self._is_async and not job.timeout:
            return await self.processor(job)  # the hot path: no extra task per job
        if self._is_async:
            work: asyncio.Future[Any] = asyncio.ensure_future(self.processor(job))
        else:
            work = self._threads.submit(self._loop, self.processor, job)
        if not job.timeout:
            return await work
        try:
            done, _ = await asyncio.wait({work}, timeout=job.timeout / 1000)
        except asyncio.CancelledError:
            work.cancel()
            raise
        if not done:
            # an async processor is cancelled; a sync one is abandoned (threads cannot be killed) and
            # its thread no longer counts: the pool starts another for the next job
            work.cancel()
            raise _JobTimeoutError(f"job {job.id} timed out after {job.timeout} ms")
        return work.result()

    def _settle_failed(self, job: Job, exc: BaseException, *, final: bool) -> None:
        reason = str(exc) or type(exc).__name__
        attempts_made = job.attempts_made + 1
        stack = list(job.stacktrace) + ["".join(traceback.format_exception(exc)).rstrip()]
        limit = job.opts.get("stackTraceLimit")
        # stackTraceLimit 0 keeps none, as BullMQ does; unset keeps the last 10
        stack = (stack[-limit:] if limit else []) if isinstance(limit, int) and limit >= 0 else stack[-10:]
        stack_json = _opts.dumps(stack, "stacktrace")
        delay = -1
        if not final and attempts_made < job.max_attempts:
            delay = self._backoff(job, attempts_made, exc)
        # listeners see the job as it now is (Node: attemptsMade === opts.attempts on the last one)
        job.attempts_made, job.failed_reason, job.stacktrace = attempts_made, reason, stack
        if delay < 0:
            keep = _opts.keep_policy(job.opts.get("removeOnFail", self.keep_failed))
            flags = "e" if attempts_made >= job.max_attempts else ""
            self._queue_group(job, "failed", reason, stack_json, 0, keep, flags, "failed", exc)
        elif delay == 0:
            flags = "l" if job.opts.get("lifo") is True else ""
            self._queue_group(job, "retry", reason, stack_json, 0, (-1, 0), flags, "failed", exc)
        else:
            due = int(time.time() * 1000) + delay
            self._queue_group(job, "delay", reason, stack_json, due, (-1, 0), "", "failed", exc)

    def _backoff(self, job: Job, attempts_made: int, exc: BaseException) -> int:
        backoff = job.opts.get("backoff")
        delay = _opts.backoff_delay(backoff, attempts_made, random.random())
        if delay == -1 or (
            self.backoff_strategy is not None and isinstance(backoff, dict) and backoff.get("type") == "custom"
        ):
            if self.backoff_strategy is None:
                return 0
            try:
                return int(self.backoff_strategy(attempts_made, exc, job))
            except Exception as strategy_exc:  # a broken strategy fails the job rather than the worker
                self.emit("error", strategy_exc)
                return -1
        return delay

    def _queue_group(
        self,
        job: Job,
        kind: str,
        value: str,
        stack: str,
        due: int,
        keep: tuple[int, int],
        flags: str,
        event: str | None,
        payload: Any,
    ) -> None:
        self._pending.append([job.id, job.token or "0", kind, value, stack, due, keep[0], keep[1], flags])
        self._pending_events.append((event or "", job, payload))
        if event == "completed":
            self.processed += 1
        elif kind == "failed":  # final failures only (`failed` events also fire for retried attempts)
            self.failed_count += 1

    def _release_inflight(self) -> None:
        """At the shutdown deadline: put unfinished jobs back (no attempt counted) and stop them."""
        for job, task in list(self._inflight.values()):
            task.cancel()
            self._queue_group(job, "requeue", "", "", 0, (-1, 0), "", None, None)
        self._inflight.clear()

    # --- background duties ----------------------------------------------------------------------------
    async def _renew_locks_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lock_renew_time / 1000)
            held = [(job.id, job.token) for job, _ in self._inflight.values() if job.token]
            if not held:
                continue
            flat = [v for pair in held for v in pair]
            try:
                lost = await self._run("extend_locks", [self.lock_duration, len(held), *flat])
            except redis.RedisError as exc:
                self.emit("error", exc)
                continue
            still_held = dict(held)
            for job_id in lost:
                current = self._inflight.get(str(job_id))
                # a job that finished (or moved itself) while the renewal was in flight is not a lost lock
                if current is None or current[0].token != still_held.get(str(job_id)):
                    continue
                self.emit("error", LockMismatchError(f"lock for job {job_id} was lost while processing", job_id=job_id))

    async def _stalled_loop(self) -> None:
        while True:
            try:
                recovered, _flagged = await self._run(
                    "stalled_check", [int(time.time() * 1000), self.stalled_interval, self.max_stalled_count]
                )
            except redis.RedisError as exc:
                self.emit("error", exc)
                recovered = []
            for job_id in recovered:
                self.emit("stalled", str(job_id))
            if recovered:
                self._wake_up()
            await asyncio.sleep(self.stalled_interval / 1000)


async def _cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel and wait for ``tasks``. A cancel that lands just as a redis-py call completes can be
    swallowed (the task then sleeps on, e.g. 30 s in the stalled loop): cancel again until done."""
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.05)
        for task in pending:
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise


class _JobTimeoutError(TimeoutError):
    """A job ran longer than its ``timeout`` option (distinct from a TimeoutError the processor raises)."""


class _JobQueue:
    """The queue a processor's job talks through; progress updates also fire the worker's ``progress``."""

    def __init__(self, queue: Any, worker: Worker) -> None:
        self._queue = queue
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def _set_job_field(self, job: Job, field: str, value: Any) -> Any:
        result = self._queue._set_job_field(job, field, value)
        if field != "progress":
            return result
        if inspect.isawaitable(result):

            async def then() -> None:
                await result
                self._worker.emit("progress", job, value)

            return then()
        loop = self._worker._loop  # sync processors run on job threads: emit on the worker's loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._worker.emit, "progress", job, value)
            except RuntimeError:  # the worker has stopped (an abandoned job still reporting)
                pass
        return result

    def _move_to_delayed(self, job: Job, timestamp_ms: int) -> Any:
        # once moved, the job is no longer ours: drop the token so lock renewal does not report it lost
        result = self._queue._move_to_delayed(job, timestamp_ms)
        if inspect.isawaitable(result):

            async def then() -> None:
                await result
                job.token = None

            return then()
        job.token = None
        return result


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled (timeout or shutdown): nobody waits for this result any more
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class _JobThreads:
    """Threads for sync processors. Daemon threads, so an abandoned job (timeout, shutdown deadline)
    never keeps the process alive; a new thread starts whenever none is idle, so an abandoned thread
    never holds a slot."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: _queue.SimpleQueue[Any] = _queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        fut = loop.create_future()
        self._tasks.put((loop, fut, fn, args))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                return fut
            self._count += 1
            n = self._count
        threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True).start()
        return fut

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            loop, fut, fn, args = item
            try:
                result, exc = fn(*args), None
            except BaseException as error:  # handed to the worker's loop, like an executor would
                result, exc = None, error
            try:
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            except RuntimeError:  # the loop is closed: the worker has stopped
                pass
            del item, fut, result, exc
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let idle threads exit; busy (abandoned) ones end with their job."""
        with self._lock:
            for _ in range(self._count):
                self._tasks.put(None)
            self._count = self._idle = 0


def _validate_limiter(limiter: Mapping[str, Any] | None) -> tuple[int, int]:
    if limiter is None:
        return 0, 0
    if not isinstance(limiter, Mapping) or set(limiter) - {"max", "duration"} or "max" not in limiter:
        raise InvalidOptionError(f"limiter must be {{'max': n, 'duration': ms}}, got {limiter!r}", option="limiter")
    return (
        _opts.validate_count(limiter["max"], "limiter.max", minimum=1),
        _opts.to_ms(limiter.get("duration", 1000), "limiter.duration", allow_zero=False),
    )
