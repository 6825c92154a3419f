"""How the recorder turns an events-stream entry into a dataset row, enriched from the job's hash.

``active``/``completed``/``failed`` entries get the attempt, worker, job times and (terminal events) the
chosen ``data`` fields from the job hash, read for a whole page at once (:func:`read_job_hashes`). Job names
come from the entry, else the hash, else the job's ``added`` entry seen earlier (:class:`EntryRows` remembers
a bounded number). Malformed values become ``parse_error`` text on the row, never an exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis

from sbqueue.inspection._context import HMGET_COLUMNS_SCRIPT
from sbqueue.inspection.history_store import parse_id

log = logging.getLogger("sbqueue.history")

#: job-hash fields read for an enriched row, in reply order
HASH_FIELDS = ("name", "ats", "atm", "pb", "timestamp", "processedOn", "finishedOn", "data")
#: entries whose row gets job hash fields
ENRICH = {"active", "completed", "failed"}
_KNOWN = {"event", "jobId", "name", "prev", "failedReason", "returnvalue", "data"}
#: job names remembered from `added` entries, at most (the oldest is forgotten first)
_MAX_NAMES = 100_000


def int_field(value: Any, bits: int = 62) -> int | None:
    """An integer field of a hash or entry; None when missing, not a number or out of range (a buggy peer)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**bits) < number < 2**bits else None


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def read_job_hashes(client: Any, base: str, ids: list[str], scripts: bool) -> tuple[list[list[Any] | None], bool]:
    """:data:`HASH_FIELDS` of ``base + id`` for each id (None: no such hash, or not a hash) in one
    read-only script call (the inspector's batched HMGET), or a pipeline when ``scripts`` is false or the
    server refuses scripts. Returns the replies and whether scripts may be used next time."""
    if scripts:
        args = [base, len(HASH_FIELDS), *HASH_FIELDS, *ids]
        try:
            try:
                reply = client.evalsha(HMGET_COLUMNS_SCRIPT.sha, 0, *args)
            except redis.exceptions.NoScriptError:
                reply = client.eval(HMGET_COLUMNS_SCRIPT.source, 0, *args)
            status, cols = reply[0], reply[1:]
            return [[None if c[i] is False else c[i] for c in cols] if status[i] == 1 else None
                    for i in range(len(ids))], True
        except redis.ResponseError as exc:  # e.g. an ACL without +eval: pipelines from now on
            log.info("scripts refused (%s): reading job hashes with pipelines", exc)
    pipe = client.pipeline(transaction=False)
    for job in ids:
        pipe.hmget(base + job, HASH_FIELDS)
    return [r if isinstance(r, list) and any(v is not None for v in r) else None
            for r in pipe.execute(raise_on_error=False)], False


class EntryRows:
    """Builds rows from entries; remembers job names seen in ``added`` entries until the job finishes."""

    def __init__(self, data_fields: Sequence[str]) -> None:
        self.data_fields = data_fields
        self.names: dict[tuple[str, str], str] = {}  # (queue, job id) -> name from `added` entries (bounded)

    def row(self, queue: str, eid: str, fields: dict[str, str], hashes: dict[tuple[str, str], list[Any]]
            ) -> dict[str, Any]:
        """The row of entry ``eid`` of ``queue``; ``hashes``: (queue, job id) -> :data:`HASH_FIELDS` values."""
        errors = []
        ms, seq = parse_id(eid)
        event = fields.get("event")
        if event is None:
            errors.append("entry has no 'event' field")
        job = fields.get("jobId")
        row: dict[str, Any] = {"stream_id": eid, "ts": ms, "id_seq": seq, "event": event, "job_id": job,
                               "prev": fields.get("prev"), "failed_reason": fields.get("failedReason")}
        name = fields.get("name")
        if event == "added" and job is not None and name is not None:
            if len(self.names) >= _MAX_NAMES:
                self.names.pop(next(iter(self.names)))
            self.names[(queue, job)] = name
        if "returnvalue" in fields:
            row["returnvalue_bytes"] = len(fields["returnvalue"].encode())
            if event == "completed":
                try:
                    json.loads(fields["returnvalue"])
                except ValueError as exc:
                    errors.append(f"returnvalue: invalid JSON ({exc})")
        if event == "progress" and "data" in fields:
            row["progress"] = fields["data"]
        extra = {k: v for k, v in fields.items() if k not in _KNOWN or (k == "data" and event != "progress")}
        if extra:
            row["extra"] = json.dumps(extra, ensure_ascii=False)
        hashed = hashes.get((queue, str(job))) if job is not None else None
        if hashed is not None:
            h = dict(zip(HASH_FIELDS, hashed, strict=True))
            name = name or h["name"]
            row["attempt"] = int_field(h["ats"] if event == "active" else h["atm"], bits=31)
            row["worker"] = h["pb"]
            for col, fld in (("job_timestamp", "timestamp"), ("job_processed_on", "processedOn"),
                             ("job_finished_on", "finishedOn")):
                row[col] = int_field(h[fld])
            if self.data_fields and event != "active" and h["data"] is not None:
                try:
                    data = json.loads(h["data"])
                    row["data"] = json.dumps({f: _dig(data, f) for f in self.data_fields}, ensure_ascii=False)
                except ValueError as exc:
                    errors.append(f"job data: invalid JSON ({exc})")
        if name is None and job is not None:
            name = self.names.get((queue, job))
        row["job_name"] = name
        if errors:
            row["parse_error"] = "; ".join(errors)
        if event in ("completed", "failed") and job is not None:
            self.names.pop((queue, job), None)
        return row
