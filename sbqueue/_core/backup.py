"""Queue backups, the pure part: the file format's records, which keys a backup holds, renaming on restore.

No I/O here: :mod:`sbqueue.engine.backupfile` reads and writes the file, ``engine/_async/backup.py`` talks
to Redis.
The format is specified in ``docs/backup-format.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sbqueue._core.keys import QUEUE_KEYS
from sbqueue.errors import BackupFormatError

FORMAT = "sbqueue-backup"
#: the format version this sbqueue writes; files with a higher version are refused
VERSION = 1

#: state containers: rebuilt from the job records on restore, never copied as keys
CONTAINERS = ("wait", "paused", "active", "prioritized", "delayed", "completed", "failed", "waiting-children")
ZSET_STATES = ("completed", "failed", "delayed", "prioritized", "waiting-children")
#: keys a backup leaves out: the wake-up marker (recomputed on restore), worker bookkeeping that only
#: makes sense while those workers run (locks, stalled candidates, the stalled-check throttle)
NOT_COPIED = frozenset({"marker", "stalled", "stalled-check", "events", *CONTAINERS})
#: per-job sub-keys copied with their job
JOB_SUBKEYS = ("logs", "dependencies", "processed", "failed", "unsuccessful")
_JOB_SUFFIXES = (*JOB_SUBKEYS, "lock")
#: job-hash fields that hold a job key / a queue key / the "child <key> failed" text
KEY_FIELDS = ("parentKey",)
TYPES = ("string", "hash", "list", "set", "zset")


def classify(rel: str) -> tuple[str, str]:
    """What the key ``<prefix>:<queue>:<rel>`` is: ``("key", rel)`` for a queue-level key a backup copies,
    ``("job", id)`` for a job hash or one of its sub-keys, ``("skip", rel)`` for keys left out."""
    if rel in NOT_COPIED:
        return "skip", rel
    if rel in QUEUE_KEYS or rel in ("priority", "delay"):
        return "key", rel
    head, sep, rest = rel.partition(":")
    if sep and head in ("de", "dn", "metrics"):
        return "key", rel
    if head == "repeat" and sep and ":" not in rest:
        return "key", rel  # a job scheduler's hash (its iterations are jobs: repeat:<id>:<ms>)
    base, sep, suffix = rel.rpartition(":")
    if sep and suffix in _JOB_SUFFIXES and base and base.count(":") in (0, 2):
        return ("skip", rel) if suffix == "lock" else ("job", base)
    return "job", rel


@dataclass
class Renamer:
    """Maps queue keys ``<prefix>:<queue>`` of the backup to those of the restore target.

    Job keys stored inside values (a child's ``parentKey`` and ``parent.queueKey``, a parent's
    ``:dependencies`` members and ``:processed``/``:failed``/``:unsuccessful`` fields, ``dn:`` hashes) are
    rewritten when they point into a renamed queue; keys of queues outside the backup are kept and reported.
    """

    queues: dict[str, str] = field(default_factory=dict)  # old queue key -> new queue key
    external: set[str] = field(default_factory=set)  # queue keys referenced but not in the backup

    @property
    def identity(self) -> bool:
        return all(old == new for old, new in self.queues.items())

    def queue_key(self, qkey: str) -> str:
        if qkey in self.queues:
            return self.queues[qkey]
        self.external.add(qkey)
        return qkey

    def job_key(self, key: str) -> str:
        """A job key ``<prefix>:<queue>:<id>`` rewritten to the target queue (longest match first)."""
        best = ""
        for old in self.queues:
            if key.startswith(old + ":") and len(old) > len(best):
                best = old
        if best:
            return self.queues[best] + key[len(best) :]
        parts = key.split(":")
        if len(parts) >= 3:  # <prefix>:<queue>:<id> (ids may hold colons; prefixes usually do not)
            self.external.add(f"{parts[0]}:{parts[1]}")
        return key

    def text(self, value: str) -> str:
        """Every queue key inside free text (e.g. ``defa = "child bull:q:7 failed"``)."""
        for old, new in sorted(self.queues.items(), key=lambda kv: -len(kv[0])):
            if old != new:
                value = value.replace(old + ":", new + ":")
        return value

    def job_hash(self, fields: Mapping[str, str]) -> dict[str, str]:
        out = dict(fields)
        if "parentKey" in out:
            out["parentKey"] = self.job_key(out["parentKey"])
        if "parent" in out:
            out["parent"] = self._json_parent(out["parent"], "queueKey")
        if "opts" in out and '"parent"' in out["opts"] and not self.identity:
            out["opts"] = self._opts_parent(out["opts"])
        if "defa" in out:
            out["defa"] = self.text(out["defa"])
        return out

    def dn_hash(self, fields: Mapping[str, str]) -> dict[str, str]:
        """A ``dn:<id>`` hash (the next job of a keepLastIfActive dedup): parent key fields."""
        out = dict(fields)
        for name in ("pk", "pdk"):
            if name in out:
                out[name] = self.job_key(out[name])
        if "pd" in out:
            out["pd"] = self._json_parent(out["pd"], "queueKey")
        return out

    def _json_parent(self, text: str, key: str) -> str:
        try:
            parent = json.loads(text)
        except ValueError:
            return text
        if not isinstance(parent, dict) or not isinstance(parent.get(key), str):
            return text
        return _swap(text, parent, parent, key, self.queue_key(parent[key]))

    def _opts_parent(self, text: str) -> str:
        try:
            opts = json.loads(text)
        except ValueError:
            return text
        parent = opts.get("parent") if isinstance(opts, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get("queue"), str):
            return text
        return _swap(text, opts, parent, "queue", self.queue_key(parent["queue"]))

    def subkey(self, suffix: str, value: Any) -> Any:
        """A job sub-key's value with the child job keys it holds rewritten."""
        if suffix == "dependencies":
            return [self.job_key(m) for m in value]
        if suffix in ("processed", "failed"):
            return {self.job_key(k): v for k, v in value.items()}
        if suffix == "unsuccessful":
            return [[self.job_key(m), s] for m, s in value]
        return value


