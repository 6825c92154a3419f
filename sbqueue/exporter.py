"""Prometheus metrics for BullMQ-layout queues and their Redis (``sbqueue exporter``).

:class:`QueueCollector` is a ``prometheus_client`` custom collector. Each scrape reads Redis afresh in a
fixed number of pipelined round trips, whatever the number of queues:

1. ``INFO``, ``SLOWLOG LEN``, ``SLOWLOG GET 1``, ``CLIENT LIST``, ``TIME``;
2. per queue: the state counts, ``meta``, the ``metrics:*`` counters, the tail of ``wait`` and the entries
   added to the events stream since the previous scrape (``XRANGE``, at most ``events_per_scrape``);
3. per queue: the tail job's timestamps, and ``processedOn``/``finishedOn`` of the jobs completed in
   those entries.

With ``queues=None`` queues are discovered by SCANning for ``<prefix>:*:meta`` and ``<prefix>:*:id`` keys,
at most once per ``discovery_interval`` and examining at most ``scan_budget`` keys per scrape (a big keyspace
is walked over several scrapes). A Redis that cannot be reached gives ``redis_up 0`` and no other Redis or
queue metric; the next scrape reconnects. Nothing is ever written to Redis: an ACL user with
``+@read +info +slowlog +client|list +client|setname +time +ping`` on ``~*`` is enough.

Metrics (label ``queue`` on every ``bullmq_*`` one):

- ``bullmq_queue_{waiting,active,completed,failed,delayed,prioritized}`` — jobs per state (as
  ``Queue.get_job_counts()``; a paused queue's jobs stay in ``waiting`` in BullMQ 6);
  ``bullmq_queue_paused`` — 1 while the queue is paused; ``bullmq_job_count{state}`` — BullMQ's own
  ``exportPrometheusMetrics()`` series (the seven ``getJobCounts()`` states);
  ``bullmq_queue_global_concurrency`` — ``meta.concurrency``, for queues that set it.
- ``bullmq_jobs_{completed,failed}_total`` — the ``metrics:*`` ``count`` field (kept by workers with
  metrics enabled: sbqueue's by default, Node's with the ``metrics`` option).
- ``bullmq_job_duration_seconds`` — histogram of ``finishedOn - processedOn`` of jobs seen completing in
  the events stream since the exporter started (jobs removed on completion have no hash and are skipped;
  when more than ``events_per_scrape`` entries arrive per scrape, later scrapes catch up unless the stream
  was trimmed meanwhile). ``bullmq_events_total{event}`` counts the same entries by event name.
- ``bullmq_queue_oldest_waiting_seconds`` — how long the job at the tail of ``wait`` (the next to run) has
  been waiting: since it was added, due (``opts.delay``) or last started (a retry); 0 when ``wait`` is empty.
- ``bullmq_queue_workers`` — connections named like BullMQ workers (``<prefix>:<base64(queue)>[:w:<name>]``).
- ``redis_*`` — redis_exporter's names (see :mod:`sbqueue.exporter_redis`), so its rules and dashboards work.
- ``sbqueue_exporter_{scrape_duration_seconds,scrape_errors_total,queues}`` — the exporter itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _cluster
from ._core.keys import QueueKeys, _glob_escape, validate_prefix, validate_queue_name
from ._core.states import DEFAULT_COUNT_STATES, STATE_KEYS
from .connection import mask_url, scrub, url_of, validate_url
from .errors import InvalidQueueNameError
from .exporter_redis import number, redis_families

log = logging.getLogger("sbqueue.exporter")

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
SCAN_COUNT = 1000  # keys per SCAN call


def connect_exporter(url: str) -> redis.Redis:
    """A client for the exporter: short timeouts, no retries (the next scrape is the retry), not pinged.

    ``?cluster=1`` in the URL gives a Redis Cluster client instead (it reads the slot map now, so the
    cluster must be reachable when the exporter starts).
    """
    validate_url(_cluster.strip_flag(url))
    opts: dict[str, Any] = dict(decode_responses=True, encoding_errors="replace", socket_connect_timeout=3.0,
                                socket_timeout=5.0, client_name="sbqueue-exporter")  # fmt: skip
    if _cluster.url_flag(url):
        return cast(redis.Redis, _cluster.connect(url, opts))
    client = redis.Redis.from_url(
        _cluster.strip_flag(url), **opts, retry=Retry(NoBackoff(), 0), health_check_interval=0
    )
    client.sbqueue_url = url  # type: ignore[attr-defined]
    return client


def _connection_kwargs(client: Any) -> dict[str, Any]:
    if _cluster.is_cluster(client):
        return _cluster.connection_options(client)
    return dict(client.connection_pool.connection_kwargs)


@dataclasses.dataclass
class _QueueState:
    """What the collector remembers about a queue between scrapes."""

    keys: QueueKeys
    cursor: str  # XRANGE start for the next scrape: "<ms>-0" at first, then "(<last id read>"
    buckets: list[int]  # observations per bucket of DURATION_BUCKETS (not cumulative)
    duration_sum: float = 0.0
    events: Counter[str] = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass
class _ScanPass:
    cursor: int
    started: float  # time.monotonic()
    started_ms: int  # Redis clock
    found: set[str] = dataclasses.field(default_factory=set)


class QueueCollector(Collector):
    """Queue and Redis metrics, read on each scrape (see the module docstring).

    ``queues`` is a list of names, or None to discover every queue under ``prefix``. ``client`` may be a
    ``redis.cluster.RedisCluster``: discovery then scans every master, ``bullmq_queue_workers`` counts
    connections on every node, and the ``redis_*`` server metrics describe the first master.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "bull",
        queues: Sequence[str] | None = None,
        *,
        discovery_interval: float = 60.0,
        scan_budget: int = 50_000,
        events_per_scrape: int = 10_000,
    ) -> None:
        self.client = client
        self.prefix = validate_prefix(prefix)
        self.fixed_queues = None if queues is None else sorted({validate_queue_name(q) for q in queues})
        self.discovery_interval = float(discovery_interval)
        self.scan_budget = max(int(scan_budget), SCAN_COUNT)
        self.events_per_scrape = max(int(events_per_scrape), 1)
        # matches ...:meta, ...:id (and a few other keys, filtered out below) in a single SCAN pass
        self._pattern = f"{_glob_escape(self.prefix)}:*:[im][de]*"
        self._url = mask_url(url_of(client))
        self._password = str(_connection_kwargs(client).get("password") or "")
        self._lock = threading.Lock()
        self._queues: dict[str, _QueueState] = {}
        self._known: set[str] = set()
        self._scan: _ScanPass | None = None
        self._last_pass: float | None = None
        self._baseline_ms: int | None = None  # events before this (Redis clock) are history, not counted
        self._errors = 0
        self._was_up: bool | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # the HTTP server may run two scrapes at once; they share cursors and counters
            metrics = self._collect()
        return iter(metrics)

    def _collect(self) -> list[Metric]:
        started = time.perf_counter()
        out: list[Metric] = []
        try:
            n_queues = self._scrape(out)
            up = True
        except (redis.RedisError, OSError) as exc:  # unreachable, auth, LOADING...: redis_up 0, nothing else
            out, n_queues, up = [], 0, False
            self._errors += 1
            if self._was_up is not False:
                log.warning("Redis at %s is unavailable: %s", self._url, self._scrub(exc))
        except Exception:  # a bug must not turn into a failed scrape (or a crashed exporter)
            self._errors += 1
            up, n_queues = bool(out), 0  # the server metrics come first: if there are any, Redis answered
            log.exception("scrape of Redis at %s failed", self._url)
        if up and self._was_up is False:
            log.info("Redis at %s is reachable again", self._url)
        self._was_up = up
        return [
            GaugeMetricFamily("redis_up", "1 if the exporter could read Redis", value=float(up)),
            *out,
            GaugeMetricFamily("sbqueue_exporter_queues", "queues exported", value=n_queues),
            CounterMetricFamily("sbqueue_exporter_scrape_errors", "failed scrapes and skipped queues",
                                value=self._errors),
            GaugeMetricFamily("sbqueue_exporter_scrape_duration_seconds", "duration of the last scrape",
                              value=time.perf_counter() - started),
        ]  # fmt: skip

    def _scrub(self, exc: BaseException) -> str:
        text = scrub(f"{type(exc).__name__}: {exc}", url_of(self.client))  # also a password a bad URL misplaced
        return text.replace(self._password, "***") if self._password else text

    def _scrape(self, out: list[Metric]) -> int:
        if _cluster.is_cluster(self.client):  # server figures from one master, CLIENT LIST from every node
            info, slow_len, slow_last, clients, now = _cluster.server_reads(self.client)
        else:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.info()
                pipe.slowlog_len()
                pipe.slowlog_get(1)
                pipe.client_list()
                pipe.time()
                info, slow_len, slow_last, clients, now = pipe.execute(raise_on_error=False)
        for required in (info, now):
            if isinstance(required, Exception):
                raise required
        out.extend(redis_families(info, *(None if isinstance(r, Exception) else r for r in (slow_len, slow_last))))
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        names = self._queue_names(now_ms)
        out.extend(self._queue_families(names, now_ms, None if isinstance(clients, Exception) else clients))
        return len(names)

    # --- discovery --------------------------------------------------------------------------------
    def _queue_names(self, now_ms: int) -> list[str]:
        if self._baseline_ms is None:
            self._baseline_ms = now_ms
        if self.fixed_queues is not None:
            return self._track(self.fixed_queues)
        mono = time.monotonic()
        if self._scan is None and (self._last_pass is None or mono - self._last_pass >= self.discovery_interval):
            self._scan = _ScanPass(0, mono, now_ms)
        scan = self._scan
        if scan is not None:
            for _ in range(self.scan_budget // SCAN_COUNT):
                scan.cursor, keys = _cluster.scan_page(self.client, scan.cursor, self._pattern, SCAN_COUNT)
                scan.found.update(name for name in map(self._queue_of, keys) if name)
                if scan.cursor == 0:  # a complete pass: queues not seen in it are gone
                    self._track(scan.found)
                    self._known, self._scan, self._last_pass = scan.found, None, scan.started
                    # a queue first seen after this pass did not exist during it: all its events are new
                    self._baseline_ms = scan.started_ms
                    break
        return self._track(self._known | (self._scan.found if self._scan else set()))

    def _track(self, names: Iterable[str]) -> list[str]:
        """Sorted ``names``; state for new ones, reading their events from ``_baseline_ms`` on."""
        for name in names:
            if name not in self._queues:
                self._queues[name] = _QueueState(QueueKeys(self.prefix, name), f"{self._baseline_ms}-0",
                                                 [0] * len(DURATION_BUCKETS))  # fmt: skip
        return sorted(names)

    def _queue_of(self, key: Any) -> str | None:
        body = str(key)[len(self.prefix) + 1 :]
        for suffix in (":meta", ":id"):
            if body.endswith(suffix):
                try:
                    return validate_queue_name(body[: -len(suffix)])
                except InvalidQueueNameError:  # a job key (":" in it) or no name at all
                    return None
        return None

    # --- queues -----------------------------------------------------------------------------------
    def _queue_families(self, names: list[str], now_ms: int, clients: list[dict[str, Any]] | None) -> list[Metric]:
        for gone in self._queues.keys() - set(names):
            del self._queues[gone]
        states = [self._queues[name] for name in names]
        n_counts = len(DEFAULT_COUNT_STATES)
        with self.client.pipeline(transaction=False) as pipe:
            for st in states:
                k = st.keys
                for state in DEFAULT_COUNT_STATES:
                    suffix, kind = STATE_KEYS[state]
                    (pipe.llen if kind == "list" else pipe.zcard)(k.key(suffix))
                pipe.hmget(k.key("meta"), "paused", "concurrency")
                pipe.hget(k.key("metrics:completed"), "count")
                pipe.hget(k.key("metrics:failed"), "count")
                pipe.lindex(k.key("wait"), -1)
                pipe.xrange(k.key("events"), min=st.cursor, max="+", count=self.events_per_scrape)
            replies = pipe.execute(raise_on_error=False)
        reads: list[_Read] = []
        for i, st in enumerate(states):
            row = replies[i * (n_counts + 5) : (i + 1) * (n_counts + 5)]
            bad = next((r for r in row if isinstance(r, Exception)), None)
            if bad is not None:  # e.g. WRONGTYPE: a key that is not what BullMQ writes; skip this queue
                self._errors += 1
                log.warning("queue %r skipped: %s", st.keys.name, self._scrub(bad))
                continue
            (paused, concurrency), completed, failed, tail, entries = row[n_counts:]
            counts = {state: int(n) for state, n in zip(DEFAULT_COUNT_STATES, row[:n_counts], strict=True)}
            reads.append(_Read(st, counts, paused is not None, concurrency, completed, failed, tail, entries))

        # the tail job of wait, and the jobs completed in the new entries: one more pipeline
        with self.client.pipeline(transaction=False) as pipe:
            for read in reads:
                if read.tail:
                    read.tail_at = len(pipe)
                    pipe.hmget(read.st.keys.job(read.tail), "timestamp", "processedOn", "opts")
                read.finished_at = len(pipe)
                for _id, fields in read.entries:
                    if fields.get("event") == "completed" and fields.get("jobId"):
                        pipe.hmget(read.st.keys.job(fields["jobId"]), "processedOn", "finishedOn")
                read.finished_end = len(pipe)
            replies = pipe.execute(raise_on_error=False) if len(pipe) else []

        workers = _worker_counts(self.prefix, clients)
        families = _QueueFamilies(with_workers=workers is not None)
        for read in reads:
            st = read.st
            if read.entries:  # state changes only now that every read of this scrape succeeded
                st.cursor = "(" + read.entries[-1][0]
                st.events.update(_event_name(fields) for _id, fields in read.entries)
                for times in replies[read.finished_at : read.finished_end]:
                    _observe(st, times)
            since = None if read.tail_at is None else _waiting_since(replies[read.tail_at])
            oldest = 0.0 if since is None else max(now_ms - since, 0) / 1000
            families.add(read, oldest, None if workers is None else workers[st.keys.encoded_name])
        return families.families()


@dataclasses.dataclass
class _Read:
    """What one scrape read about one queue."""

    st: _QueueState
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


def _worker_counts(prefix: str, clients: list[dict[str, Any]] | None) -> Counter[str] | None:
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


def _event_name(fields: dict[str, str]) -> str:
    name = fields.get("event", "")
    return name if name in EVENT_NAMES else "other"


def _observe(st: _QueueState, times: Any) -> None:
    if isinstance(times, Exception) or not times[0] or not times[1]:
        return  # the job hash is gone (removeOnComplete) or is not a job
    try:
        seconds = max(int(times[1]) - int(times[0]), 0) / 1000
    except ValueError:
        return
    st.buckets[next(i for i, le in enumerate(DURATION_BUCKETS) if seconds <= le)] += 1
    st.duration_sum += seconds


def _waiting_since(fields: Any) -> int | None:
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


class _QueueFamilies:
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
        self.workers = GaugeMetricFamily("bullmq_queue_workers", "connected workers", labels=label) if with_workers \
            else None  # fmt: skip

    def add(self, read: _Read, oldest: float, workers: int | None) -> None:
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
        if self.workers is not None and workers is not None:
            self.workers.add_metric(q, workers)

    def families(self) -> list[Metric]:
        fams: list[Metric] = [*self.states.values(), self.paused, self.count, self.concurrency, self.completed,
                              self.failed, self.duration, self.events, self.oldest]  # fmt: skip
        if self.workers is not None:
            fams.append(self.workers)
        return [f for f in fams if f.samples]
