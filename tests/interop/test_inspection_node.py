"""The Inspector on queues written and served only by Node BullMQ 6.7 (no sbqueue code touched them)."""

from __future__ import annotations

import redis

import sbqueue
from sbqueue.inspection import SCHEMAS
from tests.interop.nodebridge import NodeDriver


def _plant(node: NodeDriver, prefix: str) -> None:
    jobs = [
        {"name": "ok", "data": {"n": 1}},
        {"name": "ok", "data": {"n": 2}, "opts": {"priority": 3}},
        {"name": "boom", "data": {"n": 3}, "opts": {"attempts": 2}},
        {"name": "boom", "data": {"n": 4}},
        {"name": "later", "data": {"n": 5}, "opts": {"delay": 3_600_000}},
        {"name": "ok", "data": {"customer": "acme"}},
    ]
    node.run(prefix, "nq", "add", jobs=jobs)
    node.run(prefix, "nq", "upsertScheduler", schedulerId="tick", repeat={"every": 3_600_000},
             template={"name": "tick", "data": {"t": 1}})  # fmt: skip
    node.run(prefix, "nq", "work", count=5, failWith={"boom": "upstream returned 503 for order 17"},
             progress=True, returnValue="echo", workerOpts={"name": "node-w1"})  # fmt: skip


def test_inspector_reads_node_written_queue(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    _plant(node, prefix)
    counts = node.run(prefix, "nq", "inspect", ids=[])["counts"]
    insp = sbqueue.Inspector(r, prefix)

    queues = insp.queues()
    row = queues.set_index("queue").loc["nq"]
    for state in ("waiting", "active", "delayed", "prioritized", "completed", "failed"):
        assert int(row[state]) == counts[state], state
    assert queues["parse_error"].isna().all()

    jobs = insp.jobs("nq")
    assert list(jobs.columns)[: len(SCHEMAS["jobs"])] == list(SCHEMAS["jobs"])
    assert jobs["parse_error"].isna().all()
    done = jobs[jobs["state"] == "completed"]
    assert len(done) == counts["completed"] and (done["processed_by"] == "node-w1").all()
    assert (done["run_s"] >= 0).all() and done["finished_on"].notna().all()
    assert set(insp.jobs("nq", query={"data.customer": "acme"})["name"]) == {"ok"}

    failures = insp.failures("nq")
    assert failures["count"].sum() == counts["failed"] == 2
    assert len(failures) == 1 and "upstream returned <n> for order <n>" in failures.iloc[0]["signature"]

    events = insp.events("nq")
    assert {"added", "active", "completed", "failed", "progress"} <= set(events["event"])
    metrics = insp.metrics("nq")  # Node workers write metrics only with the `metrics` option: may be empty
    assert list(metrics.columns) == list(SCHEMAS["metrics"])
    schedulers = insp.schedulers("nq")
    assert list(schedulers["scheduler_id"]) == ["tick"] and bool(schedulers.iloc[0]["pending_job_exists"])
    assert insp.consistency("nq").query("severity == 'error'").empty
    assert insp.stalled("nq").empty  # nothing is active any more
    assert insp.timeline("nq", done.iloc[0]["id"])["event"].isin(["added", "active", "completed"]).any()
