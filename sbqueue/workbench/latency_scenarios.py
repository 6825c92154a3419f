"""Planted latency incidents: queues whose jobs wait too long, for a named reason, live on a real Redis.

A latency cause only shows while it happens (arrivals outpace the workers, a limit holds fetching back), so
each function starts real producers and real sbqueue workers (threads), waits until the incident is visible
(a backlog has formed and jobs have been served), and returns a running :class:`Incident`: diagnose it, then
``stop()`` it (or use it as a context manager). Each takes a few seconds to plant.

    >>> with latency_scenarios.under_provisioned(prefix="demo") as incident:
    ...     runbook.diagnose_latency(incident.queue, prefix="demo").cause
    'workers saturated'
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sbqueue.connection import clients
from sbqueue.engine._sync.queue import Queue
from sbqueue.engine.worker import Worker
from sbqueue.errors import SbqueueError
from sbqueue.workbench.scenarios import Planted

__all__ = ["LATENCY_SCENARIOS", "Incident", "global_concurrency_caps", "healthy", "priority_starvation",
           "rate_limit_caps", "slow_job_name", "under_provisioned"]  # fmt: skip


class _Producer(threading.Thread):
    """Adds jobs at ``rate`` per second (in small batches, on schedule) until stopped."""

    def __init__(self, q: Queue, rate: float, make: Callable[[int], dict[str, Any]]) -> None:
        super().__init__(daemon=True, name=f"sbqueue-producer-{q.name}")
        self.q, self.rate, self.make = q, rate, make
        self.added = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        try:
            while not self._stop_event.is_set():
                due = int((time.monotonic() - start) * self.rate) - self.added
                if due > 0:
                    self.q.add_bulk([self.make(self.added + i) for i in range(due)])
                    self.added += due
                self._stop_event.wait(0.05)
        except Exception as exc:  # kept for stop(): a producer that died silently would fake a healthy queue
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


@dataclasses.dataclass(frozen=True)
class Incident(Planted):
    """A planted incident that keeps running (producers and workers) until :meth:`stop`."""

    handles: tuple[Any, ...] = ()

    def stop(self) -> None:
        """Stop the producers, then the workers (their unfinished jobs go back to wait)."""
        for handle in self.handles:
            if isinstance(handle, _Producer):
                handle.stop()
        for handle in self.handles:
            if isinstance(handle, Worker):
                handle.close(timeout=3)

    def __enter__(self) -> Incident:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sleeper(run_s: float | dict[str, float]) -> Callable[[Any], dict[str, bool]]:
    """A processor that takes ``run_s`` seconds (per job name when a dict)."""

    def process(job: Any) -> dict[str, bool]:
        time.sleep(run_s.get(job.name, 0.0) if isinstance(run_s, dict) else run_s)
        return {"ok": True}

    return process


def _start(connection: Any, prefix: str, queue: str, *, producers: Sequence[tuple[float, Callable[[int], Any]]],
           workers: int, concurrency: int, run_s: float | dict[str, float], ready: Callable[[Queue], bool],
           before: Callable[[Queue], None] | None = None, timeout: float = 60) -> tuple[Any, ...]:  # fmt: skip
    """A fresh queue; ``before`` it runs, the producers, then the workers; returns once ``ready``."""
    client = clients.sync_client(connection).client
    q = Queue(queue, client, prefix=prefix)
    q.obliterate(force=True)
    if before is not None:
        before(q)
    handles: list[Any] = [_Producer(Queue(queue, client, prefix=prefix), rate, make) for rate, make in producers]
    for p in handles:
        p.start()
    for i in range(workers):
        handles.append(Worker(queue, _sleeper(run_s), client, prefix, concurrency=concurrency,
                              name=f"latency-{i + 1}").start())  # fmt: skip
    running = Incident("", queue, prefix, "", [], {}, tuple(handles))
    deadline = time.monotonic() + timeout
    try:
        while not ready(q):
            broken = [p.error for p in handles if isinstance(p, _Producer) and p.error]
            if broken:
                raise SbqueueError(f"a planted producer failed: {broken[0]}")
            if time.monotonic() > deadline:
                raise SbqueueError(f"planting {queue!r} timed out waiting for the incident to show")
            time.sleep(0.05)
    except BaseException:
        running.stop()
        raise
    return tuple(handles)


def _completed(q: Queue) -> int:
    return int(q.get_job_counts("completed")["completed"])


def _runnable(q: Queue) -> int:
    counts = q.get_job_counts("waiting", "prioritized")
    return counts["waiting"] + counts["prioritized"]


def under_provisioned(connection: Any = None, prefix: str = "bull", queue: str = "latency-capacity", *,
                      rate: float = 40.0, run_s: float = 0.1, workers: int = 1,
                      concurrency: int = 2) -> Incident:  # fmt: skip
    """Jobs arrive at ``rate``/s; ``workers`` x ``concurrency`` slots of ``run_s`` s serve fewer: a growing backlog."""
    handles = _start(connection, prefix, queue, workers=workers, concurrency=concurrency, run_s=run_s,
                        producers=[(rate, lambda n: {"name": "resize-image", "data": {"n": n}})],
                        ready=lambda q: _completed(q) >= 10 and _runnable(q) >= 10)  # fmt: skip
    service = workers * concurrency / run_s
    return Incident("under_provisioned", queue, prefix,
                    f"arrival {rate:g}/s, capacity {service:g}/s ({workers} x concurrency {concurrency}, "
                    f"{run_s} s each)",
                    [], {"cause": "workers saturated", "arrival": rate, "service": service, "workers": workers,
                         "concurrency": concurrency}, handles)  # fmt: skip


def slow_job_name(connection: Any = None, prefix: str = "bull", queue: str = "latency-slow", *,
                  slow_rate: float = 6.0, slow_s: float = 1.0, fast_rate: float = 20.0,
                  concurrency: int = 4) -> Incident:  # fmt: skip
    """'render-pdf' jobs (``slow_s`` each) take the worker's slots; the fast 'send-email' jobs wait behind them."""
    run = {"render-pdf": slow_s, "send-email": 0.01}
    handles = _start(
        connection, prefix, queue, workers=1, concurrency=concurrency, run_s=run,
        producers=[(slow_rate, lambda n: {"name": "render-pdf", "data": {"n": n}}),
                   (fast_rate, lambda n: {"name": "send-email", "data": {"n": n}})],
        ready=lambda q: _completed(q) >= 20 and _runnable(q) >= 8,
    )  # fmt: skip
    return Incident("slow_job_name", queue, prefix, f"'render-pdf' runs {slow_s} s and takes the {concurrency} slots",
                    [], {"cause": "slow job name", "name": "render-pdf"}, handles)  # fmt: skip


