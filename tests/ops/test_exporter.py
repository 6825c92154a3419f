"""``sbqueue exporter`` against a real Redis: planted queues, scraped over HTTP, parsed as Prometheus text.

- Queue gauges and ``bullmq_job_count`` equal ``Queue.get_job_counts()``; counters equal the metrics keys.
- The duration histogram counts exactly the completed events written since the exporter started, in
  bounded batches; the oldest-waiting age and the worker count match what was planted.
- Discovery is cached (no SCAN between passes) and bounded per scrape.
- A stopped Redis gives ``redis_up 0`` (no exception, no other Redis/queue metric) and the exporter recovers.
- Every metric the alert rules and the dashboard use is in a real scrape (replica-only ones with a replica).
- A read-only ACL user suffices, nothing is written, and passwords appear in no metric and no log line.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sbqueue import Job, Queue, Worker, embedded
from sbqueue.cli.app import _exporter, build_parser
from sbqueue.cli.exporter import parse_queues, serve
from sbqueue.errors import InvalidOptionError, InvalidQueueNameError
from sbqueue.ops.exporter import STATE_GAUGES, QueueCollector, connect_exporter
from tests.conftest import delete_prefix, snapshot
from tests.ops.test_deploy import (
    COMPOSE,
    EXPORTER_METRICS,
    REPLICA_ONLY_METRICS,
    ROOT,
    _args,
    _stop,
    _unit,
    _wait_until_up,
    alert_rules,
    containers,
    dashboard_exprs,
    free_port,
    k8s_index,
    metric_names,
    promtool,
)

# ----------------------------------------------------------------------------------------------- helpers


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return value


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return float(found[0])


def queues_of(samples: list[Sample]) -> set[str]:
    return {s.labels["queue"] for s in samples if s.name == "bullmq_queue_waiting"}


class Served:
    """A collector served over HTTP on a free port, as ``sbqueue exporter`` serves it."""

    def __init__(self, collector: QueueCollector) -> None:
        self.collector = collector
        self.server, _thread = serve(collector, 0, "127.0.0.1")
        self.port = int(self.server.server_port)
        self.texts: list[str] = []

    def scrape(self) -> list[Sample]:
        self.texts.append(scrape_text(self.port))
        return parse(self.texts[-1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.collector.client.close()


@pytest.fixture
def exporter(redis_url: str) -> Iterator[Callable[..., Served]]:
    """``exporter(prefix, url=..., **options)``: a served QueueCollector with its own client."""
    served: list[Served] = []

    def make(prefix: str, url: str = redis_url, **options: Any) -> Served:
        served.append(Served(QueueCollector(connect_exporter(url), prefix, **options)))
        return served[-1]

    yield make
    for item in served:
        item.close()


def run_jobs(queue: Queue, r: redis.Redis, expected: int, fn: Callable[[Job], Any] | None = None) -> None:
    """Run a worker until ``expected`` jobs of ``queue`` are completed or failed, then close it."""

    def process(job: Job) -> Any:
        if job.data.get("fail"):
            raise ValueError("planted failure")
        return fn(job) if fn else None

    worker = Worker(queue.name, process, r, queue.prefix).start()
    try:
        wait_for(lambda: sum(queue.get_job_counts("completed", "failed").values()) >= expected, what="jobs")
    finally:
        worker.close()


def redis_binary() -> str:
    return embedded.bundled_binary() or embedded.find_binary()


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Our own throwaway redis-server (no persistence) on ``port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / f"redis-{port}.log").open("ab")
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--daemonize", "no", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
    client = redis.Redis(port=port, password=password, socket_timeout=5)
    try:
        if not _wait_until_up(proc, client, timeout=15):
            _stop(proc)
            pytest.fail(f"redis-server on port {port} did not start")
    finally:
        client.close()
    return proc


# ----------------------------------------------------------------------------------------------- queue metrics


def test_queue_metrics_equal_get_job_counts(r: redis.Redis, prefix: str, exporter: Callable[..., Served]) -> None:
    """Every bullmq_queue_<state> and bullmq_job_count{state} equals get_job_counts(); counters = metrics keys."""
    emails = Queue("emails", r, prefix=prefix)
    for i in range(4):
        emails.add("send", {"i": i})
    emails.add("later", {}, delay=60_000)
    emails.add("vip", {}, priority=5)
    reports = Queue("reports", r, prefix=prefix)
    reports.add("monthly", {})
    reports.pause()
    images = Queue("images", r, prefix=prefix)
    images.set_global_concurrency(3)
    for i in range(6):
        images.add("resize", {"fail": i % 3 == 0})
    run_jobs(images, r, 6)
    Queue("elsewhere", r, prefix=prefix + "x").add("other prefix", {})  # not ours: must not be exported
    try:
        samples = exporter(prefix).scrape()
    finally:
        delete_prefix(r, prefix + "x")

    assert value(samples, "redis_up") == 1
    assert queues_of(samples) == {"emails", "reports", "images"}
    assert value(samples, "sbqueue_exporter_queues") == 3
    for queue in (emails, reports, images):
        counts = queue.get_job_counts()
        for state in STATE_GAUGES:
            assert value(samples, f"bullmq_queue_{state}", queue=queue.name) == counts[state], (queue.name, state)
        for state, n in counts.items():
            assert value(samples, "bullmq_job_count", queue=queue.name, state=state) == n, (queue.name, state)
        assert value(samples, "bullmq_queue_paused", queue=queue.name) == int(queue.is_paused())
        for kind in ("completed", "failed"):
            expected = queue.get_metrics(kind)["meta"]["count"]
            assert value(samples, f"bullmq_jobs_{kind}_total", queue=queue.name) == expected, (queue.name, kind)
    # the planted values really are what the comparisons above saw
    assert emails.get_job_counts() == {"active": 0, "completed": 0, "delayed": 1, "failed": 0, "prioritized": 1,
                                       "waiting": 4, "waiting-children": 0}  # fmt: skip
    assert value(samples, "bullmq_queue_paused", queue="reports") == 1
    assert value(samples, "bullmq_queue_waiting", queue="reports") == 1  # BullMQ 6: paused jobs stay in wait
    assert value(samples, "bullmq_jobs_completed_total", queue="images") == 4
    assert value(samples, "bullmq_jobs_failed_total", queue="images") == 2
    assert value(samples, "bullmq_queue_global_concurrency", queue="images") == 3
    assert value(samples, "sbqueue_exporter_scrape_errors_total") == 0


def test_duration_histogram_counts_completed_events_since_start(
    r: redis.Redis, prefix: str, exporter: Callable[..., Served]
) -> None:
    """finishedOn - processedOn of each job completed after the exporter started, read in bounded batches."""
    queue = Queue("work", r, prefix=prefix)
    for _ in range(3):  # history: completed before the exporter started, never counted
        queue.add("before", {})
    run_jobs(queue, r, 3)
    served = exporter(prefix, events_per_scrape=7)
    first = served.scrape()
    assert value(first, "bullmq_job_duration_seconds_count", queue="work") == 0
    ((history_end, _fields),) = r.xrevrange(f"{prefix}:work:events", count=1)

    for i in range(8):
        queue.add("slow", {"fail": i >= 6})
    run_jobs(queue, r, 3 + 8, fn=lambda job: time.sleep(0.03))
    new_entries = r.xrange(f"{prefix}:work:events", min=f"({history_end}")
    assert sum(1 for _id, f in new_entries if f["event"] == "completed") == 6

    seen, scrapes = 0.0, 0
    while True:  # at most 7 entries per scrape: several scrapes to catch up, never more than 7 at once
        samples = served.scrape()
        scrapes += 1
        total = sum(s.value for s in samples if s.name == "bullmq_events_total")
        assert total - seen <= 7
        if total == seen:
            break
        seen = total
        assert scrapes < 50, "the exporter keeps finding new entries"
    assert seen == len(new_entries)  # every new entry once, none of the history
    assert scrapes > len(new_entries) // 7
    assert value(samples, "bullmq_job_duration_seconds_count", queue="work") == 6  # the 3 old ones excluded
    assert value(samples, "bullmq_job_duration_seconds_bucket", queue="work", le="+Inf") == 6
    assert value(samples, "bullmq_job_duration_seconds_bucket", queue="work", le="0.025") == 0  # each slept 30 ms
    assert 6 * 0.03 <= value(samples, "bullmq_job_duration_seconds_sum", queue="work") < 6 * 5
    assert value(samples, "bullmq_events_total", queue="work", event="completed") == 6
    assert value(samples, "bullmq_events_total", queue="work", event="failed") == 2
    assert value(samples, "bullmq_events_total", queue="work", event="added") == 8
    # the jobs processed: durations agree with the hashes
    durations = [int(j.finished_on) - int(j.processed_on) for j in queue.get_completed() if j.name == "slow"]
    expected_sum = sum(durations) / 1000
    assert value(samples, "bullmq_job_duration_seconds_sum", queue="work") == pytest.approx(expected_sum)


def test_oldest_waiting_and_workers(r: redis.Redis, prefix: str, exporter: Callable[..., Served]) -> None:
    """Age of the job at the tail of wait (next to run); workers = connections named as BullMQ names them."""
    queue = Queue("slow", r, prefix=prefix)
    first = queue.add("first", {})
    queue.add("second", {})
    r.hset(queue.keys.job(first.id), "timestamp", int(time.time() * 1000) - 120_000)
    queue.pause()  # workers connect but take nothing
    idle = Queue("idle", r, prefix=prefix)
    idle.add("gone", {})
    idle.drain()
    served = exporter(prefix)

    workers = [Worker("slow", lambda job: None, r, prefix, name="w-one").start(),
               Worker("slow", lambda job: None, r, prefix).start()]  # fmt: skip
    try:
        wait_for(lambda: len(queue.get_workers()) == 2, what="two workers connected")
        samples = served.scrape()
    finally:
        for worker in workers:
            worker.close()
    assert value(samples, "bullmq_queue_workers", queue="slow") == 2
    assert value(samples, "bullmq_queue_workers", queue="idle") == 0
    assert 119 <= value(samples, "bullmq_queue_oldest_waiting_seconds", queue="slow") < 150
    assert value(samples, "bullmq_queue_oldest_waiting_seconds", queue="idle") == 0
    wait_for(lambda: not queue.get_workers(), what="workers gone")
    assert value(served.scrape(), "bullmq_queue_workers", queue="slow") == 0


def dead_letter_jobs(r: redis.Redis, prefix: str, jobs: list[dict[str, Any]], dlq: str = "orders-dlq") -> None:
    """Add ``jobs`` (add() options) to queue ``orders`` and let a worker with ``dead_letter_queue=dlq`` fail them."""
    orders = Queue("orders", r, prefix=prefix)
    for opts in jobs:
        orders.add("charge", {}, **opts)

    def fail(job: Job) -> None:
        raise ValueError("card declined")

    worker = Worker("orders", fail, r, prefix, dead_letter_queue=dlq).start()
    try:
        wait_for(lambda: worker.failed_count >= len(jobs), what="jobs dead-lettered")
    finally:
        worker.close()


def test_dead_letters_gauge_per_dead_letter_queue(r: redis.Redis, prefix: str, exporter: Callable[..., Served]) -> None:
    """sbqueue_dead_letters{queue} = waiting + prioritized + delayed of each DLQ (registry or a letter next in
    line), no sample for other queues; one SMEMBERS per scrape whatever the number of letters; promtool-clean."""
    dead_letter_jobs(r, prefix, [{}, {}, {"priority": 4}, {"dead_letter_queue": "legacy-dlq"}])
    registry = f"{prefix}:sbqueue:dead-letter-queues"
    assert r.smembers(registry) == {"orders-dlq", "legacy-dlq"}
    r.srem(registry, "legacy-dlq")  # as if written by a worker whose ACL refused the SADD: found by its letter
    Queue("orders-dlq", r, prefix=prefix).add("not a letter", {}, delay=60_000)  # delayed counts too
    served = exporter(prefix)
    sent: list[tuple[Any, ...]] = []
    pipeline = served.collector.client.pipeline

    def recording_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute_command = pipe.execute_command
        pipe.execute_command = lambda *a, **k: sent.append(a) or execute_command(*a, **k)
        return pipe

    served.collector.client.pipeline = recording_pipeline  # type: ignore[method-assign]
    samples = served.scrape()
    assert value(samples, "sbqueue_dead_letters", queue="orders-dlq") == 4  # 2 waiting, 1 prioritized, 1 delayed
    assert value(samples, "sbqueue_dead_letters", queue="legacy-dlq") == 1
    assert {s.labels["queue"] for s in samples if s.name == "sbqueue_dead_letters"} == {"orders-dlq", "legacy-dlq"}
    assert [a for a in sent if a[0] == "SMEMBERS"] == [("SMEMBERS", registry)]
    assert not [a for a in sent if a[0] in ("LRANGE", "ZRANGE", "HGETALL")]  # no per-letter reads
    # promtool's lint on the new family (the whole exposition keeps names it flags: bullmq_job_count is
    # BullMQ's own, redis_*_sec redis_exporter's)
    lines = [line for line in served.texts[-1].splitlines() if "sbqueue_dead_letters" in line]
    run_promtool_metrics("\n".join(lines) + "\n")

    # consumed (here: drained): the DLQs keep a 0 sample, the one found by its letter too
    for name in ("orders-dlq", "legacy-dlq"):
        Queue(name, r, prefix=prefix).drain(delayed=True)
    samples = served.scrape()
    assert value(samples, "sbqueue_dead_letters", queue="orders-dlq") == 0
    assert value(samples, "sbqueue_dead_letters", queue="legacy-dlq") == 0
    r.delete(registry)
    r.set(registry, "not a set")  # a foreign key: no error, the DLQs known so far stay known
    samples = served.scrape()
    assert value(samples, "sbqueue_exporter_scrape_errors_total") == 0
    assert value(samples, "sbqueue_dead_letters", queue="legacy-dlq") == 0


def run_promtool_metrics(text: str) -> None:
    assert text.strip()
    res = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert res.returncode == 0, f"promtool check metrics failed:\n{res.stdout}{res.stderr}"


# ----------------------------------------------------------------------------------------------- discovery


def test_discovery_is_cached_and_bounded(
    r: redis.Redis, prefix: str, exporter: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCAN runs once per discovery interval, at most scan_budget keys per scrape; odd keys are skipped."""
    Queue("alpha", r, prefix=prefix).add("a", {})
    r.hset(f"{prefix}:not:a-queue:meta", "x", "1")  # a name with ':' is no queue
    r.set(f"{prefix}:beta:id", 7)  # an id counter alone is enough (a queue whose jobs are all gone)
    served = exporter(prefix, discovery_interval=3600)
    calls: list[int] = []
    scan = served.collector.client.scan
    monkeypatch.setattr(served.collector.client, "scan", lambda *a, **k: calls.append(1) or scan(*a, **k))

    assert queues_of(served.scrape()) == {"alpha", "beta"}
    first_pass = len(calls)
    assert first_pass >= 1
    Queue("gamma", r, prefix=prefix).add("g", {})
    for _ in range(3):
        assert queues_of(served.scrape()) == {"alpha", "beta"}  # cached: no SCAN until the interval is over
    assert len(calls) == first_pass

    served.collector.discovery_interval = 0  # the interval is over: the next scrape rescans
    samples = served.scrape()
    assert queues_of(samples) == {"alpha", "beta", "gamma"}
    # gamma appeared after the exporter started: all of its events are new and counted
    assert value(samples, "bullmq_events_total", queue="gamma", event="added") == 1
    assert not [s for s in samples if s.name == "bullmq_events_total" and s.labels["queue"] == "alpha"]

    # a budget of one SCAN call per scrape walks a bigger keyspace over several scrapes
    with r.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(f"{prefix}:filler:{i}", 1)
        pipe.execute()
    small = exporter(prefix, scan_budget=1000)
    small_calls: list[int] = []
    small_scan = small.collector.client.scan
    monkeypatch.setattr(small.collector.client, "scan", lambda *a, **k: small_calls.append(1) or small_scan(*a, **k))
    per_scrape: list[int] = []
    while not per_scrape or per_scrape[-1]:  # until a scrape needs no SCAN: the pass is complete
        before = len(small_calls)
        found = queues_of(small.scrape())
        per_scrape.append(len(small_calls) - before)
        assert len(per_scrape) < 200, "discovery never finished"
    assert set(per_scrape[:-1]) == {1} and len(per_scrape) >= 4  # 3000+ keys, ~1000 per SCAN call
    assert found == {"alpha", "beta", "gamma"}


