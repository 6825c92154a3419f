"""Queue-level frames: every queue under a prefix, per-minute metrics, connected workers, schedulers."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import redis

from sbqueue._core import dead_letters as _dead
from sbqueue._core.keys import QUEUE_KEYS
from sbqueue.connection import cluster_nodes
from sbqueue.inspection._context import Context
from sbqueue.inspection.schemas import build_frame, from_records

_MARKERS = frozenset(QUEUE_KEYS) | {"repeat"}


# --- client names (spec §1) ------------------------------------------------------------------------------
def _b64_queue(part: str) -> str | None:
    if len(part) % 4 or not part:
        return None
    try:
        raw = base64.b64decode(part, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not text or not text.isprintable() or ":" in text or base64.b64encode(raw).decode() != part:
        return None
    return text


def parse_client_name(name: str | None, prefix: str) -> dict[str, Any] | None:
    """``<prefix>:<base64(queue)>[:w:<worker>|:qe]`` (Node BullMQ, sbqueue) or the same with a plain
    queue name -> ``{queue, role, worker_name, naming}``; None for other connections."""
    if not name or not name.startswith(prefix + ":"):
        return None
    rest = name[len(prefix) + 1 :]
    worker_name = None
    role = "worker"
    if rest.endswith(":qe"):
        qpart, role = rest[:-3], "events"
    elif ":w:" in rest:
        qpart, worker_name = rest.split(":w:", 1)
    else:
        qpart = rest
    if not qpart or ":" in qpart:
        return None
    decoded = _b64_queue(qpart)
    return {
        "queue": decoded if decoded is not None else qpart,
        "role": role,
        "worker_name": worker_name,
        "naming": "base64" if decoded is not None else "plain",
    }


def client_list(ctx: Context) -> list[dict[str, Any]]:
    """CLIENT LIST (one call per node); [] when the server refuses it."""
    try:
        return list(cluster_nodes.client_list(ctx.client))  # every node of a cluster
    except redis.ResponseError:
        return []


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def workers(ctx: Context, queue: str | None = None, clients: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.workers`."""
    records = []
    for c in client_list(ctx) if clients is None else clients:
        parsed = parse_client_name(c.get("name"), ctx.prefix)
        if parsed is None or (queue is not None and parsed["queue"] != queue):
            continue
        records.append({
            **parsed, "prefix": ctx.prefix, "client_name": c.get("name"), "client_id": _int_or_none(c.get("id")),
            "addr": c.get("addr"), "user": c.get("user"), "age_s": _num(c.get("age")),
            "idle_s": _num(c.get("idle")), "cmd": c.get("cmd"), "blocked": "b" in str(c.get("flags", "")),
            "lib_name": c.get("lib-name") or None, "lib_ver": c.get("lib-ver") or None,
        })  # fmt: skip
    records.sort(key=lambda r: (r["queue"], r["role"], r["worker_name"] or "", r["client_id"] or 0))
    return from_records("workers", records)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- discovery + queues() --------------------------------------------------------------------------------
def discover(ctx: Context) -> list[str]:
    """Names of every queue under the prefix (SCAN; a queue exists when one of its queue keys does)."""
    names: set[str] = set()
    head = ctx.prefix + ":"
    try:
        total = cluster_nodes.dbsize(ctx.client)
    except redis.ResponseError:
        total = None
    bar = ctx.bar(total, "scanning queues")
    try:
        for batch in ctx.scan(ctx.prefix_pattern()):
            bar.update(len(batch))
            for key in batch:
                queue, sep, suffix = key[len(head) :].partition(":")
                if sep and queue and suffix in _MARKERS:
                    names.add(queue)
    finally:
        bar.close()
    return sorted(names)


def metric_series(meta: list[Any] | None, data: list[Any] | None) -> dict[int, int]:
    """BullMQ metrics hash (count, prevTS, prevCount) + data list -> {epoch minute: count}."""
    if not isinstance(meta, list) or len(meta) < 3 or not meta[1]:
        return {}
    try:
        count, prev_ts, prev_count = int(float(meta[0] or 0)), int(float(meta[1])), int(float(meta[2] or 0))
    except ValueError:
        return {}
    minute = prev_ts // 60000
    series = {minute: max(count - prev_count, 0)}
    for i, value in enumerate(data if isinstance(data, list) else []):
        try:
            series[minute - 1 - i] = int(float(value))
        except (TypeError, ValueError):
            series[minute - 1 - i] = 0
    return series


def _metric_reads(pipe: Any, keys: Any, points: int) -> None:
    for kind in ("completed", "failed"):
        pipe.hmget(keys.key(f"metrics:{kind}"), "count", "prevTS", "prevCount")
        pipe.lrange(keys.key(f"metrics:{kind}:data"), 0, points - 1)


