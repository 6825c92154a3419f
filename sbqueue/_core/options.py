"""Job options: validate user input and turn it into what BullMQ stores (spec §4, §16, §19).

Everything is checked *before* any Redis write; each problem raises an
:class:`~sbqueue.errors.InvalidOptionError` (or :class:`~sbqueue.errors.DataError`) naming the option
and the allowed values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import DataError, InvalidJobIdError, InvalidOptionError, UnknownOptionError
from .keys import QUEUE_KEYS

PRIORITY_MAX = 2**21 - 1
#: Default upper bound for one job's data JSON (Redis strings may hold 512 MiB).
MAX_JOB_BYTES = 64 * 1024 * 1024
BACKOFF_TYPES = ("fixed", "exponential", "custom")

#: snake_case option -> name stored in BullMQ's ``opts`` JSON (camelCase or the compressed name).
OPTION_NAMES: dict[str, str] = {
    "job_id": "jobId",
    "priority": "priority",
    "delay": "delay",
    "lifo": "lifo",
    "attempts": "attempts",
    "backoff": "backoff",
    "timeout": "timeout",  # sbqueue extension; Node workers ignore it
    "remove_on_complete": "removeOnComplete",
    "remove_on_fail": "removeOnFail",
    "deduplication": "de",
    "repeat": "repeat",
    "stack_trace_limit": "stackTraceLimit",
    "keep_logs": "kl",
}
#: BullMQ's public camelCase names accepted in option dicts (add_bulk, default_job_options).
CAMEL_ALIASES: dict[str, str] = {
    "jobId": "job_id",
    "removeOnComplete": "remove_on_complete",
    "removeOnFail": "remove_on_fail",
    "stackTraceLimit": "stack_trace_limit",
    "keepLogs": "keep_logs",
    "kl": "keep_logs",
    "de": "deduplication",
}

_INTEGER_LIKE = re.compile(r"^-?\d+$")
#: A job's hash is ``<prefix>:<queue>:<id>``: these ids would land on the queue's own keys.
RESERVED_JOB_IDS = frozenset(QUEUE_KEYS) | {"priority", "delay"}
#: First segments of ids (with colons) that name queue keys: de:<id>, dn:<id>, metrics:…, repeat:<id>:…
RESERVED_ID_PREFIXES = ("de", "dn", "metrics", "repeat")


def _is_int(value: Any) -> bool:
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


def validate_job_id(job_id: Any) -> str:
    """Custom ids follow BullMQ's rules: not integer-looking, not '0', no bad ':' shape."""
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobIdError(
            f"job_id must be a non-empty string, got {job_id!r} (integers are reserved for auto ids)",
            option="job_id",
        )
    if _INTEGER_LIKE.match(job_id):
        raise InvalidJobIdError(
            f"job_id {job_id!r} looks like an integer; custom ids cannot be integers (BullMQ rule)",
            option="job_id",
        )
    if job_id.startswith("0:"):
        raise InvalidJobIdError(f"job_id {job_id!r} may not start with '0:'", option="job_id")
    if ":" in job_id and len(job_id.split(":")) != 3:
        raise InvalidJobIdError(
            f"job_id {job_id!r} contains ':'; ids with colons must have exactly 3 parts (a:b:c)",
            option="job_id",
        )
    if job_id in RESERVED_JOB_IDS or (":" in job_id and job_id.split(":")[0] in RESERVED_ID_PREFIXES):
        raise InvalidJobIdError(
            f"job_id {job_id!r} would collide with the queue's own keys; reserved: "
            f"{', '.join(sorted(n for n in RESERVED_JOB_IDS if ':' not in n))} and ids starting with "
            f"{', '.join(p + ':' for p in RESERVED_ID_PREFIXES)}",
            option="job_id",
        )
    if len(job_id) > 4096 or any(ord(c) < 32 for c in job_id):
        raise InvalidJobIdError(f"job_id {job_id!r} is too long or has control characters", option="job_id")
    return job_id


def validate_priority(priority: Any) -> int:
    if not _is_int(priority) or not 0 <= priority <= PRIORITY_MAX:
        raise InvalidOptionError(
            f"priority must be an integer 0..{PRIORITY_MAX} (1 = most urgent, 0 = none), got {priority!r}",
            option="priority",
        )
    return int(priority)


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
    if _is_int(value):
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
            if not _is_int(item) or item < 0:
                raise InvalidOptionError(f"{option}.{key} must be an integer >= 0, got {item!r}", option=option)
            out[key] = int(item)
        return out
    raise InvalidOptionError(
        f"{option} must be True, False, a count, or {{'age': seconds, 'count': n}}; got {value!r}", option=option
    )


def keep_policy(value: Any) -> tuple[int, int]:
    """``(keep_count, keep_age_s)`` for the finish script: -1 keeps all, 0 deletes at once."""
    if value is None or value is False:
        return -1, 0
    if value is True:
        return 0, 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(int(value), 0), 0
    if isinstance(value, Mapping):
        count = value.get("count")
        age = value.get("age")
        return (int(count) if isinstance(count, (int, float)) else -1), (int(age) if age else 0)
    return -1, 0


