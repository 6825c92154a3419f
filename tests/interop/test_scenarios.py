"""Interop conformance: sbqueue and the real Node BullMQ 6.7 sharing queues (issue 5, scenarios 1-9).

Every scenario asserts on both sides: Node's view through the driver (``inspect``, ``events``, the ``work``
report) and Python's through sbqueue's ``Queue``/``Job``/``QueueEvents``. Where BullMQ's own behaviour is the
yardstick (processing order, stored fields, events, retries), the same steps are also run all-Node on a
reference queue ``ref`` under the same prefix and the two are compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

import sbqueue
from sbqueue import Job, Queue
from tests import processors
from tests.interop import py_processors
from tests.interop.nodebridge import NodeDriver

ROOT = Path(__file__).resolve().parents[2]
Q = "q"
PY = "py"  # the queue sbqueue works on (or produces into) in a side-by-side comparison
REF = "ref"  # the all-Node reference queue

# --- the "every kind of job" set shared by scenarios 1 and 2 ----------------------------------------------
DELAY_MS = 200
BACKOFF_MS = 300
JOB_SET: list[dict[str, Any]] = [
    {"name": "plain-a", "data": {"n": 1}},
    {"name": "prio-2", "data": {"n": 2}, "opts": {"priority": 2}},
    {"name": "plain-b", "data": {"n": 3}},
    {"name": "lifo", "data": {"n": 4}, "opts": {"lifo": True}},
    {"name": "prio-1", "data": {"n": 5}, "opts": {"priority": 1}},
    {"name": "delayed", "data": {"n": 6}, "opts": {"delay": DELAY_MS}},
    {"name": "custom", "data": {"first": True}, "opts": {"jobId": "my-id"}},
    {"name": "custom", "data": {"second": True}, "opts": {"jobId": "my-id"}},  # duplicate id: a no-op
    {"name": "dedup", "data": {"v": 1}, "opts": {"deduplication": {"id": "D", "ttl": 60_000}}},
    {"name": "dedup", "data": {"v": 2}, "opts": {"deduplication": {"id": "D", "ttl": 60_000}}},  # deduplicated
    {"name": "flaky", "data": {"n": 7}, "opts": {"attempts": 2, "keepLogs": 1}},  # fails once, retried at once
    {"name": "backoff", "data": {"n": 8}, "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": BACKOFF_MS}}},
    {"name": "prio-1b", "data": {"n": 9}, "opts": {"priority": 1}},
    {"name": "lifo-flaky", "data": {"n": 10}, "opts": {"lifo": True, "attempts": 2}},  # fails once
    {"name": "gone", "data": {"n": 11}, "opts": {"removeOnComplete": True}},
]
#: ids BullMQ gives JOB_SET on an empty queue (the counter also advances on the duplicate and the dedup hit)
JOB_SET_IDS = ["1", "2", "3", "4", "5", "6", "my-id", "my-id", "9", "9", "11", "12", "13", "14", "15"]
UNIQUE_JOBS = len(set(JOB_SET_IDS))
GONE_ID = "15"  # removeOnComplete: its hash is deleted when it completes
KEPT_IDS = set(JOB_SET_IDS) - {GONE_ID}
#: jobs that fail their first attempt (same message on both sides)
FAIL_ONCE = {"flaky": "flaky failed once", "backoff": "backoff failed once", "lifo-flaky": "lifo-flaky failed once"}
NODE_FAIL_ONCE = {name: {"message": message, "times": 1} for name, message in FAIL_ONCE.items()}
#: BullMQ's order for JOB_SET with one worker, concurrency 1, the delayed job already due, without the
#: backoff job's retry (its position depends on timing): lifo jobs first (tail of wait; a failed lifo job
#: is retried at the tail again), then wait FIFO; the due delayed job and the immediate retry of "flaky" join
#: the wait list's head; prioritized jobs last, by priority.
EXPECTED_ORDER = [
    "lifo-flaky",
    "lifo-flaky",
    "lifo",
    "plain-a",
    "plain-b",
    "custom",
    "dedup",
    "flaky",
    "backoff",
    "gone",
    "delayed",
    "flaky",
    "prio-1",
    "prio-1b",
    "prio-2",
]

_PY_OPTION = {
    "jobId": "job_id",
    "priority": "priority",
    "delay": "delay",
    "lifo": "lifo",
    "attempts": "attempts",
    "backoff": "backoff",
    "deduplication": "deduplication",
    "removeOnComplete": "remove_on_complete",
    "keepLogs": "keep_logs",
}

#: every state name both getJobCounts() implementations accept
ALL_COUNT_STATES = (
    "active",
    "completed",
    "delayed",
    "failed",
    "prioritized",
    "waiting",
    "waiting-children",
    "paused",
    "wait",
)


# --- helpers ----------------------------------------------------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """The shared poller (tests/processors.py), with this module's longer cross-process defaults."""
    return processors.wait_for(cond, timeout, interval, what)


def py_add(q: Queue, spec: dict[str, Any]) -> Job:
    """Add a driver-style job spec (BullMQ option names) through sbqueue's keyword API."""
    kwargs = {_PY_OPTION[key]: value for key, value in spec.get("opts", {}).items()}
    return q.add(spec["name"], spec.get("data"), **kwargs)


def inspect(node: NodeDriver, prefix: str, queue: str, **params: Any) -> dict[str, Any]:
    return node.run(prefix, queue, "inspect", **params)


def by_id(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in info["jobs"] if not job.get("missing")}


def label(job_id: str) -> str:
    """A job id comparable across queues: scheduler iterations ``repeat:<sid>:<ms>`` -> ``repeat:<sid>``."""
    return job_id.rsplit(":", 1)[0] if job_id.startswith("repeat:") else job_id


def iteration_ms(job_id: str) -> int:
    return int(job_id.rsplit(":", 1)[1])


def norm_opts(opts: dict[str, Any] | None) -> dict[str, Any]:
    """Job opts as Node reads them, minus the unset-attempts default (Node stores 0, sbqueue 1: both mean 1)."""
    out = dict(opts or {})
    if out.get("attempts") in (0, 1):
        del out["attempts"]
    return out


def comparable(job: dict[str, Any]) -> dict[str, Any]:
    """The fields of a Node ``inspect`` job that must match between an sbqueue and a Node run."""
    keys = (
        "id",
        "name",
        "data",
        "progress",
        "returnvalue",
        "failedReason",
        "attemptsMade",
        "attemptsStarted",
        "stalledCounter",
        "delay",
        "priority",
        "deduplicationId",
        "repeatJobKey",
        "parentKey",
        "state",
    )
    out = {key: job[key] for key in keys}
    out["opts"] = norm_opts(job["opts"])
    out["stacktrace_len"] = len(job["stacktrace"] or [])
    out["logs_len"] = len(job["logs"] or [])
    out["processed"] = job["processedOn"] is not None
    out["finished"] = job["finishedOn"] is not None
    return out


def py_comparable(q: Queue, job_id: str) -> dict[str, Any]:
    """sbqueue's view of a job, for comparing two queues (no timestamps, no worker names)."""
    job = q.get_job(job_id)
    assert job is not None, job_id
    out = {
        k: getattr(job, k)
        for k in (
            "name",
            "data",
            "progress",
            "returnvalue",
            "failed_reason",
            "attempts_made",
            "attempts_started",
            "stalled_count",
            "delay",
            "priority",
            "dedup_id",
        )
    }
    out.update(
        state=q.get_job_state(job_id),
        opts=norm_opts(job.opts),
        stacktrace_len=len(job.stacktrace),
        processed=job.processed_on is not None,
        finished=job.finished_on is not None,
    )
    return out


