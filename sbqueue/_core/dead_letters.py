"""Dead letters: what a job that failed for good leaves in its dead-letter queue, and what a replay adds back.

No I/O here. A dead letter is an ordinary BullMQ job in the dead-letter queue (DLQ): the failed job's
**name and data unchanged** (a DLQ consumer, Node's included, gets exactly what the source processor got) and
its options minus :data:`DROPPED` (what ties a job to its source queue: custom id, scheduler, parent, dedup,
delay), plus one extra options key, :data:`META` (``opts.deadLetter``), holding where the letter comes from:

``sourceQueue``, ``sourcePrefix``, ``sourceJobId``, ``failedReason``, ``stacktrace`` (list of str),
``attemptsMade``, ``timestamp`` (created), ``processedOn``, ``finishedOn`` (ms), and ``deadLetterQueue`` when
the source job named its own DLQ (kept here, not as an option, so the letter is not dead-lettered again).

A job names its DLQ with the per-job option :data:`OPTION` (``opts.deadLetterQueue``, which Node BullMQ keeps
intact and ignores); it overrides the worker's ``dead_letter_queue``. A letter's id (:func:`letter_id`) is
derived from the source queue, job id, creation time and attempt, so writing it twice is a no-op duplicate.

Which queues are DLQs: the worker adds a queue's name to the set :func:`registry_key`
(``<prefix>:sbqueue:dead-letter-queues``) in the round trip that first writes a letter there (once per worker
and DLQ), so the exporter and ``Inspector.queues()`` tell DLQs apart with one ``SMEMBERS`` whatever the number
of jobs. A queue missing from the set (letters written by an older sbqueue, or a worker whose ACL refused the
``SADD``) is still recognised while a letter is next in line (:func:`is_letter`, on the job they read anyway).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sbqueue._core.keys import validate_queue_name
from sbqueue._core.options import dumps, is_int, validate_count
from sbqueue.errors import InvalidOptionError

#: the per-job option naming the job's dead-letter queue (camelCase: Node BullMQ stores and ignores it)
OPTION = "deadLetterQueue"
#: the key of a dead letter's ``opts`` that holds its source metadata
META = "deadLetter"
#: options that do not carry over to a letter (nor back at a replay): the source job's custom id, scheduler,
#: parent and its flags, deduplication and delay; the per-job DLQ moves into the metadata
DROPPED = frozenset({"jobId", "repeat", "rjk", "repeatJobKey", "prevMillis", "parent", "fpof", "cpof", "idof",
                     "rdof", "failParentOnFailure", "continueParentOnFailure", "ignoreDependencyOnFailure",
                     "removeDependencyOnFailure", "de", "deduplication", "debounce", "delay", "timestamp", OPTION,
                     META})  # fmt: skip
#: the metadata fields, in the order the inspection frames show them
META_FIELDS = ("sourceQueue", "sourcePrefix", "sourceJobId", "failedReason", "stacktrace", "attemptsMade",
               "timestamp", "processedOn", "finishedOn")  # fmt: skip


def registry_key(prefix: str) -> str:
    """The set of the names of the dead-letter queues of prefix ``prefix``: ``<prefix>:sbqueue:dead-letter-queues``."""
    return f"{prefix}:sbqueue:dead-letter-queues"


def is_letter(opts_json: Any) -> bool:
    """Are these (JSON) job options a dead letter's (an ``opts.deadLetter`` with a source queue)?"""
    if not isinstance(opts_json, str) or f'"{META}"' not in opts_json:
        return False  # the common case, without parsing
    try:
        opts = json.loads(opts_json)
    except ValueError:
        return False
    return isinstance(opts, dict) and meta_of(opts) is not None


def validate_target(name: Any, source: str, option: str = "dead_letter_queue") -> str:
    """A dead-letter queue name: a valid queue name other than the source queue's."""
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"{option} must be a non-empty queue name, got {name!r}", option=option)
    try:
        validate_queue_name(name)
    except InvalidOptionError as exc:
        raise type(exc)(f"{option}: {exc}", option=option) from None
    if name == source:
        raise InvalidOptionError(
            f"{option}={name!r} is the queue itself: a job that failed for good would be dead-lettered into the "
            "queue it failed in; name another queue",
            option=option,
        )
    return name


