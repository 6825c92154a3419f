"""The stalled-jobs runbook: active jobs whose lock or worker is gone — requeue (or fail) them safely.

Jobs whose lock is still held are left alone unless forced: their worker may still be alive.
"""

from __future__ import annotations

import time
from typing import Any

from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import InvalidOptionError
from sbqueue.inspection import Inspector
from sbqueue.inspection.stalled import HASH_MISSING, LOCK_LOST, ORPHANED
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.progress import WATCH_S, watch_progress
from sbqueue.workbench.runbook.scope import each_queue


def diagnose_stalled(queue: str | Queue | None, connection: Any = None, prefix: str = "bull", *,
                     mode: str = "requeue", force: bool = False, max_stalled_count: int = 1,
                     watch_s: float = WATCH_S) -> Finding:  # fmt: skip
    """Active jobs whose lock is gone or whose worker is gone. Fix: requeue (or fail) them safely —
    jobs still locked are left alone unless ``force`` (their worker may still be alive). ``queue`` None:
    every queue of the prefix. Verifying a requeue watches ``watch_s`` seconds for jobs being fetched."""
    if mode not in ("requeue", "fail"):
        raise InvalidOptionError(f"mode must be 'requeue' or 'fail', got {mode!r}", option="mode")
    return each_queue("stalled-jobs", _stalled, queue, connection, prefix, mode=mode, force=force,
                       max_stalled_count=max_stalled_count, watch_s=watch_s)  # fmt: skip


def _stalled(q: Queue, *, mode: str, force: bool, max_stalled_count: int, watch_s: float) -> Finding:
    insp = Inspector(q.client, q.prefix)
    stalled = insp.stalled(q.name, max_stalled_count=max_stalled_count)
    no_worker = stalled[~stalled["worker_connected"]] if len(stalled) else stalled
    recoverable = stalled[stalled["verdict"].isin([LOCK_LOST, ORPHANED])] if len(stalled) else stalled
    stuck_locked = (
        no_worker[~no_worker["verdict"].isin([LOCK_LOST, ORPHANED, HASH_MISSING])] if len(no_worker) else no_worker
    )
    targets = list(recoverable["id"]) + (list(stuck_locked["id"]) if force else [])
    checks = [
        ("active jobs", len(stalled) > 0, f"{len(stalled)} active"),
        ("lock gone", len(recoverable) > 0, _ids(recoverable["id"])),
        ("worker gone, lock still held", len(stuck_locked) > 0, _ids(stuck_locked["id"])),
        ("hash missing", bool(len(stalled)) and bool((stalled["verdict"] == HASH_MISSING).any()),
         "ids in active without a job hash (see consistency())"),
    ]  # fmt: skip
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    plan = []
    if targets:
        plan.append({"action": mode, "target": ",".join(targets[:50]), "jobs": len(targets), "automatic": True,
                     "detail": "back to the tail of wait (runs next), stalled counter +1" if mode == "requeue"
                     else "mark failed: 'stalled: recovered by operator'"})  # fmt: skip
    if len(stuck_locked) and not force:
        ttl = float(stuck_locked["lock_ttl_s"].max())
        plan.append({"action": "wait for lock expiry", "target": ",".join(stuck_locked["id"]),
                     "jobs": len(stuck_locked), "automatic": False,
                     "detail": f"locks expire within {ttl:.1f} s; or rerun with force=True"})  # fmt: skip
    cause = "stalled jobs" if targets or len(stuck_locked) else "no stalled jobs"
    locked_note = f" ({len(stuck_locked)} still locked)" if len(stuck_locked) else ""
    summary = (f"{len(targets)} active jobs have lost their worker{locked_note}"
               if cause == "stalled jobs" else f"{len(stalled)} active jobs, all held by live workers" if len(stalled)
               else "no job is active, so none is stalled")  # fmt: skip

    def apply() -> list[str]:
        if not targets:
            return []
        codes = q._run("recover_stalled", [int(time.time() * 1000), mode, "1" if force else "0",
                                            "stalled: recovered by operator", len(targets), *targets])  # fmt: skip
        done = [t for t, c in zip(targets, codes, strict=True) if int(c) == 1]
        return [f"{mode}d job {t}" for t in done]

    def verify() -> tuple[bool, str, str | None]:
        left = set(q.get_job_ids("active")) & set(targets)
        seen = f"{len(left)} of the {len(targets)} targeted jobs still active"
        if left or mode == "fail":
            return not left, seen, None
        moving, watched, needed = watch_progress(q, watch_s)
        return moving, f"{seen}; {watched}", needed

    return Finding(
        "stalled-jobs",
        q.name,
        cause,
        summary,
        df,
        frame_of(plan, PLAN_COLUMNS),
        apply,
        verify,
        ok=cause == "no stalled jobs",
        audit_to=(q.client, q.prefix),
    )


def _ids(ids: Any) -> str:
    """Job ids for evidence text: ``"jobs 3, 2, 1"`` (at most 20, then how many more), or ``"none"``."""
    ids = [str(i) for i in ids]
    if not ids:
        return "none"
    return "jobs " + ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
