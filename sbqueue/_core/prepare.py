"""Prepare one add: job options in, what BullMQ stores out (spec §4, §16).

:func:`prepare_job` checks every option of one add (snake_case, or BullMQ's camelCase and short names through
:func:`normalise_opts`) *before* any Redis write and returns a :class:`PreparedJob`: the stored ``opts`` JSON
and the add script's arguments. The rules for what only an add takes live here too: custom job ids, priority,
deduplication and ``parent``. Each problem raises an :class:`~sbqueue.errors.InvalidOptionError` (or a
subclass) naming the option and the allowed values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from sbqueue._core.dead_letters import validate_target
from sbqueue._core.keys import QUEUE_KEYS
from sbqueue._core.options import (
    MAX_JOB_BYTES,
    dumps,
    is_int,
    to_ms,
    validate_backoff,
    validate_count,
    validate_keep,
)
from sbqueue._core.trace_context import validate_telemetry
from sbqueue.errors import InvalidJobIdError, InvalidOptionError, UnknownOptionError

PRIORITY_MAX = 2**21 - 1

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
    "parent": "parent",
    "fail_parent_on_failure": "fpof",
    "continue_parent_on_failure": "cpof",
    "ignore_dependency_on_failure": "idof",
    "remove_dependency_on_failure": "rdof",
    "telemetry": "tm",  # {"metadata", "omit_context"}: stored as tm and omc (sbqueue._core.trace_context)
    "dead_letter_queue": "deadLetterQueue",  # sbqueue extension (sbqueue._core.dead_letters); Node ignores it
}
#: The four child options (what a child's final failure does to its parent), in BullMQ's order of precedence.
PARENT_FLAGS = ("fail_parent_on_failure", "continue_parent_on_failure", "ignore_dependency_on_failure",
                "remove_dependency_on_failure")  # fmt: skip
#: BullMQ's public camelCase names accepted in option dicts (add_bulk, default_job_options).
CAMEL_ALIASES: dict[str, str] = {
    "jobId": "job_id",
    "removeOnComplete": "remove_on_complete",
    "removeOnFail": "remove_on_fail",
    "stackTraceLimit": "stack_trace_limit",
    "keepLogs": "keep_logs",
    "kl": "keep_logs",
    "de": "deduplication",
    "failParentOnFailure": "fail_parent_on_failure",
    "continueParentOnFailure": "continue_parent_on_failure",
    "ignoreDependencyOnFailure": "ignore_dependency_on_failure",
    "removeDependencyOnFailure": "remove_dependency_on_failure",
    "fpof": "fail_parent_on_failure",
    "cpof": "continue_parent_on_failure",
    "idof": "ignore_dependency_on_failure",
    "rdof": "remove_dependency_on_failure",
    "deadLetterQueue": "dead_letter_queue",
}

_INTEGER_LIKE = re.compile(r"^-?\d+$")
#: A job's hash is ``<prefix>:<queue>:<id>``: these ids would land on the queue's own keys.
RESERVED_JOB_IDS = frozenset(QUEUE_KEYS) | {"priority", "delay"}
#: First segments of ids (with colons) that name queue keys: de:<id>, dn:<id>, metrics:…, repeat:<id>:…
RESERVED_ID_PREFIXES = ("de", "dn", "metrics", "repeat")
_CONTROL = re.compile(r"[\x00-\x1f]")  # control characters: refused in a parent reference


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
    if not is_int(priority) or not 0 <= priority <= PRIORITY_MAX:
        raise InvalidOptionError(
            f"priority must be an integer 0..{PRIORITY_MAX} (1 = most urgent, 0 = none), got {priority!r}",
            option="priority",
        )
    return int(priority)


#: deduplication flags: snake_case (or BullMQ's camelCase) -> (stored name, mode letter for the add script)
DEDUP_FLAGS: dict[str, tuple[str, str]] = {
    "extend": ("extend", "e"),
    "replace": ("replace", "r"),
    "keep_last_if_active": ("keepLastIfActive", "k"),
    "keepLastIfActive": ("keepLastIfActive", "k"),
    "reschedule": ("reschedule", "s"),
}


def validate_dedup(value: Any) -> dict[str, Any] | None:
    """``{"id": str, "ttl": ms, "extend"|"replace"|"keep_last_if_active"|"reschedule": bool}`` (BullMQ 6.7.6):
    stored in BullMQ's names (``keepLastIfActive``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str) or not value.get("id"):
        raise InvalidOptionError(
            f"deduplication must be {{'id': non-empty str, 'ttl': ms}}, got {value!r}", option="deduplication"
        )
    unknown = set(value) - {"id", "ttl", *DEDUP_FLAGS}
    if unknown:
        raise InvalidOptionError(
            f"deduplication has unsupported keys {sorted(unknown)}; allowed: id, ttl, extend, replace, "
            "keep_last_if_active, reschedule",
            option="deduplication",
        )
    out: dict[str, Any] = {"id": value["id"]}
    if value.get("ttl") is not None:
        out["ttl"] = to_ms(value["ttl"], "deduplication.ttl", allow_zero=False)
    for key, (stored, _letter) in DEDUP_FLAGS.items():
        if key not in value:
            continue
        if not isinstance(value[key], bool):
            raise InvalidOptionError(f"deduplication.{key} must be True or False, got {value[key]!r}",
                                     option="deduplication")  # fmt: skip
        if value[key]:
            out[stored] = True
    if out.get("extend") and not out.get("ttl"):
        raise InvalidOptionError("deduplication.extend needs a ttl (the window it extends)", option="deduplication")
    return out


