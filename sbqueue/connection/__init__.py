"""Layer 1 — connections: from a URL or a redis-py object to the clients sbqueue needs.

URL parsing, validation and password masking (:mod:`.urls`), what redis-py accepts (:mod:`.redispy`), the
three topologies — standalone, cluster (:mod:`.cluster`), Sentinel (:mod:`.sentinel`) — picked by
:func:`connect` (:mod:`.factory`), the clients every other layer is handed (:mod:`.clients`), the embedded
server (:mod:`.embedded`) and the recognition of a full Redis (:mod:`.full`).

May import: :mod:`sbqueue.errors`, :mod:`sbqueue._core`, redis-py. Never the engine or anything above it.
"""

from sbqueue.connection import factory
from sbqueue.connection.factory import URL_HINT, check_version, connect, connect_async, ping, url_of, validate_url
from sbqueue.connection.urls import ENV_VARS, MIN_REDIS_VERSION, SCHEMES, mask_url, resolve_url, scrub


def set_url_hint(hint: str) -> None:
    """How error messages name the URL setting (the command line says ``"pass --url URL"``)."""
    factory.URL_HINT = hint


__all__ = [
    "ENV_VARS",
    "MIN_REDIS_VERSION",
    "SCHEMES",
    "URL_HINT",
    "check_version",
    "connect",
    "connect_async",
    "mask_url",
    "ping",
    "resolve_url",
    "scrub",
    "set_url_hint",
    "url_of",
    "validate_url",
]
