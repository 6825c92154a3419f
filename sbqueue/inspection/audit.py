"""config_audit() — settings a queue Redis needs — and alerts() — the seed guide's alerts, evaluated now.

Alert names, thresholds and severities match ``deploy/prometheus/alerts.yml``; rates come from two INFO
samples ``window_s`` apart instead of Prometheus' 5-minute windows.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pandas as pd
import redis

from sbqueue.connection import full as _full
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection._context import Context
from sbqueue.inspection.queues import queues as _queues
from sbqueue.inspection.schemas import from_records
from sbqueue.inspection.server import config_values, info_sections

_RETENTION_MIN = 10_000  # finished jobs above which a missing removeOn* is reported


def _n(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def config_audit(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.config_audit`."""
    cfg = config_values(ctx)
    rows: list[dict[str, Any]] = []

    def add(setting: str, value: Any, recommended: str, severity: str, why: str, scope: str = "server") -> None:
        rows.append({"scope": scope, "setting": setting, "value": None if value is None else str(value),
                     "recommended": recommended, "severity": severity, "why": why})  # fmt: skip

    if cfg is None:
        add("CONFIG GET", None, "allowed for the inspecting user", "unknown",
            "CONFIG GET was refused: grant +config|get or check these settings in the provider's console")  # fmt: skip
        cfg = {}

    def get(name: str) -> str | None:
        return cfg.get(name)

    def judge(name: str, recommended: str, rule: Any, why_bad: str, why_ok: str) -> None:
        value = get(name)
        if value is None:
            add(name, None, recommended, "unknown", "could not read the setting")
            return
        severity = rule(value)
        add(name, value, recommended, severity, why_ok if severity == "ok" else why_bad)

    judge("maxmemory-policy", "noeviction",
          lambda v: "ok" if v == "noeviction" else ("critical" if v.startswith("allkeys") else "warning"),
          "an evicting policy silently deletes job hashes, state keys and locks: jobs vanish without any error "
          "(the common 'allkeys-lru' advice is for caches, never for queues)",
          "a full Redis refuses writes with an OOM error instead of dropping jobs")  # fmt: skip
    judge("maxmemory", "set, with headroom (e.g. 80% of RAM)", lambda v: "warning" if v == "0" else "ok",
          "no limit: Redis grows until the OS kills it (all unsaved jobs lost); with a limit and noeviction, "
          "producers get a clear OOM error instead", "memory is bounded")  # fmt: skip
    judge("appendonly", "yes", lambda v: "ok" if v == "yes" else "warning",
          "without AOF a crash loses every job written since the last RDB snapshot",
          "every write is logged")  # fmt: skip
    judge("appendfsync", "everysec", lambda v: {"everysec": "ok", "always": "info"}.get(v, "warning"),
          "'no' leaves flushing to the OS (up to ~30 s of jobs lost on a power cut); 'always' is safe but slow",
          "at most ~1 s of writes lost on a crash")  # fmt: skip
    aof = get("appendonly") == "yes"
    judge("save", "900 1 300 10 60 10000 (or AOF)",
          lambda v: "ok" if v.strip() else ("info" if aof else "critical"),
          "no snapshots" + (" (AOF still protects the data; RDB speeds restarts and backups)" if aof
                            else " and no AOF: a restart loses every queue"),
          "periodic snapshots for restarts and backups")  # fmt: skip
    judge("latency-monitor-threshold", "100 (ms)", lambda v: "info" if v == "0" else "ok",
          "the latency monitor is off: latency() and LATENCY DOCTOR see nothing",
          "latency spikes are recorded")  # fmt: skip
    judge("slowlog-log-slower-than", "10000 (µs)",
          lambda v: "warning" if _n(v) < 0 else ("info" if _n(v) > 100_000 else "ok"),
          "the slow log misses the scripts and commands that stall every worker",
          "slow commands are logged")  # fmt: skip
    judge("slowlog-max-len", ">= 128", lambda v: "info" if _n(v) < 128 else "ok",
          "a short slow log forgets incidents quickly", "enough history to investigate")  # fmt: skip
    judge("timeout", "0", lambda v: "ok" if v == "0" else "warning",
          "the server drops idle connections (producers, event readers), which must then reconnect",
          "idle connections are kept (BullMQ expects this)")  # fmt: skip
    judge("maxclients", ">= 10000", lambda v: "info" if _n(v) < 10_000 else "ok",
          "every worker holds 2+ connections; a low limit rejects workers at scale",
          "room for many workers")  # fmt: skip
    for q in _queues(ctx).to_dict("records"):
        _audit_queue(ctx, q, add)
    return from_records("config_audit", rows)


