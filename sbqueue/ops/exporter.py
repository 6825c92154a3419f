"""Prometheus metrics for BullMQ-layout queues and their Redis (``sbqueue exporter``).

:class:`QueueCollector` is a ``prometheus_client`` custom collector. Each scrape reads Redis afresh in a
fixed number of pipelined round trips, whatever the number of queues:

1. ``INFO``, ``SLOWLOG LEN``, ``SLOWLOG GET 1``, ``CLIENT LIST``, ``TIME``;
2. per queue: the state counts, ``meta``, the ``metrics:*`` counters, the tail of ``wait`` and the entries
   added to the events stream since the previous scrape (``XRANGE``, at most ``events_per_scrape``); and
   the registry of dead-letter queues (one ``SMEMBERS``);
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
- ``redis_*`` — redis_exporter's names (see :mod:`sbqueue.ops.exporter_redis`), so its rules and dashboards work.
  The ``bullmq_*`` families are built in :mod:`sbqueue.ops.exporter_queues`.
- ``sbqueue_dead_letters`` — per dead-letter queue (DLQ), the letters not yet consumed nor replayed:
  ``waiting + prioritized + delayed`` of that queue (its ``failed``/``completed`` letters are in the
  ``bullmq_*`` gauges). A queue is a DLQ when an sbqueue worker has dead-lettered into it (it names it in
  ``<prefix>:sbqueue:dead-letter-queues``, read once per scrape), or once the next job of its ``wait`` was
  seen to be a letter (``opts.deadLetter``, in the tail job read anyway); other queues have no sample.
- ``sbqueue_exporter_{scrape_duration_seconds,scrape_errors_total,queues}`` — the exporter itself.
- ``sbqueue_recorder_*`` — lag and gaps of ``sbqueue record`` when ``SBQUEUE_HISTORY`` names its dataset
  (:mod:`sbqueue.ops.recorder_metrics`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from sbqueue._core import audit as _audit_record
from sbqueue._core import dead_letters as _dead
from sbqueue._core.keys import QueueKeys, _glob_escape, validate_prefix, validate_queue_name
from sbqueue._core.states import DEFAULT_COUNT_STATES, STATE_KEYS
from sbqueue.connection import clients, cluster_nodes, mask_url, scrub, url_of, validate_url
from sbqueue.connection import cluster as _cluster
from sbqueue.connection import sentinel as _sentinel
from sbqueue.errors import InvalidQueueNameError
from sbqueue.ops.exporter_queues import (
    DURATION_BUCKETS,
    EVENT_NAMES,
    STATE_GAUGES,
    QueueFamilies,
    QueueRead,
    QueueState,
    event_name,
    observe_duration,
    waiting_since,
    worker_counts,
)
from sbqueue.ops.exporter_redis import redis_families

#: the metric constants stay importable from here: ``sbqueue.exporter`` is public
__all__ = ["DURATION_BUCKETS", "EVENT_NAMES", "STATE_GAUGES", "QueueCollector", "connect_exporter"]

log = logging.getLogger("sbqueue.ops.exporter")

SCAN_COUNT = 1000  # keys per SCAN call


def connect_exporter(url: str) -> redis.Redis:
    """A client for the exporter: short timeouts, no retries (the next scrape is the retry), not pinged.

    A ``redis+sentinel://`` URL gives a Sentinel-managed client (it follows a failover).
    ``?cluster=1`` in the URL gives a Redis Cluster client instead (it reads the slot map now, so the
    cluster must be reachable when the exporter starts).
    """
    validate_url(_cluster.strip_flag(url))
    opts: dict[str, Any] = dict(decode_responses=True, encoding_errors="replace", socket_connect_timeout=3.0,
                                socket_timeout=5.0, client_name="sbqueue-exporter")  # fmt: skip
    if _sentinel.is_url(url):  # the master of a Sentinel service: a scrape after a failover reads the new one
        return _sentinel.connect(url, {**opts, "retry": Retry(NoBackoff(), 0), "health_check_interval": 0})
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
        client: Any,
        prefix: str = "bull",
        queues: Sequence[str] | None = None,
        *,
        discovery_interval: float = 60.0,
        scan_budget: int = 50_000,
        events_per_scrape: int = 10_000,
    ) -> None:
        self.client = clients.sync_client(client).client  # any connection form (URL, client, pool)
        self.prefix = validate_prefix(prefix)
        self.fixed_queues = None if queues is None else sorted({validate_queue_name(q) for q in queues})
        self.discovery_interval = float(discovery_interval)
        self.scan_budget = max(int(scan_budget), SCAN_COUNT)
        self.events_per_scrape = max(int(events_per_scrape), 1)
        # matches ...:meta, ...:id (and a few other keys, filtered out below) in a single SCAN pass
        self._pattern = f"{_glob_escape(self.prefix)}:*:[im][de]*"
        self._url = mask_url(url_of(self.client))
        self._password = str(_connection_kwargs(self.client).get("password") or "")
        self._lock = threading.Lock()
        self._queues: dict[str, QueueState] = {}
        self._known: set[str] = set()
        self._scan: _ScanPass | None = None
        self._last_pass: float | None = None
        self._baseline_ms: int | None = None  # events before this (Redis clock) are history, not counted
        self._errors = 0
        self._was_up: bool | None = None
        self._audit_from: str | None = None  # the audit trail is counted from the exporter's start on
        self._audit_counts: dict[tuple[str, str, str, str], int] = {}

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
            info, slow_len, slow_last, clients, now = cluster_nodes.server_reads(self.client)
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
        out.append(self._audit_family())
        return len(names)

    def _audit_family(self) -> Metric:
        """``sbqueue_audit_actions_total``: operator actions (runbooks, widgets, commands) since the exporter
        started, read incrementally from the audit trail (a bounded page per scrape)."""
        if self._audit_from is None:  # count what comes after the newest entry at the first scrape
            newest = self.client.xrevrange(_audit_record.key(self.prefix), count=1) if self.client.type(
                _audit_record.key(self.prefix)) == "stream" else []  # fmt: skip
            self._audit_from = "(" + newest[0][0] if newest else "0-0"
        try:
            page = self.client.xrange(_audit_record.key(self.prefix), min=self._audit_from,
                                      count=self.events_per_scrape)
        except redis.ResponseError:  # the key holds another type: nothing to count
            page = []
        for entry_id, fields in page:
            row = _audit_record.decode(entry_id, fields)
            labels = (str(row["queue"] or ""), str(row["action"] or ""), str(row["mode"] or ""),
                      str(row["source"] or ""))  # fmt: skip
            self._audit_counts[labels] = self._audit_counts.get(labels, 0) + 1
            self._audit_from = "(" + entry_id
        family = CounterMetricFamily("sbqueue_audit_actions", "operator actions recorded in the audit trail",
                                     labels=["queue", "action", "mode", "source"])  # fmt: skip
        for labels, n in sorted(self._audit_counts.items()):
            family.add_metric(list(labels), n)
        return family

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
                scan.cursor, keys = cluster_nodes.scan_page(self.client, scan.cursor, self._pattern, SCAN_COUNT)
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
                self._queues[name] = QueueState(QueueKeys(self.prefix, name), f"{self._baseline_ms}-0",
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
            pipe.smembers(_dead.registry_key(self.prefix))  # the DLQs: one set, as long as there are DLQs
            replies = pipe.execute(raise_on_error=False)
        registry = replies.pop()
        if isinstance(registry, Exception):  # WRONGTYPE: a key that is not ours; DLQs then come from their jobs
            log.debug("dead-letter queue registry unreadable: %s", self._scrub(registry))
            registry = set()
        reads: list[QueueRead] = []
        for i, st in enumerate(states):
            row = replies[i * (n_counts + 5) : (i + 1) * (n_counts + 5)]
            bad = next((r for r in row if isinstance(r, Exception)), None)
            if bad is not None:  # e.g. WRONGTYPE: a key that is not what BullMQ writes; skip this queue
                self._errors += 1
                log.warning("queue %r skipped: %s", st.keys.name, self._scrub(bad))
                continue
            (paused, concurrency), completed, failed, tail, entries = row[n_counts:]
            counts = {state: int(n) for state, n in zip(DEFAULT_COUNT_STATES, row[:n_counts], strict=True)}
            reads.append(QueueRead(st, counts, paused is not None, concurrency, completed, failed, tail, entries))

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

        workers = worker_counts(self.prefix, clients)
        families = QueueFamilies(with_workers=workers is not None)
        for read in reads:
            st = read.st
            if read.entries:  # state changes only now that every read of this scrape succeeded
                st.cursor = "(" + read.entries[-1][0]
                st.events.update(event_name(fields) for _id, fields in read.entries)
                for times in replies[read.finished_at : read.finished_end]:
                    observe_duration(st, times)
            since = None if read.tail_at is None else waiting_since(replies[read.tail_at])
            if read.tail_at is not None and not isinstance(replies[read.tail_at], Exception):
                st.letters_seen = st.letters_seen or _dead.is_letter(replies[read.tail_at][2])
            read.dead_letter = st.letters_seen or st.keys.name in registry
            oldest = 0.0 if since is None else max(now_ms - since, 0) / 1000
            families.add(read, oldest, None if workers is None else workers[st.keys.encoded_name])
        return families.families()
