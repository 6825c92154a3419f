"""Event listeners (``.on``) and :class:`QueueEvents`, a consumer of ``<queue>:events`` (XREAD BLOCK)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import redis

from sbqueue._core import options as _opts
from sbqueue._core.events import decode_event
from sbqueue._core.keys import QueueKeys
from sbqueue.connection import clients, mask_url, url_of
from sbqueue.errors import ConnectionFailedError, InvalidOptionError

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
        # XREAD BLOCK needs a socket timeout longer than the block time; the connection is named like Node's
        self._client = clients.checked_sync_client(
            connection, socket_timeout=block_ms / 1000 + 10, client_name=self.keys.client_name(events=True),
            **clients.DECODED,
        ).client
        self.last_event_id = last_event_id
        self.block_ms = block_ms
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # what stopped the background reader (re-raised by close())
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
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # credentials or ACL changed since construction: retrying cannot help
                self._stop_with(ConnectionFailedError(f"Redis at {mask_url(url_of(self._client))} refused the "
                                                      f"events reader ({exc})"))  # fmt: skip
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # Redis down or restarting: retried
                self.emit("error", exc)
                self._closing.wait(1.0)
                continue
            except Exception as exc:  # e.g. the events key overwritten with another type: reported, not retried
                self._stop_with(exc)
                return
            for event in events:
                name = str(event.get("event", ""))  # a buggy peer's entry may lack the field
                self.emit(name, event)
                if "jobId" in event:
                    self.emit(f"{name}:{event['jobId']}", event)

    def _stop_with(self, exc: BaseException) -> None:
        self._error = exc
        log.error("events reader for %r stopped: %s", self.name, exc)
        self.emit("error", exc)

    def start(self) -> QueueEvents:
        """Start the background reader thread (listeners run on it)."""
        if self._thread is None:
            self._resolve_start()
            self._thread = threading.Thread(target=self._loop, name=f"sbqueue-events-{self.name}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading and close the connection; re-raises the error that stopped the background reader."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        clients.close_sync(self._client)  # always sbqueue's own client (named, longer socket timeout)
        error, self._error = self._error, None
        if error is not None:
            raise error