def dedup_mode(dedup: Mapping[str, Any] | None) -> str:
    """The mode letters the add script reads from a validated ``de`` option."""
    if not dedup:
        return ""
    return "".join(letter for stored, letter in dict(DEDUP_FLAGS.values()).items() if dedup.get(stored))


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
    #: ``{"id", "queue"}`` of the parent (``queue`` = ``"<prefix>:<name>"``), or None
    parent: dict[str, str] | None = None
    dedup_mode: str = ""


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


def _validate_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > 10_000:
        raise InvalidOptionError(f"job name must be a string, got {name!r}", option="name")
    return name


def with_payload(template: PreparedJob, name: Any, data: Any, *, max_bytes: int = MAX_JOB_BYTES) -> PreparedJob:
    """``template`` (a prepared job without a custom id) for another name and data: a bulk add whose entries
    share their options validates and encodes them once."""
    return dataclasses.replace(template, name=_validate_name(name), data=dumps({} if data is None else data, "data",
                                                                               max_bytes))  # fmt: skip


def prepare_job(name: Any, data: Any, options: Mapping[str, Any], *, max_bytes: int = MAX_JOB_BYTES) -> PreparedJob:
    """Validate one add (``options`` in snake_case) and build the stored ``opts`` JSON."""
    _validate_name(name)
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
    parent = validate_parent(options.get("parent"))
    if parent is not None:
        if dedup:  # BullMQ 6.7.6 refuses it too (a deduplicated child would leave its parent's count wrong)
            raise InvalidOptionError("deduplication and parent cannot be used together (BullMQ refuses it)",
                                     option="deduplication")  # fmt: skip
        stored["parent"] = parent
    for opt in PARENT_FLAGS:
        flag = options.get(opt)
        if flag is not None:
            if not isinstance(flag, bool):
                raise InvalidOptionError(f"{opt} must be True or False, got {flag!r}", option=opt)
            stored[OPTION_NAMES[opt]] = flag
    stored.update(validate_telemetry(options.get("telemetry")))
    if options.get("dead_letter_queue") is not None:  # the queue's own name is refused by the queue (adding.py)
        stored["deadLetterQueue"] = validate_target(options["dead_letter_queue"], "", "dead_letter_queue")
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
        parent=parent,
        dedup_mode=dedup_mode(dedup),
    )


def validate_parent(parent: Any) -> dict[str, str] | None:
    """``parent={"id": job id, "queue": "<prefix>:<queue name>"}`` (BullMQ's ``opts.parent``)."""
    if parent is None:
        return None
    if isinstance(parent, Mapping) and set(parent) == {"id", "queue"}:
        pid, queue = parent["id"], parent["queue"]
        if isinstance(pid, str) and pid and isinstance(queue, str) and ":" in queue:
            qprefix, _, qname = queue.rpartition(":")
            if qprefix and qname and not _CONTROL.search(queue) and not _CONTROL.search(pid):
                return {"id": pid, "queue": queue}
    raise InvalidOptionError(
        f"parent must be {{'id': job id, 'queue': '<prefix>:<queue name>'}}, got {parent!r}", option="parent"
    )
