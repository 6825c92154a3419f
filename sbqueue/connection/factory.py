"""connect(): a ready redis-py client for a URL — standalone, cluster or Sentinel, picked by the URL and the server.

Resolution order for :func:`connect` (and for every ``connection=None``):

1. an explicit ``url`` argument (``redis://``, ``rediss://``, ``unix://``, or a Sentinel deployment's
   ``redis+sentinel://`` / ``rediss+sentinel://``, see :mod:`sbqueue.connection.sentinel`);
2. the ``SBQUEUE_REDIS_URL`` environment variable, then ``REDIS_URL``;
3. the embedded server (:mod:`sbqueue.connection.embedded`), started on first use and shared by every process.
"""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import quote, urlencode

import redis
import redis.asyncio

from sbqueue.connection import cluster as _cluster
from sbqueue.connection import embedded
from sbqueue.connection import sentinel as _sentinel
from sbqueue.connection.urls import MIN_REDIS_VERSION, mask_url, resolve_url, scrub, validate_plain_url
from sbqueue.errors import ConnectionFailedError, RedisVersionError


def validate_url(url: str) -> None:
    """Raise :class:`ConfigurationError` (masked) unless ``url`` is a usable Redis URL: standalone, cluster or
    Sentinel (``redis+sentinel://``)."""
    if isinstance(url, str) and _sentinel.is_url(url):
        _sentinel.parse(url)
        return
    validate_plain_url(url)


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

    Redis Sentinel: a ``redis+sentinel://`` URL gives a Sentinel-managed client on the service's master
    (it follows a failover).
    """
    resolved, _source = resolve_url(url)
    if resolved is None:
        resolved = embedded.ensure_server().url
    if _sentinel.is_url(resolved):
        validate_url(resolved)
        sentinel_client = _sentinel.connect(resolved, _client_kwargs(kwargs))
        if check:
            try:
                ping(sentinel_client, resolved)
            except BaseException:
                sentinel_client.close()
                raise
        return sentinel_client
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
        resolved, source = embedded.ensure_server().url, "embedded"
    if _sentinel.is_url(resolved):
        validate_url(resolved)
        return _sentinel.connect_async(resolved, _client_kwargs(kwargs))
    validate_url(_cluster.strip_flag(resolved))  # ?cluster=1|0 is sbqueue's option, not redis-py's
    opts = _client_kwargs(kwargs)
    if source != "embedded" and _cluster.wanted(resolved, opts):
        return cast(redis.asyncio.Redis, _cluster.connect_async(resolved, opts))
    client = redis.asyncio.Redis.from_url(_cluster.strip_flag(resolved), **opts)
    client.sbqueue_url = resolved  # type: ignore[attr-defined]
    return client


#: how error messages name the URL setting; the ``sbqueue`` command line sets ``"pass --url URL"``
URL_HINT = "pass url=..."


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
    except (redis.ConnectionError, redis.TimeoutError, OSError, UnicodeError) as exc:  # UnicodeError: IDNA-invalid host
        raise ConnectionFailedError(
            f"cannot reach Redis at {mask_url(url)} ({scrub(str(exc), url)}); is the server running? "
            f"Set SBQUEUE_REDIS_URL, {URL_HINT}, or unset both to use the embedded server"
        ) from None
    check_version(version, url)


def url_of(client: Any) -> str:
    """The URL a client was created from (masked-safe callers must still :func:`mask_url` it)."""
    url = getattr(client, "sbqueue_url", None)
    if url:
        return str(url)
    if _cluster.is_cluster(client):
        return _cluster.url_of(client)
    if _sentinel.is_sentinel(client):
        return _sentinel.url_of(client)
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
