"""The audit trail (<prefix>:sbqueue:audit): every operator action from a runbook, a widget or the command line
is recorded with who/what/where; nothing is recorded outside those surfaces; a read-only inspector reads it and
never writes; the exporter counts actions."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

import sbqueue
from sbqueue._core import audit as record
from sbqueue.engine import audit
from sbqueue.inspection import Inspector
from sbqueue.ops.exporter import QueueCollector
from sbqueue.workbench import runbook, scenarios


def trail(r: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [record.decode(i, f) for i, f in r.xrange(record.key(prefix))]


def test_nothing_is_recorded_outside_an_operator_surface(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    q.add("x", {})
    q.pause()
    q.resume()
    q.clean(0, 10, "wait")
    assert not r.exists(record.key(prefix))


def test_each_management_call_writes_one_entry_with_the_right_fields(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    jobs = [q.add("x", {"i": i}) for i in range(3)]
    delayed = q.add("later", {}, delay=60_000)
    with audit.acting("widget:JobBrowser", notebook="triage.ipynb"):
        q.pause()
        q.resume()
        removed = q.clean(0, 2, "wait")
        q.promote_job(delayed.id)
        q.remove(jobs[2].id)
        q.set_global_concurrency(4)
        with pytest.raises(sbqueue.JobNotFoundError):
            q.retry_job("missing")
    rows = trail(r, prefix)
    assert [row["action"] for row in rows] == ["pause", "resume", "clean", "promote", "remove",
                                               "set-global-concurrency", "retry"]
    clean = rows[2]
    assert clean["count"] == 2 and sorted(clean["ids"]) == sorted(removed)
    assert clean["params"] == {"grace_ms": 0, "limit": 2, "state": "wait"}
    assert rows[3]["ids"] == [delayed.id] and rows[4]["ids"] == [jobs[2].id]
    assert rows[6]["result"].startswith("error: JobNotFoundError") and rows[6]["ids"] == []
    for row in rows:
        assert row["queue"] == "a" and row["mode"] == "applied" and row["source"] == "widget:JobBrowser"
        assert row["notebook"] == "triage.ipynb" and row["pid"] == os.getpid()
        assert row["user"] == getpass.getuser() and row["host"] == socket.gethostname()
    assert all(row["result"] == "ok" for row in rows[:6])


def test_ids_are_capped_but_the_count_is_not(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    q.add_bulk([{"name": "x", "data": {"i": i}} for i in range(record.MAX_IDS + 30)])
    with audit.acting("cli:test"):
        q.clean(0, 0, "wait")
    (row,) = trail(r, prefix)
    assert row["count"] == record.MAX_IDS + 30 and len(row["ids"]) == record.MAX_IDS


def test_async_queue_calls_are_recorded_too(redis_url: str, prefix: str, r: redis.Redis) -> None:
    async def main() -> None:
        q = sbqueue.AsyncQueue("aq", redis_url, prefix=prefix)
        try:
            with audit.acting("runbook:test"):
                await q.pause()
                await q.drain()
        finally:
            await q.close()

    asyncio.run(main())
    assert [(row["action"], row["queue"]) for row in trail(r, prefix)] == [("pause", "aq"), ("drain", "aq")]


def test_a_runbook_records_what_it_applied_and_what_a_dry_run_planned(r: redis.Redis, prefix: str) -> None:
    scenarios.paused(r, prefix, "p", jobs=5)
    finding = runbook.diagnose_stuck("p", r, prefix, watch_s=0.1)
    assert finding.record_dry_run() == 1
    finding.apply(confirm=True)
    rows = trail(r, prefix)
    assert [(row["action"], row["mode"], row["result"]) for row in rows] == [
        ("resume", "dry-run", "planned"), ("resume", "applied", "ok")]
    assert {row["source"] for row in rows} == {"runbook:stuck-jobs"} and rows[0]["count"] == 5


def test_a_failing_trail_write_never_breaks_the_action(r: redis.Redis, prefix: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    r.set(record.key(prefix), "not a stream")  # XADD fails with WRONGTYPE
    q = sbqueue.Queue("a", r, prefix=prefix)
    with audit.acting("cli:test"):
        q.pause()
        q.resume()
    assert not q.is_paused()
    assert sum("audit entry not written" in m for m in caplog.messages) <= 1
    assert Inspector(r, prefix).audit().empty  # a garbled trail reads as empty, no exception


def test_inspector_reads_the_trail_with_a_read_only_user_and_filters(r: redis.Redis, prefix: str,
                                                                     redis_url: str) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    other = sbqueue.Queue("b", r, prefix=prefix)
    with audit.acting("widget:QueueDashboard"):
        q.pause()
        other.pause()
        q.resume()
    user = f"sbq-audit-{os.getpid()}"
    r.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw-1234", *sbqueue.inspection.INSPECTOR_ACL.split())
    try:
        host = redis_url.split("://", 1)[1].rsplit("@", 1)[-1]
        readonly = redis.Redis.from_url(f"redis://{user}:pw-1234@{host}", decode_responses=True)
        with pytest.raises(redis.exceptions.NoPermissionError):
            readonly.xadd(record.key(prefix), {"action": "forged"})
        insp = Inspector(readonly, prefix)
        df = insp.audit()
        assert list(df["action"]) == ["resume", "pause", "pause"]  # newest first
        assert list(insp.audit(queue="a")["action"]) == ["resume", "pause"]
        assert list(insp.audit(action="pause")["queue"]) == ["b", "a"]
        assert len(insp.audit(limit=1)) == 1
        assert str(df["ts"].dtype) == "datetime64[ns, UTC]" and df["ids"].map(list).tolist() == [[], [], []]
        assert r.xlen(record.key(prefix)) == 3  # reading wrote nothing
        readonly.close()
    finally:
        r.execute_command("ACL", "DELUSER", user)
    with pytest.raises(sbqueue.InvalidOptionError):
        Inspector(r, prefix).audit(action=3)  # type: ignore[arg-type]


def test_the_exporter_counts_actions_since_it_started(r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("a", r, prefix=prefix)
    with audit.acting("cli:before"):
        q.pause()  # before the exporter started: history, not counted
    collector = QueueCollector(r, prefix)
    registry = CollectorRegistry()
    registry.register(collector)
    generate_latest(registry)
    with audit.acting("widget:CleanPanel"):
        q.resume()
        q.clean(0, 10, "completed")
        q.clean(0, 10, "completed")
    text = generate_latest(registry).decode()
    assert ('sbqueue_audit_actions_total{action="clean",mode="applied",queue="a",source="widget:CleanPanel"} 2.0'
            in text)
    assert 'action="resume"' in text and "cli:before" not in text


def test_restore_from_the_command_line_is_recorded(r: redis.Redis, prefix: str, redis_url: str,
                                                   tmp_path: Any) -> None:
    from sbqueue.cli import backup as backup_cli

    q = sbqueue.Queue("src", r, prefix=prefix)
    q.add_bulk([{"name": "x", "data": {"i": i}} for i in range(4)])
    path = tmp_path / "b.sbq.gz"
    sbqueue.backup.export(path, connection=r, prefix=prefix, queues=["src"])
    target = f"{prefix}r"
    try:
        for dry in (True, False):
            args = argparse.Namespace(file=str(path), url=redis_url, prefix=target, queue=[], force=False,
                                      dry_run=dry, no_events=False)
            assert backup_cli.run_restore_cli(args) == 0
            if dry:  # a dry run writes nothing, not even the trail
                assert list(r.scan_iter(f"{target}:*")) == []
        rows = trail(r, target)
        assert [(row["action"], row["queue"], row["mode"], row["count"]) for row in rows] == [
            ("restore", "src", "applied", 4)]
        assert rows[0]["source"] == "cli:restore" and rows[0]["params"]["file"] == str(path)
    finally:
        for key in r.scan_iter(f"{target}:*"):
            r.delete(key)


ACTIONS: dict[str, Any] = {
    "pause": lambda q: q.pause(),
    "resume": lambda q: q.resume(),
    "set-global-concurrency": lambda q: q.set_global_concurrency(3),
    "set-global-rate-limit": lambda q: q.set_global_rate_limit(10, 1000),
    "rate-limit": lambda q: q.rate_limit(50),
    "remove-rate-limit": lambda q: q.remove_rate_limit_key(),
    "remove-deduplication-key": lambda q: q.remove_deduplication_key("d"),
    "trim-events": lambda q: q.trim_events(1, approximate=False),
    "clean": lambda q: q.clean(0, 10, "wait"),
    "drain": lambda q: q.drain(),
    "obliterate": lambda q: q.obliterate(force=True),
    "remove": lambda q: q.remove(q.get_job_ids("waiting")[0]),
    "retry": lambda q: q.retry_jobs("failed"),
    "promote": lambda q: q.promote_jobs(),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_management_action_type_writes_one_entry(r: redis.Redis, prefix: str, action: str) -> None:
    q = sbqueue.Queue("each", r, prefix=prefix)
    q.add("x", {}, deduplication={"id": "d"})
    q.add("later", {}, delay=60_000)
    with audit.acting("cli:test"):
        ACTIONS[action](q)
    rows = trail(r, prefix)
    assert [(row["action"], row["queue"], row["mode"], row["result"]) for row in rows] == [
        (action, "each", "applied", "ok")]
    assert rows[0]["source"] == "cli:test" and isinstance(rows[0]["params"], dict)


def test_a_health_fix_records_the_config_change(r: redis.Redis, prefix: str) -> None:
    """redis-health's fix (an evicting maxmemory-policy back to noeviction) is a server setting: recorded too."""
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        finding = runbook.diagnose_health(r, prefix, window_s=0.1)
        finding.apply(confirm=True)
        (row,) = [row for row in trail(r, prefix) if row["action"] == "config-set"]
        assert row["params"] == {"maxmemory-policy": ["allkeys-lru", "noeviction"]}
        assert row["source"] == "runbook:redis-health" and row["mode"] == "applied"
    finally:
        r.config_set("maxmemory-policy", before)
