"""A planted workload for notebooks, tests and benchmarks: hours of BullMQ-shaped events written straight into
a queue's events stream (explicit past stream ids, so it takes seconds), with a known slowdown and failure burst.

Each job gets ``added``, ``waiting``, ``active`` and ``completed`` or ``failed`` entries with the fields BullMQ
writes (spec §10); the recorder reads them like any other. No job hashes are written (as with
``removeOnComplete``), so rows carry no hash fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np


@dataclasses.dataclass
class Plant:
    """What :func:`plant_workload` wrote: the window and the planted incidents (epoch ms)."""

    queue: str
    start_ms: int
    end_ms: int
    jobs: int
    events: int
    slow_name: str
    slow_from_ms: int
    slow_factor: float
    burst_name: str
    burst_from_ms: int
    burst_to_ms: int


def plant_workload(client: Any, prefix: str, queue: str, *, start_ms: int, minutes: int = 120,
                   jobs_per_minute: int = 60, names: tuple[str, ...] = ("resize", "email", "report"),
                   slow_name: str = "resize", slow_at: float = 0.5, slow_factor: float = 3.0,
                   burst_name: str = "email", burst_at: float = 0.75, burst_minutes: int = 10,
                   burst_failure_rate: float = 0.6, seed: int = 7) -> Plant:
    """Write ``minutes`` of jobs (``jobs_per_minute``, names round-robin) to ``<prefix>:<queue>:events``.

    From ``slow_at`` (a fraction of the window) ``slow_name`` runs ``slow_factor`` times slower; for
    ``burst_minutes`` from ``burst_at`` ``burst_name`` fails with probability ``burst_failure_rate`` (else 1 %).
    Run times are log-normal (median 200 ms), waits exponential (mean 50 ms).
    """
    rng = np.random.default_rng(seed)
    key = f"{prefix}:{queue}:events"
    end_ms = start_ms + minutes * 60_000
    slow_from = start_ms + int(minutes * slow_at) * 60_000
    burst_from = start_ms + int(minutes * burst_at) * 60_000
    burst_to = burst_from + burst_minutes * 60_000
    n = minutes * jobs_per_minute
    added = np.sort(rng.integers(start_ms, end_ms, n))
    waits = rng.exponential(50, n).astype(np.int64) + 1
    runs = rng.lognormal(np.log(200), 0.3, n)
    entries: list[tuple[int, int, dict[str, str]]] = []
    for i in range(n):
        name = names[i % len(names)]
        job = str(i + 1)
        t0 = int(added[i])
        run = runs[i] * (slow_factor if name == slow_name and t0 >= slow_from else 1.0)
        t_active = t0 + int(waits[i])
        t_end = t_active + max(1, int(run))
        p_fail = burst_failure_rate if name == burst_name and burst_from <= t0 < burst_to else 0.01
        entries.append((t0, 0, {"event": "added", "jobId": job, "name": name}))
        entries.append((t0, 1, {"event": "waiting", "jobId": job}))
        entries.append((t_active, 2, {"event": "active", "jobId": job, "prev": "waiting"}))
        if rng.random() < p_fail:
            entries.append((t_end, 3, {"event": "failed", "jobId": job, "failedReason": "upstream timeout",
                                       "prev": "active"}))
        else:
            entries.append((t_end, 3, {"event": "completed", "jobId": job,
                                       "returnvalue": json.dumps({"ok": True}), "prev": "active"}))
    entries.sort(key=lambda e: (e[0], e[1]))
    pipe = client.pipeline(transaction=False)
    last_ms, seq = -1, 0
    for ms, _, fields in entries:
        seq = seq + 1 if ms == last_ms else 0
        last_ms = ms
        pipe.xadd(key, fields, id=f"{ms}-{seq}", maxlen=None)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    return Plant(queue, start_ms, end_ms, n, len(entries), slow_name, slow_from, slow_factor, burst_name,
                 burst_from, burst_to)
