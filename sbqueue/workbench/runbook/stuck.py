"""The stuck-jobs runbook: jobs wait but nothing happens — find the first cause that holds and fix what is safe.

Causes, most specific first: parents stuck in waiting-children, paused, rate-limited, global concurrency
reached, no workers, all workers busy, delayed jobs not due yet. Only releasing stuck parents (per BullMQ's rule)
and resuming a paused queue are automatic; the rest is a plan for a human.
"""

from __future__ import annotations

import time
from typing import Any

from sbqueue.engine._sync.queue import Queue
from sbqueue.inspection import Inspector
from sbqueue.inspection.flows import NOTHING_PENDING, fix_for, stuck_parents
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.progress import WATCH_S, watch_progress
from sbqueue.workbench.runbook.scope import each_queue


def diagnose_stuck(queue: str | Queue | None, connection: Any = None, prefix: str = "bull", *,
                   watch_s: float = WATCH_S) -> Finding:  # fmt: skip
    """Jobs are waiting but nothing happens: parents stuck in waiting-children? paused? rate-limited? global
    concurrency reached? no workers? all workers busy? delayed jobs not due yet? The first check that holds (in
    that order: the most specific first) is the cause; every check that holds is listed as evidence. Stuck
    parents with nothing pending are released (per their own options) — only where BullMQ's rule says so.
    ``queue`` None: every queue of the prefix. Verifying a fix watches ``watch_s`` seconds for jobs being
    fetched."""
    return each_queue("stuck-jobs", _stuck, queue, connection, prefix, watch_s=watch_s)


