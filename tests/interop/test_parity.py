"""Divergences from BullMQ 6.7.6 found in issue 16, each run with Node alone and with sbqueue in Node's place.

Every scenario runs twice on the same Redis: all-Node on queue ``ref`` (the reference: what BullMQ 6.7.6
does), and with sbqueue doing the part under test on queue ``py``. The tests assert that both end in the
same state, and also spell out that state, so a change on either side shows up.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from tests.conftest import snapshot
from tests.interop.nodebridge import NodeDriver
from tests.processors import wait_for

REF, PY = "ref", "py"


def k(prefix: str, queue: str, *parts: str) -> str:
    return ":".join([prefix, queue, *parts])


@pytest.fixture
def workers(redis_url: str, prefix: str) -> Iterator[Callable[..., sbqueue.Worker]]:
    """Start sbqueue workers on ``prefix``; all are closed at the end."""
    started: list[sbqueue.Worker] = []

    def start(queue: str, processor: Callable[[Any], Any], **opts: Any) -> sbqueue.Worker:
        opts.setdefault("stalled_interval", 60_000)
        worker = sbqueue.Worker(queue, processor, redis_url, prefix, **opts)
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.close(timeout=5)


def sleeper(seconds: float) -> Callable[[Any], Any]:
    def process(job: Any) -> Any:
        time.sleep(seconds)
        return job.data

    return process


def finished(r: redis.Redis, prefix: str, queue: str, state: str = "completed") -> list[str]:
    return r.zrange(k(prefix, queue, state), 0, -1)


def job_view(r: redis.Redis, prefix: str, queue: str, job_id: str) -> dict[str, Any]:
    raw = r.hgetall(k(prefix, queue, job_id))
    return {"name": raw.get("name"), "data": json.loads(raw["data"]) if "data" in raw else None,
            "deid": raw.get("deid")}  # fmt: skip


def events_of(r: redis.Redis, prefix: str, queue: str, names: set[str]) -> list[tuple[str, ...]]:
    out = []
    for _id, fields in r.xrange(k(prefix, queue, "events")):
        if fields["event"] in names:
            out.append((fields["event"], fields.get("jobId", ""), fields.get("prev", "")))
    return out


# --- 1. keepLastIfActive: the job parked while the active one runs is queued when it finishes ---------------


def test_keep_last_if_active_queues_the_parked_job_when_the_active_one_finishes(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    dedup = {"deduplication": {"id": "K", "keepLastIfActive": True}}

    def scenario(queue: str, start_worker: Callable[[], Any]) -> dict[str, Any]:
        (first,) = node.run(prefix, queue, "add", jobs=[{"name": "a", "data": {"v": 1}, "opts": dedup}])["ids"]
        finish = start_worker()
        wait_for(lambda: first in r.lrange(k(prefix, queue, "active"), 0, -1), timeout=10, what="a active")
        ids = node.run(prefix, queue, "add", jobs=[{"name": "b", "data": {"v": 2}, "opts": dedup},
                                                   {"name": "c", "data": {"v": 3}, "opts": dedup}])["ids"]  # fmt: skip
        assert r.exists(k(prefix, queue, "dn:K")) == 1  # parked while `a` runs
        finish()
        done = finished(r, prefix, queue)
        return {
            "ids": [first, *ids],
            "completed": [job_view(r, prefix, queue, job_id) for job_id in done],
            "completed_ids": done,
            "dn": r.exists(k(prefix, queue, "dn:K")),
            "de": r.get(k(prefix, queue, "de:K")),
            "wait": r.llen(k(prefix, queue, "wait")),
            "events": events_of(r, prefix, queue, {"added", "waiting", "deduplicated", "completed"}),
        }

    def node_worker() -> Callable[[], None]:
        proc = node.spawn(prefix, REF, "work", count=2, sleepMs=2500, returnValue="echo")

        def finish() -> None:
            try:
                proc.result(timeout=30)
            finally:
                proc.close()

        return finish

    def py_worker() -> Callable[[], None]:
        worker = workers(PY, sleeper(2.5))

        def finish() -> None:
            wait_for(lambda: len(finished(r, prefix, PY)) >= 2, timeout=20, what="2 done")
            worker.close(timeout=5)

        return finish

    ref = scenario(REF, node_worker)
    ours = scenario(PY, py_worker)
    # Node 6.7.6: `c` (the last one parked) runs after `a`, under the id its add got; dn:K is deleted and
    # de:K is released when `c` finishes (no ttl); `b` was overwritten and never ran
    assert ref["completed"] == [
        {"name": "a", "data": {"v": 1}, "deid": "K"},
        {"name": "c", "data": {"v": 3}, "deid": "K"},
    ]
    assert ref["ids"] == ["1", "1", "1"]  # the parked adds answer with the active job's id
    assert ref["completed_ids"] == ["1", "3"] and ref["dn"] == 0 and ref["de"] is None and ref["wait"] == 0
    assert ours == ref


# --- 2. retention keeps a dedup key that still has its ttl ---------------------------------------------------


@pytest.mark.parametrize("keep", [{"count": 1}, {"age": 1}], ids=["count", "age"])
def test_retention_keeps_a_dedup_key_inside_its_ttl(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any, keep: dict[str, int]
) -> None:
    opts = {"deduplication": {"id": "T", "ttl": 60_000}, "removeOnComplete": keep}

    def scenario(queue: str, work: Callable[[int], None]) -> dict[str, Any]:
        (first,) = node.run(prefix, queue, "add", jobs=[{"name": "a", "data": {}, "opts": opts}])["ids"]
        work(1)
        time.sleep(1.1)  # `a` is now older than the age rule's 1 s
        node.run(prefix, queue, "add", jobs=[{"name": "b", "data": {}, "opts": {"removeOnComplete": keep}}])
        work(2)  # finishing `b` applies the retention rule to `a`
        again = node.run(prefix, queue, "add", jobs=[{"name": "a2", "data": {}, "opts": opts}])["ids"]
        return {
            "first": first,
            "a_exists": r.exists(k(prefix, queue, first)),
            "de": r.get(k(prefix, queue, "de:T")),
            "de_has_ttl": r.pttl(k(prefix, queue, "de:T")) > 0,
            "again": again,
            "jobs_waiting": r.llen(k(prefix, queue, "wait")),
        }

    def node_work(n: int) -> None:
        node.run(prefix, REF, "work", count=1)

    def py_work(n: int) -> None:
        worker = workers(PY, lambda job: None)
        wait_for(lambda: r.llen(k(prefix, PY, "wait")) == 0 and r.llen(k(prefix, PY, "active")) == 0
                 and r.zcard(k(prefix, PY, "completed")) + (2 - n) >= 1, timeout=10)  # fmt: skip
        worker.close(timeout=5)

    ref = scenario(REF, node_work)
    ours = scenario(PY, py_work)
    # Node 6.7.6: `a` is removed by the rule, de:T keeps pointing at it until its ttl ends, so the re-add is
    # deduplicated (answers with `a`'s id) and creates no job
    assert ref == {"first": "1", "a_exists": 0, "de": "1", "de_has_ttl": True, "again": ["1"], "jobs_waiting": 0}
    assert ours == ref


# --- 3. a stalled scheduler run is re-queued and completed, not failed ---------------------------------------


def test_stalled_scheduler_run_is_requeued_even_past_max_stalled_count(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    def scenario(queue: str, recover: Callable[[], None]) -> dict[str, Any]:
        node.run(prefix, queue, "upsertScheduler", schedulerId="tick", repeat={"every": 60_000},
                 template={"name": "tick", "data": {"n": 1}})  # fmt: skip
        opts = {"lockDuration": 1000, "stalledInterval": 1000}
        with node.spawn(prefix, queue, "work", hang=True, workerOpts=opts) as victim:
            (run_id,) = victim.wait_ready()["active"]
            victim.kill9()  # the worker dies holding the run; its lock expires in 1 s
        recover()
        job = r.hgetall(k(prefix, queue, run_id))
        return {
            "run": run_id.rsplit(":", 1)[0],
            "completed": [i.rsplit(":", 1)[0] for i in finished(r, prefix, queue)],
            "failed": finished(r, prefix, queue, "failed"),
            "failedReason": job.get("failedReason"), "defa": job.get("defa"), "stc": job.get("stc"),
            "stalled_events": len(events_of(r, prefix, queue, {"stalled"})),
            "schedulers": r.zrange(k(prefix, queue, "repeat"), 0, -1),
        }  # fmt: skip

    def node_recover() -> None:
        node.run(prefix, REF, "work", count=1, timeoutMs=20_000,
                 workerOpts={"maxStalledCount": 0, "stalledInterval": 500})  # fmt: skip

    def py_recover() -> None:
        worker = workers(PY, lambda job: "ok", max_stalled_count=0, stalled_interval=500)
        wait_for(lambda: finished(r, prefix, PY) or finished(r, prefix, PY, "failed"), timeout=15, what="settled")
        worker.close(timeout=5)

    ref = scenario(REF, node_recover)
    ours = scenario(PY, py_recover)
    # Node 6.7.6: the scheduler still exists, so the run goes back to wait (stc 1 > maxStalledCount 0, no
    # `defa`) and the next worker completes it
    assert ref == {"run": "repeat:tick", "completed": ["repeat:tick"], "failed": [], "failedReason": None,
                   "defa": None, "stc": "1", "stalled_events": 1, "schedulers": ["tick"]}  # fmt: skip
    assert ours == ref


# --- 4. move_to_delayed, then the processor raises: the settle is lock-checked (changes nothing) -------------

NODE_DELAY_THEN_THROW = r"""
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const [url, prefix, queue] = process.argv.slice(1);
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const q = new Queue(queue, { connection, prefix });
  await q.add('j', { n: 1 });
  const errors = [], failed = [];
  const w = new Worker(queue, async (job, token) => {
    await job.moveToDelayed(Date.now() + 60000, token);
    throw new Error('after move');
  }, { connection, prefix });
  w.on('error', e => errors.push(String(e.message)));
  w.on('failed', (job, e) => failed.push(e.message));
  await new Promise(r => setTimeout(r, 1500));
  await w.close();
  await q.close();
  connection.disconnect();
  console.log(JSON.stringify({ errors, failed }));
})();
"""


def run_node_script(code: str, *args: str) -> dict[str, Any]:
    from tests.interop.nodebridge import HERE

    out = subprocess.run(["node", "-e", code, *args], cwd=HERE, capture_output=True, text=True, timeout=60,
                         check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def test_raise_after_move_to_delayed_changes_nothing(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str, workers: Any
) -> None:
    def view(queue: str) -> dict[str, Any]:
        job = r.hgetall(k(prefix, queue, "1"))
        return {
            "delayed": r.zrange(k(prefix, queue, "delayed"), 0, -1), "failed": finished(r, prefix, queue, "failed"),
            "atm": job.get("atm"), "failedReason": job.get("failedReason"),
            "lock": r.exists(k(prefix, queue, "1:lock")),
            "events": [e for e, _id, _prev in events_of(r, prefix, queue, {"failed", "delayed", "completed"})],
        }  # fmt: skip

    node_side = run_node_script(NODE_DELAY_THEN_THROW, redis_url, prefix, REF)
    errors: list[BaseException] = []
    failed: list[str] = []

    def process(job: Any) -> None:
        job.move_to_delayed(int(time.time() * 1000) + 60_000)
        raise RuntimeError("after move")

    sbqueue.Queue(PY, redis_url, prefix).add("j", {"n": 1})
    worker = workers(PY, process)
    worker.on("error", errors.append)
    worker.on("failed", lambda job, exc: failed.append(str(exc)))
    wait_for(lambda: errors, timeout=10, what="the refused settle")
    worker.close(timeout=5)
    # Node 6.7.6: moveToFailed finds the lock gone (-2 "Missing lock"): the job stays delayed, untouched,
    # no `failed` event; the worker reports the error
    assert view(REF) == {"delayed": ["1"], "failed": [], "atm": None, "failedReason": None, "lock": 0,
                         "events": ["delayed"]}  # fmt: skip
    assert node_side["failed"] == [] and any("Missing lock" in e for e in node_side["errors"])
    assert view(PY) == view(REF)
    assert failed == [] and isinstance(errors[0], sbqueue.errors.SbqueueError) and "lock" in str(errors[0]).lower()


def test_raise_after_move_to_delayed_leaves_the_job_another_worker_refetched(
    redis_url: str, r: redis.Redis, prefix: str, workers: Any
) -> None:
    """The lock check in Node's moveToFinished (-6, lock held by another token) makes the first worker's
    late failure a no-op; the second worker's run completes the job normally."""
    refetched = threading.Event()
    errors: list[BaseException] = []

    def first(job: Any) -> None:
        job.move_to_delayed(int(time.time() * 1000) + 100)
        refetched.wait(10)
        raise RuntimeError("late failure")

    def second(job: Any) -> str:
        refetched.set()
        time.sleep(0.3)
        return "second"

    sbqueue.Queue(PY, redis_url, prefix).add("j", {})
    a = workers(PY, first, concurrency=1)
    a.on("error", errors.append)
    wait_for(lambda: r.zcard(k(prefix, PY, "delayed")) == 1, timeout=10, what="moved to delayed")
    workers(PY, second)
    wait_for(lambda: finished(r, prefix, PY), timeout=10, what="completed by the second worker")
    job = r.hgetall(k(prefix, PY, "1"))
    assert job["returnvalue"] == '"second"' and "failedReason" not in job and job.get("atm") == "1"
    assert finished(r, prefix, PY, "failed") == []
    wait_for(lambda: errors, timeout=5, what="the refused settle")


