"""A small pool of worker child processes, driven from the worker's event loop.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it cannot stop one child (a timed-out or cancelled
job), and one crashed child breaks the whole executor. Here each :class:`Child` is one process with one duplex
pipe (:mod:`.process_wire` for the messages) and the pool

- **spawns** children as fresh interpreters (``subprocess`` + ``python -c``, :data:`process_child.BOOTSTRAP`):
  never a fork of the threaded worker, and not multiprocessing's spawn either, which would re-import the
  worker's ``__main__`` in every child; each child is a *direct* child of the worker, so ``PR_SET_PDEATHSIG``
  kills it with the worker (the kernel sends it when the *thread* that spawned the child exits: children are
  only spawned from the worker's event-loop thread, which outlives them);
- watches each pipe with ``loop.add_reader`` (no thread per child; a job costs one send and one receive) and
  each child's exit with a pidfd (Linux) or by polling once its pipe reaches EOF;
- hands an idle child to each job (:meth:`ProcessPool.acquire`), takes it back after (:meth:`release`):
  recycled after ``max_jobs`` jobs, replaced when it dies; a job whose child dies fails with
  :class:`WorkerChildDiedError` naming the exit code or signal — or with the child's ``doom``, the exception
  the runner chose when it stopped the child itself (timeout, cancellation);
- stops a child with SIGTERM, then SIGKILL after :data:`GRACE_S`.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing import Pipe
from typing import Any

from sbqueue.engine.job import Job
from sbqueue.engine.worker.process_child import BOOTSTRAP
from sbqueue.engine.worker.process_members import Child, ProcessorLoadError, signal_child
from sbqueue.engine.worker.process_target import ProcessorTarget
from sbqueue.engine.worker.process_wire import (
    ChildRaised,
    WorkerChildDiedError,
    died_error,
    encode_error,
    exit_description,
    serve_call,
)
from sbqueue.errors import DataError, WorkerProcessError

#: seconds between SIGTERM and SIGKILL when the pool stops a child (time for the processor's `finally` blocks)
GRACE_S = 2.0
#: seconds a child may take to start (interpreter, sbqueue, the processor's module and what it imports)
START_TIMEOUT_S = 120.0
#: a replacement child that fails to start is retried after this many seconds, doubling up to the maximum
RESPAWN_DELAY_S, RESPAWN_MAX_DELAY_S = 1.0, 30.0
#: children started for one slot of the pool at start-up before a death while starting is final
START_ATTEMPTS = 3


class ProcessPool:
    """``size`` worker child processes running ``target`` (see the module docstring)."""

    def __init__(
        self,
        target: ProcessorTarget,
        size: int,
        *,
        max_jobs: int | None,
        max_memory_mb: int | None,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._target = target
        self._size = size
        self._max_jobs = max_jobs
        self._max_memory_mb = max_memory_mb
        self._on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._members: set[Child] = set()  # the children that count toward `size` (starting, idle or busy)
        self._others: set[Child] = set()  # children being stopped or recycled: waited for at shutdown
        self._idle: collections.deque[Child] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[Child]] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()  # replacements starting, queue calls being served
        self._closing = False

    @property
    def children(self) -> list[Child]:
        return list(self._members)

    # --- life ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every child; raises :class:`WorkerProcessError` if one cannot (the others are stopped)."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        try:
            children = await asyncio.wait_for(
                asyncio.gather(*(self._start_one() for _ in range(self._size))), START_TIMEOUT_S
            )
        except BaseException as exc:
            self.shutdown()
            if isinstance(exc, asyncio.TimeoutError):
                raise WorkerProcessError(f"worker child processes did not start within {START_TIMEOUT_S:.0f} s "
                                         f"(importing {self._target})") from None  # fmt: skip
            raise
        self._idle.extend(children)

    async def _start_one(self) -> Child:
        """One started child. A processor that cannot be loaded is final; a child that dies while starting
        (killed by a signal, the OOM killer) is the machine's doing, not the code's: tried again a few times."""
        for attempt in range(1, START_ATTEMPTS + 1):
            child = self._spawn()
            try:
                await asyncio.shield(child.ready)
                return child
            except ProcessorLoadError:
                raise
            except WorkerProcessError as exc:
                if attempt == START_ATTEMPTS:
                    raise
                self._on_error(WorkerProcessError(f"{exc}; starting another ({attempt}/{START_ATTEMPTS - 1})"))
        raise AssertionError("unreachable")

    def shutdown(self) -> None:
        """Stop every child and wait for them (idle ones exit at once; others get SIGTERM, then SIGKILL)."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        children = self._members | self._others
        self._members, self._others = set(), set()
        self._idle.clear()
        for child in children:
            if child.job is None and not child.stopping:
                self._send(child, ("stop",))
            else:
                signal_child(child, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_child(child, signal.SIGKILL)
                child.proc.wait()
            self._forget(child)
            if child.result is not None and not child.result.done():
                child.result.set_exception(WorkerChildDiedError(f"worker child process {child.pid} was stopped"))

    # --- jobs ---------------------------------------------------------------------------------------------
    async def acquire(self) -> Child:
        """An idle child (waits for one: the worker never runs more jobs than there are children, but a child
        may be restarting)."""
        while True:
            child = await self._next_idle()
            # handed over while alive, it may have died (or been stopped) before this task resumed: its
            # exit was handled then, so nothing would ever settle a job sent to it
            if not (child.stopping or child.dead.done()):
                return child

    async def _next_idle(self) -> Child:
        if self._idle:
            return self._idle.popleft()
        assert self._loop is not None
        waiter: asyncio.Future[Child] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a child just before the cancellation
                self._make_idle(waiter.result())
            raise

    def submit(self, child: Child, job: Job) -> asyncio.Future[Any]:
        """Send ``job`` to ``child``; the future ends with the processor's result or exception."""
        assert self._loop is not None
        child.job = job
        result = child.result = self._loop.create_future()
        fields = vars(job).copy()
        del fields["queue"]
        if child.dead.done():  # its exit was handled already: nothing else would settle the future
            result.set_exception(child.doom or WorkerChildDiedError(
                f"job {job.id}: worker child process {child.pid} died before the job reached it"))  # fmt: skip
            return result
        self._send(child, ("run", fields))  # a child that dies now: its exit settles the future
        return result

    def release(self, child: Child, *, retire: bool = False) -> None:
        """The job on ``child`` has ended: the child runs the next one, or is recycled."""
        child.job = child.result = None
        if child.stopping or child.dead.done():
            return  # stopped or dead: its exit starts the replacement
        child.jobs_done += 1
        if retire or (self._max_jobs is not None and child.jobs_done >= self._max_jobs):
            self.stop(child, None, graceful=True)
        else:
            self._make_idle(child)

    def stop(self, child: Child, doom: BaseException | None, *, graceful: bool) -> None:
        """Stop ``child`` (its job then raises ``doom``): "stop" if it is idle (``graceful``), else SIGTERM and
        SIGKILL after :data:`GRACE_S` — or SIGKILL at once when not ``graceful``. A replacement starts now."""
        if child.stopping or child.dead.done():
            return
        assert self._loop is not None
        child.stopping, child.doom = True, doom
        if child in self._members:
            self._members.discard(child)
            self._others.add(child)
            if child.started and not self._closing:  # one that never started is retried by _replace
                self._start_replacement()
        if not graceful:
            signal_child(child, signal.SIGKILL)
        elif child.job is None:
            self._send(child, ("stop",))
        else:
            signal_child(child, signal.SIGTERM)
        child.kill_timer = self._loop.call_later(GRACE_S, signal_child, child, signal.SIGKILL)

    def running(self, job_id: str) -> Child | None:
        """The child running job ``job_id``, if any."""
        for child in self._members:
            if child.job is not None and child.job.id == job_id:
                return child
        return None

    # --- children -----------------------------------------------------------------------------------------
    def _spawn(self) -> Child:
        assert self._loop is not None
        if not sys.executable:
            raise WorkerProcessError("cannot start worker child processes: sys.executable is unknown")
        ours, theirs = Pipe(duplex=True)
        fd = theirs.fileno()
        # the interpreter flags (-X, -W, -O...) as multiprocessing passes them
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        try:
            proc = subprocess.Popen([sys.executable, *flags, "-c", BOOTSTRAP, str(fd)], pass_fds=(fd,),
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        except OSError as exc:
            ours.close()
            raise WorkerProcessError(f"cannot start a worker child process: {exc}") from None
        finally:
            theirs.close()  # the child's end lives in the child only: its exit is EOF here
        child = Child(proc, ours, self._loop)
        # two messages: the first is unpickled before sbqueue is importable in the child
        ours.send(sys.path)
        ours.send({"parent_pid": os.getpid(), "target": self._target, "max_memory_mb": self._max_memory_mb})
        self._members.add(child)
        self._loop.add_reader(ours.fileno(), self._on_readable, child)
        try:
            child.pidfd = os.pidfd_open(proc.pid)  # type: ignore[attr-defined,unused-ignore]
            self._loop.add_reader(child.pidfd, self._on_exit, child)
        except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): EOF on the pipe, then polling
            child.pidfd = -1
        return child

    def _start_replacement(self) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._replace())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self) -> None:
        delay = RESPAWN_DELAY_S
        while not self._closing:
            child = None
            try:
                child = self._spawn()
                await asyncio.wait_for(asyncio.shield(child.ready), START_TIMEOUT_S)
            except (WorkerProcessError, asyncio.TimeoutError) as exc:
                if child is not None:  # hung while starting (a dead one is already forgotten)
                    self.stop(child, None, graceful=False)
                # reported, never silent: jobs wait for a child meanwhile (their locks are still renewed)
                error = exc if isinstance(exc, WorkerProcessError) else WorkerProcessError(
                    f"a replacement worker child process did not start within {START_TIMEOUT_S:.0f} s")  # fmt: skip
                self._on_error(WorkerProcessError(f"{error}; retrying in {delay:.0f} s"))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESPAWN_MAX_DELAY_S)
                continue
            self._make_idle(child)
            return

    def _make_idle(self, child: Child) -> None:
        if child.stopping or child.dead.done():
            return  # e.g. a replacement that died between "ready" and now: its exit started another
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(child)
                return
        self._idle.append(child)

    def _send(self, child: Child, message: tuple[Any, ...]) -> None:
        try:
            child.conn.send(message)
        except OSError:  # the child is gone: its exit is being handled
            pass

    def _on_readable(self, child: Child) -> None:
        try:
            message = child.conn.recv()
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(child.conn.fileno())
            if child.pidfd < 0:
                self._loop.create_task(self._poll_exit(child))
            return
        except Exception as exc:  # a message the worker cannot unpickle (a class only the child has)
            if child.job is not None:  # the child may be waiting for a reply that cannot come: replace it
                error = DataError(f"a message from worker child process {child.pid} cannot be read in the worker "
                                  f"(return values must be JSON): {exc!r}")  # fmt: skip
                self.stop(child, error, graceful=False)
            return
        self._handle(child, message)

    def _handle(self, child: Child, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == "ready":
            child.started = True
            if not child.ready.done():
                child.ready.set_result(None)
        elif tag == "failed":
            if not child.ready.done():
                child.ready.set_exception(ProcessorLoadError(
                    f"the processor {self._target} cannot be loaded in a worker child process:\n{message[1]}"
                ))  # fmt: skip
        elif child.stopping:
            return  # being stopped: its job ends with its doom, its requests go unanswered
        elif tag == "call":
            assert self._loop is not None
            task = self._loop.create_task(self._serve_call(child, child.job, *message[1:]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif child.result is not None and not child.result.done():
            if tag == "done":
                child.result.set_result(message[1])
            else:  # "error": decoded by the runner, which knows the job and the memory limit
                child.result.set_exception(ChildRaised(message[1]))

    async def _serve_call(self, child: Child, job: Job | None, name: str, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> None:  # fmt: skip
        reply = await serve_call(job, name, args, kwargs)
        if not child.stopping and not child.dead.done():
            try:
                child.conn.send(reply)
            except OSError:  # the child died meanwhile
                pass
            except Exception as exc:  # the value cannot be pickled (that fails before anything is written)
                error = DataError(f"job.queue.{name}() returned {type(reply[2]).__name__}, which cannot be sent "
                                  f"to a worker child process: {exc}")  # fmt: skip
                self._send(child, ("reply", False, encode_error(error), reply[3]))

    async def _poll_exit(self, child: Child) -> None:
        delay = 0.001
        while child.proc.poll() is None:  # EOF comes as the child exits: a few polls at most
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._on_exit(child)

    def _on_exit(self, child: Child) -> None:
        """``child`` has exited: settle its job, forget it, start a replacement if it counted."""
        if child.dead.done():
            return
        if not child.stopping:  # a message it sent just before dying ("done", then a crash in a thread)
            try:
                while child.conn.poll(0):
                    self._handle(child, child.conn.recv())
            except (EOFError, OSError):
                pass
        returncode = child.proc.wait()
        self._forget(child)
        child.dead.set_result(returncode)
        how = exit_description(returncode)
        if not child.ready.done():
            child.ready.set_exception(WorkerProcessError(f"worker child process {child.pid} {how} while starting"))
        if child.result is not None and not child.result.done():
            if child.doom is not None:
                child.result.set_exception(child.doom)
            else:
                job_id = child.job.id if child.job is not None else "?"
                child.result.set_exception(died_error(job_id, child.pid, returncode, self._max_memory_mb))
        if child in self._members:
            self._members.discard(child)
            if child in self._idle:
                self._idle.remove(child)
            if child.started and not self._closing:  # one that never started is retried by _replace
                self._start_replacement()
        self._others.discard(child)

    def _forget(self, child: Child) -> None:
        """Stop watching ``child`` and close what the worker holds of it."""
        loop = self._loop
        if child.kill_timer is not None:
            child.kill_timer.cancel()
        if not child.conn.closed:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(child.conn.fileno())
            child.conn.close()
        if child.pidfd >= 0:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = -1
