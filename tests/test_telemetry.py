"""Tracing on a real Redis: Python producer -> Python worker is one trace (add span parent of the process span),
span names/kinds/attributes as BullMQ 6.7's telemetry, ``tm`` in the job hash's opts, and nothing of it when off."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import FlowProducer, Job, Queue, Telemetry, Worker
from tests.processors import wait_for
from tests.tracing import Tracing, tm_ids

Q = "tq"
PRODUCER, CONSUMER = 3, 4


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


def opts_of(r: redis.Redis, prefix: str, job_id: str, queue: str = Q) -> str:
    return str(r.hget(f"{prefix}:{queue}:{job_id}", "opts"))


def run_worker(
    workers: list[Worker], r: redis.Redis, prefix: str, processor: Callable[[Job], Any], **kw: Any
) -> Worker:
    kw.setdefault("concurrency", 1)
    w = Worker(kw.pop("queue", Q), processor, r, prefix, **kw)
    workers.append(w)
    return w.start()


def test_python_producer_to_python_worker_is_one_trace(
    r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    job = q.add("send", {"to": "a"})
    (add,) = tracing.spans("add tq.send")
    assert add.kind == PRODUCER and add.parent_span_id is None
    assert add.attributes == {"bullmq.queue.name": Q, "bullmq.queue.operation": "add", "bullmq.job.name": "send",
                              "bullmq.job.id": job.id}  # fmt: skip
    assert tm_ids(opts_of(r, prefix, job.id)) == (add.trace_id, add.span_id)

    def processor(job: Job) -> dict[str, Any]:
        with tracing.tracer.start_as_current_span("user work"):  # a sync processor's spans nest under process
            return {"ok": job.data["to"]}

    w = run_worker(workers, r, prefix, processor, name="py-worker", telemetry=tracing.telemetry)
    wait_for(lambda: tracing.spans("process tq"), what="the process span")
    (process,) = tracing.spans("process tq")
    assert process.kind == CONSUMER
    assert (process.trace_id, process.parent_span_id) == (add.trace_id, add.span_id)
    attrs = process.attributes
    assert {k: attrs[k] for k in ("bullmq.queue.name", "bullmq.queue.operation", "bullmq.worker.id",
                                  "bullmq.worker.name", "bullmq.job.id", "bullmq.job.name",
                                  "bullmq.job.attempts.made")} == {
        "bullmq.queue.name": Q, "bullmq.queue.operation": "process", "bullmq.worker.id": w.id,
        "bullmq.worker.name": "py-worker", "bullmq.job.id": job.id, "bullmq.job.name": "send",
        "bullmq.job.attempts.made": 1}  # fmt: skip
    assert attrs["bullmq.job.attempt_finished_timestamp"] >= attrs["bullmq.job.processed.timestamp"] > 0
    assert process.events == [("job completed", {"bullmq.job.result": '{"ok":"a"}'})]
    (user,) = tracing.spans("user work")
    assert (user.trace_id, user.parent_span_id) == (add.trace_id, process.span_id)


def test_a_failed_attempt_is_an_event_of_the_process_span(
    r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    q.add("boom", attempts=2)

    async def processor(job: Job) -> None:
        with tracing.tracer.start_as_current_span("user async work"):  # an async processor's too
            await asyncio.sleep(0)
            raise RuntimeError(f"boom {job.attempts_made}")

    run_worker(workers, r, prefix, processor, telemetry=tracing.telemetry)
    wait_for(lambda: len(tracing.spans("process tq")) == 2, what="two process spans")
    first, second = tracing.spans("process tq")
    (add,) = tracing.spans("add tq.boom")
    assert first.parent_span_id == second.parent_span_id == add.span_id  # every attempt continues the add's trace
    assert first.events == [("job failed", {"bullmq.job.failed.reason": "boom 0"})]
    assert second.events == [("job failed", {"bullmq.job.failed.reason": "boom 1"})]
    assert [s.attributes["bullmq.job.attempts.made"] for s in (first, second)] == [1, 2]
    assert {s.parent_span_id for s in tracing.spans("user async work")} == {first.span_id, second.span_id}


def test_add_bulk_one_span_tm_per_job_and_omit_context(r: redis.Redis, prefix: str, tracing: Tracing) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    jobs = q.add_bulk([
        {"name": "a"},
        {"name": "b", "opts": {"telemetry": {"omit_context": True}}},
        {"name": "c", "opts": {"telemetry": {"metadata": '{"x":"1"}'}}},
    ])  # fmt: skip
    (bulk,) = tracing.spans()
    assert (bulk.name, bulk.kind) == ("addBulk tq", PRODUCER)
    assert bulk.attributes == {"bullmq.queue.name": Q, "bullmq.queue.operation": "addBulk",
                               "bullmq.job.bulk.names": ("a", "b", "c"), "bullmq.job.bulk.count": 3}  # fmt: skip
    assert tm_ids(opts_of(r, prefix, jobs[0].id)) == (bulk.trace_id, bulk.span_id)
    stored_b = json.loads(opts_of(r, prefix, jobs[1].id))
    assert (stored_b["tm"], stored_b["omc"]) == (False, True)  # as Node's addBulk stores it
    assert json.loads(opts_of(r, prefix, jobs[2].id))["tm"] == '{"x":"1"}'  # the caller's metadata wins


def test_add_with_omit_context_starts_a_new_trace_in_the_worker(
    r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    job = q.add("alone", telemetry={"omit_context": True})
    assert json.loads(opts_of(r, prefix, job.id)) == {"attempts": 1, "omc": True}
    run_worker(workers, r, prefix, lambda job: None, telemetry=tracing.telemetry)
    wait_for(lambda: tracing.spans("process tq"), what="the process span")
    (add,), (process,) = tracing.spans("add tq.alone"), tracing.spans("process tq")
    assert process.parent_span_id is None and process.trace_id != add.trace_id


def test_flow_spans_nest_and_each_job_carries_its_node_span(
    r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    flows = FlowProducer(r, prefix=prefix, telemetry=tracing.telemetry)
    tree = flows.add({"name": "report", "queue_name": "parents", "children": [
        {"name": "part", "queue_name": Q, "children": [{"name": "leaf", "queue_name": Q}]},
    ]})  # fmt: skip
    (flow,) = tracing.spans("addFlow parents")
    assert flow.kind == PRODUCER and flow.attributes["bullmq.flow.name"] == "report"
    nodes = {s.attributes["bullmq.job.name"]: s for s in tracing.spans() if s.name.startswith("addNode ")}
    assert nodes["report"].parent_span_id == flow.span_id
    assert nodes["part"].parent_span_id == nodes["report"].span_id
    assert nodes["leaf"].parent_span_id == nodes["part"].span_id
    leaf = tree.children[0].children[0].job
    assert (nodes["leaf"].name, nodes["leaf"].attributes["bullmq.job.id"]) == ("addNode tq", leaf.id)
    assert tm_ids(opts_of(r, prefix, leaf.id)) == (flow.trace_id, nodes["leaf"].span_id)
    assert tm_ids(opts_of(r, prefix, tree.job.id, "parents")) == (flow.trace_id, nodes["report"].span_id)
    run_worker(workers, r, prefix, lambda job: job.name, telemetry=tracing.telemetry)
    wait_for(lambda: len(tracing.spans("process tq")) == 2, what="process spans of both children")
    by_job = {s.attributes["bullmq.job.name"]: s for s in tracing.spans("process tq")}
    assert by_job["leaf"].parent_span_id == nodes["leaf"].span_id
    assert by_job["part"].parent_span_id == nodes["part"].span_id

    flows.add_bulk([{"name": "x", "queue_name": Q}, {"name": "y", "queue_name": Q}])
    (bulk,) = tracing.spans("addBulkFlows")
    assert bulk.attributes == {"bullmq.queue.name": "", "bullmq.queue.operation": "addBulkFlows",
                               "bullmq.job.bulk.count": 2, "bullmq.job.bulk.names": "x,y"}  # fmt: skip
    flows.close()


def test_async_queue_traces_too(redis_url: str, prefix: str, tracing: Tracing, r: redis.Redis) -> None:
    async def main() -> str:
        async with sbqueue.AsyncQueue(Q, redis_url, prefix=prefix, telemetry=tracing.telemetry) as q:
            return (await q.add("a")).id

    job_id = asyncio.run(main())
    (add,) = tracing.spans("add tq.a")
    assert tm_ids(opts_of(r, prefix, job_id)) == (add.trace_id, add.span_id)


class _Refuses(Telemetry):
    """Off, and any tracing call fails the test: the hot path checks ``enabled`` and nothing else."""

    def span(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("span() called while telemetry is off")


def test_off_by_default_writes_no_tm_and_opens_no_span(r: redis.Redis, prefix: str, workers: list[Worker]) -> None:
    assert Queue(Q, r, prefix=prefix).telemetry.enabled is False
    off = _Refuses()
    q = Queue(Q, r, prefix=prefix, telemetry=off)
    ids = [q.add("a").id, *(j.id for j in q.add_bulk([{"name": "b"}]))]
    flows = FlowProducer(r, prefix=prefix, telemetry=off)
    ids.append(flows.add({"name": "c", "queue_name": Q}).job.id)
    for job_id in ids:
        opts = json.loads(opts_of(r, prefix, job_id))
        assert "tm" not in opts and "omc" not in opts
    done: list[str] = []
    run_worker(workers, r, prefix, lambda job: done.append(job.id), telemetry=off)
    wait_for(lambda: len(done) == 3, what="three jobs processed")
    flows.close()


def test_bad_telemetry_arguments_are_refused_before_anything_is_written(r: redis.Redis, prefix: str) -> None:
    with pytest.raises(sbqueue.InvalidOptionError, match=r"sbqueue\.Telemetry"):
        Queue(Q, r, prefix=prefix, telemetry=object())  # type: ignore[arg-type]
    with pytest.raises(sbqueue.InvalidOptionError, match=r"sbqueue\.Telemetry"):
        FlowProducer(r, prefix=prefix, telemetry="otel")  # type: ignore[arg-type]
    q = Queue(Q, r, prefix=prefix)
    for bad in ({"omit_context": "yes"}, {"metadata": 1}, {"trace": True}, "x"):
        with pytest.raises(sbqueue.InvalidOptionError, match="telemetry"):
            q.add("a", telemetry=bad)  # type: ignore[arg-type]
    assert r.keys(f"{prefix}:*") == []
    # off, a caller's own telemetry option is stored as given (as Node without a telemetry object)
    job = q.add("a", telemetry={"metadata": '{"traceparent":"x"}', "omit_context": False})
    assert json.loads(opts_of(r, prefix, job.id)) == {"attempts": 1, "tm": '{"traceparent":"x"}', "omc": False}


def test_a_process_worker_keeps_the_process_span_in_the_parent_around_the_childs_run(
    r: redis.Redis, prefix: str, tracing: Tracing, workers: list[Worker]
) -> None:
    q = Queue(Q, r, prefix=prefix, telemetry=tracing.telemetry)
    q.add("in-a-child", {})
    run_worker(workers, r, prefix, "tests.process_processors:pid", processes=1, concurrency=None,
               telemetry=tracing.telemetry)  # fmt: skip
    wait_for(lambda: tracing.spans("process tq"), timeout=30, what="the process span")
    (process,) = tracing.spans("process tq")
    (add,) = tracing.spans("add tq.in-a-child")
    assert (process.trace_id, process.parent_span_id) == (add.trace_id, add.span_id)
    ((event, attrs),) = process.events
    assert event == "job completed" and int(attrs["bullmq.job.result"]) != os.getpid()  # the child's pid
