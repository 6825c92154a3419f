"""Dead-letter queues with Node BullMQ 6.7.6 on the same Redis: a job Node adds with ``opts.deadLetterQueue``
keeps the option (Node workers ignore it), a Python worker dead-letters it, and a Node worker consuming the DLQ
gets the original data unchanged and the source metadata in ``job.opts.deadLetter``."""

from __future__ import annotations

import json
from typing import Any

import redis

from sbqueue import UnrecoverableError, Worker
from tests.interop.nodebridge import NodeDriver
from tests.processors import wait_for

Q, DLQ = "src", "dlq"


def test_node_job_python_dead_letter_node_consumer(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    added = node.run(prefix, Q, "add", jobs=[
        {"name": "charge", "data": {"order": 7, "amount": 12.5}, "opts": {"deadLetterQueue": DLQ, "attempts": 2}},
        {"name": "ok", "data": {"order": 8}, "opts": {"deadLetterQueue": DLQ}},
    ])  # fmt: skip
    charge, ok = added["ids"]
    assert json.loads(r.hget(f"{prefix}:{Q}:{charge}", "opts"))["deadLetterQueue"] == DLQ  # Node kept it
    # a Node worker ignores the option: the job it completes leaves no letter
    done = node.run(prefix, Q, "work", count=1, failWith={"charge": "not now"}, workerOpts={"name": "n"},
                    recordOpts=True, idleMs=500)  # fmt: skip
    assert any(p["id"] == ok and p["state"] == "completed" for p in done["processed"])
    assert not r.exists(f"{prefix}:{DLQ}:wait")

    def proc(job: Any) -> None:
        raise UnrecoverableError(f"card declined for {job.data['order']}")

    w = Worker(Q, proc, r, prefix, concurrency=1).start()  # no worker DLQ: the job's own option decides
    try:
        wait_for(lambda: r.llen(f"{prefix}:{DLQ}:wait") == 1, timeout=10, what="the letter")
    finally:
        w.close(timeout=2)

    consumed = node.run(prefix, DLQ, "work", count=1, returnValue="echo", recordOpts=True)
    (entry,) = consumed["processed"]
    assert entry["state"] == "completed" and entry["name"] == "charge"
    assert entry["data"] == {"order": 7, "amount": 12.5}  # the original data, unchanged
    meta = entry["opts"]["deadLetter"]
    assert meta["sourceQueue"] == Q and meta["sourceJobId"] == charge and meta["sourcePrefix"] == prefix
    assert meta["failedReason"] == "card declined for 7" and meta["attemptsMade"] == 2
    assert meta["deadLetterQueue"] == DLQ and "deadLetterQueue" not in entry["opts"]
    assert "UnrecoverableError" in meta["stacktrace"][-1] and meta["finishedOn"] >= meta["processedOn"]
