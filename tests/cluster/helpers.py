"""Helpers shared by the cluster test modules.

:func:`wipe` deletes one prefix's keys on every master of *our* cluster (never FLUSHALL). The ``redis_url``,
``r`` and ``prefix`` fixtures here *shadow* the standalone ones of ``tests/conftest.py`` inside the modules that
import them, so unchanged tests of the main suite run against the test cluster: ``redis_url`` is the cluster's
URL, ``r`` an sbqueue cluster client (``sbqueue.connect``), ``prefix`` a hash-tagged ``{sbqt<random>}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import sbqueue
from sbqueue._core.keys import _glob_escape
from sbqueue.connection import cluster as _cluster
from sbqueue.connection import cluster_nodes

from .conftest import Cluster


def wipe(client: Any, pfx: str) -> None:
    """UNLINK every key under ``pfx:`` on every master (keys of several slots: one command each)."""
    for node in cluster_nodes.primaries(client):
        keys = list(node.scan_iter(match=_glob_escape(pfx) + ":*", count=1000))
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        if keys:
            pipe.execute()


def keys_by_node(client: Any, pfx: str) -> dict[str, list[str]]:
    """``{"host:port": [keys under pfx:]}`` for every master that holds some."""
    out: dict[str, list[str]] = {}
    for node in sorted(client.get_primaries(), key=lambda n: n.name):
        found = sorted(client.get_redis_connection(node).scan_iter(match=_glob_escape(pfx) + ":*", count=1000))
        if found:
            out[node.name] = found
    return out


@pytest.fixture
def redis_url(redis_cluster: Cluster) -> str:
    """Shadows the standalone ``redis_url``: the test cluster."""
    return redis_cluster.url


@pytest.fixture
def r(redis_url: str) -> Iterator[Any]:
    """Shadows the standalone ``r``: a cluster client (``redis.cluster.RedisCluster``), decoded replies."""
    client = sbqueue.connect(redis_url)
    assert _cluster.is_cluster(client)
    yield client
    client.close()


@pytest.fixture
def prefix(r: Any) -> Iterator[str]:
    """Shadows the standalone ``prefix``: ``{sbqt<random>}``, a hash tag, so each queue lives in one slot."""
    pfx = "{sbqt" + uuid.uuid4().hex[:10] + "}"
    yield pfx
    wipe(r, pfx)
