"""Connections: resolve a Redis URL, mask passwords, return a ready redis-py client.

Resolution order for :func:`connect` (and for every ``connection=None``):

1. an explicit ``url`` argument (``redis://``, ``rediss://``, ``unix://``);
2. the ``SBQUEUE_REDIS_URL`` environment variable, then ``REDIS_URL``;
3. the embedded server (:mod:`sbqueue.embedded`), started on first use and shared by every process.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast
from urllib.parse import quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio

from . import _cluster
from .errors import ConfigurationError, ConnectionFailedError, RedisVersionError

MIN_REDIS_VERSION = (6, 2, 0)
SCHEMES = ("redis", "rediss", "unix")
ENV_VARS = ("SBQUEUE_REDIS_URL", "REDIS_URL")

ConnectionLike = "redis.Redis | str | None"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (user names stay visible).

    Never raises and never returns the password, whatever the input: a bare ``user@`` is masked whole (some
    clients read it as a password), secret-looking query arguments (``password=``, ``ssl_password=``…) are
    masked, and when an unencoded ``/``, ``?`` or ``#`` in a password hides part of it from URL parsers
    (an ``@`` after the host), everything up to the last ``@`` is masked.
    """
    url = url if isinstance(url, str) else str(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_raw(url)
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        return _mask_raw(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = _mask_query(parts.query)
    if not parts.scheme:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # rebuilt by hand: urlunsplit would turn "unix:///path" into "unix:/path"
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


_SECRET_ARG = re.compile(r"(?i)pass|secret|token|auth")


def _mask_query(query: str) -> str:
    """``a=1&password=x`` -> ``a=1&password=***`` (argument names compared percent-decoded)."""
    items = query.split("&")
    for i, item in enumerate(items):
        name, eq, _value = item.partition("=")
        if eq and _SECRET_ARG.search(unquote_plus(name)):
            items[i] = f"{name}=***"
    return "&".join(items)


def _mask_raw(url: str) -> str:
    """Masking without a URL parser: everything between ``://`` and the last ``@`` but the user name."""
    head, at, tail = url.rpartition("@")
    if not at:
        base, q, query = url.partition("?")
        return base + q + _mask_query(query)
    start = head.find("://")
    start = start + 3 if start >= 0 else 0
    userinfo = head[start:]
    masked = f"{userinfo.split(':', 1)[0]}:***" if ":" in userinfo else "***"
    rest, q, query = tail.partition("?")
    return f"{head[:start]}{masked}@{rest}{q}{_mask_query(query)}"


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a redis-py error message) with every secret of ``url`` replaced by ``***``: the password
    (raw and percent-decoded), what :func:`mask_url` hides when a malformed URL puts it in the host or path
    (``unix://:p/w@...`` reaches the error as a socket path), and secret-looking query values."""
    secrets: set[str] = set()
    try:
        secrets.add(urlsplit(url).password or "")
    except ValueError:
        pass
    head, at, _tail = url.rpartition("@")
    if at:
        start = head.find("://")
        userinfo = head[start + 3 if start >= 0 else 0 :]
        secrets.add(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    for item in url.partition("?")[2].split("&"):
        name, eq, value = item.partition("=")
        if eq and _SECRET_ARG.search(unquote_plus(name)):
            secrets.add(value)
    for secret in sorted(secrets | {unquote_plus(s) for s in secrets} | {unquote(s) for s in secrets}, key=len,
                         reverse=True):  # fmt: skip
        if secret:
            text = text.replace(secret, "***")
    return text


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
    problem = None  # raised outside the except block: the parser's error (it may quote the password) is not kept
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # the parser's own message may quote the raw netloc (password included): never repeat it
        problem = "has an invalid port" if "port" in str(exc).lower() else (
            "is malformed: invalid IPv6 brackets" if "IPv6" in str(exc)
            else "is malformed: invalid characters in the host or credentials")  # fmt: skip
    if problem:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} {problem}")
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
    try:  # redis-py's own parse: query arguments (?db=x, ?socket_timeout=...) and what the client accepts
        options = redis.connection.parse_url(url)
    except ValueError as exc:  # e.g. "Invalid value for 'db' in connection URL." (names the argument only)
        problem = str(exc)
    masked = mask_url(url)
    # argument names are echoed only when the masked URL shows them: an unencoded '?' in a password would
    # otherwise make part of the password an "argument name"
    unclear = "; percent-encode '@', ':', '/', '?', '#' and '%' in the user name and password"
    if problem:
        shown = all(name in masked for name in re.findall(r"'([^']*)'", problem))
        raise ConfigurationError(f"Redis URL {masked!r}: {problem if shown else 'invalid query argument' + unclear}")
    given = {k for k in options if k.lower() != _cluster.URL_OPTION}  # ?cluster= is sbqueue's own option
    unknown = sorted(given - _accepted_options(options.get("connection_class", redis.connection.Connection)))
    if unknown:
        if not all(name in masked for name in unknown):
            raise ConfigurationError(f"Redis URL {masked!r} has unknown query arguments{unclear}")
        hint = " (TLS options need rediss://)" if any(u.startswith("ssl") for u in unknown) else ""
        raise ConfigurationError(f"Redis URL {masked!r} has unknown query argument(s) {unknown}{hint}")


def _accepted_options(cls: type) -> set[str]:
    """Keyword arguments a redis-py connection class accepts (its own and its bases')."""
    import inspect

    names = {"connection_class"}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))  # fmt: skip
    return names - {"self"}


