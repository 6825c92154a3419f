"""Trace continuation across languages, both ways: Node BullMQ 6.7.6 with the npm package bullmq-otel (driven by
``telemetry.js``, in-memory span exporter) and sbqueue with :class:`sbqueue.OtelTelemetry` share a trace through
the job's ``opts.tm``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from sbqueue import FlowProducer, Job, Queue, Worker
from tests.interop import nodebridge
from tests.processors import wait_for
from tests.tracing import Tracing, tm_ids

Q = "otelq"
PRODUCER, CONSUMER = 3, 4


def node_telemetry(redis_url: str, prefix: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run one ``telemetry.js`` action; its jobs (with raw opts) and finished spans."""
    nodebridge.node_available()
    body = json.dumps({"url": redis_url, "prefix": prefix, "queue": Q, **request})
    proc = subprocess.run([shutil.which("node") or "node", str(nodebridge.HERE / "telemetry.js"), body],
                          cwd=nodebridge.HERE, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:
        w.close(timeout=2)


def test_node_producer_python_worker(
    redis_url: str, r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    out = node_telemetry(redis_url, prefix, {"action": "add", "jobs": [{"name": "send", "data": {"n": 1}}]})
    (job,) = out["jobs"]
    (add,) = [s for s in out["spans"] if s["name"] == f"add {Q}.send"]
    assert add["kind"] == PRODUCER and add["attributes"]["bullmq.job.id"] == job["id"]
    assert tm_ids(job["opts"]) == (add["traceId"], add["spanId"])  # Node's tm, read back exactly

    seen: list[str] = []

    def processor(job: Job) -> str:
        seen.append(job.id)
        return "done"

    w = Worker(Q, processor, r, prefix, telemetry=tracing.telemetry, name="py")
    workers.append(w.start())
    wait_for(lambda: tracing.spans(f"process {Q}"), what="the Python process span")
    (process,) = tracing.spans(f"process {Q}")
    assert process.kind == CONSUMER
    assert process.trace_id == add["traceId"]  # the trace the Node producer began ...
    assert process.parent_span_id == add["spanId"]  # ... continues under its add span
    assert process.attributes["bullmq.job.id"] == job["id"] and seen == [job["id"]]


def test_node_flow_python_worker(
    redis_url: str, r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    flow = {"name": "parent", "queueName": "otelparents", "opts": {},
            "children": [{"name": "child", "queueName": Q, "opts": {"attempts": 1}}]}  # fmt: skip
    out = node_telemetry(redis_url, prefix, {"action": "flow", "flow": flow})
    child = next(j for j in out["jobs"] if j["queue"] == Q)
    node_span = next(s for s in out["spans"] if s["name"] == f"addNode {Q}")
    workers.append(Worker(Q, lambda job: 1, r, prefix, telemetry=tracing.telemetry).start())
    wait_for(lambda: tracing.spans(f"process {Q}"), what="the Python process span")
    (process,) = tracing.spans(f"process {Q}")
    assert (process.trace_id, process.parent_span_id) == (node_span["traceId"], node_span["spanId"])
    assert process.attributes["bullmq.job.id"] == child["id"]


def test_python_producer_node_worker(redis_url: str, r: redis.Redis, prefix: str, tracing: Tracing) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    single = q.add("one", {"n": 1})
    bulk = q.add_bulk([{"name": "two"}, {"name": "three"}])
    flows = FlowProducer(r, prefix=prefix, telemetry=tracing.telemetry)
    node = flows.add({"name": "four", "queue_name": Q})
    flows.close()
    parents = {single.id: tracing.spans(f"add {Q}.one")[0], node.job.id: tracing.spans(f"addNode {Q}")[0]}
    parents.update({job.id: tracing.spans(f"addBulk {Q}")[0] for job in bulk})

    out = node_telemetry(redis_url, prefix, {"action": "work", "count": 4, "timeout": 20000})
    processes = {s["attributes"]["bullmq.job.id"]: s for s in out["spans"] if s["name"] == f"process {Q}"}
    assert set(processes) == set(parents), out["spans"]
    for job_id, span in parents.items():
        process = processes[job_id]
        assert process["kind"] == CONSUMER
        assert (process["traceId"], process["parentSpanId"]) == (span.trace_id, span.span_id), job_id
        assert process["events"][0]["name"] == "job completed"


def test_python_tm_is_stored_like_node_s(redis_url: str, r: redis.Redis, prefix: str, tracing: Tracing) -> None:
    """The same add from both sides stores the same opts shape: ``tm`` is bullmq-otel's JSON text."""
    node = node_telemetry(redis_url, prefix, {"action": "add", "jobs": [{"name": "n"}]})["jobs"][0]
    py = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry).add("p")
    node_tm = json.loads(node["opts"])["tm"]
    py_tm = json.loads(str(r.hget(f"{prefix}:{Q}:{py.id}", "opts")))["tm"]
    assert list(json.loads(node_tm)) == list(json.loads(py_tm)) == ["traceparent"]
    assert " " not in py_tm and tm_ids(json.dumps({"tm": py_tm}))


def test_job_seen_by_python_keeps_node_opts(redis_url: str, r: redis.Redis, prefix: str) -> None:
    """A Python Job reads Node's tm/omc as stored (they are part of ``job.opts``)."""
    out = node_telemetry(redis_url, prefix, {"action": "addBulk", "jobs": [
        {"name": "a"}, {"name": "b", "opts": {"telemetry": {"omitContext": True}}}]})  # fmt: skip
    q = Queue(Q, r, prefix=prefix)
    a, b = (q.get_job(j["id"]) for j in out["jobs"])
    assert isinstance(a, Job) and isinstance(b, Job)
    assert a.opts["tm"].startswith('{"traceparent":"00-')
    assert (b.opts["tm"], b.opts["omc"]) == (False, True)