def without_retry_of(order: list[str], name: str) -> list[str]:
    """``order`` without the second occurrence of ``name`` (a retry whose timing is not deterministic)."""
    out, seen = [], 0
    for item in order:
        if item == name:
            seen += 1
            if seen == 2:
                continue
        out.append(item)
    return out


class Recorder:
    """Thread-safe log of processor calls (the sbqueue side's ``order``/``processed``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[dict[str, Any]] = []

    def start(self, job: Job) -> dict[str, Any]:
        entry = {"id": job.id, "name": job.name, "attempts_made": job.attempts_made, "start": now_ms(), "end": None}
        with self._lock:
            self._runs.append(entry)
        return entry

    def finish(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["end"] = now_ms()

    @property
    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(run) for run in self._runs]

    @property
    def ids(self) -> list[str]:
        return [run["id"] for run in self.runs]

    @property
    def names(self) -> list[str]:
        return [run["name"] for run in self.runs]


def mirror_processor(rec: Recorder, *, sleep: float = 0.0) -> Callable[[Job], Any]:
    """What the driver's ``work`` does with ``progress=True, returnValue="echo", failWith=NODE_FAIL_ONCE``."""

    def process(job: Job) -> Any:
        entry = rec.start(job)
        try:
            if sleep:
                time.sleep(sleep)
            job.update_progress(50)
            job.log("py log line")
            if job.name in FAIL_ONCE and job.attempts_made < 1:
                raise RuntimeError(FAIL_ONCE[job.name])
            return job.data
        finally:
            rec.finish(entry)

    return process


@dataclasses.dataclass
class PyWorker:
    worker: sbqueue.Worker
    errors: list[BaseException]
    stalled: list[str]
    completed: list[str]
    failed: list[str]


@contextlib.contextmanager
def py_worker(
    r: redis.Redis, prefix: str, queue: str, processor: Callable[[Job], Any], **opts: Any
) -> Iterator[PyWorker]:
    """An sbqueue Worker running in a background thread for the duration of the block."""
    worker = sbqueue.Worker(queue, processor, r, prefix, **opts)
    pw = PyWorker(worker, [], [], [], [])
    worker.on("error", pw.errors.append)
    worker.on("stalled", pw.stalled.append)
    worker.on("completed", lambda job, _result: pw.completed.append(job.id))
    worker.on("failed", lambda job, _exc: pw.failed.append(job.id))
    worker.start()
    try:
        yield pw
    finally:
        worker.close(timeout=5)


def stream(r: redis.Redis, prefix: str, queue: str) -> list[tuple[str, dict[str, str]]]:
    return r.xrange(f"{prefix}:{queue}:events")


# --- 1 ----------------------------------------------------------------------------------------------------
def test_1_node_adds_every_kind_sbqueue_worker_processes_like_node(
    node: NodeDriver, prefix: str, r: redis.Redis
) -> None:
    """Node adds every kind of job to two queues; a Node worker runs one (the reference), an sbqueue worker
    the other: Node's getJob reads what sbqueue wrote (returnvalue, progress, logs, attempts, ...) as what
    its own worker wrote, and the jobs ran in the same order."""
    assert node.run(prefix, REF, "add", jobs=JOB_SET)["ids"] == JOB_SET_IDS
    assert node.run(prefix, PY, "add", jobs=JOB_SET)["ids"] == JOB_SET_IDS
    time.sleep(DELAY_MS / 1000 + 0.1)  # the delayed jobs are due before either worker starts
    names = {job_id: spec["name"] for job_id, spec in zip(JOB_SET_IDS, JOB_SET, strict=True)}

    ref = node.run(
        prefix,
        REF,
        "work",
        count=UNIQUE_JOBS,
        returnValue="echo",
        progress=True,
        failWith=NODE_FAIL_ONCE,
        workerOpts={"name": "node-w"},
        timeoutMs=10_000,
    )
    assert ref["stoppedBy"] == "count"
    ref_order = [names[i] for i in ref["order"]]
    assert without_retry_of(ref_order, "backoff") == EXPECTED_ORDER  # BullMQ's own order

    q = Queue(PY, r, prefix=prefix)
    rec = Recorder()
    with py_worker(r, prefix, PY, mirror_processor(rec), concurrency=1, name="py-w") as pw:
        wait_for(lambda: q.get_job_counts()["completed"] == len(KEPT_IDS), what="sbqueue worker to finish JOB_SET")
    assert pw.errors == []
    assert Counter(rec.names) == Counter(ref_order)  # every attempt ran, none twice
    # the backoff retry waited for its backoff (BACKOFF_MS after the failed attempt) on both sides
    py_bo = [run for run in rec.runs if run["name"] == "backoff"]
    assert py_bo[1]["start"] - py_bo[0]["end"] >= BACKOFF_MS - 50
    node_bo = [p for p in ref["processed"] if p["name"] == "backoff"]
    assert node_bo[1]["startedAt"] - node_bo[0]["finishedAt"] >= BACKOFF_MS - 50

    # Node reads the sbqueue-processed queue exactly as the Node-processed one
    every_id = [*sorted(KEPT_IDS), GONE_ID]
    ref_info, got_info = inspect(node, prefix, REF, ids=every_id), inspect(node, prefix, PY, ids=every_id)
    assert got_info["counts"] == ref_info["counts"]
    assert got_info["counts"]["completed"] == len(KEPT_IDS)
    assert q.get_job_counts() == got_info["counts"]
    ref_jobs, got_jobs = by_id(ref_info), by_id(got_info)
    assert set(got_jobs) == set(ref_jobs) == KEPT_IDS
    for job_id, ref_job in ref_jobs.items():
        got = got_jobs[job_id]
        assert comparable(got) == comparable(ref_job), job_id
        assert got["returnvalue"] == got["data"]
        assert got["progress"] == 50
        assert got["logs"] == ["py log line"] * len(ref_job["logs"])  # one line per attempt (keepLogs: 1 kept)
        assert got["processedBy"] == "py-w"
        assert got["timestamp"] <= got["processedOn"] <= got["finishedOn"]
        # and sbqueue reads the same thing Node does
        job = q.get_job(job_id)
        assert job is not None
        assert (job.name, job.data, job.returnvalue, job.progress) == (got["name"], got["data"], got["returnvalue"], 50)
        assert (job.attempts_made, job.attempts_started) == (got["attemptsMade"], got["attemptsStarted"])
        assert (job.processed_on, job.finished_on, job.failed_reason) == (
            got["processedOn"],
            got["finishedOn"],
            got["failedReason"],
        )
        assert q.get_job_logs(job_id)["logs"] == got["logs"]
    assert got_jobs["11"]["failedReason"] == "flaky failed once"
    assert got_jobs["11"]["attemptsMade"] == 2 and got_jobs["11"]["logs"] == ["py log line"]
    assert got_jobs["12"]["opts"]["backoff"] == {"type": "fixed", "delay": BACKOFF_MS}
    assert q.get_job(GONE_ID) is None
    assert got_info["jobs"][-1] == ref_info["jobs"][-1] == {"id": GONE_ID, "missing": True, "state": "unknown"}

    # Two behaviours checked last and together, so that one difference does not hide the other:
    # (a) deduplication with a ttl outlives the job: BullMQ's worker leaves the ttl'd key when the job
    #     finishes, so a producer re-adding dedup id D within the ttl is still deduplicated;
    # (b) the same processing order as BullMQ's worker.
    problems = []
    dedup_keys = {queue: (r.get(f"{prefix}:{queue}:de:D"), r.pttl(f"{prefix}:{queue}:de:D")) for queue in (REF, PY)}
    again = {"name": "dedup", "data": {"v": 3}, "opts": {"deduplication": {"id": "D", "ttl": 60_000}}}
    assert node.run(prefix, REF, "add", jobs=[again])["ids"] == ["9"]
    readded = node.run(prefix, PY, "add", jobs=[again])["ids"]
    if readded != ["9"]:
        problems.append(
            f"dedup: re-adding dedup id D within its ttl created job {readded} instead of being deduplicated "
            f"(key {prefix}:{PY}:de:D after the sbqueue worker finished job 9 = (value, pttl) "
            f"{dedup_keys[PY]}; after the Node worker: {dedup_keys[REF]})"
        )
    py_order, node_order = without_retry_of(rec.names, "backoff"), without_retry_of(ref_order, "backoff")
    if py_order != node_order:
        problems.append(f"order: sbqueue worker ran {py_order}, BullMQ's worker {node_order}")
    assert not problems, "\n".join(problems)