def check_version(version: str, url: str) -> None:
    """Raise :class:`RedisVersionError` when ``version`` is below :data:`MIN_REDIS_VERSION`."""
    nums = tuple(int(x) for x in re.findall(r"\d+", version)[:3])
    if nums < MIN_REDIS_VERSION:
        raise RedisVersionError(
            f"Redis at {mask_url(url)} is version {version}; sbqueue needs Redis >= 6.2 "
            "(upgrade the server, or unset the URL to use sbqueue's embedded server)"
        )


def _client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # bytes that are not UTF-8 (a peer's binary data) decode to U+FFFD instead of raising in the middle of a reply
    opts = {"decode_responses": True, "encoding_errors": "replace", "socket_connect_timeout": 5.0,
            "health_check_interval": 0}  # fmt: skip
    opts.update(kwargs)
    return opts


def connect(url: str | None = None, *, check: bool = True, **kwargs: Any) -> redis.Redis:
    """Return a ready (pinged, version-checked) redis-py client.

    ``url`` wins over ``SBQUEUE_REDIS_URL``/``REDIS_URL``; with none of them, sbqueue's embedded
    server is started (or reused). Extra keyword arguments go to ``redis.Redis.from_url``.
    Responses are decoded to ``str`` unless ``decode_responses=False`` is passed.

    Redis Cluster: a server in cluster mode (``INFO cluster`` says ``cluster_enabled:1``; asked when
    ``check`` is true) gives a ``redis.cluster.RedisCluster`` instead. ``?cluster=1`` in the URL asks for
    one without probing, ``?cluster=0`` never probes.
    """
    resolved, _source = resolve_url(url)
    if resolved is None:
        from . import embedded

        resolved = embedded.ensure_server().url
    validate_url(_cluster.strip_flag(resolved))  # ?cluster=1|0 is sbqueue's option, not redis-py's
    flag = _cluster.url_flag(resolved)
    if flag is not True:
        client = redis.Redis.from_url(_cluster.strip_flag(resolved), **_client_kwargs(kwargs))
        if check:
            ping(client, resolved)
        if not (flag is None and check and _cluster.probe(client)):
            client.sbqueue_url = resolved  # type: ignore[attr-defined]  # remembered for masked display and forks
            return client
        client.close()
    cluster = _cluster.connect(resolved, _client_kwargs(kwargs))
    if check:
        ping(cast(redis.Redis, cluster), resolved)
    return cast(redis.Redis, cluster)  # a redis.cluster.RedisCluster: same command API


def connect_async(url: str | None = None, **kwargs: Any) -> redis.asyncio.Redis:
    """Like :func:`connect` but returns a ``redis.asyncio`` client (not pinged: no loop is assumed).

    Redis Cluster: ``?cluster=1`` in the URL, or a short synchronous ``INFO cluster`` probe of the
    server (not for the embedded server), gives a ``redis.asyncio.cluster.RedisCluster``.
    """
    resolved, source = resolve_url(url)
    if resolved is None:
        from . import embedded

        resolved, source = embedded.ensure_server().url, "embedded"
    validate_url(_cluster.strip_flag(resolved))  # ?cluster=1|0 is sbqueue's option, not redis-py's
    opts = _client_kwargs(kwargs)
    if source != "embedded" and _cluster.wanted(resolved, opts):
        return cast(redis.asyncio.Redis, _cluster.connect_async(resolved, opts))
    client = redis.asyncio.Redis.from_url(_cluster.strip_flag(resolved), **opts)
    client.sbqueue_url = resolved  # type: ignore[attr-defined]
    return client


