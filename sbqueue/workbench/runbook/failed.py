"""The failed-jobs runbook: failure signatures, each classified transient or permanent, and a batched retry/remove.

Only transient failures (timeouts, rate limits, connection errors) are retried by default: retrying a
permanent one (bad data, validation, the same error on every attempt) fails again, so the plan says why not.
"""

from __future__ import annotations

import re
from typing import Any

from sbqueue._core import options as _opts
from sbqueue.engine._sync.queue import Queue
from sbqueue.errors import InvalidOptionError, SbqueueError
from sbqueue.inspection import Inspector
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.progress import WATCH_S, watch_progress
from sbqueue.workbench.runbook.scope import each_queue

#: the two classes of a failure signature (:func:`classify_failure`)
TRANSIENT, PERMANENT = "transient", "permanent"
_PERMANENT = re.compile(r"invalid|validation|valueerror|keyerror|typeerror|attributeerror|indexerror|missing|"
                        r"not found|bad (data|request|input)|malformed|schema|unprocessable|\b(400|404|422)\b",
                        re.IGNORECASE)  # fmt: skip
_TRANSIENT = re.compile(r"time(d)? ?out|timeouterror|\b429\b|too many requests|rate.?limit|connection|econn|"
                        r"reset by peer|unavailable|temporar|try again|\b(502|503|504)\b|broken pipe",
                        re.IGNORECASE)  # fmt: skip


def classify_failure(signature: str, *, every_attempt: bool = False) -> str:
    """``"transient"`` (timeouts, 429/rate limits, connection errors: a retry may succeed) or ``"permanent"``
    (validation, KeyError, bad data, or — ``every_attempt`` — the same error on every attempt: a retry fails
    again). An error matching neither counts as permanent (retrying blindly is not a fix)."""
    if _PERMANENT.search(signature) or every_attempt:
        return PERMANENT
    return TRANSIENT if _TRANSIENT.search(signature) else PERMANENT


def diagnose_failed(queue: str | Queue | None, connection: Any = None, prefix: str = "bull", *,
                    signature: str | None = None, name: str | None = None, since: Any = None, action: str = "retry",
                    batch: int = 500, retry_permanent: bool = False, watch_s: float = WATCH_S) -> Finding:  # fmt: skip
    """Failure signatures, biggest first, each classified transient or permanent (:func:`classify_failure`).
    Fix: retry (or remove) the chosen jobs in batches — by default the transient signatures; narrow with
    ``signature`` (substring), job ``name`` and/or ``since``. Retrying a permanent signature is not planned
    unless ``retry_permanent`` (or ``action="remove"``): the plan says why. ``queue`` None: every queue."""
    if action not in ("retry", "remove"):
        raise InvalidOptionError(f"action must be 'retry' or 'remove', got {action!r}", option="action")
    if signature is not None and not isinstance(signature, str):
        raise InvalidOptionError(f"signature must be a substring (str) or None, got {signature!r}", option="signature")
    if not isinstance(retry_permanent, bool):
        raise InvalidOptionError(f"retry_permanent must be True or False, got {retry_permanent!r}",
                                 option="retry_permanent")  # fmt: skip
    batch = _opts.validate_count(batch, "batch", minimum=1)
    return each_queue("failed-jobs", _failed, queue, connection, prefix, signature=signature, name=name,
                       since=since, action=action, batch=batch, retry_permanent=retry_permanent,
                       watch_s=watch_s)  # fmt: skip


def _failed(q: Queue, *, signature: str | None, name: str | None, since: Any, action: str, batch: int,
            retry_permanent: bool, watch_s: float) -> Finding:  # fmt: skip
    insp = Inspector(q.client, q.prefix, progress=False)
    groups = insp.failures(q.name, name=name, since=since)
    chosen = groups
    if signature and len(groups):
        chosen = groups[groups["signature"].str.contains(signature, regex=False)]
    attempts: dict[str, int] = {}
    if len(groups):
        jobs = insp.jobs(q.name, "failed")
        if len(jobs):
            attempts = dict(zip(jobs["id"].astype(str), jobs["attempts_made"].fillna(0).astype(int), strict=True))
    classes = {}
    for _, row in groups.iterrows():
        made = [attempts.get(str(i), 0) for i in row["ids"]]
        every = bool(made) and min(made) > 1  # retried, and it ended in this same error every time
        classes[row["signature"]] = classify_failure(str(row["signature"]), every_attempt=every)
    plan = []
    ids: list[str] = []
    for _, row in chosen.iterrows():
        kind = classes[row["signature"]]
        if action == "retry" and kind == PERMANENT and not retry_permanent:
            plan.append({"action": "fix the cause", "target": str(row["signature"])[:120], "jobs": int(row["count"]),
                         "automatic": False,
                         "detail": "permanent failure (bad data, validation, or the same error on every attempt): "
                         "retrying would fail again, so no retry is planned; fix the data or code, then retry "
                         "with signature=... retry_permanent=True, or remove them with action='remove'"})  # fmt: skip
            continue
        ids += [str(i) for i in row["ids"]]
    if len(groups) and not len(chosen):
        plan.append({"action": "choose a signature", "target": str(signature), "jobs": 0, "automatic": False,
                     "detail": f"no failure signature contains {signature!r}: pick one from the table"})  # fmt: skip
    if ids:
        plan.insert(0, {"action": action, "target": signature or name or (str(since) if since else "transient"),
                        "jobs": len(ids), "automatic": True,
                        "detail": f"{action} {len(ids)} failed jobs in batches of {batch}"})  # fmt: skip
    checks = [
        ("failed jobs", len(groups) > 0, f"{int(groups['count'].sum()) if len(groups) else 0} failed jobs"),
        ("distinct signatures", len(groups) > 1, f"{len(groups)} signatures"),
    ]
    for i, (_, row) in enumerate(groups.head(5).iterrows()):
        checks.append(
            (f"signature {i + 1} ({classes[row['signature']]})", True, f"{row['count']} x {row['signature']}")
        )
    df = frame_of([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    top = groups.iloc[0]["signature"] if len(groups) else ""
    cause = f"{len(groups)} failure signatures" if len(groups) else "no failed jobs"
    summary = f"top failure: {top!r} ({classes[top]})" if len(groups) else "nothing has failed"

    def apply() -> list[str]:
        if not ids:
            return []
        done = 0
        for start in range(0, len(ids), batch):
            for job_id in ids[start : start + batch]:
                try:
                    if action == "retry":
                        q.retry_job(job_id)
                    else:
                        q.remove(job_id)
                    done += 1
                except SbqueueError:
                    continue  # it moved on meanwhile (retried by someone else, removed): not ours to touch
        return [f"{action} {done} of {len(ids)} jobs"]

    def verify() -> tuple[bool, str, str | None]:
        failed_now = set(q.get_job_ids("failed"))
        left = [i for i in ids if i in failed_now]
        if action == "remove" or not ids:
            return not left, f"{len(left)} of {len(ids)} chosen jobs still failed", None
        moving, seen, needed = watch_progress(q, watch_s, ids)
        return moving, seen, needed

    return Finding(
        "failed-jobs", q.name, cause, summary, df, frame_of(plan, PLAN_COLUMNS), apply, verify, ok=not len(groups),
        audit_to=(q.client, q.prefix),
    )
