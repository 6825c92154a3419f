"""Latency measurements of one queue over a window: read-only facts a latency diagnosis reasons about.

:func:`measure` reads, without writing anything: arrivals and completions (the events stream, else BullMQ's
per-minute metrics), recently finished jobs with their wait and run times (the wait counted from when a job
became runnable: its creation, or its due time when delayed), the oldest jobs still waiting and their
priorities, a few samples of the backlog, the active count and the limiter over ``sample_s`` seconds,
connected workers, the queue's global concurrency and rate limit, delayed jobs overdue, and the Redis slow
log and latency spikes of the window. :class:`Measurements` summarises them (rates, percentiles, run time
by job name, who waits at which priority); the runbook names the cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import redis

from sbqueue._core.backup import delayed_due_ms
from sbqueue.inspection import queues as _queues
from sbqueue.inspection import server as _server
from sbqueue.inspection._context import Context

#: priority scores in the prioritized zset are ``priority * 2**32 + counter``
PRIORITY_SCALE = 4294967296
#: a slow-log entry at least this long counts as a Redis stall (seconds)
SLOW_COMMAND_S = 0.01
#: a LATENCY LATEST spike at least this long counts (seconds)
LATENCY_SPIKE_S = 0.1
_JOB_FIELDS = ("name", "timestamp", "processedOn", "finishedOn", "priority", "delay")
_FINISHED_COLUMNS = ["id", "state", "name", "priority", "created_ms", "runnable_ms", "processed_ms", "finished_ms",
                     "wait_s", "run_s", "promoted_late_s", "window"]  # fmt: skip
_BACKLOG_COLUMNS = ["id", "state", "name", "priority", "created_ms", "runnable_ms", "age_s"]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclasses.dataclass
class Measurements:
    """What :func:`measure` saw. Times are epoch ms (``*_ms``) or seconds (``*_s``)."""

    queue: str
    now_ms: int
    window_s: float
    #: the part of the window the arrival/completion counts cover (a young or trimmed stream covers less)
    span_s: float
    arrivals: int
    completed: int
    failed: int
    #: where the counts come from: "events", or "metrics" (per minute: coarse; arrivals estimated)
    rate_source: str
    #: recently finished jobs (the window and the one before it: ``window`` is "now" or "earlier")
    finished: pd.DataFrame
    #: the oldest jobs still waiting (waiting, prioritized, and delayed jobs past their due time)
    backlog: pd.DataFrame
    #: backlog/active/limiter samples over ``sample_s`` (``t_s`` from the first sample)
    samples: pd.DataFrame
    workers: int
    meta: dict[str, str]
    #: delayed jobs past their due time: id, due_ms, overdue_s
    overdue: pd.DataFrame
    #: slow-log entries of the window at least :data:`SLOW_COMMAND_S` long
    slow_commands: pd.DataFrame
    #: LATENCY LATEST events whose last spike is in the window and at least :data:`LATENCY_SPIKE_S`
    latency_spikes: pd.DataFrame
    runnable: int = 0
    #: BullMQ's per-minute metrics over the window's minutes: completed, failed, minutes
    metrics: dict[str, int] | None = None
    #: what a recorded history counted in the window: completed, failed
    history: dict[str, Any] | None = None

    # --- rates ----------------------------------------------------------------------------------------
    @property
    def arrival_per_s(self) -> float:
        """Jobs added per second; without an events stream (``rate_source`` "metrics", which counts no adds)
        estimated as the service rate plus the growth of the backlog over the samples."""
        if self.rate_source == "metrics":
            return self.service_per_s + max(self.backlog_growth_per_s, 0.0)
        return self.arrivals / self.span_s if self.span_s > 0 else 0.0

    @property
    def service_per_s(self) -> float:
        """Jobs finished (completed or failed) per second."""
        return (self.completed + self.failed) / self.span_s if self.span_s > 0 else 0.0

    @property
    def backlog_growth_per_s(self) -> float:
        """How fast the runnable backlog grew over the samples (negative: it drains)."""
        s = self.samples
        if len(s) < 2 or s["t_s"].iloc[-1] <= 0:
            return 0.0
        runnable = s["waiting"] + s["prioritized"]
        return float((runnable.iloc[-1] - runnable.iloc[0]) / s["t_s"].iloc[-1])

    # --- waits ----------------------------------------------------------------------------------------
    def wait_percentiles(self) -> pd.DataFrame:
        """p50/p95/p99/max wait of the jobs finished in this window ("now") and the one before ("earlier"), and
        the ages of the jobs still waiting ("waiting now")."""
        rows = []
        for label, values in (("now", self._waits("now")), ("earlier", self._waits("earlier")),
                              ("waiting now", self.backlog["age_s"].to_numpy(dtype=float))):  # fmt: skip
            values = values[np.isfinite(values)]
            stats = {f"p{q}_s": float(np.percentile(values, q)) if len(values) else math.nan for q in (50, 95, 99)}
            rows.append({"window": label, "jobs": len(values), **stats,
                         "max_s": float(values.max()) if len(values) else math.nan})  # fmt: skip
        return pd.DataFrame(rows)

    def _waits(self, window: str) -> np.ndarray:
        f = self.finished
        return f.loc[f["window"] == window, "wait_s"].to_numpy(dtype=float) if len(f) else np.array([])

    def wait_p95_s(self) -> float:
        """The p95 wait of the jobs finished in the window (nan when none finished)."""
        values = self._waits("now")
        values = values[np.isfinite(values)]
        return float(np.percentile(values, 95)) if len(values) else math.nan

    def oldest_waiting_s(self) -> float:
        return float(self.backlog["age_s"].max()) if len(self.backlog) else 0.0

    def by_name(self) -> pd.DataFrame:
        """Per job name (jobs finished in the window): jobs, p50/p95 run time, worker time and its share, p95 wait;
        most worker time first."""
        f = self.finished[self.finished["window"] == "now"] if len(self.finished) else self.finished
        if not len(f):
            return pd.DataFrame(columns=["name", "jobs", "run_p50_s", "run_p95_s", "run_total_s", "share",
                                         "wait_p95_s"])  # fmt: skip
        g = f.groupby(f["name"].fillna("(none)"), sort=False)
        out = pd.DataFrame({
            "jobs": g.size(), "run_p50_s": g["run_s"].median(), "run_p95_s": g["run_s"].quantile(0.95),
            "run_total_s": g["run_s"].sum(), "wait_p95_s": g["wait_s"].quantile(0.95),
        }).reset_index()  # fmt: skip
        total = float(out["run_total_s"].sum())
        out["share"] = out["run_total_s"] / total if total > 0 else 0.0
        cols = ["name", "jobs", "run_p50_s", "run_p95_s", "run_total_s", "share", "wait_p95_s"]
        return out[cols].sort_values("run_total_s", ascending=False, ignore_index=True)

    # --- saturation -----------------------------------------------------------------------------------
    def busy_share(self) -> float:
        """The share of samples in which jobs were runnable (waiting or prioritized)."""
        s = self.samples
        return float(((s["waiting"] + s["prioritized"]) > 0).mean()) if len(s) else 0.0

    def mean_active(self) -> float:
        return float(self.samples["active"].mean()) if len(self.samples) else 0.0

    def peak_active(self) -> int:
        return int(self.samples["active"].max()) if len(self.samples) else 0

    def limiter_share(self) -> float:
        """The share of samples in which the limiter key held fetching back (used up, or set by hand)."""
        s = self.samples
        if not len(s):
            return 0.0
        limit_max = int(_num(self.meta.get("max"))) if not math.isnan(_num(self.meta.get("max"))) else None
        held = (s["limiter_ttl_ms"] > 0) & ((s["limiter_used"] >= limit_max) if limit_max else True)
        return float(held.mean())

    def global_concurrency_share(self) -> float:
        """The share of samples in which the global concurrency was reached."""
        cap = _num(self.meta.get("concurrency"))
        s = self.samples
        return float((s["active"] >= cap).mean()) if len(s) and not math.isnan(cap) else 0.0


def measure(ctx: Context, queue: str, *, window_s: float = 300.0, sample_s: float = 2.0, interval_s: float = 0.2,
            max_jobs: int = 2000, history: Any = None) -> Measurements:  # fmt: skip
    """Read the latency facts of ``queue`` (see the module docstring); takes about ``sample_s`` seconds.
    ``history`` (a :class:`sbqueue.History`) adds the recorded completion counts of the window."""
    keys = ctx.keys(queue)
    meta = dict(ctx.client.hgetall(keys.key("meta")) or {})
    workers_df = _queues.workers(ctx, queue)
    workers = int((workers_df["role"] == "worker").sum()) if len(workers_df) else 0
    samples = _samples(ctx, queue, sample_s, interval_s)
    now = ctx.now_ms()
    start = now - int(window_s * 1000)
    events = _read_events(ctx, keys.key("events"), start)
    counts, first_ms = events.counts, events.first_ms
    source = "events"
    span_s = (now - max(start, first_ms)) / 1000 if first_ms is not None else window_s
    series = _queues.metrics(ctx, queue)  # per minute; written by sbqueue workers, by Node ones with `metrics`
    recent = series[series["minute"] >= pd.Timestamp(start, unit="ms", tz="UTC").floor("min")] if len(series) \
        else series  # fmt: skip
    per_minute = {"completed": int(recent["completed"].sum()) if len(recent) else 0,
                  "failed": int(recent["failed"].sum()) if len(recent) else 0, "minutes": len(recent)}  # fmt: skip
    if first_ms is None:  # no events stream (maxLenEvents 0 or empty): the per-minute metrics, completions only
        source = "metrics"
        counts = {"completed": per_minute["completed"], "failed": per_minute["failed"], "added": 0}
        span_s = max(window_s, 60.0)
    finished = _finished(ctx, queue, now, window_s, max_jobs, events)
    backlog, runnable = _backlog(ctx, queue, now)
    overdue = _overdue(ctx, queue, now)
    recorded = None
    if history is not None:
        with contextlib.suppress(Exception):  # a history dataset is a bonus: unreadable means "not used"
            t = history.throughput(queue, since=pd.Timestamp(start, unit="ms", tz="UTC"))
            recorded = {"completed": int(t["completed"].sum()) if len(t) else 0,
                        "failed": int(t["failed"].sum()) if len(t) else 0}  # fmt: skip
    return Measurements(
        queue=queue, now_ms=now, window_s=window_s, span_s=max(span_s, 1e-3), arrivals=counts.get("added", 0),
        completed=counts.get("completed", 0), failed=counts.get("failed", 0), rate_source=source,
        finished=finished, backlog=backlog, samples=samples, workers=workers, meta=meta, overdue=overdue,
        slow_commands=_slow_commands(ctx, start), latency_spikes=_latency_spikes(ctx, start), runnable=runnable,
        metrics=per_minute, history=recorded,
    )  # fmt: skip


def _samples(ctx: Context, queue: str, sample_s: float, interval_s: float) -> pd.DataFrame:
    keys = ctx.keys(queue)
    rows = []
    t0 = time.monotonic()
    while True:
        pipe = ctx.pipe()
        pipe.llen(keys.key("wait"))
        pipe.zcard(keys.key("prioritized"))
        pipe.llen(keys.key("active"))
        pipe.zcard(keys.key("delayed"))
        pipe.get(keys.key("limiter"))
        pipe.pttl(keys.key("limiter"))
        got = [0 if isinstance(v, Exception) else v for v in pipe.execute(raise_on_error=False)]
        used = _num(got[4])
        rows.append({"t_s": time.monotonic() - t0, "waiting": int(got[0] or 0), "prioritized": int(got[1] or 0),
                     "active": int(got[2] or 0), "delayed": int(got[3] or 0),
                     "limiter_used": 0 if math.isnan(used) else min(used, 2**53),
                     "limiter_ttl_ms": int(got[5] or 0)})  # fmt: skip
        if time.monotonic() - t0 >= sample_s:
            break
        time.sleep(interval_s)  # the measurement itself: samples spread over sample_s
    return pd.DataFrame(rows)


@dataclasses.dataclass
class _Events:
    """What the events stream of the window says: counts per event, when delayed jobs were due (the job hash
    forgets: promotion sets its ``delay`` to 0) and when they were promoted."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    first_ms: int | None = None
    due_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    promoted_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def _read_events(ctx: Context, key: str, start_ms: int, cap: int = 100_000) -> _Events:
    """The events since ``start_ms``, newest first, at most ``cap`` (then ``first_ms`` is the oldest one read, so
    the rates cover what was read); ``first_ms`` None when there is no stream."""
    out = _Events()
    try:
        head = ctx.client.xrange(key, count=1)
    except redis.ResponseError:
        return out
    if not head:
        return out
    out.first_ms = int(str(head[0][0]).split("-", 1)[0])
    cursor, seen, low = "+", 0, str(max(start_ms, 0))
    while True:
        want = min(1000, cap - seen)
        page = ctx.client.xrevrange(key, max=cursor, min=low, count=want)
        for eid, fields in page:
            name = fields.get("event")
            out.counts[name] = out.counts.get(name, 0) + 1
            job_id = fields.get("jobId")
            if name == "delayed" and job_id is not None:
                out.due_ms.setdefault(job_id, _num(fields.get("delay")))  # newest first: the latest due time wins
            elif name == "waiting" and fields.get("prev") == "delayed" and job_id is not None:
                out.promoted_ms.setdefault(job_id, _num(str(eid).split("-", 1)[0]))
        seen += len(page)
        if len(page) < want:  # reached the start of the window
            break
        cursor = "(" + page[-1][0]
        if seen >= cap:  # cut at the cap: the counts cover the newest events only
            out.first_ms = max(out.first_ms, int(str(page[-1][0]).split("-", 1)[0]))
            break
    return out


