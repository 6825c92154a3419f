"""Redis Cluster support, in one place.

sbqueue talks to a cluster through redis-py's cluster clients (``redis.cluster.RedisCluster``,
``redis.asyncio.cluster.RedisCluster``). Key routing needs nothing special: every key of a queue carries the
same hash tag (a ``{tag}`` in the prefix or the queue name, demanded by :func:`check_queue`), so a script's
KEYS, the job keys it builds and every pipelined read of one queue live in one slot, on one master.

What does differ from a single server is here, so the rest of sbqueue keeps one code path:

* **choosing the client** — :func:`wanted`: a ``cluster=1``/``cluster=0`` URL option, else ``INFO cluster``
  (``cluster_enabled:1``) on the server; :func:`connect` / :func:`connect_async` build the cluster clients;
* **twins** — :func:`sync_twin` / :func:`async_twin`: a new cluster client (sync or async) with the same
  nodes and connection options, plus overrides;
* **scripts in a pipeline** — redis-py's cluster pipelines refuse ``evalsha``: :func:`pipeline_script`
  queues ``EVAL`` with the script's source instead;
* **per-node commands** — ``CLIENT LIST``, ``DBSIZE`` and ``SCAN`` must visit every master, not redis-py's one
  default node: they are in :mod:`sbqueue.connection.cluster_nodes`;
* **a worker's blocking connection** — :class:`BlockingNodeClient`: one named connection, on the master
  that owns the queue's marker key (so ``get_workers()`` sees one connection per worker);
* **compatibility** — :class:`ClusterClient` / :class:`AsyncClusterClient` accept the few single-server
  idioms sbqueue uses (``client.connection_pool.disconnect()``, ``aclose(close_connection_pool=True)``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)

from sbqueue._core.keys import QueueKeys
from sbqueue.connection.urls import CLUSTER_OPTION, mask_url
from sbqueue.errors import ClusterKeyError, ConfigurationError, ConnectionFailedError

SyncCluster = redis.cluster.RedisCluster
AsyncCluster = redis.asyncio.cluster.RedisCluster

#: URL query option that picks the client without asking the server: ``?cluster=1`` or ``?cluster=0``.
URL_OPTION = CLUSTER_OPTION
_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")

#: connection options a twin inherits (credentials, TLS, timeouts, decoding, name); the rest is client state
_PORTABLE = frozenset({
    "username", "password", "credential_provider", "client_name", "decode_responses", "encoding",
    "encoding_errors", "socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options",
    "health_check_interval", "protocol", "ssl",
})  # fmt: skip


def is_cluster(client: Any) -> bool:
    """True for redis-py cluster clients (sync or asyncio)."""
    return isinstance(client, (SyncCluster, AsyncCluster))


# --- choosing and building clients ---------------------------------------------------------------------
def url_flag(url: str) -> bool | None:
    """The ``cluster=`` URL option: True, False, or None when absent."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key.lower() == URL_OPTION:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ConfigurationError(f"URL option cluster={value!r} must be cluster=1 or cluster=0")
    return None


def strip_flag(url: str) -> str:
    """``url`` without its ``cluster=`` option (redis-py would pass it on to the connection as an argument)."""
    base, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hashmark, fragment = rest.partition("#")
    kept = "&".join(p for p in query.split("&") if p and p.split("=", 1)[0].lower() != URL_OPTION)
    return base + (f"?{kept}" if kept else "") + hashmark + fragment


def probe(client: Any) -> bool:
    """Ask a single-server client whether its server runs in cluster mode (``INFO cluster``)."""
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # INFO refused (ACL): take it as a single server
        return False
    return str(info.get("cluster_enabled", "0")) == "1"


def wanted(url: str, kwargs: dict[str, Any]) -> bool:
    """Whether ``url`` needs a cluster client: its ``cluster=`` option, else a short sync ``INFO cluster``
    probe (an unreachable server counts as a single server: the caller's own errors stay as they were)."""
    flag = url_flag(url)
    if flag is not None:
        return flag
    opts = {k: v for k, v in kwargs.items() if (k in _PORTABLE or k.startswith("ssl_")) and k != "client_name"}
    timeout = min(float(kwargs.get("socket_connect_timeout") or 5), 5)
    opts.update(decode_responses=True, socket_connect_timeout=timeout)
    client = redis.Redis.from_url(strip_flag(url), **opts)
    try:
        return probe(client)
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class _NodePools:
    """``client.connection_pool`` of a :class:`ClusterClient`: its options, and ``disconnect()`` of every node."""

    def __init__(self, client: SyncCluster) -> None:
        self._client = client

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        return connection_options(self._client)

    def disconnect(self) -> None:
        self._client.disconnect_connection_pools()


class ClusterClient(SyncCluster):
    """The sync cluster client sbqueue makes: a ``redis.cluster.RedisCluster`` that also answers
    ``connection_pool`` (options + ``disconnect()``), as single-server code expects."""

    @property
    def connection_pool(self) -> _NodePools:
        return _NodePools(self)