def target_of(opts: Mapping[str, Any], default: str | None, source: str) -> str | None:
    """The DLQ of a job that failed for good: its own ``opts.deadLetterQueue`` if valid, else ``default``."""
    own = opts.get(OPTION)
    if own is not None:
        try:
            return validate_target(own, source, OPTION)
        except InvalidOptionError:
            return default  # a peer wrote a bad name: the worker's DLQ (the caller reports it)
    return default


def letter_id(prefix: str, queue: str, job_id: str, created: int | None, attempt: int) -> str:
    """The letter of attempt ``attempt`` of job ``job_id`` (created at ``created`` ms): the same inputs always
    give the same id, so a letter written again (a retried round trip, a job re-run after a crash) is a no-op.
    A valid BullMQ custom id (no ':', not an integer)."""
    digest = hashlib.sha1(f"{prefix}\0{queue}\0{job_id}\0{created or 0}\0{attempt}".encode()).hexdigest()
    return f"dl-{digest[:32]}"


def letter_opts(opts: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """A letter's options: the source job's minus :data:`DROPPED`, plus the metadata under :data:`META`."""
    out = {key: value for key, value in opts.items() if key not in DROPPED}
    out[META] = {**meta, **({OPTION: opts[OPTION]} if isinstance(opts.get(OPTION), str) else {})}
    return out


def metadata(*, queue: str, prefix: str, job_id: str, failed_reason: str, stacktrace: list[str], attempts_made: int,
             timestamp: int | None, processed_on: int | None, finished_on: int) -> dict[str, Any]:  # fmt: skip
    """The source metadata of one letter (see the module docstring)."""
    return {"sourceQueue": queue, "sourcePrefix": prefix, "sourceJobId": job_id, "failedReason": failed_reason,
            "stacktrace": list(stacktrace), "attemptsMade": attempts_made, "timestamp": timestamp,
            "processedOn": processed_on, "finishedOn": finished_on}  # fmt: skip


def meta_of(opts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata of a letter's options, or None when the job is not a dead letter."""
    meta = opts.get(META)
    return dict(meta) if isinstance(meta, Mapping) and isinstance(meta.get("sourceQueue"), str) else None


def replay_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options a replayed letter is added with: the letter's minus :data:`DROPPED` (the metadata too),
    with the source job's own ``deadLetterQueue`` back."""
    out = {key: value for key, value in opts.items() if key not in DROPPED}
    own = (meta_of(opts) or {}).get(OPTION)
    if isinstance(own, str):
        out[OPTION] = own
    return out


def replayed_id(letter: str, target: str) -> str:
    """The id of the job a replay across Redis Cluster slots adds for ``letter`` to queue ``target``: the same
    for every replay of that letter, so a second add is a no-op duplicate (a valid BullMQ custom id)."""
    return "rp-" + hashlib.sha1(f"{letter}\0{target}".encode()).hexdigest()[:32]


class ReplayFilter:
    """Which dead letters a replay picks (every given criterion must hold); validated on construction."""

    def __init__(
        self,
        *,
        name: str | Iterable[str] | None = None,
        source_queue: str | Iterable[str] | None = None,
        failed_reason: str | re.Pattern[str] | None = None,
        since: Any = None,
        until: Any = None,
        job_ids: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> None:
        self.names = _strings(name, "name")
        self.source_queues = _strings(source_queue, "source_queue")
        if failed_reason is not None and not isinstance(failed_reason, (str, re.Pattern)):
            raise InvalidOptionError(
                f"failed_reason must be a substring (str) or a compiled regex (re.compile), got {failed_reason!r}",
                option="failed_reason",
            )
        self.failed_reason = failed_reason
        self.since = _epoch_ms(since, "since")
        self.until = _epoch_ms(until, "until")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidOptionError(f"since ({since!r}) is after until ({until!r})", option="since")
        self.job_ids = _strings(job_ids, "job_ids") if not isinstance(job_ids, str) else None
        if isinstance(job_ids, str):
            raise InvalidOptionError("job_ids must be a list of ids, not one str", option="job_ids")
        self.limit = None if limit is None else validate_count(limit, "limit", minimum=1)

    def matches(self, name: str, meta: Mapping[str, Any]) -> bool:
        """Does a letter (its job name and metadata) pass every criterion but ``job_ids`` and ``limit``?"""
        if self.names is not None and name not in self.names:
            return False
        if self.source_queues is not None and meta.get("sourceQueue") not in self.source_queues:
            return False
        reason = str(meta.get("failedReason") or "")
        if isinstance(self.failed_reason, str) and self.failed_reason not in reason:
            return False
        if isinstance(self.failed_reason, re.Pattern) and not self.failed_reason.search(reason):
            return False
        finished = meta.get("finishedOn")
        finished = finished if is_int(finished) else None
        if self.since is not None and (finished is None or finished < self.since):
            return False
        return not (self.until is not None and (finished is None or finished > self.until))


def _strings(value: Any, option: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise InvalidOptionError(f"{option} must be a str or a list of str, got {value!r}", option=option) from None
    if not items or not all(isinstance(item, str) and item for item in items):
        raise InvalidOptionError(f"{option} must be a non-empty str or list of str, got {value!r}", option=option)
    return frozenset(items)


def _epoch_ms(value: Any, option: str) -> int | None:
    """A time bound: an aware datetime, a pandas Timestamp, or epoch ms."""
    if value is None:
        return None
    if is_int(value):
        return int(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidOptionError(f"{option} must be timezone-aware, got {value!r}", option=option)
        return int(value.timestamp() * 1000)
    raise InvalidOptionError(f"{option} must be an aware datetime or epoch ms, got {value!r}", option=option)


#: the states a dead letter may sit in (a DLQ consumer may have completed or failed it), lists then zsets;
#: a replay skips ``active`` letters (a worker holds them)
LETTER_STATES = (("wait", "list"), ("paused", "list"), ("active", "list"), ("prioritized", "zset"),
                 ("delayed", "zset"), ("failed", "zset"), ("completed", "zset"))  # fmt: skip


def letter_row(letter: str, queue: str, state: str, name: Any, opts_json: Any) -> dict[str, Any] | None:
    """One letter as a row of the ``dead_letters`` frame (times as epoch ms; ``opts`` = the letter's parsed
    options), or None when the job is not a dead letter (no ``opts.deadLetter``, or opts that are not JSON)."""
    try:
        opts = json.loads(opts_json) if isinstance(opts_json, str) else None
    except ValueError:
        return None
    meta = meta_of(opts) if isinstance(opts, dict) else None
    if meta is None or not isinstance(opts, dict):
        return None

    def ms(key: str) -> int | None:
        value = meta.get(key)
        return value if isinstance(value, int) and is_int(value) else None

    stack = meta.get("stacktrace")
    return {"dead_letter_id": letter, "queue": queue, "state": "waiting" if state == "wait" else state,
            "name": name if isinstance(name, str) else None, "source_queue": meta.get("sourceQueue"),
            "source_prefix": _text(meta.get("sourcePrefix")), "source_job_id": _text(meta.get("sourceJobId")),
            "failed_reason": _text(meta.get("failedReason")), "attempts_made": ms("attemptsMade"),
            "created": ms("timestamp"), "processed": ms("processedOn"), "dead_lettered": ms("finishedOn"),
            "stacktrace": list(stack) if isinstance(stack, list) else [], "opts": opts}  # fmt: skip


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def letter_argv(
    *, prefix: str, queue: str, job_id: str, name: str, data: Any, opts: Mapping[str, Any], failed_reason: str,
    stacktrace: list[str], attempts_made: int, timestamp: int | None, processed_on: int | None, now: int,
) -> tuple[str, list[Any]]:
    """The letter of a job of ``queue`` that failed for good: its id and the ARGV of the ``add_job`` script that
    adds it to the dead-letter queue (name and data unchanged; options per :func:`letter_opts`)."""
    meta = metadata(queue=queue, prefix=prefix, job_id=job_id, failed_reason=failed_reason, stacktrace=stacktrace,
                    attempts_made=attempts_made, timestamp=timestamp, processed_on=processed_on,
                    finished_on=now)  # fmt: skip
    letter_opts_ = letter_opts(opts, meta)
    letter = letter_id(prefix, queue, job_id, timestamp, attempts_made)
    stored = letter_opts_.get("priority")
    priority = stored if isinstance(stored, int) and is_int(stored) and 0 < stored < 2**21 else 0
    lifo = "1" if letter_opts_.get("lifo") is True else "0"
    body = dumps(data if data is not None else {}, "data")
    return letter, [letter, name, body, dumps(letter_opts_, "opts"), now, 0, priority, lifo, "", 0, "", ""]

