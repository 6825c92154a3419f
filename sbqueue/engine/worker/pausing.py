"""Whether a worker fetches jobs, and who waits for its jobs in flight to end (``Worker.pause``).

A :class:`PauseGate` lives as long as its Worker. ``paused`` is read by the fetch loop (no fetching, no
``drained``) and the stalled check (skipped while paused, as Node's worker does). A caller of
``pause(wait_for_active=True)`` registers a waiter; the fetch loop, on the worker's loop, calls
:meth:`PauseGate.check` on each turn while paused and notifies every waiter whose jobs have all ended — their
outcome recorded in Redis — except the caller's own job (a processor that pauses its worker cannot wait for
itself). Notifications are plain callables: each waiter brings its own way back to its thread or loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection


class PauseGate:
    """The pause switch and its waiters (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.paused = False
        self._waiters: list[tuple[frozenset[str], Callable[[], None]]] = []

    def set(self, paused: bool) -> bool:
        """Pause or resume; True if that changed the state."""
        with self._lock:
            changed, self.paused = self.paused != paused, paused
            return changed

    def add_waiter(self, own: frozenset[str], notify: Callable[[], None]) -> None:
        """Call ``notify`` (on the worker's loop) once no job but ``own`` is in flight and nothing is unsent."""
        with self._lock:
            self._waiters.append((own, notify))

    def discard_waiter(self, notify: Callable[[], None]) -> None:
        with self._lock:
            self._waiters = [w for w in self._waiters if w[1] is not notify]

    def check(self, inflight: Collection[str], busy: bool) -> None:
        """From the fetch loop: ``inflight`` job ids; ``busy`` if finishes are still unsent or in flight."""
        if busy or not self._waiters:
            return
        with self._lock:
            ready = [w for w in self._waiters if w[0].issuperset(inflight)]
            self._waiters = [w for w in self._waiters if w not in ready]
        for _own, notify in ready:
            notify()

    def release_all(self) -> None:
        """The worker stopped: nothing is in flight any more, every waiter is done."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for _own, notify in waiters:
            notify()
