"""Every Redis key name sbqueue uses is built here (BullMQ 6 layout, spec §1-§2)."""

from __future__ import annotations

import base64
import dataclasses
import re
from urllib.parse import quote

from sbqueue.errors import ClusterKeyError, InvalidOptionError, InvalidQueueNameError

#: The queue keys every script receives, in this order (the Lua prelude is generated from it).
QUEUE_KEYS: tuple[str, ...] = (
    "wait", "active", "prioritized", "delayed", "completed", "failed", "paused", "waiting-children",
    "meta", "events", "marker", "pc", "id", "stalled", "stalled-check", "limiter", "repeat",
    "metrics:completed", "metrics:failed", "metrics:completed:data", "metrics:failed:data",
)  # fmt: skip


def validate_queue_name(name: object) -> str:
    """Queue names are non-empty strings without ':' (BullMQ rejects ':' too)."""
    if not isinstance(name, str) or not name:
        raise InvalidQueueNameError(f"queue name must be a non-empty string, got {name!r}", option="name")
    if ":" in name:
        raise InvalidQueueNameError(f"queue name {name!r} may not contain ':'", option="name")
    if len(name) > 1024 or any(ord(c) < 32 for c in name):
        raise InvalidQueueNameError(f"queue name {name!r} is too long or has control characters", option="name")
    return name


def validate_prefix(prefix: object) -> str:
    """Key prefixes are non-empty strings without control characters."""
    if not isinstance(prefix, str) or not prefix or any(ord(c) < 32 for c in prefix):
        raise InvalidOptionError(f"prefix must be a non-empty string, got {prefix!r}", option="prefix")
    return prefix


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of ``key``, or None (then the whole key is hashed).

    Redis's rule: the text between the first ``{`` and the first ``}`` after it, if that text is not empty
    (``"{}{a}"`` has no tag: its first ``{`` is followed at once by ``}``).
    """
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


@dataclasses.dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue: ``<prefix>:<queue>:<suffix>``."""

    prefix: str
    name: str

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)
        validate_queue_name(self.name)

    @property
    def base(self) -> str:
        """``<prefix>:<queue>:`` — the job-key prefix the scripts build job keys from."""
        return f"{self.prefix}:{self.name}:"

    def key(self, suffix: str) -> str:
        return f"{self.prefix}:{self.name}:{suffix}"

    @property
    def script_keys(self) -> list[str]:
        """The KEYS list every sbqueue script receives (order of :data:`QUEUE_KEYS`)."""
        return [self.key(s) for s in QUEUE_KEYS]

    def job(self, job_id: str) -> str:
        return f"{self.base}{job_id}"

    def lock(self, job_id: str) -> str:
        return f"{self.base}{job_id}:lock"

    def logs(self, job_id: str) -> str:
        return f"{self.base}{job_id}:logs"

    def dedup(self, dedup_id: str) -> str:
        return f"{self.base}de:{dedup_id}"

    def scheduler(self, scheduler_id: str) -> str:
        return f"{self.base}repeat:{scheduler_id}"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of this queue (glob-escaped)."""
        return self.glob("*")

    def glob(self, suffix_pattern: str) -> str:
        """SCAN pattern ``<prefix>:<queue>:<suffix_pattern>`` with the queue's part glob-escaped."""
        return _glob_escape(self.base) + suffix_pattern

    @property
    def encoded_name(self) -> str:
        """base64 of the queue name, as Node BullMQ writes in client names."""
        return base64.b64encode(self.name.encode()).decode()

    def client_name(self, worker_name: str | None = None, *, events: bool = False) -> str:
        """Connection name Node BullMQ uses, so dashboards and ``getWorkers()`` see us (spec §1). Characters
        CLIENT SETNAME refuses (spaces, non-ASCII...) in the prefix or worker name are percent-encoded."""
        base = f"{_name_safe(self.prefix)}:{self.encoded_name}"
        if events:
            return f"{base}:qe"
        return f"{base}:w:{_name_safe(worker_name)}" if worker_name else base

    def check_cluster_slot(self) -> None:
        """On Redis Cluster every key of a queue must hash to one slot: demand a ``{tag}``.

        BullMQ's scripts (and sbqueue's) build job keys from the queue's key prefix, so Redis Cluster can
        run them only when all of the queue's keys carry the same hash tag (spec §1).
        """
        tag = hash_tag(self.key("wait"))
        if tag is None or hash_tag(self.job("1")) != tag:
            raise ClusterKeyError(
                f"queue {self.name!r} with prefix {self.prefix!r} cannot be used on Redis Cluster: its keys "
                f"(e.g. {self.key('wait')!r}, {self.job('1')!r}) hash to different slots, and the queue's Lua "
                f"scripts need every key of a queue in one slot. Put a hash tag in the prefix, e.g. "
                f"prefix={'{' + self.prefix + '}'!r}, or in the queue name, e.g. {'{' + self.name + '}'!r}, "
                "and use the same prefix and name in every producer and worker (Node BullMQ included)"
            )


def _name_safe(text: str) -> str:
    """``text`` with every character outside ``!``..``~`` percent-encoded (what CLIENT SETNAME accepts)."""
    return "".join(c if "!" <= c <= "~" else quote(c, safe="") for c in text)


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