class AsyncClusterClient(AsyncCluster):
    """The asyncio cluster client sbqueue makes: ``aclose()`` also takes ``close_connection_pool`` (it always
    closes every node's connections)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:  # type: ignore[override]
        await super().aclose()


def connect(url: str, kwargs: dict[str, Any]) -> ClusterClient:
    """A sync cluster client on ``url`` (it reads the slot map now: an unreachable cluster fails here)."""
    try:
        client = cast(ClusterClient, ClusterClient.from_url(strip_flag(url), **kwargs))
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"Redis Cluster at {mask_url(url)} refused the credentials ({exc}); check the user/password in the URL"
        ) from None
    except (RedisClusterException, redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ConnectionFailedError(f"cannot reach the Redis Cluster at {mask_url(url)} ({exc})") from None
    client.sbqueue_url = url  # type: ignore[attr-defined]
    return client


def connect_async(url: str, kwargs: dict[str, Any]) -> AsyncClusterClient:
    """An asyncio cluster client on ``url`` (connects on first use)."""
    client = cast(AsyncClusterClient, AsyncClusterClient.from_url(strip_flag(url), **_accepted(AsyncCluster, kwargs)))
    client.sbqueue_url = url  # type: ignore[attr-defined]
    return client


@functools.cache
def _parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls).parameters)


def _accepted(cls: type, opts: dict[str, Any]) -> dict[str, Any]:
    """The options ``cls`` takes (redis-py's asyncio clients have fixed signatures, not ``**kwargs``)."""
    names = _parameters(cls)
    return {k: v for k, v in opts.items() if k in names}


def connection_options(client: Any) -> dict[str, Any]:
    """The portable connection options of a cluster client (credentials, TLS, timeouts, decoding, name)."""
    raw = client.nodes_manager.connection_kwargs if isinstance(client, SyncCluster) else client.connection_kwargs
    opts = {k: v for k, v in raw.items() if (k in _PORTABLE or k.startswith("ssl_")) and type(v) is not object}
    cls = raw.get("connection_class")
    if cls is not None and "SSL" in getattr(cls, "__name__", ""):
        opts["ssl"] = True
    return opts


def addresses(client: Any) -> list[tuple[str, int]]:
    """``(host, port)`` of the masters a client knows (its startup nodes before it has connected)."""
    nodes: Any = []
    try:
        nodes = client.get_primaries()
    except (AttributeError, RedisClusterException):
        pass
    if not nodes:
        startup = client.nodes_manager.startup_nodes if isinstance(client, SyncCluster) else client.startup_nodes
        nodes = list(startup.values()) if isinstance(startup, dict) else list(startup)
    return sorted({(str(n.host), int(n.port)) for n in nodes})


def url_of(client: Any) -> str:
    """A URL that reaches ``client``'s cluster with its credentials (callers mask it for display)."""
    opts = connection_options(client)
    host, port = addresses(client)[0]
    auth = ""
    if opts.get("password"):  # percent-encoded: a '@' or '/' in a password must not break the URL
        auth = f"{quote(opts.get('username') or '', safe='')}:{quote(str(opts['password']), safe='')}@"
    query = {k: v for k, v in opts.items() if opts.get("ssl") and k in _TLS_URL_OPTIONS and isinstance(v, str)}
    query[URL_OPTION] = "1"
    return f"{'rediss' if opts.get('ssl') else 'redis'}://{auth}{host}:{port}/0?{urlencode(query)}"


#: TLS file options that travel in a URL as redis-py query arguments
_TLS_URL_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


def sync_twin(client: Any, **overrides: Any) -> ClusterClient:
    """A new sync cluster client on the same cluster with the same options (plus ``overrides``)."""
    opts = {**connection_options(client), **overrides}
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in addresses(client)]
    new = ClusterClient(startup_nodes=nodes, **opts)
    new.sbqueue_url = getattr(client, "sbqueue_url", None) or url_of(client)  # type: ignore[attr-defined]
    return new


def async_twin(client: Any, **overrides: Any) -> AsyncClusterClient:
    """A new asyncio cluster client on the same cluster with the same options (plus ``overrides``)."""
    opts = _accepted(AsyncCluster, {**connection_options(client), **overrides})
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in addresses(client)]
    new = AsyncClusterClient(startup_nodes=nodes, **opts)
    new.sbqueue_url = getattr(client, "sbqueue_url", None) or url_of(client)  # type: ignore[attr-defined]
    return new


def check_queue(client: Any, keys: QueueKeys, *, owned: bool, min_replicas: int = 0) -> None:
    """On a cluster client, raise :class:`ClusterKeyError` (before anything is written) unless every key of
    the queue shares one slot, and :class:`ConfigurationError` for ``min_replicas`` (a cluster pipeline cannot
    send ``WAIT`` on the connection that made the add, so it would count another node's replicas).
    ``owned``: the caller made ``client`` and closes it on the way out."""
    if not is_cluster(client):
        return
    try:
        keys.check_cluster_slot()
        if min_replicas:
            raise ConfigurationError(
                f"min_replicas={min_replicas} is not supported on Redis Cluster: WAIT must follow the add on the "
                "same connection, which a cluster pipeline cannot promise; set min-replicas-to-write on the "
                "cluster's masters instead, or use Sentinel (redis+sentinel://) with min_replicas"
            )
    except (ClusterKeyError, ConfigurationError):
        if owned and isinstance(client, SyncCluster):
            client.close()  # an asyncio cluster client has not connected yet: nothing to close
        raise


