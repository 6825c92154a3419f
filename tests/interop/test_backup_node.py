"""Backups across implementations and servers (issue 23): queues written by Node BullMQ are backed up by
sbqueue, restored into a second Redis (another prefix), and processed there by Node BullMQ workers; a busy
queue's backup restores into a second Redis where sbqueue and Node workers finish every job exactly once.

Both Redis servers are private ``redis-server`` processes (tests/security/servers.py), so the source's
SLOWLOG can be set to catch any backup read that blocked Redis for 50 ms or more.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sbqueue import Job, Queue, Worker, backup, embedded
from sbqueue._core.scripts import source
from sbqueue.engine import backupfile
from tests.interop.nodebridge import HERE, NodeDriver
from tests.processors import wait_for
from tests.security.servers import PrivateRedis, private_redis

BACKUP_READ_SHA = hashlib.sha1(source("backup_read").encode()).hexdigest()


@pytest.fixture
def servers(tmp_path: Path, node: NodeDriver) -> Iterator[tuple[PrivateRedis, PrivateRedis]]:
    """Two private Redis servers: the backup's source (the system's redis-server, 7.x where installed) and
    the restore's target (sbqueue's embedded 6.2) — a logical backup moves between versions, where a DUMP
    payload of a newer server would be refused by an older one."""
    older = embedded.bundled_binary() or embedded.find_binary()
    with private_redis(tmp_path / "src") as src, private_redis(tmp_path / "dst", binary=older) as dst:
        yield src, dst


def add_flow(url: str, prefix: str, flow: dict[str, Any]) -> list[dict[str, str]]:
    node = shutil.which("node") or "node"
    request = json.dumps({"url": url, "prefix": prefix, "flow": flow})
    proc = subprocess.run([node, str(HERE / "backup_flow.js"), request], cwd=HERE, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return list(json.loads(proc.stdout.strip().splitlines()[-1])["jobs"])


def backup_jobs(path: Path) -> dict[str, dict[str, Any]]:
    """Every job record of a backup file, by ``queue/id``."""
    jobs: dict[str, dict[str, Any]] = {}
    for rec in backupfile.records(path):
        if rec["rec"] == "job":
            key = f"{rec['queue']}/{rec['id']}"
            assert key not in jobs, f"{key} appears twice in the backup"
            jobs[key] = rec
    return jobs


def comparable(job: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A Node ``inspect`` job entry without what a restore legitimately changes (the prefix in keys)."""
    keep = ("id", "name", "data", "opts", "priority", "delay", "timestamp", "attemptsMade", "attemptsStarted",
            "parentKey", "deduplicationId", "repeatJobKey", "state", "logs", "failedReason", "returnvalue")  # fmt: skip
    return json.loads(json.dumps({k: job.get(k) for k in keep}).replace(f"{old}:", f"{new}:"))


