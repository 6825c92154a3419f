"""Every public class x every connection form a user may pass does a full cycle, warnings as errors.

Forms: a URL; ``redis.Redis`` returning bytes (redis-py's default) or str; with its own ``retry``; an ACL user;
a unix socket; TLS; a sync pool; RESP3; ``redis.asyncio.Redis`` (bytes, str + asyncio retry); an asyncio pool.
Cycle: Queue add + get_job values, a Worker with a sync and one with an async processor, QueueEvents, the
Inspector, a management call, AsyncQueue, the exporter's collector. Plus start-up failures of Worker and
QueueEvents: a clear error at construction or from ``close()``, and ``close()`` never hangs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import sbqueue
from sbqueue import clients
from sbqueue.inspection import Inspector
from sbqueue.ops.exporter import QueueCollector
from tests.conftest import delete_prefix
from tests.processors import wait_for
from tests.security.servers import Certs, PrivateRedis, make_certs, private_redis, tls_binary

PASSWORD = "m@trix:pw/1"
USER, USER_PASSWORD = "sbqmatrix", "u$er-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private server with a password, an ACL user and a unix socket."""
    with private_redis(tmp_path_factory.mktemp("matrix"), password=PASSWORD, unixsocket=True) as srv:
        admin = srv.admin()
        admin.acl_setuser(USER, enabled=True, passwords=[f"+{USER_PASSWORD}"], keys=["*"], channels=["*"],
                          commands=["+@all"])  # fmt: skip
        admin.close()
        yield srv


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("matrix-certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[PrivateRedis]:
    if tls_binary() is None:
        pytest.skip("no redis-server with TLS support (Debian's redis-server has it)")
    with private_redis(tmp_path_factory.mktemp("matrix-tls"), certs=certs, password=PASSWORD) as srv:
        yield srv


def _tcp(srv: PrivateRedis) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": srv.port, "password": PASSWORD}


#: form name -> factory(server, tls_server) of what the user passes
FORMS: dict[str, Callable[[PrivateRedis, Callable[[], PrivateRedis]], Any]] = {
    "url": lambda s, _t: s.url,
    "redis-bytes": lambda s, _t: redis.Redis(**_tcp(s)),
    "redis-decoded": lambda s, _t: redis.Redis(**_tcp(s), decode_responses=True),
    "redis-retry": lambda s, _t: redis.Redis(**_tcp(s), retry=Retry(ExponentialBackoff(cap=0.5), 3),
                                             retry_on_error=[redis.ConnectionError]),
    "acl-user": lambda s, _t: redis.Redis(host="127.0.0.1", port=s.port, username=USER, password=USER_PASSWORD),
    "unix-socket": lambda s, _t: redis.Redis(unix_socket_path=str(s.socket), password=PASSWORD),
    "tls": lambda _s, t: redis.Redis(host="127.0.0.1", port=t().port, password=PASSWORD, ssl=True,
                                     ssl_ca_certs=str(t().certs.ca)),  # type: ignore[union-attr]
    "pool": lambda s, _t: redis.ConnectionPool(**_tcp(s)),
    "resp3": lambda s, _t: redis.Redis(**_tcp(s), protocol=3, decode_responses=True),
    "asyncio-bytes": lambda s, _t: redis.asyncio.Redis(**_tcp(s)),
    "asyncio-decoded-retry": lambda s, _t: redis.asyncio.Redis(
        **_tcp(s), decode_responses=True, retry=redis.asyncio.retry.Retry(ExponentialBackoff(cap=0.5), 3)),
    "asyncio-pool": lambda s, _t: redis.asyncio.ConnectionPool(**_tcp(s)),
}


@pytest.fixture
def prefix(server: PrivateRedis) -> Iterator[str]:
    pfx = f"sbqm{uuid.uuid4().hex[:8]}"
    yield pfx
    admin = server.admin()
    delete_prefix(admin, pfx)
    admin.close()


def _settings_before(conn: Any) -> Any:
    pool = conn if isinstance(conn, (redis.ConnectionPool, redis.asyncio.ConnectionPool)) else getattr(
        conn, "connection_pool", None)
    return None if pool is None else dict(pool.connection_kwargs)


def full_cycle(conn: Any, prefix: str) -> None:
    """Everything a user does with one connection object; asserts str ids, parsed values, events."""
    before = _settings_before(conn)
    q = sbqueue.Queue("m-sync", conn, prefix=prefix)
    qa = sbqueue.Queue("m-async", conn, prefix=prefix)
    events = sbqueue.QueueEvents("m-sync", conn, prefix=prefix, block_ms=200)
    completed: list[dict[str, Any]] = []
    events.on("completed", completed.append)
    events.start()
    errors: list[BaseException] = []

    def double(job: sbqueue.Job) -> dict[str, Any]:
        assert isinstance(job.id, str) and isinstance(job.data, dict)
        job.update_progress(50)
        return {"double": job.data["n"] * 2, "id": job.id}

    async def triple(job: sbqueue.Job) -> int:
        assert isinstance(job.id, str)
        return int(job.data["n"]) * 3

    sync_worker = sbqueue.Worker("m-sync", double, conn, prefix=prefix, concurrency=4, drain_delay=0.5)
    async_worker = sbqueue.Worker("m-async", triple, conn, prefix=prefix, concurrency=4, drain_delay=0.5)
    for w in (sync_worker, async_worker):
        w.on("error", errors.append)
    try:
        added = [q.add("double", {"n": i, "text": "héllo"}) for i in range(5)]
        qa.add_bulk([{"name": "triple", "data": {"n": i}} for i in range(5)])
        job = q.get_job(added[3].id)
        assert job is not None and job.id == "4" and job.data == {"n": 3, "text": "héllo"}
        sync_worker.start()
        async_worker.start()
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 5, 15, what="5 sync jobs completed")
        wait_for(lambda: qa.get_job_counts("completed")["completed"] == 5, 15, what="5 async jobs completed")
        done = q.get_job("4")
        assert done is not None and done.returnvalue == {"double": 6, "id": "4"} and done.progress == 50
        assert done.attempts_made == 1 and isinstance(done.finished_on, int)
        assert sorted(j.returnvalue for j in qa.get_jobs(["completed"])) == [0, 3, 6, 9, 12]
        wait_for(lambda: len(completed) == 5, 10, what="5 completed events")
        assert sorted(e["returnvalue"]["double"] for e in completed) == [0, 2, 4, 6, 8]
        assert all(isinstance(e["jobId"], str) for e in completed)
        # inspection: typed values whatever the client returns
        frame = q.inspector.jobs("completed")
        assert sorted(frame["id"]) == ["1", "2", "3", "4", "5"]
        assert sorted(d["n"] for d in frame["data"]) == [0, 1, 2, 3, 4]
        with Inspector(conn, prefix, progress=False) as insp:
            row = insp.queues().set_index("queue").loc["m-async"]
            assert row.completed == 5
        collector = QueueCollector(conn, prefix, ["m-sync"])
        samples = {(m.name, tuple(s.labels.items())): s.value for m in collector.collect() for s in m.samples}
        assert samples[("bullmq_queue_completed", (("queue", "m-sync"),))] == 5
        # management and the asyncio flavour
        assert sorted(q.clean(0, 100, "completed")) == ["1", "2", "3", "4", "5"]

        async def async_side() -> None:
            aq = sbqueue.AsyncQueue("m-sync", conn, prefix=prefix)
            made = await aq.add("later", {"x": [1, 2]}, delay=60_000)
            got = await aq.get_job(made.id)
            assert got is not None and got.data == {"x": [1, 2]} and await aq.get_job_state(made.id) == "delayed"
            await aq.close()

        asyncio.run(async_side())
        # flows: a FlowProducer and the flow getters on the same connection object
        fp = sbqueue.FlowProducer(conn, prefix=prefix)
        node = fp.add({"name": "p", "queue_name": "m-flow",
                       "children": [{"name": "c", "queue_name": "m-flow-kids", "data": {"n": 1}}]})  # fmt: skip
        fq = sbqueue.Queue("m-flow", conn, prefix=prefix)
        tree = fq.get_flow(node.job.id)
        assert tree is not None and tree.children[0].job.data == {"n": 1} and isinstance(tree.job.id, str)
        assert fq.get_dependencies_count(node.job.id)["unprocessed"] == 1
        fq.close()
        fp.close()
    finally:
        sync_worker.close(timeout=5)
        async_worker.close(timeout=5)
        events.close()
        q.close()
        qa.close()
    assert not errors, errors
    assert _settings_before(conn) == before  # the user's own client/pool was not changed


