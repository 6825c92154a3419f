"""The pool's bookkeeping about one worker child process (:class:`Child`), and signalling it.

May import (the engine layer): :mod:`sbqueue.errors` and the rest of :mod:`sbqueue.engine`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from multiprocessing.connection import Connection
from typing import Any

from sbqueue.engine.job import Job
from sbqueue.errors import WorkerProcessError


class ProcessorLoadError(WorkerProcessError):
    """The processor raised while a child imported it: every child would fail the same way."""


class Child:
    """One worker child process and its pipe (the pool's bookkeeping about it)."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.conn = conn
        self.pid = proc.pid
        self.pidfd = -1
        self.ready: asyncio.Future[None] = loop.create_future()
        self.dead: asyncio.Future[int] = loop.create_future()  # the return code, once reaped
        self.job: Job | None = None
        self.result: asyncio.Future[Any] | None = None  # the running job's outcome
        #: what the running job raises when this child dies because the pool stopped it (None: a crash)
        self.doom: BaseException | None = None
        self.started = False  # it said "ready"
        self.stopping = False  # the pool is stopping it: its messages no longer count
        self.jobs_done = 0
        self.kill_timer: asyncio.TimerHandle | None = None


def signal_child(child: Child, sig: int) -> None:
    """Send ``sig`` to ``child`` unless it is gone already."""
    try:
        os.kill(child.pid, sig)
    except (ProcessLookupError, PermissionError):  # already gone (a zombie still accepts signals)
        pass
