"""What the recorder knows about each queue, and the status file it publishes that in.

:class:`QueueProgress` is one queue's position in its events stream (read, and written to the dataset), lag
and gaps. After each complete flush the recorder writes them to the dataset's status file (``_recorder.json``),
which :mod:`sbqueue.ops.recorder_metrics` serves to Prometheus; a restarted recorder reads the gap counts back
so the exported counter keeps growing across runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from sbqueue.inspection.history_store import STATUS_FILE, Store, format_id

log = logging.getLogger("sbqueue.history")


class QueueProgress:
    """What the recorder knows about one queue: its position and the stream's counters."""

    def __init__(self, name: str, key: str, position: tuple[int, int] | None) -> None:
        self.name = name
        self.key = key
        self.position = position  # highest id read (buffered or written)
        self.persisted = position  # highest id written to the dataset
        self.seq: int | None = None  # entries ever added up to `position` (Redis 7), when known
        self.from_now = False  # start at the stream's newest entry (start="now", first discovery only)
        self.lag_s = 0.0
        self.tail: tuple[int, int] | None = None
        self.error: str | None = None
        self.gaps = 0
        self.recorded = 0


def read_prior_gaps(fs: Any, root: str) -> dict[str, int]:
    """Gaps counted by earlier runs (from the status file), so the exported counter keeps growing."""
    try:
        with fs.open(f"{root}/{STATUS_FILE}", "r") as fh:
            return {k: int(v.get("gaps") or 0) for k, v in json.load(fh)["queues"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_status(store: Store, prefix: str, queues: Iterable[QueueProgress], prior_gaps: dict[str, int]) -> None:
    """Write the status file: per queue, the position written to the dataset, lag, gaps (all runs), error."""
    status = {
        "prefix": prefix, "updated_ms": int(time.time() * 1000),
        "queues": {q.name: {"position": format_id(q.persisted) if q.persisted else None,
                            "lag_s": q.lag_s, "gaps": q.gaps + prior_gaps.get(q.name, 0),
                            "error": q.error}
                   for q in queues},
    }
    try:
        store.write_text(STATUS_FILE, json.dumps(status))
    except OSError as exc:
        log.warning("cannot write %s: %s", STATUS_FILE, exc)
