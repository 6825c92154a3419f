"""fsck for one queue: state keys vs job hashes vs marker/meta, each finding with a suggested fix.

Read-only: it only reports. Redis keeps moving while it reads, so a job changing state at that very
moment can show up once; re-run to confirm a finding before acting on it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import redis

from sbqueue._core.states import STATE_KEYS
from sbqueue.inspection._context import BatchSizer, Context
from sbqueue.inspection.flows import fix_for, state_of, stuck_parents
from sbqueue.inspection.jobs import STATE_ORDER, state_ids
from sbqueue.inspection.keyspace import classify
from sbqueue.inspection.schemas import from_records

#: small fields only (no data/returnvalue/stacktrace): enough to tell a job hash exists and what it says
_FIELDS = ("name", "timestamp", "delay", "priority", "opts", "finishedOn", "processedOn", "failedReason")


def job_state(ctx: Context, queue: str, job_id: str) -> str:
    """The job's state, checked in BullMQ's order (``unknown`` when no state key holds it)."""
    return state_of(ctx.client, ctx.keys(queue), job_id)


def consistency(ctx: Context, queue: str) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.consistency`."""
    keys = ctx.keys(queue)
    rows: list[dict[str, Any]] = []

    def add(check: str, severity: str, key: str | None, job_id: str | None, state: str | None, detail: str,
            fix: str) -> None:  # fmt: skip
        rows.append({"check": check, "severity": severity, "key": key, "job_id": job_id, "state": state,
                     "detail": detail, "suggested_fix": fix})  # fmt: skip

    where: dict[str, list[str]] = {}
    sizer = BatchSizer()
    key_errors: list[tuple[str, str]] = []
    sources = [(state, *state_ids(ctx, queue, state, sizer, errors=key_errors)) for state in STATE_ORDER]
    bar = ctx.bar(sum(t for _, t, _ in sources), f"fsck {queue}")
    try:
        for state, _total, pages in sources:
            skey = keys.key(STATE_KEYS[state][0])
            for ids in pages:
                bar.update(len(ids))
                replies = ctx.hmget_many(keys.base, ids, _FIELDS)
                for job_id, row in zip(ids, replies, strict=True):
                    where.setdefault(job_id, []).append(state)
                    _check_job(add, skey, job_id, state, row)
    finally:
        bar.close()
    for state, problem in key_errors:
        add("wrong_type_state_key", "error", keys.key(STATE_KEYS[state][0]), None, state, problem,
            "inspect the key (TYPE/DUMP); workers and getters fail on it until it is fixed or deleted")  # fmt: skip
    for job_id, states in where.items():
        if len(states) > 1:
            add("duplicate_state", "error", None, job_id, ",".join(states),
                f"job {job_id} is listed in {len(states)} state keys at once: {', '.join(states)}",
                f"keep it only in the state its hash agrees with (LREM/ZREM it from the others): "
                f"finishedOn set -> completed/failed, else {states[0]}")  # fmt: skip
    _scan_queue_keys(ctx, queue, where, add)
    _check_meta(ctx, queue, add)
    for row in stuck_parents(ctx, queue):
        add("stuck_parent", "warning", keys.job(row["job_id"]), row["job_id"], "waiting-children", row["stuck"],
            fix_for(row["stuck"]))  # fmt: skip
    return from_records("consistency", rows)