def _finished(ctx: Context, queue: str, now: int, window_s: float, max_jobs: int, events: _Events) -> pd.DataFrame:
    keys = ctx.keys(queue)
    start, earlier = now - window_s * 1000, now - 2 * window_s * 1000
    rows = []
    for state in ("completed", "failed"):
        ids = ctx.client.zrevrangebyscore(keys.key(state), "+inf", earlier, start=0, num=max_jobs)
        values = ctx.hmget_many(keys.base, list(ids), _JOB_FIELDS)
        for job_id, got in zip(ids, values, strict=True):
            if not isinstance(got, list):
                continue
            name, created, processed, finished, priority, delay = got
            created, processed, finished = _num(created), _num(processed), _num(finished)
            if math.isnan(processed) or math.isnan(finished):
                continue
            # runnable since: its due time when it was delayed (a retry's backoff too), else its creation
            runnable = events.due_ms.get(job_id, created + (_num(delay) if not math.isnan(_num(delay)) else 0))
            promoted = events.promoted_ms.get(job_id, math.nan)
            rows.append({"id": job_id, "state": state, "name": name, "priority": int(_num(priority) or 0)
                         if not math.isnan(_num(priority)) else 0, "created_ms": created,
                         "runnable_ms": runnable, "processed_ms": processed, "finished_ms": finished,
                         "wait_s": max(processed - runnable, 0) / 1000, "run_s": max(finished - processed, 0) / 1000,
                         "promoted_late_s": (promoted - runnable) / 1000 if job_id in events.due_ms else math.nan,
                         "window": "now" if finished >= start else "earlier"})  # fmt: skip
    return pd.DataFrame(rows, columns=_FINISHED_COLUMNS)


