"""Threads for sync processors: a small pool that never lets an abandoned job hold a slot.

Daemon threads, so an abandoned job (timeout, shutdown deadline) never keeps the process alive; a new thread
starts whenever none is idle, so an abandoned thread never holds a slot. Results are handed back to the
worker's event loop as asyncio futures.
"""

from __future__ import annotations

import asyncio
import queue as _queue
import threading
from collections.abc import Callable
from typing import Any


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled (timeout or shutdown): nobody waits for this result any more
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class JobThreads:
    """The pool (see the module docstring)."""

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
