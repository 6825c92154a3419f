"""Redis Sentinel support, in one place.

A Sentinel deployment is reached with a URL that names the sentinels and the service (the master's name in
the sentinels' configuration)::

    redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?option=value...]
    rediss+sentinel://...      (TLS to the sentinels and to the data nodes)

The user and password are the data nodes' (master and replicas). Sentinels that demand their own credentials
take ``?sentinel_username=`` / ``?sentinel_password=``; every other query argument is a redis-py connection
option (``socket_timeout=``, ``ssl_ca_certs=``…), as in a ``redis://`` URL.

Clients are redis-py's own Sentinel-managed clients (``Sentinel(...).master_for(service)``): each new
connection asks a sentinel for the current master, and a connection to a demoted master (``READONLY``)
or a dead one fails with a ``ConnectionError`` that sbqueue's retry paths already handle — so workers,
producers, QueueEvents, the Inspector and the exporter follow a failover without any code of their own.
The pools sbqueue makes also re-ask the sentinels once a second (:data:`MASTER_CHECK_S`), so a master that
was replaced while still running stops receiving writes within about a second.

What differs from a single server is here:

* **URLs** — :func:`is_url`, :func:`parse` (validation with masked messages), :func:`url_of` (a client back
  to its sentinel URL);
* **clients** — :func:`connect` / :func:`connect_async` from a URL, :func:`sync_twin` / :func:`async_twin`
  from a client: a *new* Sentinel-managed client on the same sentinels and service (never the current
  master's address), with the same settings plus overrides; the twin's sentinel connections are closed
  with it (:class:`SentinelClient`, :class:`AsyncSentinelClient`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from sbqueue.connection.redispy import accepted_options, convert_retry
from sbqueue.connection.urls import SENTINEL_SCHEMES, mask_url, validate_plain_url
from sbqueue.errors import ConfigurationError

SCHEMES = SENTINEL_SCHEMES
#: query arguments that are sbqueue's (the sentinels' own credentials), not redis-py connection options
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
DEFAULT_PORT = 26379
_SYNC_POOL = redis.sentinel.SentinelConnectionPool
_ASYNC_POOL = redis.asyncio.sentinel.SentinelConnectionPool


def is_url(url: Any) -> bool:
    """True when ``url`` is a ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""
    return isinstance(url, str) and url.split("://", 1)[0].lower() in SCHEMES


def is_sentinel(client: Any) -> bool:
    """True for a redis-py client whose pool is Sentinel-managed (sync or asyncio)."""
    return isinstance(getattr(client, "connection_pool", None), (_SYNC_POOL, _ASYNC_POOL))


@dataclasses.dataclass
class Target:
    """A parsed sentinel URL: where the sentinels are, which service, and the connection options."""

    sentinels: list[tuple[str, int]]
    service: str
    tls: bool
    options: dict[str, Any]  # data-node connection options (db, username, password, timeouts, ssl_*)
    sentinel_options: dict[str, Any]  # options for the connections to the sentinels


