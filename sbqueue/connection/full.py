"""A full Redis, in one place.

With ``maxmemory`` reached and the ``noeviction`` policy (the only safe one for queues), Redis refuses
writes with ``OOM command not allowed when used memory > 'maxmemory'`` — as a plain error, or inside a
script's error. Reads, deletes and scripts that delete before they add anything still run.

* producers: :func:`refused` turns the refusal into :class:`~sbqueue.errors.RedisFullError` (nothing was
  written), naming the ``redis-memory`` runbook;
* workers: :func:`is_full` lets the worker report the condition once and keep finished jobs' results until
  Redis accepts writes again;
* monitoring: :func:`state` reads ``INFO`` (memory + errorstats) for ``Inspector.alerts()``, the exporter and
  the runbook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import redis

from sbqueue.errors import RedisFullError

#: what Redis says when it refuses a write at maxmemory ("-OOM command not allowed when used memory >
#: 'maxmemory'", also inside a script's error; redis-py's OutOfMemoryError drops the "OOM " code)
OOM_MARK = "command not allowed when used memory"
RUNBOOK = "redis-memory"
ADVICE = (f"free memory (clean old completed/failed jobs, set removeOnComplete/removeOnFail) or raise maxmemory: "
          f"see the {RUNBOOK} runbook (sbqueue report {RUNBOOK})")  # fmt: skip


def is_full(exc: BaseException) -> bool:
    """True when ``exc`` is Redis refusing a write because it reached ``maxmemory``."""
    return isinstance(exc, RedisFullError) or (isinstance(exc, redis.ResponseError) and OOM_MARK in str(exc))


def error(what: str = "the write", detail: str = "nothing was written") -> RedisFullError:
    """The :class:`RedisFullError` a producer (or a worker's ``error`` event) gets."""
    return RedisFullError(f"Redis is full: it reached maxmemory and its noeviction policy refused {what}; "
                          f"{detail}. {ADVICE[0].upper()}{ADVICE[1:]}")  # fmt: skip


@contextlib.contextmanager
def refused(what: str = "the write", detail: str = "nothing was written") -> Iterator[None]:
    """Turn Redis's OOM refusal inside the block into :class:`RedisFullError` (other errors pass)."""
    try:
        yield
    except redis.ResponseError as exc:
        if OOM_MARK in str(exc):
            raise error(what, detail) from None
        raise


def state(info: Mapping[str, Any]) -> tuple[bool, str]:
    """``(full, evidence)`` from an ``INFO`` reply with the memory (and, if present, errorstats) sections:
    full when the policy is ``noeviction`` and ``used_memory`` reached ``maxmemory``."""

    def num(key: str) -> float:
        try:
            return float(info.get(key) or 0)
        except (TypeError, ValueError):
            return 0.0

    used, limit, policy = num("used_memory"), num("maxmemory"), str(info.get("maxmemory_policy", "?"))
    oom = info.get("errorstat_OOM")
    refusals = int(oom.get("count", 0)) if isinstance(oom, Mapping) else 0
    full = policy == "noeviction" and limit > 0 and used >= limit
    evidence = (f"used_memory {used:.0f} B of maxmemory {limit:.0f} B, policy {policy}; "
                f"{refusals} writes refused (OOM) since the server started")  # fmt: skip
    return full, evidence + (f"; {ADVICE}" if full else "")