@pytest.mark.parametrize("form", list(FORMS))
def test_every_class_with_every_connection_form(
    form: str, server: PrivateRedis, request: pytest.FixtureRequest, prefix: str
) -> None:
    conn = FORMS[form](server, lambda: request.getfixturevalue("tls_server"))
    if form == "tls":
        tls = request.getfixturevalue("tls_server")
        admin = tls.admin()
        try:
            full_cycle(conn, prefix)
        finally:
            delete_prefix(admin, prefix)
            admin.close()
        return
    full_cycle(conn, prefix)


def test_a_decoding_client_is_shared_and_a_bytes_client_derived(server: PrivateRedis) -> None:
    decoded = redis.Redis(**_tcp(server), decode_responses=True)
    assert clients.sync_client(decoded) == (decoded, False)
    raw = redis.Redis(**_tcp(server), retry=Retry(ExponentialBackoff(), 5))
    derived, owned = clients.sync_client(raw)
    assert owned and derived is not raw and derived.get("sbqm-none") is None
    kwargs = derived.connection_pool.connection_kwargs
    assert kwargs["decode_responses"] and kwargs["password"] == PASSWORD
    assert kwargs["retry"]._retries == 5  # the user's retry policy is kept
    assert raw.connection_pool.connection_kwargs["decode_responses"] is False  # and the user's client untouched
    twin, owned = clients.async_client(raw)
    assert owned and isinstance(twin.connection_pool.connection_kwargs["retry"], redis.asyncio.retry.Retry)
    assert twin.connection_pool.connection_kwargs["retry"]._retries == 5
    derived.close()


