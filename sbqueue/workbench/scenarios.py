"""Planted incidents: reproduce each queue incident on a real Redis, deterministically (seeded).

Each function takes ``connection`` (None/URL/client), ``prefix`` and ``queue`` and returns a
:class:`Planted` describing what was planted and what a correct diagnosis must find. They use real
workers (a subprocess killed with ``-9`` where a crash is needed). ``sbqueue demo`` plants them all.

    >>> planted = scenarios.failing(prefix="demo", queue="emails")
    >>> planted.expected["signatures"]   # the distinct errors a triage must find
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from sbqueue import connection as _connection
from sbqueue.connection import clients, embedded
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.worker import Worker
from sbqueue.errors import ConfigurationError, SbqueueError

__all__ = [
    "SCENARIOS",
    "Planted",
    "delayed_pileup",
    "evicting_policy",
    "failing",
    "memory_bloat",
    "paused",
    "rate_limited",
    "stalled",
    "stuck_no_workers",
]


@dataclasses.dataclass(frozen=True)
class Planted:
    """What a scenario planted: the queue, the job ids involved and the expected diagnosis."""

    scenario: str
    queue: str
    prefix: str
    description: str
    job_ids: list[str]
    expected: dict[str, Any]


def _queue(connection: Any, prefix: str, queue: str, fresh: bool = True) -> Queue:
    q = Queue(queue, clients.sync_client(connection).client, prefix=prefix)
    if fresh:
        q.obliterate(force=True)
    return q


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SbqueueError(f"scenario timed out waiting for {what}")
        time.sleep(0.02)


# --- processors used by planted workers (importable by the `sbqueue worker` CLI) -------------------
def hang_forever(job: Any) -> None:
    """A processor that never returns (the worker running it gets killed)."""
    while True:
        time.sleep(3600)


class _Flaky:
    """Fails jobs by their data's ``fail`` field with one of several distinct error signatures."""

    errors: dict[str, Callable[[dict[str, Any]], BaseException]] = {
        "invalid-email": lambda d: ValueError(f"invalid email address: user{d['n']}@example.invalid"),
        "missing-customer": lambda d: KeyError("customer_id"),
        "upstream-timeout": lambda d: TimeoutError(f"upstream payment API timed out after {30 + d['n'] % 5} s"),
        "rate-limited": lambda d: RuntimeError(f"HTTP 429 Too Many Requests (request {d['n']})"),
    }

    def __call__(self, job: Any) -> dict[str, int]:
        kind = job.data.get("fail")
        if kind:
            raise self.errors[kind](job.data)
        return {"ok": job.data["n"]}


def _run_worker_until(q: Queue, processor: Callable[[Any], Any], done: Callable[[], bool], timeout: float) -> None:
    worker = Worker(q.name, processor, q.client, q.prefix, concurrency=8, name="scenario")
    worker.start()
    try:
        _wait(done, timeout, "the planted worker to finish")
    finally:
        worker.close(timeout=5)


# --- the incidents ------------------------------------------------------------------------------------
def stuck_no_workers(connection: Any = None, prefix: str = "bull", queue: str = "stuck", seed: int = 1,
                     jobs: int = 50) -> Planted:  # fmt: skip
    """A backlog of waiting jobs and no worker connected."""
    q = _queue(connection, prefix, queue)
    rng = random.Random(seed)
    added = q.add_bulk([{"name": "resize-image", "data": {"n": i, "size": rng.randint(1, 9)}} for i in range(jobs)])
    return Planted("stuck_no_workers", queue, prefix, f"{jobs} jobs waiting, no worker connected",
                   [j.id for j in added], {"cause": "no_workers", "waiting": jobs})  # fmt: skip


def paused(connection: Any = None, prefix: str = "bull", queue: str = "paused", seed: int = 1,
           jobs: int = 30) -> Planted:  # fmt: skip
    """A paused queue with a backlog (a worker is connected but fetches nothing)."""
    q = _queue(connection, prefix, queue)
    added = q.add_bulk([{"name": "send-email", "data": {"n": i}} for i in range(jobs)])
    q.pause()
    return Planted("paused", queue, prefix, f"queue paused with {jobs} jobs waiting",
                   [j.id for j in added], {"cause": "paused", "waiting": jobs})  # fmt: skip


def rate_limited(connection: Any = None, prefix: str = "bull", queue: str = "ratelimited", seed: int = 1,
                 jobs: int = 40, window_ms: int = 600_000) -> Planted:  # fmt: skip
    """A global rate limit of 2 jobs per ``window_ms`` has been used up; the rest wait."""
    q = _queue(connection, prefix, queue)
    added = q.add_bulk([{"name": "call-partner-api", "data": {"n": i}} for i in range(jobs)])
    q.set_global_rate_limit(2, window_ms)
    _run_worker_until(q, lambda job: {"ok": True}, lambda: q.get_job_counts("completed")["completed"] >= 2, 20)
    return Planted("rate_limited", queue, prefix, f"global rate limit 2 per {window_ms} ms reached",
                   [j.id for j in added], {"cause": "rate_limited", "waiting": jobs - 2, "max": 2,
                                           "duration": window_ms})  # fmt: skip


def delayed_pileup(connection: Any = None, prefix: str = "bull", queue: str = "delayed", seed: int = 1,
                   jobs: int = 200) -> Planted:  # fmt: skip
    """Many jobs delayed far into the future (nothing runnable now)."""
    q = _queue(connection, prefix, queue)
    rng = random.Random(seed)
    added = q.add_bulk([{"name": "reminder", "data": {"n": i},
                         "opts": {"delay": rng.randint(3_600_000, 86_400_000)}} for i in range(jobs)])  # fmt: skip
    return Planted("delayed_pileup", queue, prefix, f"{jobs} jobs delayed 1-24 h",
                   [j.id for j in added], {"cause": "delayed_not_due", "delayed": jobs})  # fmt: skip