def test_fixed_queue_list_and_a_broken_queue(r: redis.Redis, prefix: str, exporter: Callable[..., Served]) -> None:
    """--queues a,b exports exactly those (zeros for a missing one); a corrupt queue is skipped, not fatal."""
    Queue("ok", r, prefix=prefix).add("x", {})
    Queue("broken", r, prefix=prefix).add("x", {})
    r.delete(f"{prefix}:broken:active")
    r.set(f"{prefix}:broken:active", "not a list")  # WRONGTYPE for LLEN
    served = exporter(prefix, queues=["ok", "missing", "broken"])
    samples = served.scrape()
    assert queues_of(samples) == {"ok", "missing"}
    assert value(samples, "bullmq_queue_waiting", queue="ok") == 1
    assert value(samples, "bullmq_queue_waiting", queue="missing") == 0
    assert value(samples, "sbqueue_exporter_scrape_errors_total") == 1
    assert value(samples, "redis_up") == 1
    with pytest.raises(InvalidQueueNameError):
        QueueCollector(served.collector.client, prefix, ["bad:name"])


# ----------------------------------------------------------------------------------------------- outages


def test_redis_outage_gives_redis_up_0_and_recovers(
    tmp_path: Path, exporter: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    """Our own password-protected Redis, stopped and restarted on the same port under a running exporter."""
    password = uuid.uuid4().hex
    port = free_port()
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    proc = start_redis(port, tmp_path / "redis", "--requirepass", password)
    try:
        with Queue("jobs", url, prefix="p") as queue:
            queue.add("a", {})
        served = exporter("p", url=url)
        caplog.set_level(logging.INFO, logger="sbqueue.ops.exporter")
        up = served.scrape()
        assert value(up, "redis_up") == 1 and value(up, "bullmq_queue_waiting", queue="jobs") == 1

        _stop(proc)
        for _ in range(2):
            down = served.scrape()  # HTTP 200, no exception
            assert value(down, "redis_up") == 0
            assert not [s for s in down if s.name.startswith(("bullmq_", "redis_")) and s.name != "redis_up"]
        assert value(down, "sbqueue_exporter_scrape_errors_total") == 2
        assert len([rec for rec in caplog.records if "unavailable" in rec.getMessage()]) == 1  # once, not per scrape

        proc = start_redis(port, tmp_path / "redis", "--requirepass", password)
        back = served.scrape()
        assert value(back, "redis_up") == 1
        assert value(back, "redis_memory_used_bytes") > 0
        assert any("reachable again" in rec.getMessage() for rec in caplog.records)
    finally:
        _stop(proc)
    assert password not in caplog.text
    assert "127.0.0.1" in caplog.text and ":***@" in caplog.text  # the URL is logged, masked
    assert not any(password in text for text in served.texts)


def test_embedded_server_stopped_gives_redis_up_0(tmp_path: Path, exporter: Callable[..., Served]) -> None:
    """sbqueue's own embedded server, stopped under the exporter."""
    info = embedded.ensure_server(tmp_path, binary=redis_binary())
    try:
        served = exporter("bull", url=info.url)
        assert value(served.scrape(), "redis_up") == 1
    finally:
        embedded.stop(tmp_path)
    assert value(served.scrape(), "redis_up") == 0


# ----------------------------------------------------------------------------------------------- names


def test_every_metric_of_the_rules_and_dashboard_is_scraped(
    r: redis.Redis, prefix: str, exporter: Callable[..., Served]
) -> None:
    """alerts.yml and the dashboard only use names a real scrape has; EXPORTER_METRICS ⊆ scraped names."""
    queue = Queue("names", r, prefix=prefix)
    queue.add("a", {})
    dead_letter_jobs(r, prefix, [{}])  # a dead-letter queue: sbqueue_dead_letters
    served = exporter(prefix)
    served.scrape()
    run_jobs(queue, r, 1)
    scraped = {s.name for s in served.scrape()}
    used = set().union(*(metric_names(e) for e in [rule["expr"] for rule in alert_rules()] + dashboard_exprs()))
    assert not (used - REPLICA_ONLY_METRICS) - scraped
    assert not (EXPORTER_METRICS - REPLICA_ONLY_METRICS) - scraped


def test_replication_lag_is_scraped_with_a_replica(tmp_path: Path, exporter: Callable[..., Served]) -> None:
    """The replica-only names appear on a primary with a connected replica (and the link on the replica)."""
    primary_port, replica_port = free_port(), free_port()
    primary = start_redis(primary_port, tmp_path / "primary")
    replica = None
    try:
        replica = start_redis(replica_port, tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary_port))
        with redis.Redis(port=primary_port, decode_responses=True) as client:
            wait_for(lambda: client.info("replication").get("slave0", {}).get("state") == "online",
                     what="replica online")  # fmt: skip
        on_primary = exporter("bull", url=f"redis://127.0.0.1:{primary_port}/0").scrape()
        on_replica = exporter("bull", url=f"redis://127.0.0.1:{replica_port}/0").scrape()
    finally:
        if replica is not None:
            _stop(replica)
        _stop(primary)
    assert {s.name for s in on_primary} >= REPLICA_ONLY_METRICS
    lag = value(on_primary, "redis_connected_slave_lag_seconds", slave_port=str(replica_port), slave_state="online")
    assert 0 <= lag < 10
    assert value(on_replica, "redis_master_link_up", master_port=str(primary_port)) == 1
    assert value(on_replica, "redis_instance_info", role="slave") == 1


