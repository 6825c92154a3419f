"""Run by the wheel-installed interpreter (``python smoke_scripts.py URL PREFIX``) from a directory outside the
checkout: every Lua script of the installed package loads (with its includes) and each one runs through the public
API it backs. Prints one JSON line: what ran, for the test to check. Any failure raises (exit 1)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import sbqueue
from sbqueue import runbook, scenarios
from sbqueue._core import scripts


def wait(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def main(url: str, prefix: str) -> dict[str, Any]:
    client = sbqueue.connect(url)
    names = scripts.script_names()
    assert names == sorted(scripts.SPECS), (names, sorted(scripts.SPECS))  # every spec has a shipped file
    shas = {name: client.script_load(scripts.source(name)) for name in names}  # compiles on the server
    used: set[str] = set()

    q = sbqueue.Queue("scripts", client, prefix=prefix)
    first = q.add("one", {"n": 1}, attempts=2)  # add_job
    bulk = q.add_bulk([{"name": "many", "data": {"n": i}} for i in range(5)])  # add_jobs
    late = q.add("late", {"n": 9}, delay=60_000)  # add_job (delayed)
    used |= {"add_job", "add_jobs"}
    late.change_delay(120_000)  # reschedule_job
    first.change_priority(3)  # reschedule_job
    late.promote()  # promote
    assert q.get_job_state(late.id) == "waiting"
    q.update_job_data(first.id, {"n": 1, "updated": True})  # update_job
    q.update_job_progress(first.id, 10)  # update_job
    used |= {"reschedule_job", "promote", "update_job"}
    q.pause()  # pause
    assert q.is_paused()
    q.resume()  # pause (resume)
    used.add("pause")
    assert q.remove(bulk[-1].id)  # remove_job
    used.add("remove_job")
    q.upsert_job_scheduler("tick", every=60_000, name="tick", data={"t": 1})  # upsert_scheduler
    used.add("upsert_scheduler")

    seen: list[str] = []

    def process(job: Any) -> Any:
        seen.append(job.name)
        if job.name == "many" and job.data["n"] == 0:
            raise RuntimeError("planned failure")
        time.sleep(0.6 if job.name == "one" else 0)  # outlives half the lock: the worker extends it
        return {"double": 2 * job.data.get("n", 0)}

    # a short lock and stalled interval: extend_locks and stalled_check run within the test's time
    worker = sbqueue.Worker("scripts", process, client, prefix, concurrency=4, lock_duration=1000,
                            stalled_interval=300, dead_letter_queue="scripts-dlq").start()  # fmt: skip
    try:
        # "one", "late", "many" 1-3 (4 was removed, 0 fails) and the scheduler's "tick" iteration complete
        wait(lambda: q.get_job_counts("completed", "failed") == {"completed": 6, "failed": 1}, "jobs to finish")
        time.sleep(0.7)  # at least one more stalled check
    finally:
        worker.close()
    used |= {"finish_and_fetch", "extend_locks", "stalled_check", "schedule_next"}  # the tick iteration too
    assert "tick" in seen, seen  # the scheduler's iteration ran, and schedule_next made the next one
    assert q.get_job(first.id).returnvalue == {"double": 2}  # type: ignore[union-attr]
    dlq = sbqueue.Queue("scripts-dlq", client, prefix=prefix)  # the failed job's dead letter goes back
    assert list(dlq.replay_dead_letters(dry_run=False)["action"]) == ["replayed"]  # replay_dead_letters
    used.add("replay_dead_letters")
    # settle_dead_letters (a replay across Cluster slots), forced: the new job's id is derived from the letter
    other = sbqueue.Queue("scripts-other", client, prefix=prefix)
    other.add("again", {"n": 2})

    def fail(job: Any) -> None:
        raise RuntimeError("planned failure")

    worker = sbqueue.Worker("scripts-other", fail, client, prefix, dead_letter_queue="scripts-dlq").start()
    try:
        wait(lambda: dlq.get_job_counts("waiting")["waiting"] == 1, "a second letter")
    finally:
        worker.close()
    from sbqueue.engine._sync import dead_letters as sync_dead

    same_slot, sync_dead._same_slot = sync_dead._same_slot, lambda *_args: False  # type: ignore[assignment]
    try:
        across = dlq.replay_dead_letters(dry_run=False)
    finally:
        sync_dead._same_slot = same_slot  # type: ignore[assignment]
    assert list(across["action"]) == ["replayed"] and across["new_job_id"].iloc[0].startswith("rp-"), across
    used.add("settle_dead_letters")
    other.obliterate(force=True)
    dlq.obliterate(force=True)
    assert q.retry_jobs("failed") == 1  # retry_jobs
    used.add("retry_jobs")
    assert q.remove_job_scheduler("tick")  # remove_scheduler
    used.add("remove_scheduler")
    removed = q.clean(0, 1000, "completed")  # clean
    assert len(removed) == 6, removed
    used.add("clean")
    assert q.drain() >= 1  # drain: the retried job is waiting again
    used.add("drain")
    manual = sbqueue.Worker("scripts", None, client, prefix)  # processing by hand: finish_and_fetch, extend_locks
    q.add("by-hand", {"n": 5})
    job = manual.get_next_job("smoke-token", block=False)
    assert job is not None and job.name == "by-hand" and job.token == "smoke-token", job
    job.extend_lock("smoke-token", 5000)
    assert job.move_to_completed({"ok": True}, "smoke-token") is None
    assert q.get_job_state(job.id) == "completed"
    manual.close()

    planted = scenarios.stalled(client, prefix, "stalled-smoke", jobs=2, lock_duration=1000)  # a worker killed -9
    finding = runbook.diagnose_stalled("stalled-smoke", client, prefix, force=True)
    assert len(finding.apply(confirm=True)) == len(planted.job_ids)  # recover_stalled
    used.add("recover_stalled")
    with tempfile.TemporaryDirectory() as tmp:  # backup_read: a backup of the queue, restored under another name
        summary = q.export(os.path.join(tmp, "q.sbq.gz"))
        copy = sbqueue.Queue("scripts-copy", client, prefix=prefix)
        assert copy.import_(os.path.join(tmp, "q.sbq.gz")).total_jobs == summary.total_jobs
        assert copy.get_job_counts() == q.get_job_counts()
        copy.obliterate(force=True)
    used.add("backup_read")
    used |= flows(client, prefix)
    q.obliterate(force=True)  # obliterate
    sbqueue.Queue("stalled-smoke", client, prefix=prefix).obliterate(force=True)
    used.add("obliterate")
    assert used == set(names), sorted(set(names) - used)  # this smoke touched every script
    return {"scripts": names, "shas": shas, "file": sbqueue.__file__}


def flows(client: Any, prefix: str) -> set[str]:
    """The flow scripts: a tree added, children detached and removed, a parent released, the step pattern."""
    kids = sbqueue.Queue("flow-kids", client, prefix=prefix)
    parents = sbqueue.Queue("flow-parents", client, prefix=prefix)
    tree = sbqueue.FlowProducer(client, prefix=prefix).add({  # add_flow
        "name": "parent", "queue_name": "flow-parents", "data": {},
        "children": [{"name": f"kid{i}", "queue_name": "flow-kids", "data": {"i": i}} for i in range(3)],
    })  # fmt: skip
    parent_id, kid_ids = tree.job.id, [child.job.id for child in tree.children]
    assert parents.get_job_state(parent_id) == "waiting-children"
    assert kids.remove_child_dependency(kid_ids[0])  # remove_child_dependency
    parents.remove_unprocessed_children(parent_id)  # remove_unprocessed_children: nothing pending, released
    assert parents.get_job_state(parent_id) == "waiting" and kids.get_job(kid_ids[1]) is None
    stuck = sbqueue.FlowProducer(client, prefix=prefix).add(
        {"name": "stuck", "queue_name": "flow-parents", "data": {}, "children": [
            {"name": "gone", "queue_name": "flow-kids", "data": {}}]})  # fmt: skip
    client.srem(f"{prefix}:flow-parents:{stuck.job.id}:dependencies", f"{prefix}:flow-kids:{stuck.children[0].job.id}")
    assert int(parents._run("release_parent", [stuck.job.id, int(time.time() * 1000)])) == 1  # release_parent
    assert parents.get_job_state(stuck.job.id) == "waiting"
    parents.obliterate(force=True)

    def step(job: Any) -> Any:
        if job.data.get("step", 0) == 0:
            kids.add("kid", {}, parent={"id": job.id, "queue": f"{prefix}:flow-steps"})
            job.update_data({"step": 1})
            if job.move_to_waiting_children():  # move_to_waiting_children
                raise sbqueue.WaitingChildrenError()
        return job.get_children_values()

    steps = sbqueue.Queue("flow-steps", client, prefix=prefix)
    stepper = steps.add("stepper", {})
    step_worker = sbqueue.Worker("flow-steps", step, client, prefix, drain_delay=0.5).start()
    kid_worker = sbqueue.Worker("flow-kids", lambda job: "kid-done", client, prefix, drain_delay=0.5).start()
    try:
        wait(lambda: steps.get_job_state(stepper.id) == "completed", "the step-pattern parent to complete")
    finally:
        step_worker.close()
        kid_worker.close()
    assert list(steps.get_job(stepper.id).returnvalue.values()) == ["kid-done"]  # type: ignore[union-attr]
    steps.obliterate(force=True)
    kids.obliterate(force=True)
    return {
        "add_flow",
        "remove_child_dependency",
        "remove_unprocessed_children",
        "release_parent",
        "move_to_waiting_children",
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
