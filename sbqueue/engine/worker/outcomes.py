"""How a job's run ended, turned into the :class:`~sbqueue._core.finish.Finish` that records it.

The :class:`Settler` decides completed / failed / retry / delay / requeue (attempts, backoff, the
stacktrace kept, the retention policy), updates the job as listeners will see it, counts it, and queues a
``Settlement`` (:mod:`sbqueue.engine.worker.state`) for the next round trip. Nothing here talks to Redis.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from typing import Any

from sbqueue._core import options as _opts
from sbqueue._core.finish import FAILED_CHILDREN, Finish, FinishFlag, FinishKind
from sbqueue.engine.job import Job
from sbqueue.engine.worker.state import Settlement, WorkerState
from sbqueue.errors import InvalidOptionError, UnrecoverableError

_EXHAUSTED = frozenset({FinishFlag.RETRIES_EXHAUSTED})
_LIFO = frozenset({FinishFlag.LIFO})
_RATE_LIMITED = frozenset({FinishFlag.RATE_LIMITED})


class Settler:
    """Queues one finish per ended job (see the module docstring)."""

    def __init__(
        self,
        state: WorkerState,
        emit: Callable[..., None],
        *,
        keep_completed: Any,
        keep_failed: Any,
        backoff_strategy: Callable[[int, BaseException, Job], int] | None,
    ) -> None:
        self._state = state
        self._emit = emit
        self._keep_completed = keep_completed
        self._keep_failed = keep_failed
        self._backoff_strategy = backoff_strategy

    def completed(self, job: Job, result: Any, returnvalue: str) -> None:
        """The processor returned ``result`` (``returnvalue`` is its JSON)."""
        keep = _opts.keep_policy(job.opts.get("removeOnComplete", self._keep_completed))
        # listeners see the job as it now is (Node: attemptsMade counts this attempt)
        job.attempts_made, job.returnvalue = job.attempts_made + 1, result
        # positional: a NamedTuple built with keywords costs twice as much, and this runs for every job
        finish = Finish(job.id, job.token or "0", FinishKind.COMPLETED, returnvalue, "", 0, keep)
        state = self._state
        state.pending.append((finish, job, "completed", result))  # _queue inlined: the hot path
        state.processed += 1

    def completion_refused(self, job: Job, code: int) -> None:
        """Redis refused to complete a parent whose children are not all done: it fails instead, as in Node
        (pending children: an ordinary failure; a failed fail-parent child: unrecoverable)."""
        self._state.processed -= 1
        if code == FAILED_CHILDREN:
            self.failed(job, UnrecoverableError(
                f"Cannot complete job {job.id} because it has at least one failed child. moveToFinished"
            ), final=True)  # fmt: skip
        else:
            self.failed(job, RuntimeError(f"Job {job.id} has pending dependencies. moveToFinished"), final=False)

    def requeue(self, job: Job, *, rate_limited: bool = False) -> None:
        """Back to run next, no attempt counted (a RateLimitError, or unfinished at the shutdown deadline)."""
        flags = _RATE_LIMITED if rate_limited else frozenset()
        self._queue((Finish(job.id, job.token or "0", FinishKind.REQUEUE, flags=flags), job, "", None))

    def failed(self, job: Job, exc: BaseException, *, final: bool) -> None:
        """The attempt failed with ``exc``: retried (now or after a backoff) unless ``final`` or the last one."""
        reason = str(exc) or type(exc).__name__
        attempts_made = job.attempts_made + 1
        stack = list(job.stacktrace) + ["".join(traceback.format_exception(exc)).rstrip()]
        limit = job.opts.get("stackTraceLimit")
        # as BullMQ: stackTraceLimit 0 keeps none, n keeps the last n, unset keeps them all
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            stack = stack[-limit:] if limit else []
        stack_json = _opts.dumps(stack, "stacktrace")
        delay = -1
        if not final and attempts_made < job.max_attempts:
            try:
                delay = self._backoff(job, attempts_made, exc)
            except InvalidOptionError as error:
                # as Node 6.7.6: the failure cannot be recorded; the worker reports it and leaves the job
                # active, unlocked once its lock expires, for the stalled check to recover
                self._emit("error", error)
                return
        # listeners see the job as it now is (Node: attemptsMade === opts.attempts on the last one)
        job.attempts_made, job.failed_reason, job.stacktrace = attempts_made, reason, stack
        token = job.token or "0"
        if delay < 0:
            keep = _opts.keep_policy(job.opts.get("removeOnFail", self._keep_failed))
            flags = _EXHAUSTED if attempts_made >= job.max_attempts else frozenset()
            finish = Finish(job.id, token, FinishKind.FAILED, reason, stack_json, keep=keep, flags=flags)
        elif delay == 0:
            flags = _LIFO if job.opts.get("lifo") is True else frozenset()
            finish = Finish(job.id, token, FinishKind.RETRY, reason, stack_json, flags=flags)
        else:
            due = int(time.time() * 1000) + delay
            finish = Finish(job.id, token, FinishKind.DELAY, reason, stack_json, due)
        self._queue((finish, job, "failed", exc))

    def _backoff(self, job: Job, attempts_made: int, exc: BaseException) -> int:
        backoff = job.opts.get("backoff")
        delay = _opts.backoff_delay(backoff, attempts_made, random.random())
        strategy = self._backoff_strategy
        if delay == -1 or (strategy is not None and isinstance(backoff, dict) and backoff.get("type") == "custom"):
            if strategy is None:
                kind = backoff.get("type") if isinstance(backoff, dict) else backoff
                raise InvalidOptionError(
                    f"job {job.id}: unknown backoff strategy {kind!r}; give the Worker a backoff_strategy "
                    "(as Node's settings.backoffStrategy)",
                    option="backoff",
                )
            try:
                return int(strategy(attempts_made, exc, job))
            except Exception as strategy_exc:  # a broken strategy fails the job rather than the worker
                self._emit("error", strategy_exc)
                return -1
        return delay

    def _queue(self, settlement: Settlement) -> None:
        """Queue a settlement other than a completion (see :meth:`completed`) and count final failures."""
        self._state.pending.append(settlement)
        if settlement[0].kind is FinishKind.FAILED:  # final failures only (`failed` events fire for retries too)
            self._state.failed_count += 1
