"""How the worker reports a failed Redis call, and a full Redis (OOM) once rather than once per call.

Every failed call is emitted as ``error`` — except while Redis is full: the first refusal logs one line and
emits one ``RedisFullError``, then nothing until a round trip succeeds again (:meth:`RedisOutage.resumed`).
Finished jobs wait in the worker's pending list meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sbqueue.connection import full as _full
from sbqueue.engine.worker.state import WorkerState

log = logging.getLogger(__name__)


class RedisOutage:
    """Lives as long as its Worker (see the module docstring)."""

    def __init__(self, state: WorkerState, emit: Callable[..., None]) -> None:
        self._state = state
        self._emit = emit
        self.full_since: float | None = None  # when Redis was found full, until it accepts writes again

    def report(self, exc: BaseException) -> bool:
        """Emit ``error`` for a failed Redis call, a full Redis only once. True for a full Redis."""
        if not _full.is_full(exc):
            self._emit("error", exc)
            return False
        if self.full_since is None:
            self.full_since = time.monotonic()
            error = _full.error("the worker's writes", "the worker keeps finished jobs' results and retries until "
                                "Redis accepts them (reported once)")  # fmt: skip
            log.error("%s [%d finished job(s) waiting]", error, len(self._state.pending))
            self._emit("error", error)
        return True

    def resumed(self) -> bool:
        """A round trip succeeded: True (and one log line) if Redis had been full until now."""
        if self.full_since is None:
            return False
        log.warning("Redis accepts writes again after %.0f s full; processing resumes",
                    time.monotonic() - self.full_since)  # fmt: skip
        self.full_since = None
        return True