# --- 5. a retried job's `waiting` event says prev=active ------------------------------------------------------


def test_retried_job_waiting_event_says_prev_active(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    def job_events(queue: str) -> list[tuple[str, str]]:
        return [(event, prev) for event, _id, prev in events_of(r, prefix, queue, {"waiting", "failed", "completed"})]

    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "flaky", "data": {}, "opts": {"attempts": 2}}])
    node.run(prefix, REF, "work", count=1, failWith={"flaky": {"message": "once", "times": 1}})
    calls: list[int] = []

    def flaky(job: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")

    worker = workers(PY, flaky)
    wait_for(lambda: finished(r, prefix, PY), timeout=10, what="completed")
    worker.close(timeout=5)
    # Node 6.7.6 (retryJob): the retry's `waiting` event has prev=active (and the stream has no `failed` entry
    # for an attempt that is retried)
    assert job_events(REF) == [("waiting", ""), ("waiting", "active"), ("completed", "active")]
    assert job_events(PY) == job_events(REF)


# --- 6. a scheduler whose limit is reached stops creating runs but stays listed ------------------------------


def test_scheduler_at_its_limit_is_kept(node: NodeDriver, r: redis.Redis, prefix: str, workers: Any) -> None:
    def scenario(queue: str, work: Callable[[], None]) -> dict[str, Any]:
        node.run(prefix, queue, "upsertScheduler", schedulerId="lim", repeat={"every": 300, "limit": 2},
                 template={"name": "lim", "data": {}})  # fmt: skip
        work()
        listed = node.run(prefix, queue, "getSchedulers")["schedulers"]
        runs = finished(r, prefix, queue)
        last = max(int(run.rsplit(":", 1)[1]) for run in runs)
        return {
            "runs": len(runs), "pending": r.zcard(k(prefix, queue, "delayed")) + r.llen(k(prefix, queue, "wait")),
            "listed": [(s["key"], s.get("limit"), s.get("iterationCount")) for s in listed],
            "score_is_last_run": r.zscore(k(prefix, queue, "repeat"), "lim") == last,
            "hash": r.exists(k(prefix, queue, "repeat:lim")),
        }  # fmt: skip

    def node_work() -> None:
        node.run(prefix, REF, "work", idleMs=1500)

    def py_work() -> None:
        worker = workers(PY, lambda job: None)
        wait_for(lambda: len(finished(r, prefix, PY)) >= 2, timeout=10, what="2 runs")
        time.sleep(1)  # a third run would be due by now
        worker.close(timeout=5)

    ref = scenario(REF, node_work)
    ours = scenario(PY, py_work)
    # Node 6.7.6: two runs, no third one pending, and the scheduler is still there (hash + zset entry at the
    # last run's time), listed by getJobSchedulers with its limit and iteration count
    assert ref == {"runs": 2, "pending": 0, "listed": [("lim", 2, 2)], "score_is_last_run": True, "hash": 1}
    assert ours == ref


# --- 8. smaller differences a Node peer (or a user porting code) observes --------------------------------------


def test_completed_listener_sees_the_stored_attempts_made(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "j", "data": {}, "opts": {"attempts": 3}}])
    report = node.run(prefix, REF, "work", count=1, failWith={"j": {"message": "once", "times": 1}})
    node_seen = [p["attemptsMade"] for p in report["processed"] if p["state"] == "completed"]
    seen: list[int] = []
    calls: list[int] = []

    def flaky(job: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")

    worker = workers(PY, flaky)
    worker.on("completed", lambda job, result: seen.append(job.attempts_made))
    wait_for(lambda: seen, timeout=10, what="completed")
    worker.close(timeout=5)
    # Node 6.7.6: the `completed` listener's job.attemptsMade counts the attempt that completed (= stored atm)
    assert node_seen == [2] == [int(r.hget(k(prefix, REF, "1"), "atm"))]
    assert seen == node_seen == [int(r.hget(k(prefix, PY, "1"), "atm"))]


def test_drain_keeps_the_priority_counter(node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str) -> None:
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "p", "data": {}, "opts": {"priority": 2}}] * 3)
    node.run(prefix, REF, "drain")
    sbqueue.Queue(PY, redis_url, prefix).drain()
    # Node 6.7.6's drain removes the jobs and leaves `pc` as it was
    assert r.get(k(prefix, REF, "pc")) == "3" and r.zcard(k(prefix, REF, "prioritized")) == 0
    assert r.get(k(prefix, PY, "pc")) == r.get(k(prefix, REF, "pc"))


