"""The main loop of a worker child process: import the processor, then run the jobs the worker sends.

The worker starts each child as ``python -c BOOTSTRAP <fd>`` (:data:`BOOTSTRAP`): the child reads the parent's
``sys.path`` from the pipe, then calls :func:`main`, which

- dies with the worker: ``PR_SET_PDEATHSIG=SIGKILL`` on Linux (the child is the worker's direct child), a
  watchdog on ``getppid()`` elsewhere, and an exit at EOF on the pipe;
- ignores SIGINT (a Ctrl-C reaches the whole process group: the worker decides what its children do) and turns
  SIGTERM into ``SystemExit`` so the processor's ``finally`` blocks run before the worker's SIGKILL;
- caps its address space at ``max_memory_per_child`` MB (``RLIMIT_AS``) where the platform allows;
- imports the processor and reports ``ready`` (or ``failed`` with the traceback, then exits);
- runs one job at a time: a :class:`~sbqueue.engine.job.Job` whose queue is a :class:`ChildQueue` that asks the
  worker to act (progress, logs, data, move to delayed... through the worker's own queue handle, so the child
  needs no Redis connection), and sends back the result or the exception.

``async def`` processors run on one event loop kept for the child's lifetime.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from sbqueue.engine.job import Job
from sbqueue.engine.worker.process_target import ProcessorTarget
from sbqueue.engine.worker.process_wire import THIS_JOB, decode_error, encode_error
from sbqueue.engine.worker.runners import is_async_processor
from sbqueue.errors import DataError

#: run by ``python -c``: only the standard library is importable until the parent's sys.path is in place
BOOTSTRAP = ("import sys;from multiprocessing.connection import Connection;c=Connection(int(sys.argv[1]));"
             "sys.path[:]=c.recv();from sbqueue.engine.worker.process_child import main;main(c)")  # fmt: skip
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ChildQueue:
    """The child's stand-in for the worker's queue: each method call becomes a request to the worker, which
    performs it on the job it knows and replies. Calls from the processor's own threads are serialised."""

    def __init__(self, conn: Connection, lock: threading.Lock, job: Job, is_async: bool) -> None:
        self._conn = conn
        self._lock = lock
        self._job = job
        self._async = is_async
        self.finished = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._async:

            async def acall(*args: Any, **kwargs: Any) -> Any:
                # blocks this loop for one round trip to the worker: short, and keeps the order of calls
                return self._call(name, args, kwargs)

            return acall
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        job = self._job
        args = tuple(THIS_JOB if arg is job else arg for arg in args)
        with self._lock:
            if self.finished:  # a thread the processor left behind, after the job ended
                raise RuntimeError(f"job {job.id} has finished: job.{name}() cannot reach the worker any more")
            self._conn.send(("call", name, args, kwargs))
            _tag, ok, value, changes = self._conn.recv()
        for field, new in (changes or {}).items():
            setattr(job, field, new)
        if not ok:
            raise decode_error(value)
        return value


class _Child:
    """One child's state: the pipe, the processor, the loop for async processors."""

    def __init__(self, conn: Connection, processor: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.processor = processor
        self.is_async = is_async_processor(processor)
        self.loop = asyncio.new_event_loop() if self.is_async else None

    def run(self, fields: dict[str, Any]) -> None:
        job = Job(queue=None, **fields)
        queue = job.queue = ChildQueue(self.conn, self.lock, job, self.is_async)
        reply: tuple[Any, ...]
        try:
            if self.loop is not None:
                reply = ("done", self.loop.run_until_complete(self.processor(job)))
            else:
                reply = ("done", self.processor(job))
        except BaseException as exc:  # everything goes back to the worker, SystemExit included
            reply = ("error", encode_error(exc))
        with self.lock:
            queue.finished = True
            try:
                self.conn.send(reply)
            except Exception as exc:  # pickling failed before anything was written: say why instead
                what = "return value" if reply[0] == "done" else "exception"
                error = DataError(f"the job's {what} cannot be sent back from the worker child process: {exc}")
                self.conn.send(("error", encode_error(error)))
        if _terminating:  # SIGTERM arrived during the job: the worker is stopping this child
            raise SystemExit(128 + signal.SIGTERM)


_terminating = False


def _on_sigterm(_signum: int, _frame: Any) -> None:
    global _terminating
    _terminating = True
    raise SystemExit(128 + signal.SIGTERM)


def main(conn: Connection) -> None:
    """The child's life (see the module docstring)."""
    os.set_inheritable(conn.fileno(), False)  # processes the processor starts must not hold the pipe open
    config = conn.recv()
    _die_with_parent(config["parent_pid"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _limit_memory(config["max_memory_mb"])
    target: ProcessorTarget = config["target"]
    try:
        processor = target.load()
        if not callable(processor):
            raise TypeError(f"{target} is not callable, got {processor!r}")
    except BaseException as exc:  # reported to the worker, which refuses to start
        conn.send(("failed", encode_error(exc)[3]))
        sys.exit(1)
    child = _Child(conn, processor)
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the worker is gone (or closed the pipe): nothing more to do
                return
            if message[0] == "run":
                child.run(message[1])
            elif message[0] == "stop":
                return
    finally:
        if child.loop is not None:
            child.loop.close()


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the worker: the kernel kills this child when the worker dies (Linux), else a watchdog."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the worker died before the line above: the signal will never come
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="sbqueue-parent-watch").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _limit_memory(max_mb: int | None) -> None:
    if not max_mb:
        return
    import resource  # POSIX only: the Worker refuses max_memory_per_child where it is missing

    limit = max_mb * 2**20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
