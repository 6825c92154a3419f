"""A full Redis (``maxmemory`` reached, ``noeviction``) on a private server: producers get
:class:`RedisFullError` (nothing written), workers finish their in-flight jobs, report the condition once
and recover by themselves once memory is freed; ``Inspector.alerts()``, the exporter and the redis-memory
runbook see it, and the runbook's clean fix works on the full server."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import sbqueue
from sbqueue import runbook
from sbqueue.errors import RedisFullError
from sbqueue.ops.exporter import QueueCollector
from tests.processors import wait_for
from tests.security.servers import PrivateRedis, private_redis

PREFIX = "full"
FILLER = "x" * 20_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path) as srv:
        yield srv


def _full_gauge(url: str) -> float:
    collector = QueueCollector(url, PREFIX, ["q"])
    return next(s.value for m in collector.collect() for s in m.samples if s.name == "sbqueue_redis_full")


def _alert(url: str) -> bool:
    with sbqueue.Inspector(url, PREFIX, progress=False) as insp:
        alerts = insp.alerts(0).set_index("name")
    return bool(alerts.loc["RedisFull", "firing"])


def test_a_full_redis_refuses_adds_and_workers_recover(server: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sbqueue.engine.worker")
    admin = server.admin()
    admin.config_set("maxmemory-policy", "noeviction")
    gate = threading.Event()

    def process(job: sbqueue.Job) -> str:
        if job.name == "slow":
            gate.wait(30)
        return "done"

    q = sbqueue.Queue("q", server.url, prefix=PREFIX)
    worker = sbqueue.Worker("q", process, server.url, prefix=PREFIX, concurrency=10, drain_delay=0.5)
    errors: list[BaseException] = []
    worker.on("error", errors.append)
    worker.start()
    try:
        q.add_bulk([{"name": "old", "data": {"pad": FILLER}} for _ in range(60)])  # finished jobs kept forever
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 60, 20, what="60 old jobs completed")
        slow = [q.add("slow", {"i": i}) for i in range(5)]
        wait_for(lambda: q.get_job_counts("active")["active"] == 5, 10, what="5 jobs in flight")
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used - 50_000)  # Redis is now over its limit: every write is refused
        assert _alert(server.url) and _full_gauge(server.url) == 1.0

        # producers: a clear error, nothing written
        before = q.get_job_counts()
        with pytest.raises(RedisFullError, match=r"Redis is full.*maxmemory.*redis-memory runbook") as err:
            q.add("new", {"x": 1})
        assert isinstance(err.value, sbqueue.SbqueueError)
        with pytest.raises(RedisFullError):
            q.add_bulk([{"name": "new", "data": {}}])
        assert q.get_job_counts() == before

        # workers: the in-flight jobs finish — recording them only deletes before it adds, which a full Redis
        # allows — while fetching (and the lock and stall checks) are refused: reported once, not per call
        gate.set()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 65, 10, what="the in-flight jobs recorded")
        wait_for(lambda: worker._full_since, 10, what="the worker meets the full Redis")
        threading.Event().wait(3)  # several retries of the worker's round trip
        full_logs = [r for r in caplog.records if "Redis is full" in r.getMessage()]
        assert len(full_logs) == 1 and full_logs[0].levelno == logging.ERROR, [r.getMessage() for r in caplog.records]
        assert "redis-memory runbook" in full_logs[0].getMessage()
        assert sum(isinstance(e, RedisFullError) for e in errors) == 1
        assert worker.running and all(q.get_job(j.id).returnvalue == "done" for j in slow)

        # the runbook diagnoses it, and its clean (deletes only) works on the full server
        finding = runbook.diagnose_memory(server.url, PREFIX, max_age=dt.timedelta(0))
        checks = finding.checks.set_index("check")
        assert bool(checks.loc["Redis full: writes refused", "result"]) and finding.cause.startswith("Redis full")
        assert finding.plan["action"].tolist() == ["clean completed"] and finding.plan["jobs"].tolist() == [65]
        assert finding.apply(confirm=True) == ["cleaned 65 completed jobs of q"]
        assert int(admin.info("memory")["used_memory"]) < used - 50_000
        assert finding.verify() == (True, "0 old finished jobs left")

        # ...and everything recovers by itself
        new = q.add("new", {"x": 2})
        wait_for(lambda: q.get_job_state(new.id) == "completed", 15, what="the worker processing again")
        wait_for(lambda: any("accepts writes again" in r.getMessage() for r in caplog.records), 10,
                 what="the worker's recovery line")  # logged once its next round trip's reply is read
        assert not _alert(server.url) and _full_gauge(server.url) == 0.0
    finally:
        gate.set()
        worker.close(timeout=5)
        q.close()
        admin.close()
