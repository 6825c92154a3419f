"""The events stream as rows, and one job's lifecycle from its events and its hash (spec §10)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import redis

from sbqueue._core.events import decode_event
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import Context, to_ms
from sbqueue.inspection.consistency import job_state
from sbqueue.inspection.job_decoding import FIELDS, decode_jobs
from sbqueue.inspection.schemas import from_records

_PAGE = 1000
_STREAM_ID = re.compile(r"[0-9]+(-[0-9]+)?")  # fullmatch (ASCII digits only, no trailing newline)


def _stream_start(since: Any, now: int) -> str:
    if isinstance(since, str) and _STREAM_ID.fullmatch(since) and "-" in since:
        if any(int(part) >= 2**64 for part in since.split("-")):
            raise InvalidOptionError(f"since={since!r} is not a valid stream id", option="since")
        return since  # already a stream id
    ms = to_ms(since, now_ms=now, option="since")
    return "-" if ms is None else str(max(int(math.ceil(ms)), 0))


def _entries(ctx: Context, key: str, start: str, count: int | None) -> Iterator[tuple[str, dict[str, str]]]:
    """Oldest first from ``start``; stops after ``count`` entries."""
    left = count
    while left is None or left > 0:
        page = ctx.client.xrange(key, min=start, max="+", count=_PAGE if left is None else min(_PAGE, left))
        if not page:
            return
        yield from page
        if left is not None:
            left -= len(page)
        if len(page) < _PAGE:
            return
        start = "(" + page[-1][0]


def _latest(ctx: Context, key: str, count: int) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    end = "+"
    while len(out) < count:
        page = ctx.client.xrevrange(key, max=end, min="-", count=min(_PAGE, count - len(out)))
        if not page:
            break
        out += page
        end = "(" + page[-1][0]
    out.reverse()
    return out


def _row(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    decoded = decode_event(entry_id, fields)
    errors = []
    for name in ("data", "returnvalue"):
        if name in decoded and isinstance(decoded[name], str) and name in fields:
            try:
                json.loads(fields[name])
            except ValueError as exc:
                if decoded.get("event") in ("progress", "completed"):
                    errors.append(f"{name}: invalid JSON ({exc})")
    extra = {k: v for k, v in decoded.items() if k not in ("id", "event", "jobId", "prev")}
    try:
        ms: float = float(entry_id.split("-", 1)[0])
    except ValueError:
        ms = math.nan
        errors.append(f"unexpected stream id {entry_id!r}")
    if "event" not in fields:
        errors.append("entry has no 'event' field")
    return {
        "event_id": entry_id, "ts": ms, "event": fields.get("event"), "job_id": fields.get("jobId"),
        "prev": fields.get("prev"), "fields": extra, "parse_error": "; ".join(errors) or None,
    }  # fmt: skip


def events(ctx: Context, queue: str, since: Any = None, count: int | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.events`."""
    key = ctx.keys(queue).key("events")
    try:
        if since is None and count is not None:
            entries: Any = _latest(ctx, key, count)
        else:
            entries = list(_entries(ctx, key, _stream_start(since, ctx.now_ms()), count))
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        return from_records("events", [{"event_id": None, "ts": math.nan, "parse_error": f"{key}: {exc}"}])
    return from_records("events", [_row(eid, fields) for eid, fields in entries])


def timeline(ctx: Context, queue: str, job_id: str) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.timeline`."""

    job_id = str(job_id)
    keys = ctx.keys(queue)
    now = ctx.now_ms()
    status, cols = ctx.hmget_columns(keys.base, [job_id], FIELDS)
    job = decode_jobs([job_id], [""], status, cols, now).iloc[0]
    raw = [col[0] for col in cols]
    stack_raw = ctx.client.hget(keys.job(job_id), "stacktrace") if any(raw) else None
    created = job["timestamp"]
    records: list[dict[str, Any]] = []

    def add(ts: Any, source: str, event: str, detail: str | None = None, fields: Any = None, error: Any = None) -> None:
        if ts is pd.NaT:
            ts = math.nan
        ms = ts.value / 1e6 if isinstance(ts, pd.Timestamp) else ts
        since = (ms - created.value / 1e6) / 1000 if created is not pd.NaT and not _nan(ms) else math.nan
        records.append({"ts": ms, "source": source, "event": event, "detail": detail, "since_created_s": since,
                        "fields": fields or {}, "parse_error": error})  # fmt: skip

    if any(raw):
        add(created, "hash", "created", f"name={job['name']}", {"data": job["data"], "opts": job["opts"]})
        if job["processed_on"] is not pd.NaT:
            add(job["processed_on"], "hash", "processed", f"attempt {job['attempts_started']} by "
                f"{job['processed_by'] if job['processed_by'] is not pd.NA else 'unnamed worker'}")  # fmt: skip
        if job["finished_on"] is not pd.NaT:
            reason = job["failed_reason"]
            kind = "failed" if reason is not pd.NA and job["returnvalue"] is None else "finished"
            add(job["finished_on"], "hash", kind, None if reason is pd.NA else str(reason),
                {"returnvalue": job["returnvalue"], "stacktrace": _stack(stack_raw)})  # fmt: skip
        if job["parse_error"] is not pd.NA:
            records[0]["parse_error"] = job["parse_error"]
    else:
        add(math.nan, "hash", "hash missing", f"no job hash {keys.job(job_id)}")
    key = keys.key("events")
    try:
        for eid, fields in _entries(ctx, key, "-", None):
            if fields.get("jobId") == job_id:
                row = _row(eid, fields)
                detail = ", ".join(f"{k}={v}" for k, v in row["fields"].items()) or None
                if row["prev"]:
                    detail = f"prev={row['prev']}" + (f", {detail}" if detail else "")
                add(row["ts"], "events", row["event"] or "?", detail, row["fields"], row["parse_error"])
    except redis.ResponseError as exc:
        add(math.nan, "events", "unreadable", str(exc))
    add(float(now), "state", job_state(ctx, queue, job_id), "state now")
    _note_clock_skew(records)
    records.sort(key=_timeline_order)
    return from_records("timeline", records)


def _timeline_order(record: dict[str, Any]) -> tuple[int, float]:
    """Undated rows, then creation, then the rest by time, then the state now.

    Creation is pinned first and the state-now row last because the clocks differ: ``timestamp`` is the
    producer's clock, stream ids and ``processedOn`` are Redis's or the worker's, ``now`` is ours. A
    producer a few ms ahead of Redis must not make a job's ``added`` event precede its creation.
    """
    if _nan(record["ts"]):
        return (0, -math.inf)
    if record["source"] == "hash" and record["event"] == "created":
        return (1, record["ts"])
    if record["source"] == "state":
        return (3, record["ts"])
    return (2, record["ts"])


def _note_clock_skew(records: list[dict[str, Any]]) -> None:
    """Say on the created row when something happened before it by the recorded clocks (producer ahead)."""
    created = next((r for r in records if r["source"] == "hash" and r["event"] == "created"), None)
    if created is None or _nan(created["ts"]):
        return
    later = [r["ts"] for r in records if r is not created and r["source"] != "state" and not _nan(r["ts"])]
    # both clocks record whole milliseconds: less than one apart is resolution, not skew
    if later and created["ts"] - min(later) >= 1:
        ahead = created["ts"] - min(later)
        created["detail"] = f"{created['detail']}; producer clock ~{ahead:.0f} ms ahead of the first event"


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _stack(raw: str | None) -> Any:
    if not raw:
        return []
    try:
        return json.loads(raw)
    except ValueError:
        return raw