def test_get_jobs_fills_a_page_past_ids_whose_hash_is_gone(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    """Node's side is read with NODE_GET_JOBS (Queue.getJobs); the gap is made by deleting two hashes."""
    ids = {}
    for queue in (REF, PY):
        ids[queue] = node.run(prefix, queue, "add", jobs=[{"name": f"j{i}", "data": {}} for i in range(6)])["ids"]
        r.delete(k(prefix, queue, ids[queue][1]), k(prefix, queue, ids[queue][2]))
    node_page = run_node_script(NODE_GET_JOBS, redis_url, prefix, REF)
    ours = sbqueue.Queue(PY, redis_url, prefix)
    page = [job.id for job in ours.get_jobs(["waiting"], 0, 2, asc=True)]
    wide = [job.id for job in ours.get_jobs(["waiting"], 0, -1, asc=True)]
    # Node 6.7.6: a 3-job page starting at the gap still holds 3 jobs (1, 4, 5)
    assert node_page == {"page": ["1", "4", "5"], "all": ["1", "4", "5", "6"]}
    assert {"page": page, "all": wide} == node_page


NODE_GET_JOBS = r"""
const { Queue } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const [url, prefix, queue] = process.argv.slice(1);
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const q = new Queue(queue, { connection, prefix });
  const page = (await q.getJobs(['waiting'], 0, 2, true)).map(j => j.id);
  const all = (await q.getJobs(['waiting'], 0, -1, true)).map(j => j.id);
  await q.close();
  connection.disconnect();
  console.log(JSON.stringify({ page, all }));
})();
"""

NODE_PROMOTE = r"""
const { Queue } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const [url, prefix, queue] = process.argv.slice(1);
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const q = new Queue(queue, { connection, prefix });
  const job = await q.add('d', {}, { delay: 60000 });
  const before = job.delay;
  await job.promote();
  await q.close();
  connection.disconnect();
  console.log(JSON.stringify({ before, after: job.delay }));
})();
"""


def test_promote_sets_the_local_delay_to_zero(redis_url: str, r: redis.Redis, prefix: str) -> None:
    node_side = run_node_script(NODE_PROMOTE, redis_url, prefix, REF)
    job = sbqueue.Queue(PY, redis_url, prefix).add("d", delay=60_000)
    before = job.delay
    job.promote()
    # Node 6.7.6: job.promote() sets job.delay = 0 on the object too (the stored delay is 0 on both sides)
    assert node_side == {"before": 60_000, "after": 0}
    assert {"before": before, "after": job.delay} == node_side
    assert r.hget(k(prefix, PY, job.id), "delay") == r.hget(k(prefix, REF, "1"), "delay") == "0"


# --- 7. smaller items --------------------------------------------------------------------------------------------


def test_stacktrace_keeps_every_attempt_without_stack_trace_limit(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "j", "data": {}, "opts": {"attempts": 12}}])
    node.run(prefix, REF, "work", count=1, failAll="boom")

    def fail(job: Any) -> None:
        raise RuntimeError("boom")

    worker = workers(PY, fail)
    wait_for(lambda: finished(r, prefix, PY, "failed"), timeout=15, what="failed for good")
    worker.close(timeout=5)
    # Node 6.7.6: stackTraceLimit unset keeps one entry per failed attempt (12), not the last 10
    assert len(json.loads(r.hget(k(prefix, REF, "1"), "stacktrace"))) == 12
    assert len(json.loads(r.hget(k(prefix, PY, "1"), "stacktrace"))) == 12