def _swap(text: str, doc: Any, holder: dict[str, Any], key: str, new: str) -> str:
    """``text`` (the JSON of ``doc``) with ``holder[key]`` set to ``new``, keeping every other byte when the
    old value's JSON string appears once (so a peer's formatting survives); else ``doc`` re-serialised."""
    old = holder[key]
    if new == old:
        return text
    quoted = json.dumps(old, ensure_ascii=False)
    if text.count(quoted) == 1:
        return text.replace(quoted, json.dumps(new, ensure_ascii=False))
    holder[key] = new
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# --- record validation (a foreign or corrupt file must fail before anything is written) -------------------
def _bad(message: str, line: int) -> BackupFormatError:
    return BackupFormatError(f"backup file is corrupt: {message} (line {line})")


def _str_map(value: Any, what: str, line: int) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad(f"{what} must map strings to strings", line)
    return value


def _str_list(value: Any, what: str, line: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{what} must be a list of strings", line)
    return value


def _scored(value: Any, what: str, line: int) -> list[list[Any]]:
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _number(p[1]) for p in value
    )
    if not ok:
        raise _bad(f"{what} must be a list of [member, score]", line)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_value(kind: Any, value: Any, what: str, line: int) -> None:
    """``value`` has the shape the format gives a key of type ``kind``."""
    if kind == "string":
        if not isinstance(value, str):
            raise _bad(f"{what} must be a string", line)
    elif kind == "hash":
        _str_map(value, what, line)
    elif kind in ("list", "set"):
        _str_list(value, what, line)
    elif kind == "zset":
        _scored(value, what, line)
    else:
        raise _bad(f"{what} has unknown type {kind!r}", line)


def check_record(rec: Any, line: int) -> dict[str, Any]:
    """One body record, validated (raises :class:`BackupFormatError`)."""
    if not isinstance(rec, dict) or not isinstance(rec.get("rec"), str):
        raise _bad("a record is not an object with 'rec'", line)
    kind = rec["rec"]
    if not isinstance(rec.get("queue"), str) or not rec["queue"]:
        raise _bad(f"{kind} record without a queue name", line)
    if kind == "queue":
        if not isinstance(rec.get("prefix"), str):
            raise _bad("queue record without a prefix", line)
    elif kind == "key":
        if not isinstance(rec.get("key"), str) or not rec["key"] or classify(rec["key"])[0] != "key":
            raise _bad(f"{rec.get('key')!r} is not a queue-level key a backup holds", line)
        check_value(rec.get("type"), rec.get("value"), f"key {rec['key']!r}", line)
        want = expected_type(rec["key"])
        if want is not None and rec["type"] != want:
            raise _bad(f"key {rec['key']!r} must be a {want}, not a {rec['type']}", line)
        ttl = rec.setdefault("ttl_ms", None)
        if ttl is not None and not (isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0):
            raise _bad("ttl_ms must be a positive integer or null", line)
    elif kind == "job":
        if not isinstance(rec.get("id"), str) or not rec["id"]:
            raise _bad("job record without an id", line)
        if rec.get("state") not in (*CONTAINERS, "unknown"):
            raise _bad(f"job {rec['id']!r} has unknown state {rec.get('state')!r}", line)
        _str_map(rec.get("hash"), f"job {rec['id']!r} hash", line)
        score = rec.get("score")
        if rec["state"] in ZSET_STATES and not _number(score):
            raise _bad(f"job {rec['id']!r} in {rec['state']} needs a numeric score", line)
        if not isinstance(rec.get("pos"), int) or isinstance(rec["pos"], bool):
            raise _bad(f"job {rec['id']!r} has no integer pos", line)
        subs = rec.setdefault("sub", {})
        if not isinstance(subs, dict):
            raise _bad(f"job {rec['id']!r} sub must be an object", line)
        for suffix, value in subs.items():
            if suffix not in JOB_SUBKEYS:
                raise _bad(f"job {rec['id']!r} has unknown sub-key {suffix!r}", line)
            check_value(SUBKEY_TYPES[suffix], value, f"job {rec['id']!r} :{suffix}", line)
    elif kind == "events":
        entries = rec.get("entries")
        ok = isinstance(entries, list) and all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], dict) and e[1]
            and all(isinstance(k, str) and isinstance(v, str) for k, v in e[1].items())
            for e in entries
        )
        if not ok:
            raise _bad("events entries must be [id, {field: value}] pairs of strings", line)
    elif kind != "end":
        raise _bad(f"unknown record kind {kind!r}", line)
    return rec


