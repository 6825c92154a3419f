"""Redis URLs: where the URL comes from, whether it is well formed, and how to print it without its secrets."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

import redis

from sbqueue.connection.redispy import accepted_options
from sbqueue.errors import ConfigurationError

MIN_REDIS_VERSION = (6, 2, 0)
SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: ``?cluster=1|0``: sbqueue's own URL option (client-side cluster mode), not redis-py's
CLUSTER_OPTION = "cluster"
ENV_VARS = ("SBQUEUE_REDIS_URL", "REDIS_URL")



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
    start = _scheme_end(head)
    userinfo = head[start:]
    masked = f"{userinfo.split(':', 1)[0]}:***" if ":" in userinfo else "***"
    rest, q, query = tail.partition("?")
    return f"{head[:start]}{masked}@{rest}{q}{_mask_query(query)}"


def _scheme_end(head: str) -> int:
    """Where the authority starts: after ``scheme://`` when ``head`` starts with a real scheme, else 0 (text
    before a "://" that is no scheme may be part of a password)."""
    end = head.find("://")
    return end + 3 if end > 0 and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head[:end]) else 0


#: what a host may look like: a name or IPv4 address, or an IPv6 address (urlsplit drops the brackets)
_HOST = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+(%[a-z0-9._-]+)?")


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
        userinfo = head[_scheme_end(head) :]
        secrets.add(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    for item in url.partition("?")[2].split("&"):
        name, eq, value = item.partition("=")
        if eq and _SECRET_ARG.search(unquote_plus(name)):
            secrets.add(value)
    # a '?', '#', '@', '/' or ':' in a raw password cuts the URL's parts there: an error may quote one piece as a
    # host or a socket path (over-masking a piece elsewhere in the message is the safe side)
    secrets |= {piece for s in list(secrets) for piece in re.split(r"[?#@/:]", s) if re.search(r"[A-Za-z0-9]", piece)}
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


_UNCLEAR = "; percent-encode '@', ':', '/', '?', '#' and '%' in the user name and password"


def validate_plain_url(url: str) -> None:
    """Raise :class:`ConfigurationError` (masked) unless ``url`` is a usable standalone/cluster Redis URL
    (:func:`sbqueue.connection.validate_url` also takes Sentinel URLs)."""
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
            f"use one of {', '.join(s + '://' for s in SCHEMES + SENTINEL_SCHEMES)}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"unix:// URL {mask_url(url)!r} has no socket path")
    elif not parts.hostname:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has no host")
    elif not _HOST.fullmatch(parts.hostname):  # e.g. '*', which the resolver may take for "any local address"
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has an invalid host{_UNCLEAR}")
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has an invalid port")
    try:  # redis-py's own parse: query arguments (?db=x, ?socket_timeout=...) and what the client accepts
        options = redis.connection.parse_url(url)
    except ValueError as exc:  # e.g. "Invalid value for 'db' in connection URL." (names the argument only)
        problem = str(exc)
    masked = mask_url(url)
    # argument names are echoed only when the masked URL shows them: an unencoded '?' in a password would
    # otherwise make part of the password an "argument name"
    unclear = _UNCLEAR
    if problem:
        shown = all(name in masked for name in re.findall(r"'([^']*)'", problem))
        raise ConfigurationError(f"Redis URL {masked!r}: {problem if shown else 'invalid query argument' + unclear}")
    given = {k for k in options if k.lower() != CLUSTER_OPTION}  # ?cluster= is sbqueue's own option
    unknown = sorted(given - accepted_options(options.get("connection_class", redis.connection.Connection)))
    if unknown:
        if not all(name in masked for name in unknown):
            raise ConfigurationError(f"Redis URL {masked!r} has unknown query arguments{unclear}")
        hint = " (TLS options need rediss://)" if any(u.startswith("ssl") for u in unknown) else ""
        raise ConfigurationError(f"Redis URL {masked!r} has unknown query argument(s) {unknown}{hint}")
