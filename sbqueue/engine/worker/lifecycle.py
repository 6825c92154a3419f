"""The Worker: its options, and running it — blocking, in a background thread, or inside an event loop.

A run builds the parts of the package for its own event loop (asyncio clients, the job runner, the
settler, the round trip, the fetch loop, the lock keeper), runs the fetch loop until :meth:`Worker.close`
or SIGTERM/SIGINT, then closes what it opened. Everything the parts share lives in one
:class:`~sbqueue.engine.worker.state.WorkerState` for the Worker's lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis

from sbqueue import connection as _connection
from sbqueue._core import dead_letters as _dead
from sbqueue._core import options as _opts
from sbqueue.connection import clients
from sbqueue.connection import cluster as _cluster
from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.events import EventEmitter
from sbqueue.engine.job import Job
from sbqueue.engine.telemetry import Telemetry, checked_telemetry
from sbqueue.engine.worker.control import WorkerControl
from sbqueue.engine.worker.dead_letters import DeadLetters
from sbqueue.engine.worker.fetch_loop import FetchLoop
from sbqueue.engine.worker.job_runs import JobRuns
from sbqueue.engine.worker.locks import LockKeeper
from sbqueue.engine.worker.manual import ManualProcessing
from sbqueue.engine.worker.outage import RedisOutage
from sbqueue.engine.worker.outcomes import Settler
from sbqueue.engine.worker.process_runner import ProcessRunner, process_options
from sbqueue.engine.worker.process_target import resolve as resolve_processor
from sbqueue.engine.worker.round_trip import RoundTrip
from sbqueue.engine.worker.runners import JobRunner, runner_for
from sbqueue.engine.worker.state import WorkerState
from sbqueue.engine.worker.tasks import cancel_all
from sbqueue.engine.worker.tracing import TracedJobRuns, TracedSettler, traced_runner_for
from sbqueue.errors import ClusterKeyError, ConfigurationError, ConnectionFailedError, InvalidOptionError

log = logging.getLogger(__name__)

WORKER_EVENTS = ("active", "completed", "failed", "progress", "stalled", "error", "drained", "closed",
                 "locks-renewed", "lock-renewal-failed", "dead-lettered", "paused", "resumed")  # fmt: skip


class Worker(WorkerControl, ManualProcessing, EventEmitter):
    """Process jobs of one queue with ``processor(job)`` (a plain function, run in a thread pool, or
    an ``async def``, run on the worker's loop). Its return value (JSON) becomes ``returnvalue``.
    ``processor`` may also be an import path, ``"package.module:function"``.

    ``processes=n``: run the processor in ``n`` child processes instead (CPU-bound or crash-prone code; README,
    "Threads, asyncio or processes"); it must be importable (an import path, or a module-level function), and
    ``concurrency`` defaults to ``n`` (more keeps jobs fetched and ready for the next free child).
    ``max_jobs_per_child`` recycles a child after that many jobs;
    ``max_memory_per_child`` caps each child's address space, in MB (``RLIMIT_AS``).

    ``processor=None``: nothing runs by itself; fetch and settle jobs by hand with :meth:`get_next_job`
    (worker/manual.py). :meth:`pause` / :meth:`resume` and :meth:`cancel_job` steer a running worker from any
    thread (worker/control.py).

    Events (``w.on(name, fn)``): ``active(job)``, ``completed(job, result)``, ``failed(job, error)``
    (every failed attempt, as Node's Worker; the last one has ``job.attempts_made == job.max_attempts``
    or was unrecoverable), ``progress(job, value)``, ``stalled(job_id)``, ``error(exc)``, ``drained()``,
    ``closed()``, ``locks-renewed({"count": n, "job_ids": [...]})`` and ``lock-renewal-failed([job_ids])``
    (Node's ``locksRenewed`` / ``lockRenewalFailed``, after each lock renewal round), ``paused()``, ``resumed()`` and
    ``dead-lettered(job, dlq_name, letter_id)``.

    ``dead_letter_queue="name"``: a job that fails for good (attempts exhausted, unrecoverable, stalled more
    than ``max_stalled_count``) is also added to that queue, with its source metadata in ``opts.deadLetter``;
    a job's own ``dead_letter_queue`` option overrides it (README, "Dead-letter queues").

    On Redis Cluster the queue needs a ``{hash tag}`` in its prefix or name (else :class:`ClusterKeyError`
    here); the worker blocks on one connection, to the master that owns the queue's slot.

    ``telemetry=sbqueue.OtelTelemetry(...)``: one ``process <queue>`` span per attempt, continuing the trace the
    job's ``opts.tm`` carries; the processor runs inside it (README, "Tracing"). Off by default.
    """

    def __init__(
        self,
        queue_name: str,
        processor: Callable[[Job], Any] | str | None,
        connection: Any = None,
        prefix: str = "bull",
        *,
        concurrency: int | None = None,
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
        telemetry: Telemetry | None = None,
        dead_letter_queue: str | None = None,
        processes: int | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        super().__init__()
        if dead_letter_queue is not None:  # refused before anything is written (connecting included)
            dead_letter_queue = _dead.validate_target(dead_letter_queue, queue_name)
        self.dead_letter_queue = dead_letter_queue
        if processor is None:  # processed by hand (worker/manual.py)
            if processes is not None:
                raise InvalidOptionError("processes needs a processor to run in the children", option="processes")
            if autorun:
                raise InvalidOptionError(_NO_PROCESSOR, option="autorun")
        self.processes, self.max_jobs_per_child, self.max_memory_per_child, self._target = process_options(
            processor, processes, max_jobs_per_child, max_memory_per_child
        )
        self.processor = None if processor is None else resolve_processor(processor)
        if concurrency is None:
            concurrency = processes or 10
        self.concurrency = _opts.validate_count(concurrency, "concurrency", minimum=1, maximum=100_000)
        if processes is not None and self.concurrency < processes:
            raise InvalidOptionError(f"with processes={processes} the worker runs up to {processes} jobs at once (one "
                                     f"per child process): concurrency must be at least {processes} (jobs beyond the "
                                     f"children wait for one, ready), got {concurrency!r}",
                                     option="concurrency")  # fmt: skip
        self.lock_duration = _opts.to_ms(lock_duration, "lock_duration", allow_zero=False)
        self.lock_renew_time = _opts.to_ms(
            lock_renew_time or self.lock_duration / 2, "lock_renew_time", allow_zero=False
        )
        self.stalled_interval = _opts.to_ms(stalled_interval, "stalled_interval", allow_zero=False)
        self.max_stalled_count = _opts.validate_count(max_stalled_count, "max_stalled_count")
        self.limiter = _opts.validate_limiter(limiter)
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
        self.telemetry = checked_telemetry(telemetry)
        # reaches the server now (a wrong password or an unreachable server fails here, clearly)
        base, owned = clients.sync_client(connection)
        self._base = base
        try:
            clients.async_twin(base, **clients.DECODED)  # settings the worker's asyncio clients cannot honour: now
            clients.ensure_reachable(base, connection)
            self.queue = Queue(queue_name, base, prefix)  # sync handle: for sync processors and callers
        except (ClusterKeyError, ConfigurationError, ConnectionFailedError):  # nothing was written
            if owned:
                clients.close_sync(base)
            raise
        self.keys = self.queue.keys
        self._state = WorkerState()
        self._outage = RedisOutage(self._state, self.emit)
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self._error: BaseException | None = None  # why the last run ended early (re-raised by run()/close())
        self._manual_init()
        if autorun:
            self.start()

    def __repr__(self) -> str:
        mode = f" processes={self.processes}" if self.processes else ""
        return f"<Worker {self.queue.name!r} name={self.name!r} concurrency={self.concurrency}{mode}>"

    @property
    def processed(self) -> int:
        """Jobs completed by this worker."""
        return self._state.processed

    @property
    def failed_count(self) -> int:
        """Jobs this worker failed for good (not the attempts that were retried)."""
        return self._state.failed_count

    @property
    def _close_timeout(self) -> float | None:  # the command line's --shutdown-timeout sets it before run()
        return self._state.close_timeout

    @_close_timeout.setter
    def _close_timeout(self, timeout: float | None) -> None:
        self._state.close_timeout = timeout

    @property
    def _full_since(self) -> float | None:  # when Redis was found full, until it accepts writes again
        return self._outage.full_since

    # --- running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Process jobs until :meth:`close` or SIGTERM/SIGINT (blocking); raises what ended the run early."""
        self._check_processor()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # inside Jupyter's loop: never asyncio.run there
            self.start()
            self._done.wait()
            error, self._error = self._error, None
            if error is not None:
                raise error
            return
        self._state.closing = False
        try:
            asyncio.run(self._run_async(install_signals=threading.current_thread() is threading.main_thread()))
        finally:
            self._error = None  # raised here already

    def start(self) -> Worker:
        """Run in a background thread (notebooks, experiments); returns self. A failure that ends the run
        early is emitted as ``error`` and re-raised by :meth:`close`."""
        self._check_processor()
        if self._thread is None or not self._thread.is_alive():
            self._done.clear()
            self._state.closing = False  # here, not in the thread: a close() right after start() must stick
            self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                            name=f"sbqueue-worker-{self.queue.name}")  # fmt: skip
            self._thread.start()
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._run_async())
        except Exception:  # kept in self._error (emitted as "error"); close() re-raises it in the caller's thread
            log.error("worker for %r stopped: %s", self.queue.name, self._error)

    def close(self, timeout: float | None = None) -> None:
        """Stop fetching, let in-flight jobs finish (up to ``timeout`` s), put back what is left.

        Re-raises the error that ended a background run early (e.g. the server refused the credentials)."""
        self._close_timeout = timeout
        self._state.closing = True
        self._close_manual()
        loop = self._state.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._state.wake_up)
            except RuntimeError:
                pass
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._done.wait(None if timeout is None else timeout + 10)
            error, self._error = self._error, None
            if error is not None:
                raise error

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    async def run_async(self, *, install_signals: bool = False) -> None:
        """Process jobs inside an existing event loop until :meth:`close`."""
        self._check_processor()
        self._state.closing = False
        await self._run_async(install_signals=install_signals)

    async def _run_async(self, *, install_signals: bool = False) -> None:
        loop = self._state.loop = asyncio.get_running_loop()
        self._done.clear()
        self._error = None
        self._state.wake = asyncio.Event()
        try:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._signal_close)
            try:
                await self._serve()
            finally:
                if install_signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.remove_signal_handler(sig)
        except Exception as exc:  # a start-up failure or a bug: reported, never a close() that waits forever
            self._error = exc
            self.emit("error", exc)
            raise
        finally:
            self._state.loop = None
            self._state.cancel_job = None
            self._state.gate.release_all()  # pause(wait_for_active=True) callers: nothing is in flight any more
            self._done.set()
            self.emit("closed")

    async def _serve(self) -> None:
        client = clients.async_twin(self._base, **clients.DECODED)  # own pool, on this loop
        # blocking waits need a socket timeout longer than the block time
        # (on Redis Cluster: one connection, on the master that owns the marker's slot)
        blocking = {"socket_timeout": self.drain_delay + 30, "client_name": self.keys.client_name(self.name)}
        bclient: Any
        if _cluster.is_cluster(self._base):
            bclient = _cluster.BlockingNodeClient(self._base, self.keys.key("marker"), **blocking)
        else:
            bclient = clients.async_twin(self._base, **clients.DECODED, **blocking)
        aqueue = AsyncQueue(self.queue.name, client, self.keys.prefix)
        runner: JobRunner
        if self._target is not None and self.processes is not None:  # the process span stays here, around the run
            runner = ProcessRunner(self._target, self.processes, max_jobs_per_child=self.max_jobs_per_child,
                                   max_memory_mb=self.max_memory_per_child, emit=self.emit)  # fmt: skip
        else:
            pick_runner = traced_runner_for if self.telemetry.enabled else runner_for
            assert self.processor is not None  # run() and start() checked
            runner = pick_runner(self.processor, f"sbqueue-job-{self.queue.name}")
        fetch_loop, lock_keeper = self._parts(aqueue, runner, bclient)
        background = [asyncio.create_task(lock_keeper.renew_locks_forever()),
                      asyncio.create_task(lock_keeper.check_stalled_forever())]  # fmt: skip
        try:
            await runner.start()  # child processes: a processor that does not import there fails the run here
            try:
                await bclient.ping()  # registers the named connection (dashboards see the worker)
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # credentials or ACL changed since construction: retrying cannot help
                url = _connection.mask_url(_connection.url_of(self._base))
                raise ConnectionFailedError(f"Redis at {url} refused the worker ({exc})") from None
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                # Redis down or restarting: the main loop retries (the name is set on every connect)
                self.emit("error", exc)
            await fetch_loop.run()
        finally:
            await cancel_all(background)
            runner.shutdown()
            # the clients own their pools (async_twin): close them, or their sockets leak
            await client.aclose(close_connection_pool=True)
            await bclient.aclose(close_connection_pool=True)

    def _parts(self, aqueue: AsyncQueue, runner: JobRunner, bclient: Any) -> tuple[FetchLoop, LockKeeper]:
        """The parts of one run, wired to this worker's state and options as they are now."""
        state, emit, run = self._state, self.emit, aqueue._run
        settle: dict[str, Any] = {"keep_completed": self.keep_completed, "keep_failed": self.keep_failed,
                                  "backoff_strategy": self.backoff_strategy}  # fmt: skip
        settler: Settler
        jobs: JobRuns
        if self.telemetry.enabled:  # the same parts, each job's run inside its process span (worker/tracing.py)
            settler = traced = TracedSettler(state, emit, **settle)
            jobs = TracedJobRuns(state, traced, runner, emit, queue=self.queue, aqueue=aqueue,
                                 telemetry=self.telemetry, worker_id=self.id, worker_name=self.name)  # fmt: skip
        else:
            settler = Settler(state, emit, **settle)
            jobs = JobRuns(state, settler, runner, emit, queue=self.queue, aqueue=aqueue)
        letters = DeadLetters(aqueue.client, aqueue, self.dead_letter_queue, emit)
        state.cancel_job = jobs.cancel
        round_trip = RoundTrip(run, state, settler, jobs, emit, worker_id=self.id, worker_name=self.name or "",
                               lock_ms=self.lock_duration, limiter=self.limiter,
                               metrics_points=self.metrics_points, dead_letters=letters)  # fmt: skip
        fetch_loop = FetchLoop(state, round_trip, jobs, self._outage, emit, concurrency=self.concurrency,
                               max_rate_limit_delay=self.max_rate_limit_delay, blocking_client=bclient,
                               marker_key=self.keys.key("marker"), drain_delay=self.drain_delay)  # fmt: skip
        lock_keeper = LockKeeper(run, state, emit, self._outage, lock_ms=self.lock_duration,
                                 renew_ms=self.lock_renew_time, stalled_interval_ms=self.stalled_interval,
                                 max_stalled_count=self.max_stalled_count)  # fmt: skip
        return fetch_loop, lock_keeper

    def _check_processor(self) -> None:
        if self.processor is None:
            raise InvalidOptionError(_NO_PROCESSOR, option="processor")

    def _signal_close(self) -> None:
        log.info("signal received: finishing in-flight jobs, then exiting")
        self._state.closing = True
        self._state.wake_up()


_NO_PROCESSOR = (
    "this Worker has no processor (processor=None: processing by hand): fetch jobs with "
    "worker.get_next_job(token) instead of run()/start()/autorun"
)