#: the type a queue-level key must have: by name, or by its first part for ``de:<id>``, ``dn:<id>``,
#: ``repeat:<scheduler id>``
KEY_TYPES = {"meta": "hash", "id": "string", "pc": "string", "limiter": "string", "repeat": "zset",
             "de:": "string", "dn:": "hash", "repeat:": "hash"}  # fmt: skip

def expected_type(rel: str) -> str | None:
    """The type BullMQ gives the queue-level key ``rel`` (None: any)."""
    return KEY_TYPES.get(rel) or KEY_TYPES.get(rel.partition(":")[0] + ":")


SUBKEY_TYPES = {"logs": "list", "dependencies": "set", "processed": "hash", "failed": "hash", "unsuccessful": "zset"}


def wait_order(entries: Iterable[tuple[str, int, int]]) -> list[str]:
    """The ``wait`` list, head (newest) to tail (next to run), from ``(id, pos, timestamp)``.

    ``pos`` is the job's index from the head when the list was paged (-1: not seen there, e.g. added during
    the backup); those go to the head, newest first."""
    items = list(entries)
    late = sorted((e for e in items if e[1] < 0), key=lambda e: -e[2])
    seen = sorted((e for e in items if e[1] >= 0), key=lambda e: e[1])
    return [e[0] for e in late] + [e[0] for e in seen]


def delayed_due_ms(score: float) -> int:
    """A delayed job's due time from its score (``due_ms * 4096 + seq``)."""
    return int(score) // 4096


# --- what export and import report ------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupSummary:
    """What :meth:`Queue.export` wrote: per queue, jobs per state; the timing of its batches."""

    path: str
    prefix: str
    queues: tuple[str, ...]
    jobs: dict[str, dict[str, int]]  # queue -> state -> jobs
    keys: int  # queue-level keys (meta, id, schedulers, dedup...)
    events: int
    skipped: dict[str, int]  # why jobs were left out -> how many (vanished, not a hash)
    active_ids: dict[str, list[str]]  # jobs active at backup time (restored as waiting)
    paused: bool  # taken with pause=True (exact)
    seconds: float
    batches: int
    max_batch_ms: float  # slowest single read (a round trip: an upper bound of one Redis block)
    bytes: int

    @property
    def total_jobs(self) -> int:
        return sum(sum(states.values()) for states in self.jobs.values())


@dataclass(frozen=True)
class RestoreReport:
    """What :meth:`Queue.import_` wrote (or, with ``dry_run``, would write)."""

    path: str
    targets: dict[str, str]  # backup queue key -> target queue key
    jobs: dict[str, dict[str, int]]  # target queue key -> state after restore -> jobs
    keys: int
    events: int
    external_refs: tuple[str, ...]  # queue keys outside the backup that restored jobs point to (flows)
    dry_run: bool
    overwritten: tuple[str, ...]  # target queue keys whose old keys were deleted first

    @property
    def total_jobs(self) -> int:
        return sum(sum(states.values()) for states in self.jobs.values())

    def frame(self) -> Any:
        """One row per target queue and what it gets: columns ``source``, ``target``, ``kind``, ``count``."""
        import pandas as pd

        back = {v: k for k, v in self.targets.items()}
        rows = [
            {"source": back.get(target, ""), "target": target, "kind": f"jobs:{state}", "count": n}
            for target, states in self.jobs.items()
            for state, n in sorted(states.items())
        ]
        rows.append({"source": "", "target": "", "kind": "keys", "count": self.keys})
        rows.append({"source": "", "target": "", "kind": "events", "count": self.events})
        frame = pd.DataFrame(rows, columns=["source", "target", "kind", "count"])
        return frame.astype({"source": "string", "target": "string", "kind": "string", "count": "int64"})