_COUNT_READS = (
    ("waiting", "llen", "wait"), ("active", "llen", "active"), ("paused_legacy", "llen", "paused"),
    ("prioritized", "zcard", "prioritized"), ("delayed", "zcard", "delayed"),
    ("waiting_children", "zcard", "waiting-children"), ("completed", "zcard", "completed"),
    ("failed", "zcard", "failed"), ("schedulers", "zcard", "repeat"), ("events", "xlen", "events"),
)  # fmt: skip


def queues(ctx: Context, window_min: int = 60, names: Iterable[str] | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.queues`."""
    found = discover(ctx) if names is None else list(names)
    now = ctx.now_ms()
    clients = client_list(ctx)
    connected: dict[str, int] = {}
    for c in clients:
        parsed = parse_client_name(c.get("name"), ctx.prefix)
        if parsed and parsed["role"] == "worker":
            connected[parsed["queue"]] = connected.get(parsed["queue"], 0) + 1
    records = []
    for start in range(0, len(found), 50):
        chunk = found[start : start + 50]
        pipe = ctx.pipe()
        for name in chunk:
            keys = ctx.keys(name)
            for _col, cmd, suffix in _COUNT_READS:
                getattr(pipe, cmd)(keys.key(suffix))
            pipe.hgetall(keys.key("meta"))
            pipe.lindex(keys.key("wait"), -1)
            pipe.lindex(keys.key("paused"), -1)
            pipe.zrange(keys.key("prioritized"), 0, 0)
            _metric_reads(pipe, keys, window_min)
        replies = pipe.execute(raise_on_error=False)
        width = len(_COUNT_READS) + 8
        for i, name in enumerate(chunk):
            records.append(_queue_record(ctx, name, replies[i * width : (i + 1) * width], now, window_min))
    try:  # the dead-letter queues sbqueue workers wrote to (one set, whatever the number of jobs)
        registry = set(ctx.client.smembers(_dead.registry_key(ctx.prefix))) if records else set()
    except redis.ResponseError:  # not a set (not ours): DLQs are then recognised by their next letter only
        registry = set()
    _oldest_waiting(ctx, records, now)
    for rec in records:
        rec["workers"] = connected.get(rec["queue"], 0)
        rec["dead_letter"] = rec["dead_letter"] or rec["queue"] in registry
    return from_records("queues", records)


def _queue_record(ctx: Context, name: str, got: list[Any], now: int, window_min: int) -> dict[str, Any]:
    errors = []
    rec: dict[str, Any] = {"queue": name}
    for (col, _cmd, suffix), value in zip(_COUNT_READS, got, strict=False):
        if isinstance(value, Exception):
            errors.append(f"{suffix}: {value}")
            value = 0
        rec[col] = int(value or 0)
    n = len(_COUNT_READS)
    meta, wait_tail, paused_tail, prio_head = got[n : n + 4]
    meta = meta if isinstance(meta, dict) else {}
    rec["paused"] = "paused" in meta
    rec["version"] = meta.get("version")
    for col, field in (("global_concurrency", "concurrency"), ("rate_limit_max", "max"),
                       ("events_max_len", "opts.maxLenEvents")):  # fmt: skip
        value = _num(meta.get(field)) if field in meta else math.nan
        if field in meta and math.isnan(value):
            errors.append(f"meta.{field}: not a number: {meta[field]!r}")
        rec[col] = None if math.isnan(value) else int(value)
    duration = _num(meta.get("duration")) if "duration" in meta else math.nan
    rec["rate_limit_duration_s"] = duration / 1000 if rec["rate_limit_max"] is not None else math.nan
    candidates = [x for x in (wait_tail, paused_tail) if isinstance(x, str)]
    candidates += [x for x in (prio_head if isinstance(prio_head, list) else [])]
    rec["_candidates"] = candidates
    minute_now = now // 60000
    totals = []
    for meta_reply, data in (got[n + 4 : n + 6], got[n + 6 : n + 8]):
        series = metric_series(meta_reply, data)
        totals.append(sum(v for m, v in series.items() if m > minute_now - window_min))
    rec["completed_window"], rec["failed_window"] = totals
    done = totals[0] + totals[1]
    rec["failure_rate"] = totals[1] / done if done else math.nan
    rec["parse_error"] = "; ".join(errors) or None
    return rec


def _oldest_waiting(ctx: Context, records: list[dict[str, Any]], now: int) -> None:
    pipe = ctx.pipe()
    plan = []
    for rec in records:
        base = ctx.keys(rec["queue"]).base
        for job_id in rec["_candidates"]:
            pipe.hmget(base + job_id, "timestamp", "opts")
        plan.append(len(rec["_candidates"]))
    replies = pipe.execute(raise_on_error=False) if sum(plan) else []
    pos = 0
    for rec, count in zip(records, plan, strict=True):
        got = [v for v in replies[pos : pos + count] if not isinstance(v, Exception)]
        stamps = [_num(stamp) for stamp, _opts in got]
        rec["dead_letter"] = any(_dead.is_letter(opts) for _stamp, opts in got)  # a letter is next in line
        stamps = [s for s in stamps if not math.isnan(s)]
        pos += count
        oldest = min(stamps) if stamps else math.nan
        rec["oldest_waiting"] = oldest
        rec["oldest_waiting_age_s"] = (now - oldest) / 1000 if stamps else math.nan
        del rec["_candidates"]


# --- metrics() -------------------------------------------------------------------------------------------
def metrics(ctx: Context, queue: str, points: int = 10_080) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.metrics`."""
    keys = ctx.keys(queue)
    pipe = ctx.pipe()
    _metric_reads(pipe, keys, points)
    got = pipe.execute(raise_on_error=False)
    completed = metric_series(got[0], got[1])
    failed = metric_series(got[2], got[3])
    minutes = set(completed) | set(failed)
    if not minutes:
        return from_records("metrics", [])
    span = range(min(minutes), max(minutes) + 1)
    c = [completed.get(m, 0) for m in span]
    f = [failed.get(m, 0) for m in span]
    total = [a + b for a, b in zip(c, f, strict=True)]
    now_minute = ctx.now_ms() // 60000
    return build_frame(
        "metrics",
        {
            "minute": [m * 60000 for m in span],
            "completed": c,
            "failed": f,
            "total": total,
            "failure_rate": [b / t if t else math.nan for b, t in zip(f, total, strict=True)],
            "partial": [m == now_minute for m in span],
        },
        len(span),
    )


# --- schedulers() ----------------------------------------------------------------------------------------
def schedulers(ctx: Context, queue: str) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.schedulers`."""
    keys = ctx.keys(queue)
    now = ctx.now_ms()
    records = []
    start = 0
    while True:
        try:
            entries = ctx.client.zrange(keys.key("repeat"), start, start + 999, withscores=True)
        except redis.ResponseError as exc:
            records.append({"scheduler_id": None, "next_run": math.nan, "parse_error": f"{keys.key('repeat')}: {exc}",
                            "pending_job_exists": False, "legacy": False})  # fmt: skip
            break
        if not entries:
            break
        start += len(entries)
        pipe = ctx.pipe()
        for sid, score in entries:
            pipe.hgetall(keys.scheduler(sid))
            pipe.exists(keys.job(f"repeat:{sid}:{int(score)}"))
        got = pipe.execute(raise_on_error=False)
        for i, (sid, score) in enumerate(entries):
            records.append(_scheduler_record(sid, score, got[2 * i], got[2 * i + 1], now))
        if len(entries) < 1000:
            break
    return from_records("schedulers", records)


def _scheduler_record(sid: str, score: float, raw: Any, exists: Any, now: int) -> dict[str, Any]:
    errors = []
    if not isinstance(raw, dict):
        errors.append(f"scheduler hash unreadable: {raw}" if isinstance(raw, Exception) else "scheduler hash missing")
        raw = {}
    rec: dict[str, Any] = {
        "scheduler_id": sid, "name": raw.get("name"), "next_run": score, "next_in_s": (score - now) / 1000,
        "pattern": raw.get("pattern"), "tz": raw.get("tz"), "pending_job_id": f"repeat:{sid}:{int(score)}",
        "pending_job_exists": bool(exists) and not isinstance(exists, Exception),
        "legacy": bool(raw) and "ic" not in raw,
    }  # fmt: skip
    numbers = {}
    for field in ("every", "offset", "limit", "startDate", "endDate", "ic"):
        value = _num(raw.get(field)) if field in raw else math.nan
        if field in raw and math.isnan(value):
            errors.append(f"{field}: not a number: {raw[field]!r}")
        numbers[field] = value
    rec["every_s"] = numbers["every"] / 1000
    rec["offset_s"] = numbers["offset"] / 1000
    rec["limit"] = None if math.isnan(numbers["limit"]) else int(numbers["limit"])
    rec["iteration_count"] = None if math.isnan(numbers["ic"]) else int(numbers["ic"])
    rec["start_date"], rec["end_date"] = numbers["startDate"], numbers["endDate"]
    for field in ("data", "opts"):
        text = raw.get(field)
        try:
            rec[field] = json.loads(text) if text else {}
        except ValueError as exc:
            rec[field] = text
            errors.append(f"{field}: invalid JSON ({exc})")
    rec["parse_error"] = "; ".join(errors) or None
    return rec