def _audit_queue(ctx: Context, q: dict[Any, Any], add: Any) -> None:
    max_len = None if q["events_max_len"] is pd.NA else int(q["events_max_len"])
    recommended = "10000 (default); XLEN near it"
    if max_len is None:
        add("events maxLen", None, recommended, "info", "meta has no opts.maxLenEvents (10000 is used)", q["queue"])
    elif q["events"] > 2 * max_len + 1000:
        add("events maxLen", max_len, recommended, "warning",
            f"the stream holds {q['events']} entries, far above its maxLen: something writes events without "
            "trimming", q["queue"])  # fmt: skip
    else:
        add("events maxLen", max_len, recommended, "info" if max_len > 100_000 else "ok",
            "a long events stream costs memory" if max_len > 100_000 else f"stream holds {q['events']} entries",
            q["queue"])  # fmt: skip
    keys = ctx.keys(q["queue"])
    for state, option, count in (("completed", "removeOnComplete", q["completed"]),
                                 ("failed", "removeOnFail", q["failed"])):  # fmt: skip
        if count < _RETENTION_MIN:
            add(f"retention {state}", count, f"{option} set, or < {_RETENTION_MIN} kept", "ok",
                f"{count} {state} jobs kept", q["queue"])  # fmt: skip
            continue
        ids = ctx.client.zrevrange(keys.key(state), 0, 19)
        rows = ctx.hmget_many(keys.base, ids, ["opts"])
        with_option = 0
        for row in rows:
            try:
                opts = json.loads(row[0]) if isinstance(row, list) and row[0] else {}
            except ValueError:
                opts = {}
            with_option += isinstance(opts, dict) and opts.get(option) not in (None, False)
        severity = "info" if with_option else "warning"
        add(f"retention {state}", count, f"{option} (job or worker option)", severity,
            f"{count} {state} jobs kept; " + (f"{with_option}/{len(rows)} recent jobs set {option}, so the worker "
            "or a later clean() trims them" if with_option else f"none of the {len(rows)} newest jobs set {option}: "
            "unless the worker sets it, every finished job stays forever"), q["queue"])  # fmt: skip


# --- alerts ---------------------------------------------------------------------------------------------
_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu", "errorstats")


def _sample(ctx: Context) -> tuple[dict[str, Any], int, float]:
    got = info_sections(ctx, _SECTIONS)
    merged: dict[str, Any] = {}
    for values in got.values():
        merged.update(values)
    try:
        entries = ctx.server.slowlog_get(1)
        last_id = int(entries[0]["id"]) if entries else -1
    except redis.ResponseError:
        last_id = -1
    return merged, last_id, time.monotonic()


#: longest sampling window alerts() accepts (it sleeps that long between the two INFO samples)
MAX_WINDOW_S = 3600.0


