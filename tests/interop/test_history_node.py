"""The recorder on queues served by Node BullMQ 6.7 workers: attempts, retries, backoff, workers, failures."""

from __future__ import annotations

from pathlib import Path

import redis

from sbqueue.history import History, Recorder
from tests.interop.nodebridge import NodeDriver


def test_recorder_reads_node_worker_events(node: NodeDriver, r: redis.Redis, prefix: str, tmp_path: Path) -> None:
    node.run(prefix, "nq", "add", jobs=[
        {"name": "ok", "data": {"customer": {"id": 7}}},
        {"name": "boom", "data": {"n": 1}, "opts": {"attempts": 2}},
        {"name": "backoff", "data": {}, "opts": {"attempts": 2, "backoff": {"type": "fixed", "delay": 50}}},
    ])
    node.run(prefix, "nq", "work", count=3, failWith={"boom": "upstream 503", "backoff": "later"}, progress=True,
             returnValue="echo", workerOpts={"name": "node-w1"})
    rec = Recorder(r, prefix, tmp_path, data_fields=["customer.id"], flush_interval=0)
    while rec.run_once():
        pass
    rec.flush()
    h = History(tmp_path)
    ev = h.events("nq")
    assert list(ev["stream_id"]) == [eid for eid, _ in r.xrange(f"{prefix}:nq:events")]
    assert ev["parse_error"].isna().all()
    jobs = h.jobs("nq").sort_values(["name", "started"])
    summary = [(row.name, row.outcome) for row in jobs.itertuples()]
    assert summary == [("backoff", "delayed"), ("backoff", "failed"), ("boom", "retried"), ("boom", "failed"),
                       ("ok", "completed")]
    assert (jobs["run_s"] >= 0).all() and (jobs["wait_s"] >= 0).all()
    final = jobs[jobs["outcome"].isin(["completed", "failed"])]
    assert set(final["worker"]) == {"node-w1"}
    assert sorted(final["failed_reason"].dropna()) == ["later", "upstream 503"]
    done = ev[ev["event"] == "completed"].iloc[0]
    assert done["data"] == '{"customer.id": 7}' and done["returnvalue_bytes"] > 0 and done["attempt"] == 1
    progress = ev[ev["event"] == "progress"]["progress"]
    assert len(progress) > 0 and progress.notna().all()