def _check_job(add: Any, skey: str, job_id: str, state: str, row: Any) -> None:
    if isinstance(row, str):
        add("unreadable_hash", "error", skey, job_id, state, f"job key is not a hash: {row[:120]}",
            f"inspect the key; remove the id from {skey} if the job is lost")  # fmt: skip
        return
    values = dict(zip(_FIELDS, row, strict=True))
    if not any(values.values()):
        add("missing_hash", "error", skey, job_id, state,
            f"{skey} lists job {job_id} but its hash is gone (workers skip or fail it; BullMQ 6.7 drain bug, "
            "eviction, or a manual DEL)",
            f"remove the id from {skey} (LREM for lists, ZREM for sets); the job itself is lost")  # fmt: skip
        return
    if state in ("completed", "failed") and not values["finishedOn"]:
        add("state_contradiction", "warning", skey, job_id, state, f"{state} job has no finishedOn",
            "harmless for processing; retry or clean the job if its result matters")  # fmt: skip
    if state == "failed" and not values["failedReason"]:
        add("state_contradiction", "info", skey, job_id, state, "failed job has no failedReason",
            "none needed; the reason was not recorded")  # fmt: skip
    if state in ("waiting", "prioritized", "delayed", "paused") and values["finishedOn"]:
        add("state_contradiction", "warning", skey, job_id, state,
            f"job is {state} but its hash has finishedOn (a retry normally deletes it)",
            "let it run; if it ran already, remove it to avoid a duplicate run")  # fmt: skip
    if state == "active" and not values["processedOn"]:
        add("state_contradiction", "warning", skey, job_id, state, "active job has no processedOn",
            "wait one stalled-check cycle; stalled() shows whether a worker holds it")  # fmt: skip
    if not values["name"] and not values["timestamp"]:
        add("incomplete_hash", "warning", skey, job_id, state, "job hash has neither name nor timestamp",
            "inspect the hash (jobs() shows it with parse_error); remove the job if it is garbage")  # fmt: skip


def _scan_queue_keys(ctx: Context, queue: str, where: dict[str, list[str]], add: Any) -> None:
    keys = ctx.keys(queue)
    orphans: list[str] = []
    locks: list[tuple[str, str]] = []
    dedup: list[str] = []
    schedulers: list[str] = []
    for batch in ctx.scan(keys.pattern):
        for key in batch:
            _q, role, job_id = classify(key, ctx.prefix)
            if role == "job hash" and job_id is not None and job_id not in where:
                orphans.append(key)
            elif role == "job lock" and job_id is not None and "active" not in where.get(job_id, ()):
                locks.append((key, job_id))
            elif role == "dedup key":
                dedup.append(key)
            elif role == "scheduler":
                schedulers.append(key)
    pipe = ctx.pipe()
    for key in orphans:
        pipe.type(key)
        pipe.hget(key, "rjk")
    for key in dedup:
        pipe.get(key)
    got = pipe.execute(raise_on_error=False) if orphans or dedup else []
    for i, key in enumerate(orphans):
        if got[2 * i] != "hash":
            continue
        job_id = key[len(keys.base) :]
        add("orphan_hash", "warning", key, job_id, None,
            "job hash that no state key refers to: no worker will ever run it, no getter lists it"
            + (" (a scheduler iteration: its scheduler stops firing)" if got[2 * i + 1] else ""),
            "re-queue it by adding its id to wait (LPUSH) if it should run, or DEL the hash and its :logs")  # fmt: skip
    owners = got[2 * len(orphans) :]
    pipe = ctx.pipe()
    for owner in owners:
        pipe.exists(keys.job(str(owner)))
    alive = pipe.execute(raise_on_error=False) if dedup else []
    for key, owner, ok in zip(dedup, owners, alive, strict=True):
        if isinstance(owner, str) and not ok:
            add("stale_dedup_key", "info", key, owner, None,
                f"deduplication key points at job {owner} whose hash is gone; new adds with this id are "
                "refused while it lives (BullMQ recovers no-ttl keys on the next add)",
                "DEL the key if adds with this deduplication id are wrongly refused")  # fmt: skip
    for key, job_id in locks:
        add("stray_lock", "info", key, job_id, ",".join(where.get(job_id, [])) or None,
            "lock of a job that is not active (it expires by itself)", "none needed; it expires")  # fmt: skip
    try:
        members = _zmembers(ctx, keys.key("repeat"))
    except redis.ResponseError as exc:
        members = []
        add("wrong_type_state_key", "error", keys.key("repeat"), None, None, f"schedulers set unreadable: {exc}",
            "inspect the key (TYPE/DUMP); schedulers cannot fire until it is fixed or deleted")  # fmt: skip
    known = set(members)
    for key in schedulers:
        sid = key[len(keys.base) + len("repeat:") :]
        if sid not in known:
            add("orphan_scheduler_hash", "info", key, None, None, f"scheduler hash {sid!r} is not in the repeat set",
                "remove_job_scheduler() it, or DEL the hash")  # fmt: skip
    pipe = ctx.pipe()
    for sid in members:
        pipe.hexists(keys.scheduler(sid), "ic")
        pipe.exists(keys.scheduler(sid))
    flags = pipe.execute(raise_on_error=False) if members else []
    for i, sid in enumerate(members):
        has_ic, exists = flags[2 * i], flags[2 * i + 1]
        if not exists:
            add("scheduler_missing_hash", "error", keys.key("repeat"), None, None,
                f"scheduler {sid!r} is in the repeat set but its definition hash is gone: it cannot fire",
                "upsert_job_scheduler() it again, or ZREM it from the repeat set")  # fmt: skip
        elif not has_ic:
            add("legacy_scheduler", "warning", keys.scheduler(sid), None, None,
                f"scheduler {sid!r} has no 'ic' field: BullMQ v5 repeatable metadata that v6 workers reject",
                "re-create it with upsert_job_scheduler()")  # fmt: skip