def priority_starvation(connection: Any = None, prefix: str = "bull", queue: str = "latency-priority", *,
                        low_jobs: int = 20, rate: float = 50.0, run_s: float = 0.05,
                        concurrency: int = 2) -> Incident:  # fmt: skip
    """``low_jobs`` priority-10 jobs wait while priority-1 jobs keep arriving as fast as they are served."""

    def before(q: Queue) -> None:
        q.add_bulk([{"name": "nightly-report", "data": {"n": i}, "opts": {"priority": 10}} for i in range(low_jobs)])

    handles = _start(
        connection, prefix, queue, workers=1, concurrency=concurrency, run_s=run_s, before=before,
        producers=[(rate, lambda n: {"name": "checkout", "data": {"n": n}, "opts": {"priority": 1}})],
        ready=lambda q: _completed(q) >= 20,
    )  # fmt: skip
    return Incident("priority_starvation", queue, prefix,
                    f"{low_jobs} priority-10 jobs starve behind priority-1 arrivals ({rate:g}/s)", [],
                    {"cause": "priority starvation", "priority": 10}, handles)  # fmt: skip


def rate_limit_caps(connection: Any = None, prefix: str = "bull", queue: str = "latency-ratelimit", *,
                    limit: int = 5, duration_ms: int = 1000, rate: float = 15.0) -> Incident:  # fmt: skip
    """A global rate limit of ``limit`` per ``duration_ms`` below the arrival rate caps throughput."""
    handles = _start(
        connection, prefix, queue, workers=1, concurrency=10, run_s=0.005,
        before=lambda q: q.set_global_rate_limit(limit, duration_ms),
        producers=[(rate, lambda n: {"name": "call-partner-api", "data": {"n": n}})],
        ready=lambda q: _completed(q) >= limit and _runnable(q) >= 10,
    )  # fmt: skip
    return Incident("rate_limit_caps", queue, prefix, f"rate limit {limit} per {duration_ms} ms, arrival {rate:g}/s",
                    [], {"cause": "rate limit caps throughput", "max": limit, "duration": duration_ms},
                    handles)  # fmt: skip


def global_concurrency_caps(connection: Any = None, prefix: str = "bull", queue: str = "latency-global", *,
                            cap: int = 1, rate: float = 15.0, run_s: float = 0.1) -> Incident:  # fmt: skip
    """A global concurrency of ``cap`` keeps the worker's 4 slots idle while jobs arrive faster than ``cap`` serves."""
    handles = _start(
        connection, prefix, queue, workers=1, concurrency=4, run_s=run_s,
        before=lambda q: q.set_global_concurrency(cap),
        producers=[(rate, lambda n: {"name": "sync-crm", "data": {"n": n}})],
        ready=lambda q: _completed(q) >= 5 and _runnable(q) >= 10,
    )  # fmt: skip
    return Incident("global_concurrency_caps", queue, prefix, f"global concurrency {cap}, arrival {rate:g}/s, "
                    f"{run_s} s each", [], {"cause": "global concurrency caps throughput", "cap": cap},
                    handles)  # fmt: skip


def healthy(connection: Any = None, prefix: str = "bull", queue: str = "latency-healthy", *,
            rate: float = 10.0, concurrency: int = 4) -> Incident:  # fmt: skip
    """Workers keep up: jobs start within milliseconds."""
    handles = _start(connection, prefix, queue, workers=1, concurrency=concurrency, run_s=0.005,
                        producers=[(rate, lambda n: {"name": "send-email", "data": {"n": n}})],
                        ready=lambda q: _completed(q) >= 10)  # fmt: skip
    return Incident("healthy", queue, prefix, f"arrival {rate:g}/s, served at once", [], {"cause": "wait times fine"},
                    handles)  # fmt: skip


#: every latency incident by name
LATENCY_SCENARIOS: dict[str, Callable[..., Incident]] = {
    "under_provisioned": under_provisioned,
    "slow_job_name": slow_job_name,
    "priority_starvation": priority_starvation,
    "rate_limit_caps": rate_limit_caps,
    "global_concurrency_caps": global_concurrency_caps,
    "healthy": healthy,
}