def test_node_workers_process_a_restored_node_queue(servers: tuple[PrivateRedis, PrivateRedis], tmp_path: Path) -> None:
    src, dst = servers
    old, new = "bull", "restored"
    n_src, n_dst = NodeDriver(src.url), NodeDriver(dst.url)
    n_src.run(old, "jobs", "add", jobs=[
        {"name": "plain", "data": {"n": 1}},
        {"name": "prio", "data": {"n": 2}, "opts": {"priority": 3}},
        {"name": "lifo", "data": {"n": 3}, "opts": {"lifo": True}},
        {"name": "later", "data": {"n": 4}, "opts": {"delay": 1500}},
        {"name": "flaky", "data": {"n": 5}, "opts": {"attempts": 2}},
        {"name": "dedup", "data": {"n": 6}, "opts": {"deduplication": {"id": "D"}}},
        {"name": "custom", "data": {"n": 7}, "opts": {"jobId": "my-id"}},
    ])  # fmt: skip
    n_src.run(old, "jobs", "upsertScheduler", schedulerId="tick", repeat={"every": 700, "limit": 3},
              template={"name": "tick", "data": {"s": 1}})  # fmt: skip
    flow = add_flow(src.url, old, {"name": "parent", "queueName": "parents", "data": {"p": 1}, "children": [
        {"name": "kid-a", "queueName": "jobs", "data": {"k": "a"}},
        {"name": "kid-b", "queueName": "parents", "data": {"k": "b"}},
    ]})  # fmt: skip
    parent_id = flow[0]["id"]
    before = {q: n_src.run(old, q, "inspect") for q in ("jobs", "parents")}

    path = tmp_path / "node.sbq.gz"
    summary = backup.export(path, connection=src.url, prefix=old)
    with src.admin() as a, dst.admin() as b:
        versions = (a.info("server")["redis_version"], b.info("server")["redis_version"])
    assert backupfile.read_header(path)["redis_version"] == versions[0]
    print(f"restoring a backup of Redis {versions[0]} into Redis {versions[1]}")
    assert summary.queues == ("jobs", "parents") and summary.skipped == {}
    report = backup.restore(path, connection=dst.url, prefix=new)
    assert report.external_refs == ()

    # Node sees the restored queues exactly as the originals, up to the prefix inside job keys
    for q in ("jobs", "parents"):
        after = n_dst.run(new, q, "inspect")
        assert after["counts"] == before[q]["counts"]
        assert after["ranges"] == before[q]["ranges"]
        assert after["meta"] == before[q]["meta"]
        assert [comparable(j, new, new) for j in after["jobs"]] == [comparable(j, old, new) for j in before[q]["jobs"]]
    assert n_dst.run(new, "jobs", "getSchedulers")["schedulers"][0]["key"] == "tick"

    # Node workers process everything: the flow parent after both children, the scheduler goes on to its limit
    fail_once = {"flaky": {"message": "flaky failed once", "times": 1}}
    with n_dst.spawn(new, "jobs", "work", concurrency=2, idleMs=2500, timeoutMs=30_000, failWith=fail_once,
                     returnValue="echo") as jobs_w, \
         n_dst.spawn(new, "parents", "work", concurrency=2, idleMs=4000, timeoutMs=30_000,
                     returnValue="echo") as parents_w:  # fmt: skip
        done_jobs, done_parents = jobs_w.result(timeout=40), parents_w.result(timeout=40)
    final = [p for p in done_jobs["processed"] + done_parents["processed"] if p["final"]]
    assert all(p["state"] == "completed" for p in final), final
    names = Counter(p["name"] for p in final)
    assert names == {"plain": 1, "prio": 1, "lifo": 1, "later": 1, "flaky": 1, "dedup": 1, "custom": 1, "tick": 3,
                     "kid-a": 1, "kid-b": 1, "parent": 1}  # fmt: skip
    finished_at = {p["name"]: p["finishedAt"] for p in final}
    assert finished_at["parent"] >= max(finished_at["kid-a"], finished_at["kid-b"])
    parent = n_dst.run(new, "parents", "inspect", ids=[parent_id])["jobs"][0]
    assert parent["state"] == "completed"
    # the restored source queue is untouched
    assert n_src.run(old, "jobs", "inspect", ids=[])["counts"] == before["jobs"]["counts"]


