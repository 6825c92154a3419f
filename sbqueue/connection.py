"""Connections: resolve a Redis URL, mask passwords, return a ready redis-py client.

Resolution order for :func:`connect` (and for every ``connection=None``):

1. an explicit ``url`` argument (``redis://``, ``rediss://``, ``unix://``);
2. the ``SBQUEUE_REDIS_URL`` environment variable, then ``REDIS_URL``;
3. the embedded server (:mod:`sbqueue.embedded`), started on first use and shared by every process.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

from .errors import ConfigurationError, ConnectionFailedError, RedisVersionError

MIN_REDIS_VERSION = (6, 2, 0)
SCHEMES = ("redis", "rediss", "unix")
ENV_VARS = ("SBQUEUE_REDIS_URL", "REDIS_URL")

ConnectionLike = "redis.Redis | str | None"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (user names stay visible)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if (":" in userinfo or user) else f"***@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    if not parts.scheme:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # rebuilt by hand: urlunsplit would turn "unix:///path" into "unix:/path"
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def resolve_url(url: str | None = None) -> tuple[str | None, str]:
    """Return ``(url, source)``: the URL to use and where it came from.

    ``url`` is None when the embedded server should be used (source ``"embedded"``).
    """
    if url:
        return url, "argument"
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value, var
    return None, "embedded"


def validate_url(url: str) -> None:
    """Raise :class:`ConfigurationError` (masked) unless ``url`` is a usable Redis URL."""
    if not isinstance(url, str):
        raise ConfigurationError(f"connection URL must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        if "port" in str(exc).lower():
            raise ConfigurationError(f"Redis URL {mask_url(url)!r} has an invalid port") from None
        raise ConfigurationError(f"malformed Redis URL {mask_url(url)!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL scheme {parts.scheme!r} in {mask_url(url)!r}; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"unix:// URL {mask_url(url)!r} has no socket path")
    elif not parts.hostname:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has no host")
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has an invalid port")


def check_version(version: str, url: str) -> None:
    """Raise :class:`RedisVersionError` when ``version`` is below :data:`MIN_REDIS_VERSION`."""
    nums = tuple(int(x) for x in re.findall(r"\d+", version)[:3])
    if nums < MIN_REDIS_VERSION:
        raise RedisVersionError(
            f"Redis at {mask_url(url)} is version {version}; sbqueue needs Redis >= 6.2 "
            "(upgrade the server, or unset the URL to use sbqueue's embedded server)"
        )


def _client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    opts = {"decode_responses": True, "socket_connect_timeout": 5.0, "health_check_interval": 0}
    opts.update(kwargs)
    return opts


def connect(url: str | None = None, *, check: bool = True, **kwargs: Any) -> redis.Redis:
    """Return a ready (pinged, version-checked) redis-py client.

    ``url`` wins over ``SBQUEUE_REDIS_URL``/``REDIS_URL``; with none of them, sbqueue's embedded
    server is started (or reused). Extra keyword arguments go to ``redis.Redis.from_url``.
    Responses are decoded to ``str`` unless ``decode_responses=False`` is passed.
    """
    resolved, _source = resolve_url(url)
    if resolved is None:
        from . import embedded

        resolved = embedded.ensure_server().url
    validate_url(resolved)
    client = redis.Redis.from_url(resolved, **_client_kwargs(kwargs))
    if check:
        ping(client, resolved)
    client.sbqueue_url = resolved  # type: ignore[attr-defined]  # remembered for masked display and forks
    return client


def connect_async(url: str | None = None, **kwargs: Any) -> redis.asyncio.Redis:
    """Like :func:`connect` but returns a ``redis.asyncio`` client (not pinged: no loop is assumed)."""
    resolved, _ = resolve_url(url)
    if resolved is None:
        from . import embedded

        resolved = embedded.ensure_server().url
    validate_url(resolved)
    client = redis.asyncio.Redis.from_url(resolved, **_client_kwargs(kwargs))
    client.sbqueue_url = resolved  # type: ignore[attr-defined]
    return client


def ping(client: redis.Redis, url: str) -> None:
    """PING and version-check ``client``, turning failures into clear sbqueue errors."""
    try:
        client.ping()
        version = str(client.info("server").get("redis_version", "0"))
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"Redis at {mask_url(url)} refused the credentials ({exc}); check the user/password in the URL"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ConnectionFailedError(
            f"cannot reach Redis at {mask_url(url)} ({exc}); is the server running? "
            "Set SBQUEUE_REDIS_URL, pass url=..., or unset both to use the embedded server"
        ) from None
    check_version(version, url)


def url_of(client: Any) -> str:
    """The URL a client was created from (masked-safe callers must still :func:`mask_url` it)."""
    url = getattr(client, "sbqueue_url", None)
    if url:
        return str(url)
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    scheme = "rediss" if kw.get("ssl") or "ssl_context" in kw else "redis"
    auth = ""
    if kw.get("password"):
        auth = f"{kw.get('username') or ''}:{kw['password']}@"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def coerce(connection: Any) -> redis.Redis:
    """Accept None (→ :func:`connect`), a URL string, or a redis-py client; return a client."""
    if connection is None or isinstance(connection, str):
        return connect(connection)
    if isinstance(connection, redis.Redis):
        return connection
    raise ConfigurationError(
        f"connection must be None, a Redis URL or a redis.Redis client, got {type(connection).__name__}"
    )


def coerce_async(connection: Any) -> redis.asyncio.Redis:
    """Async twin of :func:`coerce`; a sync client is converted to an async one on the same server."""
    if connection is None or isinstance(connection, str):
        return connect_async(connection)
    if isinstance(connection, redis.asyncio.Redis):
        return connection
    if isinstance(connection, redis.Redis):
        return async_twin(connection)
    raise ConfigurationError(f"connection must be None, a Redis URL or a redis client, got {type(connection).__name__}")


def _portable_kwargs(pool: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    # drop per-pool internals (maintenance-notification handlers, original-address bookkeeping)
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if not k.startswith(("orig_", "maint_"))}
    kwargs.pop("himport_registry", None)
    kwargs.update(overrides)
    return kwargs


def _twin_class(sync_cls: type, target: Any) -> type:
    name = sync_cls.__name__ if sync_cls.__name__ in ("UnixDomainSocketConnection", "SSLConnection") else "Connection"
    return getattr(target, name) if hasattr(target, name) else target.Connection


def async_twin(client: redis.Redis, **overrides: Any) -> redis.asyncio.Redis:
    """A ``redis.asyncio`` client on the same server with the same options (plus ``overrides``)."""
    pool = client.connection_pool
    kwargs = _portable_kwargs(pool, overrides)
    for key in ("redis_connect_func", "check_ready", "event_dispatcher"):  # sync-only options
        kwargs.pop(key, None)
    cls = _twin_class(pool.connection_class, redis.asyncio.connection)
    # from_pool: the client owns the pool, so aclose() really closes its sockets
    async_client = redis.asyncio.Redis.from_pool(redis.asyncio.ConnectionPool(connection_class=cls, **kwargs))
    async_client.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return async_client


def sync_twin(client: redis.Redis, **overrides: Any) -> redis.Redis:
    """A new sync client (own pool) on the same server with the same options (plus ``overrides``)."""
    pool = client.connection_pool
    new = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **_portable_kwargs(pool, overrides)
        )
    )
    new.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return new
