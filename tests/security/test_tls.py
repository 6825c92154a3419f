"""TLS (``rediss://``) end to end, against a private TLS-only redis-server with a CA this module creates.

Queue, AsyncQueue, Worker (its blocking connection too), QueueEvents, Inspector, the exporter collector and the
``sbqueue worker`` CLI all work over ``rediss://…?ssl_ca_certs=<ca.pem>`` (redis-py URL query arguments), with
``ssl_cert_reqs=required``; the TLS options survive the twin clients sbqueue makes; a client that does not trust
the CA, or speaks plain TCP, gets a clear :class:`ConnectionFailedError` (password masked).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio

import sbqueue
from sbqueue import clients, connection
from sbqueue.inspection import Inspector
from tests.processors import wait_for

from .servers import Certs, PrivateRedis, make_certs, private_redis, tls_binary

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "tls-Pa55:w/rd"  # characters that need percent-encoding in a URL

pytestmark = pytest.mark.skipif(tls_binary() is None, reason="no redis-server built with TLS")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path_factory.mktemp("tls-redis"), certs=certs, password=PASSWORD) as server:
        yield server


@pytest.fixture
def tls_url(tls_server: PrivateRedis) -> str:
    return tls_server.url_for("default", PASSWORD, ssl_cert_reqs="required")


@pytest.fixture
def prefix(tls_server: PrivateRedis) -> Iterator[str]:
    """A key prefix of its own per test on the private server (its keys deleted afterwards)."""
    pfx = f"tls{uuid.uuid4().hex[:8]}"
    yield pfx
    admin = tls_server.admin()
    keys = list(admin.scan_iter(match=f"{pfx}:*"))
    if keys:
        admin.delete(*keys)
    admin.close()


def test_server_really_is_tls_only(tls_server: PrivateRedis, certs: Certs) -> None:
    plain = f"redis://default:{quote(PASSWORD, safe='')}@127.0.0.1:{tls_server.port}/0"
    with pytest.raises(sbqueue.ConnectionFailedError) as info:
        sbqueue.connect(plain, socket_connect_timeout=2, socket_timeout=2)
    assert PASSWORD not in str(info.value) and "***" in str(info.value)
    untrusted = f"rediss://default:{quote(PASSWORD, safe='')}@127.0.0.1:{tls_server.port}/0"  # system CAs only
    with pytest.raises(sbqueue.ConnectionFailedError, match=r"(?i)certificate") as info:
        sbqueue.connect(untrusted)
    assert PASSWORD not in str(info.value)


def test_connect_and_twins_keep_the_tls_options(tls_url: str, certs: Certs) -> None:
    client = sbqueue.connect(tls_url)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert client.connection_pool.connection_class is redis.SSLConnection
        assert kwargs["ssl_ca_certs"] == str(certs.ca) and kwargs["ssl_cert_reqs"] == "required"
        twin = clients.sync_twin(client, socket_timeout=7)
        assert twin.connection_pool.connection_class is redis.SSLConnection and twin.ping()
        assert twin.connection_pool.connection_kwargs["ssl_ca_certs"] == str(certs.ca)
        twin.close()
        twin.connection_pool.disconnect()

        async def use_async_twin() -> Any:
            atwin = clients.async_twin(client)
            try:
                assert atwin.connection_pool.connection_class is redis.asyncio.SSLConnection
                assert atwin.connection_pool.connection_kwargs["ssl_ca_certs"] == str(certs.ca)
                return await atwin.ping()
            finally:
                await atwin.aclose(close_connection_pool=True)

        assert asyncio.run(use_async_twin()) is True
        assert "***" in connection.mask_url(connection.url_of(client)) and PASSWORD not in repr(client)
    finally:
        client.close()


def test_queue_worker_events_inspector_over_tls(tls_url: str, prefix: str) -> None:
    q = sbqueue.Queue("tls", tls_url, prefix=prefix)
    events = sbqueue.QueueEvents("tls", tls_url, prefix=prefix, block_ms=200)
    completed: list[dict[str, Any]] = []
    events.on("completed", completed.append)
    events.start()
    errors: list[BaseException] = []

    async def double(job: sbqueue.Job) -> int:
        job_progress = job.update_progress(50)
        await job_progress
        return int(job.data["n"]) * 2

    worker = sbqueue.Worker("tls", double, tls_url, prefix=prefix, concurrency=4, drain_delay=0.5,
                            stalled_interval=500, name="tls-worker")  # fmt: skip
    worker.on("error", errors.append)
    try:
        jobs = q.add_bulk([{"name": "double", "data": {"n": i}} for i in range(20)])
        assert q.get_job(jobs[0].id).data == {"n": 0}
        worker.start()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 20, 15, what="20 completed over TLS")
        assert q.get_job(jobs[3].id).returnvalue == 6
        wait_for(lambda: len(completed) == 20, 10, what="20 completed events over TLS")
        assert sorted(e["returnvalue"] for e in completed) == [2 * i for i in range(20)]
        # the worker's blocking connection is named (CLIENT SETNAME over TLS), as BullMQ's
        assert [w["name"] for w in q.get_workers()] == ["tls"]
    finally:
        worker.close(timeout=5)
        events.close()
    assert not errors, errors
    with Inspector(tls_url, prefix, progress=False) as insp:
        row = insp.queues().set_index("queue").loc["tls"]
        assert row.completed == 20
        jobs_df = insp.jobs("tls", "completed")
        assert len(jobs_df) == 20 and jobs_df.parse_error.isna().all()
        assert PASSWORD not in repr(insp) and "rediss://" in repr(insp)
    q.close()


def test_async_queue_over_tls(tls_url: str, prefix: str) -> None:
    async def main() -> tuple[Any, Any]:
        async with sbqueue.AsyncQueue("atls", tls_url, prefix=prefix) as aq:
            job = await aq.add("a", {"x": 1})
            got = await aq.get_job(job.id)
            counts = await aq.get_job_counts("waiting")
            inspected = aq.inspector.jobs()  # the bound inspector reaches the same server by URL (CA kept)
            return (got.data, counts), len(inspected)

    (data, counts), rows = asyncio.run(main())
    assert data == {"x": 1} and counts == {"waiting": 1} and rows == 1


def test_exporter_collector_over_tls(tls_url: str, prefix: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from sbqueue.ops.exporter import QueueCollector, connect_exporter

    q = sbqueue.Queue("exp", tls_url, prefix=prefix)
    q.add_bulk([{"name": "n"} for _ in range(3)])
    client = connect_exporter(tls_url)
    registry = CollectorRegistry()
    registry.register(QueueCollector(client, prefix))
    text = generate_latest(registry).decode()
    client.close()
    q.close()
    assert "redis_up 1.0" in text
    assert 'bullmq_queue_waiting{queue="exp"} 3.0' in text
    assert PASSWORD not in text


def test_cli_worker_over_tls(tls_url: str, prefix: str) -> None:
    q = sbqueue.Queue("cli", tls_url, prefix=prefix)
    q.add_bulk([{"name": "echo", "data": {"i": i}} for i in range(10)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbqueue", "worker", "cli", "tests.processors:echo", "--url", tls_url,
         "--prefix", prefix, "--concurrency", "2", "--shutdown-timeout", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and q.get_job_counts("completed")["completed"] < 10:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert q.get_job_counts("completed")["completed"] == 10
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
        q.close()
    assert proc.returncode == 0, err
    assert "rediss://default:***@127.0.0.1" in err and "10 completed" in err
    assert PASSWORD not in err and "Pa55" not in err


def test_client_object_with_tls_options(tls_server: PrivateRedis, certs: Certs, prefix: str) -> None:
    """A ``redis.Redis(ssl=True, ...)`` built by hand (no URL): its TLS options reach every twin sbqueue makes
    (the asyncio worker connections drop the sync-only OCSP options, which are off), and the URL sbqueue
    derives for it keeps ``rediss://`` and the CA."""
    client = redis.Redis(host="127.0.0.1", port=tls_server.port, ssl=True, ssl_ca_certs=str(certs.ca),
                         password=PASSWORD, decode_responses=True)  # fmt: skip
    derived = connection.url_of(client)
    assert derived.startswith("rediss://") and "ssl_ca_certs=" in derived and PASSWORD not in derived
    q = sbqueue.Queue("obj", client, prefix=prefix)
    q.add_bulk([{"name": "n", "data": {"i": i}} for i in range(3)])
    errors: list[BaseException] = []
    worker = sbqueue.Worker("obj", lambda job: job.data["i"], client, prefix=prefix, drain_delay=0.5)
    worker.on("error", errors.append)
    try:
        worker.start()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 3, 10, what="3 completed")
    finally:
        worker.close(timeout=5)
    assert not errors, errors
    events = sbqueue.QueueEvents("obj", client, prefix=prefix, last_event_id="0")
    assert any(e["event"] == "completed" for e in events.read())
    events.close()

    async def via_async() -> int:
        aq = sbqueue.AsyncQueue("obj", client, prefix=prefix)
        try:
            return len(aq.inspector.jobs(states="completed"))  # reaches the server through url_of(): CA kept
        finally:
            await aq.close()

    assert asyncio.run(via_async()) == 3
    client.close()
