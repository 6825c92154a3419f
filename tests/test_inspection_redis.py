"""Inspection SDK, Redis side: INFO, clients, persistence, slow log, latency, memory, keys, audit, alerts."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import sbqueue
from sbqueue._core.scripts import SPECS, source
from sbqueue.inspection import Inspector, audit
from sbqueue.inspection.keyspace import ROLES, classify
from sbqueue.inspection.schemas import check_frame
from sbqueue.inspection.server import script_names

SEED_ALERTS = ("RedisDown", "RedisHighMemoryUsage", "RedisTooManyConnections", "RedisRejectedConnections",
               "RedisHighKeyEvictionRate", "RedisReplicationLag", "RedisRDBSaveFailure", "RedisAOFRewriteFailure",
               "RedisSlowQueries", "RedisHighCPUUsage")  # fmt: skip
QUEUE_ALERTS = ("QueueBacklogWithoutWorkers", "QueueActiveJobsWithoutWorkers", "QueueStalledJobs",
                "QueueOldestWaitingTooOld", "QueueHighFailureRate")  # fmt: skip


@pytest.fixture
def insp(r: redis.Redis, prefix: str) -> Iterator[Inspector]:
    inspector = Inspector(r, prefix=prefix, progress=False)
    yield inspector
    inspector.close()


def test_info_is_typed(insp: Inspector) -> None:
    df = insp.info()
    check_frame("info", df)
    values = df.set_index(["section", "field"]).value
    assert isinstance(values[("server", "redis_version")], str)
    assert isinstance(values[("memory", "used_memory")], int)
    assert {"server", "clients", "memory", "persistence", "stats", "commandstats"} <= set(df.section)
    assert any(f.startswith("cmdstat_") and f.endswith(".calls") for f in df.field)  # nested values flattened
    mem = insp.info("memory")
    assert set(mem.section) == {"memory"} and mem.number.notna().any()
    assert insp.info("no-such-section").empty


def test_clients_and_persistence(insp: Inspector, prefix: str) -> None:
    conn = redis.Redis.from_url(insp.client.sbqueue_url)
    conn.client_setname(f"{prefix}:cTE=:w:x")  # base64("q1") = cTE=
    try:
        df = insp.clients()
    finally:
        conn.close()
    check_frame("clients", df)
    ours = df[df.name == f"{prefix}:cTE=:w:x"].iloc[0]
    assert ours.queue == "q1" and ours.role == "worker" and ours.age_s >= 0 and ours.id > 0
    assert df.cmd.str.startswith("client").any()  # "client" on 6.2, "client|list" on 7
    p = insp.persistence()
    check_frame("persistence", p)
    assert len(p) == 1 and p.rdb_last_save.iloc[0].year >= 2020 and p.aof_enabled.notna().all()


def test_slowlog_maps_script_digests(insp: Inspector, monkeypatch: pytest.MonkeyPatch) -> None:
    check_frame("slowlog", insp.slowlog(5))
    names = script_names()
    sha = hashlib.sha1(source("finish_and_fetch").encode()).hexdigest()
    assert names[sha] == "finish_and_fetch" and len(names) == len(SPECS) + 2  # + the inspection scripts
    assert {"sbqueue.inspection:hmget", "sbqueue.inspection:memory"} <= set(names.values())
    fake = [
        {"id": 7, "start_time": 1_795_000_000, "duration": 25_000, "command": f"EVALSHA {sha} 21 a b",
         "client_address": "1.2.3.4:5", "client_name": "bull:d29yaw==:w:w1"},
        {"id": 6, "start_time": 1_795_000_000, "duration": 12_000, "command": "EVALSHA " + "0" * 40 + " 0"},
        {"id": 5, "start_time": 1_795_000_000, "duration": 11_000, "command": "KEYS *", "client_address": ""},
    ]  # fmt: skip
    monkeypatch.setattr(insp.client, "slowlog_get", lambda n: fake[:n])
    df = insp.slowlog(3)
    check_frame("slowlog", df)
    assert df.script.tolist()[:2] == ["finish_and_fetch", "unknown script 000000000000"] and pd.isna(df.script[2])
    assert df.duration_s.tolist() == [0.025, 0.012, 0.011] and df.ts[0] == pd.Timestamp(1_795_000_000, unit="s",
                                                                                          tz="UTC")  # fmt: skip
    assert df.args[0][:2] == ["EVALSHA", sha] and pd.isna(df.client_addr[2])


def test_latency_memory_commandstats(insp: Inspector) -> None:
    lat = insp.latency()
    check_frame("latency", lat)
    assert isinstance(lat.attrs["doctor"], str) and lat.attrs["doctor"]
    mem = insp.memory()
    check_frame("memory", mem)
    stats = mem.set_index("metric")
    assert stats.number["peak.allocated"] > 0 and stats.value["doctor"] == mem.attrs["doctor"]
    insp.client.ping()
    cs = insp.commandstats()
    check_frame("commandstats", cs)
    # Redis 7 also lists commands that were only ever rejected (e.g. by an ACL): calls 0, rejected_calls > 0
    assert "ping" in set(cs.command) and ((cs.calls > 0) | (cs.rejected_calls.fillna(0) > 0)).all()
    assert cs.total_s.is_monotonic_decreasing and abs(cs.share.sum() - 1) < 1e-6


def test_bigkeys_and_memory_by_queue(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    q = sbqueue.Queue("mem", r, prefix=prefix)
    q.add_bulk([{"name": "big" if i == 0 else "small", "data": {"blob": "x" * (20_000 if i == 0 else 10)}}
                for i in range(30)])  # fmt: skip
    q.add_job_log("1", "a log line")
    r.set(f"{prefix}:loose", "v", ex=100)
    df = insp.bigkeys(match=f"{prefix}:*", top=3)
    check_frame("bigkeys", df)
    top = df.iloc[0]
    assert top.key == f"{prefix}:mem:1" and top.type == "hash" and top.role == "job hash" and top.queue == "mem"
    assert top.bytes > 20_000 and top.length >= 5 and pd.isna(top.ttl_s)
    assert df.bytes.is_monotonic_decreasing and len(df) == 3 and df.attrs["scanned"] >= 34
    sampled = insp.bigkeys(match=f"{prefix}:*", top=50, sample=5)
    assert sampled.attrs["scanned"] == 5 and len(sampled) == 5 and sampled.attrs["sampled"]
    loose = insp.bigkeys(match=f"{prefix}:loose")
    assert loose.role.tolist() == ["other"] and 0 < loose.ttl_s[0] <= 100 and loose.length[0] == 1
    by_queue = insp.memory_by_queue()
    check_frame("memory_by_queue", by_queue)
    roles = by_queue.set_index(["queue", "role"])
    assert roles.loc[("mem", "job hash"), "keys"] == 30 and roles.loc[("mem", "job logs"), "keys"] == 1
    assert set(by_queue.role) <= set(ROLES) and abs(by_queue.share.sum() - 1) < 1e-9
    assert by_queue.bytes.is_monotonic_decreasing and by_queue.iloc[0].role == "job hash"


def test_server_side_classification_matches_python(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    """The memory script's Lua classifier and :func:`classify` agree, key shape by key shape."""
    shapes = ["wait", "metrics:failed:data", "42", "42:logs", "repeat:s1", "repeat:s1:1795", "repeat:s1:1795:lock",
              "de:x", "dn:y", "p:dependencies", "p:unsuccessful", "stalled-check", "weird:id:here", "", "repeat:",
              "7:", "a:b:lock", ":lock", "12:logs", "repeat:s1:lock", "p:processed", "p:failed"]  # fmt: skip
    for i, shape in enumerate(shapes):
        r.set(f"{prefix}:q{i}:{shape}", "v")
    for suffix in ("nodes", "subs", "n1:inbox", "n1:node", "mid", "t:ret", "unknown-word"):  # BullMQ 6.7 relay keys
        r.set(f"{prefix}::relay:{{ns}}:{suffix}", "v")
    r.set(f"{prefix}::relay:namespaces", "v")
    r.set(f"{prefix}:noqueue", "v")
    r.set(f"{prefix}::empty-queue", "v")
    lua = insp.memory_by_queue()
    assert insp._ctx.use_script is True
    top = insp.bigkeys(match=f"{prefix}:*", top=5)
    insp._ctx.use_script = False
    piped = insp.memory_by_queue()
    pd.testing.assert_frame_equal(lua, piped)
    pd.testing.assert_frame_equal(top, insp.bigkeys(match=f"{prefix}:*", top=5))
    expected = {(q or "", role) for q, role, _ in (classify(k, prefix) for k in r.scan_iter(f"{prefix}:*"))}
    assert {(q if isinstance(q, str) else "", role) for q, role in zip(lua.queue, lua.role, strict=True)} == expected


