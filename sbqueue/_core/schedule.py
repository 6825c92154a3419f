"""Job scheduler timing (spec §13): when the next iteration of ``every``/cron schedulers is due.

Computed client-side, as BullMQ does (cron-parser in Node, croniter here). Cron patterns with six
fields put seconds first (``"0 30 2 * * *"`` = 02:30:00), as cron-parser reads them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from sbqueue._core.options import to_ms
from sbqueue.errors import InvalidOptionError


def validate_pattern(pattern: Any, tz: Any = None) -> str:
    """Check a cron pattern (5 or 6 fields, seconds first) and timezone name."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidOptionError(f"cron pattern must be a non-empty string, got {pattern!r}", option="pattern")
    fields = pattern.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(pattern, second_at_beginning=len(fields) == 6):
        raise InvalidOptionError(
            f"invalid cron pattern {pattern!r}: use 5 fields (min hour dom mon dow) "
            "or 6 with seconds first (sec min hour dom mon dow)",
            option="pattern",
        )
    zone(tz)
    return pattern


def zone(tz: Any) -> dt.tzinfo:
    if tz is None:
        return dt.timezone.utc
    if not isinstance(tz, str):
        raise InvalidOptionError(f"tz must be an IANA zone name like 'Europe/Paris', got {tz!r}", option="tz")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidOptionError(
            f"tz {tz!r} is not a known timezone; use an IANA name like 'UTC'", option="tz"
        ) from None


def next_cron(pattern: str, tz: str | None, after_ms: int) -> int:
    """First cron time strictly after ``after_ms`` (epoch ms) in ``tz``."""
    start = dt.datetime.fromtimestamp(after_ms / 1000, tz=zone(tz))
    it = croniter(pattern, start, second_at_beginning=len(pattern.split()) == 6)
    nxt: dt.datetime = it.get_next(dt.datetime)
    return int(nxt.timestamp() * 1000)


def first_run(*, every: int | None, pattern: str | None, tz: str | None, now: int, start_date: int | None) -> int:
    """Due time of a new scheduler's first iteration."""
    base = max(now, start_date or 0)
    if every:
        return base
    assert pattern is not None
    return next_cron(pattern, tz, base - 1)


def next_run(spec: dict[str, str], prev_ms: int, now: int) -> int | None:
    """Due time of the iteration after ``prev_ms``, from a scheduler hash; None if unusable."""
    every = spec.get("every")
    if every:
        step = int(float(every))
        if step <= 0:
            return None
        nxt = prev_ms + step
        if nxt < now:  # fell behind (no worker for a while): skip missed slots, keep the phase
            nxt += ((now - nxt) // step + 1) * step
        return nxt
    pattern = spec.get("pattern")
    if pattern:
        return next_cron(pattern, spec.get("tz") or None, max(prev_ms, now))
    return None


def scheduler_fields(
    *, every: Any, pattern: Any, tz: Any, start_date: Any, end_date: Any, limit: Any, first: int
) -> list[tuple[str, str]]:
    """The optional fields of a scheduler hash, in BullMQ's names."""
    out: list[tuple[str, str]] = []
    if every:
        out += [("every", str(every)), ("offset", str(first % int(every)))]
    if pattern:
        out += [("pattern", pattern), ("offset", "0")]
    if tz:
        out.append(("tz", tz))
    if limit is not None:
        out.append(("limit", str(limit)))
    if start_date is not None:
        out.append(("startDate", str(start_date)))
    if end_date is not None:
        out.append(("endDate", str(end_date)))
    return out


def to_epoch_ms(value: Any, option: str) -> int | None:
    """A datetime (or epoch ms) -> epoch ms."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidOptionError(f"{option} must be timezone-aware", option=option)
        return int(value.timestamp() * 1000)
    return to_ms(value, option)
