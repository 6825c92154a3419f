"""Shared fixtures: a real Redis (embedded 6.2 by default, or --redis-url), one key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from sbqueue import embedded

#: test folders that start and use their own Redis servers: CI's second run (--redis-url) skips them
OWN_SERVER_DIRS = ("cluster", "chaos", "clients", "sentinel", "reliability")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "tests" in parts and any(d in parts[parts.index("tests") + 1 :] for d in OWN_SERVER_DIRS):
            item.add_marker(pytest.mark.own_server)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-url",
        default=None,
        help="run against this Redis instead of the embedded server sbqueue starts (never flushed)",
    )


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis every test talks to. Default: an embedded server (bundled redis-server 6.2)."""
    url = request.config.getoption("--redis-url")
    if url:
        yield url
        return
    home = tmp_path_factory.mktemp("sbqueue-home")
    binary = embedded.bundled_binary() or embedded.find_binary()
    info = embedded.ensure_server(home, binary=binary)
    old = os.environ.get("SBQUEUE_REDIS_URL")
    os.environ["SBQUEUE_REDIS_URL"] = info.url  # subprocesses and notebooks find the same server
    try:
        yield info.url
    finally:
        if old is None:
            os.environ.pop("SBQUEUE_REDIS_URL", None)
        else:
            os.environ["SBQUEUE_REDIS_URL"] = old
        embedded.stop(home)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client (decoded responses) on the test Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(r: redis.Redis) -> Iterator[str]:
    """A unique key prefix for this test; only its keys are deleted afterwards (SCAN + UNLINK)."""
    pfx = f"sbqt{uuid.uuid4().hex[:10]}"
    yield pfx
    delete_prefix(r, pfx)


def delete_prefix(client: redis.Redis, pfx: str) -> None:
    """Remove every key under ``pfx:`` — never FLUSHALL/FLUSHDB."""
    batch: list[str] = []
    for key in client.scan_iter(match=f"{pfx}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def snapshot(client: redis.Redis, pfx: str) -> dict[str, tuple[str, object]]:
    """Every key under ``pfx:`` with its type and full contents (for 'nothing changed' checks)."""
    out: dict[str, tuple[str, object]] = {}
    for key in sorted(client.scan_iter(match=f"{pfx}:*", count=1000)):
        kind = client.type(key)
        if kind == "string":
            value: object = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = [fields for _id, fields in client.xrange(key)]
        else:
            value = None
        out[key] = (kind, value)
    return out
