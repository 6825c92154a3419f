"""Option values every API shares: durations, counts, JSON, retention and retry backoff (spec §4, §19).

The checks queues, workers and event producers apply to their arguments before any Redis write (each
problem raises an :class:`~sbqueue.errors.InvalidOptionError` or :class:`~sbqueue.errors.DataError` naming
the option and the allowed values), the compact JSON every stored value is written in, and what the worker
reads back from a job's options when it finishes: the retention policy (``removeOnComplete``/``removeOnFail``)
and the delay before a retry. Turning one add's options into what BullMQ stores is ``sbqueue._core.prepare``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

from sbqueue.errors import DataError, InvalidOptionError

#: Default upper bound for one job's data JSON (Redis strings may hold 512 MiB).
MAX_JOB_BYTES = 64 * 1024 * 1024
BACKOFF_TYPES = ("fixed", "exponential", "custom")


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an ``int`` to Python, never a count to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def to_ms(value: Any, option: str, *, allow_zero: bool = True) -> int:
    """A duration in ms from an int/float (ms) or a ``timedelta``; rejects negatives, NaN, bools."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds() * 1000
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionError(
            f"{option} must be a number of milliseconds or a timedelta, got {value!r}", option=option
        )
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        low = ">= 0" if allow_zero else "> 0"
        raise InvalidOptionError(f"{option} must be a finite number of ms {low}, got {value!r}", option=option)
    if value > 2**53:
        raise InvalidOptionError(f"{option}={value!r} ms is too large", option=option)
    return int(round(value))


def validate_backoff(backoff: Any) -> dict[str, Any] | None:
    """``int`` ms (fixed) or ``{"type": fixed|exponential|custom, "delay": ms, "jitter": 0..1}``."""
    if backoff is None:
        return None
    if not isinstance(backoff, Mapping):
        return {"type": "fixed", "delay": to_ms(backoff, "backoff")}
    unknown = set(backoff) - {"type", "delay", "jitter"}
    if unknown:
        raise InvalidOptionError(
            f"backoff has unknown keys {sorted(unknown)}; allowed: type, delay, jitter", option="backoff"
        )
    kind = backoff.get("type", "fixed")
    if kind not in BACKOFF_TYPES:
        raise InvalidOptionError(
            f"backoff type {kind!r} is unknown; allowed: {', '.join(BACKOFF_TYPES)}", option="backoff"
        )
    out: dict[str, Any] = {"type": kind, "delay": to_ms(backoff.get("delay", 0), "backoff.delay")}
    if "jitter" in backoff:
        jitter = backoff["jitter"]
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise InvalidOptionError(f"backoff.jitter must be between 0 and 1, got {jitter!r}", option="backoff")
        out["jitter"] = jitter
    return out


def validate_keep(value: Any, option: str) -> bool | int | dict[str, int] | None:
    """removeOnComplete/removeOnFail: True | False | count | {"age": seconds, "count": n, "limit": n}."""
    if value is None or isinstance(value, bool):
        return value
    if is_int(value):
        if value < 0:
            raise InvalidOptionError(f"{option} count must be >= 0, got {value}", option=option)
        return int(value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"age", "count", "limit"}
        if unknown or not value:
            raise InvalidOptionError(
                f"{option} accepts keys age (seconds), count, limit; got {dict(value)!r}", option=option
            )
        out = {}
        for key, item in value.items():
            if not is_int(item) or item < 0:
                raise InvalidOptionError(f"{option}.{key} must be an integer >= 0, got {item!r}", option=option)
            out[key] = int(item)
        return out
    raise InvalidOptionError(
        f"{option} must be True, False, a count, or {{'age': seconds, 'count': n}}; got {value!r}", option=option
    )


#: what the finish script keeps when nothing is removed: (keep_count, keep_age_s, keep_limit)
KEEP_ALL = (-1, 0, 1000)


def keep_policy(value: Any) -> tuple[int, int, int]:
    """``(keep_count, keep_age_s, keep_limit)`` for the finish script: -1 keeps all, 0 deletes at once;
    ``keep_limit`` caps how many jobs the age rule removes per finish (BullMQ's ``limit``, default 1000)."""
    if value is None or value is False:
        return KEEP_ALL
    if value is True:
        return 0, 0, 1000
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(int(value), 0), 0, 1000
    if isinstance(value, Mapping):
        count = value.get("count")
        age = value.get("age")
        limit = value.get("limit")
        return (
            int(count) if isinstance(count, (int, float)) else -1,
            int(age) if age else 0,
            int(limit) if isinstance(limit, (int, float)) and limit > 0 else 1000,
        )
    return KEEP_ALL


def validate_count(value: Any, option: str, *, minimum: int = 0, maximum: int = 2**31) -> int:
    if not is_int(value) or not minimum <= value <= maximum:
        raise InvalidOptionError(f"{option} must be an integer {minimum}..{maximum}, got {value!r}", option=option)
    return int(value)


#: one encoder for every dump: json.dumps(..., separators=...) would build a new one per call
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any, what: str = "data", max_bytes: int = MAX_JOB_BYTES) -> str:
    """Compact JSON (as ``JSON.stringify``); NaN/Infinity, unknown types and oversize are errors."""
    try:
        text = _ENCODE(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be JSON-serialisable: {exc}") from None
    except RecursionError:
        raise DataError(f"{what} is nested too deeply to serialise as JSON") from None
    if len(text) > max_bytes:
        raise DataError(f"{what} is {len(text)} bytes of JSON, over the limit of {max_bytes} bytes")
    return text


def backoff_delay(backoff: Any, attempts_made: int, rand: float) -> int:
    """Delay before the next attempt (spec §19); ``rand`` in [0, 1) drives the jitter.

    ``attempts_made`` counts the attempt that just failed (1 after the first failure).
    Returns -1 for a ``custom`` backoff (the worker's strategy decides).
    """
    if backoff is None:
        return 0
    if isinstance(backoff, (int, float)) and not isinstance(backoff, bool):
        return max(int(backoff), 0)
    if not isinstance(backoff, Mapping):
        return 0
    kind = backoff.get("type", "fixed")
    base = float(backoff.get("delay") or 0)
    if kind == "exponential":
        base = round(2 ** max(attempts_made - 1, 0) * base)
    elif kind != "fixed":
        return -1
    jitter = backoff.get("jitter") or 0
    if jitter:
        low = base * (1 - float(jitter))
        base = low + (base - low) * rand
    return max(int(round(base)), 0)


def validate_limiter(limiter: Mapping[str, Any] | None) -> tuple[int, int]:
    """A worker's ``limiter`` (``{"max": n, "duration": ms}``) as ``(max, duration_ms)``; ``(0, 0)``: none."""
    if limiter is None:
        return 0, 0
    if not isinstance(limiter, Mapping) or set(limiter) - {"max", "duration"} or "max" not in limiter:
        raise InvalidOptionError(f"limiter must be {{'max': n, 'duration': ms}}, got {limiter!r}", option="limiter")
    return (
        validate_count(limiter["max"], "limiter.max", minimum=1),
        to_ms(limiter.get("duration", 1000), "limiter.duration", allow_zero=False),
    )
