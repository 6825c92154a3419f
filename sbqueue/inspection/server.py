"""Redis itself as frames: INFO, clients, persistence, slow log, latency, memory, command stats."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import pandas as pd
import redis

from sbqueue._core.scripts import SPECS, source
from sbqueue.connection import cluster_nodes
from sbqueue.inspection._context import HMGET_SCRIPT, Context
from sbqueue.inspection.keyspace import MEMORY_SCRIPT
from sbqueue.inspection.queues import parse_client_name
from sbqueue.inspection.schemas import from_records

#: INFO sections read by info() when no section is given (unknown ones are simply empty on older servers)
INFO_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
                 "errorstats", "cluster", "keyspace", "commandstats", "latencystats")  # fmt: skip


def script_names() -> dict[str, str]:
    """sha1 digest -> script name, for every sbqueue Lua script (and the inspection reader)."""
    names = {hashlib.sha1(source(name).encode()).hexdigest(): name for name in SPECS}
    for script in (HMGET_SCRIPT, MEMORY_SCRIPT):
        names[script.sha] = script.name
    return names


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return [(prefix, value)]


def info_sections(ctx: Context, sections: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """``{section: INFO dict}`` in one pipeline; refused or unknown sections come back empty."""
    pipe = ctx.server.pipeline(transaction=False)
    for section in sections:
        pipe.info(section)
    got = pipe.execute(raise_on_error=False)
    return {s: (g if isinstance(g, dict) else {}) for s, g in zip(sections, got, strict=True)}


def info(ctx: Context, section: str | None = None) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.info`."""
    sections = (section,) if section else INFO_SECTIONS
    records = []
    for name, values in info_sections(ctx, sections).items():
        for field, value in values.items():
            for flat, v in _flatten(str(field), value):
                records.append({"section": name, "field": flat, "value": v, "number": _number(v)})
    return from_records("info", records)


