"""The finish batch: what a worker tells ``finish_and_fetch`` about each job it finished, as typed records.

No I/O here. A :class:`Finish` is one finished job (completed, failed, retried, delayed or put back), with
its outcome as a :class:`FinishKind` and its modifiers as :class:`FinishFlag` members; a
:class:`FetchRequest` is the call's fixed arguments. :func:`finish_and_fetch_argv` is the one place that
turns them into the script's ARGV (order of :data:`sbqueue._core.scripts.SPECS` and ``FINISH_FIELDS``,
checked against the Lua header by tests/test_scripts.py); :class:`FetchReply` reads its answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

from sbqueue._core.options import KEEP_ALL

#: finish codes the caller acts on (the others map to exceptions through ``sbqueue.errors.SCRIPT_ERRORS``)
FINISHED = 1
PENDING_CHILDREN = -4  # completing a parent whose children are not all done: nothing changed
FAILED_CHILDREN = -9  # completing a parent with a failed fail-parent child: nothing changed


class FinishKind(str, enum.Enum):
    """Where a finished job goes."""

    COMPLETED = "completed"
    FAILED = "failed"  # for good: to the failed set
    RETRY = "retry"  # back to wait now, attempt counted
    DELAY = "delay"  # to delayed until ``due`` (a retry with backoff, or a processor's own move)
    REQUEUE = "requeue"  # back to run next, attempt not counted (rate limit, shutdown)


class FinishFlag(str, enum.Enum):
    """Modifiers of a finish (the script looks each one up by its letter)."""

    RETRIES_EXHAUSTED = "e"  # the last attempt failed: emit retries-exhausted
    SKIP_ATTEMPT = "s"  # a delay that is not a failed attempt: count nothing, record no reason
    LIFO = "l"  # a lifo job: a retry goes back to the tail of wait
    RATE_LIMITED = "r"  # requeued by a RateLimitError: this worker waits out the limiter key's ttl


NO_FLAGS: frozenset[FinishFlag] = frozenset()


class Finish(NamedTuple):
    """One finished job, as ``finish_and_fetch`` settles it (a NamedTuple: one is built per job)."""

    job_id: str
    token: str  # the lock token the job was fetched with; "0" = settle without the lock check
    kind: FinishKind
    value: str = ""  # returnvalue JSON (completed) or failedReason (the others)
    stacktrace: str = ""  # JSON array, or "" to leave the stored one
    due: int = 0  # ms timestamp (delay only)
    keep: tuple[int, int, int] = KEEP_ALL  # (count, age_s, limit) of ``sbqueue._core.options.keep_policy``
    flags: frozenset[FinishFlag] = NO_FLAGS

    def argv(self) -> list[Any]:
        """This job's group of ``FINISH_FIELDS`` values (plain str and int; built once per job, so lean)."""
        flags = "".join(sorted(flag._value_ for flag in self.flags)) if self.flags else ""
        keep_count, keep_age_s, keep_limit = self.keep
        # _value_, not .value: the same string without the enum property's lookup (this runs per job)
        return [self.job_id, self.token, self.kind._value_, self.value, self.stacktrace, self.due,
                keep_count, keep_age_s, keep_limit, flags]  # fmt: skip


class FetchRequest(NamedTuple):
    """The fixed arguments of one ``finish_and_fetch`` call (ARGV 1-8; ``n_finish`` follows)."""

    now: int  # ms
    worker_id: str  # token prefix ("=<token>": fetched jobs are locked with <token> itself, as a manual fetch)
    worker_name: str  # written to fetched jobs as ``pb`` ("" = none)
    lock_ms: int  # lock duration of fetched jobs
    fetch: int  # jobs to fetch (0 = only settle)
    limit_max: int  # worker rate limit: jobs per window (0 = none)
    limit_ms: int  # rate-limit window (0 = none)
    metrics_points: int  # per-minute metrics points to keep (0 = no metrics)


def finish_and_fetch_argv(request: FetchRequest, finishes: Sequence[Finish]) -> list[Any]:
    """The whole ARGV of one ``finish_and_fetch`` call: the request, ``n_finish``, then each job's group."""
    argv = [*request, len(finishes)]
    for finish in finishes:
        argv += finish.argv()
    return argv


class FetchReply(NamedTuple):
    """What ``finish_and_fetch`` answers: a code per finish, the fetched jobs, the limiter and the next delay."""

    codes: list[int]  # one per Finish, in order (FINISHED or a negative code)
    jobs: list[Any]  # [id, token, flat HGETALL] per fetched job, as Redis sent them
    rate_limit_ttl: int  # ms the rate limit still holds (0 = not limited)
    next_delayed_ms: int  # due time of the next delayed job (0 = none)

    @classmethod
    def parse(cls, raw: Any) -> FetchReply:
        codes, jobs, rate_ttl, next_delayed = raw
        return cls([int(code) for code in codes], jobs, int(rate_ttl), int(next_delayed))