def validate_dedup(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str) or not value.get("id"):
        raise InvalidOptionError(
            f"deduplication must be {{'id': non-empty str, 'ttl': ms}}, got {value!r}", option="deduplication"
        )
    unknown = set(value) - {"id", "ttl"}
    if unknown:
        raise InvalidOptionError(
            f"deduplication has unsupported keys {sorted(unknown)}; allowed: id, ttl", option="deduplication"
        )
    out: dict[str, Any] = {"id": value["id"]}
    if value.get("ttl") is not None:
        out["ttl"] = to_ms(value["ttl"], "deduplication.ttl", allow_zero=False)
    return out


def validate_count(value: Any, option: str, *, minimum: int = 0, maximum: int = 2**31) -> int:
    if not _is_int(value) or not minimum <= value <= maximum:
        raise InvalidOptionError(f"{option} must be an integer {minimum}..{maximum}, got {value!r}", option=option)
    return int(value)


def dumps(value: Any, what: str = "data", max_bytes: int = MAX_JOB_BYTES) -> str:
    """Compact JSON (as ``JSON.stringify``); NaN/Infinity, unknown types and oversize are errors."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be JSON-serialisable: {exc}") from None
    except RecursionError:
        raise DataError(f"{what} is nested too deeply to serialise as JSON") from None
    if len(text) > max_bytes:
        raise DataError(f"{what} is {len(text)} bytes of JSON, over the limit of {max_bytes} bytes")
    return text


@dataclasses.dataclass(frozen=True)
class PreparedJob:
    """A validated add: everything the add script needs, nothing left to check."""

    name: str
    data: str
    opts: str
    opts_dict: dict[str, Any]
    job_id: str
    delay: int
    priority: int
    lifo: bool
    dedup_id: str
    dedup_ttl: int
    repeat: dict[str, Any] | None


def normalise_opts(opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Map an options dict (snake_case or BullMQ camelCase) to snake_case; unknown keys are errors."""
    if opts is None:
        return {}
    if not isinstance(opts, Mapping):
        raise InvalidOptionError(f"opts must be a dict, got {type(opts).__name__}", option="opts")
    out: dict[str, Any] = {}
    for key, value in opts.items():
        name = CAMEL_ALIASES.get(key, key)
        if name not in OPTION_NAMES:
            raise UnknownOptionError(f"unknown job option {key!r}; allowed: {', '.join(OPTION_NAMES)}", option=str(key))
        out[name] = value
    return out


def prepare_job(name: Any, data: Any, options: Mapping[str, Any], *, max_bytes: int = MAX_JOB_BYTES) -> PreparedJob:
    """Validate one add (``options`` in snake_case) and build the stored ``opts`` JSON."""
    if not isinstance(name, str) or len(name) > 10_000:
        raise InvalidOptionError(f"job name must be a string, got {name!r}", option="name")
    data_json = dumps({} if data is None else data, "data", max_bytes)
    stored: dict[str, Any] = {}
    job_id = options.get("job_id")
    if job_id is not None:
        stored["jobId"] = validate_job_id(job_id)
    # None means "not given"; any other value is checked (False, "" or 0.0 are not silently 0)
    priority = 0 if options.get("priority") is None else validate_priority(options["priority"])
    if priority:
        stored["priority"] = priority
    delay = 0 if options.get("delay") is None else to_ms(options["delay"], "delay")
    if delay:
        stored["delay"] = delay
    lifo = options.get("lifo", False)
    if not isinstance(lifo, bool):
        raise InvalidOptionError(f"lifo must be True or False, got {lifo!r}", option="lifo")
    if lifo:
        stored["lifo"] = True
    attempts = options.get("attempts", 1)
    stored["attempts"] = validate_count(1 if attempts is None else attempts, "attempts", minimum=1, maximum=10**6)
    backoff = validate_backoff(options.get("backoff"))
    if backoff:
        stored["backoff"] = backoff
    if options.get("timeout") is not None:
        stored["timeout"] = to_ms(options["timeout"], "timeout", allow_zero=False)
    for opt in ("remove_on_complete", "remove_on_fail"):
        keep = validate_keep(options.get(opt), opt)
        if keep is not None:
            stored[OPTION_NAMES[opt]] = keep
    dedup = validate_dedup(options.get("deduplication"))
    if dedup:
        stored["de"] = dedup
    for opt in ("stack_trace_limit", "keep_logs"):
        if options.get(opt) is not None:
            stored[OPTION_NAMES[opt]] = validate_count(options[opt], opt)
    repeat = options.get("repeat")
    if repeat is not None and not isinstance(repeat, Mapping):
        raise InvalidOptionError(f"repeat must be a dict with 'every' or 'pattern', got {repeat!r}", option="repeat")
    return PreparedJob(
        name=name,
        data=data_json,
        opts=dumps(stored, "opts"),
        opts_dict=stored,
        job_id=stored.get("jobId", ""),
        delay=delay,
        priority=priority,
        lifo=lifo,
        dedup_id=dedup["id"] if dedup else "",
        dedup_ttl=dedup.get("ttl", 0) if dedup else 0,
        repeat=dict(repeat) if repeat is not None else None,
    )


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
