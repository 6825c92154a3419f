"""The one place that turns what a user passes as ``connection=`` into the clients sbqueue needs.

Every public class takes ``connection``: ``None`` (:func:`sbqueue.connect`'s resolution order), a URL, a
redis-py client — sync or asyncio; single server, cluster or Sentinel-managed (``Sentinel.master_for``: its
derived twins stay Sentinel-managed and follow a failover); decoding replies or not, with its own
``retry``, TLS, credentials, unix socket — or a redis-py connection pool. sbqueue's code reads RESP2 replies
decoded to ``str``, on the flavour (sync or asyncio) it runs. A client that already fits is used as it is
(sharing the user's pool); any other is *derived*: a new client of the needed flavour on the same server with
the user's settings (host, db, credentials, TLS, timeouts, retry policy — converted between the sync and
asyncio classes without redis-py's conversion warning) plus decoded replies. The user's own client is never
changed, and a derived client is closed by the sbqueue object that made it (``owned``).

What cannot be honoured raises :class:`~sbqueue.errors.ConfigurationError` at construction.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry

from sbqueue.connection import cluster as _cluster
from sbqueue.connection import sentinel as _sentinel
from sbqueue.connection.factory import connect, connect_async, ping, url_of
from sbqueue.connection.redispy import accepted_options, convert_retry
from sbqueue.connection.urls import mask_url
from sbqueue.errors import ConfigurationError, ConnectionFailedError

#: what every derived client adds to the user's settings: str replies (a peer's non-UTF-8 bytes become U+FFFD
#: instead of raising in the middle of a reply) over RESP2, whose reply shapes sbqueue's code reads
DECODED = {"decode_responses": True, "encoding_errors": "replace", "protocol": 2}

_SYNC_POOLS = (redis.ConnectionPool,)
_ASYNC_POOLS = (redis.asyncio.ConnectionPool,)
#: pool options that belong to one pool (bookkeeping, handlers, hooks) rather than to the connection settings
_POOL_STATE = ("himport_registry", "redis_connect_func", "check_ready", "event_dispatcher")
ACCEPTED = ("None, a Redis URL, a redis.Redis or redis.asyncio.Redis client, a redis-py cluster client or a redis-py "
            "connection pool")  # fmt: skip


class Derived(NamedTuple):
    """A client sbqueue can use, and whether sbqueue made it (then sbqueue closes it)."""

    client: Any
    owned: bool


def sync_client(connection: Any, **overrides: Any) -> Derived:
    """A sync client with decoded RESP2 replies for ``connection`` (see the module docstring).

    ``overrides`` (e.g. ``socket_timeout`` for blocking reads, ``client_name``) always give a derived client.
    """
    if connection is None or isinstance(connection, str):
        return Derived(connect(connection, **overrides), True)
    source = _as_client(connection)
    if not overrides and _fits(source, want_async=False):
        return Derived(source, False)
    return Derived(sync_twin(source, **DECODED | overrides), True)


def async_client(connection: Any, **overrides: Any) -> Derived:
    """An asyncio client with decoded RESP2 replies for ``connection`` (see the module docstring)."""
    if connection is None or isinstance(connection, str):
        return Derived(connect_async(connection, **overrides), True)
    source = _as_client(connection)
    if not overrides and _fits(source, want_async=True):
        return Derived(source, False)
    return Derived(async_twin(source, **DECODED | overrides), True)


def checked_sync_client(connection: Any, **overrides: Any) -> Derived:
    """:func:`sync_client`, pinged now: a long-running consumer (Worker, QueueEvents) with a wrong password or
    an unreachable server fails at construction with a clear :class:`ConnectionFailedError`."""
    derived = sync_client(connection, **overrides)
    try:
        ensure_reachable(derived.client, connection)
    except ConnectionFailedError:
        if derived.owned:
            close_sync(derived.client)
        raise
    return derived


def ensure_reachable(client: Any, connection: Any) -> None:
    """PING ``client`` (made for ``connection``) unless :func:`connect` did already (URLs, None)."""
    if not (connection is None or isinstance(connection, str)):
        ping(client, url_of(client))


def close_sync(client: Any) -> None:
    """Close a sync client sbqueue made, with its pool (cluster clients: every node's connections)."""
    client.close()
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()


# --- what fits as it is ---------------------------------------------------------------------------------------
def _as_client(connection: Any) -> Any:
    """A user's pool -> a client on it (the pool stays the user's); clients pass; anything else is refused."""
    if isinstance(connection, _SYNC_POOLS):
        return redis.Redis(connection_pool=connection)
    if isinstance(connection, _ASYNC_POOLS):
        return redis.asyncio.Redis(connection_pool=connection)
    if isinstance(connection, (redis.Redis, redis.asyncio.Redis)) or _cluster.is_cluster(connection):
        return connection
    raise ConfigurationError(f"connection must be {ACCEPTED}; got {type(connection).__name__}")


def is_async(client: Any) -> bool:
    """True for redis-py asyncio clients (single server or cluster)."""
    return isinstance(client, (redis.asyncio.Redis, _cluster.AsyncCluster))


def settings(client: Any) -> dict[str, Any]:
    """The connection settings of a client (its pool's; a cluster client's node settings)."""
    if _cluster.is_cluster(client):
        return _cluster.connection_options(client)
    return dict(client.connection_pool.connection_kwargs)


def _fits(client: Any, *, want_async: bool) -> bool:
    opts = settings(client)
    return (is_async(client) == want_async and bool(opts.get("decode_responses"))
            and str(opts.get("protocol") or 2) == "2")  # fmt: skip


# --- derived clients -------------------------------------------------------------------------------------------
def _portable(opts: dict[str, Any], overrides: dict[str, Any], *, to_async: bool) -> dict[str, Any]:
    # drop per-pool internals (maintenance-notification handlers, original-address bookkeeping, hooks)
    kwargs = {k: v for k, v in opts.items() if not k.startswith(("orig_", "maint_")) and k not in _POOL_STATE}
    kwargs.update(overrides)
    if "retry" in kwargs:
        kwargs["retry"] = convert_retry(kwargs["retry"], to_async=to_async)
    return kwargs


def _connection_class(source_cls: type, target_module: Any) -> type:
    special = ("UnixDomainSocketConnection", "SSLConnection")
    name = source_cls.__name__ if source_cls.__name__ in special else "Connection"
    return cast(type, getattr(target_module, name, target_module.Connection))


def async_twin(client: Any, **overrides: Any) -> redis.asyncio.Redis:
    """A new ``redis.asyncio`` client (own pool) on ``client``'s server with its settings plus ``overrides``."""
    if _cluster.is_cluster(client):
        return cast(redis.asyncio.Redis, _cluster.async_twin(client, **overrides))
    if _sentinel.is_sentinel(client):  # a new Sentinel-managed client: it follows failovers too
        return _sentinel.async_twin(client, **overrides)
    pool = client.connection_pool
    cls = _connection_class(pool.connection_class, redis.asyncio.connection)
    kwargs = _portable(pool.connection_kwargs, overrides, to_async=True)
    accepted = accepted_options(cls)
    for key in [k for k in kwargs if k not in accepted]:  # e.g. the sync-only ssl_validate_ocsp* of ssl=True
        if kwargs.pop(key) not in (None, False):
            raise ConfigurationError(f"the asyncio client sbqueue needs cannot honour {key}= (set on "
                                     f"the client for {mask_url(url_of(client))})")  # fmt: skip
    # from_pool: the client owns the pool, so aclose() really closes its sockets
    twin = redis.asyncio.Redis.from_pool(redis.asyncio.ConnectionPool(connection_class=cls, **kwargs))
    twin.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return twin


def sync_twin(client: Any, **overrides: Any) -> redis.Redis:
    """A new sync client (own pool) on ``client``'s server with its settings plus ``overrides``."""
    if _cluster.is_cluster(client):
        return cast(redis.Redis, _cluster.sync_twin(client, **overrides))
    if _sentinel.is_sentinel(client):  # a new Sentinel-managed client: it follows failovers too
        return _sentinel.sync_twin(client, **overrides)
    pool = client.connection_pool
    cls = _connection_class(pool.connection_class, redis.connection)
    kwargs = _portable(pool.connection_kwargs, overrides, to_async=False)
    twin = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=cls, **kwargs))
    twin.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return twin
