"""Diagnoses and fixes behind the runbooks: the package computes, the notebooks narrate.

Each ``diagnose_*`` function inspects (read-only), names a cause with evidence, and returns a
:class:`Finding` whose ``plan`` is a DataFrame of intended actions. Nothing changes until
``finding.apply(confirm=True)``; the runbooks call it only when ``dry_run`` is False.

    >>> finding = runbook.diagnose_stuck("emails")
    >>> finding.cause, finding.plan
    >>> finding.apply(confirm=True); finding.verify()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from . import connection as _connection
from ._core import options as _opts
from ._core.keys import validate_queue_name
from ._sync.queue import Queue
from .errors import InvalidOptionError, SbqueueError
from .inspection import Inspector
from .inspection.stalled import HASH_MISSING, LOCK_LOST, ORPHANED

PLAN_COLUMNS = {"action": "string", "target": "string", "jobs": "int64", "automatic": "bool", "detail": "string"}
CHECK_COLUMNS = {"check": "string", "result": "bool", "evidence": "string"}
EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random",
            "volatile-ttl")  # fmt: skip


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns) if len(df) else pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


@dataclasses.dataclass
class Finding:
    """A diagnosis: the cause, the evidence, the plan — and how to apply and verify it."""

    runbook: str
    queue: str
    cause: str
    summary: str
    checks: pd.DataFrame
    plan: pd.DataFrame
    _apply: Callable[[], list[str]] | None = None
    _verify: Callable[[], tuple[bool, str]] | None = None
    applied: list[str] = dataclasses.field(default_factory=list)
    verified: tuple[bool, str] | None = None

    def apply(self, *, confirm: bool = False) -> list[str]:
        """Carry out the automatic actions of the plan. Refuses unless ``confirm=True``."""
        if not confirm:
            raise InvalidOptionError("apply() changes Redis: call apply(confirm=True)", option="confirm")
        self.applied = self._apply() if self._apply else []
        return self.applied

    def verify(self) -> tuple[bool, str]:
        """Re-inspect: (fixed?, what was seen)."""
        self.verified = self._verify() if self._verify else (True, "nothing to verify")
        return self.verified

    def verdict(self) -> str:
        """A plain-text summary for the report: what is wrong, the evidence, what was done."""
        lines = [f"[{self.runbook}] queue {self.queue!r}: {self.cause}", f"  {self.summary}"]
        fired = self.checks[self.checks["result"]] if len(self.checks) else self.checks
        for _, row in fired.iterrows():
            lines.append(f"  evidence: {row['check']}: {row['evidence']}")
        if self.applied:
            lines += [f"  done: {a}" for a in self.applied]
        elif len(self.plan) and self.plan["automatic"].any():
            auto = self.plan[self.plan["automatic"]]
            lines.append(f"  planned (dry run, nothing changed): {', '.join(auto['action'])}")
        manual = self.plan[~self.plan["automatic"]] if len(self.plan) else self.plan
        for _, row in manual.iterrows():
            lines.append(f"  needs a human: {row['action']} ({row['detail']})")
        if self.verified is not None and (self.applied or not len(manual)):
            lines.append(f"  verified: {'fixed' if self.verified[0] else 'NOT fixed'} ({self.verified[1]})")
        return "\n".join(lines)


def _queue(queue: str | Queue, connection: Any, prefix: str) -> Queue:
    return queue if isinstance(queue, Queue) else Queue(queue, _connection.coerce(connection), prefix=prefix)


# --- stuck jobs ------------------------------------------------------------------------------------------
def diagnose_stuck(queue: str | Queue, connection: Any = None, prefix: str = "bull") -> Finding:
    """Jobs are waiting but nothing happens: paused? rate-limited? global concurrency reached? no workers?
    all workers busy? delayed jobs not due yet? The first check that holds (in that order: the most specific
    first) is the cause; every check that holds is listed as evidence."""
    q = _queue(queue, connection, prefix)
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
    checks = [
        ("nothing waiting", runnable == 0 and counts["delayed"] == 0,
         f"{runnable} runnable, {counts['delayed']} delayed"),
        ("paused", bool(meta.get("paused")), f"meta.paused={meta.get('paused')!r} with {runnable} runnable jobs"),
        ("rate limited", limit_ttl > 0 and (used >= (limit_max or 1)),
         f"limiter={used}/{limit_max or 'manual'} for another {limit_ttl / 1000:.1f} s"),
        ("global concurrency reached", concurrency is not None and counts["active"] >= concurrency,
         f"{counts['active']} active of global concurrency {concurrency}"),
        ("no workers", runnable > 0 and len(workers) == 0, f"{len(workers)} worker connections on the queue"),
        ("all workers busy", runnable > 0 and len(workers) > 0 and counts["active"] > 0,
         f"{counts['active']} active, {runnable} waiting, {len(workers)} workers"),
        ("delayed not due", runnable == 0 and counts["delayed"] > 0,
         f"{counts['delayed']} delayed; next: job {next_delayed[0] if next_delayed else '-'}"),
    ]  # fmt: skip
    df = _frame([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    cause = next((c for c, r, _ in checks if r), "not stuck")
    plan: list[dict[str, Any]] = []
    if cause == "paused":
        plan.append({"action": "resume", "target": q.name, "jobs": runnable, "automatic": True,
                     "detail": "resume the queue; workers fetch again"})  # fmt: skip
    elif cause == "no workers":
        plan.append({"action": "start a worker", "target": q.name, "jobs": runnable, "automatic": False,
                     "detail": f"sbqueue worker {q.name} module:function --prefix {q.prefix}"})  # fmt: skip
    elif cause == "rate limited":
        plan.append({"action": "wait for the rate-limit window", "target": q.name, "jobs": runnable,
                     "automatic": False, "detail": f"fetching resumes in {limit_ttl / 1000:.0f} s; "
                     "lower the limit with set_global_rate_limit if it is too strict"})  # fmt: skip
    elif cause == "global concurrency reached":
        plan.append({"action": "raise global concurrency", "target": q.name, "jobs": runnable,
                     "automatic": False, "detail": "raise set_global_concurrency(n), or see why jobs are slow"})
    elif cause == "all workers busy":
        plan.append({"action": "add workers", "target": q.name, "jobs": runnable, "automatic": False,
                     "detail": "throughput is below the arrival rate; scale workers or concurrency"})  # fmt: skip

    def apply() -> list[str]:
        done = []
        if cause == "paused":
            q.resume()
            done.append(f"resumed {q.name}")
        return done

    def verify() -> tuple[bool, str]:
        again = diagnose_stuck(q)
        return (again.cause != cause or cause in ("not stuck", "nothing waiting")), f"cause now: {again.cause}"

    summary = {
        "not stuck": "nothing is waiting: the queue is not stuck",
        "nothing waiting": "nothing is waiting or delayed: the queue is not stuck",
        "paused": f"the queue is paused with {runnable} runnable jobs",
        "no workers": f"{runnable} jobs are waiting and no worker is connected",
        "rate limited": f"the rate limit is used up for another {limit_ttl / 1000:.0f} s",
        "global concurrency reached": f"global concurrency {concurrency} is reached",
        "all workers busy": f"workers are busy: {runnable} jobs wait behind {counts['active']} active",
        "delayed not due": f"{counts['delayed']} jobs are delayed and none is due yet",
    }[cause]
    return Finding("stuck-jobs", q.name, cause, summary, df, _frame(plan, PLAN_COLUMNS), apply, verify)


# --- stalled jobs ------------------------------------------------------------------------------------------
def diagnose_stalled(queue: str | Queue, connection: Any = None, prefix: str = "bull", *, mode: str = "requeue",
                     force: bool = False, max_stalled_count: int = 1) -> Finding:  # fmt: skip
    """Active jobs whose lock is gone or whose worker is gone. Fix: requeue (or fail) them safely —
    jobs still locked are left alone unless ``force`` (their worker may still be alive)."""
    if mode not in ("requeue", "fail"):
        raise InvalidOptionError(f"mode must be 'requeue' or 'fail', got {mode!r}", option="mode")
    q = _queue(queue, connection, prefix)
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
        ("lock gone", len(recoverable) > 0, f"ids {list(recoverable['id'])[:20]}"),
        ("worker gone, lock still held", len(stuck_locked) > 0, f"ids {list(stuck_locked['id'])[:20]}"),
        ("hash missing", bool(len(stalled)) and bool((stalled["verdict"] == HASH_MISSING).any()),
         "ids in active without a job hash (see consistency())"),
    ]  # fmt: skip
    df = _frame([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
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
               if cause == "stalled jobs" else f"{len(stalled)} active jobs, all held by live workers")  # fmt: skip

    def apply() -> list[str]:
        if not targets:
            return []
        codes = q._run("recover_stalled", [int(time.time() * 1000), mode, "1" if force else "0",
                                            "stalled: recovered by operator", len(targets), *targets])  # fmt: skip
        done = [t for t, c in zip(targets, codes, strict=True) if int(c) == 1]
        return [f"{mode}d job {t}" for t in done]

    def verify() -> tuple[bool, str]:
        left = set(q.get_job_ids("active")) & set(targets)
        return not left, f"{len(left)} of the {len(targets)} targeted jobs still active"

    return Finding("stalled-jobs", q.name, cause, summary, df, _frame(plan, PLAN_COLUMNS), apply, verify)


# --- failed jobs ------------------------------------------------------------------------------------------
def diagnose_failed(queue: str | Queue, connection: Any = None, prefix: str = "bull", *, signature: str | None = None,
                    name: str | None = None, since: Any = None, action: str = "retry",
                    batch: int = 500) -> Finding:  # fmt: skip
    """Failure signatures, biggest first. Fix: retry (or remove) the jobs of one chosen signature
    (``signature`` substring), job ``name`` and/or ``since`` window, in batches."""
    if action not in ("retry", "remove"):
        raise InvalidOptionError(f"action must be 'retry' or 'remove', got {action!r}", option="action")
    if signature is not None and not isinstance(signature, str):
        raise InvalidOptionError(f"signature must be a substring (str) or None, got {signature!r}", option="signature")
    batch = _opts.validate_count(batch, "batch", minimum=1)
    q = _queue(queue, connection, prefix)
    insp = Inspector(q.client, q.prefix)
    groups = insp.failures(q.name, name=name, since=since)
    chosen = groups
    if signature and len(groups):
        chosen = groups[groups["signature"].str.contains(signature, regex=False)]
    ids = [i for ids in chosen["ids"] for i in ids] if len(chosen) and (signature or name or since) else []
    checks = [
        ("failed jobs", len(groups) > 0, f"{int(groups['count'].sum()) if len(groups) else 0} failed jobs"),
        ("distinct signatures", len(groups) > 1, f"{len(groups)} signatures"),
    ]
    for i, (_, row) in enumerate(groups.head(5).iterrows()):
        checks.append((f"signature {i + 1}", True, f"{row['count']} x {row['signature']}"))
    df = _frame([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    plan = []
    if ids:
        plan.append({"action": action, "target": signature or name or str(since), "jobs": len(ids), "automatic": True,
                     "detail": f"{action} {len(ids)} failed jobs in batches of {batch}"})  # fmt: skip
    top = groups.iloc[0]["signature"] if len(groups) else ""
    cause = f"{len(groups)} failure signatures" if len(groups) else "no failed jobs"
    summary = f"top failure: {top!r}" if len(groups) else "nothing has failed"

    def apply() -> list[str]:
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

    def verify() -> tuple[bool, str]:
        failed_now = set(q.get_job_ids("failed"))
        left = [i for i in ids if i in failed_now]
        return not left, f"{len(left)} of {len(ids)} chosen jobs still failed"

    return Finding("failed-jobs", q.name, cause, summary, df, _frame(plan, PLAN_COLUMNS), apply, verify)


# --- memory -----------------------------------------------------------------------------------------------
def diagnose_memory(connection: Any = None, prefix: str = "bull", *, max_age: dt.timedelta = dt.timedelta(days=1),
                    states: tuple[str, ...] = ("completed", "failed"), limit: int = 100_000,
                    queue: str | None = None) -> Finding:  # fmt: skip
    """Which queue eats the memory, and which finished jobs are older than ``max_age`` (kept because no
    removeOnComplete/removeOnFail is set). Fix: clean them by age (batched) — in every queue, or only in
    ``queue``."""
    if not isinstance(max_age, dt.timedelta) or not dt.timedelta(0) <= max_age <= dt.timedelta(days=36_500):
        raise InvalidOptionError(f"max_age must be a timedelta of 0 to 100 years, got {max_age!r}", option="max_age")
    if (isinstance(states, str) or not isinstance(states, (tuple, list)) or not states
            or not all(state in ("completed", "failed") for state in states)):  # fmt: skip
        raise InvalidOptionError(f"states must be a tuple of 'completed'/'failed', got {states!r}", option="states")
    limit = _opts.validate_count(limit, "limit", minimum=0)
    if queue is not None:
        validate_queue_name(queue)
    client = _connection.coerce(connection)
    insp = Inspector(client, prefix)
    by_queue = insp.memory_by_queue()
    mem = insp.info("memory")
    used = _metric(mem, "used_memory")
    maxmem = _metric(mem, "maxmemory")
    cutoff = pd.Timestamp.now(tz="UTC") - pd.Timedelta(max_age)
    plan = []
    totals = (
        by_queue.groupby("queue")["bytes"].sum().sort_values(ascending=False)
        if len(by_queue)
        else pd.Series(dtype="int64")
    )
    for qname in totals.index:
        if not qname or (queue is not None and qname != queue):
            continue
        jobs = insp.jobs(qname, list(states), until=cutoff.to_pydatetime())
        for state in states:
            n = int((jobs["state"] == state).sum()) if len(jobs) else 0
            if n:
                plan.append({"action": f"clean {state}", "target": qname, "jobs": n, "automatic": True,
                             "detail": f"remove {state} jobs finished before {cutoff:%Y-%m-%d %H:%M} UTC"})  # fmt: skip
    share = f"{used / maxmem:.0%} of maxmemory" if maxmem else "no maxmemory set"
    top = f"{totals.index[0]!r} holds {int(totals.iloc[0]):,} B" if len(totals) else "no queue keys"
    checks = [
        ("memory used", True, f"{used:,.0f} B ({share})"),
        ("maxmemory set", bool(maxmem), f"maxmemory={maxmem:,.0f}"),
        ("biggest queue", len(totals) > 0, top),
        ("old finished jobs kept", bool(plan), f"{sum(p['jobs'] for p in plan)} jobs older than {max_age}"),
    ]
    df = _frame([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    cause = "old finished jobs kept (no retention)" if plan else "no cleanable backlog"

    def apply() -> list[str]:
        done = []
        grace = int(max_age.total_seconds() * 1000)
        for row in plan:
            q = Queue(row["target"], client, prefix=prefix)
            state = row["action"].split(" ", 1)[1]
            removed = q.clean(grace, limit, state)
            done.append(f"cleaned {len(removed)} {state} jobs of {row['target']}")
        return done

    def verify() -> tuple[bool, str]:
        again = diagnose_memory(client, prefix, max_age=max_age, states=states, limit=limit, queue=queue)
        left = int(again.plan["jobs"].sum()) if len(again.plan) else 0
        return left == 0, f"{left} old finished jobs left"

    plan_df = _frame(plan, PLAN_COLUMNS)
    return Finding("redis-memory", queue or "*", cause, f"{top}; {share}", df, plan_df, apply, verify)


def _metric(info: pd.DataFrame, name: str) -> float:
    row = info[info["field"] == name] if len(info) else info
    return float(row["number"].iloc[0]) if len(row) and pd.notna(row["number"].iloc[0]) else 0.0


# --- Redis health ---------------------------------------------------------------------------------------------
def diagnose_health(connection: Any = None, prefix: str = "bull", *, window_s: float = 1.0) -> Finding:
    """The seed guide's 10 Redis alerts + queue alerts, persistence and the config audit. Fix: only the one
    setting that loses jobs silently — an evicting ``maxmemory-policy`` is set back to ``noeviction``."""
    client = _connection.coerce(connection)
    insp = Inspector(client, prefix)
    alerts = insp.alerts(window_s=window_s)
    audit = insp.config_audit()
    policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    firing = alerts[alerts["firing"]] if len(alerts) else alerts
    checks = [(f"alert {r['name']}", bool(r["firing"]), str(r["evidence"])) for _, r in alerts.iterrows()]
    checks.append(("evicting maxmemory-policy", policy in EVICTING, f"maxmemory-policy={policy}"))
    df = _frame([{"check": c, "result": r, "evidence": e} for c, r, e in checks], CHECK_COLUMNS)
    plan = []
    if policy in EVICTING:
        plan.append({"action": "set maxmemory-policy noeviction", "target": "redis", "jobs": 0, "automatic": True,
                     "detail": f"{policy} silently deletes job keys when memory is full"})  # fmt: skip
    bad = audit[audit["severity"].isin(["critical", "warning"])] if len(audit) else audit
    for _, row in bad.iterrows():
        if row["setting"] != "maxmemory-policy":
            plan.append({"action": f"review {row['setting']}", "target": str(row["scope"]), "jobs": 0,
                         "automatic": False,
                         "detail": f"{row['value']} -> {row['recommended']}: {row['why']}"})  # fmt: skip
    if policy in EVICTING:
        cause = f"evicting maxmemory-policy ({policy})"
    elif len(firing):
        cause = f"{len(firing)} alerts firing"
    else:
        cause = "healthy"
    summary = ", ".join(f"{r['name']} [{r['scope']}]" for _, r in firing.iterrows()) or "no alert is firing"

    def apply() -> list[str]:
        if policy in EVICTING:
            client.config_set("maxmemory-policy", "noeviction")
            return [f"maxmemory-policy {policy} -> noeviction"]
        return []

    def verify() -> tuple[bool, str]:
        now = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
        return now not in EVICTING, f"maxmemory-policy={now}"

    return Finding("redis-health", "*", cause, summary, df, _frame(plan, PLAN_COLUMNS), apply, verify)