def _backlog(ctx: Context, queue: str, now: int, oldest: int = 500) -> tuple[pd.DataFrame, int]:
    """The oldest ``oldest`` waiting jobs, the prioritized jobs at both ends of the zset (the lowest priorities
    are where starvation shows), and overdue delayed jobs; and the number of runnable jobs."""
    keys = ctx.keys(queue)
    pipe = ctx.pipe()
    pipe.lrange(keys.key("wait"), -oldest, -1)  # LPUSH: the oldest are at the tail
    pipe.zrange(keys.key("prioritized"), 0, oldest - 1, withscores=True)
    pipe.zrange(keys.key("prioritized"), -oldest, -1, withscores=True)
    pipe.zrangebyscore(keys.key("delayed"), "-inf", now * 4096, start=0, num=oldest)
    pipe.llen(keys.key("wait"))
    pipe.zcard(keys.key("prioritized"))
    got = [[] if isinstance(v, Exception) else v for v in pipe.execute(raise_on_error=False)]
    states: dict[str, str] = {str(i): "waiting" for i in got[0]}
    states.update({str(i): "prioritized" for i, _s in [*got[1], *got[2]]})
    states.update({str(i): "delayed" for i in got[3]})
    ids = list(states)
    values = ctx.hmget_many(keys.base, ids, _JOB_FIELDS)
    rows = []
    for job_id, row in zip(ids, values, strict=True):
        if not isinstance(row, list):
            continue
        name, created, _p, _f, priority, delay = row
        created = _num(created)
        if math.isnan(created):
            continue
        runnable = created + (_num(delay) if not math.isnan(_num(delay)) else 0)
        rows.append({"id": job_id, "state": states[job_id], "name": name,
                     "priority": int(_num(priority)) if not math.isnan(_num(priority)) else 0,
                     "created_ms": created, "runnable_ms": runnable,
                     "age_s": max(now - runnable, 0) / 1000})  # fmt: skip
    df = pd.DataFrame(rows, columns=_BACKLOG_COLUMNS).sort_values("age_s", ascending=False, ignore_index=True)
    return df, int(got[4] or 0) + int(got[5] or 0)


