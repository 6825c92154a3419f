"""AUTH and ACLs: a password-only server (``requirepass``) and one ACL user per role (``sbqueue.ops.acl``).

Each role runs its whole job with its minimal rules — no command refused (the server's ACL LOG has no entry
for the user) — and cannot do more: no FLUSHALL/CONFIG SET/KEYS, no key outside ``<prefix>:*``, no write for
the inspector. Run on a private Redis 7 with ``requirepass`` and on the suite's Redis 6.2.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis

import sbqueue
from sbqueue import DelayedError, acl
from sbqueue._core.scripts import script_names
from sbqueue.inspection import INSPECTOR_ACL, Inspector
from tests.conftest import delete_prefix
from tests.processors import wait_for

from .servers import PrivateRedis, private_redis

ADMIN_PASSWORD = "adm1n-" + secrets.token_hex(6)


@dataclass
class Target:
    """A Redis to create ACL users on: an admin client, URLs for users, and the users made (deleted after)."""

    name: str
    admin: redis.Redis
    host: str
    port: int
    prefix: str
    users: list[str] = field(default_factory=list)

    def url(self, user: str | None, password: str) -> str:
        auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        return f"redis://{auth}{self.host}:{self.port}/0"

    def user(self, role: str, *, rules: list[str] | None = None) -> tuple[str, str]:
        """A new ACL user with ``role``'s rules on this target's prefix: ``(name, url)``."""
        name, password = f"sbq-{role}-{secrets.token_hex(4)}", secrets.token_hex(12)
        if rules is None:
            acl.setuser(self.admin, name, password, role, prefix=self.prefix)
        else:
            self.admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        self.users.append(name)
        return name, self.url(name, password)

    def refusals(self, user: str) -> list[str]:
        """What the server refused ``user`` (ACL LOG), as ``reason:object`` strings — except redis-py's
        connection handshake ``CLIENT SETINFO`` (ignored when refused; Redis 6.2 logs it as ``client``)."""
        entries = [e for e in self.admin.acl_log(count=1000) if e.get("username") == user]
        return [f"{e['reason']}:{e['object']}" for e in entries if e["object"] not in ("client", "client|setinfo")]


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path_factory.mktemp("acl-redis"), password=ADMIN_PASSWORD) as server:
        yield server


@pytest.fixture(params=["redis7-requirepass", "suite-redis"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "suite-redis":
        url = request.getfixturevalue("redis_url")
        admin = redis.Redis.from_url(url, decode_responses=True)
    else:
        server: PrivateRedis = request.getfixturevalue("private_server")
        url = server.url
        admin = server.admin()
    parts = urlsplit(url)
    t = Target(request.param, admin, parts.hostname or "127.0.0.1", parts.port or 6379, f"acl{uuid.uuid4().hex[:8]}")
    yield t
    for user in t.users:
        admin.execute_command("ACL", "DELUSER", user)
    delete_prefix(admin, t.prefix)
    admin.close()


def denied(client: redis.Redis, *command: Any) -> None:
    """``command`` is refused by the ACL (NOPERM; inside a script, the script error says so)."""
    with pytest.raises(redis.ResponseError) as info:
        client.execute_command(*command)
    text = str(info.value).lower()
    assert isinstance(info.value, redis.exceptions.NoPermissionError) or "permission" in text or "can't run" in text, (
        command, info.value)


def cannot_do_more(client: redis.Redis, prefix: str) -> None:
    """What no producer or worker may do, whatever the prefix: server admin, other keys, pub/sub."""
    denied(client, "FLUSHALL")
    denied(client, "FLUSHDB")
    denied(client, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    denied(client, "CONFIG", "GET", "requirepass")
    denied(client, "KEYS", "*")
    denied(client, "ACL", "SETUSER", "intruder", "on", ">x", "+@all", "~*")
    denied(client, "CLIENT", "KILL", "TYPE", "normal")
    denied(client, "SAVE")
    denied(client, "SLOWLOG", "RESET")
    denied(client, "SET", "someone-else:key", "1")
    denied(client, "GET", "someone-else:key")
    denied(client, "HSET", f"not-{prefix}:q:1", "data", "{}")
    denied(client, "PUBLISH", "channel", "hi")
    denied(client, "EVAL", "return redis.call('SET', KEYS[1], 1)", 1, "someone-else:key")  # ACLs hold in scripts
    denied(client, "EVAL", "return redis.call('FLUSHALL')", 0)


# --- the rules themselves ----------------------------------------------------------------------------------
def test_rules_are_derived_and_cover_every_script() -> None:
    assigned = set(acl.ROLE_SCRIPTS["producer"]) | set(acl.ROLE_SCRIPTS["worker"]) | set(acl.ADMIN_SCRIPTS)
    assert assigned == set(script_names()), "every Lua script belongs to a role (or is for administrators)"
    for role, text in (("producer", acl.PRODUCER_ACL), ("worker", acl.WORKER_ACL)):
        rules = text.split()
        assert rules[:4] == ["resetkeys", "~bull:*", "resetchannels", "-@all"], role
        for command in acl.script_commands(*acl.ROLE_SCRIPTS[role]):
            assert f"+{command}" in rules, (role, command)
        for dangerous in ("+@all", "+flushall", "+flushdb", "+config|set", "+keys", "+@admin", "+@dangerous"):
            assert dangerous not in rules
    assert "+bzpopmin" in acl.WORKER_ACL.split() and "+bzpopmin" not in acl.PRODUCER_ACL.split()
    assert "+scan" in acl.PRODUCER_ACL.split() and "+scan" not in acl.WORKER_ACL.split()
    assert acl.INSPECTOR_ACL is INSPECTOR_ACL and "+config|get" not in INSPECTOR_ACL.split()
    assert acl.rules("worker", prefix="a*b?")[1] == r"~a\*b\?:*"  # glob characters of the prefix are escaped
    assert acl.rules("producer", "worker", prefix="{bull}")[1] == "~{bull}:*"
    with pytest.raises(sbqueue.InvalidOptionError, match="unknown ACL role"):
        acl.rules("admin")
    with pytest.raises(sbqueue.InvalidOptionError, match="own user"):
        acl.rules("inspector", "worker")


# --- password only ---------------------------------------------------------------------------------------
def test_requirepass_password_only(private_server: PrivateRedis) -> None:
    url = f"redis://:{quote(ADMIN_PASSWORD, safe='')}@127.0.0.1:{private_server.port}/0"  # no user name
    prefix = f"pw{uuid.uuid4().hex[:8]}"
    q = sbqueue.Queue("pw", url, prefix=prefix)
    events = sbqueue.QueueEvents("pw", url, prefix=prefix, block_ms=200)
    worker = sbqueue.Worker("pw", lambda job: job.data["n"] + 1, url, prefix=prefix, drain_delay=0.3)
    errors: list[BaseException] = []
    worker.on("error", errors.append)
    try:
        job = q.add("inc", {"n": 41})
        worker.start()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 1, 10, what="the job to complete")
        assert q.get_job(job.id).returnvalue == 42
        assert [e["event"] for e in events.read(block_ms=100)][-1] in ("completed", "drained")
        with Inspector(url, prefix, progress=False) as insp:
            assert insp.queues().set_index("queue").loc["pw"].completed == 1
            assert ADMIN_PASSWORD not in repr(insp)
        from prometheus_client import CollectorRegistry, generate_latest

        from sbqueue.ops.exporter import QueueCollector, connect_exporter

        client = connect_exporter(url)
        registry = CollectorRegistry()
        registry.register(QueueCollector(client, prefix))
        assert 'bullmq_queue_completed{queue="pw"} 1.0' in generate_latest(registry).decode()
        client.close()
    finally:
        worker.close(timeout=5)
        events.close()
        delete_prefix(private_server.admin(), prefix)
    assert not errors, errors
    for bad in (f"redis://:wrong-{secrets.token_hex(3)}@127.0.0.1:{private_server.port}/0",
                f"redis://127.0.0.1:{private_server.port}/0"):  # fmt: skip
        with pytest.raises(sbqueue.ConnectionFailedError, match=r"refused the credentials|NOAUTH|uthentication"):
            sbqueue.connect(bad)


# --- producer ---------------------------------------------------------------------------------------------
def producer_workload(url: str, prefix: str) -> int:
    """Every Queue call and QueueEvents as the producer; returns how many events QueueEvents read."""
    q = sbqueue.Queue("orders", url, prefix=prefix)
    events = sbqueue.QueueEvents("orders", url, prefix=prefix, last_event_id="0", block_ms=100)
    job = q.add("a", {"x": 1}, attempts=3, backoff={"type": "exponential", "delay": 10}, remove_on_complete=10)
    q.add("custom", {}, job_id="custom-1")
    q.add("custom", {}, job_id="custom-1")  # duplicate
    q.add("dedup", {}, deduplication={"id": "d1", "ttl": 60_000})
    q.add("dedup", {}, deduplication={"id": "d1", "ttl": 60_000})
    delayed = q.add("later", {}, delay=60_000)
    prio = q.add("urgent", {}, priority=2)
    q.add_bulk([{"name": "bulk", "data": {"i": i}} for i in range(5)])
    flow = sbqueue.FlowProducer(url, prefix=prefix).add(
        {"name": "p", "queue_name": "orders", "children": [{"name": "c", "queue_name": "orders-kids"}]}
    )
    assert flow.job.get_dependencies_count()["unprocessed"] == 1 and q.get_flow(flow.job.id) is not None
    assert flow.job.get_dependencies(unprocessed=True)["unprocessed_cursor"] == 0
    q.upsert_job_scheduler("tick", every=60_000, name="tick", data={"t": 1})
    assert q.get_job_scheduler("tick") is not None and len(q.get_job_schedulers()) == 1
    assert q.get_job(job.id).data == {"x": 1} and q.get_job_state(job.id) == "waiting"
    assert q.get_job_counts()["waiting"] >= 7 and q.get_job_count_by_state("delayed") >= 1
    for getter in (q.get_waiting, q.get_active, q.get_delayed, q.get_prioritized, q.get_completed, q.get_failed):
        getter()
    q.get_jobs(["waiting", "delayed"], 0, 10, asc=True)
    q.get_job_ids("waiting")
    q.get_jobs_by_ids([job.id, "missing"])
    q.is_paused()
    q.get_meta()
    q.set_global_concurrency(5)
    assert q.get_global_concurrency() == 5
    q.set_global_concurrency(None)
    q.set_global_rate_limit(100, 1000)
    assert q.get_global_rate_limit() == {"max": 100, "duration": 1000}
    q.set_global_rate_limit(None)
    q.get_metrics("completed")
    q.get_workers()
    job.log("a line")
    q.get_job_logs(job.id)
    job.update_data({"x": 2})
    job.update_progress(10)
    prio.change_priority(1)
    delayed.change_delay(120_000)
    q.promote_job(delayed.id)
    q.add("later2", {}, delay=60_000)
    q.promote_jobs()
    q.pause()
    q.resume()
    q.rate_limit(1)
    q.clean(0, 100, "completed")
    q.clean(0, 100, "wait")
    q.retry_jobs("failed")
    with pytest.raises(sbqueue.JobNotFoundError):
        q.retry_job("missing")
    q.remove(job.id)
    q.remove_job_scheduler("tick")
    assert set(q.get_counts_per_priority([0, 1, 2])) == {0, 1, 2}
    q.get_rate_limit_ttl()
    q.remove_rate_limit_key()
    owner = q.add("dedup", {}, deduplication={"id": "d2"})
    assert q.get_deduplication_job_id("d2") == owner.id and q.remove_deduplication_key("d2") == 1
    waiter = sbqueue.QueueEvents("orders", url, prefix=prefix, block_ms=100)
    with pytest.raises(sbqueue.WaitTimeoutError):  # no worker here: the wait reads the job and times out
        q.add("w", {}).wait_until_finished(waiter, timeout=0.05)
    waiter.close()
    q.trim_events(100_000)
    q.drain(delayed=True)
    read = len(events.read(1000, block_ms=100))
    events.close()
    q.obliterate(force=True)
    q.close()
    return read


def test_producer_role(target: Target) -> None:
    user, url = target.user("producer")
    assert producer_workload(url, target.prefix) > 10
    assert target.refusals(user) == []
    client = redis.Redis.from_url(url, decode_responses=True)
    cannot_do_more(client, target.prefix)
    denied(client, "BZPOPMIN", f"{target.prefix}:orders:marker", 0.01)  # workers' command, not a producer's
    client.close()


# --- worker -----------------------------------------------------------------------------------------------
def test_worker_role(target: Target) -> None:
    pfx = target.prefix
    _producer, producer_url = target.user("producer")
    worker_user, worker_url = target.user("worker")
    q = sbqueue.Queue("work", producer_url, prefix=pfx)
    for name in ("progress", "flaky", "delay-self", "slow", "bad-return"):
        q.add(name, {"n": 1}, attempts=2, backoff=10)
    q.add_bulk([{"name": "plain", "data": {"i": i}} for i in range(10)])
    first = q.upsert_job_scheduler("tick", every=60_000, name="tick")
    if q.get_job_state(first.id) == "delayed":
        q.promote_job(first.id)
    stalled = q.add("stall-me", {})
    # a crashed worker's job: active without a lock (the stalled check recovers it)
    target.admin.lrem(f"{pfx}:work:wait", 0, stalled.id)
    target.admin.lpush(f"{pfx}:work:active", stalled.id)

    def process(job: sbqueue.Job) -> Any:
        if job.name == "progress":
            job.update_progress(50)
            job.log("halfway")
            job.update_data({"n": 2})
        elif job.name == "flaky" and job.attempts_made == 0:
            raise RuntimeError("first attempt fails")
        elif job.name == "delay-self" and job.attempts_started == 1:
            job.move_to_delayed(int(time.time() * 1000) + 50)
            raise DelayedError()
        elif job.name == "slow":
            time.sleep(0.7)  # longer than lock_duration / 2: the lock is renewed
        elif job.name == "bad-return":
            return object()  # not JSON: the job fails with a DataError
        return job.name

    worker = sbqueue.Worker("work", process, worker_url, prefix=pfx, concurrency=4, lock_duration=1000,
                            stalled_interval=200, limiter={"max": 100, "duration": 1000}, drain_delay=0.3,
                            name="acl-worker")  # fmt: skip
    errors: list[BaseException] = []
    stalled_ids: list[str] = []
    worker.on("error", errors.append)
    worker.on("stalled", stalled_ids.append)
    try:
        worker.start()
        wait_for(lambda: [w["name"] for w in q.get_workers()] == ["work"], 5, what="the named worker connection")
        wait_for(lambda: q.get_job_counts("completed")["completed"] >= 16, 15, what="16 completed jobs")
        wait_for(lambda: q.get_job_counts("failed")["failed"] == 1, 5, what="the bad return value to fail")
    finally:
        worker.close(timeout=5)
    assert stalled_ids == [stalled.id]
    assert "JSON" in (q.get_job(q.get_job_ids("failed")[0]).failed_reason or "")
    assert len(q.get_job_schedulers()) == 1 and q.get_job_counts("delayed")["delayed"] == 1  # next iteration
    assert not errors, errors
    assert target.refusals(worker_user) == []
    client = redis.Redis.from_url(worker_url, decode_responses=True)
    cannot_do_more(client, pfx)
    denied(client, "SCAN", 0)
    denied(client, "CLIENT", "LIST")
    client.close()
    q.close()


# --- inspector --------------------------------------------------------------------------------------------
def test_inspector_role(target: Target) -> None:
    _producer, producer_url = target.user("producer")
    inspector_user, inspector_url = target.user("inspector", rules=INSPECTOR_ACL.split())
    q = sbqueue.Queue("seen", producer_url, prefix=target.prefix)
    q.add_bulk([{"name": "n", "data": {"i": i}} for i in range(3)])
    with Inspector(inspector_url, target.prefix, progress=False) as insp:
        assert insp.queues().set_index("queue").loc["seen"].waiting == 3
        assert len(insp.jobs("seen")) == 3
        audit = insp.config_audit()  # CONFIG GET is not granted: the audit says so instead of failing
        assert "CONFIG GET" in set(audit.setting)
    assert target.refusals(inspector_user) == [] or all("config" in r for r in target.refusals(inspector_user))
    client = redis.Redis.from_url(inspector_url, decode_responses=True)
    for command in (("SET", f"{target.prefix}:seen:x", 1), ("DEL", f"{target.prefix}:seen:wait"),
                    ("HSET", f"{target.prefix}:seen:1", "data", "{}"), ("FLUSHALL",),
                    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
                    ("CONFIG", "GET", "requirepass"),  # would hand out the admin password of a requirepass server
                    ("EVAL", "return redis.call('DEL', KEYS[1])", 1, f"{target.prefix}:seen:wait")):  # fmt: skip
        denied(client, *command)
    client.close()
    q.close()


def test_setuser_text_matches_docs() -> None:
    """docs/security.md shows the default-prefix rules verbatim: they must be the constants."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for constant in (acl.PRODUCER_ACL, acl.WORKER_ACL, INSPECTOR_ACL):
        assert constant in docs.replace("\n  ", " ").replace(" \\\n", " ")
