"""Processing jobs by hand (BullMQ's manual-fetch pattern): ``Worker(queue, None)`` runs nothing by itself.

:class:`ManualProcessing` is a part of :class:`~sbqueue.engine.worker.lifecycle.Worker` (a mixin), sync-facing:

- ``get_next_job(token)`` moves the next job to active with the worker's ``finish_and_fetch`` script, exactly as
  the worker's own fetch (``pb``, ``ats``, ``processedOn``, the ``active`` event, rate limits, the global
  concurrency cap, delayed jobs that came due), its lock holding ``token`` itself for ``lock_duration`` (the
  script is told so by a worker id of ``"=" + token``). With ``block`` it waits up to ``drain_delay`` s on the
  queue's marker for one to arrive. Emits ``active`` / ``drained`` as Node's ``getNextJob``.
- the jobs it returns talk through a :class:`ManualQueue`: ``job.move_to_completed`` / ``job.move_to_failed``
  settle them with the worker's :class:`~sbqueue.engine.worker.outcomes.Settler` — the same retries, backoff,
  stacktraces and retention as a processor's outcome — in one ``finish_and_fetch`` call that may also fetch the
  next job under the same token. A token that does not hold the lock: :class:`~sbqueue.LockMismatchError`, and
  nothing changed. As in Node, these moves emit no worker events (QueueEvents sees them).
- nobody renews the locks of such jobs: ``job.extend_lock(token, ms)`` does; a job whose lock lapses is put
  back by the stalled check, which a manual worker runs once :meth:`ManualProcessing.start_stalled_check_timer`
  is called (BullMQ's ``startStalledCheckTimer``), in a background thread until ``close()``.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from sbqueue._core import dead_letters as _dead
from sbqueue._core import options as _opts
from sbqueue._core.finish import FINISHED, FetchReply, FetchRequest, Finish, FinishKind, finish_and_fetch_argv
from sbqueue._core.records import pairs_to_dict
from sbqueue.connection import clients
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.job import Job
from sbqueue.engine.worker.dead_letters import letter_for
from sbqueue.engine.worker.locks import stalled_check_argv
from sbqueue.engine.worker.outcomes import Settler
from sbqueue.engine.worker.state import Settlement, WorkerState
from sbqueue.errors import InvalidOptionError, UnrecoverableError, error_from_code

#: a worker id starting with this tells ``finish_and_fetch`` that the rest is the exact lock token
EXACT_TOKEN = "="


class ManualQueue:
    """The queue a manually fetched job talks through: the worker's sync queue, plus moving the job on."""

    def __init__(self, queue: Queue, worker: ManualProcessing) -> None:
        self._queue = queue
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def _move_to_completed(self, job: Job, value: Any, token: str, fetch_next: bool) -> Job | None:
        return self._worker._finish_by_hand(job, token, fetch_next, completed=True, value=value)

    def _move_to_failed(self, job: Job, error: BaseException | str, token: str, fetch_next: bool) -> Job | None:
        return self._worker._finish_by_hand(job, token, fetch_next, completed=False, value=error)