# ----------------------------------------------------------------------------------------------- security


def test_read_only_acl_user_and_no_password_in_metrics_or_logs(
    r: redis.Redis, redis_url: str, prefix: str, exporter: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL user that cannot write is enough; a scrape changes nothing; its password is never shown."""
    queue = Queue("acl", r, prefix=prefix)
    queue.add("a", {})
    run_jobs(queue, r, 1)
    queue.add("b", {})
    user, password = f"{prefix}-exporter", uuid.uuid4().hex
    r.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], categories=["+@read"],
                  commands=["+info", "+slowlog", "+client|list", "+client|setname", "+time", "+ping"])  # fmt: skip
    parts = urlsplit(redis_url)
    base = f"{parts.hostname}:{parts.port}{parts.path}"
    caplog.set_level(logging.INFO, logger="sbqueue.ops.exporter")
    try:
        before = snapshot(r, prefix)
        served = exporter(prefix, url=f"redis://{user}:{password}@{base}")
        for _ in range(2):
            samples = served.scrape()
        assert snapshot(r, prefix) == before
        assert value(samples, "redis_up") == 1
        assert value(samples, "sbqueue_exporter_scrape_errors_total") == 0
        assert value(samples, "bullmq_queue_waiting", queue="acl") == 1
        assert value(samples, "bullmq_queue_workers", queue="acl") == 0
        assert "redis_slowlog_last_id" in {s.name for s in samples}

        wrong = exporter(prefix, url=f"redis://{user}:wrong-{password}@{base}")
        assert value(wrong.scrape(), "redis_up") == 0
    finally:
        r.acl_deluser(user)
    assert f"{user}:***@" in caplog.text
    assert password not in caplog.text
    assert not any(password in text for text in served.texts + wrong.texts)


# ----------------------------------------------------------------------------------------------- command line


def test_deploy_artefacts_use_flags_the_cli_has() -> None:
    """The exporter command lines in deploy/ (k8s, compose, systemd) parse with `sbqueue exporter`'s flags."""
    (container,) = containers(k8s_index()[("Deployment", "sbqueue-exporter")])
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    command_lines = {
        "k8s": _args(container),
        "compose": [str(a) for a in compose["services"]["sbqueue-exporter"]["command"]],
        "systemd": _unit("sbqueue-exporter.service")["Service"]["ExecStart"].split(),
    }
    parser = build_parser()
    for where, argv in command_lines.items():
        assert Path(argv[0]).name == "sbqueue" and argv[1] == "exporter", where
        args = parser.parse_args(argv[1:])
        assert args.func is _exporter, where
        assert (args.port, args.queues, args.prefix) == (9121, "all", "bull"), where
        assert args.url.startswith("redis://:") or args.url == "${SBQUEUE_REDIS_URL}", where


def test_parse_queues() -> None:
    assert parse_queues("all") is None
    assert parse_queues("a, b,") == ["a", "b"]
    with pytest.raises(InvalidOptionError):
        parse_queues(" , ")


def test_cli_serves_until_sigterm(r: redis.Redis, redis_url: str, prefix: str) -> None:
    """`python -m sbqueue exporter ...` serves /metrics and exits 0 on SIGTERM."""
    Queue("cli", r, prefix=prefix).add("a", {})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbqueue", "exporter", "--url", redis_url, "--prefix", prefix, "--queues",
         "cli,absent", "--port", str(port), "--address", "127.0.0.1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def scraped() -> list[Sample] | None:
            try:
                return parse(scrape_text(port))
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()
                return None

        samples = wait_for(scraped, timeout=20, what="the exporter to answer")
        assert value(samples, "redis_up") == 1
        assert value(samples, "bullmq_queue_waiting", queue="cli") == 1
        assert value(samples, "bullmq_queue_waiting", queue="absent") == 0
        assert "process_resident_memory_bytes" in {s.name for s in samples}
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert b"serving http://127.0.0.1" in err
    # a queue that does not exist is named, with what does exist (it is still exported, as zeros)
    assert f"queue(s) absent do not exist under prefix '{prefix}'".encode() in err
    assert b"cli" in err.split(b"do not exist", 1)[1]
