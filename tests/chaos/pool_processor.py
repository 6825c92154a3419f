"""The process-pool chaos processor: runs in a worker's child process, records each execution, returns.

Each execution writes ``HSET <prefix>:pool:runs "<id> <attempt>" "<pid> <start_ms> <end_ms>"`` (idempotent per
attempt) straight to Redis (``SBQUEUE_REDIS_URL``; the prefix comes in the job's data), after a 20-60 ms sleep
so that the harness's SIGKILLs and SIGSEGVs land mid-job.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import redis

_client: redis.Redis | None = None


def process(job: Any) -> Any:
    global _client
    start_ms = int(time.time() * 1000)
    time.sleep(random.uniform(0.02, 0.06))
    if _client is None:
        _client = redis.Redis.from_url(os.environ["SBQUEUE_REDIS_URL"], decode_responses=True)
    _client.hset(f"{job.data['prefix']}:pool:runs", f"{job.id} {job.attempts_made + 1}",
                 f"{os.getpid()} {start_ms} {int(time.time() * 1000)}")  # fmt: skip
    return {"pid": os.getpid()}