def test_busy_queue_backup_restores_and_every_job_runs_exactly_once(
    servers: tuple[PrivateRedis, PrivateRedis], tmp_path: Path
) -> None:
    """Producers add and a worker processes while the backup runs; on the second Redis an sbqueue and a Node
    worker finish every job the backup holds that had not finished, each exactly once."""
    src, dst = servers
    rsrc, rdst = src.admin(), dst.admin()
    rsrc.config_set("slowlog-log-slower-than", 50_000)  # 50 ms
    rsrc.slowlog_reset()
    q = Queue("busy", rsrc, prefix="bull")
    q.add_bulk([{"name": "pre", "data": {"i": i}, "opts": {"priority": 1 + i % 3} if i % 5 == 0 else {}}
                for i in range(3000)])  # fmt: skip
    for i in range(20):
        q.add("delayed", {"i": i}, delay=200 + 10 * i)
    stop = threading.Event()
    added: list[str] = []

    def produce() -> None:
        producer = Queue("busy", src.url, prefix="bull")
        i = 0
        while not stop.is_set():
            added.extend(j.id for j in producer.add_bulk([{"name": "live", "data": {"i": i + k}} for k in range(20)]))
            i += 20
            time.sleep(0.005)
        producer.close()

    src_done: list[str] = []

    def slow(job: Job) -> None:
        time.sleep(0.002)
        src_done.append(job.id)

    thread = threading.Thread(target=produce)
    worker = Worker("busy", slow, rsrc, "bull", concurrency=8, drain_delay=0.2)
    worker.start()
    thread.start()
    try:
        wait_for(lambda: len(src_done) > 100 and len(added) > 100, timeout=20, what="busy queue")
        summary = q.export(tmp_path / "busy.sbq.gz")
    finally:
        stop.set()
        thread.join(10)
        worker.close(timeout=10)
    slow_reads = [e for e in rsrc.slowlog_get(128) if BACKUP_READ_SHA in str(e["command"])]
    assert slow_reads == [], slow_reads  # no backup read blocked Redis for 50 ms or more
    jobs = backup_jobs(tmp_path / "busy.sbq.gz")
    states = Counter(rec["state"] for rec in jobs.values())
    print(f"busy backup: {dict(states)}; {summary.batches} reads, slowest {summary.max_batch_ms:.1f} ms round trip")
    assert sum(states.values()) == summary.total_jobs
    assert states["completed"] > 0 and (states["wait"] + states["prioritized"] + states["delayed"]) > 0, states
    # every job that existed before the backup started is in it, each once; live adds may or may not be
    ids = {key.split("/", 1)[1] for key in jobs}
    assert {str(i) for i in range(1, 3021)} <= ids
    assert ids <= {str(i) for i in range(1, 3021)} | set(added)
    pending = {rec["id"] for rec in jobs.values() if rec["state"] not in ("completed", "failed")}
    finished = ids - pending

    backup.restore(tmp_path / "busy.sbq.gz", connection=dst.url)
    rq = Queue("busy", rdst, prefix="bull")
    assert int(rdst.get("bull:busy:id") or 0) >= max(int(i) for i in ids)  # new adds never reuse a restored id
    assert rq.get_job_counts("completed")["completed"] == len(finished)
    py_done: list[str] = []
    n_dst = NodeDriver(dst.url)
    with n_dst.spawn("bull", "busy", "work", concurrency=8, sleepMs=1, idleMs=2000, timeoutMs=60_000,
                     workerOpts={"name": "node-w"}) as proc:  # fmt: skip
        proc.wait_ready(timeout=20)
        w2 = Worker("busy", lambda job: py_done.append(job.id), rdst, "bull", concurrency=8, drain_delay=0.2,
                    name="py-w")  # fmt: skip
        w2.start()
        try:
            wait_for(lambda: rq.get_job_counts("completed")["completed"] == len(ids), timeout=60, interval=0.1,
                     what="every restored job completed")  # fmt: skip
        finally:
            w2.close(timeout=10)
        res = proc.result(timeout=60)
    node_done = [p["id"] for p in res["processed"]]
    assert all(p["state"] == "completed" for p in res["processed"])
    assert len(node_done) == len(set(node_done)) and len(py_done) == len(set(py_done))  # nobody ran one twice
    assert set(node_done).isdisjoint(py_done)
    assert set(node_done) | set(py_done) == pending  # exactly the unfinished jobs ran, finished ones did not
    assert min(len(node_done), len(py_done)) > 0
    assert rq.get_job_counts() == {"active": 0, "completed": len(ids), "delayed": 0, "failed": 0, "prioritized": 0,
                                   "waiting": 0, "waiting-children": 0}  # fmt: skip
    rsrc.close()
    rdst.close()