def _stuck(q: Queue, *, watch_s: float) -> Finding:
    insp = Inspector(q.client, q.prefix)
    counts = q.get_job_counts()
    meta = q.get_meta()
    workers = insp.workers(q.name)
    runnable = counts["waiting"] + counts["prioritized"]
    limit_ttl = q.client.pttl(q.keys.key("limiter"))
    used = int(q.client.get(q.keys.key("limiter")) or 0)
    limit_max = int(meta["max"]) if meta.get("max") else None
    concurrency = int(meta["concurrency"]) if meta.get("concurrency") else None
    next_delayed = q.get_job_ids("delayed", 0, 0, asc=True)
    stuck = stuck_parents(insp._ctx, q.name)
    releasable = [row["job_id"] for row in stuck if row["stuck"] == NOTHING_PENDING]
    checks = [
        ("stuck parents", bool(stuck),
         f"{len(stuck)} waiting-children parents nothing will release"
         + (f" (e.g. {stuck[0]['job_id']}: {stuck[0]['stuck']})" if stuck else "")),
        ("nothing waiting", runnable == 0 and counts["delayed"] == 0,
         f"{runnable} runnable, {counts['delayed']} delayed"),
        ("paused", bool(meta.get("paused")),
         f"meta.paused={meta['paused']!r} with {runnable} runnable jobs" if meta.get("paused") else "not paused"),
        ("rate limited", limit_ttl > 0 and (used >= (limit_max or 1)),
         f"limiter={used}/{limit_max or 'manual'} for another {max(limit_ttl, 0) / 1000:.1f} s"),
        ("global concurrency reached", concurrency is not None and counts["active"] >= concurrency,
         f"{counts['active']} active of global concurrency {'(not set)' if concurrency is None else concurrency}"),
        ("no workers", runnable > 0 and len(workers) == 0, f"{len(workers)} worker connections on the queue"),
        ("all workers busy", runnable > 0 and len(workers) > 0 and counts["active"] > 0,
         f"{counts['active']} active, {runnable} waiting, {len(workers)} workers"),
        ("delayed not due", runnable == 0 and counts["delayed"] > 0,
         f"{counts['delayed']} delayed; next: job {next_delayed[0] if next_delayed else '(none)'}"),
    ]  # fmt: skip
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    cause = next((c for c, r, _ in checks if r), "not stuck")
    plan: list[dict[str, Any]] = []
    if cause == "stuck parents":
        if releasable:
            plan.append({"action": "release parents", "target": q.name, "jobs": len(releasable), "automatic": True,
                         "detail": f"{fix_for(NOTHING_PENDING)}: {', '.join(releasable[:5])}"})  # fmt: skip
        for row in stuck:
            if row["stuck"] != NOTHING_PENDING:
                plan.append({"action": "see to the parent's children", "target": row["job_id"], "jobs": 1,
                             "automatic": False, "detail": f"{row['stuck']}; {fix_for(row['stuck'])}"})  # fmt: skip
    elif cause == "paused":
        plan.append({"action": "resume", "target": q.name, "jobs": runnable, "automatic": True,
                     "detail": "resume the queue; workers fetch again"})  # fmt: skip
        if not len(workers) and runnable:
            plan.append({"action": "start a worker", "target": q.name, "jobs": runnable, "automatic": False,
                         "detail": f"no worker is connected: sbqueue worker {q.name} MODULE:FUNCTION "
                         f"--prefix {q.prefix}"})  # fmt: skip
    elif cause == "no workers":
        plan.append({"action": "start a worker", "target": q.name, "jobs": runnable, "automatic": False,
                     "detail": f"sbqueue worker {q.name} MODULE:FUNCTION --prefix {q.prefix}"})  # fmt: skip
    elif cause == "rate limited":
        plan.append({"action": "wait for the rate-limit window", "target": q.name, "jobs": runnable,
                     "automatic": False, "detail": f"fetching resumes in {limit_ttl / 1000:.0f} s; "
                     "lower the limit with set_global_rate_limit if it is too strict"})  # fmt: skip
    elif cause == "global concurrency reached":
        plan.append(
            {
                "action": "raise global concurrency",
                "target": q.name,
                "jobs": runnable,
                "automatic": False,
                "detail": "raise set_global_concurrency(n), or see why jobs are slow",
            }
        )
    elif cause == "all workers busy":
        plan.append({"action": "add workers", "target": q.name, "jobs": runnable, "automatic": False,
                     "detail": "throughput is below the arrival rate; scale workers or concurrency"})  # fmt: skip

    def apply() -> list[str]:
        done = []
        if cause == "stuck parents":
            for job_id in releasable:  # the script re-checks BullMQ's rule: released only if nothing is pending
                if int(q._run("release_parent", [job_id, int(time.time() * 1000)])) == 1:
                    done.append(f"released parent {job_id}")
        if cause == "paused":
            q.resume()
            done.append(f"resumed {q.name}")
        return done

    def verify() -> tuple[bool, str, str | None]:
        again = _stuck(q, watch_s=watch_s)
        if again.cause == cause and cause not in OK_STUCK:
            return False, f"cause now: {again.cause}", None
        moving, seen, needed = watch_progress(q, watch_s)
        return moving, f"cause now: {again.cause}; {seen}", needed

    summary = {
        "stuck parents": f"{len(stuck)} parents wait for children although nothing will release them",
        "not stuck": "nothing is waiting: the queue is not stuck",
        "nothing waiting": "nothing is waiting or delayed: the queue is not stuck",
        "paused": f"the queue is paused with {runnable} runnable jobs",
        "no workers": f"{runnable} jobs are waiting and no worker is connected",
        "rate limited": f"the rate limit is used up for another {limit_ttl / 1000:.0f} s",
        "global concurrency reached": f"global concurrency {concurrency} is reached",
        "all workers busy": f"workers are busy: {runnable} jobs wait behind {counts['active']} active",
        "delayed not due": f"not stuck: {counts['delayed']} jobs are delayed and none is due yet",
    }[cause]
    return Finding(
        "stuck-jobs", q.name, cause, summary, df, frame_of(plan, PLAN_COLUMNS), apply, verify, ok=cause in OK_STUCK,
        audit_to=(q.client, q.prefix),
    )


#: stuck-jobs causes that mean nothing is wrong
OK_STUCK = ("not stuck", "nothing waiting", "delayed not due")
