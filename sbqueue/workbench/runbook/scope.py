"""Which queues a diagnosis runs on: one named queue, every queue of a prefix, or NOT FOUND.

A runbook given a queue name that does not exist must not report "OK" on an empty queue: it reports
``NOT FOUND`` and lists the queues and prefixes that do exist (a typo in a name or prefix is the usual cause).
Given no queue, the diagnosis runs on every queue of the prefix and the findings are combined into one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from sbqueue._core.keys import validate_queue_name
from sbqueue.connection import clients
from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection import Inspector
from sbqueue.inspection.queues import discover
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of


def queue_names(connection: Any = None, prefix: str = "bull") -> list[str]:
    """Names of the queues that exist under ``prefix`` (SCAN)."""

    return discover(Inspector(clients.sync_client(connection).client, prefix, progress=False)._ctx)


def prefixes(connection: Any = None) -> list[str]:
    """The key prefixes of every BullMQ-layout queue on the server (from ``<prefix>:<queue>:meta``/``:id`` keys)."""
    client = clients.sync_client(connection).client
    found: set[str] = set()
    for pattern in ("*:meta", "*:id"):
        for key in client.scan_iter(match=pattern, count=1000):
            key = key.decode() if isinstance(key, bytes) else key
            head = key.rsplit(":", 2)
            if len(head) == 3 and head[0]:
                found.add(head[0])
    return sorted(found)


def not_found_finding(runbook_name: str, queue: str | None, client: Any, prefix: str, existing: list[str]) -> Finding:
    others = prefixes(client)
    where = f"prefixes on this server: {', '.join(others)}" if others else "no queues on this server at all"
    if queue is None:
        text = f"no queue exists under prefix {prefix!r}; {where}"
    else:
        there = f"queues under {prefix!r}: {', '.join(existing)}" if existing else f"no queue under {prefix!r}"
        text = f"queue {queue!r} does not exist under prefix {prefix!r}; {there}; {where}"
    empty = frame_of([], CHECK_COLUMNS)
    return Finding(runbook_name, queue or "*", "not found", text, empty, frame_of([], PLAN_COLUMNS), not_found=text)


def each_queue(
    runbook_name: str,
    diagnose: Callable[..., Finding],
    queue: str | Queue | None,
    connection: Any,
    prefix: str,
    **kwargs: Any,
) -> Finding:
    """Run ``diagnose`` on ``queue``, or on every queue of the prefix when it is None; NOT FOUND if missing."""
    if isinstance(queue, Queue):
        return diagnose(queue, **kwargs)
    if queue is not None:
        if not isinstance(queue, str):
            raise InvalidOptionError(f"queue must be a name or None, got {queue!r}", option="queue")
        validate_queue_name(queue)
    client = clients.sync_client(connection).client
    existing = queue_names(client, prefix)
    if queue is not None:
        if queue not in existing:
            return not_found_finding(runbook_name, queue, client, prefix, existing)
        return diagnose(Queue(queue, client, prefix=prefix), **kwargs)
    if not existing:
        return not_found_finding(runbook_name, None, client, prefix, existing)
    parts = [diagnose(Queue(name, client, prefix=prefix), **kwargs) for name in existing]
    if len(parts) == 1:
        return parts[0]
    checks = pd.concat([p.checks.assign(check=f"{p.queue}: " + p.checks["check"]) for p in parts], ignore_index=True)
    plan = pd.concat([p.plan for p in parts if len(p.plan)] or [frame_of([], PLAN_COLUMNS)], ignore_index=True)
    words = {p.queue: p.outcome for p in parts}
    summary = ", ".join(f"{name}: {word}" for name, word in words.items())
    return Finding(runbook_name, "*", f"{len(parts)} queues", summary, checks, plan, parts=parts)
