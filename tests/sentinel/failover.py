"""The failover run: producers and workers on a Sentinel service while its master is failed over twice —
``SENTINEL FAILOVER`` (planned), then a replica stall and a kill -9 of the master (unplanned) — then an
account of every job.

Ground truth is kept outside Redis (the servers that fail over): producers remember every job whose add
returned (custom ids, so a retried add is idempotent), the processor records every execution in this
process, and the run remembers when each disruption happened.

The unplanned failover is the case asynchronous replication cannot cover: the replica is frozen (SIGSTOP)
and its link dropped (``CLIENT KILL TYPE replica``) for ``stall_s`` while the master keeps acknowledging
adds, then the master is killed -9 and the replica (thawed) promoted. Adds acknowledged during the stall
never reached the replica: they are *lost* — unless the queue was made with ``min_replicas=1``, whose adds
then wait for the replica (``WAIT``) and raise :class:`~sbqueue.ReplicationTimeoutError`, which the
producer retries until the new master has the job.

Run it by hand for bigger figures::

    python -m tests.sentinel.failover --seconds 20 --producers 4 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import threading
import time
import uuid
from collections import defaultdict

import redis

import sbqueue
from sbqueue.ops.exporter import QueueCollector

from .servers import SentinelGroup

QUEUE = "failover"
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, OSError, sbqueue.ReplicationTimeoutError)


def now() -> float:
    return time.time()


@dataclasses.dataclass
class Config:
    seconds: float = 9.0  # producers add for this long
    producers: int = 2
    workers: int = 2
    concurrency: int = 8
    rate: float = 300.0  # adds per second per producer (at most)
    planned_at: float = 2.0  # SENTINEL FAILOVER
    unplanned_at: float = 5.0  # replica stall, then kill -9 of the master
    stall_s: float = 0.5
    min_replicas: int = 0
    drain_timeout: float = 60.0


#: how long before the stall an acknowledged add may still be lost: not yet sent to the replica (the lag)
REPLICATION_LAG_S = 0.05


@dataclasses.dataclass
class Result:
    config: Config
    acknowledged: int
    lost: int
    lost_in: dict[str, int]  # lost jobs acknowledged during each failover (from its start to its end + 1 s)
    #: acknowledged from the replica's freeze until it was promoted: the asynchronous-replication window (from the
    #: kill -9 to the promotion no server can acknowledge an add, so an ack a producer thread records then is one
    #: the killed master sent before it died, recorded late on a busy machine)
    lost_in_stall: int
    #: acknowledged in the REPLICATION_LAG_S just before the stall: the master had acknowledged them but not yet
    #: sent them to the replica when the link dropped (the replication lag itself)
    lost_before_stall: int
    lost_ran: int  # lost jobs that had run (on the old master) before they were lost
    executed: int
    duplicates: int
    duplicates_explained: int
    add_errors: int
    replication_timeouts: int
    failover_s: dict[str, float]  # per disruption: until the sentinels had finished it
    producer_resume_s: dict[str, float]  # per disruption: the longest producer gap after it
    worker_resume_s: dict[str, float]  # per disruption: until the first job completed after it
    events_after: int  # QueueEvents 'completed' events received after the last failover
    problems: list[str]

    def summary(self) -> str:
        return (f"FAILOVER min_replicas={self.config.min_replicas} acknowledged={self.acknowledged} lost={self.lost} "
                f"(per failover: {json.dumps(self.lost_in)}; acknowledged in the replica stall: {self.lost_in_stall}, "
                f"in the {REPLICATION_LAG_S * 1000:.0f} ms before it: {self.lost_before_stall}; "
                f"had run: {self.lost_ran}) duplicates={self.duplicates} "
                f"explained={self.duplicates_explained} add_errors={self.add_errors} "
                f"replication_timeouts={self.replication_timeouts} "
                f"failover_s={json.dumps(self.failover_s)} producer_resume_s={json.dumps(self.producer_resume_s)} "
                f"worker_resume_s={json.dumps(self.worker_resume_s)}")  # fmt: skip


class Producer(threading.Thread):
    def __init__(self, n: int, url: str, prefix: str, cfg: Config, stop: threading.Event) -> None:
        super().__init__(name=f"failover-producer-{n}", daemon=True)
        self.n, self.url, self.prefix, self.cfg, self.stop = n, url, prefix, cfg, stop
        self.acked: dict[str, float] = {}  # job id -> when its add returned
        self.ack_times: list[float] = []
        self.errors = 0
        self.replication_timeouts = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            queue = sbqueue.Queue(QUEUE, self.url, prefix=self.prefix, min_replicas=self.cfg.min_replicas,
                                  replica_timeout=500)  # fmt: skip
        except BaseException as exc:  # pragma: no cover - reported by the run
            self.error = repr(exc)
            return
        seq = 0
        try:
            while not self.stop.is_set():
                job_id = f"p{self.n}-{seq}"
                delay = 0.02
                while True:
                    try:
                        queue.add("job", {"n": seq}, job_id=job_id)
                        break
                    except RETRYABLE as exc:
                        self.errors += 1
                        self.replication_timeouts += isinstance(exc, sbqueue.ReplicationTimeoutError)
                        time.sleep(delay)
                        delay = min(delay * 2, 0.2)
                t = now()
                self.acked[job_id] = t
                self.ack_times.append(t)
                seq += 1
                time.sleep(1 / self.cfg.rate)
        except BaseException as exc:  # pragma: no cover
            self.error = repr(exc)
        finally:
            queue.close()


def _resume(after: float, times: list[float], window: float = 20.0) -> float:
    """The longest pause in ``times`` (acks or completions) that ends after ``after`` and starts before
    ``after + window``: how long the disruption stopped them."""
    gaps = [b - a for a, b in itertools.pairwise(times) if b > after and a < after + window]
    return round(max(gaps), 3) if gaps else -1.0  # -1: nothing at all


def run(group: SentinelGroup, cfg: Config) -> Result:
    """One run on ``group`` (left with a master and a synced replica afterwards)."""
    group.wait_steady()  # a previous run's failovers may still be settling
    url = group.url
    prefix = f"fo{uuid.uuid4().hex[:8]}"
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)  # job id -> [(start, end)]
    completions: list[float] = []
    lock = threading.Lock()

    def process(job: sbqueue.Job) -> int:
        start = now()
        time.sleep(0.002)
        with lock:
            runs[job.id].append((start, now()))
        return int(job.data["n"])

    options = {"prefix": prefix, "concurrency": cfg.concurrency, "lock_duration": 2_000, "stalled_interval": 1_000,
               "max_stalled_count": 100, "drain_delay": 1}
    workers = [sbqueue.Worker(QUEUE, process, url, **options) for _ in range(cfg.workers)]  # type: ignore[arg-type]
    for w in workers:
        w.on("completed", lambda job, result: completions.append(now()))
        w.start()
    events = sbqueue.QueueEvents(QUEUE, url, prefix=prefix, block_ms=500)
    event_times: list[float] = []
    events.on("completed", lambda *_a: event_times.append(now()))
    events.start()
    # made before the failovers, used after them: they must follow too
    inspector = sbqueue.Inspector(url, prefix, progress=False)
    collector = QueueCollector(url, prefix, [QUEUE])
    collector.collect()
    stop = threading.Event()
    producers = [Producer(i, url, prefix, cfg, stop) for i in range(cfg.producers)]
    t0 = now()
    for p in producers:
        p.start()
    problems: list[str] = []
    disruptions: dict[str, float] = {}  # when each began
    ends: dict[str, float] = {}  # when the sentinels had finished it (old master demoted / replica promoted)
    stall = (0.0, 0.0)
    try:
        time.sleep(max(cfg.planned_at - (now() - t0), 0))
        disruptions["planned"] = now()
        group.failover()
        group.wait_replicated()  # the old master was demoted (the sentinels took it as a replica)
        ends["planned"] = now()
        time.sleep(max(cfg.unplanned_at - (now() - t0), 0))
        replica = group.replica_port()
        proc = group.procs[replica]
        # the replica stops reading (SIGSTOP) and the master drops the link (what the kernel had buffered for
        # the replica is all it will get): the master goes on acknowledging writes that no replica has
        master = group.node(group.master_port())
        stall_start = now()
        proc.send_signal(signal.SIGSTOP)
        master.client_kill_filter(_type="replica")
        master.close()
        time.sleep(cfg.stall_s)
        old = group.master_port()
        dead = group.procs.pop(old)
        dead.kill()
        dead.wait(10)
        disruptions["unplanned"] = stall_start
        stall = (stall_start, now())
        proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                if group.master_port() == replica:
                    break
            time.sleep(0.05)
        else:
            problems.append("the replica was not promoted within 30 s")
        ends["unplanned"] = now()
        stall = (stall_start, ends["unplanned"])  # no master until the promotion: see Result.lost_in_stall
        group.restart(old)
        time.sleep(max(cfg.seconds - (now() - t0), 0))
    finally:
        stop.set()
        for p in producers:
            p.join(30)
    acked = {job_id: t for p in producers for job_id, t in p.acked.items()}
    # every acknowledged job that still exists completes; the rest is lost
    client = sbqueue.connect(url)
    try:
        deadline = time.monotonic() + cfg.drain_timeout
        while time.monotonic() < deadline:
            counts = sbqueue.Queue(QUEUE, client, prefix=prefix).get_job_counts()
            if counts["waiting"] == counts["active"] == counts["delayed"] == 0:
                break
            time.sleep(0.2)
        else:
            problems.append(f"queue not drained: {counts}")
        with client.pipeline(transaction=False) as pipe:
            ids = sorted(acked)
            for job_id in ids:
                pipe.hget(f"{prefix}:{QUEUE}:{job_id}", "finishedOn")
            finished = dict(zip(ids, pipe.execute(), strict=True))
        # the Inspector and the exporter (both made before the failovers) read the new master
        with inspector as insp:
            row = insp.queues().set_index("queue").loc[QUEUE]
        samples = {m.name: s.value for m in collector.collect() for s in m.samples if not s.labels}
        if samples.get("redis_up") != 1.0:
            problems.append(f"exporter: redis_up={samples.get('redis_up')}")
        completed_now = int(row.completed)
    finally:
        for w in workers:
            w.close(timeout=10)
        events.close()
        with contextlib.suppress(redis.RedisError):
            from tests.conftest import delete_prefix

            delete_prefix(client, prefix)
        client.close()
    # lost: acknowledged, gone from Redis at the end (some of them ran on the old master before it died)
    lost_ids = [j for j, f in finished.items() if f is None]
    starts = sorted(disruptions.values()) + [float("inf")]
    # a failover's window: from its start to its end + 1 s, cut at the next one's start
    windows = {k: (t - 0.5, min(ends.get(k, t) + 1.0, starts[starts.index(t) + 1])) for k, t in disruptions.items()}
    lost_in = {k: sum(1 for j in lost_ids if lo <= acked[j] <= hi) for k, (lo, hi) in windows.items()}
    lost_in_stall = sum(1 for j in lost_ids if stall[0] <= acked[j] <= stall[1])
    lost_before_stall = sum(1 for j in lost_ids if stall[0] - REPLICATION_LAG_S <= acked[j] < stall[0])
    if os.environ.get("SBQUEUE_FAILOVER_DEBUG"):  # pragma: no cover
        lost_at = sorted(round(acked[j] - t0, 2) for j in lost_ids)
        print("t0-relative: disruptions", {k: round(v - t0, 2) for k, v in disruptions.items()},
              "stall", [round(x - t0, 2) for x in stall], "lost acks", lost_at[:3], lost_at[-3:],
              "acks in stall", sum(1 for t in acked.values() if stall[0] <= t <= stall[1]),
              "ack gaps > 0.3 s", [(round(a - t0, 2), round(b - a, 2)) for p in producers
                                   for a, b in itertools.pairwise(p.ack_times) if b - a > 0.3])
    unexplained = [j for j in lost_ids if not any(lo <= acked[j] <= hi for lo, hi in windows.values())]
    if unexplained:
        problems.append(f"{len(unexplained)} jobs lost outside a failover: {unexplained[:5]}")
    if completed_now != len(acked) - len(lost_ids):
        problems.append(f"Inspector says {completed_now} completed, expected {len(acked) - len(lost_ids)}")
    dups = {j: r for j, r in runs.items() if len(r) > 1}
    # a duplicate is explained when an execution overlapped a disruption (its completion was written on a
    # master that then lost it, or was refused while the master changed: the job stalled and ran again)
    # (+ the lock duration: a job whose worker lost its lock is run again once it is found stalled)
    explained = sum(1 for r in dups.values() if any(lo <= r[0][1] <= hi + 3 for lo, hi in windows.values()))
    if explained != len(dups):
        problems.append(f"{len(dups) - explained} duplicate executions not near a failover")
    for p in producers:
        if p.error:
            problems.append(f"producer {p.n}: {p.error}")
    ack_times = sorted(t for p in producers for t in p.ack_times)
    return Result(
        config=cfg, acknowledged=len(acked), lost=len(lost_ids), lost_in=lost_in, lost_in_stall=lost_in_stall,
        lost_before_stall=lost_before_stall,
        lost_ran=sum(1 for j in lost_ids if j in runs),
        executed=sum(len(r) for r in runs.values()), duplicates=len(dups), duplicates_explained=explained,
        add_errors=sum(p.errors for p in producers),
        replication_timeouts=sum(p.replication_timeouts for p in producers),
        failover_s={k: round(ends[k] - t, 2) for k, t in disruptions.items() if k in ends},
        producer_resume_s={k: _resume(t, ack_times, windows[k][1] - t) for k, t in disruptions.items()},
        worker_resume_s={k: _resume(t, sorted(completions), windows[k][1] - t) for k, t in disruptions.items()},
        events_after=sum(1 for t in event_times if t > disruptions.get("unplanned", 0)), problems=problems,
    )  # fmt: skip


def main() -> int:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Config):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args()
    cfg = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    group = SentinelGroup().start()
    try:
        for min_replicas in (0, 1):
            result = run(group, dataclasses.replace(cfg, min_replicas=min_replicas))
            print(result.summary(), flush=True)
            for problem in result.problems:
                print("  problem:", problem)
    finally:
        group.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