def _zmembers(ctx: Context, key: str) -> list[str]:
    out: list[str] = []
    while True:
        page = ctx.client.zrange(key, len(out), len(out) + 999)
        out += page
        if len(page) < 1000:
            return out


def _check_meta(ctx: Context, queue: str, add: Any) -> None:
    keys = ctx.keys(queue)
    pipe = ctx.pipe()
    pipe.hgetall(keys.key("meta"))
    pipe.zrange(keys.key("marker"), 0, -1, withscores=True)
    for suffix in ("wait", "paused", "active"):
        pipe.llen(keys.key(suffix))
    for suffix in ("prioritized", "delayed"):
        pipe.zcard(keys.key(suffix))
    pipe.sscan(keys.key("stalled"), 0, count=1000)
    got = pipe.execute(raise_on_error=False)
    meta, marker = (v if not isinstance(v, Exception) else {} for v in got[:2])
    wait, paused_list, active, prioritized, _delayed = (v if isinstance(v, int) else 0 for v in got[2:7])
    members = dict(marker) if isinstance(marker, list) else {}
    is_paused = "paused" in meta
    for field in ("concurrency", "max", "duration", "opts.maxLenEvents"):
        if field in meta:
            try:
                float(meta[field])
            except ValueError:
                add("meta_invalid", "warning", keys.key("meta"), None, None,
                    f"meta.{field} = {meta[field]!r} is not a number",
                    f"HSET meta {field} to a number or HDEL it")  # fmt: skip
    try:
        limit = float(meta["concurrency"]) if "concurrency" in meta else math.inf
    except ValueError:
        limit = math.inf
    if paused_list:
        add("legacy_paused_list", "warning", keys.key("paused"), None, "paused",
            f"{paused_list} jobs sit in the legacy v5 'paused' list; BullMQ 6 workers never fetch from it",
            "call resume() (pausing first if needed): it moves them to wait")  # fmt: skip
    if not is_paused and wait + prioritized > 0 and active < limit and "0" not in members:
        add("missing_marker", "info", keys.key("marker"), None, None,
            f"{wait + prioritized} jobs are ready but the marker has no '0' entry: idle workers notice them only "
            "after their drain delay (a few seconds of latency; can be a moment's state while workers fetch)",
            "resume() or adding any job re-adds the marker (ZADD marker 0 0)")  # fmt: skip
    if is_paused and "0" in members:
        add("marker_while_paused", "info", keys.key("marker"), None, None,
            "queue is paused but the marker says jobs are ready (workers wake, find the queue paused, sleep)",
            "none needed; pause() normally deletes the marker")  # fmt: skip
    stalled = got[7][1] if isinstance(got[7], (list, tuple)) and len(got[7]) == 2 else []
    if stalled and not active:
        add("stale_stalled_set", "info", keys.key("stalled"), None, None,
            "stalled-candidates set is non-empty while nothing is active",
            "none needed; the next check clears it")  # fmt: skip
