"""Redis Sentinel connections: the ``redis+sentinel://`` URL (validated, masked), ``connect()``, redis-py's own
Sentinel-managed clients given as ``connection=`` to every class, derived twins that stay Sentinel-managed,
``url_of`` round trips, the CLI, and clear start-up failures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel

import sbqueue
from sbqueue import clients
from sbqueue.connection import connect, connect_async, mask_url, scrub, url_of, validate_url
from sbqueue.connection import sentinel as _sentinel
from sbqueue.errors import ConfigurationError, ConnectionFailedError
from sbqueue.ops.exporter import connect_exporter
from tests.clients.test_client_matrix import full_cycle
from tests.conftest import delete_prefix
from tests.processors import wait_for

from .conftest import PASSWORD
from .servers import SERVICE, SentinelGroup

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq9-secret"


@pytest.fixture
def prefix(sentinel_group: SentinelGroup) -> Iterator[str]:
    pfx = f"sbqs{uuid.uuid4().hex[:8]}"
    yield pfx
    with sbqueue.connect(sentinel_group.url) as admin:
        delete_prefix(admin, pfx)


# --- URLs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"redis+sentinel://u:{SECRET}@h:26379", "names no service"),
        (f"redis+sentinel://u:{SECRET}@h:26379/", "names no service"),
        (f"redis+sentinel://u:{SECRET}@h:26379,/svc", "empty sentinel address"),
        (f"redis+sentinel://u:{SECRET}@h:99999/svc", "invalid port"),
        (f"redis+sentinel://u:{SECRET}@h:port/svc", "invalid sentinel address"),
        (f"redis+sentinel://u:{SECRET}@:26379/svc", "no host"),
        (f"redis+sentinel://u:{SECRET}@h/svc/zero", "/<service>/<db number>"),
        (f"redis+sentinel://u:{SECRET}@h/svc/0/extra", "/<service>/<db number>"),
        (f"redis+sentinel://u:{SECRET}@h/svc?sockettimeout=1", "unknown query argument"),
        (f"redis+sentinel://u:{SECRET}@h/svc?socket_timeout=abc", "socket_timeout"),
        (f"redis+sentinel://u:{SECRET}@h/svc?cluster=1", "cluster= does not apply"),
    ],
)
def test_bad_sentinel_urls_are_refused_with_the_password_masked(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        validate_url(url)
    assert problem in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ConfigurationError):
        connect(url)
    with pytest.raises(ConfigurationError):
        sbqueue.Queue("q", url)


def test_sentinel_urls_parse_and_mask() -> None:
    target = _sentinel.parse(f"rediss+sentinel://me:{SECRET}@a:1,[::1]:2,b/svc%2Fx/3?socket_timeout=2.5"
                             f"&sentinel_password=sp{SECRET}&ssl_cert_reqs=none")  # fmt: skip
    assert target.sentinels == [("a", 1), ("::1", 2), ("b", 26379)] and target.service == "svc/x" and target.tls
    assert target.options["db"] == 3 and target.options["username"] == "me" and target.options["password"] == SECRET
    assert target.options["socket_timeout"] == 2.5 and target.options["ssl"] is True
    assert target.sentinel_options == {"password": f"sp{SECRET}", "socket_timeout": 2.5, "ssl": True,
                                       "ssl_cert_reqs": "none"}  # fmt: skip
    url = f"redis+sentinel://me:{SECRET}@a:1,b:2/svc/0?sentinel_password=sp{SECRET}"
    masked = mask_url(url)
    assert SECRET not in masked and masked.startswith("redis+sentinel://me:***@a:1,b:2/svc/0")
    assert SECRET not in scrub(f"error: {SECRET} and sp{SECRET}", url)
    # a raw '/' or '@' in the password: masked whole
    assert "p/w" not in mask_url("redis+sentinel://:p/w@x@h:1/svc")


# --- clients ----------------------------------------------------------------------------------------------------
def test_connect_gives_a_sentinel_managed_client_whose_url_round_trips(sentinel_group: SentinelGroup) -> None:
    with connect(sentinel_group.url) as client:
        assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
        assert client.ping() and client.info("replication")["role"] == "master"
        assert client.connection_pool.get_master_address()[1] == sentinel_group.master_port()
        assert url_of(client) == sentinel_group.url
    unchecked = connect(sentinel_group.url, check=False)
    twin = connect(url_of(unchecked))
    assert twin.ping()
    twin.close()
    unchecked.close()

    async def use() -> str:
        aclient = connect_async(sentinel_group.url)
        try:
            assert isinstance(aclient.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
            return str((await aclient.info("replication"))["role"])
        finally:
            await aclient.aclose()

    assert asyncio.run(use()) == "master"


def _user_sync(group: SentinelGroup, **kwargs: Any) -> redis.Redis:
    manager = redis.sentinel.Sentinel([("127.0.0.1", p) for p in group.sentinel_ports], socket_timeout=5)
    return manager.master_for(SERVICE, password=PASSWORD, **kwargs)


def _user_async(group: SentinelGroup, **kwargs: Any) -> redis.asyncio.Redis:
    manager = redis.asyncio.sentinel.Sentinel([("127.0.0.1", p) for p in group.sentinel_ports], socket_timeout=5)
    return manager.master_for(SERVICE, password=PASSWORD, **kwargs)


FORMS: dict[str, Callable[[SentinelGroup], Any]] = {
    "url": lambda g: g.url,
    "sentinel-bytes": lambda g: _user_sync(g),
    "sentinel-decoded": lambda g: _user_sync(g, decode_responses=True),
    "asyncio-sentinel": lambda g: _user_async(g),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_class_with_every_sentinel_form(form: str, sentinel_group: SentinelGroup, prefix: str) -> None:
    full_cycle(FORMS[form](sentinel_group), prefix)


def test_derived_twins_stay_sentinel_managed_and_follow_a_failover(sentinel_group: SentinelGroup) -> None:
    user = _user_sync(sentinel_group)  # bytes replies: sbqueue derives its own clients
    sync = clients.sync_client(user).client
    assert clients.sync_client(user).owned
    twin = clients.async_twin(user, **clients.DECODED)
    for derived in (sync, twin):
        pool = derived.connection_pool
        assert isinstance(pool, (redis.sentinel.SentinelConnectionPool, redis.asyncio.sentinel.SentinelConnectionPool))
        assert pool.service_name == SERVICE and "host" not in pool.connection_kwargs  # never the master's address
        assert pool.connection_kwargs["password"] == PASSWORD
    assert url_of(user) == url_of(sync) == url_of(twin) == sentinel_group.url
    before = sync.execute_command("INFO", "server")["tcp_port"]
    old, new = sentinel_group.failover()
    assert before == old

    def port() -> int:
        try:
            return int(sync.execute_command("INFO", "server")["tcp_port"])
        except redis.ConnectionError:  # the connection to the demoted master is dropped once
            return 0

    wait_for(lambda: port() == new, 15, what="the derived client on the new master")

    async def async_port() -> int:
        try:
            for _ in range(50):
                try:
                    return int((await twin.info("server"))["tcp_port"])
                except redis.ConnectionError:
                    await asyncio.sleep(0.1)
            return 0
        finally:
            await twin.aclose()

    assert asyncio.run(async_port()) == new
    clients.close_sync(sync)
    user.close()
    sentinel_group.wait_replicated()


def test_the_worker_cli_and_the_exporter_take_a_sentinel_url(sentinel_group: SentinelGroup, prefix: str) -> None:
    q = sbqueue.Queue("cli", sentinel_group.url, prefix=prefix)
    q.add("echo", {"x": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sbqueue", "worker", "cli", "tests.processors:echo", "--url",
                             sentinel_group.url, "--prefix", prefix], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 1, 30, what="the CLI worker's job")
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert PASSWORD not in out and "redis+sentinel://:***@127.0.0.1" in out, out
    exporter = connect_exporter(sentinel_group.url)
    assert isinstance(exporter.connection_pool, redis.sentinel.SentinelConnectionPool) and exporter.ping()
    exporter.close()
    q.close()


def test_unreachable_sentinels_and_a_wrong_password_fail_clearly(sentinel_group: SentinelGroup) -> None:
    dead = f"redis+sentinel://:{SECRET}@127.0.0.1:1/{SERVICE}"
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError) as err:
        sbqueue.Worker("q", lambda job: None, dead)
    assert time.monotonic() - started < 15
    assert "redis+sentinel://:***@127.0.0.1:1" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ConnectionFailedError, match="No master found for 'nope'"):
        connect(sentinel_group.url.replace(SERVICE, "nope"))
    wrong = sentinel_group.url.replace(sentinel_group.url.split("@")[0], f"redis+sentinel://:{SECRET}")
    with pytest.raises(ConnectionFailedError, match="refused the credentials") as err:
        sbqueue.QueueEvents("q", wrong)
    assert SECRET not in str(err.value)
