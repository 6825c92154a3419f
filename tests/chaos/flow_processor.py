"""The flow chaos processor (tests/chaos/test_flow_chaos.py): children return a value after a short sleep;
a parent records, per execution, how many children values it saw (idempotently per fetch token)."""

from __future__ import annotations

import random
import time
from typing import Any

from tests.chaos.processor import _redis, _sleep_range


def process(job: Any) -> Any:
    low, high = _sleep_range()
    time.sleep(random.uniform(low, high))
    if job.name != "parent":
        return {"i": job.data["i"]}
    seen = len(job.get_children_values())
    deadline = time.monotonic() + 120
    while True:
        try:
            runs = f"{job.queue.prefix}:flowchaos:runs"
            _redis().hset(runs, f"{job.id} {job.token}", f"{seen} {int(time.time() * 1000)}")
            break
        except OSError:  # redis.ConnectionError is one: Redis restarting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return seen
