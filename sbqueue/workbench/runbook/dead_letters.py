"""The failed-jobs runbook's dead letters: a dead-letter queue's letters, and replaying chosen ones.

:func:`diagnose_dead_letters` reads the letters of a dead-letter queue (DLQ) with their source metadata and
plans a replay of those the filters pick (``Queue.replay_dead_letters``; nothing is written before
``apply(confirm=True)``). Verify re-reads the DLQ and each target queue: FIXED only if every replayed letter
left the DLQ and its new job exists.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from sbqueue._core.keys import QueueKeys
from sbqueue.engine._sync.queue import Queue
from sbqueue.inspection import Inspector
from sbqueue.workbench.runbook.finding import CHECK_COLUMNS, PLAN_COLUMNS, Finding, frame_of
from sbqueue.workbench.runbook.scope import each_queue


def diagnose_dead_letters(dead_letter_queue: str | Queue, connection: Any = None, prefix: str = "bull", *,
                          name: Any = None, source_queue: Any = None,
                          failed_reason: str | re.Pattern[str] | None = None, since: Any = None,
                          until: Any = None, limit: int | None = None, to: str | None = None) -> Finding:  # fmt: skip
    """The letters of ``dead_letter_queue`` (newest first, by source queue and failed reason) and a plan to
    replay those the filters pick (:meth:`sbqueue.Queue.replay_dead_letters`: same filters, dry run until
    ``apply(confirm=True)``). OK when the DLQ holds no letter; NOT FOUND when the queue does not exist."""
    return each_queue("failed-jobs", _dead_letters, dead_letter_queue, connection, prefix, name=name,
                      source_queue=source_queue, failed_reason=failed_reason, since=since, until=until, limit=limit,
                      to=to)  # fmt: skip


def _dead_letters(q: Queue, **filters: Any) -> Finding:
    letters = Inspector(q.client, q.prefix, progress=False).dead_letters(q.name)
    plan_df = q.replay_dead_letters(**filters)  # dry run: validates the filters, writes nothing
    picked = list(plan_df["dead_letter_id"])
    plan = []
    if picked:
        targets = ", ".join(sorted(set(plan_df["target_queue"])))
        plan.append({"action": "replay dead letters", "target": targets, "jobs": len(picked), "automatic": True,
                     "detail": f"move {len(picked)} letters back to {targets} as fresh jobs (each removed from "
                     f"{q.name} in the same atomic step)"})  # fmt: skip
    elif len(letters):
        plan.append({"action": "choose letters", "target": q.name, "jobs": 0, "automatic": False,
                     "detail": "no letter matches the filters: pick from the table"})  # fmt: skip
    sources = letters["source_queue"].value_counts() if len(letters) else pd.Series(dtype="int64")
    checks = [("dead letters", len(letters) > 0, f"{len(letters)} letters in {q.name}"),
              ("chosen for replay", bool(picked), f"{len(picked)} letters")]  # fmt: skip
    checks += [(f"from {src}", True, f"{int(n)} letters") for src, n in sources.head(5).items()]
    done: dict[str, Any] = {}

    def apply() -> list[str]:
        result = q.replay_dead_letters(**{**filters, "job_ids": picked} if picked else filters, dry_run=False)
        done["frame"] = result
        counts = result["action"].value_counts().to_dict()
        return [f"replayed {counts.get('replayed', 0)} of {len(picked)} letters"
                + "".join(f", {n} {what}" for what, n in counts.items() if what != "replayed")]  # fmt: skip

    def verify() -> tuple[bool, str]:
        result = done.get("frame")
        if result is None or not len(result):
            return not picked, "nothing was replayed"
        replayed = result[result["action"] == "replayed"]
        still = [lid for lid in replayed["dead_letter_id"] if q.client.exists(q.keys.job(str(lid)))]
        missing = [
            row.new_job_id
            for row in replayed.itertuples()
            if not q.client.exists(QueueKeys(q.prefix, str(row.target_queue)).job(str(row.new_job_id)))
        ]
        ok = len(replayed) == len(picked) and not still and not missing
        return ok, (f"{len(replayed)} of {len(picked)} letters replayed; {len(still)} still in {q.name}; "
                    f"{len(missing)} new jobs missing")  # fmt: skip

    cause = f"{len(letters)} dead letters in {q.name}" if len(letters) else f"no dead letters in {q.name}"
    return Finding("failed-jobs", q.name, cause, cause, frame_of([{"check": c, "result": r, "evidence": e}
                   for c, r, e in checks], CHECK_COLUMNS), frame_of(plan, PLAN_COLUMNS), apply, verify,
                   ok=not len(letters), audit_to=(q.client, q.prefix))  # fmt: skip


def with_dead_letters(finding: Finding, dead: Finding) -> Finding:
    """One finding of the failed-jobs runbook from its failed-jobs ``finding`` and a dead-letter queue's ``dead``
    (each applied and verified on its own; the outcome is the worse of the two)."""
    parts = [*(finding.parts or [finding]), dead]
    checks = pd.concat([p.checks.assign(check=f"{p.queue}: " + p.checks["check"]) for p in parts], ignore_index=True)
    plan = pd.concat([p.plan for p in parts if len(p.plan)] or [frame_of([], PLAN_COLUMNS)], ignore_index=True)
    summary = ", ".join(f"{p.queue}: {p.outcome}" for p in parts)
    return Finding(finding.runbook, finding.queue, f"{finding.cause}; {dead.cause}", summary, checks, plan,
                   parts=parts)  # fmt: skip