def parse(url: str) -> Target:
    """Parse and check a sentinel URL; :class:`ConfigurationError` (password masked) when it is unusable."""
    masked = mask_url(url)
    scheme, _, rest = url.partition("://")
    tls = scheme.lower() == "rediss+sentinel"
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    if "@" in path or "@" in query or "@" in fragment:  # a raw '/', '?' or '#' in the password: never echo it
        raise ConfigurationError(f"Sentinel URL {masked!r} is malformed: percent-encode '@', ':', '/', '?', '#' and "
                                 "'%' in the user name and password")  # fmt: skip
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        if not item:
            raise ConfigurationError(f"Sentinel URL {masked!r} has an empty sentinel address")
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port
        except ValueError as exc:  # the parser's message may quote the address: never repeat it
            what = "port" if "out of range" in str(exc) else "sentinel address"
            raise ConfigurationError(f"Sentinel URL {masked!r} has an invalid {what}") from None
        if not host:
            raise ConfigurationError(f"Sentinel URL {masked!r} has a sentinel address with no host")
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"Sentinel URL {masked!r} has an invalid port")
        sentinels.append((host, port or DEFAULT_PORT))
    segments = [unquote(s) for s in path.split("/")] if slash else []
    if not segments or not segments[0]:
        raise ConfigurationError(f"Sentinel URL {masked!r} names no service: add /<service> after the sentinels "
                                 "(the master's name in the sentinels' configuration)")  # fmt: skip
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ConfigurationError(f"Sentinel URL {masked!r}: the path must be /<service> or /<service>/<db number>")
    service, db = segments[0], int(segments[1]) if len(segments) == 2 and segments[1] else 0
    # the rest is a redis:// URL's business: redis-py's own parser types the query arguments
    sentinel_options: dict[str, Any] = {}
    kept = []
    for item in query.split("&") if query else []:
        name, _eq, value = item.partition("=")
        if unquote(name).lower() == "cluster":  # sbqueue's Redis Cluster switch: a Sentinel service is no cluster
            raise ConfigurationError(f"Sentinel URL {masked!r}: cluster= does not apply to a Sentinel service")
        if name.lower() in SENTINEL_OPTIONS:
            sentinel_options[name.lower()[len("sentinel_"):]] = unquote(value)
        else:
            kept.append(item)
    host0, port0 = sentinels[0]
    proxy = (f"{'rediss' if tls else 'redis'}://{userinfo}{'@' if at else ''}"
             f"{'[' + host0 + ']' if ':' in host0 else host0}:{port0}/{db}"
             + (f"?{'&'.join(kept)}" if kept else ""))  # fmt: skip
    try:
        validate_plain_url(proxy)
    except ConfigurationError as exc:  # the message shows the stand-in URL: show the user's instead
        raise ConfigurationError(str(exc).replace(mask_url(proxy), masked)) from None
    options = redis.connection.parse_url(proxy)
    for key in ("host", "port", "connection_class", "path"):
        options.pop(key, None)
    if tls:
        options["ssl"] = True
    for key, value in options.items():  # socket and TLS settings hold for the sentinels too
        if key.startswith(("socket_", "ssl")):
            sentinel_options.setdefault(key, value)
    return Target(sentinels, service, tls, options, sentinel_options)


# --- clients ------------------------------------------------------------------------------------------------
#: how often (seconds) a pool sbqueue made asks a sentinel whether the master moved. redis-py asks only when
#: it opens a connection, so pooled connections to a master that was failed over *while still running*
#: (``SENTINEL FAILOVER``, a partition) keep writing to it until the sentinels demote it — up to ~10 s of
#: writes that its demotion then discards. Asking once a second bounds that window to about a second.
MASTER_CHECK_S = 1.0


class CheckedSentinelPool(redis.sentinel.SentinelConnectionPool):
    """redis-py's Sentinel pool that also re-asks the sentinels for the master every :data:`MASTER_CHECK_S`
    when a connection is taken; when the master moved, idle connections are closed and in-use ones are
    dropped when released (redis-py's own reset), so the next command goes to the new master."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now >= self._next_check:
            self._next_check = now + MASTER_CHECK_S
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.get_master_address()  # resets the pool when the address changed
        return super().get_connection(*args, **kwargs)


class AsyncCheckedSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """The asyncio twin of :class:`CheckedSentinelPool`."""

    _next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now >= self._next_check:
            self._next_check = now + MASTER_CHECK_S
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                await self.get_master_address()
        return await super().get_connection(*args, **kwargs)


class SentinelClient(redis.Redis):
    """The sync Sentinel-managed client sbqueue makes: ``close()`` also closes its sentinel connections."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()
            sentinel.connection_pool.disconnect()


