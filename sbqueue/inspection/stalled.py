"""The stuck/stalled classifier: every active job, its lock, who could hold it, and a verdict (spec §7)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from sbqueue.inspection._context import BatchSizer, Context
from sbqueue.inspection.flows import fix_for, stuck_parents
from sbqueue.inspection.jobs import state_ids
from sbqueue.inspection.queues import client_list, parse_client_name
from sbqueue.inspection.schemas import from_records

_FIELDS = ("name", "pb", "stc", "atm", "attemptsMade", "ats", "processedOn", "opts", "defa", "timestamp")

PROCESSING = "processing"
LOCK_LOST = "lock lost — will be requeued"
ORPHANED = "orphaned"
HASH_MISSING = "hash missing"
UNREADABLE = "unreadable"  # the active key itself holds the wrong type
STUCK_PARENT = "stuck parent"  # waiting-children that nothing will release (see inspection/flows.py)
#: every verdict stalled() can give
VERDICTS = (PROCESSING, LOCK_LOST, ORPHANED, HASH_MISSING, UNREADABLE, STUCK_PARENT)


def _int(value: Any, field: str, errors: list[str]) -> int | None:
    if value is None or value == "":
        return 0
    try:
        return int(float(value))
    except ValueError:
        errors.append(f"{field}: not a number: {value[:40]!r}")
        return None


def stalled(ctx: Context, queue: str, max_stalled_count: int = 1) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.stalled`."""
    keys = ctx.keys(queue)
    now = ctx.now_ms()
    names: set[str] = set()
    on_queue = 0
    for c in client_list(ctx):
        parsed = parse_client_name(c.get("name"), ctx.prefix)
        if parsed and parsed["queue"] == queue and parsed["role"] == "worker":
            on_queue += 1
            if parsed["worker_name"]:
                names.add(parsed["worker_name"])
    sizer = BatchSizer(start=500)
    key_errors: list[tuple[str, str]] = []
    total, pages = state_ids(ctx, queue, "active", sizer, errors=key_errors)
    records: list[dict[str, Any]] = []
    bar = ctx.bar(total, f"stalled {queue}")
    try:
        for ids in pages:
            bar.update(len(ids))
            pipe = ctx.pipe()
            for job_id in ids:
                pipe.pttl(keys.lock(job_id))
                pipe.get(keys.lock(job_id))
                pipe.sismember(keys.key("stalled"), job_id)
            locks = pipe.execute(raise_on_error=False)
            rows = ctx.hmget_many(keys.base, ids, _FIELDS)
            for i, job_id in enumerate(ids):
                rec = _record(job_id, rows[i], locks[3 * i : 3 * i + 3], now, names, on_queue, max_stalled_count)
                records.append(rec)
    finally:
        bar.close()
    for _state, problem in key_errors:
        records.append({"verdict": UNREADABLE, "detail": problem, "parse_error": problem, "processed_on": math.nan,
                        "active_s": math.nan, "lock_ttl_s": math.nan, "workers_on_queue": on_queue})  # fmt: skip
    for row in stuck_parents(ctx, queue):  # not active, but as stuck: a parent nothing will release
        records.append({"id": row["job_id"], "name": row["name"], "verdict": STUCK_PARENT,
                        "detail": f"waiting-children: {row['stuck']}; {fix_for(row['stuck'])}",
                        "deferred_failure": row["deferred_failure"], "processed_on": math.nan, "active_s": math.nan,
                        "lock_ttl_s": math.nan, "workers_on_queue": on_queue, "in_stalled_set": False,
                        "worker_connected": on_queue > 0})  # fmt: skip
    return from_records("stalled", records)


def _record(
    job_id: str, row: Any, lock: list[Any], now: int, names: set[str], on_queue: int, max_stalled: int
) -> dict[str, Any]:
    errors: list[str] = []
    pttl, token, flagged = (None if isinstance(v, Exception) else v for v in lock)
    values = dict(zip(_FIELDS, row, strict=True)) if isinstance(row, list) else {}
    missing = not any(values.values())
    if isinstance(row, str):
        errors.append(f"job key unreadable: {row[:80]}")
    pb = values.get("pb")
    ttl_s = math.nan
    if isinstance(pttl, int) and pttl >= 0:
        ttl_s = pttl / 1000
    elif pttl == -1:
        ttl_s = math.inf  # a lock without expiry never lets the job stall
    has_lock = token is not None and (isinstance(pttl, int) and (pttl >= 0 or pttl == -1))
    worker_connected = (pb in names) if pb else on_queue > 0
    max_attempts = 1
    try:
        opts = json.loads(values["opts"]) if values.get("opts") else {}
        att = opts.get("attempts") if isinstance(opts, dict) else None
        if isinstance(att, (int, float)) and not isinstance(att, bool) and math.isfinite(att):
            max_attempts = max(int(att), 1)
    except ValueError as exc:
        errors.append(f"opts: invalid JSON ({exc})")
    stc = _int(values.get("stc"), "stc", errors)
    processed = _num(values.get("processedOn"), "processedOn", errors)
    atm_raw = values.get("atm") if values.get("atm") is not None else values.get("attemptsMade")
    rec: dict[str, Any] = {
        "id": job_id, "name": values.get("name"), "processed_by": pb, "lock_token": token, "lock_ttl_s": ttl_s,
        "in_stalled_set": bool(flagged), "worker_connected": bool(worker_connected), "workers_on_queue": on_queue,
        "stalled_count": None if missing else stc, "attempts_made": None if missing else _int(atm_raw, "atm", errors),
        "attempts_started": None if missing else _int(values.get("ats"), "ats", errors),
        "max_attempts": None if missing else max_attempts, "processed_on": processed,
        "active_s": (now - processed) / 1000, "deferred_failure": values.get("defa"),
    }  # fmt: skip
    rec["verdict"], rec["detail"] = _verdict(missing, has_lock, ttl_s, rec, pb, max_stalled)
    rec["parse_error"] = "; ".join(errors) or None
    return rec


def _num(value: Any, field: str, errors: list[str]) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        errors.append(f"{field}: not a number: {value[:40]!r}")
        return math.nan


def _verdict(
    missing: bool, has_lock: bool, ttl_s: float, rec: dict[str, Any], pb: str | None, max_stalled: int
) -> tuple[str, str]:
    who = f"worker {pb!r}" if pb else "any worker of this queue"
    if missing:
        return HASH_MISSING, "the id is in the active list but its job hash is gone; see consistency() for the fix"
    if has_lock:
        if math.isinf(ttl_s):
            return PROCESSING, "the lock has no expiry: if its worker died the job can never stall; check the lock"
        if rec["worker_connected"]:
            return PROCESSING, f"locked for another {ttl_s:.1f} s by {who}"
        return PROCESSING, (
            f"locked for another {ttl_s:.1f} s but no connection of {who} is visible "
            "(unnamed connections are invisible); if its worker died the job stalls when the lock expires"
        )
    nxt = (rec["stalled_count"] or 0) + 1
    outcome = "failed (stalled too often)" if nxt > max_stalled else "moved back to wait"
    if rec["workers_on_queue"] > 0:
        when = "the next stalled check" if rec["in_stalled_set"] else "the stalled check after next"
        return LOCK_LOST, f"no lock; {when} of a running worker counts the stall (#{nxt}) and the job is {outcome}"
    return ORPHANED, (
        "no lock and no worker of this queue is connected: nothing recovers it until a worker runs its stalled "
        f"check (it will then be {outcome})"
    )
