"""Reading ahead: iterate a Redis-bound generator in a helper thread while the caller decodes what came back.

The inspector's scans alternate between waiting on Redis and decoding; running the reads one step
ahead in a thread overlaps the two (the socket wait releases the GIL) without changing what is read or in
which order.
"""

from __future__ import annotations

import queue as _queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")
_END = object()


def read_ahead(items: Iterator[_T], depth: int = 2) -> Generator[_T, None, None]:
    """Iterate ``items`` in a helper thread, up to ``depth`` ahead of the consumer.

    The helper spends its time waiting on Redis (the socket wait releases the GIL), so the consumer's
    decoding overlaps with the next reads. The helper is the only user of the client while this runs; an
    error there is raised here, and stopping early (``break``, ``limit``, an exception) stops the helper
    after its current read — it is joined before this generator returns, so the client is free again.
    """
    handoff: _queue.Queue[tuple[str, Any]] = _queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.05)
                return True
            except _queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", _END)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    helper = threading.Thread(target=run, name="sbqueue-inspect-read", daemon=True)
    helper.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        helper.join()
