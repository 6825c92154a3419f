"""Processors for ``Worker(processes=n)`` tests: worker child processes import them as
``tests.process_processors:<fn>`` (the children get the parent's ``sys.path``, where pytest put the repository
root), so they must live at module level here."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from sbqueue import DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError

NOT_CALLABLE = 42


def info(job: Any) -> dict[str, Any]:
    """Report through the job (progress, a log line, new data) and return where it ran."""
    job.update_progress(50)
    job.log(f"hello from {os.getpid()}")
    job.update_data({**(job.data or {}), "seen": True})
    return {"pid": os.getpid(), "data": job.data, "progress": job.progress, "name": job.name,
            "attempts_made": job.attempts_made, "timestamp": job.timestamp}  # fmt: skip


async def async_info(job: Any) -> dict[str, Any]:
    """The same, from an ``async def`` processor (its job's methods are awaitable)."""
    await job.update_progress(7)
    await job.log("async hello")
    return {"pid": os.getpid(), "progress": job.progress}


def pid(job: Any) -> int:
    return os.getpid()


def deep_failure(value: int) -> None:
    raise ValueError(f"bad value {value}")


class Unpicklable(Exception):
    """An exception that cannot cross a pipe (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def steer(job: Any) -> Any:
    """Raise what ``data["kind"]`` says."""
    kind = job.data["kind"]
    if kind == "unrecoverable":
        raise UnrecoverableError("cannot ever work")
    if kind == "delayed":
        job.move_to_delayed(int(time.time() * 1000) + 60_000)
        raise DelayedError()
    if kind == "rate":
        if not job.data.get("limited"):
            job.update_data({**job.data, "limited": True})
            raise RateLimitError()
        return "ran after the rate limit"
    if kind == "children":
        if job.data.get("step") != 1:
            job.update_data({**job.data, "step": 1})
            if job.move_to_waiting_children():
                raise WaitingChildrenError()
        return job.get_children_values()
    if kind == "value":
        deep_failure(42)
    if kind == "unpicklable":
        raise Unpicklable("holds a lock")
    if kind == "bad-result":
        return threading.Lock()
    if kind == "exit":
        raise SystemExit(5)
    return "nothing to steer"


def crash(job: Any) -> str:
    """Die as ``data["how"]`` says, on the first attempt only."""
    if job.attempts_made == 0 and job.data["how"] != "none":
        job.log(f"pid {os.getpid()}")
        if job.data["how"] == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGSEGV)
    return f"survived in {os.getpid()}"


def slow_then_mark(job: Any) -> dict[str, Any]:
    """First attempt: sleep ``data["seconds"]``, then create ``data["marker"]`` (which must never happen if the
    attempt is stopped); later attempts return at once."""
    if job.attempts_made == 0:
        job.log(f"pid {os.getpid()}")
        time.sleep(float(job.data["seconds"]))
        Path(job.data["marker"]).write_text(str(os.getpid()))
    return {"pid": os.getpid(), "attempt": job.attempts_made}


def sleep_job(job: Any) -> dict[str, Any]:
    """Log the pid, report progress 1, sleep ``data["seconds"]``."""
    job.log(f"pid {os.getpid()}")
    job.update_progress(1)
    time.sleep(float((job.data or {}).get("seconds", 1)))
    return {"pid": os.getpid()}


def timed_sleep(job: Any) -> dict[str, Any]:
    """Sleep ``data["seconds"]``; return the pid and the wall-clock span of the run."""
    start = time.time()
    time.sleep(float((job.data or {}).get("seconds", 1)))
    return {"pid": os.getpid(), "start": start, "end": time.time()}


def hog(job: Any) -> int:
    """Allocate ``data["mb"]`` MB."""
    block = bytearray(int(job.data["mb"]) * 2**20)
    return len(block)


class OnlyInTheChild:
    """Stands for a class the worker cannot unpickle (see ``odd_result``)."""


def odd_result(job: Any) -> Any:
    """Return an object whose class the worker cannot import (it claims a module only the child has)."""
    OnlyInTheChild.__module__ = "module_only_in_the_child"
    import sys
    import types

    sys.modules["module_only_in_the_child"] = types.ModuleType("module_only_in_the_child")
    sys.modules["module_only_in_the_child"].OnlyInTheChild = OnlyInTheChild  # type: ignore[attr-defined]
    return OnlyInTheChild()
