"""Worker control against Node BullMQ 6.7.6 on the same Redis: jobs processed by hand from Python, cancelled
jobs, and a manually fetched job whose lock lapsed, recovered by a Node worker's stalled checker."""

from __future__ import annotations

import asyncio
import time

import redis

import sbqueue
from tests.interop.nodebridge import NodeDriver
from tests.processors import wait_for

Q = "control"


def test_a_node_job_processed_by_hand_in_python_is_seen_completed_by_node(
    node: NodeDriver, r: redis.Redis, prefix: str
) -> None:
    jobs = [{"name": "a", "data": {"n": 1}}, {"name": "b", "data": {"n": 2}, "opts": {"attempts": 2}}]
    ids = node.run(prefix, Q, "add", jobs=jobs)["ids"]
    worker = sbqueue.Worker(Q, None, r, prefix, name="by-hand")
    try:
        with node.spawn(prefix, Q, "events", lastEventId="$", until={"completed": 1, "waiting": 1}, ms=15000) as ev:
            ev.wait_ready(timeout=20)
            job = worker.get_next_job("py-token")
            assert job is not None and job.id == ids[0] and job.data == {"n": 1}
            nxt = job.move_to_completed({"doubled": 2}, "py-token", fetch_next=True)
            assert nxt is not None and nxt.id == ids[1]
            assert nxt.move_to_failed(ValueError("try again"), "py-token") is None  # attempt 1 of 2: retried
            res = ev.result(timeout=30)
    finally:
        worker.close()
    assert res["satisfied"] is True, res
    completed = [e for e in res["events"] if e["event"] == "completed"]
    assert [(e["jobId"], e["returnvalue"]) for e in completed] == [(ids[0], {"doubled": 2})]
    # a retried attempt: back to wait (as BullMQ's retryJob), no failed event
    assert [(e["event"], e["jobId"], e["prev"]) for e in res["events"] if e["event"] in ("waiting", "failed")] == [
        ("waiting", ids[1], "active")
    ]
    jobs = node.run(prefix, Q, "inspect", ids=ids)["jobs"]
    assert jobs[0]["state"] == "completed" and jobs[0]["returnvalue"] == {"doubled": 2}
    assert jobs[0]["attemptsMade"] == 1 and jobs[0]["processedBy"] == "by-hand"
    assert jobs[1]["state"] == "waiting" and jobs[1]["attemptsMade"] == 1 and jobs[1]["failedReason"] == "try again"
    # Node's worker takes the retry over and completes it
    res = node.run(prefix, Q, "work", count=1, returnValue="node")
    assert [(p["id"], p["state"]) for p in res["processed"]] == [(ids[1], "completed")]


def test_a_cancelled_job_is_failed_for_node_with_the_reason(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    (job_id,) = node.run(prefix, Q, "add", jobs=[{"name": "long", "opts": {"attempts": 3}}])["ids"]

    async def forever(job: sbqueue.Job) -> None:
        await asyncio.sleep(60)

    q = sbqueue.Queue(Q, r, prefix=prefix)
    worker = sbqueue.Worker(Q, forever, r, prefix).start()
    try:
        wait_for(lambda: q.get_job_state(job_id) == "active", 10, what="active")
        assert worker.cancel_job(job_id, "cancelled by the user")
        wait_for(lambda: q.get_job_state(job_id) == "failed", 10, what="failed")
    finally:
        worker.close()
    job = node.run(prefix, Q, "inspect", ids=[job_id])["jobs"][0]
    assert job["state"] == "failed" and job["failedReason"] == "cancelled by the user" and job["attemptsMade"] == 1


def test_a_lapsed_manual_lock_is_recovered_by_a_node_worker(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    (job_id,) = node.run(prefix, Q, "add", jobs=[{"name": "dropped"}])["ids"]
    worker = sbqueue.Worker(Q, None, r, prefix, lock_duration=1000)
    try:
        job = worker.get_next_job("gone-token")
        assert job is not None and job.id == job_id
    finally:
        worker.close()  # the "process" that fetched it is gone; nobody extends the lock
    t0 = time.monotonic()
    res = node.run(prefix, Q, "work", count=1, timeoutMs=15000, returnValue="rescued",
                   workerOpts={"name": "rescuer", "lockDuration": 1500, "stalledInterval": 300})  # fmt: skip
    assert res["stoppedBy"] == "count" and time.monotonic() - t0 < 15, res
    assert {"event": "stalled", "id": job_id, "prev": "active"} in res["events"]
    info = node.run(prefix, Q, "inspect", ids=[job_id])["jobs"][0]
    assert info["state"] == "completed" and info["stalledCounter"] == 1 and info["attemptsStarted"] == 2