def ping(client: redis.Redis, url: str) -> None:
    """PING and version-check ``client``, turning failures into clear sbqueue errors."""
    try:
        client.ping()
        version = str(client.info("server").get("redis_version", "0"))
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"Redis at {mask_url(url)} refused the credentials ({scrub(str(exc), url)}); "
            "check the user/password in the URL"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ConnectionFailedError(
            f"cannot reach Redis at {mask_url(url)} ({scrub(str(exc), url)}); is the server running? "
            "Set SBQUEUE_REDIS_URL, pass url=..., or unset both to use the embedded server"
        ) from None
    check_version(version, url)


def url_of(client: Any) -> str:
    """The URL a client was created from (masked-safe callers must still :func:`mask_url` it)."""
    url = getattr(client, "sbqueue_url", None)
    if url:
        return str(url)
    if _cluster.is_cluster(client):
        return _cluster.url_of(client)
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    conn_class = getattr(client.connection_pool, "connection_class", type)
    tls = kw.get("ssl") or "ssl_context" in kw or "SSL" in conn_class.__name__
    auth = ""
    if kw.get("password"):  # percent-encoded: a '@' or '/' in a password must not break the URL
        auth = f"{quote(kw.get('username') or '', safe='')}:{quote(str(kw['password']), safe='')}@"
    # TLS file options travel as redis-py query arguments, so a client made from this URL verifies the same way
    query = urlencode({k: kw[k] for k in _TLS_URL_OPTIONS if tls and isinstance(kw.get(k), str)})
    where = f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return f"{'rediss' if tls else 'redis'}://{auth}{where}" + (f"?{query}" if query else "")


_TLS_URL_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


def coerce(connection: Any) -> redis.Redis:
    """Accept None (→ :func:`connect`), a URL string, or a redis-py client; return a client."""
    if connection is None or isinstance(connection, str):
        return connect(connection)
    if isinstance(connection, redis.Redis):
        return connection
    if isinstance(connection, _cluster.SyncCluster):
        return cast(redis.Redis, connection)
    raise ConfigurationError(
        "connection must be None, a Redis URL or a redis.Redis client (or a redis.cluster.RedisCluster), "
        f"got {type(connection).__name__}"
    )


def coerce_async(connection: Any) -> redis.asyncio.Redis:
    """Async twin of :func:`coerce`; a sync client is converted to an async one on the same server."""
    if connection is None or isinstance(connection, str):
        return connect_async(connection)
    if isinstance(connection, redis.asyncio.Redis):
        return connection
    if isinstance(connection, _cluster.AsyncCluster):
        return cast(redis.asyncio.Redis, connection)
    if isinstance(connection, (redis.Redis, _cluster.SyncCluster)):
        return async_twin(cast(redis.Redis, connection))
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
    if _cluster.is_cluster(client):
        return cast(redis.asyncio.Redis, _cluster.async_twin(client, **overrides))
    pool = client.connection_pool
    kwargs = _portable_kwargs(pool, overrides)
    for key in ("redis_connect_func", "check_ready", "event_dispatcher"):  # sync-only options
        kwargs.pop(key, None)
    cls = _twin_class(pool.connection_class, redis.asyncio.connection)
    accepted = _accepted_options(cls)
    for key in [k for k in kwargs if k not in accepted]:  # e.g. the sync-only ssl_validate_ocsp* of ssl=True
        if kwargs.pop(key) not in (None, False):
            raise ConfigurationError(f"the asyncio client cannot honour {key}= (set on the sync client)")
    # from_pool: the client owns the pool, so aclose() really closes its sockets
    async_client = redis.asyncio.Redis.from_pool(redis.asyncio.ConnectionPool(connection_class=cls, **kwargs))
    async_client.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return async_client


def sync_twin(client: redis.Redis, **overrides: Any) -> redis.Redis:
    """A new sync client (own pool) on the same server with the same options (plus ``overrides``)."""
    if _cluster.is_cluster(client):
        return cast(redis.Redis, _cluster.sync_twin(client, **overrides))
    pool = client.connection_pool
    new = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **_portable_kwargs(pool, overrides)
        )
    )
    new.sbqueue_url = url_of(client)  # type: ignore[attr-defined]
    return new