# --- 2 ----------------------------------------------------------------------------------------------------
EVERY_MS = 1000
CRON_NIGHTLY = "0 30 2 * * *"


def _schedulers(node: NodeDriver, prefix: str, queue: str) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in node.run(prefix, queue, "getSchedulers")["schedulers"]}


def _comparable_scheduler(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in s.items() if k not in ("next", "offset", "template")}
    template = dict(s.get("template") or {})
    if "opts" in template:
        template["opts"] = norm_opts(template["opts"])
        if not template["opts"]:
            del template["opts"]
    out["template"] = template
    return out


def test_2_sbqueue_adds_every_kind_node_worker_processes(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """sbqueue adds every kind of job (and an every + a cron scheduler); Node sees the same data, opts and
    priority as for the same adds made by Node, and a Node worker runs them in the same order."""
    q = Queue(PY, r, prefix=prefix)
    assert node.run(prefix, REF, "add", jobs=JOB_SET)["ids"] == JOB_SET_IDS
    tick_template = {"name": "tick-job", "data": {"t": 1}, "opts": {"attempts": 2}}
    node.run(prefix, REF, "upsertScheduler", schedulerId="every-s", repeat={"every": EVERY_MS}, template=tick_template)
    node.run(
        prefix,
        REF,
        "upsertScheduler",
        schedulerId="cron-s",
        repeat={"pattern": CRON_NIGHTLY, "tz": "UTC"},
        template={"name": "report", "data": {"r": 1}},
    )

    added = [py_add(q, spec) for spec in JOB_SET]
    assert [job.id for job in added] == JOB_SET_IDS
    tick = q.upsert_job_scheduler("every-s", every=EVERY_MS, name="tick-job", data={"t": 1}, opts={"attempts": 2})
    cron = q.upsert_job_scheduler("cron-s", pattern=CRON_NIGHTLY, tz="UTC", name="report", data={"r": 1})
    assert r.get(f"{prefix}:{PY}:id") == r.get(f"{prefix}:{REF}:id")  # same id counter as BullMQ

    ref_info, got_info = inspect(node, prefix, REF), inspect(node, prefix, PY)
    assert got_info["counts"] == ref_info["counts"]
    assert {s: [label(i) for i in ids] for s, ids in got_info["ranges"].items()} == {
        s: [label(i) for i in ids] for s, ids in ref_info["ranges"].items()
    }
    ref_jobs, got_jobs = by_id(ref_info), by_id(got_info)
    for job_id, spec in zip(JOB_SET_IDS, JOB_SET, strict=True):
        got, ref_job = got_jobs[job_id], ref_jobs[job_id]
        assert comparable(got) == comparable(ref_job), job_id
        if job_id not in ("my-id", "9"):  # the second add of a custom id / dedup id does not change the job
            assert got["data"] == spec.get("data")
            assert spec.get("opts", {}).items() <= got["opts"].items(), job_id  # BullMQ's names and values
        assert got["timestamp"] is not None
    assert got_jobs["2"]["priority"] == 2 and got_jobs["2"]["state"] == "prioritized"
    assert got_jobs["6"]["delay"] == DELAY_MS and got_jobs["6"]["state"] == "delayed"
    assert got_jobs["4"]["opts"]["lifo"] is True
    assert got_jobs["my-id"]["opts"]["jobId"] == "my-id" and got_jobs["my-id"]["data"] == {"first": True}
    assert got_jobs["9"]["deduplicationId"] == "D"
    # schedulers: Node lists the sbqueue ones like its own
    ref_s, got_s = _schedulers(node, prefix, REF), _schedulers(node, prefix, PY)
    assert {k: _comparable_scheduler(s) for k, s in got_s.items()} == {
        k: _comparable_scheduler(s) for k, s in ref_s.items()
    }
    assert got_s["every-s"]["next"] == iteration_ms(tick.id)
    assert got_s["cron-s"]["next"] == iteration_ms(cron.id) == iteration_ms(next(i for i in ref_jobs if "cron-s" in i))
    assert got_s["every-s"]["offset"] == got_s["every-s"]["next"] % EVERY_MS
    for sid, state in (("every-s", "waiting"), ("cron-s", "delayed")):
        got = next(j for j in got_jobs.values() if j["repeatJobKey"] == sid)
        ref_job = next(j for j in ref_jobs.values() if j["repeatJobKey"] == sid)
        assert got["state"] == ref_job["state"] == state
        assert (got["name"], got["data"]) == (ref_job["name"], ref_job["data"])
        assert got["opts"]["repeat"].get("every") == ref_job["opts"]["repeat"].get("every")
        assert got["opts"]["repeat"].get("pattern") == ref_job["opts"]["repeat"].get("pattern")
        assert norm_opts(got["opts"]).get("attempts") == norm_opts(ref_job["opts"]).get("attempts")

    # a Node worker runs both queues: JOB_SET plus two iterations of the every scheduler
    time.sleep(DELAY_MS / 1000 + 0.1)
    runs = {}
    for queue in (REF, PY):
        runs[queue] = node.run(
            prefix,
            queue,
            "work",
            count=UNIQUE_JOBS + 2,
            returnValue="echo",
            failWith=NODE_FAIL_ONCE,
            workerOpts={"name": "node-w"},
            timeoutMs=10_000,
        )
        assert runs[queue]["stoppedBy"] == "count"

    def deterministic(order: list[str]) -> list[str]:
        first_tick = next(i for i in order if i.startswith("repeat:every-s:"))
        kept = [label(i) for i in order if not i.startswith("repeat:every-s:") or i == first_tick]
        return without_retry_of(kept, "12")

    assert deterministic(runs[PY]["order"]) == deterministic(runs[REF]["order"])
    ticks = [p["id"] for p in runs[PY]["processed"] if p["id"].startswith("repeat:every-s:")]
    assert len(ticks) == len(set(ticks)) == 2
    ref_ticks = [p["id"] for p in runs[REF]["processed"] if p["id"].startswith("repeat:every-s:")]
    assert ticks[0] == tick.id and len(ref_ticks) == 2
    # the next slot on the scheduler's grid after the fetch (missed slots skipped), as for Node's own scheduler
    for pair in (ticks, ref_ticks):
        step = iteration_ms(pair[1]) - iteration_ms(pair[0])
        assert step > 0 and step % EVERY_MS == 0, pair

    # sbqueue reads what the Node worker did to its jobs
    got_info = inspect(node, prefix, PY)
    assert q.get_job(GONE_ID) is None and q.get_job_state(GONE_ID) == "unknown"
    for job_id in KEPT_IDS:
        job = q.get_job(job_id)
        assert job is not None
        assert q.get_job_state(job_id) == "completed"
        assert job.returnvalue == job.data
        assert job.processed_by == "node-w"
        assert job.attempts_made == (2 if job.name in FAIL_ONCE else 1)
        assert job.failed_reason == FAIL_ONCE.get(job.name)
    for tick_id in ticks:
        job = q.get_job(tick_id)
        assert job is not None and job.scheduler_id == "every-s" and job.returnvalue == {"t": 1}
    s = q.get_job_scheduler("every-s")
    assert s is not None and s["iteration_count"] == 3 == _schedulers(node, prefix, REF)["every-s"]["iterationCount"]
    assert s["next"] > iteration_ms(ticks[1]) and (s["next"] - iteration_ms(ticks[0])) % EVERY_MS == 0
    pending = [j for j in by_id(got_info).values() if j["repeatJobKey"] == "every-s" and j["state"] != "completed"]
    assert [j["id"] for j in pending] == [f"repeat:every-s:{s['next']}"]
    assert q.get_job_counts() == got_info["counts"]


# --- 3 ----------------------------------------------------------------------------------------------------
FAIL_SET = [
    {"name": "bad", "data": {"k": 1}, "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": 50}}},
    {"name": "unrec", "data": {"k": 2}, "opts": {"attempts": 5}},
    {"name": "once", "data": {"k": 3}},
    {"name": "fine", "data": {"k": 4}},
    {"name": "lifo-bad", "data": {"k": 5}, "opts": {"lifo": True}},
]
FAIL_WITH = {"bad": "boom", "once": "nope", "lifo-bad": "boom-lifo"}