# --- scripts in a pipeline ----------------------------------------------------------------------------------
def is_cluster_pipeline(obj: Any) -> bool:
    """True for redis-py cluster pipelines (sync or asyncio)."""
    return isinstance(obj, (redis.cluster.ClusterPipeline, redis.asyncio.cluster.ClusterPipeline))


def pipeline_script(pipe: Any, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Queue one call of ``script`` (a redis-py ``Script``/``AsyncScript``) on a cluster pipeline; returns
    the pipeline (an awaitable of it for an asyncio pipeline, whose callers ``await`` script calls).

    redis-py's cluster pipelines refuse ``evalsha`` and cannot load scripts; ``EVAL`` with the source
    needs no loading and never meets NOSCRIPT (Redis caches the compiled script by its SHA1). All ``keys``
    share one slot, so the call goes to the queue's master like any other command of the pipeline.
    """
    pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
    if isinstance(pipe, redis.asyncio.cluster.ClusterPipeline):
        return _queued(pipe)
    return pipe


async def _queued(pipe: Any) -> Any:
    return pipe


# --- a worker's blocking connection ------------------------------------------------------------------------------
class BlockingNodeClient:
    """One ``redis.asyncio.Redis`` connection to the master that owns ``key``'s slot.

    A cluster client would open (named) connections to its startup node too, so a worker would appear on
    several nodes; this one has exactly one connection, where it blocks. ``MOVED`` (resharding, failover) is
    followed; after a connection error the slot map is read again on the next call. ``CLUSTERDOWN`` and
    ``TRYAGAIN`` surface as ``redis.ConnectionError`` so the worker backs off as for any outage.
    """

    def __init__(self, base: Any, key: str, **overrides: Any) -> None:
        self.key = key
        self._slot = key_slot(key.encode())
        self._options = _accepted(redis.asyncio.Redis, {**connection_options(base), **overrides})
        self._known = addresses(base)
        self._addr: tuple[str, int] | None = None
        if isinstance(base, SyncCluster):  # its slot map is at hand: no round trip
            node = base.get_node_from_key(key)
            self._addr = (str(node.host), int(node.port))
        self._client: redis.asyncio.Redis | None = None
        self.sbqueue_url = getattr(base, "sbqueue_url", None) or url_of(base)

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the master this client talks to (None until located)."""
        return self._addr

    async def _node(self) -> redis.asyncio.Redis:
        if self._client is None:
            if self._addr is None:
                self._addr = await self._locate()
            self._client = redis.asyncio.Redis(host=self._addr[0], port=self._addr[1], **self._options)
        return self._client

    async def _locate(self) -> tuple[str, int]:
        """Ask the known nodes (CLUSTER SLOTS) which master owns the slot."""
        opts = {k: v for k, v in self._options.items() if k != "client_name"}
        for host, port in dict.fromkeys([*([self._addr] if self._addr else []), *self._known]):
            node = redis.asyncio.Redis(host=host, port=port, **{**opts, "decode_responses": True})
            try:
                ranges = await node.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            finally:
                await node.aclose()
            for entry in ranges:
                if int(entry[0]) <= self._slot <= int(entry[1]):
                    owner = entry[2]
                    return (str(owner[0]) or host, int(owner[1]))
        raise redis.ConnectionError(f"no reachable cluster node knows who serves slot {self._slot} ({self.key!r})")

    async def _switch(self, addr: tuple[str, int] | None) -> None:
        client, self._client, self._addr = self._client, None, addr
        if addr is not None and addr not in self._known:
            self._known.append(addr)
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for _ in range(5):
            client = await self._node()
            try:
                return await getattr(client, method)(*args, **kwargs)
            except MovedError as exc:  # the slot lives elsewhere now: follow it
                await self._switch((str(exc.host), int(exc.port)))
            except (AskError, ClusterDownError, TryAgainError) as exc:  # migrating / cluster down: back off
                raise redis.ConnectionError(f"cluster not ready for {self.key!r}: {exc}") from exc
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                await self._switch(None)  # the node may be gone (failover): read the slot map next time
                raise
        raise redis.ConnectionError(f"the slot of {self.key!r} keeps moving")

    def ping(self) -> Awaitable[Any]:
        """PING the owning master (this opens the named connection, so dashboards see the worker)."""
        return self._call("ping")

    def bzpopmin(self, keys: Any, timeout: float = 0) -> Awaitable[Any]:
        return self._call("bzpopmin", keys, timeout=timeout)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self._switch(self._addr)