def test_classify_roles() -> None:
    cases = {
        "bull:q:wait": ("q", "wait list", None), "bull:q:metrics:failed:data": ("q", "metrics", None),
        "bull:q:42": ("q", "job hash", "42"), "bull:q:42:logs": ("q", "job logs", "42"),
        "bull:q:repeat:s1": ("q", "scheduler", None), "bull:q:repeat:s1:1795": ("q", "job hash", "repeat:s1:1795"),
        "bull:q:repeat:s1:1795:lock": ("q", "job lock", "repeat:s1:1795"), "bull:q:de:x": ("q", "dedup key", None),
        "bull:q:p:dependencies": ("q", "job dependencies", "p"), "other:q:wait": (None, "other", None),
        "bull:q": (None, "other", None), "bull:q:dn:x": ("q", "dedup next", None),
        "bull:q:p:processed": ("q", "child results", "p"), "bull:q:p:failed": ("q", "ignored child failures", "p"),
        "bull:q:p:unsuccessful": ("q", "failed children", "p"), "bull:q:failed": ("q", "failed set", None),
        # BullMQ 6.7's relay keys: <prefix>::relay:{<namespace>}:...
        "bull::relay:{ns}:nodes": (None, "relay nodes", None),
        "bull::relay:{ns}:subs": (None, "relay subscriptions", None),
        "bull::relay:{ns}:n1:inbox": (None, "relay inbox", None),
        "bull::relay:{ns}:n1:node": (None, "relay node", None),
        "bull::relay:namespaces": (None, "relay namespaces", None), "bull::relay:{ns}:mid": (None, "relay", None),
    }  # fmt: skip
    for key, expected in cases.items():
        assert classify(key, "bull") == expected, key
    assert classify("{t}:q:events", "{t}") == ("q", "events stream", None)


