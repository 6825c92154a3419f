"""The ``bullmq_*`` metrics of one scrape: what the exporter read about each queue, and its metric families.

:class:`sbqueue.ops.exporter.QueueCollector` does the reading (pipelines, discovery, cursors); this module
holds what it remembers per queue between scrapes (:class:`QueueState`), what one scrape read
(:class:`QueueRead`), how those reads become numbers (worker counts, job durations, the age of the next job)
and the families they are reported in (:class:`QueueFamilies`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from sbqueue._core.keys import QueueKeys
from sbqueue.ops.exporter_redis import number

#: ``bullmq_queue_<state>`` gauges (the seed's names); the values are ``get_job_counts()[state]``.
STATE_GAUGES = ("waiting", "active", "completed", "failed", "delayed", "prioritized")
#: Upper bounds of ``bullmq_job_duration_seconds`` (5 ms to 1 h).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0, math.inf)  # fmt: skip
#: BullMQ's event names (spec §10); other (custom) events are counted as ``other``.
EVENT_NAMES = frozenset({
    "added", "waiting", "delayed", "active", "progress", "completed", "failed", "retries-exhausted", "stalled",
    "drained", "paused", "resumed", "removed", "duplicated", "deduplicated", "waiting-children", "cleaned",
})  # fmt: skip


@dataclasses.dataclass
class QueueState:
    """What the collector remembers about a queue between scrapes."""

    keys: QueueKeys
    cursor: str  # XRANGE start for the next scrape: "<ms>-0" at first, then "(<last id read>"
    buckets: list[int]  # observations per bucket of DURATION_BUCKETS (not cumulative)
    duration_sum: float = 0.0
    events: Counter[str] = dataclasses.field(default_factory=Counter)
    letters_seen: bool = False  # a dead letter was once next in its wait: a DLQ even if not in the registry


@dataclasses.dataclass
class QueueRead:
    """What one scrape read about one queue."""

    st: QueueState
    counts: dict[str, int]
    paused: bool
    concurrency: str | None
    completed: str | None  # metrics:completed count
    failed: str | None
    tail: str | None  # id of the next job to run
    entries: list[tuple[str, dict[str, str]]]  # new events-stream entries
    tail_at: int | None = None  # positions of the second pipeline's replies
    finished_at: int = 0
    finished_end: int = 0
    dead_letter: bool = False  # a dead-letter queue (registry or letters_seen)


def worker_counts(prefix: str, clients: list[dict[str, Any]] | None) -> Counter[str] | None:
    """base64 queue name -> connections named ``<prefix>:<b64>`` or ``<prefix>:<b64>:w:<name>`` (spec §1)."""
    if clients is None:
        return None
    counts: Counter[str] = Counter()
    head = prefix + ":"
    for client in clients:
        name = str(client.get("name") or "")
        if name.startswith(head):
            encoded, sep, rest = name[len(head) :].partition(":")
            if not sep or rest.startswith("w:"):
                counts[encoded] += 1
    return counts


def event_name(fields: dict[str, str]) -> str:
    name = fields.get("event", "")
    return name if name in EVENT_NAMES else "other"


def observe_duration(st: QueueState, times: Any) -> None:
    if isinstance(times, Exception) or not times[0] or not times[1]:
        return  # the job hash is gone (removeOnComplete) or is not a job
    try:
        seconds = max(int(times[1]) - int(times[0]), 0) / 1000
    except ValueError:
        return
    st.buckets[next(i for i, le in enumerate(DURATION_BUCKETS) if seconds <= le)] += 1
    st.duration_sum += seconds


def waiting_since(fields: Any) -> int | None:
    """When the tail job of ``wait`` became runnable (ms), as well as its hash tells."""
    if isinstance(fields, Exception):
        return None
    timestamp, processed_on, opts = fields
    try:
        since = int(timestamp)
    except (TypeError, ValueError):
        return None  # no hash (a stale id in wait)
    try:
        since += int(json.loads(opts or "{}").get("delay") or 0)  # a delayed job waits from its due time
    except (ValueError, TypeError, AttributeError):
        pass
    if processed_on and str(processed_on).isdigit():  # retried or stalled: back in wait after its last start
        since = max(since, int(processed_on))
    return since


class QueueFamilies:
    """The ``bullmq_*`` families of one scrape, filled queue by queue."""

    def __init__(self, with_workers: bool) -> None:
        label = ["queue"]
        self.states = {s: GaugeMetricFamily(f"bullmq_queue_{s}", f"jobs in state {s}", labels=label)
                       for s in STATE_GAUGES}  # fmt: skip
        self.paused = GaugeMetricFamily("bullmq_queue_paused", "1 if the queue is paused", labels=label)
        self.count = GaugeMetricFamily("bullmq_job_count", "Number of jobs in the queue by state",
                                       labels=["queue", "state"])  # fmt: skip
        self.concurrency = GaugeMetricFamily("bullmq_queue_global_concurrency", "meta.concurrency", labels=label)
        self.completed = CounterMetricFamily("bullmq_jobs_completed_total", "metrics:completed count", labels=label)
        self.failed = CounterMetricFamily("bullmq_jobs_failed_total", "metrics:failed count", labels=label)
        self.duration = HistogramMetricFamily("bullmq_job_duration_seconds",
                                              "finishedOn - processedOn of completed jobs", labels=label)  # fmt: skip
        self.events = CounterMetricFamily("bullmq_events", "events-stream entries read", labels=["queue", "event"])
        self.oldest = GaugeMetricFamily("bullmq_queue_oldest_waiting_seconds",
                                        "age of the next job to run in wait", labels=label)  # fmt: skip
        self.dead_letters = GaugeMetricFamily("sbqueue_dead_letters", "letters waiting in a dead-letter queue "
                                              "(waiting + prioritized + delayed)", labels=label)  # fmt: skip
        self.workers = GaugeMetricFamily("bullmq_queue_workers", "connected workers", labels=label) if with_workers \
            else None  # fmt: skip

    def add(self, read: QueueRead, oldest: float, workers: int | None) -> None:
        st, q = read.st, [read.st.keys.name]
        for state, family in self.states.items():
            family.add_metric(q, read.counts[state])
        for state, n in read.counts.items():
            self.count.add_metric([*q, state], n)
        self.paused.add_metric(q, int(read.paused))
        if read.concurrency and read.concurrency.isdigit():
            self.concurrency.add_metric(q, int(read.concurrency))
        self.completed.add_metric(q, number(read.completed) or 0.0)
        self.failed.add_metric(q, number(read.failed) or 0.0)
        cumulative, running = [], 0
        for le, n in zip(DURATION_BUCKETS, st.buckets, strict=True):
            running += n
            cumulative.append((floatToGoString(le), running))
        self.duration.add_metric(q, cumulative, st.duration_sum)
        for event, n in sorted(st.events.items()):
            self.events.add_metric([*q, event], n)
        self.oldest.add_metric(q, oldest)
        if read.dead_letter:
            self.dead_letters.add_metric(q, sum(read.counts.get(s, 0) for s in ("waiting", "prioritized", "delayed")))
        if self.workers is not None and workers is not None:
            self.workers.add_metric(q, workers)

    def families(self) -> list[Metric]:
        fams: list[Metric] = [*self.states.values(), self.paused, self.count, self.concurrency, self.completed,
                              self.failed, self.duration, self.events, self.oldest, self.dead_letters]  # fmt: skip
        if self.workers is not None:
            fams.append(self.workers)
        return [f for f in fams if f.samples]