def test_unusable_connection_objects_are_refused_at_construction(server: PrivateRedis) -> None:
    for bad in (42, object(), b"redis://x", {"host": "x"}):
        with pytest.raises(sbqueue.ConfigurationError, match="connection must be None, a Redis URL"):
            sbqueue.Queue("x", bad)
        with pytest.raises(sbqueue.ConfigurationError, match="connection must be None, a Redis URL"):
            sbqueue.Worker("x", lambda job: None, bad)
    # a setting the worker's asyncio clients cannot honour: refused now, not in the worker thread later
    ocsp = redis.Redis(**_tcp(server), ssl=True, ssl_validate_ocsp=True)
    with pytest.raises(sbqueue.ConfigurationError, match="cannot honour ssl_validate_ocsp="):
        sbqueue.Worker("x", lambda job: None, ocsp)


# --- start-up failures --------------------------------------------------------------------------------------
def test_wrong_password_fails_at_construction(server: PrivateRedis) -> None:
    wrong = redis.Redis(host="127.0.0.1", port=server.port, password="nope")
    for make in (lambda c: sbqueue.Worker("x", lambda job: None, c), lambda c: sbqueue.QueueEvents("x", c)):
        for conn in (wrong, server.url_for("default", "nope")):
            with pytest.raises(sbqueue.ConnectionFailedError, match="refused the credentials") as info:
                make(conn)
            assert "nope" not in str(info.value)