def failing(connection: Any = None, prefix: str = "bull", queue: str = "failing", seed: int = 1,
            jobs: int = 120) -> Planted:  # fmt: skip
    """Jobs failing with 4 distinct error signatures; some still have retries left (in delayed)."""
    q = _queue(connection, prefix, queue)
    rng = random.Random(seed)
    kinds = list(_Flaky.errors)
    entries: list[dict[str, Any]] = []
    for i in range(jobs):
        fail = kinds[i % len(kinds)] if rng.random() < 0.6 else None
        opts: dict[str, Any] = {}
        if fail == "upstream-timeout":  # retried with a long backoff: still has attempts left
            opts = {"attempts": 3, "backoff": {"type": "fixed", "delay": 3_600_000}}
        entries.append(
            {"name": "charge-card" if i % 2 else "send-receipt", "data": {"n": i, "fail": fail}, "opts": opts}
        )
    added = q.add_bulk(entries)
    expected_failed = [j.id for j, e in zip(added, entries, strict=True)
                       if e["data"]["fail"] and e["data"]["fail"] != "upstream-timeout"]  # fmt: skip
    retrying = [j.id for j, e in zip(added, entries, strict=True) if e["data"]["fail"] == "upstream-timeout"]

    def done() -> bool:
        counts = q.get_job_counts("completed", "failed", "delayed")
        return counts["failed"] >= len(expected_failed) and counts["delayed"] >= len(retrying)

    _run_worker_until(q, _Flaky(), done, 60)
    return Planted("failing", queue, prefix, f"{len(expected_failed)} failed, {len(retrying)} waiting to retry",
                   expected_failed + retrying,
                   {"cause": "failing", "failed_ids": expected_failed, "retrying_ids": retrying,
                    "signatures": sorted(k for k in kinds if k != "upstream-timeout")})  # fmt: skip


def stalled(connection: Any = None, prefix: str = "bull", queue: str = "stalled", seed: int = 1,
            jobs: int = 3, lock_duration: int = 2000) -> Planted:  # fmt: skip
    """A worker process killed with -9 while holding jobs: they stay active until their lock expires."""
    q = _queue(connection, prefix, queue)
    added = q.add_bulk([{"name": "transcode-video", "data": {"n": i}} for i in range(jobs)])
    url = _connection.url_of(q.client)
    env = {**os.environ, "SBQUEUE_REDIS_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbqueue", "worker", queue, "sbqueue.workbench.scenarios:hang_forever",
         "--prefix", prefix,
         "--concurrency", str(jobs), "--lock-duration", str(lock_duration), "--name", "doomed",
         "--log-level", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(lambda: q.get_job_counts("active")["active"] >= jobs, 30, "the doomed worker to take its jobs")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return Planted("stalled", queue, prefix, f"worker killed -9 holding {jobs} active jobs",
                   [j.id for j in added], {"cause": "stalled", "active_ids": [j.id for j in added],
                                           "lock_duration": lock_duration})  # fmt: skip


def memory_bloat(connection: Any = None, prefix: str = "bull", queue: str = "bloat", seed: int = 1,
                 jobs: int = 300, payload_bytes: int = 20_000) -> Planted:  # fmt: skip
    """Large payloads kept forever (no removeOnComplete) and a long events stream."""
    client = clients.sync_client(connection).client
    q = Queue(queue, client, prefix=prefix, max_len_events=1_000_000)
    q.obliterate(force=True)
    rng = random.Random(seed)
    blob = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(payload_bytes))
    added = q.add_bulk([{"name": "render-report", "data": {"n": i, "html": blob}} for i in range(jobs)])
    _run_worker_until(q, lambda job: {"pages": 3}, lambda: q.get_job_counts("completed")["completed"] >= jobs, 60)
    return Planted("memory_bloat", queue, prefix, f"{jobs} completed jobs of ~{payload_bytes} B kept, no retention",
                   [j.id for j in added], {"cause": "no_retention", "completed": jobs,
                                           "approx_bytes": jobs * payload_bytes})  # fmt: skip


def evicting_policy(connection: Any = None, prefix: str = "bull", queue: str = "evicting", seed: int = 1) -> Planted:
    """Set ``maxmemory-policy allkeys-lru`` — only on a server sbqueue started itself (embedded)."""
    client = clients.sync_client(connection).client
    url = _connection.url_of(client)
    if not embedded.started_by_sbqueue(client):
        raise ConfigurationError(
            "evicting_policy only changes a server sbqueue started itself (embedded); "
            f"{_connection.mask_url(url)} is not"
        )
    client.config_set("maxmemory-policy", "allkeys-lru")
    q = _queue(client, prefix, queue)
    added = q.add_bulk([{"name": "sync-crm", "data": {"n": i}} for i in range(10)])
    return Planted("evicting_policy", queue, prefix, "maxmemory-policy set to allkeys-lru (jobs can be evicted)",
                   [j.id for j in added], {"cause": "evicting_policy", "policy": "allkeys-lru"})  # fmt: skip


#: every scenario by name (``sbqueue demo`` plants them all, each on its own queue)
SCENARIOS: dict[str, Callable[..., Planted]] = {
    "stalled": stalled,
    "failing": failing,
    "stuck_no_workers": stuck_no_workers,
    "paused": paused,
    "rate_limited": rate_limited,
    "memory_bloat": memory_bloat,
    "delayed_pileup": delayed_pileup,
    "evicting_policy": evicting_policy,
}
