"""The chaos test processor: record every execution in Redis, then return.

Each execution is recorded once, idempotently, in one MULTI/EXEC:

- ``SADD <prefix>:chaos:done <id>`` — the job ran at least once;
- ``HSET <prefix>:chaos:runs "<id> <token>" "<pid> <start_ms> <end_ms>"`` — one field per execution.
  The token (``<worker id>:<attempts started>``) is unique per fetch, so a retried write (a killed
  connection, a Redis restart) never counts an execution twice; ``HLEN``-style counting per id gives
  the executions of a job.

A small random sleep (``SBQUEUE_CHAOS_SLEEP_MS``, default 1-6 ms) makes SIGKILLs land mid-job. The
client is created lazily, once per process, from ``SBQUEUE_REDIS_URL``; recording retries connection
errors for up to ``SBQUEUE_CHAOS_RECORD_TIMEOUT`` seconds (default 120) so a Redis restart does not
fail the job.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import redis

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid = 0


def _redis() -> redis.Redis:
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            _client = redis.Redis.from_url(
                os.environ["SBQUEUE_REDIS_URL"], decode_responses=True, socket_connect_timeout=2, socket_timeout=5
            )
            _client_pid = os.getpid()
        return _client


def _sleep_range() -> tuple[float, float]:
    spec = os.environ.get("SBQUEUE_CHAOS_SLEEP_MS", "1-6")
    low, _, high = spec.partition("-")
    return float(low) / 1000, float(high or low) / 1000


def record(prefix: str, job_id: str, token: str, start_ms: int, end_ms: int) -> None:
    """Write one execution record (idempotent per token), retrying connection errors."""
    deadline = time.monotonic() + float(os.environ.get("SBQUEUE_CHAOS_RECORD_TIMEOUT", "120"))
    delay = 0.05
    while True:
        try:
            pipe = _redis().pipeline(transaction=True)
            pipe.sadd(f"{prefix}:chaos:done", job_id)
            pipe.hset(f"{prefix}:chaos:runs", f"{job_id} {token}", f"{os.getpid()} {start_ms} {end_ms}")
            pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def process(job: Any) -> Any:
    start_ms = int(time.time() * 1000)
    low, high = _sleep_range()
    time.sleep(random.uniform(low, high))
    prefix = job.queue.prefix
    record(prefix, job.id, job.token or "none", start_ms, int(time.time() * 1000))
    data = job.data if isinstance(job.data, dict) else {}
    return {"k": data.get("k")}