def test_unreachable_server_fails_at_construction() -> None:
    from sbqueue.connection.embedded import free_port

    gone = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    with pytest.raises(sbqueue.ConnectionFailedError, match="cannot reach Redis"):
        sbqueue.Worker("x", lambda job: None, gone)
    with pytest.raises(sbqueue.ConnectionFailedError, match="cannot reach Redis"):
        sbqueue.QueueEvents("x", gone)


def _revoke(server: PrivateRedis, user: str) -> None:
    admin = server.admin()
    admin.acl_setuser(user, enabled=True, reset_passwords=True, passwords=["+changed-elsewhere"])
    admin.client_kill_filter(user=user)
    admin.close()


def test_background_worker_whose_credentials_are_revoked_stops_and_close_raises(
    server: PrivateRedis, tmp_path: Path
) -> None:
    admin = server.admin()
    user = f"sbqrev{uuid.uuid4().hex[:6]}"
    admin.acl_setuser(user, enabled=True, passwords=["+pw1"], keys=["*"], commands=["+@all"])
    admin.close()
    conn = redis.Redis(host="127.0.0.1", port=server.port, username=user, password="pw1")
    worker = sbqueue.Worker("rev", lambda job: None, conn, prefix="sbqrev", drain_delay=0.5)
    errors: list[BaseException] = []
    worker.on("error", errors.append)
    _revoke(server, user)
    worker.start()
    wait_for(lambda: not worker.running, 10, what="the worker to stop on refused credentials")
    assert errors and isinstance(errors[-1], sbqueue.ConnectionFailedError)
    started = time.monotonic()
    with pytest.raises(sbqueue.ConnectionFailedError, match="refused the worker"):
        worker.close(timeout=2)
    assert time.monotonic() - started < 2
    worker.close(timeout=2)  # reported once: a second close is quiet

    user_client = redis.Redis(host="127.0.0.1", port=server.port, username=USER, password=USER_PASSWORD)
    events = sbqueue.QueueEvents("rev", user_client, prefix="sbqrev", block_ms=200)
    ev_errors: list[BaseException] = []
    events.on("error", ev_errors.append)
    admin = server.admin()
    admin.acl_setuser(USER, enabled=True, reset_passwords=True, passwords=["+other"])
    admin.client_kill_filter(user=USER)
    try:
        events.start()
        wait_for(lambda: ev_errors, 10, what="the events reader's error")
        started = time.monotonic()
        with pytest.raises(sbqueue.ConnectionFailedError, match="refused the events reader"):
            events.close()
        assert time.monotonic() - started < 6
    finally:
        admin.acl_setuser(USER, enabled=True, reset_passwords=True, passwords=[f"+{USER_PASSWORD}"])
        admin.acl_deluser(user)
        admin.close()


def test_background_worker_and_events_on_a_server_that_went_away(tmp_path: Path) -> None:
    srv = PrivateRedis(tmp_path / "gone").start()
    conn = redis.Redis(host="127.0.0.1", port=srv.port, socket_connect_timeout=0.5)
    worker = sbqueue.Worker("gone", lambda job: None, conn, drain_delay=0.5)
    events = sbqueue.QueueEvents("gone", conn, block_ms=200)
    w_errors: list[BaseException] = []
    e_errors: list[BaseException] = []
    worker.on("error", w_errors.append)
    events.on("error", e_errors.append)
    srv.stop()
    worker.start()
    events.start()
    # Redis going away is transient: both keep retrying and say so, and close() returns within its timeout
    wait_for(lambda: w_errors and e_errors, 10, what="errors from worker and events reader")
    assert worker.running
    started = time.monotonic()
    worker.close(timeout=1)
    events.close()
    assert time.monotonic() - started < 12
    assert not worker.running
    assert all(isinstance(e, (redis.ConnectionError, redis.TimeoutError, OSError)) for e in w_errors + e_errors)
