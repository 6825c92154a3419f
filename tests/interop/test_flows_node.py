"""Flows across Node BullMQ 6.7.6 and sbqueue on one Redis (issue 16).

Each scenario runs twice under one prefix, on its own queue names: once as the reference (Node's FlowProducer and
Node workers, or sbqueue's producer and Node workers) and once with sbqueue in the role under test. The two
runs' Redis state — every job's state, stored fields and values, its parent, its parent's
``dependencies``/``processed``/``failed``/``unsuccessful`` and its events (name and ``prev``) — is reduced to a
view keyed by job names (ids are random UUIDs) and compared.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import sbqueue
from sbqueue.engine.worker import Worker
from tests.interop.nodebridge import NodeDriver
from tests.processors import wait_for

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATES = ("wait", "active", "paused", "prioritized", "delayed", "completed", "failed", "waiting-children")
#: fields whose values differ run to run (times, worker tokens) or by runtime (stack traces): compared by presence
VOLATILE = {"timestamp", "processedOn", "finishedOn", "stacktrace", "pb"}
FLAG_OPTS = {
    "fpof": "failParentOnFailure", "cpof": "continueParentOnFailure", "idof": "ignoreDependencyOnFailure",
    "rdof": "removeDependencyOnFailure",
}  # fmt: skip


def two_children(tag: str, **child_opts: Any) -> dict[str, Any]:
    return {
        "name": "parent", "queueName": f"{tag}-parents", "data": {"p": 1},
        "children": [
            {"name": "c0", "queueName": f"{tag}-children", "data": {"c": 0}, "opts": dict(child_opts)},
            {"name": "c1", "queueName": f"{tag}-children", "data": {"c": 1}},
        ],
    }  # fmt: skip


def two_levels(tag: str) -> dict[str, Any]:
    return {
        "name": "root", "queueName": f"{tag}-parents", "data": {"r": 1},
        "children": [
            {"name": "mid", "queueName": f"{tag}-mids", "data": {"m": 1}, "children": [
                {"name": "leaf1", "queueName": f"{tag}-children", "data": {"l": 1}},
                {"name": "leaf2", "queueName": f"{tag}-children", "data": {"l": 2}},
            ]},
            {"name": "leaf3", "queueName": f"{tag}-children", "data": {"l": 3}},
        ],
    }  # fmt: skip


def with_parent_opts(opts: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    return lambda tag: {**two_children(tag), "opts": opts}


#: name -> (tree builder, [(queue suffix, finals to wait for)], failing job names)
SCENARIOS: dict[str, tuple[Callable[[str], dict[str, Any]], list[tuple[str, int]], dict[str, str]]] = {
    "basic": (two_children, [("children", 2), ("parents", 1)], {}),
    "two-levels-three-queues": (two_levels, [("children", 3), ("mids", 1), ("parents", 1)], {}),
    "priority-parent": (with_parent_opts({"priority": 3}), [("children", 2)], {}),
    "delayed-parent": (with_parent_opts({"delay": 60_000}), [("children", 2)], {}),
    "child-fails-no-option": (two_children, [("children", 2)], {"c0": "c0 broke"}),
    "child-fails-remove-on-fail": (
        lambda tag: two_children(tag, removeOnFail=True), [("children", 2), ("parents", 1)], {"c0": "c0 broke"}
    ),
    "child-removed-on-complete": (
        lambda tag: two_children(tag, removeOnComplete=True), [("children", 2), ("parents", 1)], {}
    ),
    **{
        f"child-fails-{flag}": (
            lambda tag, flag=flag: two_children(tag, **{FLAG_OPTS[flag]: True}),
            [("children", 2), ("parents", 1)],
            {"c0": "c0 broke"},
        )
        for flag in FLAG_OPTS
    },
}


#: where each scenario leaves its top job (both runs must agree, and agree with this)
EXPECTED_TOP_STATE = {
    "basic": "completed", "two-levels-three-queues": "completed", "priority-parent": "prioritized",
    "delayed-parent": "delayed", "child-fails-no-option": "waiting-children", "child-fails-fpof": "failed",
    "child-fails-cpof": "completed", "child-fails-idof": "completed", "child-fails-rdof": "completed",
    "child-fails-remove-on-fail": "completed", "child-removed-on-complete": "completed",
}  # fmt: skip


def top(v: dict[str, Any]) -> Any:
    return (v.get("parent") or v["root"])["state"]


def view(r: redis.Redis, prefix: str, tag: str) -> dict[str, Any]:
    """Everything of the run ``tag`` (queues ``<tag>-*``) keyed by job name, ids replaced by names."""
    jobs: dict[str, tuple[str, str]] = {}  # job key -> (queue, id)
    for key in r.scan_iter(match=f"{prefix}:{tag}-*", count=1000):
        rest = key[len(prefix) + 1 :]
        queue, _, job_id = rest.partition(":")
        if job_id and ":" not in job_id and r.type(key) == "hash" and job_id != "meta":
            jobs[key] = (queue, job_id)
    names = {key: r.hget(key, "name") for key in jobs}
    by_length = sorted(names.items(), key=lambda kv: -len(kv[0]))
    subst = sorted(((job_id, f"<{names[key]}>") for key, (_q, job_id) in jobs.items()), key=lambda p: -len(p[0]))

    def clean(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for key, name in by_length:  # longest first: "<q>:2" must not eat the start of "<q>:2f0c…"
            text = text.replace(key, f"<{name}>")
        text = text.replace(f"{prefix}:{tag}-", "<prefix>:")
        for job_id, name in subst:
            if len(job_id) >= 16:  # a UUID (counter ids like "1" stay: they match across runs)
                text = text.replace(job_id, name)
        return UUID.sub("<gone>", text)  # the id of a job whose hash is gone (removeOnComplete)

    out: dict[str, Any] = {}
    for key, (queue, job_id) in jobs.items():
        raw = r.hgetall(key)
        state = [s for s in STATES if _holds(r, f"{prefix}:{queue}:{s}", s, job_id)]
        events = [
            (f["event"], f.get("prev"))
            for _i, f in r.xrange(f"{prefix}:{queue}:events")
            if f.get("jobId") == job_id
        ]
        fields = {k: ("<set>" if k in VOLATILE else clean(v)) for k, v in raw.items() if k != "opts"}
        opts = json.loads(raw.get("opts", "{}"))
        opts.pop("attempts", None)  # 0 from Node, 1 from sbqueue: the same for both workers
        out[raw["name"]] = {
            "queue": clean(f"{prefix}:{queue}"),
            "state": state,
            "fields": fields,
            "opts": json.loads(clean(json.dumps(opts, sort_keys=True))),
            "dependencies": sorted(clean(k) for k in r.smembers(key + ":dependencies")),
            "processed": {clean(k): v for k, v in r.hgetall(key + ":processed").items()},
            "failed": {clean(k): v for k, v in r.hgetall(key + ":failed").items()},
            "unsuccessful": [clean(k) for k in r.zrange(key + ":unsuccessful", 0, -1)],
            "events": events,
        }
    return out


def _holds(r: redis.Redis, key: str, state: str, job_id: str) -> bool:
    if state in ("wait", "active", "paused"):
        return job_id in r.lrange(key, 0, -1)
    return r.zscore(key, job_id) is not None


def py_work(r: redis.Redis, prefix: str, queue: str, finals: int, fail: dict[str, str]) -> None:
    def processor(job: sbqueue.Job) -> Any:
        if job.name in fail:
            raise Exception(fail[job.name])
        return job.data

    w = Worker(queue, processor, r, prefix, concurrency=1, drain_delay=0.2).start()
    try:
        wait_for(lambda: w.processed + w.failed_count >= finals, 15, what=f"{finals} finals on {queue}")
    finally:
        w.close(timeout=5)


def node_work(node: NodeDriver, prefix: str, queue: str, finals: int, fail: dict[str, str]) -> None:
    out = node.run(prefix, queue, "work", count=finals, failWith=fail, returnValue="echo", timeoutMs=20_000)
    assert out["stoppedBy"] == "count", out


def run(
    node: NodeDriver, r: redis.Redis, prefix: str, tag: str, scenario: str, *, producer: str, worker: str
) -> dict[str, Any]:
    build, steps, fail = SCENARIOS[scenario]
    tree = build(tag)
    if producer == "node":
        node.run(prefix, tree["queueName"], "addFlow", flow=tree)
    else:
        sbqueue.FlowProducer(r, prefix=prefix).add(tree)
    for suffix, finals in steps:
        if worker == "node":
            node_work(node, prefix, f"{tag}-{suffix}", finals, fail)
        else:
            py_work(r, prefix, f"{tag}-{suffix}", finals, fail)
    time.sleep(0.05)
    return view(r, prefix, tag)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_node_flow_processed_by_sbqueue_workers_as_by_node_workers(
    node: NodeDriver, r: redis.Redis, prefix: str, scenario: str
) -> None:
    reference = run(node, r, prefix, "n", scenario, producer="node", worker="node")
    ours = run(node, r, prefix, "p", scenario, producer="node", worker="py")
    assert ours == reference
    assert top(ours) == [EXPECTED_TOP_STATE[scenario]]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_sbqueue_flow_processed_by_node_workers_as_by_sbqueue_workers(
    node: NodeDriver, r: redis.Redis, prefix: str, scenario: str
) -> None:
    by_node = run(node, r, prefix, "n", scenario, producer="py", worker="node")
    by_us = run(node, r, prefix, "p", scenario, producer="py", worker="py")
    assert by_us == by_node
    assert top(by_us) == [EXPECTED_TOP_STATE[scenario]]


def test_child_stalls_on_a_killed_node_worker_and_sbqueue_recovers_it(
    node: NodeDriver, r: redis.Redis, prefix: str
) -> None:
    flow = sbqueue.FlowProducer(r, prefix=prefix).add(two_children("s"))
    short = {"lockDuration": 800, "stalledInterval": 300}
    with node.spawn(prefix, "s-children", "work", hang=True, workerOpts=short) as proc:
        proc.wait_ready()
        proc.kill9()
    w = Worker("s-children", lambda job: job.data, r, prefix, concurrency=2, stalled_interval=300,
               drain_delay=0.2).start()  # fmt: skip
    try:
        wait_for(lambda: r.zcard(f"{prefix}:s-children:completed") == 2, 15, what="children completed")
    finally:
        w.close(timeout=5)
    assert sbqueue.Queue("s-parents", r, prefix=prefix).get_job_state(flow.job.id) == "waiting"
    assert len(r.hgetall(f"{prefix}:s-parents:{flow.job.id}:processed")) == 2
    assert any(f["event"] == "stalled" for _i, f in r.xrange(f"{prefix}:s-children:events"))


def test_sbqueue_producer_writes_what_node_flowproducer_writes(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    node.run(prefix, "n-parents", "addFlow", flow=two_levels("n"))
    sbqueue.FlowProducer(r, prefix=prefix).add(two_levels("p"))
    ref, ours = view(r, prefix, "n"), view(r, prefix, "p")
    assert ours == ref


def test_child_options_from_python_are_what_node_stores(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    node.run(prefix, "n-parents", "addFlow", flow=two_children("n", failParentOnFailure=True))
    sbqueue.FlowProducer(r, prefix=prefix).add(two_children("p", fail_parent_on_failure=True))
    ref, ours = view(r, prefix, "n")["c0"], view(r, prefix, "p")["c0"]
    assert ours["fields"]["parent"] == ref["fields"]["parent"]
    assert ours["opts"] == ref["opts"]


def test_step_pattern_sbqueue_and_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    """A processor adds a child and waits for it: same states and events whichever side runs the parent."""
    results = {}
    for tag, side in (("n", "node"), ("p", "py")):
        steps = sbqueue.Queue(f"{tag}-steps", r, prefix=prefix)
        steps.add("stepper", {})
        if side == "node":
            out = node.run(prefix, f"{tag}-steps", "work", count=1, idleMs=1500, step={"queue": f"{tag}-kids",
                           "name": "kid"}, returnValue="children", timeoutMs=20_000)  # fmt: skip
            assert out["stoppedBy"] == "idle"
        else:
            kids = sbqueue.Queue(f"{tag}-kids", r, prefix=prefix)

            def step(job: sbqueue.Job, kids: sbqueue.Queue = kids, tag: str = tag) -> Any:
                if not job.data.get("step"):
                    kids.add("kid", {}, parent={"id": job.id, "queue": f"{prefix}:{tag}-steps"})
                    job.update_data({**job.data, "step": 1})
                    if job.move_to_waiting_children():
                        raise sbqueue.WaitingChildrenError()
                return job.get_children_values()

            w = Worker(f"{tag}-steps", step, r, prefix, concurrency=1, drain_delay=0.2).start()
            wait_for(lambda tag=tag: r.zcard(f"{prefix}:{tag}-steps:waiting-children") == 1, 10, what="waiting")
        assert r.zcard(f"{prefix}:{tag}-steps:waiting-children") == 1
        node_work(node, prefix, f"{tag}-kids", 1, {})  # a Node worker runs the child either way
        if side == "node":
            out = node.run(prefix, f"{tag}-steps", "work", count=1, returnValue="children", timeoutMs=20_000)
            assert out["stoppedBy"] == "count"
        else:
            wait_for(lambda tag=tag: r.zcard(f"{prefix}:{tag}-steps:completed") == 1, 10, what="parent completed")
            w.close(timeout=5)
        results[tag] = view(r, prefix, tag)
    assert results["p"] == results["n"]
    assert results["p"]["stepper"]["state"] == ["completed"]


def test_removing_a_child_and_a_parent(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    """Remove the pending child of a one-child flow (the parent goes to wait), and a whole two-level flow."""
    views = {}
    for tag, side in (("n", "node"), ("p", "py")):
        one = sbqueue.FlowProducer(r, prefix=prefix).add(
            {**two_children(tag), "children": two_children(tag)["children"][:1]}
        )
        whole = sbqueue.FlowProducer(r, prefix=prefix).add(two_levels(f"{tag}x"))
        if side == "node":
            assert node.run(prefix, f"{tag}-children", "removeJob", jobId=one.children[0].job.id)["removed"] == 1
            assert node.run(prefix, f"{tag}x-parents", "removeJob", jobId=whole.job.id)["removed"] == 1
        else:
            assert sbqueue.Queue(f"{tag}-children", r, prefix=prefix).remove(one.children[0].job.id)
            assert sbqueue.Queue(f"{tag}x-parents", r, prefix=prefix).remove(whole.job.id)
        views[tag] = (view(r, prefix, tag), view(r, prefix, f"{tag}x"), _removed_events(r, prefix, f"{tag}x"))
    assert views["p"][0] == views["n"][0]
    assert views["p"][0]["parent"]["state"] == ["wait"]
    assert views["p"][1] == views["n"][1] == {}
    assert views["p"][2] == views["n"][2]


def _removed_events(r: redis.Redis, prefix: str, tag: str) -> dict[str, list[tuple[str, str | None]]]:
    out = {}
    for queue in ("parents", "mids", "children"):
        out[queue] = [(f["event"], f.get("prev")) for _i, f in r.xrange(f"{prefix}:{tag}-{queue}:events")
                      if f["event"] in ("removed", "waiting")]  # fmt: skip
    return out


@pytest.mark.parametrize("how", ["clean", "drain", "obliterate"])
def test_clean_drain_obliterate_release_or_delete_parents_as_node(
    node: NodeDriver, r: redis.Redis, prefix: str, how: str
) -> None:
    """Deleting a parent's last pending child in bulk: a parent in another queue goes to wait (no event), one in
    the same queue is deleted with it (BullMQ's "hard" removal)."""
    views = {}
    for tag, side in (("n", "node"), ("p", "py")):
        fp = sbqueue.FlowProducer(r, prefix=prefix)
        fp.add({**two_children(tag), "children": two_children(tag)["children"][:1]})  # parent elsewhere
        fp.add({"name": "same-parent", "queueName": f"{tag}-children",
                "children": [{"name": "same-child", "queueName": f"{tag}-children"}]})  # fmt: skip
        queue = f"{tag}-children"
        if how == "clean":
            # the waiting children are what is old enough to clean
            params: dict[str, Any] = {"grace": 0, "limit": 0, "type": "wait"}
        elif how == "drain":
            params = {"delayed": False}
        else:
            params = {"force": True}
        time.sleep(0.01)
        if side == "node":
            node.run(prefix, queue, how, **params)
        else:
            q = sbqueue.Queue(queue, r, prefix=prefix)
            if how == "clean":
                q.clean(0, 0, "wait")
            elif how == "drain":
                q.drain()
            else:
                q.obliterate(force=True)
        views[tag] = view(r, prefix, tag)
    assert views["p"] == views["n"]
    assert views["p"]["parent"]["state"] == ["wait"]
    assert "same-parent" not in views["p"]


def test_get_flow_reads_a_node_flow(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    tree = node.run(prefix, "n-parents", "addFlow", flow=two_levels("n"))["tree"]
    got = sbqueue.Queue("n-parents", r, prefix=prefix).get_flow(tree["id"])
    assert got is not None

    def shape(n: Any) -> Any:
        return (n.job.name, sorted(shape(c) for c in n.children))

    def node_shape(n: dict[str, Any]) -> Any:
        return (n["name"], sorted(node_shape(c) for c in n.get("children") or []))

    assert shape(got) == node_shape(tree)
    assert node.run(prefix, "n-parents", "getFlow", jobId=tree["id"])["tree"]["id"] == tree["id"]
    info = node.run(prefix, "n-parents", "flowInfo", jobId=tree["id"])
    job = sbqueue.Queue("n-parents", r, prefix=prefix).get_job(tree["id"])
    assert job is not None
    assert job.get_dependencies_count() == info["counts"]
    deps = job.get_dependencies()
    assert sorted(deps["unprocessed"]) == sorted(info["dependencies"]["unprocessed"])


@pytest.mark.parametrize("others", [0, 1])
def test_flow_reusing_a_completed_job_as_child(node: NodeDriver, r: redis.Redis, prefix: str, others: int) -> None:
    """A node whose custom id is an existing completed job counts as done (its return value recorded); a parent
    whose children were all done already is released once the whole flow is written (deferred release)."""
    views = {}
    for tag, side in (("n", "node"), ("p", "py")):
        sbqueue.Queue(f"{tag}-children", r, prefix=prefix).add("dup", {"d": 1}, job_id="done-1")
        py_work(r, prefix, f"{tag}-children", 1, {})
        children = [{"name": "dup", "queueName": f"{tag}-children", "opts": {"jobId": "done-1"}}]
        children += [{"name": f"c{i}", "queueName": f"{tag}-children", "data": {"i": i}} for i in range(others)]
        flow = {"name": "parent", "queueName": f"{tag}-parents", "children": children}
        if side == "node":
            node.run(prefix, f"{tag}-parents", "addFlow", flow=flow)
        else:
            sbqueue.FlowProducer(r, prefix=prefix).add(flow)
        views[tag] = view(r, prefix, tag)
    assert views["p"] == views["n"]
    assert views["p"]["parent"]["processed"] == {"<dup>": '{"d":1}'}
    assert views["p"]["parent"]["state"] == (["wait"] if others == 0 else ["waiting-children"])


def test_queue_add_with_a_parent_as_node(node: NodeDriver, r: redis.Redis, prefix: str) -> None:
    """``Queue.add(..., parent=..., fail_parent_on_failure=True)`` writes what Node's ``queue.add`` with
    ``opts.parent`` writes (the same id from the queue's counter, hash fields, opts, events)."""
    views = {}
    for tag, side in (("n", "node"), ("p", "py")):
        one_child = {**two_children(tag), "children": two_children(tag)["children"][:1]}
        flow = sbqueue.FlowProducer(r, prefix=prefix).add(one_child)
        parent = {"id": flow.job.id, "queue": f"{prefix}:{tag}-parents"}
        if side == "node":
            out = node.run(prefix, f"{tag}-children", "add", jobs=[{"name": "extra", "data": {"e": 1},
                           "opts": {"parent": parent, "failParentOnFailure": True}}])  # fmt: skip
            assert out["ids"] == ["2"]
        else:
            job = sbqueue.Queue(f"{tag}-children", r, prefix=prefix).add("extra", {"e": 1}, parent=parent,
                                                                         fail_parent_on_failure=True)  # fmt: skip
            assert job.id == "2"
        views[tag] = view(r, prefix, tag)
    assert views["p"] == views["n"]
    assert views["p"]["parent"]["dependencies"] == sorted(["<c0>", "<extra>"])


@pytest.mark.parametrize("flag", ["fpof", "idof"])
def test_retrying_a_failed_child_as_node(node: NodeDriver, r: redis.Redis, prefix: str, flag: str) -> None:
    """Retrying a child that failed its parent (fpof) or was ignored (idof), then completing it: BullMQ does not
    touch the parent again (it is no longer a pending dependency) — neither does sbqueue."""
    views = {}
    for tag, side in (("n", "node"), ("p", "py")):
        run(node, r, prefix, tag, f"child-fails-{flag}", producer="node", worker=side)
        c0 = next(k for k in r.scan_iter(match=f"{prefix}:{tag}-children:*", _type="HASH") if r.hget(k, "name") == "c0")
        c0_id = c0.rsplit(":", 1)[1]
        if side == "node":
            node.run(prefix, f"{tag}-children", "retryJob", jobId=c0_id, state="failed")
            node_work(node, prefix, f"{tag}-children", 1, {})
        else:
            sbqueue.Queue(f"{tag}-children", r, prefix=prefix).retry_job(c0_id)
            py_work(r, prefix, f"{tag}-children", 1, {})
        views[tag] = view(r, prefix, tag)
    assert views["p"] == views["n"]
    assert views["p"]["c0"]["state"] == ["completed"]


@pytest.mark.parametrize("child_opts", [{}, {"removeOnFail": True}, {"failParentOnFailure": True}])
def test_one_queue_flow_stream_order_as_node(node: NodeDriver, r: redis.Redis, prefix: str,
                                             child_opts: dict[str, Any]) -> None:  # fmt: skip
    """Parent and children in one queue: the whole events stream, in order (the parent's release comes before
    the finishing child's own event, as in BullMQ), is the same with sbqueue's worker as with Node's."""
    streams = {}
    for tag, side in (("n", "node"), ("p", "py")):
        flow = {"name": "parent", "queueName": f"{tag}-one", "data": {},
                "children": [{"name": "c0", "queueName": f"{tag}-one", "data": {"c": 0}, "opts": child_opts},
                             {"name": "c1", "queueName": f"{tag}-one", "data": {"c": 1}}]}  # fmt: skip
        node.run(prefix, f"{tag}-one", "addFlow", flow=flow)
        finals = 3 if child_opts else 2  # without an option the parent keeps waiting
        if side == "node":
            node_work(node, prefix, f"{tag}-one", finals, {"c0": "c0 broke"})
        else:
            py_work(r, prefix, f"{tag}-one", finals, {"c0": "c0 broke"})
        entries = r.xrange(f"{prefix}:{tag}-one:events")
        names = {f["jobId"]: f["name"] for _i, f in entries if f["event"] == "added"}
        streams[tag] = [(f["event"], names.get(f.get("jobId", ""), f.get("jobId")), f.get("prev"))
                        for _i, f in entries if f["event"] != "drained"]  # fmt: skip
    assert streams["p"] == streams["n"]