def _overdue(ctx: Context, queue: str, now: int, limit: int = 1000) -> pd.DataFrame:
    entries = ctx.client.zrangebyscore(ctx.keys(queue).key("delayed"), "-inf", now * 4096, start=0, num=limit,
                                       withscores=True)  # fmt: skip
    rows = [{"id": str(i), "due_ms": delayed_due_ms(s), "overdue_s": (now - delayed_due_ms(s)) / 1000}
            for i, s in entries]  # fmt: skip
    return pd.DataFrame(rows, columns=["id", "due_ms", "overdue_s"])


def _slow_commands(ctx: Context, start_ms: int) -> pd.DataFrame:
    try:
        log = _server.slowlog(ctx, 128)
    except redis.ResponseError:  # SLOWLOG refused (ACL, managed Redis): no evidence either way
        return pd.DataFrame(columns=["ts", "duration_s", "command", "script"])
    if not len(log):
        return log
    since = pd.Timestamp(start_ms, unit="ms", tz="UTC")
    return log[(log["ts"] >= since) & (log["duration_s"] >= SLOW_COMMAND_S)].reset_index(drop=True)


def _latency_spikes(ctx: Context, start_ms: int) -> pd.DataFrame:
    try:
        spikes = _server.latency(ctx)
    except redis.ResponseError:
        return pd.DataFrame(columns=["event", "last_spike", "latest_s", "max_s"])
    if not len(spikes):
        return spikes
    since = pd.Timestamp(start_ms, unit="ms", tz="UTC")
    return spikes[(spikes["last_spike"] >= since) & (spikes["max_s"] >= LATENCY_SPIKE_S)].reset_index(drop=True)
