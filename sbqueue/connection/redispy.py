"""What redis-py accepts, and how a setting moves between its sync and asyncio flavours."""

from __future__ import annotations

import inspect
from typing import Any

import redis.asyncio.retry
import redis.retry


def accepted_options(cls: type) -> set[str]:
    """Keyword arguments a redis-py connection class accepts (its own and its bases')."""
    names = {"connection_class"}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))  # fmt: skip
    return names - {"self"}


def convert_retry(retry: Any, *, to_async: bool) -> Any:
    """The same retry policy (backoff, retries, errors, predicate) as the other flavour's ``Retry`` class.

    redis-py converts a sync ``Retry`` given to an asyncio client itself, but warns that it did; a custom
    ``call_with_retry`` cannot be carried over either way, so only the stock classes are converted.
    """
    target = redis.asyncio.retry.Retry if to_async else redis.retry.Retry
    other = redis.retry.Retry if to_async else redis.asyncio.retry.Retry
    if not isinstance(retry, other) or isinstance(retry, target):
        return retry
    kwargs: dict[str, Any] = {"backoff": retry._backoff, "retries": retry._retries,
                              "supported_errors": retry._supported_errors}  # fmt: skip
    if getattr(retry, "_is_retryable", None) is not None:  # redis-py >= 8
        kwargs["is_retryable"] = retry._is_retryable
    return target(**kwargs)