class ManualProcessing:
    """``get_next_job``, the manual moves and the stalled-check timer of a Worker (see the module docstring)."""

    queue: Queue
    processor: Callable[[Job], Any] | None
    name: str | None
    lock_duration: int
    stalled_interval: int
    max_stalled_count: int
    drain_delay: float
    limiter: tuple[int, int]
    metrics_points: int
    keep_completed: Any
    keep_failed: Any
    dead_letter_queue: str | None
    backoff_strategy: Callable[[int, BaseException, Job], int] | None
    _base: Any
    _state: WorkerState
    emit: Callable[..., None]

    def _manual_init(self) -> None:
        self._manual_lock = threading.Lock()
        self._blocking: redis.Redis | None = None  # the marker waits' connection, made on first use
        self._drained = False
        self._stalled_stop: threading.Event | None = None

    def get_next_job(self, token: str, *, block: bool = True) -> Job | None:
        """Move the next job to active, locked with ``token`` (BullMQ's ``worker.getNextJob``), or None: none
        within ``drain_delay`` s with ``block``, none now without; None too while the worker is paused or closed.

        Move it on with ``job.move_to_completed(value, token)`` / ``job.move_to_failed(error, token)`` before its
        lock (``lock_duration``) lapses, or extend it with ``job.extend_lock(token, ms)``; see also
        :meth:`start_stalled_check_timer`. Example::

            worker = Worker("images", None, lock_duration=60_000)
            job = worker.get_next_job("my-token")
            if job is not None:
                job.move_to_completed(resize(job.data), "my-token")
        """
        _check_token(token)
        deadline = time.monotonic() + self.drain_delay
        while True:
            if self._state.gate.paused or self._state.closing:
                return None
            reply, job = self._trip(token, [], fetch=True)
            if job is not None:
                return job
            remaining = deadline - time.monotonic()
            if not block or remaining <= 0:
                return None
            if reply.rate_limit_ttl > 0:  # rate-limited: wait out the window (within the block time)
                time.sleep(min(reply.rate_limit_ttl / 1000, remaining))
                continue
            if reply.next_delayed_ms:
                remaining = min(remaining, max(reply.next_delayed_ms / 1000 - time.time(), 0.002))
            self._wait_marker(max(remaining, 0.002))

    def start_stalled_check_timer(self) -> None:
        """Run the stalled check now and then every ``stalled_interval`` ms, in a background thread, until
        :meth:`~sbqueue.Worker.close` (BullMQ's ``startStalledCheckTimer``): a worker without a processor checks
        nothing otherwise. Emits ``stalled(job_id)`` per job put back. A worker with a processor checks by
        itself while it runs: there this does nothing."""
        if self.processor is not None:
            return
        with self._manual_lock:
            if self._stalled_stop is not None:
                return
            stop = self._stalled_stop = threading.Event()
        threading.Thread(target=self._check_stalled_until, args=(stop,), daemon=True,
                         name=f"sbqueue-stalled-{self.queue.name}").start()  # fmt: skip

    def _check_stalled_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self._state.gate.paused:  # as Node's: a paused worker checks nothing
                try:
                    recovered, _flagged = self.queue._run(
                        "stalled_check", stalled_check_argv(self.stalled_interval, self.max_stalled_count)
                    )
                except redis.RedisError as exc:
                    self.emit("error", exc)
                    recovered = []
                for job_id in recovered:
                    self.emit("stalled", str(job_id))
            stop.wait(self.stalled_interval / 1000)

    def _close_manual(self) -> None:
        """From ``close()``: stop the stalled-check timer, close the marker connection."""
        with self._manual_lock:
            stop, self._stalled_stop = self._stalled_stop, None
            blocking, self._blocking = self._blocking, None
        if stop is not None:
            stop.set()
        if blocking is not None:
            blocking.close()

    # --- one finish_and_fetch call ----------------------------------------------------------------------
    def _trip(self, token: str, batch: list[Settlement], *, fetch: bool) -> tuple[FetchReply, Job | None]:
        now = int(time.time() * 1000)
        limit_max, limit_ms = self.limiter
        request = FetchRequest(now, EXACT_TOKEN + token, self.name or "", self.lock_duration, 1 if fetch else 0,
                               limit_max, limit_ms, self.metrics_points)  # fmt: skip
        argv = finish_and_fetch_argv(request, [finish for finish, _job, _event, _payload in batch])
        reply = FetchReply.parse(self.queue._run("finish_and_fetch", argv))
        job = None
        for job_id, lock_token, flat_hash in reply.jobs:
            job = Job.from_hash(ManualQueue(self.queue, self), str(job_id), pairs_to_dict(flat_hash),
                                token=str(lock_token))  # fmt: skip
        if fetch:
            self._fetched(job, now)
        return reply, job

    def _fetched(self, job: Job | None, now: int) -> None:
        """As Node's ``nextJobFromJobData``: ``drained`` once when none came, else schedule a scheduler's next
        run and emit ``active``."""
        if job is None:
            if not self._drained:
                self._drained = True
                self.emit("drained")
            return
        self._drained = False
        if job.scheduler_id:
            try:
                self.queue._schedule_next(job, now)
            except redis.RedisError as exc:
                self.emit("error", exc)
        self.emit("active", job)

    def _wait_marker(self, timeout: float) -> None:
        with self._manual_lock:
            if self._blocking is None:  # its socket timeout outlasts the longest wait
                self._blocking = clients.sync_twin(self._base, socket_timeout=self.drain_delay + 30,
                                                   client_name=self.queue.keys.client_name(self.name))  # fmt: skip
            blocking = self._blocking
        try:
            blocking.bzpopmin(self.queue.keys.key("marker"), timeout=timeout)
        except redis.RedisError as exc:  # e.g. WRONGTYPE on a marker a peer broke: no busy loop
            self.emit("error", exc)
            time.sleep(min(timeout, 0.5))

    # --- job.move_to_completed / move_to_failed -----------------------------------------------------------
    def _finish_by_hand(self, job: Job, token: str, fetch_next: bool, *, completed: bool, value: Any) -> Job | None:
        _check_token(token)
        work = copy.copy(job)  # the settler updates the job as listeners see it: only once Redis agreed
        work.token = token
        settled = WorkerState()
        errors: list[BaseException] = []
        settler = Settler(settled, lambda event, *args: errors.append(args[0]) if event == "error" else None,
                          keep_completed=self.keep_completed, keep_failed=self.keep_failed,
                          backoff_strategy=self.backoff_strategy)  # fmt: skip
        if completed:
            settler.completed(work, value, _opts.dumps(value, "return value"))  # DataError: nothing written
        else:
            exc = value if isinstance(value, BaseException) else Exception(str(value))
            settler.failed(work, exc, final=isinstance(exc, UnrecoverableError))
            if not settled.pending:  # a backoff option the settler cannot apply: nothing written
                raise errors[0] if errors else InvalidOptionError(f"job {job.id}: the failure cannot be recorded")
        command = "move_to_completed" if completed else "move_to_failed"
        if settled.pending[0][0].kind is FinishKind.FAILED:
            self._dead_letter_by_hand(work)
        reply, next_job = self._trip(token, settled.pending, fetch=fetch_next)
        if reply.codes[0] != FINISHED:
            if next_job is not None:  # refused, yet fetched: put that one back (attempt not counted)
                self._trip(token, [(Finish(next_job.id, token, FinishKind.REQUEUE), next_job, "", None)], fetch=False)
            raise error_from_code(reply.codes[0], job_id=job.id, command=command)
        kind = settled.pending[0][0].kind
        for field in ("attempts_made", "returnvalue", "failed_reason", "stacktrace"):
            setattr(job, field, getattr(work, field))
        if kind in (FinishKind.COMPLETED, FinishKind.FAILED):
            job.finished_on = int(time.time() * 1000)
        job.token = None  # no longer held
        self._state.processed += settled.processed
        self._state.failed_count += settled.failed_count
        return next_job


    def _dead_letter_by_hand(self, job: Job) -> None:
        """A final failure's letter, as the worker's round trip writes it (worker/dead_letters.py): before the
        finish, under an id that makes writing it again a no-op."""
        name = _dead.target_of(job.opts, self.dead_letter_queue, self.queue.name)
        if name is None:
            return
        letter, argv = letter_for(job, self.queue.prefix, self.queue.name, int(time.time() * 1000))
        dlq = Queue(name, self._base, self.queue.prefix)
        dlq._ensure_meta()
        dlq._run("add_job", argv)
        try:  # the registry of DLQs only speeds up recognising them: best effort, as in the worker
            self._base.sadd(_dead.registry_key(self.queue.prefix), name)
        except redis.ResponseError:
            pass
        self.emit("dead-lettered", job, name, letter)


def _check_token(token: Any) -> None:
    if not isinstance(token, str) or not token or token == "0":
        raise InvalidOptionError(f"token must be a non-empty string other than '0', got {token!r}", option="token")