def alerts(ctx: Context, window_s: float = 10) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.alerts`."""
    if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not 0 <= window_s <= MAX_WINDOW_S:
        raise InvalidOptionError(f"window_s must be a number of seconds 0..{MAX_WINDOW_S:g}, got {window_s!r}",
                                 option="window_s")  # fmt: skip
    rows: list[dict[str, Any]] = []

    def add(name: str, firing: bool, severity: str, value: float, threshold: float, evidence: str,
            scope: str = "server") -> None:  # fmt: skip
        rows.append({"name": name, "scope": scope, "firing": bool(firing), "severity": severity,
                     "value": float(value), "threshold": float(threshold), "evidence": evidence})  # fmt: skip

    try:
        ctx.client.ping()
        first, slow1, t1 = _sample(ctx)
        time.sleep(max(float(window_s), 0.0))
        now, slow2, t2 = _sample(ctx)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        add("RedisDown", True, "critical", 1, 0, f"cannot reach Redis: {exc}")
        return from_records("alerts", rows)
    add("RedisDown", False, "critical", 0, 0, f"PING ok; redis {now.get('redis_version', '?')}")
    elapsed = max(t2 - t1, 1e-3)

    def delta(field: str) -> float:
        return max(_n(now.get(field)) - _n(first.get(field)), 0.0)

    used, limit = _n(now.get("used_memory")), _n(now.get("maxmemory"))
    pct = used / limit * 100 if limit > 0 else math.nan
    add("RedisHighMemoryUsage", pct > 90, "critical", pct, 90,
        f"used_memory {used:.0f} B of maxmemory {limit:.0f} B" if limit > 0 else
        f"maxmemory not set (used_memory {used:.0f} B); the alert needs a limit")  # fmt: skip
    full, full_evidence = _full.state(now)  # at maxmemory under noeviction: every write is refused
    add("RedisFull", full, "critical", float(full), 0, full_evidence)
    clients = _n(now.get("connected_clients"))
    add("RedisTooManyConnections", clients > 8000, "warning", clients, 8000,
        f"connected_clients {clients:.0f}, maxclients {now.get('maxclients', '?')}")  # fmt: skip
    rejected = delta("rejected_connections")
    add("RedisRejectedConnections", rejected > 0, "critical", rejected, 0,
        f"{rejected:.0f} rejected in {elapsed:.1f} s (total {now.get('rejected_connections', '?')})")  # fmt: skip
    evict_rate = delta("evicted_keys") / elapsed
    add("RedisHighKeyEvictionRate", evict_rate > 100, "critical", evict_rate, 100,
        f"{delta('evicted_keys'):.0f} keys evicted in {elapsed:.1f} s")  # fmt: skip
    lag, lag_evidence = _replication_lag(now)
    add("RedisReplicationLag", lag > 30, "warning", lag, 30, lag_evidence)
    rdb = now.get("rdb_last_bgsave_status", "ok")
    add("RedisRDBSaveFailure", rdb != "ok", "critical", float(rdb != "ok"), 0, f"rdb_last_bgsave_status={rdb}")
    aof = now.get("aof_last_bgrewrite_status", "ok")
    add("RedisAOFRewriteFailure", aof != "ok", "warning", float(aof != "ok"), 0,
        f"aof_last_bgrewrite_status={aof}, aof_last_write_status={now.get('aof_last_write_status', 'ok')}")  # fmt: skip
    slow_rate = max(slow2 - slow1, 0) / elapsed
    add("RedisSlowQueries", slow_rate > 10, "warning", slow_rate, 10,
        f"{max(slow2 - slow1, 0)} new slow-log entries in {elapsed:.1f} s")  # fmt: skip
    cpu = (delta("used_cpu_sys") + delta("used_cpu_user")) / elapsed * 100
    add("RedisHighCPUUsage", cpu > 80, "warning", cpu, 80, f"{cpu:.1f}% of one core over {elapsed:.1f} s")
    aof_on = bool(_n(now.get("aof_enabled")) == 1)
    add("RedisPersistenceDisabled", not aof_on, "warning", float(not aof_on), 0,
        f"aof_enabled={now.get('aof_enabled')}")  # fmt: skip
    evicted = _n(now.get("evicted_keys"))
    add("RedisEvictedKeysOnQueueRedis", evicted > 0, "critical", evicted, 0,
        f"evicted_keys={evicted:.0f} since the server started (policy {now.get('maxmemory_policy', '?')})")  # fmt: skip
    _queue_alerts(ctx, add)
    return from_records("alerts", rows)


def _replication_lag(info: dict[str, Any]) -> tuple[float, str]:
    if info.get("role") == "slave":
        if info.get("master_link_status") != "up":
            return math.inf, f"replica link to the primary is {info.get('master_link_status')}"
        last = _n(info.get("master_last_io_seconds_ago"))
        return last, f"replica: last I/O from the primary {last:.0f} s ago"
    lags = [(k, _n(v.get("lag"))) for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    if not lags:
        return 0.0, "primary without replicas"
    worst = max(lags, key=lambda kv: kv[1])
    return worst[1], f"worst replica {worst[0]} acknowledged {worst[1]:.0f} s ago"


def _queue_alerts(ctx: Context, add: Any) -> None:
    q: dict[Any, Any]
    for q in _queues(ctx, window_min=10).to_dict("records"):
        backlog = q["waiting"] + q["prioritized"]
        idle = backlog > 0 and q["workers"] == 0 and not q["paused"]
        add("QueueBacklogWithoutWorkers", idle, "critical", backlog, 0,
            f"{backlog} ready jobs, {q['workers']} workers connected" + (" (paused)" if q['paused'] else ""),
            q["queue"])  # fmt: skip
        add("QueueActiveJobsWithoutWorkers", q["active"] > 0 and q["workers"] == 0, "warning", q["active"], 0,
            f"{q['active']} active jobs, {q['workers']} workers connected", q["queue"])  # fmt: skip
        stalled = _unlocked_active(ctx, q["queue"]) if q["active"] else 0
        add("QueueStalledJobs", stalled > 0, "warning", stalled, 0,
            f"{stalled} of {q['active']} active jobs have no lock (checked up to 1000)", q["queue"])  # fmt: skip
        age = q["oldest_waiting_age_s"]
        add("QueueOldestWaitingTooOld", bool(age > 600) and not q["paused"], "warning", age, 600,
            f"oldest ready job waited {age:.0f} s" if not math.isnan(age) else "no waiting jobs",
            q["queue"])  # fmt: skip
        rate = q["failure_rate"]
        add("QueueHighFailureRate", bool(rate > 0.1), "warning", rate, 0.1,
            f"{q['failed_window']} failed / {q['completed_window'] + q['failed_window']} finished in the last 10 min "
            "(BullMQ metrics)", q["queue"])  # fmt: skip


def _unlocked_active(ctx: Context, queue: str) -> int:
    keys = ctx.keys(queue)
    ids = ctx.client.lrange(keys.key("active"), 0, 999)
    pipe = ctx.pipe()
    for job_id in ids:
        pipe.exists(keys.lock(job_id))
    return sum(1 for ok in pipe.execute(raise_on_error=False) if ok == 0) if ids else 0
