"""Does a queue make progress after a fix? The check behind every ``verify()`` that needs workers to fetch jobs.

Removing the cause (resuming, requeueing, retrying) is not a fix until a worker actually fetches the jobs:
:func:`watch_progress` watches the job counts for a short window and, for retried jobs, that none failed again.
"""

from __future__ import annotations

import time

from sbqueue.engine._sync.queue import Queue

#: how long apply/verify watches a queue for jobs being fetched (seconds)
WATCH_S = 3.0


def watch_progress(q: Queue, window_s: float = WATCH_S, ids: list[str] | None = None) -> tuple[bool, str, str | None]:
    """Can the queue make progress? (yes?, what was seen, what a human must do). Needs a connected worker and
    jobs actually fetched within ``window_s``; with ``ids`` (retried jobs), none of them may fail again."""
    start_cmd = f"start a worker: sbqueue worker {q.name} MODULE:FUNCTION --prefix {q.prefix}"
    states = ("waiting", "prioritized", "active", "completed", "failed")
    before = q.get_job_counts(*states)
    if before["waiting"] + before["prioritized"] + before["active"] == 0:
        # a fast worker may have fetched (and failed) every retried job before we looked
        again = _failed_again(q, ids)
        if again:
            return again
        return True, "nothing left waiting or active (the jobs were fetched)", None
    if not q.get_workers():
        return False, "no worker is connected to fetch the jobs", start_cmd
    deadline = time.monotonic() + window_s
    seen = ""
    while True:
        now = q.get_job_counts(*states)
        fetched = (before["waiting"] + before["prioritized"]) - (now["waiting"] + now["prioritized"])
        finished = (now["completed"] + now["failed"]) - (before["completed"] + before["failed"])
        if fetched > 0 or finished > 0 or now["waiting"] + now["prioritized"] == 0:
            seen = f"jobs are being fetched ({max(fetched, 0)} fewer waiting, {max(finished, 0)} finished)"
            if ids is None:
                return True, seen, None
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if ids is not None:
        again = _failed_again(q, ids)
        if again:
            return again
        if seen:
            return True, seen + f"; none of the {len(ids)} retried jobs failed again within {window_s:g} s", None
    return (
        False,
        f"no job was fetched within {window_s:g} s although {len(q.get_workers())} workers are connected",
        "check the workers: they are connected but fetch nothing (busy, stuck or limited)",
    )


def _failed_again(q: Queue, ids: list[str] | None) -> tuple[bool, str, str | None] | None:
    """The verdict when some of the retried ``ids`` are back in failed, else None."""
    if not ids:
        return None
    failed_again = set(ids) & set(q.get_job_ids("failed"))
    if not failed_again:
        return None
    return (
        False,
        f"{len(failed_again)} of the {len(ids)} retried jobs failed again",
        "fix the cause of the failures (code or data) before retrying them again",
    )