class AsyncSentinelClient(redis.asyncio.Redis):
    """The asyncio Sentinel-managed client sbqueue makes: ``aclose()`` also closes its sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose(close_connection_pool=True)


def _build(target: Target, kwargs: dict[str, Any], *, to_async: bool) -> Any:
    options = {**target.options, **kwargs}
    sentinel_kwargs = dict(target.sentinel_options)
    for key in ("socket_connect_timeout", "socket_timeout"):  # asking a sentinel must not take longer than a command
        if key in options and key not in sentinel_kwargs:
            sentinel_kwargs[key] = options[key]
    if "retry" in options:
        options["retry"] = convert_retry(options["retry"], to_async=to_async)
    if "retry" in sentinel_kwargs:
        sentinel_kwargs["retry"] = convert_retry(sentinel_kwargs["retry"], to_async=to_async)
    if to_async:
        cls = redis.asyncio.sentinel.SentinelManagedSSLConnection if options.get("ssl") else (
            redis.asyncio.sentinel.SentinelManagedConnection)  # fmt: skip
        accepted = accepted_options(cls) | {"ssl", "is_master", "check_connection"}
        for key in [k for k in options if k not in accepted]:  # e.g. the sync-only ssl_validate_ocsp*
            if options.pop(key) not in (None, False):
                raise ConfigurationError(f"the asyncio client sbqueue needs cannot honour {key}= (Sentinel "
                                         f"service {target.service!r})")  # fmt: skip
        manager: Any = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
        return manager.master_for(target.service, redis_class=AsyncSentinelClient,
                                  connection_pool_class=AsyncCheckedSentinelPool, **options)  # fmt: skip
    manager = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(target.service, redis_class=SentinelClient, connection_pool_class=CheckedSentinelPool,
                              **options)  # fmt: skip


def connect(url: str, kwargs: dict[str, Any]) -> SentinelClient:
    """A sync client on the master of ``url``'s service (connects on first use; :func:`sbqueue.connect` pings)."""
    client: SentinelClient = _build(parse(url), kwargs, to_async=False)
    client.sbqueue_url = url  # type: ignore[attr-defined]
    return client


def connect_async(url: str, kwargs: dict[str, Any]) -> AsyncSentinelClient:
    """An asyncio client on the master of ``url``'s service (connects on first use)."""
    client: AsyncSentinelClient = _build(parse(url), kwargs, to_async=True)
    client.sbqueue_url = url  # type: ignore[attr-defined]
    return client


#: pool options that belong to one pool, not to the connection settings
_POOL_STATE = ("connection_pool", "himport_registry", "redis_connect_func", "check_ready", "event_dispatcher")


def target_of(client: Any) -> Target:
    """The sentinels, service and settings of a Sentinel-managed client."""
    pool = client.connection_pool
    manager = pool.sentinel_manager
    sentinels = [(str(s.connection_pool.connection_kwargs.get("host", "localhost")),
                  int(s.connection_pool.connection_kwargs.get("port", DEFAULT_PORT)))
                 for s in manager.sentinels]  # fmt: skip
    options = {k: v for k, v in pool.connection_kwargs.items()
               if k not in _POOL_STATE and not k.startswith(("orig_", "maint_"))}  # fmt: skip
    tls = "SSL" in getattr(pool, "connection_class", type).__name__
    if tls:
        options["ssl"] = True
    sentinel_options = {k: v for k, v in manager.sentinel_kwargs.items() if k != "retry"}
    return Target(sentinels, str(pool.service_name), tls, options, sentinel_options)


def url_of(client: Any) -> str:
    """A sentinel URL reaching ``client``'s service with its credentials (callers mask it for display)."""
    target = target_of(client)
    opts = target.options
    auth = ""
    if opts.get("password"):  # percent-encoded: a '@' or '/' in a password must not break the URL
        auth = f"{quote(opts.get('username') or '', safe='')}:{quote(str(opts['password']), safe='')}@"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.sentinels)
    query = {f"sentinel_{k}": target.sentinel_options[k] for k in ("username", "password")
             if target.sentinel_options.get(k)}  # fmt: skip
    query.update({k: v for k, v in opts.items() if target.tls and k.startswith("ssl_") and isinstance(v, str)})
    scheme = "rediss+sentinel" if target.tls else "redis+sentinel"
    out = f"{scheme}://{auth}{hosts}/{quote(target.service, safe='')}/{int(opts.get('db') or 0)}"
    return out + (f"?{urlencode(query)}" if query else "")


def _twin(client: Any, overrides: dict[str, Any], *, to_async: bool) -> Any:
    target = target_of(client)
    new = _build(target, overrides, to_async=to_async)
    new.sbqueue_url = getattr(client, "sbqueue_url", None) or url_of(client)
    return new


def sync_twin(client: Any, **overrides: Any) -> SentinelClient:
    """A new sync Sentinel-managed client (own sentinel connections) on the same sentinels and service."""
    twin: SentinelClient = _twin(client, overrides, to_async=False)
    return twin


def async_twin(client: Any, **overrides: Any) -> AsyncSentinelClient:
    """A new asyncio Sentinel-managed client (own sentinel connections) on the same sentinels and service."""
    twin: AsyncSentinelClient = _twin(client, overrides, to_async=True)
    return twin
