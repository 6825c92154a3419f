"""The redis-memory runbook: which queue eats the memory, is Redis full, and which old finished jobs to clean.

Old completed/failed jobs are kept when no removeOnComplete/removeOnFail is set; cleaning them by age (batched)
is the fix, and it works on a full Redis too (deleting is allowed when writes are refused).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pandas as pd
import redis

from sbqueue._core import options as _opts
from sbqueue._core.keys import validate_queue_name
from sbqueue.connection import clients
from sbqueue.connection import full as _full
from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection import Inspector
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.scope import not_found_finding, queue_names


def diagnose_memory(connection: Any = None, prefix: str = "bull", *, max_age: dt.timedelta = dt.timedelta(days=1),
                    states: tuple[str, ...] = ("completed", "failed"), limit: int = 100_000,
                    queue: str | None = None) -> Finding:  # fmt: skip
    """Which queue eats the memory, and which finished jobs are older than ``max_age`` (kept because no
    removeOnComplete/removeOnFail is set). Fix: clean them by age (batched) — in every queue, or only in
    ``queue``."""
    if not isinstance(max_age, dt.timedelta) or not dt.timedelta(0) <= max_age <= dt.timedelta(days=36_500):
        raise InvalidOptionError(f"max_age must be a timedelta of 0 to 100 years, got {max_age!r}", option="max_age")
    if (isinstance(states, str) or not isinstance(states, (tuple, list)) or not states
            or not all(state in ("completed", "failed") for state in states)):  # fmt: skip
        raise InvalidOptionError(f"states must be a tuple of 'completed'/'failed', got {states!r}", option="states")
    limit = _opts.validate_count(limit, "limit", minimum=0)
    if queue is not None:
        validate_queue_name(queue)
    client = clients.sync_client(connection).client
    if queue is not None:
        existing = queue_names(client, prefix)
        if queue not in existing:
            return not_found_finding("redis-memory", queue, client, prefix, existing)
    insp = Inspector(client, prefix, progress=False)
    by_queue = insp.memory_by_queue()
    mem = insp.info("memory")
    used = _metric(mem, "used_memory")
    maxmem = _metric(mem, "maxmemory")
    cutoff = pd.Timestamp.now(tz="UTC") - pd.Timedelta(max_age)
    plan = []
    totals = (
        by_queue.groupby("queue")["bytes"].sum().sort_values(ascending=False)
        if len(by_queue)
        else pd.Series(dtype="int64")
    )
    for qname in totals.index:
        if not qname or (queue is not None and qname != queue):
            continue
        jobs = insp.jobs(qname, list(states), until=cutoff.to_pydatetime())
        for state in states:
            n = int((jobs["state"] == state).sum()) if len(jobs) else 0
            if n:
                plan.append({"action": f"clean {state}", "target": qname, "jobs": n, "automatic": True,
                             "detail": f"remove {state} jobs finished before {cutoff:%Y-%m-%d %H:%M} UTC"})  # fmt: skip
    share = f"{used / maxmem:.0%} of maxmemory" if maxmem else "no maxmemory set"
    top = f"{totals.index[0]!r} holds {_size(totals.iloc[0])}" if len(totals) else "no queue keys"
    raw = {**client.info("memory")}
    with contextlib.suppress(redis.ResponseError):  # errorstats: Redis >= 6.2, may be refused by ACL
        raw.update(client.info("errorstats"))
    full, full_evidence = _full.state(raw)
    checks = [
        ("Redis full: writes refused", full, full_evidence),
        ("memory used", True, f"{_size(used)} ({share})"),
        ("maxmemory set", bool(maxmem), f"maxmemory={_size(maxmem)}" if maxmem else "maxmemory=0 (no limit)"),
        ("biggest queue", len(totals) > 0, top),
        ("old finished jobs kept", bool(plan), f"{sum(p['jobs'] for p in plan)} jobs finished "
         + (f"more than {max_age.total_seconds() / 3600:g} h ago" if max_age else "before now")),
    ]
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    cause = "old finished jobs kept (no retention)" if plan else "no cleanable backlog"
    if full:  # the clean below only deletes (allowed on a full Redis); adds and workers resume once it frees memory
        cause = f"Redis full (maxmemory reached, noeviction refuses writes); {cause}"
        if not plan:
            plan.append({"action": "free memory", "target": "redis", "jobs": 0, "automatic": False,
                         "detail": "nothing old enough to clean: raise maxmemory, lower max_age_hours, or set "
                         "removeOnComplete/removeOnFail; producers are refused until memory is freed"})  # fmt: skip

    def apply() -> list[str]:
        done = []
        grace = int(max_age.total_seconds() * 1000)
        for row in plan:
            if not row["automatic"]:
                continue
            q = Queue(row["target"], client, prefix=prefix)
            state = row["action"].split(" ", 1)[1]
            removed = q.clean(grace, limit, state)
            done.append(f"cleaned {len(removed)} {state} jobs of {row['target']}")
        return done

    def verify() -> tuple[bool, str, str | None]:
        again = diagnose_memory(client, prefix, max_age=max_age, states=states, limit=limit, queue=queue)
        left = int(again.plan["jobs"].sum()) if len(again.plan) else 0
        if again.cause.startswith("Redis full"):
            return False, f"{left} old finished jobs left; Redis is still full", (
                "free memory: raise maxmemory or remove more data; producers are refused until then")
        return left == 0, f"{left} old finished jobs left", None

    plan_df = frame_of(plan, PLAN_COLUMNS)
    return Finding("redis-memory", queue or "*", cause, f"{top}; {share}", df, plan_df, apply, verify,
                   ok=not plan and not full, audit_to=(client, prefix))


def _metric(info: pd.DataFrame, name: str) -> float:
    row = info[info["field"] == name] if len(info) else info
    return float(row["number"].iloc[0]) if len(row) and pd.notna(row["number"].iloc[0]) else 0.0


def _size(n: float) -> str:
    """Bytes for people: ``6489062`` → ``"6.2 MB"``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
