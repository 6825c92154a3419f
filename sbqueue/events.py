"""Event listeners (``.on``) and :class:`QueueEvents`, a consumer of ``<queue>:events`` (XREAD BLOCK)."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import redis

from . import connection as _connection
from ._core import options as _opts
from ._core.keys import QueueKeys
from .errors import InvalidOptionError

log = logging.getLogger("sbqueue")
_STREAM_ID = re.compile(r"\$|[0-9]{1,20}(-[0-9]{1,20})?")  # fullmatch: "$", "0", "1700000000000-0"


class EventEmitter:
    """Minimal ``on``/``off``/``emit``; a failing listener is logged, never breaks the emitter."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., Any]]] = {}

    def on(self, event: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``fn`` on ``event``; returns ``fn`` (usable as a decorator factory's target)."""
        self._listeners.setdefault(event, []).append(fn)
        return fn

    def off(self, event: str, fn: Callable[..., Any]) -> None:
        if fn in self._listeners.get(event, []):
            self._listeners[event].remove(fn)

    def emit(self, event: str, *args: Any) -> None:
        for fn in list(self._listeners.get(event, ())):
            try:
                fn(*args)
            except Exception:  # a listener's bug must not kill a worker
                log.exception("listener for %r failed", event)


#: fields QueueEvents JSON-decodes, per event (as Node's QueueEvents does)
_JSON_FIELDS = {"progress": ("data",), "completed": ("returnvalue",)}


def decode_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry -> ``{"event", "id", ...fields}`` with JSON fields parsed and ``delay`` numeric."""
    out: dict[str, Any] = {"id": entry_id, **fields}
    for name in _JSON_FIELDS.get(fields.get("event", ""), ()):
        if name in out:
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    if fields.get("event") == "delayed" and "delay" in out:
        try:
            out["delay"] = int(float(out["delay"]))
        except ValueError:
            pass
    return out


class QueueEvents(EventEmitter):
    """Follow a queue's events stream from ``last_event_id`` (``"$"`` = only new events).

    ``ev.on("completed", fn)`` + ``ev.start()`` runs a background reader thread; or iterate
    ``for e in ev:`` (blocking). Listeners get the decoded event dict; ``"<event>:<jobId>"`` listeners
    fire for one job.
    """

    def __init__(
        self,
        queue_name: str,
        connection: Any = None,
        prefix: str = "bull",
        last_event_id: str = "$",
        *,
        block_ms: int = 10_000,
    ) -> None:
        super().__init__()
        self.keys = QueueKeys(prefix, queue_name)
        self.name = queue_name
        if (not isinstance(last_event_id, str) or not _STREAM_ID.fullmatch(last_event_id)
                or any(int(part) >= 2**64 for part in last_event_id.strip("$").split("-") if part)):  # fmt: skip
            raise InvalidOptionError(f"last_event_id must be '$' or a stream id like '0' or '1700000000000-0', "
                                     f"got {last_event_id!r}", option="last_event_id")  # fmt: skip
        block_ms = _opts.validate_count(block_ms, "block_ms", minimum=1, maximum=10**7)
        base = _connection.coerce(connection)
        # XREAD BLOCK needs a socket timeout longer than the block time
        self._client = _connection.sync_twin(
            base, socket_timeout=block_ms / 1000 + 10, client_name=self.keys.client_name(events=True),
            encoding_errors="replace",  # a peer's non-UTF-8 bytes must not stop the reader
        )
        self.last_event_id = last_event_id
        self.block_ms = block_ms
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._resolve_start()  # "$" = events after this object was made, however late reading starts

    def _resolve_start(self) -> None:
        # resolve "$" once, so events between two reads (or before start() returns) are never skipped
        if self.last_event_id == "$":
            key = self.keys.key("events")
            info = self._client.xinfo_stream(key) if self._client.exists(key) else None
            self.last_event_id = info["last-generated-id"] if info else "0-0"

    def _fetch(self, count: int, block_ms: int | None) -> list[dict[str, Any]]:
        self._resolve_start()
        reply: Any = self._client.xread(
            {self.keys.key("events"): self.last_event_id}, count=count,
            block=(self.block_ms if block_ms is None else block_ms) or None,  # 0: no wait (BLOCK 0 = forever)
        )  # fmt: skip
        return [decode_event(entry_id, fields) for _stream, entries in reply or [] for entry_id, fields in entries]

    def read(self, count: int = 100, block_ms: int | None = None) -> list[dict[str, Any]]:
        """Read the next batch (blocking up to ``block_ms``) and advance ``last_event_id``."""
        out = self._fetch(count, block_ms)
        if out:
            self.last_event_id = out[-1]["id"]
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._closing.is_set():
            for event in self._fetch(100, None):
                self.last_event_id = event["id"]  # per event: breaking out and iterating again loses nothing
                yield event

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                events = self.read(block_ms=min(self.block_ms, 500))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.emit("error", exc)
                self._closing.wait(1.0)
                continue
            for event in events:
                self.emit(event["event"], event)
                if "jobId" in event:
                    self.emit(f"{event['event']}:{event['jobId']}", event)

    def start(self) -> QueueEvents:
        """Start the background reader thread (listeners run on it)."""
        if self._thread is None:
            self._resolve_start()
            self._thread = threading.Thread(target=self._loop, name=f"sbqueue-events-{self.name}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading and close the connection."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()
        self._client.connection_pool.disconnect()  # the twin owns its pool
