"""What the worker and its child processes say over their pipe, and how an exception crosses it.

Each child has one duplex pipe (a :class:`multiprocessing.connection.Connection`: pickled messages). Messages
are tuples whose first item is a tag; a child runs one job at a time and every request it makes waits for its
reply, so the conversation never interleaves::

    parent -> child   ("run", job_fields)             run this job (fields of Job but its queue)
                      ("reply", ok, value, changes)   answer to a "call" (changes: job fields it changed)
                      ("stop",)                       exit (recycling, shutdown)
    child -> parent   ("ready", pid) / ("failed", t)  started, or could not import the processor (traceback t)
                      ("done", result)                the processor returned
                      ("error", error)                the processor raised (see :func:`encode_error`)
                      ("call", name, args, kwargs)    job.queue.<name>(...) on the worker's queue handle

An exception is sent pickled *and* described (type, message, traceback text): when it cannot be pickled in the
child or unpickled in the parent, the parent still raises one with the child's message, and the child's
traceback always travels as the ``__cause__`` (as :mod:`concurrent.futures` does), so the stacktrace the
worker records shows where the child failed.
"""

from __future__ import annotations

import inspect
import pickle
import signal
import traceback
from typing import Any

from sbqueue.engine.job import Job

#: an error as sent: (pickled exception or None, "module.Type", str(exc), the formatted traceback)
ErrorPayload = tuple[bytes | None, str, str, str]

#: the job fields a queue call may change in the parent (read back into the child's job after each call)
SYNCED_FIELDS = ("data", "progress", "token", "priority", "delay")


class JobRef:
    """Stands for "the job being run" in a call's arguments: the parent substitutes its own Job object."""

    def __reduce__(self) -> str:
        return "THIS_JOB"  # pickled by reference: the one instance on each side


THIS_JOB = JobRef()


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker child process (the ``__cause__`` of what the worker
    raises for it)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class RemoteProcessorError(Exception):
    """A processor in a child process raised an exception that could not be rebuilt in the worker (it could
    not be pickled or unpickled). ``str()`` is the child's message; ``type_name`` its class."""

    def __init__(self, message: str, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


class ChildRaised(Exception):
    """Carries an error payload from the pool to the runner (which turns it into the job's exception)."""

    def __init__(self, payload: ErrorPayload) -> None:
        super().__init__("the processor raised in a worker child process")
        self.payload = payload


class WorkerChildDiedError(RuntimeError):
    """The worker child process running a job died (crash, signal, ``os._exit``); the job fails or retries."""


def encode_error(exc: BaseException) -> ErrorPayload:
    """The exception as it can cross the pipe (in the child)."""
    text = "".join(traceback.format_exception(exc))
    blob: bytes | None = None
    if isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt...: described only, never re-raised as such
        try:
            blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an attribute that cannot be pickled (a lock, a socket...)
            blob = None
    kind = type(exc)
    return blob, f"{kind.__module__}.{kind.__qualname__}", str(exc), text


def decode_error(payload: ErrorPayload) -> Exception:
    """The exception to raise in the worker for ``payload`` (in the parent)."""
    blob, type_name, message, text = payload
    exc: Any = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:  # a class the parent lacks, an __init__ that needs other arguments...
            exc = None
    if not isinstance(exc, Exception):
        name = type_name.rpartition(".")[2]
        exc = RemoteProcessorError(message or name, type_name)
    exc.__cause__ = RemoteTraceback(text)
    exc.__suppress_context__ = True
    return exc


def died_error(job_id: str, pid: int, returncode: int, max_memory_mb: int | None) -> WorkerChildDiedError:
    """What a job raises when its child died on its own: "job 7: worker child process 1234 died: ..."."""
    hint = ""
    if returncode == -signal.SIGKILL:
        hint = " (the kernel's out-of-memory killer sends SIGKILL)"
    elif max_memory_mb and returncode == -signal.SIGABRT:
        hint = f" (max_memory_per_child is {max_memory_mb} MB: it may have run out of memory)"
    return WorkerChildDiedError(f"job {job_id}: worker child process {pid} died: {exit_description(returncode)}{hint}")


def exit_description(returncode: int | None) -> str:
    """How a child ended, in words: "killed by signal SIGSEGV", "exited with code 3"."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by signal {name}"
    return f"exited with code {returncode}"


async def serve_call(job: Job | None, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The reply to a child's ``("call", name, args, kwargs)``: ``job.queue.<name>(*args)`` on the worker's queue
    handle (JobQueue: progress events, moved-to-delayed bookkeeping), with the job fields the call changed."""
    changes: dict[str, Any] = {}
    try:
        if job is None:
            raise RuntimeError(f"job.queue.{name}(): no job is running in this worker child process")
        before = [getattr(job, field) for field in SYNCED_FIELDS]
        value = getattr(job.queue, name)(*(job if arg is THIS_JOB else arg for arg in args), **kwargs)
        if inspect.isawaitable(value):
            value = await value
        after = [getattr(job, field) for field in SYNCED_FIELDS]
        changes = {f: new for f, old, new in zip(SYNCED_FIELDS, before, after, strict=True) if new is not old}
        return ("reply", True, value, changes)
    except Exception as exc:  # the child raises it in the processor
        return ("reply", False, encode_error(exc), changes)