def test_custom_backoff_without_a_strategy_reports_an_error_and_leaves_the_job_active(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    opts = {"attempts": 3, "backoff": {"type": "custom"}}
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "j", "data": {}, "opts": opts}])
    report = node.run(prefix, REF, "work", idleMs=800, failAll="boom")
    errors: list[BaseException] = []

    def fail(job: Any) -> None:
        raise RuntimeError("boom")

    worker = workers(PY, fail)
    worker.on("error", errors.append)
    wait_for(lambda: errors, timeout=10, what="the error")
    worker.close(timeout=5)

    def view(queue: str) -> dict[str, Any]:
        job = r.hgetall(k(prefix, queue, "1"))
        return {
            "active": r.lrange(k(prefix, queue, "active"), 0, -1), "atm": job.get("atm"),
            "failedReason": job.get("failedReason"), "wait": r.llen(k(prefix, queue, "wait")),
            "delayed": r.zcard(k(prefix, queue, "delayed")), "failed": finished(r, prefix, queue, "failed"),
        }  # fmt: skip

    # Node 6.7.6: moveToFailed throws "Unknown backoff strategy custom" before writing anything: the worker
    # emits `error`, the job stays in active (its lock is no longer renewed; the stalled check recovers it)
    assert any("Unknown backoff strategy" in e["message"] for e in report["events"] if e["event"] == "error")
    assert view(REF) == {"active": ["1"], "atm": None, "failedReason": None, "wait": 0, "delayed": 0, "failed": []}
    assert view(PY) == view(REF)
    assert isinstance(errors[0], sbqueue.errors.InvalidOptionError) and "backoff strategy" in str(errors[0])


def test_manual_rate_limit_does_not_hold_a_worker_without_a_limiter(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str, workers: Any
) -> None:
    took = {}
    for queue in (REF, PY):
        sbqueue.Queue(queue, redis_url, prefix).rate_limit(20_000)  # as Node's queue.rateLimit(20000)
        node.run(prefix, queue, "add", jobs=[{"name": "j", "data": {}}])
    start = time.monotonic()
    node.run(prefix, REF, "work", count=1, timeoutMs=10_000)
    took[REF] = time.monotonic() - start
    start = time.monotonic()
    worker = workers(PY, lambda job: None)
    wait_for(lambda: finished(r, prefix, PY), timeout=10, what="completed")
    took[PY] = time.monotonic() - start
    worker.close(timeout=5)
    # Node 6.7.6 checks the limiter key only for a worker (or queue) with a limiter `max`: the job runs at once
    assert r.pttl(k(prefix, REF, "limiter")) > 0 and r.pttl(k(prefix, PY, "limiter")) > 0
    assert took[REF] < 10 and took[PY] < 10  # not held for the 20 s window


