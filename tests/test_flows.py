"""Flows (parent/child jobs): FlowProducer, Queue.add(parent=...), the worker's parent updates, the Job API.

BullMQ 6.7.6's layout and semantics (tests/interop/test_flows_node.py runs the same scenarios with Node).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue import FlowJob, FlowProducer, InvalidFlowError, ParentNotFoundError, WaitingChildrenError
from sbqueue.engine.worker import Worker
from tests.conftest import snapshot
from tests.processors import stream_events, wait_for


@pytest.fixture
def flows(r: redis.Redis, prefix: str) -> FlowProducer:
    return FlowProducer(r, prefix=prefix)


@pytest.fixture
def workers(r: redis.Redis, prefix: str) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(queue: str, processor: Callable[..., Any], **kw: Any) -> Worker:
        kw.setdefault("concurrency", 2)
        kw.setdefault("drain_delay", 0.2)
        w = Worker(queue, processor, r, prefix, **kw)
        made.append(w)
        return w.start()

    yield make
    for w in made:
        w.close(timeout=2)


def state(r: redis.Redis, prefix: str, queue: str, job_id: str) -> str:
    return str(sbqueue.Queue(queue, r, prefix=prefix).get_job_state(job_id))


def tree(children: int = 2, **child_opts: Any) -> dict[str, Any]:
    return {
        "name": "parent", "queue_name": "parents", "data": {"p": 1},
        "children": [
            {"name": f"child-{i}", "queue_name": "children", "data": {"c": i}, "opts": dict(child_opts)}
            for i in range(children)
        ],
    }  # fmt: skip


# --- adding ---------------------------------------------------------------------------------------------


def test_add_writes_bullmq_layout(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    node = flows.add(tree())
    parent = node.job
    assert parent.queue.name == "parents" and len(node.children) == 2
    assert len(parent.id) == 36  # a UUID, as Node's FlowProducer
    pkey = f"{prefix}:parents:{parent.id}"
    assert r.zscore(f"{prefix}:parents:waiting-children", parent.id) is not None
    kids = [c.job for c in node.children]
    assert r.smembers(pkey + ":dependencies") == {f"{prefix}:children:{k.id}" for k in kids}
    raw = r.hgetall(f"{prefix}:children:{kids[0].id}")
    assert raw["parentKey"] == pkey
    assert json.loads(raw["parent"]) == {"id": parent.id, "queueKey": f"{prefix}:parents"}
    assert json.loads(raw["opts"])["parent"] == {"id": parent.id, "queue": f"{prefix}:parents"}
    assert r.lrange(f"{prefix}:children:wait", 0, -1) == [kids[1].id, kids[0].id]
    assert [e["event"] for e in stream_events(r, prefix, "parents")] == ["added", "waiting-children"]
    assert kids[0].parent_key == pkey and node.children[0].children == []


def test_flow_job_dataclass_other_prefix_and_child_options(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    other = prefix + "-b"
    try:
        node = flows.add(FlowJob("p", "parents", children=[
            FlowJob("c", "children", opts={"fail_parent_on_failure": True}, prefix=other),
            FlowJob("d", "children", opts={"ignoreDependencyOnFailure": True}),
        ]))  # fmt: skip
        c, d = (n.job for n in node.children)
        assert r.exists(f"{other}:children:{c.id}") and r.exists(f"{prefix}:children:{d.id}")
        assert json.loads(r.hget(f"{other}:children:{c.id}", "parent"))["fpof"] is True
        assert json.loads(r.hget(f"{other}:children:{c.id}", "opts"))["fpof"] is True
        assert json.loads(r.hget(f"{prefix}:children:{d.id}", "parent"))["idof"] is True
    finally:
        for key in r.scan_iter(match=f"{other}:*"):
            r.delete(key)


def test_queue_add_with_parent(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    node = flows.add(tree(1))
    q = sbqueue.Queue("children", r, prefix=prefix)
    extra = q.add("late", {"x": 1}, parent={"id": node.job.id, "queue": f"{prefix}:parents"},
                  continue_parent_on_failure=True)  # fmt: skip
    assert extra.id == "2"  # a queue's own id counter, as Node's Queue.add (1 went to the flow child)
    assert f"{prefix}:children:{extra.id}" in r.smembers(f"{prefix}:parents:{node.job.id}:dependencies")
    assert json.loads(r.hget(f"{prefix}:children:{extra.id}", "parent"))["cpof"] is True


# --- bad input: a clear error, nothing written -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "node", "match"),
    [
        ({"name": "p", "children": [{"name": "c", "queue_name": "q"}]}, "root", "queue name"),
        ({"name": "p", "queue_name": "q", "opts": {"deduplication": {"id": "x"}}, "children": [
            {"name": "c", "queue_name": "q"}]}, "root", "deduplication"),
        ({"name": "p", "queue_name": "q", "children": [
            {"name": "c", "queue_name": "q", "opts": {"deduplication": {"id": "x", "extend": True, "ttl": 5}}}]},
         "root.children[0]", "deduplication and parent cannot be used together"),
        ({"name": "p", "queue_name": "q", "children": [
            {"name": "c", "queue_name": "q", "opts": {"fail_parent_on_failure": "yes"}}]},
         "root.children[0]", "fail_parent_on_failure"),
        ({"name": "p", "queue_name": "q", "children": [{"name": "c", "queue_name": "a:b"}]},
         "root.children[0]", "may not contain"),
        ({"name": "p", "queue_name": "q", "children": [{"name": "c", "queue_name": "q", "color": 1}]},
         "root.children[0]", "unknown keys"),
    ],
)  # fmt: skip
def test_bad_trees_raise_naming_the_node_and_write_nothing(
    flows: FlowProducer, r: redis.Redis, prefix: str, bad: dict[str, Any], node: str, match: str
) -> None:
    flows.add(tree(1))  # something already there, so "nothing written" is not trivially an empty snapshot
    before = snapshot(r, prefix)
    with pytest.raises(InvalidFlowError, match=match) as info:
        flows.add(bad)
    assert info.value.node == node
    assert isinstance(info.value, sbqueue.SbqueueError)
    assert snapshot(r, prefix) == before


def test_cycle_is_refused(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    a: dict[str, Any] = {"name": "a", "queue_name": "q", "children": []}
    b = {"name": "b", "queue_name": "q", "children": [a]}
    a["children"].append(b)
    with pytest.raises(InvalidFlowError, match="cycle") as info:
        flows.add(a)
    assert info.value.node == "root.children[0].children[0]"
    assert snapshot(r, prefix) == {}


def test_missing_parent_refused_with_nothing_written(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    q = sbqueue.Queue("children", r, prefix=prefix)
    q.add("x")
    before = snapshot(r, prefix)
    with pytest.raises(ParentNotFoundError, match="does not exist"):
        q.add("orphan", parent={"id": "nope", "queue": f"{prefix}:parents"})
    with pytest.raises(ParentNotFoundError) as info:
        flows.add({"name": "p", "queue_name": "mid", "opts": {"parent": {"id": "nope", "queue": f"{prefix}:top"}},
                   "children": [{"name": "c", "queue_name": "children"}]})  # fmt: skip
    assert info.value.node == "root"
    assert snapshot(r, prefix) == before
    with pytest.raises(sbqueue.InvalidOptionError, match="parent must be"):
        q.add("bad", parent={"id": "x"})


# --- the worker side --------------------------------------------------------------------------------------


def test_children_complete_then_parent_runs_with_their_values(
    flows: FlowProducer, workers: Callable[..., Worker], r: redis.Redis, prefix: str
) -> None:
    seen: dict[str, Any] = {}

    def parent(job: sbqueue.Job) -> str:
        seen.update(job.get_children_values())
        return "done"

    node = flows.add(tree(3))
    workers("children", lambda job: {"v": job.data["c"] * 10})
    workers("parents", parent)
    pid = node.job.id
    wait_for(lambda: state(r, prefix, "parents", pid) == "completed", 10, what="parent completed")
    assert seen == {f"{prefix}:children:{c.job.id}": {"v": i * 10} for i, c in enumerate(node.children)}
    assert r.scard(f"{prefix}:parents:{pid}:dependencies") == 0
    events = [e["event"] for e in stream_events(r, prefix, "parents", pid)]
    assert events == ["added", "waiting-children", "waiting", "active", "completed"]
    waiting = next(e for e in stream_events(r, prefix, "parents", pid) if e["event"] == "waiting")
    assert waiting["prev"] == "waiting-children"


def test_parent_priority_and_delay_apply_on_release(flows: FlowProducer, r: redis.Redis, prefix: str,
                                                    workers: Callable[..., Worker]) -> None:  # fmt: skip
    prio = flows.add({**tree(1), "opts": {"priority": 5}})
    late = flows.add({**tree(1), "opts": {"delay": 60_000}})
    workers("children", lambda job: 1)
    wait_for(lambda: r.zcard(f"{prefix}:children:completed") == 2, 10, what="children done")
    assert r.zscore(f"{prefix}:parents:prioritized", prio.job.id) is not None
    score = r.zscore(f"{prefix}:parents:delayed", late.job.id)
    assert score is not None and score / 4096 > time.time() * 1000 + 50_000


def failing(job: sbqueue.Job) -> Any:
    if job.data.get("c") == 0:
        raise ValueError("boom")
    return "ok"


@pytest.mark.parametrize("option", ["fail_parent_on_failure", "continue_parent_on_failure",
                                    "ignore_dependency_on_failure", "remove_dependency_on_failure", None])  # fmt: skip
def test_child_failure_options(flows: FlowProducer, workers: Callable[..., Worker], r: redis.Redis, prefix: str,
                               option: str | None) -> None:  # fmt: skip
    opts = {option: True} if option else {}
    node = flows.add(tree(2, **opts))
    pid, pkey = node.job.id, f"{prefix}:parents:{node.job.id}"
    bad = f"{prefix}:children:{node.children[0].job.id}"
    parent_runs: list[str] = []
    done_key = f"{prefix}:children:completed"

    def fails_last(job: sbqueue.Job) -> Any:
        # continue_parent_on_failure starts the parent as soon as a child fails (BullMQ 6): were the other
        # child still running, the parent's completion would be refused for a pending dependency. The
        # failing child waits for its sibling so each option is tested on the same, settled tree.
        deadline = time.monotonic() + 5
        while job.data.get("c") == 0 and not r.zcard(done_key) and time.monotonic() < deadline:
            time.sleep(0.01)
        return failing(job)

    workers("children", fails_last)
    workers("parents", lambda job: parent_runs.append(job.id) or "parent-ok")
    wait_for(lambda: r.zcard(f"{prefix}:children:completed") + r.zcard(f"{prefix}:children:failed") == 2, 10,
             what="children done")  # fmt: skip
    if option is None:  # the parent keeps waiting for the failed child (BullMQ 6)
        time.sleep(0.3)
        assert state(r, prefix, "parents", pid) == "waiting-children"
        assert r.smembers(pkey + ":dependencies") == {bad}
        return
    expect = "failed" if option == "fail_parent_on_failure" else "completed"
    wait_for(lambda: state(r, prefix, "parents", pid) == expect, 10, what=f"parent {expect}")
    if option == "fail_parent_on_failure":
        assert r.zrange(pkey + ":unsuccessful", 0, -1) == [bad]
        assert r.hget(pkey, "failedReason") == f"child {bad} failed"
        assert parent_runs == []  # failed without running
        job = sbqueue.Queue("parents", r, prefix=prefix).get_job(pid)
        assert job is not None and job.get_dependencies_count() == {
            "processed": 1, "unprocessed": 0, "ignored": 0, "failed": 1}
    elif option in ("continue_parent_on_failure", "ignore_dependency_on_failure"):
        assert r.hgetall(pkey + ":failed") == {bad: "boom"}
        assert parent_runs == [pid]
    else:
        assert not r.exists(pkey + ":failed") and parent_runs == [pid]


def test_remove_on_complete_child_still_counts(flows: FlowProducer, workers: Callable[..., Worker], r: redis.Redis,
                                               prefix: str) -> None:  # fmt: skip
    node = flows.add(tree(2, remove_on_complete=True))
    workers("children", lambda job: job.data["c"])
    wait_for(lambda: state(r, prefix, "parents", node.job.id) == "waiting", 10, what="parent released")
    assert len(r.hgetall(f"{prefix}:parents:{node.job.id}:processed")) == 2


def test_step_pattern(r: redis.Redis, prefix: str, workers: Callable[..., Worker]) -> None:
    q = sbqueue.Queue("steps", r, prefix=prefix)
    kids = sbqueue.Queue("children", r, prefix=prefix)
    runs: list[str] = []

    def step(job: sbqueue.Job) -> Any:
        step_no = job.data.get("step", 0)
        runs.append(f"step{step_no}")
        if step_no == 0:
            kids.add("kid", {"c": 1}, parent={"id": job.id, "queue": f"{prefix}:steps"})
            job.update_data({"step": 1})
            if job.move_to_waiting_children():
                raise WaitingChildrenError()
        return job.get_children_values()

    job = q.add("stepper", {})
    workers("steps", step)
    time.sleep(0.3)
    assert state(r, prefix, "steps", job.id) == "waiting-children"
    workers("children", lambda j: "kid-done")
    wait_for(lambda: state(r, prefix, "steps", job.id) == "completed", 10, what="stepper completed")
    assert runs == ["step0", "step1"]
    assert json.loads(r.hget(f"{prefix}:steps:{job.id}", "returnvalue")) == {f"{prefix}:children:1": "kid-done"}
    events = [e["event"] for e in stream_events(r, prefix, "steps", job.id)]
    assert events == ["added", "waiting", "active", "waiting-children", "waiting", "active", "completed"]


def test_completing_a_parent_with_pending_children_fails_it(r: redis.Redis, prefix: str,
                                                            workers: Callable[..., Worker]) -> None:  # fmt: skip
    q = sbqueue.Queue("steps", r, prefix=prefix)
    kids = sbqueue.Queue("children", r, prefix=prefix)

    def add_and_return(job: sbqueue.Job) -> str:
        kids.add("kid", {}, parent={"id": job.id, "queue": f"{prefix}:steps"})
        return "too early"

    job = q.add("p", {})
    workers("steps", add_and_return)
    wait_for(lambda: state(r, prefix, "steps", job.id) == "failed", 10, what="parent failed")
    reason = r.hget(f"{prefix}:steps:{job.id}", "failedReason")
    assert reason == f"Job {job.id} has pending dependencies. moveToFinished"


def test_job_api_and_get_flow(flows: FlowProducer, workers: Callable[..., Worker], r: redis.Redis, prefix: str) -> None:
    node = flows.add({"name": "root", "queue_name": "parents", "children": [
        {"name": "mid", "queue_name": "mids",
         "children": [{"name": "leaf", "queue_name": "children", "data": {"c": 1}}]},
        {"name": "other", "queue_name": "children", "data": {"c": 2}},
    ]})  # fmt: skip
    q = sbqueue.Queue("parents", r, prefix=prefix)
    got = q.get_flow(node.job.id)
    assert got is not None and got.job.name == "root"
    assert sorted(c.job.name for c in got.children) == ["mid", "other"]
    mid = next(c for c in got.children if c.job.name == "mid")
    assert [c.job.name for c in mid.children] == ["leaf"]
    assert q.get_flow(node.job.id, depth=1).children == []  # type: ignore[union-attr]
    assert q.get_flow("nope") is None
    root = q.get_job(node.job.id)
    assert root is not None
    deps = root.get_dependencies()
    assert deps["processed"] == {} and len(deps["unprocessed"]) == 2
    page = root.get_dependencies(unprocessed={"cursor": 0, "count": 10})
    assert page["unprocessed_cursor"] == 0 and len(page["unprocessed"]) == 2 and "processed" not in page
    assert root.get_dependencies_count(unprocessed=True) == {"unprocessed": 2}
    other = node.children[1].job
    child = sbqueue.Queue("children", r, prefix=prefix).get_job(other.id)
    assert child is not None and child.parent == {"id": node.job.id, "queueKey": f"{prefix}:parents"}
    assert child.remove_child_dependency() is True and child.parent is None
    assert r.hget(f"{prefix}:children:{other.id}", "parentKey") is None
    assert root.get_dependencies_count()["unprocessed"] == 1
    assert child.remove_child_dependency() is False


def test_async_flow_producer(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        async with sbqueue.AsyncFlowProducer(redis_url, prefix=prefix) as fp:
            node = await fp.add(tree(2))
            assert len(node.children) == 2
            values = await node.job.get_children_values()
            assert values == {}
            got = await fp.get_flow("parents", node.job.id)
            assert got is not None and len(got.children) == 2

    asyncio.run(go())


# --- remove ---------------------------------------------------------------------------------------------


def test_removing_the_last_pending_child_releases_the_parent(flows: FlowProducer, r: redis.Redis,
                                                             prefix: str) -> None:  # fmt: skip
    node = flows.add(tree(1))
    kids = sbqueue.Queue("children", r, prefix=prefix)
    assert kids.remove(node.children[0].job.id) is True
    assert state(r, prefix, "parents", node.job.id) == "waiting"
    assert r.lrange(f"{prefix}:parents:wait", 0, -1) == [node.job.id]
    assert [e["event"] for e in stream_events(r, prefix, "parents", node.job.id)][-1] == "waiting"


def test_removing_a_parent_removes_its_children_in_every_queue(flows: FlowProducer, r: redis.Redis,
                                                               prefix: str) -> None:  # fmt: skip
    node = flows.add({"name": "root", "queue_name": "parents", "children": [
        {"name": "mid", "queue_name": "mids", "children": [{"name": "leaf", "queue_name": "children"}]},
    ]})  # fmt: skip
    r.set(f"{prefix}:children:{node.children[0].children[0].job.id}:lock", "someone")
    parents = sbqueue.Queue("parents", r, prefix=prefix)
    before = snapshot(r, prefix)
    assert parents.remove(node.job.id) is False  # a pending grandchild is locked: nothing changes
    assert snapshot(r, prefix) == before
    r.delete(f"{prefix}:children:{node.children[0].children[0].job.id}:lock")
    assert parents.remove(node.job.id) is True
    left = {k for k in r.scan_iter(match=f"{prefix}:*") if not k.endswith((":events", ":meta", ":id", ":marker"))}
    assert left == set()
    removed = [e for e in stream_events(r, prefix, "children") if e["event"] == "removed"]
    assert len(removed) == 1


def test_remove_unprocessed_children(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    node = flows.add(tree(3))
    ids = [c.job.id for c in node.children]
    r.set(f"{prefix}:children:{ids[0]}:lock", "w")  # active: stays
    node.job.remove_unprocessed_children()
    assert r.exists(f"{prefix}:children:{ids[0]}") and not r.exists(f"{prefix}:children:{ids[1]}")
    assert r.smembers(f"{prefix}:parents:{node.job.id}:dependencies") == {f"{prefix}:children:{ids[0]}"}
    assert state(r, prefix, "parents", node.job.id) == "waiting-children"


def test_operator_failing_a_stalled_child_applies_its_parent_option(flows: FlowProducer, r: redis.Redis,
                                                                    prefix: str) -> None:  # fmt: skip
    node = flows.add(tree(1, fail_parent_on_failure=True))
    kids = sbqueue.Queue("children", r, prefix=prefix)
    cid = node.children[0].job.id
    r.lrem(f"{prefix}:children:wait", 0, cid)
    r.lpush(f"{prefix}:children:active", cid)  # its worker died
    codes = kids._run("recover_stalled", [int(time.time() * 1000), "fail", "1", "worker gone", 1, cid])
    assert codes == [1]
    pkey = f"{prefix}:parents:{node.job.id}"
    assert r.hget(pkey, "defa") == f"child {prefix}:children:{cid} failed"
    assert state(r, prefix, "parents", node.job.id) == "waiting"


# --- inspection ---------------------------------------------------------------------------------------------


def test_inspector_flow_and_flows(flows: FlowProducer, r: redis.Redis, prefix: str,
                                  workers: Callable[..., Worker]) -> None:  # fmt: skip
    from sbqueue.inspection.schemas import check_frame

    node = flows.add({"name": "root", "queue_name": "parents", "children": [
        {"name": "mid", "queue_name": "mids", "children": [{"name": "leaf", "queue_name": "children"}]},
        {"name": "other", "queue_name": "children"},
    ]})  # fmt: skip
    flows.add(tree(1))
    insp = sbqueue.Inspector(r, prefix=prefix, progress=False)
    df = insp.flow("parents", node.job.id)
    check_frame("flow", df)
    assert df.name.iloc[0] == "root" and sorted(df.name.iloc[1:3]) == ["mid", "other"] and df.name.iloc[3] == "leaf"
    assert list(df.depth) == [0, 1, 1, 2]
    rows = df.set_index("name")
    assert rows.loc["root", "pending"] == 2 and rows.loc["mid", "parent_id"] == node.job.id
    assert rows.loc["leaf", "parent_queue"] == "mids" and rows.loc["leaf", "state"] == "waiting"
    assert rows.loc["mid", "stuck"].startswith("no worker serves")  # nobody runs the "children" queue
    assert rows.loc["root", "stuck"].startswith("no worker serves")
    from sbqueue._core.keys import QueueKeys

    looks_like_a_worker = redis.Redis(connection_pool=redis.ConnectionPool(
        **{**r.connection_pool.connection_kwargs, "client_name": QueueKeys(prefix, "children").client_name("w1")}))
    looks_like_a_worker.ping()
    try:
        served = insp.flow("parents", node.job.id)
        assert served.stuck.isna().all()  # "mid" waits for its own child: not judged through root
    finally:
        looks_like_a_worker.close()
    every = insp.flows("parents")
    check_frame("flow", every)
    assert set(every.root_id) == {node.job.id, every[every.name == "parent"].job_id.iloc[0]}
    assert len(every) == 6
    check_frame("flow", insp.flows("nothing-here"))
    assert list(insp.queue("parents").flow(node.job.id).job_id) == list(df.job_id)


def test_stuck_parents_are_reported(flows: FlowProducer, r: redis.Redis, prefix: str) -> None:
    node = flows.add(tree(1))
    child = node.children[0].job.id
    # what a worker without flow support leaves: the child completed, the parent still waiting for it
    r.lrem(f"{prefix}:children:wait", 0, child)
    r.zadd(f"{prefix}:children:completed", {child: 1})
    r.srem(f"{prefix}:parents:{node.job.id}:dependencies", f"{prefix}:children:{child}")
    insp = sbqueue.Inspector(r, prefix=prefix, progress=False)
    stalled = insp.stalled("parents").set_index("id")
    assert stalled.loc[node.job.id, "verdict"] == "stuck parent"
    assert "nothing pending" in stalled.loc[node.job.id, "detail"]
    checks = insp.consistency("parents")
    stuck = checks[checks.check == "stuck_parent"]
    assert list(stuck.job_id) == [node.job.id] and "release" in stuck.suggested_fix.iloc[0]
    # a pending child that failed without a failure option: BullMQ waits forever
    other = flows.add(tree(1))
    oid = other.children[0].job.id
    r.lrem(f"{prefix}:children:wait", 0, oid)
    r.zadd(f"{prefix}:children:failed", {oid: 1})
    flow_df = insp.flow("parents", other.job.id).set_index("name")
    assert flow_df.loc["parent", "stuck"].startswith("a pending child failed without a failure option")
    # a pending child in a queue no worker serves
    third = flows.add(tree(1))
    assert insp.flow("parents", third.job.id).stuck.iloc[0].startswith("no worker serves")


def test_stuck_jobs_runbook_releases_only_what_bullmq_would(flows: FlowProducer, r: redis.Redis,
                                                            prefix: str) -> None:  # fmt: skip
    from sbqueue import runbook

    done = flows.add({**tree(1), "opts": {"priority": 4}})
    waiting = flows.add(tree(1))  # its child is pending and served by nobody: not released
    child = done.children[0].job.id
    r.lrem(f"{prefix}:children:wait", 0, child)
    r.zadd(f"{prefix}:children:completed", {child: 1})
    r.srem(f"{prefix}:parents:{done.job.id}:dependencies", f"{prefix}:children:{child}")
    finding = runbook.diagnose_stuck("parents", r, prefix)
    assert finding.cause == "stuck parents"
    plan = finding.plan.set_index("action")
    assert plan.loc["release parents", "jobs"] == 1 and bool(plan.loc["release parents", "automatic"])
    assert waiting.job.id in set(finding.plan.target)  # named, for a human
    before = snapshot(r, prefix)
    with pytest.raises(sbqueue.InvalidOptionError):
        finding.apply()
    assert snapshot(r, prefix) == before
    assert finding.apply(confirm=True) == [f"released parent {done.job.id}"]
    assert state(r, prefix, "parents", done.job.id) == "prioritized"  # per its own options
    assert state(r, prefix, "parents", waiting.job.id) == "waiting-children"
    events = stream_events(r, prefix, "parents", done.job.id)
    assert (events[-1]["event"], events[-1]["prev"]) == ("waiting", "waiting-children")
    q = sbqueue.Queue("parents", r, prefix=prefix)
    assert q._run("release_parent", [waiting.job.id, 1]) == -4  # BullMQ's rule holds in the script too


def test_step_pattern_with_an_async_processor(r: redis.Redis, prefix: str, redis_url: str,
                                              workers: Callable[..., Worker]) -> None:  # fmt: skip
    kids = sbqueue.AsyncQueue("children", redis_url, prefix=prefix)

    async def step(job: sbqueue.Job) -> Any:
        if not job.data.get("step"):
            await kids.add("kid", {}, parent={"id": job.id, "queue": f"{prefix}:asteps"})
            await job.update_data({"step": 1})
            if await job.move_to_waiting_children():
                assert job.token is None  # no longer ours: lock renewal leaves it alone
                raise WaitingChildrenError()
        return await job.get_children_values()

    job = sbqueue.Queue("asteps", r, prefix=prefix).add("stepper", {})
    workers("asteps", step)
    wait_for(lambda: state(r, prefix, "asteps", job.id) == "waiting-children", 10, what="waiting")
    workers("children", lambda j: "kid-done")
    wait_for(lambda: state(r, prefix, "asteps", job.id) == "completed", 10, what="stepper completed")
    assert json.loads(r.hget(f"{prefix}:asteps:{job.id}", "returnvalue")) == {f"{prefix}:children:1": "kid-done"}


def test_completing_a_parent_whose_child_failed_it_is_unrecoverable(
    r: redis.Redis, prefix: str, workers: Callable[..., Worker]
) -> None:
    kids = sbqueue.Queue("children", r, prefix=prefix)

    def parent(job: sbqueue.Job) -> str:
        link = {"id": job.id, "queue": f"{prefix}:steps"}
        kid = kids.add("kid", {"c": 0}, parent=link, fail_parent_on_failure=True)
        wait_for(lambda: kids.get_job_state(kid.id) == "failed", 10, what="the child failed")
        assert r.hget(f"{prefix}:steps:{job.id}", "defa") is not None  # flagged while it runs (BullMQ)
        return "done anyway"

    job = sbqueue.Queue("steps", r, prefix=prefix).add("p", {}, attempts=3)
    workers("steps", parent)
    workers("children", failing)
    wait_for(lambda: state(r, prefix, "steps", job.id) == "failed", 10, what="parent failed")
    raw = r.hgetall(f"{prefix}:steps:{job.id}")
    reason = f"Cannot complete job {job.id} because it has at least one failed child. moveToFinished"
    assert raw["failedReason"] == reason
    assert raw["atm"] == "1"  # unrecoverable: its other attempts are not used


def test_add_bulk_with_a_child_keeps_the_dedup_mode_of_its_other_entries(
    flows: FlowProducer, r: redis.Redis, prefix: str
) -> None:
    """An add_bulk naming a parent goes through add_flow whole; its other entries still deduplicate in their mode
    (here extend: the owner's window restarts), as they would through add_jobs."""
    node = flows.add(tree(1))
    q = sbqueue.Queue("children", r, prefix=prefix)
    dedup = {"id": "K", "ttl": 3_000, "extend": True}
    owner = q.add("o", {}, delay=60_000, deduplication=dedup)
    r.pexpire(f"{prefix}:children:de:K", 500)  # most of the window has passed
    jobs = q.add_bulk([{"name": "late", "opts": {"parent": {"id": node.job.id, "queue": f"{prefix}:parents"}}},
                       {"name": "again", "opts": {"deduplication": dedup}}])  # fmt: skip
    assert jobs[1].id == owner.id and r.pttl(f"{prefix}:children:de:K") > 2_500  # extended, not just absorbed
    assert f"{prefix}:children:{jobs[0].id}" in r.smembers(f"{prefix}:parents:{node.job.id}:dependencies")