def test_config_audit(r: redis.Redis, prefix: str, insp: Inspector, monkeypatch: pytest.MonkeyPatch) -> None:
    q = sbqueue.Queue("kept", r, prefix=prefix)
    jobs = q.add_bulk([{"name": "x", "data": {}} for _ in range(6)])
    r.zadd(f"{prefix}:kept:completed", {j.id: 1 for j in jobs})  # a big completed set, no removeOnComplete
    monkeypatch.setattr(audit, "_RETENTION_MIN", 5)
    df = insp.config_audit()
    check_frame("config_audit", df)
    server = df[df.scope == "server"].set_index("setting")
    for setting in ("maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "save",
                    "latency-monitor-threshold", "slowlog-log-slower-than", "slowlog-max-len", "timeout",
                    "maxclients"):  # fmt: skip
        assert setting in server.index, setting
    policy = server.loc["maxmemory-policy"]
    assert policy.recommended == "noeviction"
    expected = "ok" if policy.value == "noeviction" else "critical" if policy.value.startswith("allkeys") else "warning"
    assert policy.severity == expected
    assert set(df.severity) <= {"ok", "info", "warning", "critical", "unknown"}
    kept = df[df.scope == "kept"].set_index("setting")
    assert kept.loc["retention completed"].severity == "warning" and kept.loc["retention failed"].severity == "ok"
    assert kept.loc["events maxLen"].value == "10000"


def test_config_audit_without_config_get(insp: Inspector, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any) -> Any:
        raise redis.ResponseError("NOPERM no permission for config|get")

    monkeypatch.setattr(insp.client, "config_get", refuse)
    df = insp.config_audit()
    assert df.iloc[0].setting == "CONFIG GET" and (df[df.scope == "server"].severity == "unknown").all()


def test_alerts(r: redis.Redis, prefix: str, insp: Inspector) -> None:
    q = sbqueue.Queue("backlog", r, prefix=prefix)
    q.add("x", {})
    r.rpush(f"{prefix}:backlog:active", "ghost")
    df = insp.alerts(window_s=0.2)
    check_frame("alerts", df)
    server = df[df.scope == "server"]
    assert set(SEED_ALERTS) <= set(server.name)
    assert not server.set_index("name").loc["RedisDown"].firing
    queue = df[df.scope == "backlog"].set_index("name")
    assert set(queue.index) == set(QUEUE_ALERTS)
    assert queue.loc["QueueBacklogWithoutWorkers"].firing and queue.loc["QueueBacklogWithoutWorkers"].value == 1
    assert queue.loc["QueueStalledJobs"].firing and queue.loc["QueueActiveJobsWithoutWorkers"].firing
    assert not queue.loc["QueueHighFailureRate"].firing and df.evidence.notna().all()


def test_alerts_when_redis_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    df = Inspector(client, prefix="x", progress=False).alerts(window_s=0)
    check_frame("alerts", df)
    assert df.name.tolist() == ["RedisDown"] and df.firing.tolist() == [True]