def test_a_deferred_failure_takes_no_rate_limit_token(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "d", "data": {}}, {"name": "ok", "data": {}}])
        r.hset(k(prefix, queue, "1"), "defa", "job stalled more than allowable limit")  # as the stalled check
    limiter = {"max": 1, "duration": 8_000}
    report = node.run(prefix, REF, "work", count=2, workerOpts={"limiter": limiter})
    done = {p["id"]: p for p in report["processed"]}
    node_wait = done["2"]["startedAt"] - done["1"]["finishedAt"]
    start = time.monotonic()
    worker = workers(PY, lambda job: None, limiter=limiter)
    wait_for(lambda: finished(r, prefix, PY), timeout=10, what="the second job")
    our_wait = time.monotonic() - start
    worker.close(timeout=5)
    # Node 6.7.6: the `defa` job is failed at fetch without taking a token, so the one token of the window
    # goes to the next job, which starts at once (not after the 8 s window)
    for queue in (REF, PY):
        assert finished(r, prefix, queue, "failed") == ["1"] and finished(r, prefix, queue) == ["2"], queue
    assert node_wait < 4_000 and our_wait < 4


def test_upsert_while_the_pending_run_is_active_schedules_the_next_slot(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    every = 60_000

    def scenario(queue: str, upsert: Callable[[], None]) -> dict[str, Any]:
        node.run(prefix, queue, "upsertScheduler", schedulerId="s", repeat={"every": every},
                 template={"name": "s", "data": {}})  # fmt: skip
        with node.spawn(prefix, queue, "work", hang=True) as proc:
            (active,) = proc.wait_ready()["active"]
            # the worker created the next run when it fetched this one; remove it, so the upsert finds the
            # scheduler's current run active (a scheduler whose next run was lost, or is being re-created)
            r.zadd(k(prefix, queue, "repeat"), {"s": int(active.rsplit(":", 1)[1])})
            for run in r.zrange(k(prefix, queue, "delayed"), 0, -1):
                r.zrem(k(prefix, queue, "delayed"), run)
                r.delete(k(prefix, queue, run))
            upsert()
            proc.kill9()
        pending = r.zrange(k(prefix, queue, "delayed"), 0, -1)
        return {
            "wait": r.llen(k(prefix, queue, "wait")),
            "next_after_active_ms": [int(p.rsplit(":", 1)[1]) - int(active.rsplit(":", 1)[1]) for p in pending],
        }

    ref = scenario(REF, lambda: node.run(prefix, REF, "upsertScheduler", schedulerId="s", repeat={"every": every},
                                         template={"name": "s", "data": {}}) and None)  # fmt: skip
    ours = scenario(PY, lambda: sbqueue.Queue(PY, redis_url, prefix).upsert_job_scheduler("s", every=every, name="s")
                    and None)  # fmt: skip
    # Node 6.7.6 (addJobScheduler): the active run is not replaced, the next run goes one `every` after it
    assert ref == {"wait": 0, "next_after_active_ms": [every]}
    assert ours == ref


def test_drain_removes_the_job_parked_for_a_drained_dedup_owner(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    """The owner of de:K went back to wait (e.g. recovered after a stall) while a keepLastIfActive job was parked
    for it in dn:K; the state is planted the same way on both queues, then drained by Node and by sbqueue."""
    dedup = {"deduplication": {"id": "K", "keepLastIfActive": True}}
    for queue in (REF, PY):
        node.run(prefix, queue, "add", jobs=[{"name": "a", "data": {}, "opts": dedup}])
        r.hset(k(prefix, queue, "dn:K"), mapping={"name": "b", "data": "{}", "opts": json.dumps({"de": dedup}),
                                                   "jid": "2"})  # fmt: skip
    node.run(prefix, REF, "drain")
    sbqueue.Queue(PY, redis_url, prefix).drain()
    # Node 6.7.6 (removeDeduplicationKeyIfNeededOnRemoval): de:K pointed at the drained job, so both de:K and
    # dn:K go
    for queue in (REF, PY):
        assert r.exists(k(prefix, queue, "de:K"), k(prefix, queue, "dn:K"), k(prefix, queue, "1")) == 0, queue


# --- 9. BullMQ 6.7 API that mixed fleets use ----------------------------------------------------------------


def _dedup_view(r: redis.Redis, prefix: str, queue: str, ids: list[str]) -> dict[str, Any]:
    ttl = r.pttl(k(prefix, queue, "de:K"))
    return {
        "ids": ids,
        "de": r.get(k(prefix, queue, "de:K")),
        "ttl": "none" if ttl == -1 else ("gone" if ttl == -2 else ttl > 2_500),  # > 2.5 s left: (re)started
        "delayed": r.zrange(k(prefix, queue, "delayed"), 0, -1),
        "wait": r.lrange(k(prefix, queue, "wait"), 0, -1),
        "events": [e[:2] for e in events_of(r, prefix, queue, {"added", "removed", "deduplicated", "delayed"})],
        "opts": json.loads(r.hget(k(prefix, queue, ids[-1]), "opts") or "{}").get("de"),
    }


@pytest.mark.parametrize(
    "mode,first,second",
    [
        ("replace", {"ttl": 3_000, "replace": True}, {"ttl": 3_000, "replace": True}),
        ("extend", {"ttl": 3_000, "extend": True}, {"ttl": 3_000, "extend": True}),
        ("reschedule", {"ttl": 3_000, "reschedule": True}, {"ttl": 3_000, "reschedule": True}),
    ],
)
def test_dedup_modes_write_what_node_writes(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str, mode: str, first: dict[str, Any],
    second: dict[str, Any],
) -> None:  # fmt: skip
    camel = {"keep_last_if_active": "keepLastIfActive"}
    q = sbqueue.Queue(PY, redis_url, prefix)

    def node_add(dedup: dict[str, Any], delay: int) -> str:
        opts = {"deduplication": {"id": "K", **{camel.get(a, a): b for a, b in dedup.items()}}, "delay": delay}
        return str(node.run(prefix, REF, "add", jobs=[{"name": "j", "data": {}, "opts": opts}])["ids"][0])

    def py_add(dedup: dict[str, Any], delay: int) -> str:
        return q.add("j", {}, deduplication={"id": "K", **dedup}, delay=delay).id

    views = {}
    for queue, add in ((REF, node_add), (PY, py_add)):
        ids = [add(first, 60_000)]
        time.sleep(1)  # the first window is 2 s from its end now
        ids.append(add(second, 30_000))
        views[queue] = _dedup_view(r, prefix, queue, ids)
    # Node 6.7.6: replace removes the delayed owner and adds the new job (key now points at it, ttl kept);
    # extend keeps the owner and restarts its window; reschedule keeps the owner and moves it to the new delay
    expected = {
        "replace": {"ids": ["1", "2"], "de": "2", "ttl": False, "delayed": ["2"],
                    "events": [("added", "1"), ("delayed", "1"), ("removed", "1"), ("deduplicated", "2"),
                               ("added", "2"), ("delayed", "2")]},
        "extend": {"ids": ["1", "1"], "de": "1", "ttl": True, "delayed": ["1"],
                   "events": [("added", "1"), ("delayed", "1"), ("deduplicated", "1")]},
        "reschedule": {"ids": ["1", "1"], "de": "1", "ttl": False, "delayed": ["1"],
                       "events": [("added", "1"), ("delayed", "1"), ("deduplicated", "1"), ("delayed", "1")]},
    }[mode]  # fmt: skip
    ref = {key: value for key, value in views[REF].items() if key in expected}
    assert ref == expected
    assert views[PY] == views[REF]
    if mode == "reschedule":  # the owner is now due ~30 s from the second add
        assert r.hget(k(prefix, REF, "1"), "delay") == r.hget(k(prefix, PY, "1"), "delay") == "30000"


def test_keep_last_if_active_from_an_sbqueue_producer(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    dedup = {"id": "K", "keep_last_if_active": True}
    q = sbqueue.Queue(PY, redis_url, prefix)
    views = {}
    node_opts = {"deduplication": {"id": "K", "keepLastIfActive": True}}

    def add(queue: str, *values: int) -> None:
        if queue == REF:
            node.run(prefix, REF, "add", jobs=[{"name": "j", "data": {"v": v}, "opts": node_opts} for v in values])
        else:
            for v in values:
                q.add("j", {"v": v}, deduplication=dedup)

    for queue in (REF, PY):
        with node.spawn(prefix, queue, "work", count=2, sleepMs=2500, returnValue="echo") as proc:
            add(queue, 1)
            wait_for(lambda: r.llen(k(prefix, queue, "active")) == 1, timeout=10, what="first active")  # noqa: B023
            add(queue, 2, 3)
            parked = r.hgetall(k(prefix, queue, "dn:K"))
            proc.result(timeout=30)
        views[queue] = {
            "parked": {key: parked.get(key) for key in ("name", "jid")},
            "parked_opts": json.loads(parked["opts"]).get("de"),
            "completed": [json.loads(r.hget(k(prefix, queue, i), "data")) for i in finished(r, prefix, queue)],
            "dn": r.exists(k(prefix, queue, "dn:K")), "de": r.get(k(prefix, queue, "de:K")),
        }  # fmt: skip
    # Node 6.7.6: the last add while the owner runs is parked (jid = its id), then runs after the owner
    assert views[REF] == {"parked": {"name": "j", "jid": "3"}, "parked_opts": {"id": "K", "keepLastIfActive": True},
                          "completed": [{"v": 1}, {"v": 3}], "dn": 0, "de": None}  # fmt: skip
    assert views[PY] == views[REF]


def test_scheduler_immediately_runs_a_cron_scheduler_now(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    yearly = "0 0 1 1 *"
    node.run(prefix, REF, "upsertScheduler", schedulerId="y", repeat={"pattern": yearly, "immediately": True},
             template={"name": "y", "data": {}})  # fmt: skip
    sbqueue.Queue(PY, redis_url, prefix).upsert_job_scheduler("y", pattern=yearly, name="y", immediately=True)

    def view(queue: str) -> dict[str, Any]:
        (run,) = r.lrange(k(prefix, queue, "wait"), 0, -1)  # runnable now, not delayed to next 1 January
        scheduler = r.hgetall(k(prefix, queue, "repeat:y"))
        return {"delayed": r.zcard(k(prefix, queue, "delayed")), "delay": r.hget(k(prefix, queue, run), "delay"),
                "stored": sorted(f for f in scheduler if f not in ("ic", "name")),
                "due_in_ms": int(run.rsplit(":", 1)[1]) - int(time.time() * 1000) < 5_000}  # fmt: skip

    # Node 6.7.6: the first run is now; `immediately` itself is not stored on the scheduler
    assert view(REF) == {"delayed": 0, "delay": "0", "stored": ["offset", "pattern"], "due_in_ms": True}
    assert view(PY) == view(REF)
    with pytest.raises(sbqueue.errors.InvalidOptionError, match="start_date"):
        sbqueue.Queue(PY, redis_url, prefix).upsert_job_scheduler(
            "z", pattern=yearly, immediately=True, start_date=int(time.time() * 1000) + 60_000
        )


def test_lock_renewal_events(redis_url: str, r: redis.Redis, prefix: str, workers: Any) -> None:
    """Node 6.7.6's lock manager emits ``locksRenewed({count, jobIds})`` after each renewal round and
    ``lockRenewalFailed(jobIds)`` (plus an ``error`` per job) for locks it could not extend; sbqueue's worker
    emits the same as ``locks-renewed`` / ``lock-renewal-failed``."""
    q = sbqueue.Queue(PY, redis_url, prefix)
    keep, lose = q.add("keep").id, q.add("lose").id
    renewed: list[dict[str, Any]] = []
    failed: list[list[str]] = []
    errors: list[BaseException] = []
    both_active = threading.Event()

    def process(job: Any) -> None:
        both_active.wait(5)
        time.sleep(1.5)

    worker = workers(PY, process, lock_duration=1000)
    worker.on("locks-renewed", renewed.append)
    worker.on("lock-renewal-failed", failed.append)
    worker.on("error", errors.append)
    wait_for(lambda: r.llen(k(prefix, PY, "active")) == 2, timeout=5, what="both active")
    r.delete(k(prefix, PY, lose, "lock"))  # the lock is gone (expired / taken away)
    both_active.set()
    wait_for(lambda: failed and {"count": 1, "job_ids": [keep]} in renewed, timeout=5, what="a renewal round")
    assert failed[0] == [lose] and isinstance(errors[0], sbqueue.errors.LockMismatchError)
    assert all(round_["job_ids"] in ([keep], sorted([keep, lose], key=int)) for round_ in renewed)


NODE_PUBLISH = r"""
const { QueueEventsProducer } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const [url, prefix, queue] = process.argv.slice(1);
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const producer = new QueueEventsProducer(queue, { connection, prefix });
  await producer.publishEvent({ eventName: 'order-shipped', order: 'A-17', n: 3 });
  await producer.close();
  connection.disconnect();
  console.log(JSON.stringify({ ok: true }));
})();
"""


def test_queue_events_producer_writes_what_node_reads(node: NodeDriver, redis_url: str, r: redis.Redis,
                                                      prefix: str) -> None:  # fmt: skip
    run_node_script(NODE_PUBLISH, redis_url, prefix, REF)
    with sbqueue.QueueEventsProducer(PY, redis_url, prefix) as producer:
        entry = producer.publish_event("order-shipped", {"order": "A-17", "n": 3})
    ref_stream = [fields for _id, fields in r.xrange(k(prefix, REF, "events"))]
    py_stream = [fields for _id, fields in r.xrange(k(prefix, PY, "events"))]
    # Node 6.7.6's QueueEventsProducer: one entry event=<eventName> + the other fields as text
    assert ref_stream == [{"event": "order-shipped", "order": "A-17", "n": "3"}]
    assert py_stream == ref_stream and r.xrange(k(prefix, PY, "events"))[0][0] == entry
    seen = node.run(prefix, PY, "events", until="order-shipped", ms=5000)["events"]
    assert [{key: e[key] for key in ("event", "order", "n")} for e in seen] == [
        {"event": "order-shipped", "order": "A-17", "n": "3"}
    ]
    before = r.xlen(k(prefix, PY, "events"))
    for bad in ("", None):
        with pytest.raises(sbqueue.InvalidOptionError):
            sbqueue.QueueEventsProducer(PY, redis_url, prefix).publish_event(bad)  # type: ignore[arg-type]
    with pytest.raises(sbqueue.DataError):
        sbqueue.QueueEventsProducer(PY, redis_url, prefix).publish_event("x", {"v": object()})
    assert r.xlen(k(prefix, PY, "events")) == before  # nothing written on bad input


NODE_REMOVE_RATE_LIMIT_KEY = r"""
const { Queue } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const [url, prefix, queue] = process.argv.slice(1);
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const q = new Queue(queue, { connection, prefix });
  await q.rateLimit(60000);
  const first = await q.removeRateLimitKey();
  const second = await q.removeRateLimitKey();
  await q.close();
  connection.disconnect();
  console.log(JSON.stringify({ first, second }));
})();
"""


def test_remove_rate_limit_key(redis_url: str, r: redis.Redis, prefix: str) -> None:
    node_side = run_node_script(NODE_REMOVE_RATE_LIMIT_KEY, redis_url, prefix, REF)
    q = sbqueue.Queue(PY, redis_url, prefix)
    q.rate_limit(60_000)
    ours = {"first": q.remove_rate_limit_key(), "second": q.remove_rate_limit_key()}
    # Node 6.7.6: deletes the limiter key; the number of keys deleted
    assert node_side == {"first": 1, "second": 0} == ours
    assert r.exists(k(prefix, REF, "limiter"), k(prefix, PY, "limiter")) == 0


def test_next_run_id_taken_leaves_the_scheduler_where_it_is(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    every = 60_000

    def scenario(queue: str, work: Callable[[], None]) -> dict[str, Any]:
        node.run(prefix, queue, "upsertScheduler", schedulerId="s", repeat={"every": every},
                 template={"name": "s", "data": {}})  # fmt: skip
        (current,) = r.lrange(k(prefix, queue, "wait"), 0, -1)
        prev = int(current.rsplit(":", 1)[1])
        taken = f"repeat:s:{prev + every}"
        r.hset(k(prefix, queue, taken), mapping={"name": "left-over", "data": "{}", "opts": "{}"})
        work()
        return {
            "score_moved": r.zscore(k(prefix, queue, "repeat"), "s") != prev,
            "ic": r.hget(k(prefix, queue, "repeat:s"), "ic"),
            "duplicated": [e for e in events_of(r, prefix, queue, {"duplicated"}) if e[1] == taken] != [],
            "completed": len(finished(r, prefix, queue)), "delayed": r.zcard(k(prefix, queue, "delayed")),
        }  # fmt: skip

    def py_work() -> None:
        worker = workers(PY, lambda job: None)
        wait_for(lambda: finished(r, prefix, PY), timeout=10, what="the run")
        worker.close(timeout=5)

    ref = scenario(REF, lambda: node.run(prefix, REF, "work", count=1) and None)
    ours = scenario(PY, py_work)
    # Node 6.7.6 (updateJobScheduler): the next run's id exists, so it emits `duplicated` and moves nothing
    assert ref == {"score_moved": False, "ic": "1", "duplicated": True, "completed": 1, "delayed": 0}
    assert ours == ref


def test_age_retention_takes_the_newest_expired_jobs_up_to_the_limit(
    node: NodeDriver, r: redis.Redis, prefix: str, workers: Any
) -> None:
    old = int(time.time() * 1000) - 3_600_000
    keep = {"age": 60, "limit": 2}
    for queue in (REF, PY):
        for i in range(5):  # five jobs finished an hour ago, oldest first
            r.hset(k(prefix, queue, f"old{i}"), mapping={"name": "old", "data": "{}", "opts": "{}"})
            r.zadd(k(prefix, queue, "completed"), {f"old{i}": old + i})
        node.run(prefix, queue, "add", jobs=[{"name": "new", "data": {}, "opts": {"removeOnComplete": keep}}])
    node.run(prefix, REF, "work", count=1)
    worker = workers(PY, lambda job: None)
    wait_for(lambda: "1" in finished(r, prefix, PY), timeout=10, what="the new job")
    worker.close(timeout=5)
    # Node 6.7.6 (removeJobsByMaxAge): at most `limit` expired jobs per finish, the newest of them first
    assert finished(r, prefix, REF) == ["old0", "old1", "old2", "1"]
    assert finished(r, prefix, PY) == finished(r, prefix, REF)
    assert r.exists(k(prefix, PY, "old3"), k(prefix, PY, "old4"), k(prefix, REF, "old3"), k(prefix, REF, "old4")) == 0


def test_operator_failing_a_stalled_dedup_owner_runs_the_parked_job(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    """sbqueue-only path (the stalled-jobs runbook's ``recover_stalled`` fail mode): finishing the owner any way
    other than a worker's completion must still turn the keepLastIfActive job parked in dn:K into a job, as every
    finish does in Node 6.7.6 (moveToFinished's requeueDeduplicatedJob)."""
    node_opts = {"deduplication": {"id": "K", "keepLastIfActive": True}}
    with node.spawn(prefix, PY, "work", hang=True) as proc:
        node.run(prefix, PY, "add", jobs=[{"name": "a", "data": {"v": 1}, "opts": node_opts}])
        proc.wait_ready()
        node.run(prefix, PY, "add", jobs=[{"name": "b", "data": {"v": 2}, "opts": node_opts}])
        proc.kill9()
    q = sbqueue.Queue(PY, redis_url, prefix)
    codes = q._run("recover_stalled", [int(time.time() * 1000), "fail", "1", "operator", 1, "1"])
    assert [int(c) for c in codes] == [1]
    assert finished(r, prefix, PY, "failed") == ["1"] and r.exists(k(prefix, PY, "dn:K")) == 0
    assert r.lrange(k(prefix, PY, "wait"), 0, -1) == ["2"] and r.get(k(prefix, PY, "de:K")) == "2"
    assert json.loads(r.hget(k(prefix, PY, "2"), "data")) == {"v": 2}


# --- 10. deduplication on flow nodes -------------------------------------------------------------------------


def made_id(ids: list[str]) -> str:
    """The id the flow node got: a new UUID, or (deduplicated) the owner's id, which stays as it is."""
    return ids[1] if ids[1] != ids[0] else "\0"


@pytest.mark.parametrize(
    "mode,dedup",
    [("replace", {"ttl": 3_000, "replace": True}), ("extend", {"ttl": 3_000, "extend": True}),
     ("reschedule", {"ttl": 3_000, "reschedule": True})],
)  # fmt: skip
def test_dedup_modes_on_a_lone_flow_node_do_what_node_does(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str, mode: str, dedup: dict[str, Any]
) -> None:
    """A flow node without parent or children deduplicates as ``Queue.add`` does, in every mode."""
    views = {}
    for queue in (REF, PY):
        opts = {"deduplication": {"id": "K", **dedup}}
        if queue == REF:
            first = node.run(prefix, REF, "add", jobs=[{"name": "j", "data": {}, "opts": {**opts, "delay": 60_000}}])
            time.sleep(1)
            tree = node.run(prefix, REF, "addFlow", flow={"name": "j", "queueName": REF, "data": {},
                                                          "opts": {**opts, "delay": 30_000}})["tree"]  # fmt: skip
            ids = [str(first["ids"][0]), str(tree["id"])]
        else:
            owner = sbqueue.Queue(PY, redis_url, prefix).add("j", {}, delay=60_000, **opts)
            time.sleep(1)
            with sbqueue.FlowProducer(redis_url, prefix=prefix) as fp:
                made = fp.add({"name": "j", "queue_name": PY, "opts": {**opts, "delay": 30_000}})
            ids = [owner.id, made.job.id]
        # a flow node's id is a fresh UUID on both sides: named "N" to compare
        views[queue] = json.loads(json.dumps(_dedup_view(r, prefix, queue, ids)).replace(f'"{made_id(ids)}"', '"N"'))
    expected = {"replace": {"ids": ["1", "N"], "de": "N", "delayed": ["N"]},
                "extend": {"ids": ["1", "1"], "de": "1", "delayed": ["1"]},
                "reschedule": {"ids": ["1", "1"], "de": "1", "delayed": ["1"]}}[mode]  # fmt: skip
    assert {key: views[REF][key] for key in expected} == expected
    assert views[PY] == views[REF]


def test_deduplication_with_a_parent_is_refused_as_node_refuses_it(
    node: NodeDriver, redis_url: str, r: redis.Redis, prefix: str
) -> None:
    """BullMQ 6.7.6 refuses ``deduplication`` on a job with a parent (flow child or ``Queue.add(parent=...)``)."""
    with sbqueue.FlowProducer(redis_url, prefix=prefix) as fp:
        fp.add({"name": "p", "queue_name": "parents", "children": [{"name": "c", "queue_name": "kids"}]})
    parent = {"id": "1", "queue": f"{prefix}:parents"}
    with pytest.raises(Exception, match="Deduplication and parent options cannot be used together"):
        node.run(prefix, "kids", "add", jobs=[{"name": "c2", "data": {}, "opts": {"parent": parent,
                                                                                  "deduplication": {"id": "K"}}}])
    with pytest.raises(Exception, match="Deduplication and parent options cannot be used together"):
        node.run(prefix, "parents", "addFlow", flow={"name": "p", "queueName": "parents", "children": [
            {"name": "c", "queueName": "kids", "opts": {"deduplication": {"id": "K"}}}]})  # fmt: skip
    before = snapshot(r, prefix)
    with pytest.raises(sbqueue.InvalidOptionError, match="deduplication and parent cannot be used together"):
        sbqueue.Queue("kids", redis_url, prefix).add("c2", {}, parent=parent, deduplication={"id": "K"})
    with sbqueue.FlowProducer(redis_url, prefix=prefix) as fp, pytest.raises(sbqueue.InvalidFlowError,
                                                                             match="deduplication and parent"):
        fp.add({"name": "p", "queue_name": "parents", "children": [
            {"name": "c", "queue_name": "kids", "opts": {"deduplication": {"id": "K"}}}]})  # fmt: skip
    assert snapshot(r, prefix) == before
