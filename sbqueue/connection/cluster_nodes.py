"""Redis Cluster: the commands that must visit every master, not redis-py's one default node.

A queue's own keys live on one master (its hash tag), but server-wide views do not: ``CLIENT LIST``
(:func:`client_list`, every node's clients with their ``node``), ``DBSIZE`` (:func:`dbsize`, summed), ``SCAN``
(:func:`scan_page`, a cursor that walks each master in turn) and the exporter's server reads
(:func:`server_reads`). :func:`primaries` and :func:`node_for_key` give single-server clients for the masters.
On a single server each function does the plain command, so callers keep one code path.
"""

from __future__ import annotations

from typing import Any

import redis

from sbqueue._core.keys import hash_tag
from sbqueue.connection.cluster import AsyncCluster, SyncCluster


def primaries(client: Any) -> list[Any]:
    """Single-server (sync) clients, one per master, in a stable order; ``[client]`` for a single server."""
    if not isinstance(client, SyncCluster):
        return [client]
    return [client.get_redis_connection(node) for node in sorted(client.get_primaries(), key=lambda n: n.name)]


def node_for_key(client: Any, key: str) -> Any | None:
    """A single-server client on the master that owns ``key`` (``client`` itself for a single server), for a
    read-only script that builds keys from ``key``. None on a cluster when ``key`` has no hash tag: the keys
    built from it may live on other masters."""
    if not isinstance(client, SyncCluster):
        return client
    if hash_tag(key) is None:
        return None
    return client.get_redis_connection(client.get_node_from_key(key))


def _merge_clients(reply: Any) -> list[dict[str, Any]]:
    if not isinstance(reply, dict):
        return list(reply)
    return [{**entry, "node": node} for node, entries in sorted(reply.items()) for entry in entries]


def client_list(client: Any) -> Any:
    """``CLIENT LIST`` of every node of a cluster, each entry with its ``node`` (``host:port``); a single
    server's own list otherwise. An awaitable for asyncio clients."""
    if isinstance(client, SyncCluster):
        return _merge_clients(client.client_list(target_nodes=SyncCluster.ALL_NODES))
    if isinstance(client, AsyncCluster):
        return _client_list_async(client)
    return client.client_list()


async def _client_list_async(client: Any) -> list[dict[str, Any]]:
    return _merge_clients(await client.client_list(target_nodes=AsyncCluster.ALL_NODES))


def dbsize(client: Any) -> int:
    """Keys in the database (summed over every master of a cluster)."""
    return sum(int(node.dbsize()) for node in primaries(client))


_NODE_SHIFT = 64  # a cluster SCAN cursor: (index of the master << 64) | that master's own cursor


def scan_page(client: Any, cursor: int, match: str, count: int) -> tuple[int, list[Any]]:
    """One SCAN step: ``(next cursor, keys)``, 0 when the whole keyspace was walked. On a cluster the
    cursor walks every master in turn (it encodes which master, and that master's cursor)."""
    if not isinstance(client, SyncCluster):
        nxt, keys = client.scan(cursor, match=match, count=count)
        return int(nxt), list(keys)
    nodes = primaries(client)
    index, node_cursor = divmod(int(cursor), 1 << _NODE_SHIFT)
    if index >= len(nodes):  # the cluster shrank during the walk
        return 0, []
    nxt, keys = nodes[index].scan(node_cursor, match=match, count=count)
    if int(nxt):
        return (index << _NODE_SHIFT) | int(nxt), list(keys)
    return (0 if index + 1 >= len(nodes) else (index + 1) << _NODE_SHIFT), list(keys)


def server_reads(client: Any) -> list[Any]:
    """The exporter's server reads: ``[INFO, SLOWLOG LEN, SLOWLOG GET 1, CLIENT LIST, TIME]``, errors in place.
    On a cluster, the figures come from the first master and CLIENT LIST from every node."""
    with primaries(client)[0].pipeline(transaction=False) as pipe:
        pipe.info()
        pipe.slowlog_len()
        pipe.slowlog_get(1)
        pipe.time()
        info, slow_len, slow_last, now = pipe.execute(raise_on_error=False)
    clients: Any
    try:
        clients = client_list(client)
    except redis.ResponseError as exc:
        clients = exc
    return [info, slow_len, slow_last, clients, now]