def test_3_node_failures_read_and_retried_by_sbqueue(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """A Node worker fails jobs (attempts, backoff, UnrecoverableError); sbqueue reads failed_reason,
    stacktrace and attempts as Node does; sbqueue's job.retry()/retry_jobs() match Node's retryJob/retryJobs
    and a Node worker then completes the retried jobs."""
    q = Queue(PY, r, prefix=prefix)
    for queue in (PY, REF):
        ids = node.run(prefix, queue, "add", jobs=FAIL_SET)["ids"]
        res = node.run(
            prefix,
            queue,
            "work",
            count=len(FAIL_SET),
            failWith=FAIL_WITH,
            unrecoverable=["unrec"],
            workerOpts={"name": "node-w"},
            timeoutMs=10_000,
        )
        assert res["stoppedBy"] == "count"
    bad, unrec, once, fine, lifo_bad = ids

    info = inspect(node, prefix, PY)
    assert q.get_job_counts() == info["counts"]
    assert info["counts"]["failed"] == 4 and info["counts"]["completed"] == 1
    assert {job.id for job in q.get_failed()} == {bad, unrec, once, lifo_bad} == set(info["ranges"]["failed"])
    for job_id, node_job in by_id(info).items():
        job = q.get_job(job_id)
        assert job is not None
        assert q.get_job_state(job_id) == node_job["state"]
        assert job.failed_reason == node_job["failedReason"]
        assert job.stacktrace == node_job["stacktrace"]
        assert (job.attempts_made, job.attempts_started) == (node_job["attemptsMade"], node_job["attemptsStarted"])
        assert (job.processed_on, job.finished_on) == (node_job["processedOn"], node_job["finishedOn"])
        assert job.processed_by == node_job["processedBy"] == "node-w"
        assert job.opts.get("attempts", 0) == node_job["opts"]["attempts"]
    bad_job = q.get_job(bad)
    assert bad_job is not None
    assert bad_job.failed_reason == "boom" and bad_job.attempts_made == 3 and bad_job.max_attempts == 3
    assert len(bad_job.stacktrace) == 3 and all("boom" in line for line in bad_job.stacktrace)
    unrec_job = q.get_job(unrec)
    assert unrec_job is not None
    assert unrec_job.attempts_made == 1 and "UnrecoverableError" in unrec_job.stacktrace[0]
    assert unrec_job.failed_reason == "unrecoverable unrec"
    once_job = q.get_job(once)
    assert once_job is not None and once_job.failed_reason == "nope" and once_job.attempts_made == 1

    # retry: sbqueue on PY, Node on REF (one by one, then all the others); both queues must look the same
    bad_job.retry()
    lifo_job = q.get_job(lifo_bad)
    assert lifo_job is not None
    lifo_job.retry()
    assert q.retry_jobs() == 2
    for job_id in (bad, lifo_bad):
        assert node.run(prefix, REF, "retryJob", jobId=job_id)["state"] == "waiting"
    node.run(prefix, REF, "retryJobs", state="failed")
    ref_info, got_info = inspect(node, prefix, REF), inspect(node, prefix, PY)
    assert got_info["counts"] == ref_info["counts"]
    assert got_info["counts"]["waiting"] == 4 and got_info["counts"]["failed"] == 0
    for job_id, ref_job in by_id(ref_info).items():
        assert comparable(by_id(got_info)[job_id]) == comparable(ref_job), job_id
    assert {job_id: q.get_job_state(job_id) for job_id in ids} == {
        bad: "waiting",
        unrec: "waiting",
        once: "waiting",
        fine: "completed",
        lifo_bad: "waiting",
    }
    wait_after_retry = (got_info["ranges"]["wait"], ref_info["ranges"]["wait"])

    runs = {
        queue: node.run(prefix, queue, "work", count=4, returnValue="echo", workerOpts={"name": "node-w2"})
        for queue in (PY, REF)
    }
    assert all(p["state"] == "completed" for p in runs[PY]["processed"])
    # (read through sbqueue on both queues: its getters were just checked against Node's)
    q_ref = Queue(REF, r, prefix=prefix)
    assert q.get_job_counts() == q_ref.get_job_counts()
    assert q.get_job_counts()["completed"] == 5
    for job_id in ids:
        assert py_comparable(q, job_id) == py_comparable(q_ref, job_id), job_id
    final = {job_id: q.get_job(job_id) for job_id in (bad, unrec, once, lifo_bad)}
    assert {job_id: (job.attempts_made if job else None) for job_id, job in final.items()} == {
        bad: 4,
        unrec: 2,
        once: 2,
        lifo_bad: 2,
    }
    assert all(job is not None and job.returnvalue == job.data for job in final.values())

    # checked last: where the retried jobs were queued, hence the order they ran in (a retried lifo job goes
    # back to the tail of wait with BullMQ: it runs next)
    problems = []
    if wait_after_retry[0] != wait_after_retry[1]:
        problems.append(f"wait after retry (next first): sbqueue {wait_after_retry[0]}, BullMQ {wait_after_retry[1]}")
    if runs[PY]["order"] != runs[REF]["order"]:
        problems.append(f"order after retry: sbqueue-retried {runs[PY]['order']}, Node-retried {runs[REF]['order']}")
    assert not problems, "\n".join(problems)


# --- 4 ----------------------------------------------------------------------------------------------------
FLEET_JOBS = 2000


def test_4_mixed_fleet_processes_each_job_exactly_once(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """One Node and one sbqueue worker on one queue, 2,000 jobs: every job processed once, by one side."""
    q = Queue(Q, r, prefix=prefix)
    rec = Recorder()

    def process(job: Job) -> Any:
        entry = rec.start(job)
        time.sleep(0.002)
        rec.finish(entry)
        return job.data

    with node.spawn(
        prefix,
        Q,
        "work",
        concurrency=10,
        sleepMs=2,
        idleMs=1500,
        timeoutMs=30_000,
        returnValue="echo",
        workerOpts={"name": "node-w"},
    ) as proc:
        proc.wait_ready(timeout=20)
        with py_worker(r, prefix, Q, process, concurrency=10, name="py-w") as pw:
            jobs = q.add_bulk([{"name": "fleet", "data": {"i": i}} for i in range(FLEET_JOBS)])
            wait_for(
                lambda: q.get_job_counts("completed")["completed"] == FLEET_JOBS,
                timeout=15,
                interval=0.1,
                what="2,000 jobs completed",
            )
        res = proc.result(timeout=20)
    assert pw.errors == []
    all_ids = {job.id for job in jobs}
    assert len(all_ids) == FLEET_JOBS
    node_list = [p["id"] for p in res["processed"]]
    py_list = rec.ids
    assert all(p["state"] == "completed" for p in res["processed"])
    assert len(node_list) == len(set(node_list)) and len(py_list) == len(set(py_list))  # nobody ran a job twice
    node_ids, py_ids = set(node_list), set(py_list)
    assert node_ids & py_ids == set()
    assert node_ids | py_ids == all_ids
    # both workers took a real share (typically about half each)
    assert min(len(node_ids), len(py_ids)) >= FLEET_JOBS // 20, (len(node_ids), len(py_ids))

    counts = {
        state: 0 for state in ("active", "completed", "delayed", "failed", "prioritized", "waiting", "waiting-children")
    }
    counts["completed"] = FLEET_JOBS
    info = inspect(node, prefix, Q, ids=[])
    assert info["counts"] == counts
    assert q.get_job_counts() == counts
    finished = q.get_jobs_by_ids(sorted(all_ids))
    assert len(finished) == FLEET_JOBS
    for job in finished:
        assert (job.attempts_made, job.attempts_started, job.stalled_count) == (1, 1, 0), job.id
        assert job.processed_by == ("node-w" if job.id in node_ids else "py-w"), job.id
        assert job.returnvalue == job.data
    completed_events = Counter(f["jobId"] for _id, f in stream(r, prefix, Q) if f["event"] == "completed")
    assert set(completed_events) == all_ids
    assert set(completed_events.values()) == {1}


# --- 5 ----------------------------------------------------------------------------------------------------
def test_5a_killed_node_worker_recovered_by_sbqueue(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """A Node worker killed -9 mid-job: an sbqueue worker's stalled check recovers and completes the job."""
    q = Queue(Q, r, prefix=prefix)
    (job_id,) = node.run(prefix, Q, "add", jobs=[{"name": "victim", "data": {"v": 1}}])["ids"]
    with node.spawn(
        prefix, Q, "work", hang=True, workerOpts={"name": "node-victim", "lockDuration": 1500, "stalledInterval": 500}
    ) as proc:
        assert proc.wait_ready(timeout=20)["active"] == [job_id]
        proc.kill9()
        assert proc.returncode == -9
    assert q.get_job_state(job_id) == "active"
    victim = q.get_job(job_id)
    assert victim is not None and victim.processed_by == "node-victim"
    assert r.exists(f"{prefix}:{Q}:{job_id}:lock") == 1

    rec = Recorder()

    def process(job: Job) -> Any:
        rec.start(job)
        return job.data

    t0 = time.monotonic()
    with py_worker(
        r, prefix, Q, process, concurrency=1, name="py-rescuer", lock_duration=2000, stalled_interval=300
    ) as pw:
        wait_for(lambda: q.get_job_state(job_id) == "completed", timeout=10, what="the stalled job to complete")
    assert time.monotonic() - t0 < 10
    assert pw.stalled == [job_id]
    assert rec.ids == [job_id]
    job = q.get_job(job_id)
    assert job is not None
    assert (job.stalled_count, job.attempts_started, job.attempts_made) == (1, 2, 1)
    assert job.processed_by == "py-rescuer" and job.returnvalue == {"v": 1}

    node_job = inspect(node, prefix, Q, ids=[job_id])["jobs"][0]
    assert node_job["state"] == "completed"
    assert (node_job["stalledCounter"], node_job["attemptsStarted"], node_job["attemptsMade"]) == (1, 2, 1)
    assert node_job["processedBy"] == "py-rescuer"
    assert node_job["returnvalue"] == {"v": 1}
    events = node.run(prefix, Q, "events", until={"stalled": 1, "completed": 1}, ms=5000)
    assert events["satisfied"] is True
    mine = [e for e in events["events"] if e.get("jobId") == job_id]
    assert [e["event"] for e in mine] == ["added", "waiting", "active", "waiting", "stalled", "active", "completed"]
    assert mine[3]["prev"] == "active"


def test_5b_killed_sbqueue_cli_worker_recovered_by_node(
    node: NodeDriver, prefix: str, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """An sbqueue CLI worker killed -9 mid-job: a Node worker's stalled check recovers and completes it."""
    q = Queue(Q, r, prefix=prefix)
    job_id = q.add("victim", {"v": 2}).id
    log_path = tmp_path / "sbqueue-worker.log"
    argv = [
        sys.executable,
        "-m",
        "sbqueue",
        "worker",
        Q,
        "tests.interop.py_processors:hang",
        "--prefix",
        prefix,
        "--url",
        redis_url,
        "--lock-duration",
        "1500",
        "--stalled-interval",
        "500",
        "--name",
        "py-victim",
        "--concurrency",
        "1",
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:

            def hanging() -> bool:
                job = q.get_job(job_id)
                return job is not None and job.progress == py_processors.HANGING

            wait_for(hanging, timeout=15, what=f"the CLI worker to run the job (log: {log_path})")
            assert q.get_job_state(job_id) == "active"
            assert r.exists(f"{prefix}:{Q}:{job_id}:lock") == 1
            proc.kill()  # SIGKILL: no cleanup, the lock and the active entry stay
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == -9
    victim = q.get_job(job_id)
    assert victim is not None and victim.processed_by == "py-victim"
    assert inspect(node, prefix, Q, ids=[job_id])["jobs"][0]["state"] == "active"

    res = node.run(
        prefix,
        Q,
        "work",
        count=1,
        timeoutMs=10_000,
        returnValue="echo",
        workerOpts={"name": "node-rescuer", "lockDuration": 1500, "stalledInterval": 300},
    )
    assert res["stoppedBy"] == "count", res
    assert {"event": "stalled", "id": job_id, "prev": "active"} in res["events"]
    assert [p["id"] for p in res["processed"]] == [job_id]
    node_job = inspect(node, prefix, Q, ids=[job_id])["jobs"][0]
    assert node_job["state"] == "completed"
    assert (node_job["stalledCounter"], node_job["attemptsStarted"], node_job["attemptsMade"]) == (1, 2, 1)
    assert node_job["processedBy"] == "node-rescuer"
    assert node_job["progress"] == py_processors.HANGING
    job = q.get_job(job_id)
    assert job is not None
    assert q.get_job_state(job_id) == "completed"
    assert (job.stalled_count, job.attempts_started, job.attempts_made) == (1, 2, 1)
    assert job.processed_by == "node-rescuer" and job.returnvalue == {"v": 2}
    assert ("stalled", job_id) in [(f["event"], f.get("jobId")) for _id, f in stream(r, prefix, Q)]


# --- 6 ----------------------------------------------------------------------------------------------------
def _agree(node: NodeDriver, prefix: str, q: Queue, ids: list[str], *, paused: bool) -> dict[str, Any]:
    """Node's getJobCounts/getJobState/getRanges/isPaused equal sbqueue's; returns Node's inspect."""
    info = inspect(node, prefix, Q, ids=ids)
    assert info["isPaused"] is paused
    assert q.is_paused() is paused
    assert q.get_job_counts() == info["counts"]
    assert q.get_job_counts(*ALL_COUNT_STATES) == info["countsAll"]
    node_states = {job["id"]: job["state"] for job in info["jobs"]}
    assert {job_id: q.get_job_state(job_id) for job_id in ids} == node_states
    for job in q.get_jobs_by_ids(ids):
        assert job.get_state() == node_states[job.id]
    for state, state_ids in info["ranges"].items():
        assert q.get_job_ids(state, asc=True) == state_ids, state
    return info


def test_6_counts_and_states_agree_for_every_state(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """waiting, active, delayed, prioritized, completed, failed, a paused queue (paused from either side):
    Node's getJobCounts()/getJobState() equal sbqueue's get_job_counts()/get_job_state()."""
    q = Queue(Q, r, prefix=prefix)
    done, broken = node.run(prefix, Q, "add", jobs=[{"name": "done"}, {"name": "broken"}])["ids"]
    node.run(prefix, Q, "work", count=2, failWith={"broken": "kaput"})
    busy = q.add("busy").id
    started, release = threading.Event(), threading.Event()

    def blocker(job: Job) -> str:
        started.set()
        release.wait(15)
        return "released"

    with py_worker(r, prefix, Q, blocker, concurrency=1, name="py-busy") as pw:
        assert started.wait(10)
        py_ids = [q.add("w-py").id, q.add("p-py", priority=3).id, q.add("d-py", delay=600_000).id]
        node_jobs = [
            {"name": "w-node"},
            {"name": "p-node", "opts": {"priority": 5}},
            {"name": "d-node", "opts": {"delay": 600_000}},
        ]
        node_ids = node.run(prefix, Q, "add", jobs=node_jobs)["ids"]
        waiting, prio, delayed = ([a, b] for a, b in zip(py_ids, node_ids, strict=True))
        ids = [done, broken, busy, *waiting, *prio, *delayed, "no-such-job"]
        expected_states = {
            done: "completed",
            broken: "failed",
            busy: "active",
            "no-such-job": "unknown",
            **dict.fromkeys(waiting, "waiting"),
            **dict.fromkeys(prio, "prioritized"),
            **dict.fromkeys(delayed, "delayed"),
        }
        expected_counts = {
            "active": 1,
            "completed": 1,
            "delayed": 2,
            "failed": 1,
            "prioritized": 2,
            "waiting": 2,
            "waiting-children": 0,
        }

        info = _agree(node, prefix, q, ids, paused=False)
        assert info["counts"] == expected_counts
        assert {job["id"]: job["state"] for job in info["jobs"]} == expected_states
        assert info["ranges"]["prioritized"] == prio and info["ranges"]["wait"] == waiting

        q.pause()  # paused by sbqueue, seen by Node
        info = _agree(node, prefix, q, ids, paused=True)
        q.resume()
        assert node.run(prefix, Q, "isPaused") == {"isPaused": False}
        assert node.run(prefix, Q, "pause")["isPaused"] is True  # paused by Node, seen by sbqueue
        info = _agree(node, prefix, q, ids, paused=True)
        paused_counts = info["countsAll"]

        release.set()
        wait_for(lambda: q.get_job_state(busy) == "completed", what="the busy job to finish")
    assert pw.errors == []
    # still paused: the worker took nothing else
    info = _agree(node, prefix, q, ids, paused=True)
    assert info["counts"] == {**expected_counts, "active": 0, "completed": 2}
    assert info["countsAll"]["wait"] == paused_counts["wait"] == 2
    node.run(prefix, Q, "resume")
    _agree(node, prefix, q, ids, paused=False)


# --- 7 ----------------------------------------------------------------------------------------------------
EVERY_SECOND = "* * * * * *"


def _check_iterations(ids: list[str], sid: str, step: int, minimum: int) -> list[int]:
    """The processed iterations of ``sid``: at least ``minimum``, each once, in order, on the scheduler's
    ``step`` grid (a slot is only skipped when a worker fetched the previous iteration after it was due)."""
    mine = [i for i in ids if i.startswith(f"repeat:{sid}:")]
    assert len(mine) == len(set(mine)), mine  # no iteration ran twice
    millis = [iteration_ms(i) for i in mine]
    assert len(millis) >= minimum, mine
    assert all(b > a and (b - a) % step == 0 for a, b in itertools.pairwise(millis)), millis
    return millis


def _check_schedulers(
    node: NodeDriver, prefix: str, q: Queue, processed: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """After ``processed[sid]`` iterations of each scheduler: it lives on with exactly one pending iteration,
    as both sides see it; no iteration was added twice. Returns Node's schedulers and its inspect."""
    node_s = _schedulers(node, prefix, Q)
    info = inspect(node, prefix, Q)
    for sid, count in processed.items():
        py_s = q.get_job_scheduler(sid)
        assert py_s is not None
        assert py_s["next"] == node_s[sid]["next"]
        assert node_s[sid]["iterationCount"] == py_s["iteration_count"] == count + 1
        pending = [j["id"] for j in info["jobs"] if j["repeatJobKey"] == sid and j["state"] in ("delayed", "waiting")]
        assert pending == [f"repeat:{sid}:{node_s[sid]['next']}"]
    events = stream(q.client, prefix, Q)
    added = Counter(f["jobId"] for _id, f in events if f["event"] == "added")
    assert all(n == 1 for n in added.values())
    assert not [f for _id, f in events if f["event"] == "duplicated"]
    return node_s, info


def test_7a_node_scheduler_keeps_running_under_sbqueue_worker(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Schedulers created by Node (every + cron) keep running under an sbqueue worker: 2+ further iterations
    each, no duplicates; then a Node worker picks up where sbqueue left off."""
    q = Queue(Q, r, prefix=prefix)
    tick = node.run(
        prefix,
        Q,
        "upsertScheduler",
        schedulerId="tick",
        repeat={"every": EVERY_MS},
        template={"name": "tick-job", "data": {"t": 1}, "opts": {"attempts": 2}},
    )
    cron = node.run(
        prefix,
        Q,
        "upsertScheduler",
        schedulerId="cron",
        repeat={"pattern": EVERY_SECOND},
        template={"name": "cron-job", "data": {"c": 1}},
    )
    rec = Recorder()

    def process(job: Job) -> Any:
        rec.start(job)
        return {"ran": job.id}

    def enough() -> bool:
        names = Counter(rec.names)
        return names["tick-job"] >= 3 and names["cron-job"] >= 3

    with py_worker(r, prefix, Q, process, concurrency=1, name="py-sched") as pw:
        wait_for(enough, timeout=8, what="3 iterations of each Node scheduler")
    assert pw.errors == []
    ids = rec.ids
    tick_ms = _check_iterations(ids, "tick", EVERY_MS, 3)
    cron_ms = _check_iterations(ids, "cron", 1000, 3)
    assert tick_ms[0] == iteration_ms(tick["id"])
    assert cron_ms[0] == iteration_ms(cron["id"]) and all(ms % 1000 == 0 for ms in cron_ms)
    for job_id in ids:
        job = q.get_job(job_id)
        assert job is not None and q.get_job_state(job_id) == "completed"
        assert job.returnvalue == {"ran": job_id} and job.processed_by == "py-sched"
    tick_job = q.get_job(f"repeat:tick:{tick_ms[0]}")
    assert tick_job is not None and tick_job.data == {"t": 1} and tick_job.opts["attempts"] == 2
    node_s, node_info = _check_schedulers(node, prefix, q, {"tick": len(tick_ms), "cron": len(cron_ms)})
    info = by_id(node_info)
    assert all(info[i]["state"] == "completed" and info[i]["processedBy"] == "py-sched" for i in ids)
    assert {info[i]["repeatJobKey"] for i in ids} == {"tick", "cron"}

    # handing back: a Node worker runs the next iteration sbqueue created, and the scheduler goes on
    pending = {sid: node_s[sid]["next"] for sid in ("tick", "cron")}
    res = node.run(prefix, Q, "work", count=2, timeoutMs=5000)
    assert res["stoppedBy"] == "count"
    assert {p["id"] for p in res["processed"]} == {f"repeat:{sid}:{ms}" for sid, ms in pending.items()}


def test_7b_sbqueue_scheduler_keeps_running_under_node_worker(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Schedulers created by sbqueue (every + cron) run under a Node worker: 2+ further iterations each,
    no duplicates, and sbqueue reads the advanced schedulers."""
    q = Queue(Q, r, prefix=prefix)
    tock = q.upsert_job_scheduler("tock", every=EVERY_MS, name="tock-job", data={"t": 2}, opts={"attempts": 2})
    ctock = q.upsert_job_scheduler("ctock", pattern=EVERY_SECOND, name="ctock-job", data={"c": 2})
    res = node.run(prefix, Q, "work", count=7, returnValue="echo", workerOpts={"name": "node-sched"}, timeoutMs=8000)
    assert res["stoppedBy"] == "count"
    assert [e for e in res["events"] if e["event"] == "error"] == []
    ids = [p["id"] for p in res["processed"]]
    assert res["order"] == ids
    tock_ms = _check_iterations(ids, "tock", EVERY_MS, 3)
    ctock_ms = _check_iterations(ids, "ctock", 1000, 3)
    assert tock_ms[0] == iteration_ms(tock.id)
    assert ctock_ms[0] == iteration_ms(ctock.id) and all(ms % 1000 == 0 for ms in ctock_ms)
    by_name = {p["id"]: p for p in res["processed"]}
    assert all(by_name[i]["data"] == {"t": 2} for i in ids if i.startswith("repeat:tock:"))
    assert all(by_name[i]["data"] == {"c": 2} for i in ids if i.startswith("repeat:ctock:"))
    for job_id in ids:
        job = q.get_job(job_id)
        assert job is not None and q.get_job_state(job_id) == "completed"
        assert job.processed_by == "node-sched" and job.returnvalue == job.data
        assert job.scheduler_id in ("tock", "ctock")
    _check_schedulers(node, prefix, q, {"tock": len(tock_ms), "ctock": len(ctock_ms)})


def test_7c_scheduler_limit_honoured_across_sides(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """``limit=2``: an sbqueue-created scheduler runs exactly twice under a Node worker (as a Node-created
    one does), and a Node-created one runs exactly twice under an sbqueue worker."""
    q = Queue(PY, r, prefix=prefix)
    node.run(
        prefix,
        REF,
        "upsertScheduler",
        schedulerId="lim",
        repeat={"every": 300, "limit": 2},
        template={"name": "lim-job"},
    )
    ref = node.run(prefix, REF, "work", idleMs=1000, timeoutMs=3500)
    assert len(ref["processed"]) == 2 and ref["stoppedBy"] == "idle"  # BullMQ's own behaviour

    # a Node-created scheduler with a limit under an sbqueue worker
    node.run(
        prefix,
        "nq",
        "upsertScheduler",
        schedulerId="lim",
        repeat={"every": 300, "limit": 2},
        template={"name": "lim-job"},
    )
    nq = Queue("nq", r, prefix=prefix)
    rec = Recorder()

    def process(job: Job) -> None:
        rec.start(job)

    with py_worker(r, prefix, "nq", process, concurrency=1, name="py-lim") as pw:
        wait_for(lambda: len(rec.ids) >= 2, timeout=5, what="two iterations")
        time.sleep(1.0)  # a third would be due 300 ms after the second
    assert pw.errors == []
    assert len(rec.ids) == 2 and rec.ids[0].startswith("repeat:lim:")
    assert nq.get_job_counts("completed")["completed"] == 2

    # an sbqueue-created scheduler with a limit under a Node worker
    first = q.upsert_job_scheduler("lim", every=300, limit=2, name="lim-job")
    got = node.run(prefix, PY, "work", idleMs=1000, timeoutMs=3500)
    assert [p["id"] for p in got["processed"]][2:] == [], (
        f"a Node worker ran an sbqueue scheduler with limit=2 {len(got['processed'])} times; the iteration's "
        f"opts (what a Node worker reads the limit from): {first.opts}"
    )
    assert got["stoppedBy"] == "idle"


def test_7d_sbqueue_cron_scheduler_tz_honoured_by_node_worker(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """A cron scheduler with ``tz`` created by sbqueue: the iteration a Node worker schedules next is in that
    zone (as for the same scheduler created by Node)."""
    tz, pattern, hour = "Asia/Kolkata", "0 30 * * * *", 3_600_000  # :30 in Kolkata (UTC+05:30) is :00 UTC
    q = Queue(PY, r, prefix=prefix)
    ref_first = node.run(
        prefix,
        REF,
        "upsertScheduler",
        schedulerId="tzs",
        repeat={"pattern": pattern, "tz": tz},
        template={"name": "tz-job"},
    )["id"]
    first_job = q.upsert_job_scheduler("tzs", pattern=pattern, tz=tz, name="tz-job")
    first = first_job.id
    assert iteration_ms(first) == iteration_ms(ref_first)
    assert iteration_ms(first) % hour == 0
    # run the first iteration now, then let a Node worker schedule the following one
    for queue, job_id in ((REF, ref_first), (PY, first)):
        assert node.run(prefix, queue, "promote", jobId=job_id)["state"] == "waiting"
        assert node.run(prefix, queue, "work", count=1, timeoutMs=5000)["processed"][0]["id"] == job_id
    ref_next = _schedulers(node, prefix, REF)["tzs"]["next"]
    assert ref_next == iteration_ms(first) + hour  # BullMQ: the next :30 in Kolkata
    got = q.get_job_scheduler("tzs")
    assert got is not None
    assert got["next"] == ref_next, (
        f"Node scheduled the sbqueue scheduler's next run at {got['next']} ({got['next'] % hour // 60_000} min past "
        f"a UTC hour), BullMQ's own scheduler at {ref_next}; the iteration's opts (what a Node worker reads "
        f"the zone from): {first_job.opts}"
    )


# --- 8 ----------------------------------------------------------------------------------------------------
EVENT_JOBS = [
    {"name": "ok", "data": {"x": 1}},
    {"name": "bad", "data": {"x": 2}},
    {"name": "later", "data": {"x": 3}, "opts": {"delay": 600_000}},
]
RETURN = {"ok": True, "n": 1}
PROGRESS = {"pct": 42}
REASON = "py boom"


def _node_reference_events(node: NodeDriver, prefix: str, r: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """All-Node run of EVENT_JOBS on ``queue``; the events as Node's QueueEvents reads them."""
    node.run(prefix, queue, "add", jobs=EVENT_JOBS)
    node.run(prefix, queue, "work", count=2, progress=PROGRESS, returnValue=RETURN, failWith={"bad": REASON})
    total = r.xlen(f"{prefix}:{queue}:events")
    res = node.run(prefix, queue, "events", until=total, ms=5000)
    assert res["satisfied"] is True and len(res["events"]) == total
    return res["events"]


def _per_job(events: list[dict[str, Any]], names: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if "jobId" in e:
            out.setdefault(names[e["jobId"]], []).append(e["event"])
    return out


def _shape(e: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """An event with its stream id dropped, job ids replaced by job names and the delayed due time by a flag."""
    out = {k: v for k, v in e.items() if k not in ("eventId", "id")}
    if "jobId" in out:
        out["jobId"] = names[out["jobId"]]
    if out.get("event") == "delayed":
        out["delay"] = isinstance(out["delay"], int) and abs(out["delay"] - now_ms() - 600_000) < 30_000
    return out


def test_8a_node_queue_events_receive_sbqueue_events(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """A live Node QueueEvents reader receives sbqueue's events (added, waiting, delayed, active, progress,
    completed with returnvalue, failed with failedReason, ...) with the same fields as BullMQ's own."""
    ref_events = _node_reference_events(node, prefix, r, REF)
    ref_names = {e["jobId"]: e["name"] for e in ref_events if e["event"] == "added"}

    q = Queue(PY, r, prefix=prefix)
    with node.spawn(prefix, PY, "events", lastEventId="$", until=len(ref_events), ms=10_000) as reader:
        reader.wait_ready(timeout=20)
        jobs = [py_add(q, spec) for spec in EVENT_JOBS]

        def process(job: Job) -> Any:
            job.update_progress(PROGRESS)  # as the driver's processor: progress and a log line, then the outcome
            job.log("py log line")
            if job.name == "bad":
                raise RuntimeError(REASON)
            return RETURN

        with py_worker(r, prefix, PY, process, concurrency=1, name="py-ev") as pw:
            wait_for(lambda: pw.completed and pw.failed, what="one completed and one failed job")
        res = reader.result(timeout=20)
    got_events = res["events"]
    names = {job.id: job.name for job in jobs}
    assert res["satisfied"] is True, [e["event"] for e in got_events]
    assert Counter(e["event"] for e in got_events) == Counter(e["event"] for e in ref_events)
    assert _per_job(got_events, names) == _per_job(ref_events, ref_names)
    assert [_shape(e, names) for e in got_events] == [_shape(e, ref_names) for e in ref_events]
    # spelled out: the fields a Node listener uses
    ok, bad = (next(job.id for job in jobs if job.name == name) for name in ("ok", "bad"))
    completed = next(e for e in got_events if e["event"] == "completed")
    assert (completed["jobId"], completed["returnvalue"], completed["prev"]) == (ok, RETURN, "active")
    failed = next(e for e in got_events if e["event"] == "failed")
    assert (failed["jobId"], failed["failedReason"], failed["prev"]) == (bad, REASON, "active")
    progress = next(e for e in got_events if e["event"] == "progress")
    assert (progress["jobId"], progress["data"]) == (ok, PROGRESS)
    assert {e["name"] for e in got_events if e["event"] == "added"} == {"ok", "bad", "later"}


def test_8b_sbqueue_queue_events_read_node_events(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """sbqueue's QueueEvents (live listeners and read()) decodes Node's events exactly as Node's QueueEvents."""
    got_live: list[dict[str, Any]] = []
    qe = sbqueue.QueueEvents(REF, r, prefix)  # "$": only what happens from now on
    for name in (
        "added",
        "waiting",
        "delayed",
        "active",
        "progress",
        "completed",
        "failed",
        "retries-exhausted",
        "drained",
    ):
        qe.on(name, got_live.append)
    qe.start()
    try:
        node_events = _node_reference_events(node, prefix, r, REF)
        wait_for(lambda: len(got_live) >= len(node_events), timeout=10, what="sbqueue listeners to get every event")
    finally:
        qe.close()
    reader = sbqueue.QueueEvents(REF, r, prefix, last_event_id="0", block_ms=200)
    try:
        got_read: list[dict[str, Any]] = []
        while batch := reader.read(block_ms=200):
            got_read += batch
    finally:
        reader.close()

    def as_node(e: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in e.items() if k != "id"}
        out["eventId"] = e["id"]
        return out

    assert [as_node(e) for e in got_live] == node_events
    assert [as_node(e) for e in got_read] == node_events
    completed = next(e for e in got_live if e["event"] == "completed")
    assert completed["returnvalue"] == RETURN and completed["prev"] == "active"
    assert next(e for e in got_live if e["event"] == "progress")["data"] == PROGRESS
    assert next(e for e in got_live if e["event"] == "failed")["failedReason"] == REASON
    assert isinstance(next(e for e in got_live if e["event"] == "delayed")["delay"], int)


# --- 9 ----------------------------------------------------------------------------------------------------
WINDOW_MS = 1000


def _check_limits(runs: list[tuple[int, int]]) -> None:
    """Global concurrency 1 and global rate limit 2 per WINDOW_MS, with generous timing tolerances."""
    runs = sorted(runs)
    assert len(runs) == 4
    # concurrency 1: no two jobs overlap although the worker allows 4
    assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(runs)), runs
    # rate limit: the third job waits for the next window, but not for ages
    assert runs[2][0] - runs[0][0] >= WINDOW_MS - 150, runs
    assert runs[3][0] - runs[0][0] < 3 * WINDOW_MS + 1000, runs


def test_9a_node_global_limits_honoured_by_sbqueue_worker(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Global concurrency and rate limit set by Node are honoured by an sbqueue worker."""
    q = Queue(Q, r, prefix=prefix)
    node.run(prefix, Q, "setGlobalConcurrency", concurrency=1)
    node.run(prefix, Q, "setGlobalRateLimit", max=2, duration=WINDOW_MS)
    assert q.get_global_concurrency() == 1
    assert q.get_global_rate_limit() == {"max": 2, "duration": WINDOW_MS}
    node.run(prefix, Q, "add", jobs=[{"name": f"g{i}"} for i in range(4)])
    rec = Recorder()

    def process(job: Job) -> None:
        entry = rec.start(job)
        time.sleep(0.1)
        rec.finish(entry)

    with py_worker(r, prefix, Q, process, concurrency=4, name="py-limited") as pw:
        wait_for(lambda: q.get_job_counts("completed")["completed"] == 4, timeout=10, what="4 limited jobs")
    assert pw.errors == []
    _check_limits([(run["start"], run["end"]) for run in rec.runs])


def test_9b_sbqueue_global_limits_honoured_by_node_worker(node: NodeDriver, prefix: str, r: redis.Redis) -> None:
    """Global concurrency and rate limit set by sbqueue are honoured by a Node worker."""
    q = Queue(Q, r, prefix=prefix)
    q.set_global_concurrency(1)
    q.set_global_rate_limit(2, WINDOW_MS)
    meta = inspect(node, prefix, Q, ids=[])["meta"]
    assert (meta["concurrency"], meta["max"], meta["duration"]) == (1, 2, WINDOW_MS)
    for i in range(4):
        q.add(f"g{i}")
    res = node.run(prefix, Q, "work", count=4, concurrency=4, sleepMs=100, timeoutMs=10_000)
    assert res["stoppedBy"] == "count"
    _check_limits([(p["startedAt"], p["finishedAt"]) for p in res["processed"]])
    assert q.get_job_counts("completed")["completed"] == 4