def clients(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.clients`."""
    records = []
    for c in cluster_nodes.client_list(ctx.client):
        parsed = parse_client_name(c.get("name"), ctx.prefix) or {}
        rec: dict[str, Any] = {k: c.get(k) or None for k in ("name", "addr", "laddr", "user", "flags", "cmd")}
        for col, field in (("id", "id"), ("db", "db"), ("multi", "multi"), ("sub", "sub"), ("psub", "psub"),
                           ("qbuf", "qbuf"), ("omem", "omem"), ("tot_mem", "tot-mem")):  # fmt: skip
            num = _number(c.get(field))
            rec[col] = None if math.isnan(num) else int(num)
        rec.update(age_s=_number(c.get("age")), idle_s=_number(c.get("idle")),
                   blocked="b" in str(c.get("flags", "")), lib_name=c.get("lib-name") or None,
                   lib_ver=c.get("lib-ver") or None, queue=parsed.get("queue"),
                   role=parsed.get("role"))  # fmt: skip
        records.append(rec)
    return from_records("clients", records)


def config_values(ctx: Context) -> dict[str, str] | None:
    """CONFIG GET * (None when refused, e.g. on managed Redis)."""
    try:
        return dict(ctx.server.config_get("*"))
    except redis.ResponseError:
        return None


def persistence(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.persistence`."""
    p = info_sections(ctx, ("persistence",))["persistence"]
    config = config_values(ctx) or {}
    now = time.time()

    def flag(field: str) -> bool | None:
        return None if field not in p else bool(int(_number(p[field]) or 0))

    def num(field: str) -> int | None:
        value = _number(p.get(field))
        return None if math.isnan(value) else int(value)

    def secs(field: str) -> float:
        value = _number(p.get(field))
        return value if not math.isnan(value) and value >= 0 else math.nan

    last_save = _number(p.get("rdb_last_save_time"))
    row = {
        "loading": flag("loading"), "aof_enabled": flag("aof_enabled"),
        "appendfsync": config.get("appendfsync"), "save": config.get("save"),
        "rdb_changes_since_last_save": num("rdb_changes_since_last_save"),
        "rdb_bgsave_in_progress": flag("rdb_bgsave_in_progress"), "rdb_last_save": last_save * 1000,
        "last_save_age_s": now - last_save, "rdb_last_bgsave_status": p.get("rdb_last_bgsave_status"),
        "rdb_last_bgsave_s": secs("rdb_last_bgsave_time_sec"),
        "aof_rewrite_in_progress": flag("aof_rewrite_in_progress"),
        "aof_rewrite_scheduled": flag("aof_rewrite_scheduled"),
        "aof_last_bgrewrite_status": p.get("aof_last_bgrewrite_status"),
        "aof_last_write_status": p.get("aof_last_write_status"),
        "aof_last_rewrite_s": secs("aof_last_rewrite_time_sec"), "aof_current_size": num("aof_current_size"),
        "aof_base_size": num("aof_base_size"), "aof_delayed_fsync": num("aof_delayed_fsync"),
    }  # fmt: skip
    return from_records("persistence", [row])


def slowlog(ctx: Context, n: int = 128) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.slowlog`."""
    known = script_names()
    records = []
    for entry in ctx.server.slowlog_get(n):
        command = entry.get("command")
        command = command.decode(errors="replace") if isinstance(command, bytes) else str(command or "")
        args = command.split(" ")
        script = None
        verb = args[0].upper() if args else ""
        if verb in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            script = known.get(args[1].lower(), f"unknown script {args[1][:12]}")
        elif verb in ("EVAL", "EVAL_RO"):
            script = "inline EVAL"
        name = entry.get("client_name")
        records.append({
            "id": entry.get("id"), "ts": _number(entry.get("start_time")) * 1000,
            "duration_s": _number(entry.get("duration")) / 1e6, "command": command, "args": args, "script": script,
            "client_addr": entry.get("client_address") or None, "client_name": name or None,
        })  # fmt: skip
    return from_records("slowlog", records)


def latency(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.latency`."""
    records = []
    for item in ctx.server.execute_command("LATENCY", "LATEST") or []:
        event, stamp, latest, peak = (list(item) + [None] * 4)[:4]
        records.append({"event": event, "last_spike": _number(stamp) * 1000, "latest_s": _number(latest) / 1000,
                        "max_s": _number(peak) / 1000})  # fmt: skip
    df = from_records("latency", records)
    df.attrs["doctor"] = _doctor(ctx, "LATENCY")
    return df


def _doctor(ctx: Context, command: str) -> str:
    try:
        text = ctx.server.execute_command(command, "DOCTOR")
    except redis.ResponseError as exc:
        return f"unavailable: {exc}"
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def memory(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.memory`."""
    raw = ctx.server.execute_command("MEMORY", "STATS")
    stats = _pairs(raw)
    records = [{"metric": k, "value": v, "number": _number(v)} for k, v in _flatten("", stats)]
    doctor = _doctor(ctx, "MEMORY")
    records.append({"metric": "doctor", "value": doctor, "number": math.nan})
    df = from_records("memory", records)
    df.attrs["doctor"] = doctor
    return df


def _pairs(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {str(k): _pairs(v) for k, v in raw.items()}
    if isinstance(raw, list) and len(raw) % 2 == 0 and all(isinstance(k, str) for k in raw[0::2]):
        return {k: _pairs(v) for k, v in zip(raw[0::2], raw[1::2], strict=True)}
    return raw


def commandstats(ctx: Context) -> pd.DataFrame:
    """See :meth:`sbqueue.inspection.Inspector.commandstats`."""
    got = info_sections(ctx, ("commandstats", "latencystats"))
    stats, lat = got["commandstats"], got["latencystats"]
    rows: list[dict[str, Any]] = []
    for field, value in stats.items():
        if not isinstance(value, dict):
            continue
        command = str(field).removeprefix("cmdstat_")
        pct = lat.get(f"latency_percentiles_usec_{command}", {})
        pct = pct if isinstance(pct, dict) else {}
        rows.append({
            "command": command, "calls": int(_number(value.get("calls")) or 0),
            "total_s": _number(value.get("usec")) / 1e6, "per_call_s": _number(value.get("usec_per_call")) / 1e6,
            "rejected_calls": value.get("rejected_calls"), "failed_calls": value.get("failed_calls"),
            "p50_s": _number(pct.get("p50")) / 1e6, "p99_s": _number(pct.get("p99")) / 1e6,
            "p999_s": _number(pct.get("p99.9")) / 1e6,
        })  # fmt: skip
    rows.sort(key=lambda r: -(r["total_s"] if not math.isnan(r["total_s"]) else 0))
    grand = sum(r["total_s"] for r in rows if not math.isnan(r["total_s"])) or 1.0
    for r in rows:
        r["share"] = r["total_s"] / grand
    return from_records("commandstats", rows)
