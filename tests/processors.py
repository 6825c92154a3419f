"""Processors for worker subprocess tests, importable by the CLI as ``tests.processors:<fn>``.

The CLI imports them by path, so the subprocess runs with cwd = the repository root.
"""

from __future__ import annotations

import time
from typing import Any


def echo(job: Any) -> Any:
    """Return the job's data."""
    return job.data


def sleep_job(job: Any) -> dict[str, Any]:
    """Sleep ``data["seconds"]`` (a sync processor, run in the worker's thread pool)."""
    seconds = float((job.data or {}).get("seconds", 1))
    job.update_progress(1)
    time.sleep(seconds)
    return {"slept": seconds}


def hang(job: Any) -> None:
    """Never finish in any reasonable time (the test kills the process)."""
    job.update_progress(1)
    time.sleep(3600)


# --- helpers shared by the worker/event test modules ---------------------------------------------


def wait_for(cond: Any, timeout: float = 5.0, interval: float = 0.005, what: str = "condition") -> Any:
    """Poll ``cond()`` until it returns something truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stream_events(client: Any, prefix: str, queue: str, job_id: str | None = None) -> list[dict[str, str]]:
    """The queue's events stream as dicts (``_ms`` = the entry's timestamp), optionally for one job."""
    out = []
    for entry_id, fields in client.xrange(f"{prefix}:{queue}:events"):
        if job_id is not None and fields.get("jobId") != job_id:
            continue
        out.append({**fields, "_ms": int(entry_id.split("-")[0])})
    return out


def strip_ms(events: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in e.items() if k != "_ms"} for e in events]
