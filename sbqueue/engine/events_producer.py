"""Custom events on a queue's event stream, readable by Node's ``QueueEvents`` (BullMQ's QueueEventsProducer).

A published event is one stream entry ``event=<name>`` plus the given fields, trimmed like BullMQ's (``MAXLEN ~
max_events``). Node's ``QueueEvents`` emits it as ``<name>`` with the fields as strings; sbqueue's
:class:`~sbqueue.QueueEvents` reads it like any other event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sbqueue._core import options as _opts
from sbqueue.engine._async.queue import AsyncQueue
from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import DataError, InvalidOptionError


def _fields(event_name: Any, fields: Mapping[str, Any] | None, max_events: Any) -> tuple[dict[str, str], int]:
    """Validate one publish (nothing is written on bad input) and encode the values as BullMQ stores them."""
    if not isinstance(event_name, str) or not event_name:
        raise InvalidOptionError(f"event_name must be a non-empty string, got {event_name!r}", option="event_name")
    maxlen = _opts.validate_count(max_events, "max_events", minimum=1)
    out = {"event": event_name}
    for key, value in (fields or {}).items():
        if not isinstance(key, str) or not key or key in ("event", "eventName"):
            raise InvalidOptionError(f"event field names must be non-empty strings other than 'event', got {key!r}",
                                     option="fields")  # fmt: skip
        if isinstance(value, bool):
            out[key] = "true" if value else "false"  # as JavaScript's String(true)
        elif isinstance(value, (str, int, float)):
            out[key] = str(value)
        elif isinstance(value, (dict, list)):
            out[key] = _opts.dumps(value, f"event field {key!r}")
        else:
            raise DataError(f"event field {key!r} must be a string, number, bool, dict or list, got {value!r}")
    return out, maxlen


class QueueEventsProducer:
    """Publish custom events on a queue's stream (Node's ``QueueEventsProducer``).

    ``producer.publish_event("order-shipped", {"order": "A-17"})`` writes ``event=order-shipped order=A-17``;
    a Node ``QueueEvents`` on the same queue emits ``'order-shipped'`` with ``{order: 'A-17'}``. Strings and
    numbers are stored as text (as Node does); dicts and lists as JSON (Node would store ``[object Object]``).
    """

    def __init__(self, name: str, connection: Any = None, prefix: str = "bull") -> None:
        self._queue = Queue(name, connection, prefix)

    @property
    def name(self) -> str:
        """The queue name."""
        return self._queue.name

    def publish_event(self, event_name: str, fields: Mapping[str, Any] | None = None, max_events: int = 1000) -> str:
        """Add one event to the stream (trimmed to about ``max_events``, BullMQ's default 1000); returns its id."""
        encoded, maxlen = _fields(event_name, fields, max_events)
        entry = self._queue.client.xadd(self._queue.keys.key("events"), encoded, maxlen=maxlen, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def close(self) -> None:
        """Close the connection this producer opened (a client you passed in stays open)."""
        self._queue.close()

    def __enter__(self) -> QueueEventsProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncQueueEventsProducer:
    """:class:`QueueEventsProducer` for asyncio code (``await producer.publish_event(...)``)."""

    def __init__(self, name: str, connection: Any = None, prefix: str = "bull") -> None:
        self._queue = AsyncQueue(name, connection, prefix)

    @property
    def name(self) -> str:
        """The queue name."""
        return self._queue.name

    async def publish_event(
        self, event_name: str, fields: Mapping[str, Any] | None = None, max_events: int = 1000
    ) -> str:
        """Add one event to the stream (trimmed to about ``max_events``); returns its id."""
        encoded, maxlen = _fields(event_name, fields, max_events)
        entry = await self._queue.client.xadd(self._queue.keys.key("events"), encoded, maxlen=maxlen, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def close(self) -> None:
        """Close the connection this producer opened."""
        await self._queue.close()

    async def __aenter__(self) -> AsyncQueueEventsProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AsyncQueueEventsProducer", "QueueEventsProducer"]
